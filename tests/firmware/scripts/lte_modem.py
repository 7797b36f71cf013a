"""ct_lte against the fake SIM7080G (fake_sim7080): power-on by PWRKEY, AT
setup, registration that takes time, PPP dial, PSM between uploads, errors,
and uploads through the core over LTE, with the network lost mid-upload."""

import hashlib

import ct_lte
from ct_core import Core
from ct_queue import Queue
from ct_state import State
from ct_uplink import Uplink
from fake_sim7080 import FakePPP, FakeSim7080, decode_t3324, decode_t3412
from fakebroker import FakeBroker
from fakeclock import FakeTicks
from fakefs import FakeFs
from fakegateway import FakeGateway
from fwrun import main, raises
from umqtt.simple import MQTTClient

DEV = "tl-lte-1"
KEY = bytes(range(32))
CFG = {"apn": "iot.example", "psm_tau": 7200, "psm_active": 10}


def rig(cfg=None, **kw):
    clock = FakeTicks(1000)
    m = FakeSim7080(clock, **kw)
    lte = ct_lte.Lte(m.uart, m.pin, FakePPP, cfg or CFG, ticks=clock)
    return clock, m, lte


def test_timer_bits_round_up_and_decode():
    assert ct_lte.t3412_bits(7200) == "00001100"  # 12 x 10 min
    assert ct_lte.t3324_bits(10) == "00000101"  # 5 x 2 s
    assert ct_lte.t3324_bits(None) == "11100000"  # deactivated
    for s in (1, 2, 59, 60, 61, 900, 3600, 3601, 86400, 10 * 86400):
        got = decode_t3412(ct_lte.t3412_bits(s))
        assert got >= s and got <= max(2 * s, s + 2), (s, got)
    for s in (0, 1, 2, 30, 62, 61 * 60, 3 * 3600):
        got = decode_t3324(ct_lte.t3324_bits(s))
        assert got >= s, (s, got)


def test_cold_start_pulses_pwrkey_registers_and_dials():
    clock, m, lte = rig()
    assert m.power == "off"
    t0 = clock.ticks_ms()
    lte.up()
    assert m.boots == 1 and len(m.pin.pulses) == 1
    assert 1000 <= m.pin.pulses[0][1] < 1200  # on, never long enough to mean off
    # registration took the network's time, and the device waited for it
    assert clock.ticks_ms() - t0 >= m.boot_ms + m.reg_ms
    assert lte.connected() and m.data and m.ppp.state == "up"
    assert lte.rssi() == -113 + 2 * 18
    log = m.log
    for c in (
        "ATE0",
        "AT+CMEE=1",
        "AT+CPIN?",
        "AT+CNMP=38",
        "AT+CMNB=1",
        'AT+CGDCONT=1,"IP","iot.example"',
        "AT+CEREG=4",
        'AT+CPSMS=1,,,"00001100","00000101"',
        "AT+CSQ",
        "ATD*99***1#",
    ):
        assert c in log, (c, log)
    assert log.index("ATE0") < log.index("AT+CEREG?") < log.index("ATD*99***1#")
    assert m.pdp[1] == ("IP", "iot.example")
    assert lte.psm_granted == "00000101"  # +CEREG (n=4) carries the granted active time


def test_every_wait_feeds_the_watchdog():
    clock = FakeTicks(1000)
    m = FakeSim7080(clock, reg_ms=45000)
    feeds = []
    lte = ct_lte.Lte(
        m.uart, m.pin, FakePPP, CFG, ticks=clock, feed=lambda: feeds.append(clock.ticks_ms())
    )
    t0 = clock.ticks_ms()
    lte.up()
    lte.down()
    times = [t0] + feeds + [clock.ticks_ms()]  # noqa: RUF005 - no [*x] in MicroPython
    gap = max(times[i + 1] - times[i] for i in range(len(times) - 1))
    assert clock.ticks_ms() - t0 > 45000 and gap <= 2000, gap


def test_down_hangs_up_and_the_modem_sleeps_in_psm_then_wakes_registered():
    clock, m, lte = rig()
    lte.up()
    lte.down()
    assert not m.data and not m.call and m.power == "on"
    clock.advance(9000)
    m.step()
    assert m.power == "on"  # still inside the granted active time (10 s)
    clock.advance(2000)
    m.step()
    assert m.power == "psm" and m.psm_entries == 1
    # the next upload: one pulse wakes it, no boot, no attach wait
    t0 = clock.ticks_ms()
    lte.up()
    assert m.boots == 1 and len(m.pin.pulses) == 2
    assert clock.ticks_ms() - t0 < m.reg_ms
    assert lte.connected()
    lte.down()


def test_network_without_psm_means_power_down_after_the_upload():
    clock, m, lte = rig(grant_psm=False)
    lte.up()
    assert lte.psm_granted == ""
    lte.down()
    assert m.power == "off" and m.power_downs == 1  # never left idling at ~10 mA
    clock.advance(60000)
    lte.up()
    assert m.boots == 2 and lte.connected()


def test_sleep_off_powers_down_and_boots_again():
    _clock, m, lte = rig({"apn": "a", "sleep": "off"})
    lte.up()
    assert "AT+CPSMS=0" in m.log
    lte.down()
    assert m.power == "off" and m.power_downs == 1 and "AT+CPOWD=1" in m.log
    lte.up()
    assert m.boots == 2 and lte.connected()


def test_modem_powered_down_by_pwrkey_when_it_does_not_answer():
    _clock, m, lte = rig({"apn": "a", "sleep": "off"})
    lte.up()
    m.cmee = 0
    m._c_cpowd = lambda q, arg, raw: None  # a hung modem: no answer at all
    lte.down()
    assert m.pin.pulses[-1][1] >= 1200 and m.power == "off"


def test_no_sim_is_a_clear_error_and_down_still_works():
    _, _, lte = rig(sim=False)
    e = raises(OSError, lte.up)
    assert "+CME ERROR: 10" in str(e), e
    assert isinstance(e, ct_lte.LteError)
    lte.down()
    assert not lte.connected()


def test_locked_sim_is_a_clear_error_without_waiting_for_registration():
    clock, m, lte = rig(sim="pin")
    t0 = clock.ticks_ms()
    e = raises(ct_lte.LteError, lte.up)
    assert e.args[0] == 13 and "SIM PIN" in str(e), e
    assert clock.ticks_ms() - t0 < m.boot_ms + 5000
    assert "AT+CEREG?" not in m.log


def test_registration_denied_fails_fast():
    clock, m, lte = rig(reg_stat=3)
    t0 = clock.ticks_ms()
    e = raises(OSError, lte.up)
    assert e.args[0] == 111, e
    assert clock.ticks_ms() - t0 < m.boot_ms + m.reg_ms + 5000
    assert "ATD*99***1#" not in m.log  # never dialled


def test_no_coverage_times_out_after_reg_ms():
    clock, m, lte = rig({"apn": "a", "reg_ms": 30000})
    m.net_ok = False
    t0 = clock.ticks_ms()
    e = raises(OSError, lte.up)
    assert e.args[0] == 110
    took = clock.ticks_ms() - t0
    assert 30000 <= took < 30000 + m.boot_ms + 6000, took


def test_bad_configuration_is_refused():
    clock = FakeTicks()
    m = FakeSim7080(clock)
    for bad in (
        {"sleep": "nap"},
        {"rat": "5g"},
        {"pwrkey_on_ms": 1500},
        {"pwrkey_on_ms": 500},
        {"pwrkey_off_ms": 1000},
    ):
        raises(ct_lte.LteError, ct_lte.Lte, m.uart, m.pin, FakePPP, bad, clock)


def test_urcs_during_a_command_are_not_its_answer():
    _clock, m, lte = rig()
    lte.up()
    lte.down()
    m.urc("+CEREG: 5")  # arrives before the next command's answer
    m.urc("+CGEV: NW PDN DEACT 1")
    r = lte.at.cmd("+CSQ")
    assert r[0].startswith("+CSQ:") and r[-1] == "OK"
    assert "+CEREG: 5" in lte.at.urcs and "+CGEV: NW PDN DEACT 1" in lte.at.urcs
    lte._urcs()
    assert lte.stat == 5


def test_line_noise_is_skipped_and_the_logs_stay_bounded():
    _, m, lte = rig()
    lte.up()
    lte.down()
    m.out += b"\r\n\xff\xfe\x80garbage\r\n"  # what a UART picks up at power-up
    r = lte.at.cmd("+CSQ")
    assert r[-1] == "OK"
    for _ in range(40):
        lte.at.cmd("")
        m.urc("+CGEV: ME PDN ACT 1")
    assert len(lte.at.log) <= 16 and len(lte.at.urcs) <= 16


def test_unknown_command_and_bad_parameters_are_errors():
    _clock, _m, lte = rig()
    lte.up()
    lte.down()
    e = raises(OSError, lte.at.cmd, "+CNMP=7")
    assert "+CME ERROR: 50" in str(e)
    e = raises(OSError, lte.at.cmd, "+NOSUCH")
    assert "ERROR" in str(e)
    lte.at.cmd("")  # the channel still works


def test_escape_sequence_when_ppp_leaves_the_modem_in_data_mode():
    _clock, m, lte = rig()
    lte.up()
    p = lte._ppp
    p.disconnect = lambda: None  # the LCP terminate never reached the modem
    lte.down()
    assert not m.data and not m.call  # +++ (1 s guards) then ATH
    assert "ATH" in m.log


def test_a_reset_mid_upload_leaves_the_modem_in_data_mode_and_the_next_boot_recovers():
    clock, m, lte = rig()
    lte.up()
    assert m.data
    # the ESP32 resets (watchdog, brown-out) with PPP up: no down(), the
    # modem stays in data mode and AT goes nowhere
    clock.advance(5000)
    lte2 = ct_lte.Lte(m.uart, m.pin, FakePPP, CFG, ticks=clock)
    lte2.up()
    assert lte2.connected() and m.boots == 1 and m.power_downs == 0
    assert m.log.count("ATH") >= 1  # the stale call was hung up first
    lte2.down()
    assert not m.data


def test_dial_without_registration_is_no_carrier():
    _clock, _m, lte = rig()
    lte.power_on()
    lte.at.cmd("E0")
    e = raises(OSError, lte.at.cmd, "D*99***1#", 5000, ("CONNECT",))
    assert "NO CARRIER" in str(e)


def test_app_pdp_urcs():
    _clock, m, lte = rig()
    lte.up()
    lte.down()
    lte.at.cmd("+CNACT=0,1")
    lte.at.drain(100)
    assert "+APP PDP: 0,ACTIVE" in lte.at.urcs
    m.lose_network()
    lte.at.drain(100)
    assert "+APP PDP: 0,DEACTIVE" in lte.at.urcs and "+CEREG: 2" in lte.at.urcs


# --- uploads through the core over LTE ---------------------------------------------


class FastSigner:
    """Not ECDSA: a stand-in so these tests spend their time on the uplink."""

    def sign_digest(self, h):
        return hashlib.sha256(h).digest() * 2


class Truck:
    """A logger whose uplink is the fake modem; the broker is reachable only
    while the PPP link is up (faked at the socket level)."""

    def __init__(self, n, cfg=None):
        self.clock = FakeTicks(1000)
        self.modem = FakeSim7080(self.clock)
        self.broker = FakeBroker("lte-broker", self.clock)
        self.broker.down = True
        self.gw = FakeGateway(self.broker, DEV, KEY, self.clock)
        self.fs = FakeFs()
        self.state = State(self.fs, "st")
        self.state.begin()
        self.queue = Queue(self.fs, "q", segments=8, seg_size=2048, reserve=0, low_water=0)
        self.lte = ct_lte.Lte(
            self.modem.uart, self.modem.pin, self.ppp, cfg or CFG, ticks=self.clock
        )
        self.up = Uplink(
            lambda: MQTTClient(DEV, "lte-broker"),
            DEV,
            KEY,
            self.queue,
            self.state,
            ticks=self.clock,
            window=8,
        )
        self.core = Core(DEV, FastSigner(), self.state, self.queue, self.up, self.lte)
        self.lose_after = None
        self.seen = 0
        gw_pub = self.broker.on_publish

        def on_publish(topic, msg):
            gw_pub(topic, msg)
            if topic.endswith(b"/rec"):
                self.seen += 1
                if self.lose_after is not None and self.seen == self.lose_after:
                    self.modem.lose_network()

        self.broker.on_publish = on_publish
        self.add(n)

    def ppp(self, uart):
        p = FakePPP(uart)

        def on_up():
            self.broker.down = False

        def on_down():
            self.broker.down = True
            self.broker.drop()

        p.on_up = on_up
        p.on_down = on_down
        return p

    def add(self, n):
        for _ in range(n):
            assert self.core.enqueue(self.core.record({1: 1, 4: 1790000000, 5: 3, 10: 450}))

    def queued_seqs(self):
        import ct_record

        out = []
        c = self.queue.head()
        while c is not None:
            rec, nxt = self.queue.read(c)
            if rec is None:
                break
            out.append(ct_record.record_seq(rec))
            c = nxt
        return out


def test_upload_over_lte_delivers_acks_and_sleeps():
    tr = Truck(12)
    ev = tr.core.upload(60000)
    assert tr.queue.count() == 0 and sorted(tr.gw.records) == list(range(12))
    assert tr.gw.chain_errors == 0
    assert [e[1] for e in ev if e[0] == "ack"][-1] == 11
    assert not tr.lte.connected() and tr.broker.down  # PPP closed after the upload
    tr.clock.advance(11000)
    tr.modem.step()
    assert tr.modem.power == "psm"


def test_network_lost_mid_upload_loses_nothing_and_acks_nothing_unacked():
    tr = Truck(20)
    tr.gw.ack_every = 3  # records in flight, unacked, when the cell goes
    tr.lose_after = 10
    tr.core.upload(20000)  # partial: the link came up, then died
    assert tr.modem.stat == 2 and not tr.lte.connected()
    left = tr.queued_seqs()
    # the device deleted only what a gateway ack it received covered
    assert tr.up.acked == 20 - len(left) and tr.up.acked <= tr.gw.last_acked + 1
    assert left == list(range(20 - len(left), 20)) and len(left) >= 20 - 9
    assert tr.up.reconnects >= 1
    # the next wake: still no network -> OSError, the app backs off; queue intact
    tr.lose_after = None
    raises(OSError, tr.core.upload, 20000)
    assert tr.queued_seqs() == left
    # coverage returns: the following wake delivers everything, in order
    tr.modem.restore_network(0)
    tr.add(3)
    tr.core.upload(60000)
    assert tr.queue.count() == 0
    assert sorted(tr.gw.records) == list(range(23)) and tr.gw.chain_errors == 0


def test_network_lost_before_any_connection_raises_and_keeps_the_queue():
    tr = Truck(5, {"apn": "iot.example", "reg_ms": 20000})
    tr.modem.net_ok = False
    e = raises(OSError, tr.core.upload, 20000)
    assert e.args[0] == 110
    assert tr.queued_seqs() == [0, 1, 2, 3, 4] and not tr.gw.records


_MADE = []  # what _Machine built


class _Machine:
    """Just enough of ``machine`` for ct_main.open_lte."""

    class UART:
        def __init__(self, n, **kw):
            _MADE.append(("uart", n, kw))

    class Pin:
        OUT = 1
        IN = 0
        PULL_UP = 2

        def __init__(self, n, mode=0, pull=None, value=None):
            self.n = n
            self.v = 0
            _MADE.append(("pin", n, mode))

        def value(self, v=None):
            if v is None:
                return self.v
            self.v = v


class _Board:
    def __init__(self, pins):
        self.pins = pins

    def feed(self):
        pass


class _Network:
    PPP = FakePPP


def test_main_builds_the_lte_uplink_from_config_and_the_pin_map():
    import sys

    sys.modules["machine"] = _Machine
    import ct_main

    pins = {"modem_tx": 17, "modem_rx": 18, "modem_pwrkey": 16}
    cfg = {"uplink": "lte", "lte": {"apn": "iot.example", "uart": 2, "sleep": "off"}}
    lte = ct_main.open_lte(cfg, _Board(pins), _Network)
    assert isinstance(lte, ct_lte.Lte) and lte.apn == "iot.example" and lte.sleep == "off"
    uart = [m for m in _MADE if m[0] == "uart"][-1]
    assert uart[1] == 2 and uart[2]["tx"] == 17 and uart[2]["rx"] == 18
    assert uart[2]["baudrate"] == 115200
    assert ("pin", 16, 1) in _MADE
    assert lte._pin.value() == 0  # PWRKEY released (NPN off) until a pulse
    e = raises(ct_main.MainError, ct_main.open_lte, cfg, _Board({"modem_tx": 17}), _Network)
    assert "modem_rx" in str(e)
    raises(ct_lte.LteError, ct_main.open_lte, {"lte": {"sleep": "never"}}, _Board(pins), _Network)
    ct_main._CONFIG = "/tmp/ct_config_lte.json"
    with open(ct_main._CONFIG, "w") as f:
        f.write('{"id": "tl-1", "role": "logger", "uplink": "lte"}')
    assert ct_main.load_config()["uplink"] == "lte"
    with open(ct_main._CONFIG, "w") as f:
        f.write('{"id": "tl-1", "role": "logger", "uplink": "lora"}')
    e = raises(ct_main.MainError, ct_main.load_config)
    assert "uplink" in str(e)


def test_logger_over_lte_retries_at_a_later_wake_after_no_coverage_or_a_lost_link():
    import ct_app
    import ct_rtcmem
    from fake_board import FakeBoard
    from fakefs import Disk

    clock = FakeTicks(1000)
    modem = FakeSim7080(clock)
    broker = FakeBroker("lte-app", clock)
    broker.down = True
    gw = FakeGateway(broker, DEV, KEY, clock)
    board = FakeBoard(t=1790000000)
    disk = Disk()
    cfg = {
        "id": DEV,
        "interval": 300,
        "upload": 3600,
        "heartbeat": 86400,
        "lte": {"apn": "iot.example", "reg_ms": 20000},
    }

    def ppp(uart):
        p = FakePPP(uart)

        def up():
            broker.down = False

        def down():
            broker.down = True
            broker.drop()

        p.on_up = up
        p.on_down = down
        return p

    def wake():
        # what ct_main builds after every deep-sleep wake: a new core, a new
        # Lte on the same (sleeping or running) modem
        fs = FakeFs(disk)
        st = State(fs, "ct/state", ct_rtcmem.RTCMem(board.rtc))
        q = Queue(fs, "ct/q", 8, 4096, 512, 2048)
        lte = ct_lte.Lte(modem.uart, modem.pin, ppp, cfg["lte"], ticks=clock)
        up = Uplink(lambda: MQTTClient(DEV, "lte-app"), DEV, KEY, q, st, ticks=clock)
        core = Core(DEV, FastSigner(), st, q, up, lte)
        core.start(board.reset_cause() == board.DEEPSLEEP)
        lg = ct_app.Logger(cfg, board, core, [(0, None, lambda: (450, None))])
        ms = lg.cycle()
        n = q.count()
        core.close()
        board.deep_sleep(ms)  # advances the board's clock
        clock.advance(ms)
        return lg, n

    def wake_until_upload(most=3):
        """Wake until a wake tries an upload (it talks to the modem)."""
        for _ in range(most):
            k = len(modem.log)
            lg, n = wake()
            if len(modem.log) > k:
                return lg, n
        raise AssertionError("no upload attempt in " + str(most) + " wakes")

    modem.net_ok = False  # a truck in a dead zone
    lg, n = wake_until_upload()
    assert lg.fails == 1 and n >= 2 and not gw.records  # boot + reading kept
    t_fail = lg.clock.now()[0]
    modem.restore_network(0)
    lg, n = wake_until_upload()
    assert lg.last_upload - t_fail <= 120 + cfg["interval"]  # backoff, not an hour
    # delivered; only the clock-set status the fresh ack caused waits (next upload)
    assert lg.fails == 0 and n == 1 and lg.events[-1][0] == 6, (n, lg.events)
    assert sorted(gw.records) == list(range(len(gw.records))) and len(gw.records) >= 3
    assert gw.chain_errors == 0

    # the cell goes mid-upload: the app retries at a later wake, not an
    # upload interval later
    seen = [0, None]  # records published, publish after which the cell goes
    gw_pub = broker.on_publish

    def on_pub(topic, msg):
        gw_pub(topic, msg)
        if topic.endswith(b"/rec"):
            seen[0] += 1
            if seen[0] == seen[1]:
                modem.lose_network()

    broker.on_publish = on_pub
    seen[1] = seen[0] + 2
    lg, n = wake_until_upload(20)
    assert n > 0 and lg.fails == 1, (n, lg.fails)
    assert lg.next_upload - lg.last_upload <= 120 < cfg["upload"]
    lost_at = lg.last_upload
    stored = len(gw.records)
    modem.restore_network(0)
    seen[1] = None
    lg, n = wake_until_upload()
    assert lg.last_upload - lost_at <= 120 + cfg["interval"]
    assert lg.fails == 0 and n <= 1 and len(gw.records) > stored, (lg.fails, n)
    assert sorted(gw.records) == list(range(len(gw.records))) and gw.chain_errors == 0


if __name__ == "__main__":
    main(globals())
