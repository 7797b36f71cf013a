"""A gateway fleet: two instances, one Mosquitto, one PostgreSQL (docs/decisions.md D28).

Both instances run as processes (``coldtrace gateway run``) with a shared MQTT
subscription and their own log (origin, key, store schema), sharing the
de-duplication and sequence checks through the ``fleet`` schema. One is
killed with ``kill -9`` mid-stream and restarted. At the end every published
record is stored exactly once in exactly one of the two logs (union = what
was published, intersection empty), every device's last ack covers all of
its records, and both logs' checkpoints verify and are consistent.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.evidence.store import StoreError, open_store
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.env import GatewayDir
from tests.gateway.logcheck import check_log_and_ledger
from tests.gateway.test_crash import children, publish_stream, resend_until_acked

USERS = ("gw-a@test", "gw-b@test")


def fleet_sections(pg_url: str, name: str) -> dict[str, dict[str, object]]:
    return {
        "store": {"url": pg_url, "schema": f"gw_{name}"},
        "fleet": {"shared_schema": "fleet"},
        "mqtt": {"share_group": "coldtrace"},
    }


def make_fleet(make_broker, make_gateway, pg_url: str, devs: list[SimDevice]):
    broker = make_broker([d.id for d in devs], gateways=USERS)
    a = make_gateway(
        broker,
        sections=fleet_sections(pg_url, "a"),
        gw_user=USERS[0],
        origin="coldtrace.test/gw-a",
        batch_size=50,
    )
    b = make_gateway(
        broker,
        sections=fleet_sections(pg_url, "b"),
        gw_user=USERS[1],
        origin="coldtrace.test/gw-b",
        batch_size=50,
    )
    # One registry for the fleet: both instances trust (and log) its records.
    shutil.copy(a.dir / "keys" / "registry.pem", b.dir / "keys" / "registry.pem")
    return a, b


def registered(env: GatewayDir) -> int:
    store = open_store(env.cfg)
    try:
        return len(store.devices())
    finally:
        store.close()


def logged(env: GatewayDir) -> dict[tuple[str, int], bytes]:
    store = open_store(env.cfg)
    try:
        out = {}
        for leaf in range(store.leaf_count()):
            r = store.record(leaf)
            assert r is not None
            if r.kind <= 3:  # device records (registry records are logged by both)
                out[(r.signer, r.seq)] = r.raw
        return out
    finally:
        store.close()


def check_log(env: GatewayDir) -> int:
    """Every checkpoint of ``env``'s log verifies, is anchored and consistent with
    the one before; sampled records are included. The number of checkpoints."""
    cfg = env.cfg
    store = open_store(cfg)
    try:
        cps = check_log_and_ledger(cfg, store, 100)
        assert all(c.origin == cfg.log.origin for c in cps)
        return len(cps)
    finally:
        store.close()


def test_two_instances_one_killed_store_every_record_once_in_one_log(
    make_broker, make_gateway, pg_url: str
) -> None:
    devs = [SimDevice(f"tl-f{i}") for i in range(6)]
    a, b = make_fleet(make_broker, make_gateway, pg_url, devs)
    a.register(*devs)  # signed once; the fleet's shared outbox hands them to b as well
    procs = {"a": a.start_process(), "b": b.start_process()}
    for env in (a, b):
        log_path = env.dir / "gateway.log"
        wait_for(lambda p=log_path: "subscribed to" in p.read_text(), 30, "instances subscribed")
        wait_for(lambda e=env: registered(e) == len(devs), 30, "registrations logged")
    a.connect(*devs)
    stop = threading.Event()
    result: dict[str, dict[str, list[bytes]]] = {}
    publisher = threading.Thread(
        target=lambda: result.setdefault("sent", publish_stream(devs, 250, 0.004, stop))
    )
    publisher.start()
    a_log = a.dir / "gateway.log"
    wait_for(lambda: len(logged(a)) > 100 and len(logged(b)) > 100, 30, "both ingesting")
    workers = children(procs["a"].pid)
    os.kill(procs["a"].pid, signal.SIGKILL)
    procs["a"].wait(10)
    at_kill = len(logged(a))
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in workers), 15, "workers gone")
    time.sleep(0.5)  # b alone for a while
    procs["a"] = a.start_process()
    publisher.join(60)
    assert not publisher.is_alive()
    wait_for(lambda: a_log.read_text().count("subscribed to") >= 2, 30, "a back")
    resend_until_acked(devs, timeout=40)
    for name in ("a", "b"):
        procs[name].send_signal(signal.SIGTERM)
        assert procs[name].wait(30) == 0, f"instance {name} did not stop cleanly"

    sent = {(d, seq): raw for d, raws in result["sent"].items() for seq, raw in enumerate(raws)}
    in_a, in_b = logged(a), logged(b)
    assert not set(in_a) & set(in_b), "a record is in both logs"
    assert {**in_a, **in_b} == sent  # every record, with its exact bytes, in one log
    assert in_a and in_b  # the stream was shared
    print(f"log a: {at_kill} records at the kill, {len(in_a)} at the end; log b: {len(in_b)}")
    assert len(in_a) > at_kill  # the restarted instance took its share again
    for d in devs:
        assert d.acked == len(result["sent"][d.id]) - 1 and d.bad_acks == 0, d.id
    for env in (a, b):
        store = open_store(env.cfg)
        try:
            assert store.reject_counts() == {}
            claims = store.claims_of(env.cfg.log.origin)  # the fleet's record of this log
            assert {(s, q) for s, q, _o, _leaf in claims} == set(logged(env))
        finally:
            store.close()
        assert check_log(env) >= 1


def test_a_fleet_needs_postgresql_and_its_own_schema(tmp_path: Path, make_broker) -> None:
    from tests.gateway.env import create_gateway_dir

    broker = make_broker([])
    with pytest.raises(ConfigError, match="needs the store on PostgreSQL"):
        create_gateway_dir(
            tmp_path / "x",
            broker,
            sections={"fleet": {"shared_schema": "fleet"}, "mqtt": {"share_group": "g"}},
        )
    env = create_gateway_dir(tmp_path / "y", broker)
    toml = (env.dir / "gateway.toml").read_text()
    (env.dir / "gateway.toml").write_text(
        toml + '\n[store]\nurl = "postgresql://gw@127.0.0.1/x"\nschema = "fleet"\n'
        '\n[fleet]\nshared_schema = "fleet"\n'
    )
    with pytest.raises(ConfigError, match="own \\[store\\] schema"):
        load_config(env.dir / "gateway.toml")


def test_the_fleet_store_refuses_sqlite(tmp_path: Path) -> None:
    from gateway.evidence.fleet import FleetStore
    from gateway.evidence.store import sqlite_url

    with pytest.raises(StoreError, match="PostgreSQL only"):
        FleetStore(sqlite_url(tmp_path / "g.db"), schema="a", shared_schema="f", origin="o")
