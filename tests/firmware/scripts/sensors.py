"""DS18B20, SHT4x and calibration from recorded bytes; faults never become
temperatures."""

import binascii
import struct

import ct_cal
import ct_ds18b20 as ds
import ct_sht4x as sht
from fake_sensors import FakeDS18B20, FakeOneWire, FakeSHT4xBus
from fwrun import main, raises

ROM = binascii.unhexlify("28ff4c3a91160477")

# Scratchpads as a DS18B20 sends them (datasheet Table 1 values, TH 4B,
# TL 46, config 7F = 12 bit, reserved FF 0C 10, Dallas CRC last).
SP = {
    "power_on": ("50054b467fff0c101c", None),
    "p25_0625": ("91014b467fff0c1070", 2506),
    "p10_125": ("a2004b467fff0c1074", 1013),
    "p0_5": ("08004b467fff0c10e2", 50),
    "zero": ("00004b467fff0c10c8", 0),
    "m0_5": ("f8ff4b467fff0c10c3", -50),
    "m10_125": ("5eff4b467fff0c106a", -1013),
    "m25_0625": ("6ffe4b467fff0c10e8", -2506),
    "m55": ("90fc4b467fff0c104f", -5500),
    "p125": ("d0074b467fff0c10f4", 12500),
}


class Clock:
    def __init__(self):
        self.t = 0
        self.slept = 0

    def ticks(self):
        return self.t

    def sleep(self, ms):
        self.t += ms
        self.slept += ms


def probe(ow, rom=None, powered=True):
    c = Clock()
    return ds.DS18B20(ow, rom, c.ticks, c.sleep, powered), c


def code(fn):
    e = raises(ds.DS18B20Error, fn)
    return e.args[0]


def test_crc8_over_rom_and_scratchpad_is_zero():
    assert ds.crc8(ROM) == 0
    assert ds.check_rom(ROM)
    assert not ds.check_rom(ROM[:7] + b"\x00")
    for hx, _ in SP.values():
        assert ds.crc8(binascii.unhexlify(hx)) == 0


def test_datasheet_values_convert_to_centidegrees():
    for name, (hx, want) in SP.items():
        if want is None:
            continue
        assert ds.check_scratchpad(bytearray(binascii.unhexlify(hx))) == want, name


def test_power_on_85_is_a_fault_not_a_temperature():
    assert code(lambda: ds.check_scratchpad(binascii.unhexlify(SP["power_on"][0]))) == 3


def test_all_zero_scratchpad_passes_crc_but_is_a_fault():
    z = bytes(9)
    assert ds.crc8(z) == 0
    assert code(lambda: ds.check_scratchpad(z)) == 4


def test_all_ff_scratchpad_means_no_sensor():
    assert code(lambda: ds.check_scratchpad(b"\xff" * 9)) == 1


def test_corrupt_byte_is_a_crc_fault():
    b = bytearray(binascii.unhexlify(SP["p25_0625"][0]))
    b[0] ^= 0x01
    assert code(lambda: ds.check_scratchpad(b)) == 2


def test_out_of_range_with_valid_crc():
    from fake_sensors import scratchpad

    assert code(lambda: ds.check_scratchpad(scratchpad(126 * 16))) == 5
    assert code(lambda: ds.check_scratchpad(scratchpad(-56 * 16))) == 5


def test_low_resolution_masks_undefined_bits():
    # 9-bit (config 1F): bits 2..0 undefined, here set to 1
    sp = binascii.unhexlify("9f014b461fff0c1059")
    assert ds.check_scratchpad(sp) == 2550


def test_measure_waits_750_ms_and_reads():
    dev = FakeDS18B20(ROM, temp=-1850)
    ow = FakeOneWire([dev])
    p, c = probe(ow, ROM)
    assert p.measure() == -1850
    assert c.slept >= 750
    assert "w 44" in ow.log and "w be" in ow.log and "match" in ow.log


def test_start_read_split_waits_only_the_rest():
    ow = FakeOneWire([FakeDS18B20(ROM, temp=400)])
    p, c = probe(ow)
    p.start()
    c.t += 600
    assert p.read() == 400
    assert c.slept == 150
    assert "w cc" in ow.log  # SKIP ROM for a single probe


def test_missing_sensor_is_fault_1():
    p, _ = probe(FakeOneWire([], present=False))
    assert code(p.measure) == 1


def test_bus_oserror_is_fault_6():
    p, _ = probe(FakeOneWire([FakeDS18B20(ROM, temp=0)], fail=True))
    assert code(p.measure) == 6


def test_conversion_timeout_is_fault_7():
    dev = FakeDS18B20(ROM, temp=100)
    dev.busy_polls = 1000
    p, c = probe(FakeOneWire([dev]))
    assert code(p.measure) == 7
    assert c.slept <= 750 + 260


def test_never_converted_probe_reports_power_on():
    dev = FakeDS18B20(ROM)  # scratchpad left at power-on value
    p, _ = probe(FakeOneWire([dev]))
    p.start()
    assert code(p.read) == 3


def test_read_without_start_is_a_fault():
    p, _ = probe(FakeOneWire([FakeDS18B20(ROM, temp=0)]))
    assert code(p.read) == 7


def test_scan_keeps_only_valid_roms():
    bad = bytes(ROM[:7]) + b"\x00"
    ow = FakeOneWire([FakeDS18B20(ROM), FakeDS18B20(bad)])
    assert ds.scan(ow) == [bytes(ROM)]


# --- SHT4x -----------------------------------------------------------------

def sensor(bus):
    c = Clock()
    return sht.SHT4x(bus, sleep_ms=c.sleep), c


def sht_code(fn):
    return raises(sht.SHT4xError, fn).args[0]


def test_sensirion_crc_datasheet_example():
    assert sht.crc8(b"\xbe\xef") == 0x92


def test_sht_recorded_frames_convert_without_floats():
    cases = (
        ("6666938000a2", 2500, 5650),
        ("3a5ebcb4c387", -510, 8226),
        ("1d00af010075", -2518, 0),  # RH below 0 is clipped
        ("ffffacffffac", None, None),  # 130 °C: out of range
    )
    for hx, t, rh in cases:
        bus = FakeSHT4xBus()
        bus.reply = binascii.unhexlify(hx)
        s, c = sensor(bus)
        if t is None:
            assert sht_code(s.measure) == 5
            continue
        assert s.measure() == (t, rh), hx
        assert bus.log == [0xFD]
        assert c.slept >= 9


def test_sht_all_zero_words_are_out_of_range_not_minus_45():
    bus = FakeSHT4xBus()
    bus.reply = binascii.unhexlify("000081000081")
    s, _ = sensor(bus)
    assert sht_code(s.measure) == 5


def test_sht_crc_mismatch_is_fault_2():
    for hx in ("6666948000a2", "6666938000a3", "000000000000"):
        bus = FakeSHT4xBus()
        bus.reply = binascii.unhexlify(hx)
        s, _ = sensor(bus)
        assert sht_code(s.measure) == 2, hx


def test_sht_missing_is_fault_1_and_bus_error_6():
    bus = FakeSHT4xBus()
    bus.present = False
    s, _ = sensor(bus)
    assert sht_code(s.measure) == 1
    bus = FakeSHT4xBus()
    bus.bus_error = True
    s, _ = sensor(bus)
    assert sht_code(s.measure) == 6


def test_sht_not_ready_once_is_retried_twice_is_timeout():
    bus = FakeSHT4xBus(temp=-2000, rh=4000)
    bus.nack_reads = 1
    s, _ = sensor(bus)
    assert s.measure() == (-2000, 4000)
    bus.nack_reads = 2
    assert sht_code(s.measure) == 7


def test_sht_serial_and_reset():
    bus = FakeSHT4xBus(serial=0x0BADCAFE)
    s, _ = sensor(bus)
    assert s.serial() == 0x0BADCAFE
    s.reset()
    assert bus.log == [0x89, 0x94]


def test_sht_fake_roundtrip_every_tenth_degree():
    from fake_sensors import centi_to_sht, sht_words

    for t in range(-4000, 12500, 37):
        w = sht_words(*centi_to_sht(t, 5000))
        got = sht.parse(w)
        assert abs(got[0] - t) <= 1, (t, got)


# --- calibration -----------------------------------------------------------

def test_two_point_calibration_integer_math():
    c = ct_cal.Cal(17, [[-2000, -1985], [500, 512]])
    assert c.apply(-2000) == -1985
    assert c.apply(500) == 512
    # -750 -> -1985 + round(1250 * 2497 / 2500 = 1248.5) = -1985 + 1249
    assert c.apply(-750) == -736
    assert c.id == 17


def test_one_point_is_an_offset():
    c = ct_cal.Cal(3, [[0, 12]])
    assert c.apply(-1850) == -1838


def test_bad_calibrations_refused():
    raises(ct_cal.CalError, ct_cal.Cal, 1, [[0, 0], [0, 10]])
    raises(ct_cal.CalError, ct_cal.Cal, 1, [[0, 0], [1000, 1500]])
    raises(ct_cal.CalError, ct_cal.Cal, -1, [[0, 0]])
    raises(ct_cal.CalError, ct_cal.Cal, 1, [[0, 900]])
    raises(ct_cal.CalError, ct_cal.Cal, 1, [])


def test_calibration_from_config():
    cid, t, rh = ct_cal.from_config({"id": 9, "t": [[0, 10]], "rh": [[5000, 5100]]})
    assert cid == 9 and t.apply(100) == 110 and rh.apply(5000) == 5100
    assert ct_cal.from_config(None) == (None, None, None)


def _pts(*v):
    return struct.pack(">" + "i" * len(v), *v)


def test_calibration_from_a_command_payload():
    p = {1: 9, 16: 1, 17: 1042, 18: _pts(-1987, -2000, 2511, 2500), 19: _pts(7500, 7530)}
    ch, d = ct_cal.from_command(p)
    assert ch == 1
    assert d == {"id": 1042, "t": [[-1987, -2000], [2511, 2500]], "rh": [[7500, 7530]]}
    assert ct_cal.from_command({1: 9, 10: 600}) is None  # no calibration in it


def test_malformed_or_wild_calibration_commands_refused():
    good = _pts(0, 10)
    for p in (
        {16: 0, 18: good},  # no id
        {17: 5, 18: good},  # no channel
        {16: 16, 17: 5, 18: good},  # channel out of range
        {16: 0, 17: 5},  # no points
        {16: 0, 17: 5, 18: good[:6]},  # not whole int32 pairs
        {16: 0, 17: 5, 18: "0,10"},  # not bytes
        {16: 0, 17: -1, 18: good},  # id out of range
        {16: 0, 17: 5, 18: _pts(0, 900)},  # offset over 5.00
        {16: 0, 17: 5, 18: _pts(0, 0, 1000, 1500)},  # slope 1.5
    ):
        raises(ct_cal.CalError, ct_cal.from_command, p)


def test_the_sent_calibration_wins_over_the_configured_one():
    conf = {"id": 12, "t": [[0, 10]]}
    sent = {"cal": {"0": {"id": 13, "t": [[0, 20]]}}}
    assert ct_cal.pick(conf, sent, 0) == {"id": 13, "t": [[0, 20]]}
    assert ct_cal.pick(conf, sent, 1) == conf
    assert ct_cal.pick(conf, None, 0) == conf
    assert ct_cal.pick(None, {}, 0) is None


main(globals())
