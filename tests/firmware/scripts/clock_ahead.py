"""Records dated ahead of the gateway's clock (docs/protocol.md §5.2
"Records dated ahead", docs/decisions.md D42).

The logger (ct_app with ct_block, the real core, queue and uplink, _rig.py)
against the scripted gateway, which now refuses, like the real one's
``bad_time``, a record whose clock is synced (tq 2, 3) and whose time (a
block: its last reading) is more than 300 s ahead of its own, and then
publishes its ack again. Without the rule the refused record held the ack
below it for good; with it the device takes the time of that fresh ack,
closes its open block, signs the clock-set record, declares the run of
queued records dated ahead lost (event 11, ``lost``), never sends them
again, and deletes them once the ack covers the declaration. Later records
are accepted.
"""

import hashlib

import ct_app
import ct_cbor
import ct_record
from _rig import CFG, Rig, payloads
from fakefs import FakeFs
from fwrun import main

SKEW = 300


def run(name, hours, rate=0, jump=None, upload=3600, size=12, lose=(), **kw):
    """``rate``: parts per thousand the RTC runs fast; ``jump``: (wake, s)
    the RTC leaps forward once."""
    cfg = dict(CFG)
    cfg["id"] = "tl-ahd-" + name
    cfg["upload"] = upload
    n = hours * 12 + 2
    rig = Rig(
        [300 + i for i in range(n)],
        size=size,
        cfg=cfg,
        dev=cfg["id"],
        secret=hashlib.sha256(cfg["id"].encode()).digest(),
        **kw,
    )
    rig.gw.future_skew = SKEW
    rig.gw.lose = set(lose)
    for i in range(hours * 12):
        if jump is not None and i == jump[0]:
            rig.board.t += jump[1]
        rig.wake(1)
        rig.ticks.advance(-rig.board.slept[-1] * rate // 1000)
    rig.flush()
    return rig


def by_seq(ps):
    return dict((p[3], p) for p in ps)


def queued(rig):
    c = rig.core(FakeFs(rig.disk))
    try:
        return c.queued()[0]
    finally:
        c.close()


def check(rig):
    gw = rig.gw
    ps = payloads(gw)
    refused = set(gw.refused)
    assert refused, "the scenario must make the gateway refuse records"
    declared = set()
    for first, n, seq in gw.declarations:
        declared.update(range(first, first + n))
        assert seq > first + n - 1
    # every refused record is declared lost, and nothing else is
    assert refused <= declared, (sorted(refused), sorted(declared))
    assert not declared & set(gw.records)
    # the gateway settled everything the device signed; the queue is empty
    assert gw.next == max(gw.arrivals) + 1
    assert queued(rig) == 0  # the queue drained
    assert sorted(set(gw.records) | declared) == list(range(gw.next))
    assert gw.chain_errors == 0
    # nothing declared was sent after its declaration arrived (FakeGateway
    # fails the test then); each declaration is made once
    assert len(gw.declarations) == len(set(d[:2] for d in gw.declarations))
    # every stored record was within the skew when it arrived; after the last
    # declaration, nothing more was refused
    last_decl = max(d[2] for d in gw.declarations)
    assert all(s < last_decl for s in refused)
    # each declaration follows a clock-set record (tq 3) that closed the open
    # block before it: its detail is the old time, ahead by more than the skew
    for first, n, seq in gw.declarations:
        d = by_seq(ps)[seq]
        assert d[1] == 3 and d[30] == ct_app.EV_DROPPED and d[37] == n and d[38] == first
        sets = [p for p in ps if p[1] == 3 and p[30] == ct_app.EV_CLOCK_SET and p[3] < seq]
        assert sets and sets[-1][5] == 3 and sets[-1][37] - sets[-1][4] > SKEW
    return refused, declared


def test_fast_clock_beyond_the_skew_is_declared_and_corrected():
    # 5 % fast (an ESP32's RC oscillator in deep sleep), an upload every 6 h:
    # the block signed last before each upload is dated ~800 s ahead
    rig = run("fast", 13, rate=50, upload=6 * 3600)
    check(rig)
    assert len(rig.gw.declarations) == 2  # at 6 h and at 12 h
    assert rig.logs[-1].dropped == 0  # no reading refused by a full queue
    ps = payloads(rig.gw)
    # the clock was set back by the gateway's time at each declaration
    sets = [p for p in ps if p[1] == 3 and p[30] == ct_app.EV_CLOCK_SET]
    assert all(p[4] - p[37] < -SKEW for p in sets), [p[4] - p[37] for p in sets]
    # readings after the last correction reach the gateway
    last_decl = max(d[2] for d in rig.gw.declarations)
    assert [p for p in ps if p[3] > last_decl and p[1] in (1, 7)]

    # the same with the declaration lost on its way once: the session sends
    # it again, never the records it declares (the gateway fails the test)
    rig2 = run("fast", 13, rate=50, upload=6 * 3600, lose=[10])
    check(rig2)
    assert rig2.gw.arrivals.count(10) == 2 and rig2.gw.arrivals.count(7) == 1
    assert rig2.gw.declarations[0] == rig.gw.declarations[0] == (7, 2, 10)


def test_clock_leap_into_holdover_is_declared_and_corrected():
    # an upload every wake, blocks of two; an hour after the sync the RTC
    # leaps two days ahead: tq 1 (no sync for 24 h by its own count), beyond
    # the holdover skew. That wake's heartbeat (due by the leap) is refused,
    # the clock is set back, and the heartbeat and the block the clock set
    # closed (the leaped reading) are declared lost.
    rig = run("leap", 2, jump=(13, 2 * 86400), size=2, upload=300)
    check(rig)
    assert len(rig.gw.declarations) == 1
    ps = payloads(rig.gw)
    first, n, seq = rig.gw.declarations[0]
    q = [
        ct_cbor.decode_map(ct_record.parse_sign1(rig.gw.quarantine[s])[1])
        for s in range(first, first + n)
        if s in rig.gw.quarantine
    ]
    assert q and all(p[5] == 1 for p in q)  # refused in holdover
    sets = [p for p in ps if p[1] == 3 and p[30] == ct_app.EV_CLOCK_SET]
    st = [p[4] - p[37] for p in sets]
    big = [x for x in st if abs(x) >= 60]  # the rig's uploads take time off the RTC
    assert len(big) == 1 and -2 * 86400 - 10 <= big[0] <= -2 * 86400 + 10, st
    # the schedule follows the clock back: the wakes after it upload again
    after = [p for p in ps if p[3] > seq]
    assert len(after) >= 5 and all(p[5] == 3 for p in after)
    assert len(rig.gw.acks) >= 10


def test_clock_right_is_never_declared():
    rig = run("right", 3)
    assert not rig.gw.refused and not rig.gw.declarations
    assert sorted(rig.gw.records) == list(range(rig.gw.next))


if __name__ == "__main__":
    main(globals())
