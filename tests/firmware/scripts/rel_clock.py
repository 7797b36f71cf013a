"""The fault suite's clock part (issue 12): a logger whose clock is wrong.

The logger (ct_app with ct_block, the real core, queue and uplink, _rig.py)
runs for hours against the scripted gateway with

* ``fast``: its clock set 4 minutes ahead and running fast (4 %: 12 s a wake),
  set back by each hourly upload's fresh ack (tq 3);
* ``slow``: 7 minutes behind and running slow (2 %), set forward the same way;
* ``ntp``: its clock never set at power-on, and no broker at the first
  upload: NTP first answers an impossible time (the ESP32's 2000 epoch,
  refused), then a time 90 s ahead of the gateway's (tq 2), which the
  gateway's ack then corrects (tq 3);
* ``unset``: its clock never set, no NTP, no broker for an hour: tq 0
  readings (kind 1, timed by the count from power-on) until the first
  fresh ack sets the clock.

Each run checks what the device must do (docs/protocol.md §2.1, §2.4 event
6, §2.8): every reading reaches the gateway once, in the order measured,
the chain intact; every clock step is a clock-set record whose ``detail`` is
the old time, signed after the open block is closed; tq 0 readings are kind
1. It prints ``REL-CLOCK {json}`` with the records in hex, the device's
public key and ack key: tests/reliability/test_device_faults.py sends the
very bytes to a real gateway and checks its verdict. ct_p256 signs with RFC
6979 nonces, so both interpreters print the same bytes.
"""

import hashlib
import json

import ct_app
import ct_record
from _rig import CFG, KEY, Rig, payloads, readings
from fwrun import main

HOURS = 6
T_GW = 1790000000  # FakeGateway.time() at ticks 0


def run(name, hours=HOURS, rate=0, down_wakes=0, **kw):
    """``rate``: how much faster the RTC runs than real time, in parts per
    thousand; ``down_wakes``: the uploads of the first wakes find no broker."""
    cfg = dict(CFG)
    cfg["id"] = "tl-clk-" + name
    if kw.get("ntp") is not None:
        cfg["ntp"] = "pool.example"
    n = hours * 12 + 2
    rig = Rig(
        [300 + i for i in range(n)],
        size=12,
        cfg=cfg,
        dev=cfg["id"],
        secret=hashlib.sha256(cfg["id"].encode()).digest(),
        **kw,
    )
    for i in range(hours * 12):
        rig.broker.down = i < down_wakes
        rig.wake(1)
        # the RTC times the sleep: real (the gateway's) time runs apart from it
        rig.ticks.advance(-rig.board.slept[-1] * rate // 1000)
    rig.flush()
    check(rig)
    ps = payloads(rig.gw)
    out = {
        "test": name,
        "dev": cfg["id"],
        "pub": rig.signer.public_key().hex(),
        "ack_key": KEY.hex(),
        "records": [rig.gw.records[s].hex() for s in sorted(rig.gw.records)],
        "tq": [p[5] for p in ps],
        "clock_sets": [(p[3], p[4], p[37]) for p in ps if p[1] == 3 and p[30] == 6],
        "measured": len(rig.measured),
    }
    print("REL-CLOCK " + json.dumps(out))
    return rig, ps


def check(rig):
    gw = rig.gw
    seqs = sorted(gw.records)
    assert seqs == list(range(len(seqs))) and gw.chain_errors == 0
    got = [r[2] for r in readings(gw)]
    assert got == rig.measured, (got, rig.measured)  # each once, in the order measured
    ps = payloads(gw)
    for i, p in enumerate(ps):
        if p[1] == 7:
            assert p[5] != 0  # §2.8 and D35: never a block across an unset clock
        if p[1] == 3 and p[30] == ct_app.EV_CLOCK_SET:
            assert p[5] in (2, 3)
            # the block open before the step was signed before it: the last
            # reading before the clock-set record is at or before the old time
            before = [q for q in ps[:i] if q[1] in (1, 7)]
            if before:
                last = before[-1]
                end = last[4] + (len(last[18]) // 2 - 1) * last[17] if last[1] == 7 else last[4]
                assert end <= p[37], (end, p[37])


def steps(ps):
    return [(p[4] - p[37]) for p in ps if p[1] == 3 and p[30] == ct_app.EV_CLOCK_SET]


def test_fast_clock_is_set_back_by_each_fresh_ack():
    _, ps = run("fast", skew=-240, rate=40)
    st = steps(ps)
    assert len(st) >= HOURS - 1 and st[0] <= -240 and all(s < -2 for s in st), st
    assert all(p[5] == 3 for p in ps)  # synced within 24 h throughout


def test_slow_clock_is_set_forward_by_each_fresh_ack():
    _, ps = run("slow", skew=420, rate=-20)
    st = steps(ps)
    assert len(st) >= HOURS - 1 and st[0] >= 420 and all(s > 2 for s in st), st


class Ntp:
    """An NTP server: first the ESP32's epoch (a board whose RTC says 2000),
    then a time 90 s ahead of the gateway's."""

    def __init__(self):
        self.rig = None
        self.asked = 0

    def __call__(self):
        self.asked += 1
        if self.asked == 1:
            return 946684800
        return self.rig.gw.time() + 90


def test_ntp_sets_the_clock_then_the_gateway_corrects_it():
    ntp = Ntp()
    cfg_rig = {"synced": False, "ntp": ntp, "down_wakes": 1}
    # the rig is made inside run(); the NTP answer needs its gateway's clock
    orig = Rig.__init__

    def init(self, *a, **kw):
        orig(self, *a, **kw)
        ntp.rig = self

    Rig.__init__ = init
    try:
        _, ps = run("ntp", **cfg_rig)
    finally:
        Rig.__init__ = orig
    assert ntp.asked >= 2
    sets = [p for p in ps if p[1] == 3 and p[30] == ct_app.EV_CLOCK_SET]
    assert [p[5] for p in sets][:2] == [2, 3], [p[5] for p in sets]
    assert sets[0][37] < 1700000000  # the count from power-on: the clock was unset
    assert -92 <= sets[1][4] - sets[1][37] <= -88  # NTP's 90 s, taken back by the gateway
    tq0 = [p for p in ps if p[5] == 0]
    assert tq0 and all(p[1] in (1, 3) for p in tq0)  # no block while unset


def test_unset_clock_readings_are_kind_1_until_the_first_fresh_ack():
    rig, ps = run("unset", synced=False, down_wakes=12)  # no broker for the first hour
    first_set = next(i for i, p in enumerate(ps) if p[1] == 3 and p[30] == 6)
    assert all(p[5] == 0 for p in ps[:first_set])
    assert all(p[1] != 7 for p in ps[:first_set])
    assert all(p[5] == 3 for p in ps[first_set:])
    assert ps[first_set][37] < 1700000000 <= ps[first_set][4]
    assert ct_record.record_seq(rig.gw.records[0]) == 0


if __name__ == "__main__":
    main(globals())
