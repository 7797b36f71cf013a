"""Electrical checks of the board, computed from hardware/checks.json.

    python hardware/hw_checks.py     # print every check; exit 1 if one fails

Each check raises :class:`CheckError` (with what was needed and what the
part gives) or returns a one-line summary. The figures and their sources are
in checks.json; hardware/bom.md says why each part was chosen.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KELVIN = 273.15


class CheckError(Exception):
    pass


def load() -> dict[str, Any]:
    d: dict[str, Any] = json.loads((HERE / "checks.json").read_text())
    return d


# --- the 3.3 V regulator ----------------------------------------------------------------------


def check_regulator(d: dict[str, Any], role: str) -> str:
    """The regulator carries the role's simultaneous peak with the margin, and
    in 100 % mode keeps the rail above the ESP32's minimum down to a battery
    voltage the cell still has at the end of its usable charge."""
    reg = d["regulator"]
    loads = d["loads_ma"]
    peak = sum(loads[role].values())
    need = peak * loads["margin"]
    if reg["iout_max_ma"] < need:
        raise CheckError(
            f"{role}: {reg['part']} gives {reg['iout_max_ma']} mA, the peak {peak:g} mA "
            f"x {loads['margin']} margin needs {need:g} mA"
        )
    cell = d["cells"]["li_ion"]
    r = reg["r_100pct_ohm"] + cell["r_int_ohm_cold"]
    floor = d["rail_min_v"]["esp32s3"] + peak / 1000 * r
    if floor > 3.4:
        raise CheckError(f"{role}: the rail falls below 3.0 V at VBAT {floor:.2f} V (> 3.4 V)")
    if reg["vin_max_v"] < cell["v_max"]:
        raise CheckError(f"{reg['part']} input max {reg['vin_max_v']} V < cell {cell['v_max']} V")
    return (
        f"{role}: peak {peak:g} mA x {loads['margin']} <= {reg['iout_max_ma']} mA; "
        f"rail >= 3.0 V down to VBAT {floor:.2f} V (cold cell)"
    )


# --- the charger's temperature window -------------------------------------------------------------


def ntc_temp_c(r_ohm: float, r25: float, beta: float) -> float:
    """Temperature at which a beta-model NTC has resistance r."""
    inv = 1 / (25 + KELVIN) + math.log(r_ohm / r25) / beta
    return 1 / inv - KELVIN


def charge_window_c(d: dict[str, Any]) -> tuple[float, float]:
    ch = d["charger"]
    if not ch.get("has_ts"):
        raise CheckError(
            f"{ch['part']} has no temperature input: it cannot stop a charge below 0 C"
        )
    ts = ch["ts"]
    ntc = ts["ntc"]
    return (
        ntc_temp_c(ts["r_cold_ohm"], ntc["r25_ohm"], ntc["beta_k"]),
        ntc_temp_c(ts["r_hot_ohm"], ntc["r25_ohm"], ntc["beta_k"]),
    )


def check_charger(d: dict[str, Any], tolerance_c: float = 1.0) -> str:
    """The charger charges only inside the cell's charge window (within the
    NTC's tolerance), and leaks little enough for the sleep budget."""
    lo, hi = charge_window_c(d)
    clo, chi = d["cells"]["li_ion"]["charge_c"]
    if lo < clo - tolerance_c or hi > chi + tolerance_c:
        raise CheckError(
            f"{d['charger']['part']} charges from {lo:.1f} to {hi:.1f} C; "
            f"the cell allows {clo} to {chi} C"
        )
    leak = d["charger"]["battery_leak_ua"]
    if leak > 2:
        raise CheckError(f"{d['charger']['part']} drains {leak} uA from the battery (> 2 uA)")
    return f"charges from {lo:.1f} to {hi:.1f} C (cell {clo}-{chi} C), battery leak {leak} uA"


def check_reader_supply(d: dict[str, Any]) -> str:
    """The reader runs from USB all the time: with a charger whose OUT is the
    cell, a suspended charge (cold) would leave the cell carrying the load."""
    rs = d["reader_supply"]
    if not rs.get("power_path"):
        raise CheckError(
            f"reader: no power path - in the cold the {rs['avg_ma']} mA load drains the cell "
            f"in {rs['cell_usable_mah'] / rs['avg_ma']:.0f} h while plugged in"
        )
    return "reader: USB feeds the system past the charger (load sharing)"


# --- the Li-SOCl2 cell's buffer -------------------------------------------------------------------


def check_buffer(d: dict[str, Any]) -> str:
    """Each radio peak above the cell's cold pulse capability comes from the
    buffer: its ESR drop and the charge it gives stay within limits."""
    b = d["buffer"]
    cell = d["cells"]["li_socl2"]
    worst_mc = 0.0
    for p in b["peaks"]:
        drop = p["a"] * b["esr_ohm"]
        if drop > b["allowed_drop_v"]:
            raise CheckError(
                f"{p['what']}: {p['a']} A x ESR {b['esr_ohm']} Ohm = {drop:.2f} V drop "
                f"> {b['allowed_drop_v']} V"
            )
        if p["a"] > b["pulse_a"]:
            raise CheckError(f"{p['what']}: {p['a']} A > {b['part']} pulse rating {b['pulse_a']} A")
        extra_mc = max(0.0, p["a"] - cell["pulse_a_cold"]) * p["ms"]
        worst_mc = max(worst_mc, extra_mc)
    if worst_mc > b["usable_mc"]:
        raise CheckError(
            f"a peak takes {worst_mc:.0f} mC from the buffer; it gives {b['usable_mc']}"
        )
    return (
        f"worst peak takes {worst_mc:.0f} mC of {b['usable_mc']} mC, "
        f"ESR drop within {b['allowed_drop_v']} V"
    )


def check_unbuffered_cell(d: dict[str, Any]) -> None:
    """The Li-SOCl2 cell alone: raises when a peak exceeds its cold pulse capability."""
    cell = d["cells"]["li_socl2"]
    for p in d["buffer"]["peaks"]:
        if p["a"] > cell["pulse_a_cold"]:
            raise CheckError(
                f"{p['what']}: {p['a']} A from {cell['part']} alone "
                f"(cold pulse {cell['pulse_a_cold']} A)"
            )


# --- logic levels ---------------------------------------------------------------------------------


def check_hop(levels: dict[str, Any], drv: str, rcv: str) -> None:
    a, b = levels[drv], levels[rcv]
    if a["voh_min"] < b["vih_min"]:
        raise CheckError(f"{drv} -> {rcv}: VOH {a['voh_min']} V < VIH {b['vih_min']} V")
    if a["vol_max"] > b["vil_max"]:
        raise CheckError(f"{drv} -> {rcv}: VOL {a['vol_max']} V > VIL {b['vil_max']} V")
    if a["voh_min"] > b["vabs_max"]:
        raise CheckError(
            f"{drv} -> {rcv}: drives {a['voh_min']} V into a {b['vabs_max']} V max input"
        )


def check_logic(d: dict[str, Any]) -> str:
    lv = d["logic"]["levels"]
    for link in d["logic"]["links"]:
        for drv, rcv in link["hops"]:
            check_hop(lv, drv, rcv)
    return f"{len(d['logic']['links'])} UART links meet VIH/VIL through the translator"


def run(d: dict[str, Any]) -> list[tuple[str, str]]:
    """[(name, summary)] for every check; raises the first CheckError."""
    return [
        ("regulator/logger", check_regulator(d, "logger")),
        ("regulator/reader", check_regulator(d, "reader")),
        ("charger", check_charger(d)),
        ("reader supply", check_reader_supply(d)),
        ("buffer", check_buffer(d)),
        ("logic", check_logic(d)),
    ]


def main() -> int:
    try:
        for name, text in run(load()):
            print(f"ok  {name}: {text}")
    except CheckError as exc:
        print(f"FAIL {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
