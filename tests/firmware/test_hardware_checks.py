"""hardware/checks.json: the board's parts meet their loads, and each check
fails on the part the review rejected (mutated negatives)."""

import copy
import csv
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HW = ROOT / "hardware"
sys.path.insert(0, str(HW))
try:
    import hw_checks
finally:
    sys.path.remove(str(HW))

D = hw_checks.load()


def mutated(**path_values):
    d = copy.deepcopy(D)
    for path, value in path_values.items():
        node = d
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[keys[-1]] = value
    return d


def test_every_check_passes_on_the_shipped_parts() -> None:
    names = [n for n, _ in hw_checks.run(D)]
    assert names == [
        "regulator/logger",
        "regulator/reader",
        "charger",
        "reader supply",
        "buffer",
        "logic",
    ]


def test_a_200_ma_ldo_cannot_carry_the_wifi_peak() -> None:
    d = mutated(regulator__iout_max_ma=D["regulator"]["rejected"]["iout_max_ma"])
    with pytest.raises(hw_checks.CheckError, match="margin needs"):
        hw_checks.check_regulator(d, "logger")


def test_the_pn532_on_the_3v3_rail_would_break_the_margin() -> None:
    d = mutated(loads_ma__reader__pn532_rf_on=150)
    with pytest.raises(hw_checks.CheckError, match="reader"):
        hw_checks.check_regulator(d, "reader")


def test_a_regulator_with_a_high_dropout_loses_the_cell_s_last_volts() -> None:
    d = mutated(regulator__r_100pct_ohm=1.0)
    with pytest.raises(hw_checks.CheckError, match=r"falls below 3\.0 V"):
        hw_checks.check_regulator(d, "logger")


def test_a_charger_without_a_temperature_input_fails() -> None:
    d = mutated(charger__has_ts=False, charger__part="MCP73831")
    with pytest.raises(hw_checks.CheckError, match="no temperature input"):
        hw_checks.check_charger(d)


def test_the_ntc_window_is_0_to_45_c_and_a_wrong_network_fails() -> None:
    lo, hi = hw_checks.charge_window_c(D)
    assert -1 <= lo <= 3 and 43 <= hi <= 46
    # the 103AT-2's resistance at -10 C (about 42 kOhm) as the cold threshold:
    # the charger would charge a frozen cell
    d = mutated(charger__ts__r_cold_ohm=42000)
    with pytest.raises(hw_checks.CheckError, match="the cell allows 0 to 45"):
        hw_checks.check_charger(d)


def test_a_leaky_charger_breaks_the_sleep_budget() -> None:
    d = mutated(charger__battery_leak_ua=30)  # MCP73871 IDISCHARGE
    with pytest.raises(hw_checks.CheckError, match="drains 30"):
        hw_checks.check_charger(d)


def test_a_usb_reader_without_a_power_path_drains_its_cell_in_the_cold() -> None:
    d = mutated(reader_supply__power_path=False)
    with pytest.raises(hw_checks.CheckError, match="drains the cell"):
        hw_checks.check_reader_supply(d)


def test_the_ntc_model_matches_the_103at_table() -> None:
    ntc = D["charger"]["ts"]["ntc"]
    assert hw_checks.ntc_temp_c(10000, ntc["r25_ohm"], ntc["beta_k"]) == pytest.approx(25)
    # TI's 103AT table: 27.28 kOhm at 0 C, 4.911 kOhm at 45 C (beta model within 1.5 C)
    assert hw_checks.ntc_temp_c(27280, ntc["r25_ohm"], ntc["beta_k"]) == pytest.approx(0, abs=1.5)
    assert hw_checks.ntc_temp_c(4911, ntc["r25_ohm"], ntc["beta_k"]) == pytest.approx(45, abs=1.5)


def test_the_li_socl2_cell_alone_cannot_feed_the_radio_peaks() -> None:
    with pytest.raises(hw_checks.CheckError, match="alone"):
        hw_checks.check_unbuffered_cell(D)
    hw_checks.check_buffer(D)  # with the hybrid layer capacitor it can


def test_a_buffer_with_a_high_esr_or_too_little_charge_fails() -> None:
    with pytest.raises(hw_checks.CheckError, match="ESR"):
        hw_checks.check_buffer(mutated(buffer__esr_ohm=1.0))
    with pytest.raises(hw_checks.CheckError, match="takes"):
        hw_checks.check_buffer(mutated(buffer__usable_mc=50))


def test_the_modem_uart_needs_the_level_translator() -> None:
    lv = D["logic"]["levels"]
    with pytest.raises(hw_checks.CheckError, match=r"VOH 1\.35 V < VIH 2\.475"):
        hw_checks.check_hop(lv, "sim7080g@1.8", "esp32s3@3.3")
    with pytest.raises(hw_checks.CheckError, match="max input"):
        hw_checks.check_hop(lv, "esp32s3@3.3", "sim7080g@1.8")
    hw_checks.check_logic(D)


def test_the_bom_lists_the_checked_parts_and_not_the_rejected_ones() -> None:
    with (HW / "bom.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    mpns = " ".join(r["manufacturer part number"] for r in rows)
    for mpn in (
        D["regulator"]["mpn"],
        D["charger"]["mpn"],
        "SN74AXC4T774",
        "HLC-1550A",
        "103AT-2",
        "DMG2305UX",
    ):
        assert mpn in mpns, mpn
    for gone in ("MCP73831", "TPS7A0233"):
        assert gone not in mpns, gone
    notes = (HW / "bom.md").read_text()
    for r in rows:  # every part has its justification in bom.md
        assert r["item"] in notes, r["item"]
