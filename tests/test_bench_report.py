"""bench/report.py: Markdown tables, rounding, SVG charts, and a fresh committed report."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from bench import report

MACHINE = {"cpu": "Test CPU", "cores": 4, "python": "3.11.7", "system": "Linux 6"}


def fig(name, value, unit, baseline=None, baseline_value=None, note="", machine=MACHINE):
    ratio = None if not baseline_value else round(value / baseline_value, 4)
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": ratio,
        "note": note,
        "machine": machine,
        "measured": "2026-12-01T10:00:00Z",
    }


RESULTS = {
    "figures": [
        fig("gateway.ingest.records_per_s", 20287.672, "records/s", "pyca verify", 30828.7051),
        fig("merkle.append.file", 597534.3105, "leaves/s", "memory", 716222.5044),
        fig("merkle.proof_bytes", 640, "bytes"),
        fig("records.verify_vs_ecdsa", 15148.0227, "records/s", "ecdsa", 592.021, note="a|b"),
        fig("firmware.battery_days.atecc.10min", 678.733, "days"),
        fig("firmware.battery_days.atecc.1min", 195.5784, "days"),
    ]
}


def row(md: str, figure: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {figure} |"))
    return [c.strip() for c in line.strip("|").split(" | ")]


def test_tables_rounding_and_ratios():
    md = report.render(RESULTS)
    assert "| Test CPU | 4 | 3.11.7 | Linux 6 |" in md
    assert "different machines" not in md
    for g in ("gateway", "merkle", "records", "firmware"):
        assert f"\n## {g}\n" in md
    assert row(md, "ingest.records_per_s") == [
        "ingest.records_per_s",
        "20,288 records/s",
        "pyca verify",
        "30,829",
        "0.658",
        "",
        "2026-12-01",
    ]
    assert row(md, "append.file")[1:5] == ["597,534 leaves/s", "memory", "716,223", "0.834"]
    assert row(md, "proof_bytes")[1:5] == ["640 bytes", "", "", ""]
    r = row(md, "verify_vs_ecdsa")
    assert r[1] == "15,148 records/s" and r[3] == "592.0" and r[4] == "25.6"
    assert "a\\|b" in md
    assert row(md, "battery_days.atecc.1min")[1] == "195.6 days"
    assert report.fmt_ratio(0.005) == "0.00500" and report.fmt_ratio(1234.5) == "1,230"
    assert report.fmt_number(3.5) == "3.50" and report.fmt_number(0.38123) == "0.381"


def test_different_machines_are_said():
    other = dict(MACHINE, cpu="Other CPU")
    res = {"figures": RESULTS["figures"] + [fig("evm.gas", 97887, "gas", machine=other)]}
    md = report.render(res)
    assert "2 different machines" in md and "Other CPU" in md


def test_svgs_well_formed_one_bar_per_ratio():
    svgs = report.charts(RESULTS)
    ns = "{http://www.w3.org/2000/svg}"
    root = ET.fromstring(svgs["ratios.svg"])
    bars = [r for r in root.iter(f"{ns}rect") if r.get("class") == "bar"]
    assert len(bars) == sum(1 for f in RESULTS["figures"] if f["ratio"])
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "gateway.ingest.records_per_s" in texts and "25.6" in texts
    bat = ET.fromstring(svgs["battery_days.svg"])
    labels = [t.text for t in bat.iter(f"{ns}text") if t.text and "every" in t.text]
    assert labels == ["atecc, every 1min", "atecc, every 10min"]
    assert "charts/ratios.svg" in report.render(RESULTS)


def test_committed_report_is_fresh():
    results = report.load()
    assert report.REPORT.read_text() == report.render(results), "run: python -m bench --report"
    for name, text in report.charts(results).items():
        assert (report.CHARTS / name).read_text() == text, f"stale bench/charts/{name}"
