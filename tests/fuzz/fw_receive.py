"""The device's receive path against hostile acks and commands (docs/protocol.md §5.2, §5.3).

Runs unchanged under CPython (tests/fuzz/test_firmware.py imports it and feeds
it hypothesis inputs) and under the real MicroPython (the wasm build, through
tests/firmware/harness.py: test_firmware.py appends ``run_corpus`` calls for a
fixed corpus of mutated messages, one chunk per batch).

A message arrives on the ack or the cmd topic; ``Device.receive`` does what
the uplink does with it (``Uplink._process``: ``ct_record.verify_mac0``, the
ack's queue walk, the command counter) and then what the logger does with a
command that passed (``Logger._on_cmd``: limits, calibration, time, the update
offer of ``ct_ota.Updater.offer``). None of
it may raise: an exception there would end the wake cycle of a device that
then sleeps with the message still retained on the broker. ``check_mac0``
holds the documented contract of the parser itself: only ``MacError``.
"""

import hashlib

import ct_app
import ct_ota
import ct_record
from ct_core import Core
from ct_queue import Queue
from ct_state import State
from ct_uplink import Uplink
from fake_board import FakeBoard, FakeCore
from fakeclock import FakeTicks
from fakefs import FakeFs

try:
    import time

    _ticks = time.ticks_ms
    _diff = time.ticks_diff
except AttributeError:  # CPython
    import time

    def _ticks():
        return int(time.monotonic() * 1000)

    def _diff(a, b):
        return a - b


DEV = "tl-7f3a21"
KEY = bytes(range(32))
CASE_MS = 2000
CFG = {
    "interval": 300,
    "upload": 3600,
    "heartbeat": 86400,
    "alarm": {"high": 800, "low": 200, "delay": 600},
}


class FastSigner:
    """Not ECDSA: the queue only needs records that parse."""

    def sign_digest(self, h):
        return hashlib.sha256(h).digest() * 2


def _probe():
    return 450, None


class Device:
    def __init__(self):
        self.fs = FakeFs()
        self.state = State(self.fs, "st")
        self.state.begin()
        self.queue = Queue(self.fs, "q", segments=4, seg_size=1024, reserve=0, low_water=0)
        self.up = Uplink(lambda: None, DEV, KEY, self.queue, self.state, ticks=FakeTicks())
        self.core = Core(DEV, FastSigner(), self.state, self.queue, self.up)
        for i in range(4):
            self.core.enqueue(self.core.record({1: 1, 4: 1790000000 + i, 5: 3, 10: 450}))
        ota = ct_ota.Updater(FakeFs(), "", DEV, KEY, b"\x04" + bytes(64), ticks=FakeTicks())
        self.app = ct_app.Logger(
            CFG, FakeBoard(t=1790000000), FakeCore(), [(0, 7, _probe)], None, ota
        )

    def receive(self, on_cmd, msg):
        """One message from the broker: the uplink's handling, then the logger's."""
        up = self.up
        up._events = []
        up._inbox.append((up.t_cmd if on_cmd else up.t_ack, msg, 0, 0, 3))
        up._process()
        events, up._events = up._events, None
        for ev in events:
            if ev[0] == "cmd":
                self.app._on_cmd(ev[1])
        return events


def queued(dev):
    """The records in the device's queue, oldest first."""
    out = []
    c = dev.queue.head()
    while c is not None:
        rec, c = dev.queue.read(c)
        if rec is None:
            break
        out.append(rec)
    return out


def genuine(dev):
    """(on_cmd, message) pairs a real gateway sends this device: acks of its queued
    records (and one with a wrong link), settings, calibration, time and update commands."""
    out = []
    for rec in queued(dev):
        seq = ct_record.record_seq(rec)
        out.append(
            (
                False,
                ct_record.mac0({1: seq, 2: 1790000100, 3: ct_record.chain_link(rec)}, "gw-1", KEY),
            )
        )
    out.append((False, ct_record.mac0({1: 1, 2: 1790000100, 3: bytes(16)}, "gw-1", KEY)))
    pts = b"\xff\xff\xf8\x3d\xff\xff\xf8\x30\x00\x00\x09\xcf\x00\x00\x09\xc4"
    for fields in (
        {1: 5, 10: 600, 12: 1000, 13: 100, 14: 900},
        {1: 6, 16: 0, 17: 1042, 18: pts},
        {1: 7, 15: 1790003600},
        {1: 8, 11: 7200, 19: pts[:8], 16: 1, 17: 9},
        {1: 9, 20: 12, 21: bytes(32), 22: 4096},
    ):
        out.append((True, ct_record.mac0(fields, "gw-1", KEY)))
    return out


def check_mac0(msg):
    """ct_record.verify_mac0 raises MacError with a message, or returns (kid, fields)."""
    try:
        kid, fields = ct_record.verify_mac0(msg, KEY)
    except ct_record.MacError as e:
        if not str(e):
            raise AssertionError("MacError without a message")
        return None
    if type(kid) is not bytes or type(fields) is not dict:
        raise AssertionError("verify_mac0 returned %r" % ((kid, fields),))
    return fields


def one(dev, on_cmd, msg):
    """Both checks on one message; returns None or a failure text."""
    t0 = _ticks()
    try:
        check_mac0(msg)
        dev.receive(on_cmd, msg)
    except Exception as e:
        return "%s: %s" % (type(e).__name__, e)
    ms = _diff(_ticks(), t0)
    if ms > CASE_MS:
        return "took %d ms" % ms
    return None


_dev = None
tried = 0
failed = 0


def run_corpus(path, first, count):
    """Inputs first .. first + count - 1 of a corpus file (lines "A hex" or "C hex")."""
    global _dev, tried, failed
    if _dev is None:
        _dev = Device()
    with open(path) as f:
        lines = f.read().split("\n")
    for i in range(first, min(first + count, len(lines))):
        line = lines[i]
        if not line:
            continue
        msg = bytes.fromhex(line[2:])
        why = one(_dev, line[0] == "C", msg)
        tried += 1
        if why is not None:
            failed += 1
            print("FAIL %d %s %s" % (i, why, line[:200]))
            _dev = Device()  # start clean after a failure
    print("FUZZ-TRIED %d FAILED %d" % (tried, failed))
