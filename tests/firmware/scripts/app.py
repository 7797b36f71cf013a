"""The logger's duty cycle with a fake board and a fake core."""

import ct_alarm
import ct_app
import ct_record
from fake_board import FakeBoard, FakeCore
from fwrun import main, raises

T0 = 1790000000  # a Unix time after the clock is set


class Probe:
    def __init__(self, temps):
        self.temps = list(temps)
        self.last = None

    def __call__(self):
        v = self.temps.pop(0) if self.temps else self.last
        self.last = v
        if isinstance(v, Exception):
            raise v
        return v, None


CFG = {"interval": 300, "upload": 3600, "heartbeat": 86400,
       "alarm": {"high": 800, "low": 200, "delay": 600}}


def run(board, core, probe, cycles, cfg=CFG, settings=None):
    """Wake ``cycles`` times: a fresh Logger per wake, as after deep sleep."""
    logs = []
    for _ in range(cycles):
        lg = ct_app.Logger(cfg, board, core, [(0, 7, probe)], settings)
        ms = lg.cycle()
        logs.append(lg)
        board.deep_sleep(ms)
    return logs


def kinds(recs, kind):
    return [r for r in recs if r[1] == kind]


def events(recs):
    return [(r[30], r.get(37)) for r in kinds(recs, 3)]


def test_first_wake_records_boot_reading_heartbeat_and_uploads():
    b, c = FakeBoard(t=100), FakeCore()
    logs = run(b, c, Probe([450]), 1)
    assert events(c.records)[0][0] == ct_app.EV_BOOT
    r = kinds(c.records, 1)[0]
    assert (r[10], r[14], r[15], r[5]) == (450, 7, 3900, 0)
    assert 12 not in r and 16 not in r
    assert c.uploads == 1 and not c.queue
    assert b.slept[0] == (300 - 100) * 1000  # aligned to the interval
    assert logs[0].events[0][0] == ct_app.EV_BOOT


def test_deep_sleep_wakes_batch_until_upload_interval():
    b, c = FakeBoard(t=0), FakeCore()
    run(b, c, Probe([450] * 30), 13)
    assert len(kinds(c.records, 1)) == 13
    assert events(c.records).count((ct_app.EV_BOOT, None)) == 1
    assert c.uploads == 2  # at t=0 and t=3600
    assert len(c.queue) == 0 and len(c.delivered) == len(c.records)


def test_excursion_alarm_uploads_at_once_and_latches():
    b, c = FakeBoard(t=0), FakeCore()
    temps = [500, 900, 950, 1000, 700, 500]
    run(b, c, Probe(temps), 6)
    ev = events(c.records)
    # beyond from t=300; the 600 s delay is reached at t=900 (peak 1000)
    assert (ct_alarm.EV_START, 1000) in ev and (ct_alarm.EV_END, 1000) in ev
    # alarm bits: active+latched on the reading that raised it, latched after
    bits = [r.get(16, 0) for r in kinds(c.records, 1)]
    assert bits == [0, 0, 0, 5, 4, 4]
    assert b.led_v == 1
    # uploads: first wake, alarm start, alarm end
    assert c.uploads == 3


def test_pending_alarm_shortens_the_sleep():
    cfg = dict(CFG, alarm={"high": 800, "low": 200, "delay": 100})
    b, c = FakeBoard(t=0), FakeCore()
    run(b, c, Probe([900, 900]), 2, cfg)
    assert b.slept[0] == 100 * 1000
    assert (ct_alarm.EV_START, 900) in events(c.records)


def test_sensor_fault_is_recorded_as_fault_never_as_temperature():
    b, c = FakeBoard(t=0), FakeCore()
    err = Exception(3, "85 C power-on value")
    run(b, c, Probe([500, err, err, 510]), 4)
    rs = kinds(c.records, 1)
    assert [r.get(10) for r in rs] == [500, None, None, 510]
    assert [r.get(12) for r in rs] == [None, 3, 3, None]
    assert 14 not in rs[1]  # no calibration id on a fault
    assert events(c.records).count((ct_app.EV_SENSOR_FAULT, 3)) == 1


def test_value_out_of_range_is_fault_5_and_never_reaches_the_alarm():
    cfg = dict(CFG, alarm={"high": 800, "low": 200, "delay": 0})
    b, c = FakeBoard(t=0), FakeCore()  # FakeCore checks fields like the real core
    values = [(500, None), (20000, None), (-12000, None), (510, 10050), (2150.5, None),
              (520, None)]

    def measure():
        return values.pop(0)

    for _ in range(6):
        lg = ct_app.Logger(cfg, b, c, [(0, 7, measure)])
        b.deep_sleep(lg.cycle())  # no RecordError escapes the cycle
    rs = kinds(c.records, 1)
    assert [r.get(10) for r in rs] == [500, None, None, None, None, 520]
    assert [r.get(12) for r in rs] == [None, 5, 5, 5, 5, None]
    assert all(11 not in r and 14 not in r for r in rs[1:5])
    ev = events(c.records)
    assert ev.count((ct_app.EV_SENSOR_FAULT, 5)) == 1  # once per fault episode
    assert not [e for e in ev if e[0] in (ct_alarm.EV_START, ct_alarm.EV_END)]
    assert all(16 not in r for r in rs)


def test_emit_turns_an_unsignable_reading_into_a_fault():
    b, c = FakeBoard(t=0), FakeCore()
    lg = ct_app.Logger(CFG, b, c, [])
    assert lg._emit({1: 1, 13: 2, 14: 7, 10: 15001, 15: 3900})
    r = c.records[-1]
    assert r[12] == 5 and 10 not in r and 14 not in r and r[13] == 2 and r[15] == 3900
    assert lg.faulted == 4 and lg._pending_fault == (2, 5)
    # a status record we got wrong is a bug: it stays loud
    raises(ct_record.RecordError, lg.status, 300)


def test_network_down_backs_off_and_delivers_everything_later():
    b, c = FakeBoard(t=0), FakeCore()
    c.online = False
    run(b, c, Probe([500] * 40), 12)
    assert not c.delivered and len(c.queue) == len(c.records)
    tries = c.uploads
    assert 3 <= tries < 12  # backed off, not every wake
    c.online = True
    run(b, c, Probe([500] * 40), 14)
    assert len(c.delivered) > len(c.queue)
    seqs = [r[3] for r in c.delivered + c.queue]
    assert seqs == list(range(len(c.records)))  # in order, none lost


def test_gateway_ack_time_sets_clock_and_tq_3():
    b, c = FakeBoard(t=500), FakeCore()
    c.gateway_time = lambda: T0 + b.elapsed
    run(b, c, Probe([500] * 3), 3)
    ev = events(c.records)
    assert (ct_app.EV_CLOCK_SET, 500) in ev
    rs = kinds(c.records, 1)
    assert rs[0][5] == 0 and rs[0][4] == 500
    assert rs[1][5] == 3 and rs[1][4] > T0
    # small drift corrections later do not make new clock-set records
    assert [e for e in ev if e[0] == ct_app.EV_CLOCK_SET] == [(ct_app.EV_CLOCK_SET, 500)]


def test_holdover_after_a_day_without_sync():
    b, c = FakeBoard(t=500), FakeCore()
    c.gateway_time = lambda: T0 + b.elapsed
    run(b, c, Probe([500]), 1)
    c.gateway_time = None
    c.online = False
    b.t += 90000
    run(b, c, Probe([500]), 1)
    assert kinds(c.records, 1)[-1][5] == 1


def test_commands_applied_persisted_and_refused():
    b, c = FakeBoard(t=0), FakeCore()
    c.commands = [{1: 5, 2: T0, 10: 600, 12: 1000}, None, {1: 6, 10: 5}, {1: 7, 13: 2000}]
    logs = run(b, c, Probe([500] * 5), 1)
    lg = logs[0]
    assert lg.settings == {"interval": 600, "high": 1000}
    assert lg.settings_dirty
    ev = events(c.records)
    assert (ct_app.EV_CONFIG, 5) in ev
    assert ev.count((ct_app.EV_CONFIG, -1)) == 3  # MAC failure, 5 s, low >= high
    assert lg.alarm.high == 1000
    assert b.slept[0] == 600 * 1000
    # the next wake, with the saved settings, keeps them
    logs = run(b, c, Probe([900]), 1, CFG, lg.settings)
    assert logs[0].interval() == 600 and logs[0].alarm.high == 1000


def test_calibration_command_is_saved_for_the_next_wake():
    import struct

    b, c = FakeBoard(t=0), FakeCore()
    pts = struct.pack(">4i", -1987, -2000, 2511, 2500)
    c.commands = [
        {1: 8, 16: 0, 17: 1041, 18: struct.pack(">2i", 0, 900)},  # offset 9.00: refused
        {1: 9, 16: 0, 17: 1042, 18: pts},
    ]
    logs = run(b, c, Probe([500, 500]), 1)
    lg = logs[0]
    assert lg.settings == {"cal": {"0": {"id": 1042, "t": [[-1987, -2000], [2511, 2500]]}}}
    assert lg.settings_dirty
    ev = events(c.records)
    assert (ct_app.EV_CONFIG, -1) in ev and (ct_app.EV_CONFIG, 9) in ev
    # a second channel's calibration is added, the first kept
    c.commands = [{1: 10, 16: 1, 17: 1043, 19: struct.pack(">2i", 7500, 7530)}]
    b.t += 4000
    logs = run(b, c, Probe([500]), 1, CFG, lg.settings)
    assert sorted(logs[0].settings["cal"]) == ["0", "1"]


def test_time_sync_command():
    b, c = FakeBoard(t=50), FakeCore()
    c.commands = [{1: 1, 15: T0}]
    run(b, c, Probe([500, 500]), 2)
    assert (ct_app.EV_CLOCK_SET, 50) in events(c.records)
    assert kinds(c.records, 1)[-1][5] == 3


def test_storage_full_drops_counts_and_reports():
    b, c = FakeBoard(t=0), FakeCore(capacity=6)
    c.online = False
    run(b, c, Probe([500] * 20), 10)
    ev = events(c.records)
    assert any(e[0] == ct_app.EV_STORAGE_FULL for e in ev)
    assert any(e[0] == ct_app.EV_STORAGE_LOW for e in ev)
    assert len(c.queue) == 6  # the oldest are kept
    c.online = True
    c.capacity = 1000
    b.t += 4000
    run(b, c, Probe([500] * 3), 2)
    dropped = [e for e in events(c.records) if e[0] == ct_app.EV_DROPPED]
    assert dropped and dropped[0][1] > 0


def test_boot_loop_enters_safe_mode_and_only_logs_status():
    b, c = FakeBoard(t=0), FakeCore()
    for k in range(3):  # three starts that never finished a cycle
        assert ct_app.boot_failures(b.rtc) == k
    n = ct_app.boot_failures(b.rtc)
    assert n == 3
    lg = ct_app.Logger(CFG, b, c, [(0, None, Probe([500]))])
    assert lg.safe_mode()
    ms = lg.cycle()
    assert not kinds(c.records, 1)  # no sensor was touched
    assert (ct_app.EV_SAFE, 3) in events(c.records)
    assert c.uploads == 1 and ms >= 300000
    # safe mode holds across wakes, then tries normal again after safe_hold
    b.deep_sleep(ms)
    ct_app.boot_failures(b.rtc)
    cfg = dict(CFG, safe_hold=600)
    for _ in range(4):
        ct_app.boot_failures(b.rtc)
        lg = ct_app.Logger(cfg, b, c, [(0, None, Probe([500]))])
        b.deep_sleep(lg.cycle())
    assert kinds(c.records, 1)


def test_clean_cycle_resets_the_boot_failure_count():
    b, c = FakeBoard(t=0), FakeCore()
    ct_app.boot_failures(b.rtc)
    ct_app.boot_failures(b.rtc)
    lg = ct_app.Logger(CFG, b, c, [(0, None, Probe([500]))])
    lg.cycle()
    assert ct_app.boot_failures(b.rtc) == 0


def test_power_loss_resets_rtc_state_and_records_a_boot():
    b, c = FakeBoard(t=0), FakeCore()
    run(b, c, Probe([500] * 3), 3)
    b.power_cycle()
    run(b, c, Probe([500]), 1)
    assert events(c.records).count((ct_app.EV_BOOT, None)) == 2


def test_button_wake_clears_the_latch():
    b, c = FakeBoard(t=0), FakeCore()
    cfg = dict(CFG, alarm={"high": 800, "low": 200})
    run(b, c, Probe([900, 500]), 2, cfg)
    assert kinds(c.records, 1)[-1][16] == 4 and b.led_v == 1
    b.button = True
    run(b, c, Probe([500]), 1, cfg)
    assert 16 not in kinds(c.records, 1)[-1] and b.led_v == 0


def test_watchdog_fed_every_cycle():
    b, c = FakeBoard(t=0), FakeCore()
    run(b, c, Probe([500] * 3), 3)
    assert b.fed >= 6


def test_rtc_memory_shared_by_two_writers_keeps_both():
    import ct_rtcmem
    from fake_board import FakeRTC

    rtc = FakeRTC()
    a = ct_rtcmem.RTCMem(rtc)
    b = ct_rtcmem.RTCMem(rtc)  # e.g. ct_state's and the app's
    a.put(b"S", b"seq=5")
    b.put(b"A", b"app")  # b was created before a's put
    a.put(b"S", b"seq=6")
    c = ct_rtcmem.RTCMem(rtc)
    assert c.get(b"S") == b"seq=6" and c.get(b"A") == b"app"


def test_rtc_memory_garbage_reads_empty():
    import ct_rtcmem
    from fake_board import FakeRTC

    rtc = FakeRTC()
    rtc.memory(b"CTr1" + bytes(200))
    assert ct_rtcmem.RTCMem(rtc).get(b"S") is None
    m = ct_rtcmem.RTCMem(rtc)
    m.put(b"A", b"x")
    raw = bytearray(rtc.memory())
    raw[-1] ^= 1
    rtc.memory(bytes(raw))
    assert ct_rtcmem.RTCMem(rtc).get(b"A") is None


main(globals())
