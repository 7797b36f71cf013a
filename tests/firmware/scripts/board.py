"""ct_board wires machine.* and the drivers from config + pin map."""

import sys

import fake_machine

sys.modules["machine"] = fake_machine

import ct_board  # noqa: E402
import ct_pins  # noqa: E402
from fake_sensors import FakeDS18B20, FakeOneWire, FakeSHT4xBus  # noqa: E402
from fwrun import main, raises  # noqa: E402

ROM = bytes((0x28, 0xFF, 0x4C, 0x3A, 0x91, 0x16, 0x04, 0x77))


class FakeOneWireModule:
    bus = None

    @staticmethod
    def OneWire(pin):
        return FakeOneWireModule.bus


sys.modules["onewire"] = FakeOneWireModule

CFG = {"id": "tl-1", "role": "logger", "board": "esp32s3",
       "sensors": [{"type": "ds18b20", "ch": 0, "cal": {"id": 12, "t": [[0, 10]]}},
                   {"type": "sht4x", "ch": 1, "addr": 0x44}],
       "batt": {"num": 2, "den": 1}, "wdt_ms": 30000}


def test_board_uses_the_pin_map_and_reads_battery_in_integer_mv():
    fake_machine.log.clear()
    b = ct_board.Board(CFG)
    assert ("wdt", 30000) in fake_machine.log
    assert b.pins == ct_pins.pins("esp32s3", "logger")
    fake_machine.state["uv"] = 1950000
    assert b.batt_mv() == 3900
    fake_machine.state["uv"] = 20000000
    assert b.batt_mv() == 20000


def test_channels_measure_through_drivers_with_calibration_and_power_switch():
    FakeOneWireModule.bus = FakeOneWire([FakeDS18B20(ROM, temp=-1850)])
    sht = FakeSHT4xBus(temp=2000, rh=5000)
    fake_machine.I2C.bus = sht
    b = ct_board.Board(CFG)
    fake_machine.log.clear()
    chans = ct_board.channels(CFG, b)
    assert [(c[0], c[1]) for c in chans] == [(0, 12), (1, None)]
    assert chans[0][2]() == (-1840, None)  # calibrated +0.10
    pwr = ct_pins.pins("esp32s3", "logger")["sensor_pwr"]
    assert ("set", pwr, 1) in fake_machine.log and ("set", pwr, 0) in fake_machine.log
    assert any(e[0] == "lightsleep" for e in fake_machine.log)  # conversion wait
    t, rh = chans[1][2]()
    assert abs(t - 2000) <= 1 and abs(rh - 5000) <= 1


def test_a_calibration_the_gateway_sent_replaces_the_configured_one():
    FakeOneWireModule.bus = FakeOneWire([FakeDS18B20(ROM, temp=-1850)])
    fake_machine.I2C.bus = FakeSHT4xBus(temp=2000, rh=5000)
    b = ct_board.Board(CFG)
    settings = {"cal": {"0": {"id": 1042, "t": [[-1850, -1800]]},
                        "1": {"id": 1043, "rh": [[5000, 5100]]}}}
    chans = ct_board.channels(CFG, b, settings)
    assert [(c[0], c[1]) for c in chans] == [(0, 1042), (1, 1043)]
    assert chans[0][2]() == (-1800, None)  # +0.50 from the sent points, not +0.10
    assert abs(chans[1][2]()[1] - 5100) <= 1


def test_unknown_sensor_refused():
    b = ct_board.Board(CFG)
    raises(ct_board.BoardError, ct_board.channels, {"sensors": [{"type": "dht22"}]}, b)


def test_set_time_writes_rtc_datetime():
    b = ct_board.Board(CFG)
    b.offset = 0
    b.set_time(1790000000)
    t = fake_machine.state["time"]
    assert t[0] == 2026 and len(t) == 8


def test_deep_sleep_and_reset_cause():
    b = ct_board.Board(CFG)
    b.deep_sleep(300000)
    assert fake_machine.state["slept"] == 300000
    assert b.DEEPSLEEP == 4 and b.reset_cause() == 1


def test_main_runs_one_logger_cycle_then_deep_sleeps():
    import ct_main
    from fake_board import FakeCore

    FakeOneWireModule.bus = FakeOneWire([FakeDS18B20(ROM, temp=450)])
    fake_machine.I2C.bus = FakeSHT4xBus(temp=2000, rh=5000)
    fake_machine.state["slept"] = None
    fake_machine.RTC.mem = b""
    ct_main._SETTINGS = "/tmp/ct_settings_test.json"
    cfg = dict(CFG, interval=300)
    b = ct_board.Board(cfg)
    core = FakeCore()
    ct_main.logger(cfg, b, core)
    kinds = [r[1] for r in core.records]
    assert kinds.count(1) == 2 and 3 in kinds  # two channels, boot/heartbeat
    assert core.closed and 0 < fake_machine.state["slept"] <= 300000


def test_button_held_at_reset_means_repl():
    import ct_main

    b = ct_board.Board(CFG)
    fake_machine.Pin.levels[b.pins["button"]] = 0
    assert ct_main.button_held(b)
    fake_machine.Pin.levels[b.pins["button"]] = 1
    assert not ct_main.button_held(b)


def test_config_template_names_the_pins_of_its_board():
    import ct_main

    ct_main._CONFIG = "/tmp/ct_config_test.json"
    with open(ct_main._CONFIG, "w") as f:
        f.write('{"id": "tl-1", "role": "logger", "board": "esp32"}')
    cfg = ct_main.load_config()
    assert ct_board.Board(cfg).pins == ct_pins.pins("esp32", "logger")
    with open(ct_main._CONFIG, "w") as f:
        f.write('{"role": "logger"}')
    raises(ct_main.MainError, ct_main.load_config)


main(globals())
