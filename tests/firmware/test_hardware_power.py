"""hardware/: the power tables are fresh, the BOM is well formed."""

import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HW = ROOT / "hardware"


def test_power_md_matches_power_json() -> None:
    p = subprocess.run(
        [sys.executable, str(HW / "power_budget.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_battery_life_figures_are_sane() -> None:
    sys.path.insert(0, str(HW))
    try:
        import power_budget
    finally:
        sys.path.remove(str(HW))
    d = json.loads((HW / "power.json").read_text())
    sc = d["scenarios"][0]
    one, five, ten = (power_budget.day_mah(d, sc, i) for i in (60, 300, 600))
    assert one["total"] > five["total"] > ten["total"] > 0
    assert ten["days"] > 365  # ATECC signing, hourly Wi-Fi: over a year at 10 min
    # uploading every reading costs more than batching
    every = power_budget.day_mah(d, d["scenarios"][2], 300)
    assert every["total"] > five["total"] * 3


def test_bom_rows_have_part_numbers_and_prices() -> None:
    with (HW / "bom.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["role"] for r in rows} == {"both", "logger", "reader"}
    items = " ".join(r["item"] + r["part"] for r in rows)
    for needed in (
        "ATECC608B",
        "SHT45",
        "DS18B20",
        "PN532",
        "SIM7080G",
        "charger",
        "IP67",
        "ESP32-S3",
    ):
        assert needed in items, needed
    for r in rows:
        float(r["unit price USD (approx.)"])
        assert int(r["qty"]) >= 1


def test_pins_json_is_consistent_with_firmware_in_cpython_too() -> None:
    sys.path.insert(0, str(ROOT / "firmware" / "lib"))
    try:
        import ct_pins
    finally:
        del sys.path[0]
    hw = json.loads((HW / "pins.json").read_text())
    for board, b in hw["boards"].items():
        for role, sigs in b["roles"].items():
            assert {k: v["gpio"] for k, v in sigs.items()} == ct_pins.PINS[board][role]


def test_atecc_pins_come_from_the_pin_map_of_every_board() -> None:
    """ct_provision takes the ATECC608's I2C pins from the board's pin map, so
    the template (which gateway/provision.py copies for any --board) must not
    pin them: every board and role gets its own map's I2C pins."""
    sys.path.insert(0, str(ROOT / "firmware" / "lib"))
    try:
        import ct_provision
    finally:
        del sys.path[0]
    cfg = json.loads((ROOT / "firmware" / "config.json").read_text())
    hw = json.loads((HW / "pins.json").read_text())
    assert cfg["atecc"]["addr"] == 0x60
    for board, b in hw["boards"].items():
        for role, sig in b["roles"].items():
            got = ct_provision.atecc_i2c_pins(dict(cfg, board=board, role=role))
            assert got == (sig["i2c_sda"]["gpio"], sig["i2c_scl"]["gpio"]), (board, role)


def test_reader_budget_is_usb_powered_and_idle_dominated() -> None:
    sys.path.insert(0, str(HW))
    try:
        import power_budget
    finally:
        sys.path.remove(str(HW))
    d = json.loads((HW / "power.json").read_text())
    assert d["reader"]["power"] == "usb"
    few, many = (power_budget.reader_day_mah(d, n) for n in (10, 300))
    assert many["total"] > few["total"] > 0
    # always awake: idle is most of the charge at ordinary scan rates
    assert few["parts"]["idle"] > 0.7 * few["total"]
    # the cell alone cannot carry it for more than about two days: hence USB
    assert few["hours"] < 48
    assert many["usb_w"] < 1.0  # any USB port or 5 V adapter feeds it
    # the reader's 3.3 V rail peak stays within the regulator (hardware/checks.json)
    checks = json.loads((HW / "checks.json").read_text())
    assert "pn532_rf_on" not in checks["loads_ma"]["reader"]  # the PN532 is on 5 V
