"""ct_uplink against a scripted broker and gateway: lost PUBACKs, dropped
links mid-batch, duplicate and gapped acks, forged acks, commands."""

import hashlib

from ct_core import Core
from ct_queue import Queue
from ct_state import State
from ct_uplink import Uplink
from fakebroker import FakeBroker, Hang
from fakeclock import FakeTicks
from fakefs import FakeFs
from fakegateway import FakeGateway
from fwrun import main, raises
from umqtt.simple import MQTTClient

DEV = "tl-7f3a21"
KEY = bytes(range(32))


class FastSigner:
    """Not ECDSA: a stand-in so these tests spend their time on the uplink."""

    def sign_digest(self, h):
        return hashlib.sha256(h).digest() * 2


class Rig:
    def __init__(self, n=0, **kw):
        self.clock = FakeTicks()
        self.broker = FakeBroker("broker", self.clock)
        self.fs = FakeFs()
        self.state = State(self.fs, "st")
        self.state.begin()
        self.queue = Queue(self.fs, "q", segments=8, seg_size=2048, reserve=0, low_water=0)
        self.gw = FakeGateway(self.broker, DEV, KEY, self.clock)
        self.feeds = []
        self.up = Uplink(lambda: MQTTClient(DEV, "broker"), DEV, KEY, self.queue, self.state,
                         self.feed, ticks=self.clock, **kw)
        self.core = Core(DEV, FastSigner(), self.state, self.queue, self.up)
        self.add(n)

    def feed(self):
        self.feeds.append(self.clock.ticks_ms())

    def add(self, n, temp=450):
        for _ in range(n):
            assert self.core.enqueue(self.core.record({1: 1, 4: 1790000000, 5: 3, 10: temp}))

    def upload(self, ms=60000):
        return self.up.upload(ms)

    def acks(self, ev):
        return [e[1] for e in ev if e[0] == "ack"]


def test_everything_is_delivered_acked_and_deleted():
    r = Rig(20)
    ev = r.upload()
    assert r.queue.count() == 0
    assert sorted(r.gw.records) == list(range(20)) and r.gw.chain_errors == 0
    assert r.gw.arrivals == list(range(20))  # in order, each once
    assert r.acks(ev)[-1] == 19 and r.up.acked == 20
    assert r.broker.retained[b"ct/v1/" + DEV.encode() + b"/state"] == b"online"
    r.up.close()
    assert r.broker.retained[b"ct/v1/" + DEV.encode() + b"/state"] == b"offline"


def test_lost_puback_times_out_and_everything_is_resent():
    r = Rig(10, timeout_ms=2000)
    r.broker.lose_puback = {4}
    r.upload()
    assert r.queue.count() == 0 and sorted(r.gw.records) == list(range(10))
    assert r.up.reconnects >= 1 and r.broker.connects >= 2


def test_the_fake_client_hangs_where_umqtt_simple_would():
    # the pitfall itself: after check_msg() the socket has no timeout, and a
    # QoS 1 publish whose PUBACK is lost waits forever (here: raises Hang)
    clock = FakeTicks()
    b = FakeBroker("bare", clock)
    b.lose_puback = {1}
    c = MQTTClient("x", "bare")
    c.set_callback(lambda t, m: None)
    c.connect(True, 5)
    c.check_msg()
    raises(Hang, c.publish, b"ct/v1/x/rec", b"\xd2", False, 1)


def test_link_dropped_mid_batch_resends_in_order():
    r = Rig(30, window=8)
    r.gw.ack_every = 4  # some records are in flight, unacked, when the link drops
    r.broker.drop_on = {6, 17, 18}
    r.upload()
    assert r.queue.count() == 0 and sorted(r.gw.records) == list(range(30))
    assert r.gw.chain_errors == 0 and r.up.reconnects >= 3
    # after each reconnect the device starts again at its oldest unacked record
    restarts = [i for i in range(1, len(r.gw.arrivals)) if r.gw.arrivals[i] <= r.gw.arrivals[i - 1]]
    assert restarts, r.gw.arrivals


def test_broker_unreachable_raises_after_backoff():
    r = Rig(3)
    r.broker.down = True
    raises(OSError, r.upload, 20000)
    assert r.queue.count() == 3
    assert r.clock.slept > 0 and r.clock.ticks_ms() <= 20000 + 5000
    r.broker.down = False
    r.upload()
    assert r.queue.count() == 0


def test_refused_connects_then_success_with_backoff():
    r = Rig(5, backoff_ms=500)
    r.broker.refuse = 3
    r.upload()
    assert r.queue.count() == 0 and r.up.reconnects == 3
    assert r.clock.slept >= 500 + 1000 + 2000  # exponential


def connect_times(r):
    """Simulated time of every connect attempt the broker sees."""
    times = []
    orig = r.broker.open

    def op(timeout):
        times.append(r.clock.ticks_ms())
        return orig(timeout)

    r.broker.open = op
    return times


def test_session_failing_at_once_backs_off_like_a_failed_connect():
    # the broker takes every connection and drops it at the first record:
    # failing costs no simulated time, so only a backoff ends this upload
    r = Rig(3, backoff_ms=1000, backoff_max_ms=8000)
    r.broker.drop_on = set(range(1, 1000))
    times = connect_times(r)
    r.upload(60000)
    gaps = [b - a for a, b in zip(times, times[1:])]  # noqa: B905, RUF007
    assert gaps == [1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000, 8000], gaps
    assert r.up.reconnects == len(times) == 10 and r.clock.ticks_ms() == 60000
    assert r.queue.count() == 3
    # a zero backoff is still a backoff (1 ms, doubling): the upload ends
    r = Rig(1, backoff_ms=0)
    r.broker.drop_on = set(range(1, 100000))
    times = connect_times(r)
    r.upload(5000)
    assert r.clock.ticks_ms() == 5000 and len(times) < 20


def test_backoff_starts_again_after_a_session_that_got_acks():
    r = Rig(6)
    r.broker.drop_on = {2, 4, 6, 8, 10, 12}  # every second record drops the link
    times = connect_times(r)
    r.upload(60000)
    assert r.queue.count() == 0 and sorted(r.gw.records) == list(range(6))
    gaps = [b - a for a, b in zip(times, times[1:])]  # noqa: B905, RUF007
    assert gaps and set(gaps) == {1000}, gaps


def test_only_a_fresh_ack_gives_the_gateway_time():
    r = Rig(3)
    ev = r.upload()
    assert all(e[2] is not None for e in ev if e[0] == "ack")  # each answers a record
    assert [e[1] for e in ev if e[0] == "time"] == [r.gw.time()]
    r.up.close()  # the device sleeps
    r.clock.advance(3 * 3600 * 1000)  # hours later, the gateway does not answer
    r.gw.silent = True
    r.add(2)
    ev = r.upload(5000)
    assert ("ack", 2, None) in ev  # the retained ack: valid, but hours old
    assert [e for e in ev if e[0] == "time"] == []
    r.up.close()
    r.gw.silent = False
    ev = r.upload()
    assert ev[0] == ("ack", 2, None) and r.queue.count() == 0
    assert [e[1] for e in ev if e[0] == "time"] == [r.gw.time()]


def test_an_ack_that_answers_without_moving_gives_the_time():
    # §5.2 "Records dated ahead": the gateway refuses a record dated an hour
    # ahead (bad_time) and publishes its ack again; that ack covers nothing
    # new, but it came after the record and is newer than the retained one
    r = Rig(3)
    r.upload()
    r.up.close()
    r.clock.advance(3 * 3600 * 1000)
    r.gw.future_skew = 300
    assert r.core.enqueue(r.core.record({1: 1, 4: r.gw.time() + 3600, 5: 3, 10: 450}))
    ev = r.upload(5000)
    assert r.gw.refused and r.queue.count() == 1  # no hooks (ct_core): nothing declared
    acks = [e for e in ev if e[0] == "ack"]
    assert acks[0] == ("ack", 2, None)  # the retained one, hours old
    assert [e[1] for e in acks[1:]] == [2] * (len(acks) - 1) and acks[-1][2] is not None
    (t,) = [e[1] for e in ev if e[0] == "time"]
    assert abs(t - r.gw.time()) <= 1


def test_ack_kept_by_the_persistent_session_is_not_fresh():
    r = Rig(2)
    r.gw.silent = True
    r.upload(3000)  # stored, not acked
    r.up.close()
    r.gw.ack()  # while the device is away: retained, and queued for its session
    r.clock.advance(2 * 3600 * 1000)
    ev = r.upload()
    assert r.queue.count() == 0  # it still deletes what it covers
    assert [e for e in ev if e[0] == "ack"] == [("ack", 1, None), ("ack", 1, None)]
    assert [e for e in ev if e[0] == "time"] == []


def test_gateway_time_is_carried_to_the_end_of_the_upload():
    r = Rig(12, ack_wait_ms=60000)
    r.gw.lose = {5}  # the ack stops at 4; nothing is resent before the end
    t0 = r.clock.ticks_ms()
    ev = r.upload(20000)
    fresh = [e for e in ev if e[0] == "ack" and e[2] is not None]
    assert fresh[-1][1] == 4 and r.clock.ticks_ms() - t0 >= 20000
    (t,) = [e[1] for e in ev if e[0] == "time"]
    assert t - fresh[-1][2] >= 19 and abs(t - r.gw.time()) <= 1


def test_duplicate_and_replayed_acks_change_nothing():
    r = Rig(6)
    r.gw.duplicate = True
    r.upload()
    assert r.queue.count() == 0
    r.add(4)
    old = r.broker.retained[b"ct/v1/" + DEV.encode() + b"/ack"]
    r.gw.silent = True
    r.upload(10000)
    assert r.queue.count() == 4
    r.broker.publish(b"ct/v1/" + DEV.encode() + b"/ack", old, True)  # replay
    r.broker.publish(b"ct/v1/" + DEV.encode() + b"/ack", old, True)
    r.upload(5000)
    assert r.queue.count() == 4  # old acks delete nothing new
    r.gw.silent = False
    r.upload()
    assert r.queue.count() == 0


def test_gateway_gap_stalls_acks_until_the_record_is_resent():
    r = Rig(12, ack_wait_ms=3000)
    r.gw.lose = {4}
    r.upload()
    assert r.queue.count() == 0 and sorted(r.gw.records) == list(range(12))
    assert r.gw.arrivals.count(4) == 2
    assert [a[1] for a in r.gw.acks][:4] == [0, 1, 2, 3]


def test_batched_acks_delete_up_to_the_acked_seq():
    r = Rig(12, ack_wait_ms=3000)
    r.gw.ack_every = 5
    ev = r.upload()
    assert r.queue.count() == 0
    assert 4 in r.acks(ev) and 9 in r.acks(ev)


def test_forged_ack_is_ignored():
    r = Rig(5)
    r.gw.silent = True
    r.upload(5000)
    r.gw.records = dict(r.gw.records)
    r.gw.ack(seq=4, key=bytes(32))  # bad MAC, claims everything
    r.upload(3000)
    assert r.queue.count() == 5 and r.up.forged >= 1


def test_ack_with_another_hash_deletes_nothing():
    r = Rig(5)
    r.gw.silent = True
    r.upload(5000)
    r.gw.ack(seq=4, link=bytes(16))
    r.upload(3000)
    assert r.queue.count() == 5 and r.up.mismatched >= 1
    r.gw.ack(seq=2)
    r.upload(3000)
    assert r.queue.count() == 2


def test_ack_beyond_our_newest_record_deletes_nothing():
    r = Rig(3)
    r.gw.silent = True
    r.upload(5000)
    r.gw.records[7] = r.gw.records[2]
    r.gw.ack(seq=7)
    r.upload(3000)
    assert r.queue.count() == 3


def test_commands_are_verified_counted_and_refused():
    r = Rig(2)
    r.upload()  # the broker knows the device's session from now on
    r.gw.command({10: 600, 12: 800, 13: -500})
    ev = r.upload()
    cmds = [e[1] for e in ev if e[0] == "cmd"]
    assert len(cmds) == 1 and cmds[0][10] == 600 and cmds[0][13] == -500
    assert r.state.cmd == 1
    r2 = State(r.fs, "st")
    r2.load()
    assert r2.cmd == 1  # persisted before the app saw it
    r.gw.command({10: 60}, counter=1)  # replayed counter
    r.gw.command({10: 60}, key=bytes(32))  # forged
    ev = r.upload()
    assert [e for e in ev if e[0] == "cmd"] == [("cmd", None)]  # reported once
    r.gw.command({11: 7200})
    ev = r.upload()
    assert [e[1][11] for e in ev if e[0] == "cmd"] == [7200] and r.state.cmd == 3


def test_command_sent_while_asleep_arrives_on_next_connect():
    r = Rig(1)
    r.upload()
    r.gw.command({10: 120})  # device offline: the persistent session keeps it
    ev = r.upload()
    assert [e[1][10] for e in ev if e[0] == "cmd"] == [120]


def test_packet_id_never_overflows():
    r = Rig(40, window=40)
    made = []
    orig = r.up._new

    def new():
        c = orig()
        c.pid = 64990
        made.append(c)
        return c

    r.up._new = new
    r.upload()
    assert r.queue.count() == 0
    assert max(c.pid for c in made) < 65535


def test_watchdog_is_fed_between_blocking_calls():
    r = Rig(25, timeout_ms=3000)
    r.broker.lose_puback = {3}
    r.broker.drop_on = {9}
    r.upload()
    gaps = [b - a for a, b in zip(r.feeds, r.feeds[1:])]  # noqa: B905
    assert r.feeds and max(gaps) <= 3000 + 1000, max(gaps)


def test_upload_respects_its_time_budget():
    r = Rig(5)
    r.gw.silent = True
    t0 = r.clock.ticks_ms()
    r.upload(7000)
    assert r.clock.ticks_ms() - t0 <= 7000 + 5000  # at most one socket timeout over
    assert r.queue.count() == 5


def test_open_device_builds_the_core_from_config():
    import ct_core
    import ct_provision
    from fake_board import FakeBoard

    clock = FakeTicks()
    broker = FakeBroker("gw.local", clock)
    fs = FakeFs()
    ct_provision.set_ack_key("00" * 32, fs)
    pub = ct_provision.keygen(False, fs, cfg={}, urandom=lambda n: bytes(range(7, 7 + n)))
    gw = FakeGateway(broker, DEV, bytes(32), clock)
    board = FakeBoard(t=1000)
    cfg = {"id": DEV, "mqtt": {"host": "gw.local", "timeout_ms": 2000},
           "queue": {"segments": 8, "seg_size": 2048, "reserve": 256, "low_water": 1024}}
    seen = []

    def client():
        c = MQTTClient(DEV, "gw.local")
        seen.append(c)
        return c

    core = ct_core.open_device(cfg, board, None, fs, client)
    core.uplink._t = clock
    assert core.signer.public_key() == pub and core.state.boot == 1
    assert core.enqueue(core.record({1: 1, 4: 1790000000, 5: 3, 10: 450}))
    ev = core.upload(20000)
    assert ev[0][:2] == ("ack", 0) and core.queued()[0] == 0 and seen
    assert gw.records[0] and core.kid == DEV.encode()
    core.close()
    # the next start (a deep-sleep wake: RTC memory kept) continues the chain
    board.cause = board.DEEPSLEEP
    core = ct_core.open_device(cfg, board, None, fs, client)
    assert core.state.boot == 1 and core.state.seq == 1


if __name__ == "__main__":
    main(globals())
