"""The fault suite, gateway side (issue 12): kill -9, a fleet instance lost, broker and
database restarts, each under a stream from many simulated devices.

Every scenario ends with tests/reliability/invariants.py: every published
record stored exactly once and in a log, nothing acked lost, every checkpoint
ever issued verified and consistent, and the verdicts of two traced items
(one PASS, one FAIL) equal to an undisturbed run's. Sizes: bounded under
``make test``, issue 12's full size (100,000 records from 200 devices) under
``make soak`` (tests/soak.py).
"""

from __future__ import annotations

import json
import time

import pytest

from gateway.evidence.store import open_store
from protocol.cli import main as coldtrace
from tests.gateway.devices import wait_for
from tests.pgserver import PgServer
from tests.reliability.harness import (
    START_GUARD,
    GatewayProcess,
    drain,
    logged_device_records,
    make_fleet,
    stream_with_faults,
    wait_registry_logged,
)
from tests.reliability.invariants import check_invariants
from tests.reliability.workload import ColdChain, acked
from tests.soak import scale

DEVICES = 200
READINGS = scale(25, 500)  # per device: 5,000 records bounded, 100,000 full
PAUSE = scale(0.25, 0.05)  # s between rounds (one reading of every device)


def settle(work: ColdChain) -> None:
    """The devices resend what is not acked until everything is (as the firmware does)."""
    drain(work.devices)


def check_workload(name: str, work: ColdChain, cfgs: list, logs: list) -> dict:
    """The fault suite's invariants (tests/reliability/invariants.py) over ``work``."""
    return check_invariants(
        name,
        cfgs,
        work.published(),
        acked(work.devices),
        registry_records=work.registry_records,
        traces=work.uids,
        gateway_logs=logs,
    )


def test_kill_9_five_times_during_a_stream_from_200_devices(make_broker, make_gateway) -> None:
    work = ColdChain(DEVICES, READINGS, prefix="tl-k")
    env = make_gateway(make_broker(work.device_ids))
    work.setup(env)
    gw = GatewayProcess(env)
    gw.start()
    wait_registry_logged(env, work)
    env.connect(*work.devices)

    def kill_and_restart() -> None:
        gw.kill9()
        gw.start()

    stream_with_faults(work, PAUSE, [kill_and_restart] * 5, ready=gw.wait_subscribed)
    gw.wait_subscribed()
    settle(work)
    assert gw.stop() == 0
    counts = check_workload("kill9_x5", work, [env.cfg], [[gw.log]])
    assert gw.kills == 5 and gw.log_text().count("started: log") == 6
    assert counts["verdicts"] == {work.uids[0].hex(): "PASS", work.uids[1].hex(): "FAIL"}


def test_fleet_instance_killed_and_restarted_on_postgresql(
    make_broker, make_gateway, pg_url: str
) -> None:
    """Two instances share the stream (shared subscription, PostgreSQL, D28); one is
    killed with kill -9 a third into the stream and started again at two thirds."""
    work = ColdChain(DEVICES, READINGS, prefix="tl-f")
    a, b = make_fleet(make_broker, make_gateway, pg_url, work.device_ids)
    work.setup(a)  # signed once; the fleet's shared outbox hands them to b as well
    gws = {"a": GatewayProcess(a), "b": GatewayProcess(b)}
    for gw in gws.values():
        gw.start()
    for env in (a, b):
        wait_registry_logged(env, work)
    a.connect(*work.devices)
    at_kill: list[int] = []

    def kill_a() -> None:
        gws["a"].kill9()
        at_kill.append(len(logged_device_records(a, work.device_ids)))

    def ready() -> None:
        for gw in gws.values():
            gw.wait_subscribed()

    stream_with_faults(work, PAUSE, [kill_a, gws["a"].start], ready=ready)
    ready()
    settle(work)
    for name, gw in gws.items():
        assert gw.stop() == 0, f"instance {name} did not stop cleanly"

    in_a, in_b = (
        logged_device_records(a, work.device_ids),
        logged_device_records(b, work.device_ids),
    )
    assert in_a and in_b and not set(in_a) & set(in_b)  # shared, each record in one log
    assert len(in_a) > at_kill[0]  # the restarted instance took its share again
    counts = check_workload(
        "fleet_instance_killed", work, [a.cfg, b.cfg], [[gws["a"].log], [gws["b"].log]]
    )
    for env in (a, b):
        store = open_store(env.cfg)
        try:  # the fleet's record of which log holds what agrees with the logs
            claims = store.claims_of(env.cfg.log.origin)
            assert {(s, q) for s, q, _o, _leaf in claims} == set(
                logged_device_records(env, work.device_ids)
            )
        finally:
            store.close()
    print(f"log a: {at_kill[0]} records at the kill, {len(in_a)} at the end; log b: {len(in_b)}")
    assert counts["verdicts"] == {work.uids[0].hex(): "PASS", work.uids[1].hex(): "FAIL"}


def test_broker_restart_mid_stream(make_broker, make_gateway) -> None:
    """Mosquitto restarts (persistence on, as shipped) under the gateway and the devices."""
    work = ColdChain(DEVICES, READINGS, prefix="tl-b")
    broker = make_broker(work.device_ids)
    env = make_gateway(broker)
    work.setup(env)
    gw = GatewayProcess(env)
    gw.start()
    wait_registry_logged(env, work)
    env.connect(*work.devices)
    stream_with_faults(work, PAUSE, [broker.process.restart], ready=gw.wait_subscribed)
    wait_for(lambda: gw.log_text().count("subscribed to") >= 2, START_GUARD, "resubscribed")
    settle(work)
    assert gw.stop() == 0
    check_workload("broker_restart", work, [env.cfg], [[gw.log]])
    assert gw.starts == 1  # the same process throughout


def test_postgresql_restarts_mid_stream_are_ridden_out(
    make_broker, make_gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store's PostgreSQL server restarts twice under a running gateway (a fast
    shutdown, then an immediate one, as in a crash). The gateway process waits for it
    and resumes by itself (docs/decisions.md D38): no supervisor restarts it."""
    work = ColdChain(DEVICES, READINGS, prefix="tl-p")
    with PgServer(durable=True) as pg:  # a committed batch survives the server's crash
        env = make_gateway(
            make_broker(work.device_ids), sections={"store": {"url": pg.url, "schema": "gw"}}
        )
        work.setup(env)
        gw = GatewayProcess(env)
        gw.start()
        wait_registry_logged(env, work)
        env.connect(*work.devices)
        restarts: list[str] = []

        def restart(mode: str) -> None:
            pg.halt(mode)
            restarts.append(mode)
            time.sleep(1.0)  # down for a while: the stream goes on into the broker
            pg.resume()

        def resumed() -> None:
            wait_for(
                lambda: gw.log_text().count("reachable again") >= len(restarts),
                START_GUARD,
                "the gateway back on the database",
            )
            gw.wait_subscribed()

        stream_with_faults(
            work, PAUSE, [lambda: restart("fast"), lambda: restart("immediate")], ready=resumed
        )
        resumed()
        settle(work)

        def status() -> dict:
            store = open_store(env.cfg)
            try:
                return json.loads(store.get_meta("status") or "{}")
            finally:
                store.close()

        def idle() -> bool:  # every record (all acked: no more come) in a checkpoint
            store = open_store(env.cfg)
            try:
                cp = store.latest_checkpoint()
                covered = cp is not None and cp.size == store.leaf_count()
            finally:
                store.close()
            return covered and status().get("store_outages") == 2

        wait_for(idle, START_GUARD, "outages counted, everything checkpointed")
        # A third outage, and the operator stops the gateway while it waits.
        pg.halt("fast")
        wait_for(lambda: gw.log_text().count("lost the connection to") == 3, START_GUARD, "3rd")
        assert gw.stop() == 0
        pg.resume()
        text = gw.log_text()
        assert gw.starts == 1 and text.count("started: log") == 3  # one process throughout
        assert "Traceback" not in text, text[-3000:]
        capsys.readouterr()
        assert coldtrace(["gateway", "status", "-c", str(env.config_path), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["store_outages"] == 2 and report["store_outage_seconds"] > 0
        check_workload("postgresql_restart", work, [env.cfg], [[gw.log]])
