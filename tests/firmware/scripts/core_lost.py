"""Declared losses (docs/protocol.md §5.2, §2.4 event 11 with ``lost``):
records the device can never send are found by ct_lost/ct_uplink, declared
by ct_core in a signed status record, settled by the (fake) gateway, and
the queue drains past them - with damaged frames, damaged headers, a hole
far behind the window, and a power cut at every step of such a wake."""

import hashlib

import ct_cbor
import ct_record
from ct_core import Core, CoreError
from ct_lost import Losses
from ct_queue import Queue
from ct_state import State
from ct_uplink import Uplink
from fakebroker import FakeBroker
from fakeclock import FakeTicks
from fakefs import Disk, FakeFs, PowerCut
from fakegateway import FakeGateway
from fwrun import main, raises
from umqtt.simple import MQTTClient

DEV = "tl-lost1"
KEY = bytes(range(32))
BROKER = "broker-lost"
T = 1790000000


class FastSigner:
    """Not ECDSA: a stand-in so these tests spend their time on the logic."""

    def sign_digest(self, h):
        return hashlib.sha256(h).digest() * 2


class Halt(BaseException):
    """The power is gone: ends the wake wherever it is (not an Exception,
    so the uplink cannot take it for a dropped link)."""


class Dev:
    """One wake of a device over ``disk``: mount, start, then work."""

    def __init__(self, disk, clock, cut_at=None, torn=False, window=16, segments=8,
                 seg_size=1024, **kw):
        self.fs = FakeFs(disk, cut_at, torn)
        self.clock = clock
        self.state = State(self.fs, "st")
        self.queue = Queue(self.fs, "q", segments, seg_size, 0, 0)
        self.up = Uplink(lambda: MQTTClient(DEV, BROKER), DEV, KEY, self.queue, self.state,
                         self._feed, window=window, timeout_ms=2000, ack_wait_ms=3000,
                         ticks=clock, **kw)
        self.core = Core(DEV, FastSigner(), self.state, self.queue, self.up)
        self.core.start()

    def _feed(self):
        if self.fs.dead:
            raise Halt()

    def add(self, n, temp=450):
        out = []
        for _ in range(n):
            r = self.core.record({1: 1, 4: T, 5: 3, 10: temp})
            assert self.core.enqueue(r)
            out.append(r)
        return out

    def upload(self, ms=60000):
        return self.core.upload(ms, False, lambda: (T + 60, 3))


def world():
    clock = FakeTicks()
    broker = FakeBroker(BROKER, clock)
    return Disk(), clock, broker, FakeGateway(broker, DEV, KEY, clock)


def damage(disk, rec, at, bit=0x01):
    """Flip a bit of rec's frame on disk, ``at`` bytes from the start of the
    record (negative: in the frame header; -1 is the top byte of the qid)."""
    for name in sorted(disk.files):
        b = disk.files[name]
        i = b.find(rec) if name.startswith("q/s") else -1
        if i >= 0:
            bb = bytearray(b)
            bb[i + at] ^= bit
            disk.files[name] = bytes(bb)
            return name
    raise AssertionError("record not on disk")


def fields(rec):
    return ct_cbor.decode_map(ct_record.parse_sign1(rec)[1])


def lost_events(ev):
    return [e for e in ev if e[0] == "lost"]


def settled_everything(gw, d):
    """The gateway's ack covers every seq the device signed; every seq is a
    stored record or declared lost, never both; the queue is empty."""
    assert gw.next == d.state.seq, (gw.next, d.state.seq)
    for s in range(gw.next):
        assert (s in gw.records) != (s in gw.declared), s
    assert d.queue.count() == 0 and gw.chain_errors == 0


# --- ct_lost: the counting itself --------------------------------------------------


def test_holes_between_before_and_after_records_are_found():
    lo = Losses(4)
    lo.rewind(5)  # the head record should be seq 5
    lo.record(5)
    lo.skipped(1)  # a damaged frame
    lo.record(7)
    lo.record(8)
    lo.end(11)  # ct_state's next seq: 9 and 10 were signed, are not queued
    assert lo.pending() == [(6, 6), (9, 10)]
    assert lo.due() == []  # the gateway still waits for seq 5
    lo.settled(5)
    assert lo.due() == [(6, 1)]
    assert lo.due() == []  # handed out once
    lo.settled(8)
    assert lo.due() == [(9, 2)]
    lo.rewind(5)  # the window is sent again: nothing new
    for s in (5, 7, 8):
        lo.record(s)
    lo.end(11)
    assert lo.pending() == [] and lo.due() == []


def test_head_hole_without_a_mark_counts_damaged_frames():
    lo = Losses(-1)
    lo.rewind(None)
    lo.skipped(2)
    lo.record(2)
    assert lo.due() == [(0, 2)]  # a new device: nothing settled before seq 0
    lo = Losses(-1)
    lo.rewind(None)
    lo.skipped(1)
    lo.record(9)
    assert lo.pending() == [(8, 8)] and lo.due() == []  # wait for an ack
    lo.settled(7)
    assert lo.due() == [(8, 1)]


def test_only_what_the_gateway_has_not_settled_is_declared():
    lo = Losses(3)
    lo.rewind(4)
    lo.record(8)  # 4 ... 7 missing
    lo.settled(5)  # the gateway had 4 and 5 (sent before flash lost them)
    assert lo.due() == [(6, 2)]
    lo = Losses(3)
    lo.rewind(4)
    lo.record(6)
    lo.settled(5)
    assert lo.due() == [] and lo.pending() == []


def test_a_declaration_already_queued_is_not_made_again():
    lo = Losses(3)
    lo.rewind(4)
    lo.skipped(1)
    lo.record(5)  # hole 4
    lo.record(6)
    lo.declared(4, 1)  # record 7 is the declaration an earlier wake made
    lo.record(7)
    lo.end(8)
    assert lo.due() == [] and lo.pending() == []


# --- the device ------------------------------------------------------------------------


def test_damaged_record_is_declared_and_the_ack_moves_past_it():
    disk, clock, _, gw = world()
    d = Dev(disk, clock)
    recs = d.add(8)
    damage(disk, recs[3], 30)  # a payload byte: the CRC fails, the header holds
    d = Dev(disk, clock)  # the next wake mounts the damaged queue
    assert d.queue.count() == 8 and d.state.seq == 8
    ev = d.upload()
    assert lost_events(ev) == [("lost", 3, 1)]
    assert gw.declarations == [(3, 1, 8)] and gw.declared == {3}
    assert sorted(gw.records) == [0, 1, 2, 4, 5, 6, 7, 8]
    settled_everything(gw, d)
    f = fields(gw.records[8])
    assert (f[1], f[30], f[37], f[38], f[4], f[5]) == (3, 11, 1, 3, T + 60, 3)
    assert f[6] == ct_record.chain_link(gw.records[7])  # chained like any record
    assert d.up.corrupt >= 1 and d.up.declared == 1
    # settled: later wakes declare nothing more, and seq 3 is never used again
    d = Dev(disk, clock)
    d.add(2)
    ev = d.upload()
    assert lost_events(ev) == [] and len(gw.declarations) == 1
    assert sorted(gw.records)[-2:] == [9, 10]
    settled_everything(gw, d)


def test_damaged_head_after_earlier_acks():
    disk, clock, _, gw = world()
    d = Dev(disk, clock)
    d.add(5)
    d.upload()  # 0 ... 4 acked: the queue's mark says the head is seq 5
    assert d.queue.mark == 5
    recs = d.add(5)
    damage(disk, recs[0], 40)
    d = Dev(disk, clock)
    ev = d.upload()
    assert lost_events(ev) == [("lost", 5, 1)]
    assert gw.declared == {5}
    settled_everything(gw, d)


def test_damaged_header_of_the_newest_record_is_a_hole_before_the_next():
    disk, clock, _, gw = world()
    d = Dev(disk, clock)
    recs = d.add(6)
    damage(disk, recs[5], -1, 0x80)  # its qid: the frame cannot be measured
    d = Dev(disk, clock)
    assert d.queue.count() == 5 and d.state.seq == 6  # seq 5 stays used
    d.add(1)  # seq 6, not 5
    assert d.state.seq == 7
    ev = d.upload()
    assert lost_events(ev) == [("lost", 5, 1)]
    assert sorted(gw.records) == [0, 1, 2, 3, 4, 6, 7]
    settled_everything(gw, d)


def test_lost_newest_record_is_declared_from_the_state_counter():
    disk, clock, _, gw = world()
    d = Dev(disk, clock)
    recs = d.add(4)
    damage(disk, recs[3], -1, 0x80)
    d = Dev(disk, clock)  # nothing queued after it: only ct_state knows
    ev = d.upload()
    assert lost_events(ev) == [("lost", 3, 1)]
    assert gw.declarations == [(3, 1, 4)]
    settled_everything(gw, d)


def test_damaged_header_mid_segment_keeps_the_records_after_it():
    disk, clock, _, gw = world()
    d = Dev(disk, clock, seg_size=2048)  # all in the tail segment
    recs = d.add(8)
    damage(disk, recs[2], -1, 0x80)
    d = Dev(disk, clock, seg_size=2048)
    assert d.queue.count() == 8  # the mount found frame 3 again
    ev = d.upload()
    assert lost_events(ev) == [("lost", 2, 1)]
    assert sorted(gw.records) == [0, 1, 3, 4, 5, 6, 7, 8]
    settled_everything(gw, d)


def test_damaged_header_in_an_older_segment_is_read_past():
    disk, clock, _, gw = world()
    d = Dev(disk, clock, segments=6, seg_size=600)  # about 4 records a segment
    recs = d.add(14)
    damage(disk, recs[1], -1, 0x80)  # segment 0: the mount does not look there
    damage(disk, recs[6], -2, 0x80)  # a later segment's middle
    d = Dev(disk, clock, segments=6, seg_size=600)
    ev = d.upload()
    assert lost_events(ev) == [("lost", 1, 1), ("lost", 6, 1)]
    assert gw.declared == {1, 6}
    settled_everything(gw, d)


def test_hole_far_behind_the_window_is_declared_out_of_order():
    disk, clock, _, gw = world()
    d = Dev(disk, clock, window=4, segments=12, seg_size=2048)
    recs = d.add(40)
    damage(disk, recs[0], 30)
    d = Dev(disk, clock, window=4, segments=12, seg_size=2048)
    ev = d.upload()
    assert lost_events(ev) == [("lost", 0, 1)]
    # the declaration (seq 40) went out before the records ahead of it
    assert gw.arrivals.index(40) < gw.arrivals.index(39)
    settled_everything(gw, d)


def test_ack_while_settled_on_a_declared_seq_deletes_nothing_then_resend_settles():
    disk, clock, _, gw = world()
    d = Dev(disk, clock)
    recs = d.add(8)
    damage(disk, recs[3], 30)
    d = Dev(disk, clock)
    gw.lose = {4}  # the first copy of the record after the hole goes astray
    d.upload()
    # on the way the gateway had settled up to seq 3 (declared lost, no
    # record): its ack named seq 2 with record 2's hash (§5.2)
    i = gw.ack_settled.index(3)
    assert gw.acks[i][1] == 2 and gw.acks[i][3] == ct_record.chain_link(recs[2])
    assert 3 not in [a[1] for a in gw.acks]
    assert d.up.mismatched == 0 and d.up.forged == 0 and gw.arrivals.count(4) == 2
    settled_everything(gw, d)


def test_declaration_lost_in_transit_is_sent_again_not_made_again():
    disk, clock, _, gw = world()
    d = Dev(disk, clock)
    recs = d.add(8)
    damage(disk, recs[3], 30)
    d = Dev(disk, clock)
    gw.lose = {8}  # the declaration's first copy goes astray
    ev = d.upload(2500)  # ends before the window is sent again
    assert lost_events(ev) == [("lost", 3, 1)] and gw.next == 3
    d = Dev(disk, clock)  # the next wake finds the hole and, after it, seq 8
    ev = d.upload()
    assert lost_events(ev) == [] and gw.declarations == [(3, 1, 8)]
    settled_everything(gw, d)


def test_no_declaration_without_a_clock_and_no_unsigned_seq_declared():
    disk, clock, _, gw = world()
    d = Dev(disk, clock)
    recs = d.add(4)
    damage(disk, recs[1], 30)
    d = Dev(disk, clock)
    ev = d.core.upload(20000)  # no now(): the core cannot stamp a record
    assert lost_events(ev) == [] and gw.next == 1 and d.queue.count() == 3
    raises(CoreError, d.core.declare_lost, 3, 2, T, 3)  # seq 4 was never signed
    raises(CoreError, d.core.declare_lost, 1, 0, T, 3)
    ev = d.upload()
    assert lost_events(ev) == [("lost", 1, 1)]
    settled_everything(gw, d)


def test_queue_written_before_marks_still_declares_counted_holes():
    # a ptr file without a mark (CTq1): the head's seq is not known; a
    # damaged head frame counts one seq, declared once the ack shows it
    disk, clock, _, gw = world()
    d = Dev(disk, clock)
    d.add(3)
    d.upload()
    recs = d.add(3)
    d.queue.mark = 0xFFFFFFFF
    d.queue._write_ptr()
    damage(disk, recs[0], 30)
    d = Dev(disk, clock)
    ev = d.upload()
    assert lost_events(ev) == [("lost", 3, 1)]
    settled_everything(gw, d)


# --- power cuts -------------------------------------------------------------------------


def _before(torn):
    """A device whose queue has a damaged record (seq 4) behind acked ones."""
    disk, clock, _, gw = world()
    d = Dev(disk, clock, torn=torn)
    d.add(3)
    d.upload()
    recs = d.add(5)
    damage(disk, recs[1], 30)
    return disk, clock, gw


def _wake(disk, clock, cut_at, torn):
    """A logger wake: mount, one reading, upload. True if the power went."""
    try:
        d = Dev(disk, clock, cut_at, torn)
        d.add(1)
        d.upload()
    except (PowerCut, Halt):
        return True
    return d.fs.dead


def _cut_everywhere(torn):
    disk, clock, gw = _before(torn)
    assert not _wake(disk, clock, None, torn)  # the whole wake, to count its steps
    cut = 1
    while True:
        disk, clock, gw = _before(torn)
        if not _wake(disk, clock, cut, torn):
            break  # past the last step
        for _ in range(3):  # power back: wakes until settled
            d = Dev(disk, clock, None, torn)
            d.upload()
            if d.queue.count() == 0:
                break
        settled_everything(gw, d)
        assert gw.declared == {4}, (cut, gw.declared)
        # once, even after a cut between queueing the declaration and sending it
        assert [x[:2] for x in gw.declarations] == [(4, 1)], (cut, gw.declarations)
        cut += 1
    return cut


def test_power_cut_at_every_step_of_a_declaring_wake():
    assert _cut_everywhere(False) > 30


def test_power_cut_at_every_step_of_a_declaring_wake_torn_writes():
    assert _cut_everywhere(True) > 30


if __name__ == "__main__":
    main(globals())
