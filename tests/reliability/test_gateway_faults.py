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

from tests.gateway.test_crash import resend_until_acked
from tests.reliability.harness import (
    DRAIN_GUARD,
    GatewayProcess,
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
    resend_until_acked(work.devices, timeout=DRAIN_GUARD)
    for d in work.devices:
        assert d.bad_acks == 0, d.id


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
    counts = check_invariants(
        "kill9_x5",
        [env.cfg],
        work.published(),
        acked(work.devices),
        registry_records=work.registry_records,
        traces=work.uids,
        gateway_logs=[[gw.log]],
    )
    assert gw.kills == 5 and gw.log_text().count("started: log") == 6
    assert counts["verdicts"] == {work.uids[0].hex(): "PASS", work.uids[1].hex(): "FAIL"}
