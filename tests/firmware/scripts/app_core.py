"""The logger app on the real core: signed records, flash queue (fake
LittleFS), uplink through a fake broker to a scripted gateway, deep-sleep
wakes with state in RTC memory, alarms, commands and the gateway's clock."""

import ct_app
import ct_cbor
import ct_clock
import ct_core
import ct_p256
import ct_queue
import ct_record
import ct_rtcmem
import ct_state
import ct_uplink
from fake_board import FakeBoard
from fakebroker import FakeBroker
from fakeclock import FakeTicks
from fakefs import Disk, FakeFs
from fakegateway import FakeGateway
from fwrun import main
from umqtt.simple import MQTTClient

DEV = "tl-app1"
KEY = bytes(range(32))
SECRET = bytes(range(1, 33))
CFG = {"id": DEV, "interval": 300, "upload": 3600, "heartbeat": 86400,
       "alarm": {"high": 800, "low": 200, "delay": 600}}


class Rig:
    """One device with its disk, RTC memory, broker and gateway."""

    def __init__(self, temps, cfg=CFG):
        self.disk = Disk()
        self.board = FakeBoard(t=1000)
        self.ticks = FakeTicks(1000)
        self.broker = FakeBroker("broker-app", self.ticks)
        self.gw = FakeGateway(self.broker, DEV, KEY, self.ticks)
        self.signer = ct_p256.Signer(SECRET)
        self.temps = list(temps)
        self.cfg = cfg
        self.settings = {}
        self.logs = []
        self.ntp = None  # Core's NTP function, if any
        self.order = []  # ("connect", board time) per broker connection

    def probe(self):
        v = self.temps.pop(0)
        if isinstance(v, Exception):
            raise v
        return v, None

    def core(self):
        fs = FakeFs(self.disk)
        mem = ct_rtcmem.RTCMem(self.board.rtc)
        st = ct_state.State(fs, "ct/state", mem)
        q = ct_queue.Queue(fs, "ct/q", 8, 4096, 512, 2048)

        def client():
            self.order.append(("connect", self.board.t))
            return MQTTClient(DEV, "broker-app", 1883, keepalive=60)

        up = ct_uplink.Uplink(client, DEV, KEY, q, st, None, 1, 16, 2000, 3000, ticks=self.ticks)
        c = ct_core.Core(DEV, self.signer, st, q, up, None, self.ntp)
        c.start(self.board.reset_cause() == self.board.DEEPSLEEP)
        return c

    def later(self, s):
        self.board.t += s
        self.ticks.advance(s * 1000)

    def wake(self, n=1):
        for _ in range(n):
            core = self.core()
            lg = ct_app.Logger(self.cfg, self.board, core, [(0, 5, self.probe)], self.settings)
            ms = lg.cycle()
            if lg.settings_dirty:
                self.settings = dict(lg.settings)
            core.close()
            self.logs.append(lg)
            self.board.deep_sleep(ms)
            self.ticks.advance(ms)


def payloads(gw):
    return [ct_cbor.decode_map(ct_record.parse_sign1(gw.records[s])[1])
            for s in sorted(gw.records)]


def sig_structure(prot, payload):
    return (b"\x84\x6aSignature1" + ct_cbor.head_bytes(2, len(prot)) + prot + b"\x40"
            + ct_cbor.head_bytes(2, len(payload)) + payload)


def test_every_record_reaches_the_gateway_signed_and_chained():
    rig = Rig([450] * 14)
    rig.wake(14)  # 70 minutes at 5-minute intervals: two uploads
    gw = rig.gw
    seqs = sorted(gw.records)
    assert seqs == list(range(len(seqs))) and gw.chain_errors == 0
    pub = rig.signer.public_key()
    for s in seqs[:3] + seqs[-2:]:
        prot, p, sig = ct_record.parse_sign1(gw.records[s])
        ct_p256.verify(pub, sig_structure(prot, p), sig)
    ps = payloads(gw)
    assert ps[0][1] == 3 and ps[0][30] == ct_app.EV_BOOT
    readings = [p for p in ps if p[1] == 1]
    assert readings and all(p[10] == 450 and p[14] == 5 for p in readings)
    # one boot: deep-sleep wakes do not count as boots
    assert len({p[2] for p in ps}) == 1


def test_gateway_time_sets_the_clock():
    rig = Rig([450] * 3)
    rig.wake(3)
    ps = payloads(rig.gw)
    rd = [p for p in ps if p[1] == 1]
    assert rd[0][5] == 0 and rd[-1][5] == 3
    assert rd[-1][4] >= 1790000000
    assert any(p[1] == 3 and p[30] == ct_app.EV_CLOCK_SET for p in ps)


def test_alarm_goes_out_at_once_with_peak():
    rig = Rig([500, 900, 1100, 1200, 600, 500])
    rig.wake(6)
    ps = payloads(rig.gw)
    ev = [(p[30], p.get(37)) for p in ps if p[1] == 3]
    assert (7, 1200) in ev and (8, 1200) in ev
    # the alarm start and end reached the gateway without waiting an hour
    assert rig.broker.connects >= 3
    bits = [p.get(16, 0) for p in ps if p[1] == 1]
    assert bits == [0, 0, 0, 5, 4]  # the 6th reading waits for the next upload


def test_sensor_fault_recorded_as_fault():
    rig = Rig([450, Exception(3, "85 C"), 460])
    rig.gw.ack_every = 1
    rig.wake(3)
    rig.later(3600)  # force an upload of everything
    rig.temps = [470]
    rig.wake(1)
    rd = [p for p in payloads(rig.gw) if p[1] == 1]
    assert [(p.get(10), p.get(12)) for p in rd[:3]] == [(450, None), (None, 3), (460, None)]


def test_commands_from_the_gateway_apply_or_are_refused():
    rig = Rig([450] * 4)
    rig.wake(1)
    rig.gw.command({10: 600, 12: 1000})
    rig.gw.command({10: 60}, key=bytes(32))  # wrong key: refused
    rig.later(3600)
    rig.wake(1)
    assert rig.settings == {"interval": 600, "high": 1000}
    rig.later(3600)
    rig.wake(1)  # the refusal and the change are logged and uploaded
    ev = [(p[30], p.get(37)) for p in payloads(rig.gw) if p[1] == 3]
    assert (10, 1) in ev and (10, -1) in ev
    assert rig.board.slept[-1] <= 600000
    clock_sets = [e for e in ev if e[0] == 6]
    assert len(clock_sets) == 1  # the stale retained ack did not move the clock


def test_hours_old_retained_ack_never_sets_the_clock():
    rig = Rig([450] * 3)
    rig.wake()
    assert rig.logs[-1].clock.src == ct_clock.GATEWAY  # a fresh ack set it
    rig.later(5 * 3600)
    rig.board.power_cycle()  # the RTC and its sync state are gone
    rig.gw.silent = True  # the gateway stores, but does not answer
    n = len(rig.gw.records)
    rig.wake()
    lg = rig.logs[-1]
    # records went out, and the retained ack (5 h old) came back: no clock
    assert len(rig.gw.records) > n and lg.clock.src == ct_clock.UNSET
    assert not [e for e in lg.events if e[0] == ct_app.EV_CLOCK_SET]
    boot = lg.core.state.boot
    assert all(p[5] == 0 for p in payloads(rig.gw) if p[2] == boot)
    rig.gw.silent = False
    rig.later(3600)
    rig.wake()
    assert rig.logs[-1].clock.src == ct_clock.GATEWAY
    assert [e for e in rig.logs[-1].events if e[0] == ct_app.EV_CLOCK_SET]


def test_out_of_range_value_is_a_signed_fault_not_a_crash():
    rig = Rig([450, 16000, 460])  # 160 °C after calibration: not a temperature
    rig.wake(3)
    rig.later(3600)
    rig.temps = [470]
    rig.wake(1)
    rd = [p for p in payloads(rig.gw) if p[1] == 1]
    assert [(p.get(10), p.get(12)) for p in rd[:3]] == [(450, None), (None, 5), (460, None)]
    assert 14 not in rd[1]
    ev = [(p[30], p.get(37)) for p in payloads(rig.gw) if p[1] == 3]
    assert (ct_app.EV_SENSOR_FAULT, 5) in ev


def test_damaged_record_on_flash_is_declared_by_the_logger():
    rig = Rig([450] * 6)
    rig.broker.down = True
    rig.wake(2)  # boot, readings, heartbeat: all still in the queue
    rig.broker.down = False
    # flash damages the second record in the device queue
    seg = sorted(n for n in rig.disk.files if n.startswith("ct/q/s"))[0]
    b = bytearray(rig.disk.files[seg])
    n = b[0] | (b[1] << 8)
    b[10 + n + 30] ^= 1  # inside the second frame's record
    rig.disk.files[seg] = bytes(b)
    rig.later(3600)
    rig.wake(1)
    lg = rig.logs[-1]
    assert (ct_app.EV_DROPPED, 1) in lg.events
    ps = payloads(rig.gw)
    decl = [p for p in ps if p[1] == 3 and p[30] == ct_app.EV_DROPPED]
    assert [(p[37], p[38]) for p in decl] == [(1, 1)]
    assert decl[0][5] == 0  # stamped before this upload's ack set the clock
    assert rig.gw.declared == {1} and rig.gw.next > decl[0][3]  # acked past it


def test_offline_for_a_while_then_everything_is_delivered_in_order():
    rig = Rig([450] * 30)
    rig.broker.down = True
    rig.wake(20)
    assert not rig.gw.records
    rig.broker.down = False
    rig.later(3600)
    rig.wake(2)
    seqs = sorted(rig.gw.records)
    assert seqs == list(range(len(seqs))) and len(seqs) >= 20 and rig.gw.chain_errors == 0



def test_ntp_time_sets_the_clock_before_the_broker_connection():
    # TLS checks certificate dates: the clock must be right before the handshake
    r = Rig([450] * 4, dict(CFG, ntp="pool.ntp.org"))
    unix = 1790000000

    def ntp():
        r.order.append(("ntp", r.board.t))
        return unix

    r.ntp = ntp
    r.wake()
    assert [o[0] for o in r.order[:2]] == ["ntp", "connect"], r.order
    assert r.order[0][1] < unix <= r.order[1][1]  # set between NTP and the connection
    assert r.logs[-1].clock.src != ct_clock.UNSET

main(globals())
