"""The invariants check itself: it passes on an undisturbed run and fails on each kind
of damage it exists to find (a lost record, an acked record missing, a verdict that
differs from the undisturbed run's), and writes its counts for the summary."""

from __future__ import annotations

import json

import pytest

from tests.reliability.invariants import ARTIFACTS, check_invariants
from tests.reliability.workload import ColdChain, acked


def test_invariants_pass_undisturbed_and_catch_loss_lost_acks_and_verdicts(
    make_broker, make_gateway
) -> None:
    work = ColdChain(8, 12, prefix="tl-i")
    env = make_gateway(make_broker(work.device_ids))
    work.setup(env)
    gw = env.start_gateway()
    try:
        env.connect(*work.devices)
        work.publish(0.0)
        assert all(d.acked_event.wait(60) for d in work.devices)
    finally:
        gw.stop()

    def check(name=None, **changes):
        args = {
            "published": work.published(),
            "acked": acked(work.devices),
            "registry_records": work.registry_records,
            "traces": work.uids,
            **changes,
        }
        return check_invariants(name, [env.cfg], **args)

    counts = check("selftest")
    n = sum(len(r) for r in work.sent.values())
    assert (counts["published"], counts["stored"], counts["in_logs"]) == (n, n, n)
    assert counts["duplicates"] == counts["lost"] == 0 and counts["checkpoints"] >= 1
    assert counts["verdicts"] == {work.uids[0].hex(): "PASS", work.uids[1].hex(): "FAIL"}
    assert json.loads((ARTIFACTS / "selftest.json").read_text()) == counts

    published = work.published()
    dev = work.loggers[0]
    published[dev.id][dev.seq] = dev.reading(time_=work.t0, keep=False)  # never sent
    with pytest.raises(AssertionError, match="1 published records not stored"):
        check(published=published)

    claimed = {**acked(work.devices), work.loggers[1].id: work.loggers[1].acked + 3}
    with pytest.raises(AssertionError, match="acked and not stored"):
        check(acked=claimed)

    # The reference without the registry's statements (no bindings, no profile)
    # judges otherwise than the logs do.
    with pytest.raises(AssertionError, match="verdict of the logged records"):
        check(registry_records=())
