"""The firmware pin map equals hardware/pins.json and keeps the chip rules."""

import ct_pins
from fwrun import data, main

HW = data("pins.json")


def test_same_boards_roles_and_signals():
    assert sorted(HW["boards"]) == sorted(ct_pins.PINS)
    for board, b in HW["boards"].items():
        assert sorted(b["roles"]) == sorted(ct_pins.PINS[board]), board
        for role, sigs in b["roles"].items():
            fw = ct_pins.PINS[board][role]
            assert sorted(sigs) == sorted(fw), (board, role)
            for name, s in sigs.items():
                assert s["gpio"] == fw[name], (board, role, name, s["gpio"], fw[name])


def rules(board, role):
    chip = HW["chips"][board]
    bad = []
    used = {}
    for name, s in HW["boards"][board]["roles"][role].items():
        g = s["gpio"]
        if g not in chip["gpio"]:
            bad.append((name, g, "no such GPIO"))
        if g in chip["flash"] or g in chip["usb"]:
            bad.append((name, g, "flash/PSRAM/USB pin"))
        if s["dir"] in ("out", "io") and g in chip["input_only"]:
            bad.append((name, g, "output on an input-only pin"))
        if s["dir"] == "adc" and g not in chip["adc1"]:
            bad.append((name, g, "ADC not on ADC1"))
        if g in chip["strapping"] and name != "button":
            bad.append((name, g, "strapping pin"))
        if name == "button" and g not in chip["rtc"]:
            bad.append((name, g, "wake button not on an RTC GPIO"))
        if g in used:
            bad.append((name, g, "also used by " + used[g]))
        used[g] = name
    return bad


def test_pin_rules_hold_for_every_board_and_role():
    for board, b in HW["boards"].items():
        for role in b["roles"]:
            assert rules(board, role) == [], (board, role, rules(board, role))


def test_rules_catch_a_bad_map():
    sig = HW["boards"]["esp32"]["roles"]["logger"]
    keep = dict(sig["led"])
    try:
        sig["led"]["gpio"] = 35  # input-only on the ESP32
        assert rules("esp32", "logger")
        sig["led"]["gpio"] = 7  # flash pin
        assert rules("esp32", "logger")
        sig["led"]["gpio"] = 4  # already the 1-Wire bus
        assert rules("esp32", "logger")
    finally:
        sig["led"] = keep
    assert rules("esp32", "logger") == []


def test_every_role_has_what_its_firmware_needs():
    need = {
        "logger": ("ow", "i2c_sda", "i2c_scl", "batt_adc", "led", "button"),
        "reader": ("spi_sck", "spi_mosi", "spi_miso", "nfc_cs", "led_ok", "led_err",
                   "button", "i2c_sda", "i2c_scl"),
    }
    for board in ct_pins.PINS:
        for role, names in need.items():
            for n in names:
                assert n in ct_pins.pins(board, role), (board, role, n)


main(globals())
