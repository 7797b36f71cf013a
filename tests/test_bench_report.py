"""bench/report.py: Markdown tables, rounding, SVG charts, and a fresh committed report."""

from __future__ import annotations

import re
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


def test_machine_section_has_the_load_and_says_shared():
    groups = {
        "gateway": {
            "started": "2026-12-01T10:00:00Z",
            "seconds": 60.0,
            "load_before": [3.1, 2.0, 1.5],
            "load_after": [3.5, 2.2, 1.6],
            "own_cpu_share": 0.5,
            "other_cpu_share": 0.4,
        }
    }
    md = report.render({**RESULTS, "groups": groups})
    assert "when the first group started (2026-12-01T10:00:00Z): 3.10 / 2.00 / 1.50" in md
    assert "**The machine was shared**" in md and "| gateway | 2026-12-01T10:00:00Z | 60.0 |" in md
    quiet = {"gateway": {**groups["gateway"], "load_before": [0.1] * 3, "other_cpu_share": 0.02}}
    assert "The machine was quiet" in report.render({**RESULTS, "groups": quiet})


def test_distribution_and_pair_charts_draw_from_samples_and_series():
    figs = RESULTS["figures"] + [
        fig("gateway.ingest.e2e_records_per_s", 20000, "records/s", "pyca, 2 threads", 30000),
        fig("evm.reading_to_anchored.p50_s", 60, "s", note="x"),
        fig("evm.reading_to_anchored.max_s", 90, "s", "goal (issue 10)", 120),
        fig("cloud.bundle_30d.sqlite.cold.p50_ms", 600, "ms"),
        fig("cloud.bundle_30d.sqlite.warm.p50_ms", 5, "ms"),
        fig("verify.bundle_10000.seconds", 1.3, "s", "raw pyca", 0.9),
        fig("verify.bundle_10000.browser_seconds", 2.6, "s", "CLI", 1.3),
        fig("blocks.bytes_per_reading.n12", 15.4, "B", "kind 1", 135, note="goal <= 40: met"),
    ]
    by = {f["name"]: f for f in figs}
    by["evm.reading_to_anchored.p50_s"]["samples"] = [40.0, 55.5, 60.0, 61.0, 90.0]
    by["cloud.bundle_30d.sqlite.cold.p50_ms"]["samples"] = [600.0, 610.0, 790.0]
    by["cloud.bundle_30d.sqlite.warm.p50_ms"]["samples"] = [4.0, 5.0, 7.0]
    by["blocks.bytes_per_reading.n12"]["series"] = [[1, 135], [4, 37.75], [12, 15.42]]
    res = {"figures": figs}
    svgs = report.charts(res)
    ns = "{http://www.w3.org/2000/svg}"
    for name in ("throughput.svg", "verify.svg", "anchor_latency.svg", "trace_latency.svg"):
        assert name in svgs, name
    hist = ET.fromstring(svgs["anchor_latency.svg"])
    bars = [r for r in hist.iter(f"{ns}rect") if r.get("class") == "bar"]
    assert sum(1 for _ in bars) == 4  # 5 samples in 5-s bins: 40, 55, 60 + 61, 90
    texts = [t.text for t in hist.iter(f"{ns}text")]
    assert "p50 60 s" in texts and "max 90 s" in texts and "goal 120 s" in texts
    cdf = ET.fromstring(svgs["trace_latency.svg"])
    assert len([p for p in cdf.iter(f"{ns}polyline") if p.get("class") == "cdf"]) == 2
    blocks = ET.fromstring(svgs["blocks.svg"])
    assert "N=12 (default)" in [t.text for t in blocks.iter(f"{ns}text")]
    assert "goal 40" in [t.text for t in blocks.iter(f"{ns}text")]
    verify = ET.fromstring(svgs["verify.svg"])
    assert "10^4 records: browser" in [t.text for t in verify.iter(f"{ns}text")]
    md = report.render(res)
    for name in svgs:
        assert f"](charts/{name})" in md


LINK = re.compile(r"\]\(((?:charts/|\.\./)[^)]+)\)")


def test_every_chart_linked_from_the_report_exists():
    md = report.REPORT.read_text()
    links = LINK.findall(md)
    assert "charts/throughput.svg" in links and "charts/anchor_latency.svg" in links
    for link in links:
        assert (report.BENCH / link).is_file(), f"results.md links {link}, which is missing"


# Issue 12's figures: each must be in results.json, measured against a same-run baseline
# (a ratio) unless marked False; a bench that stops recording one fails this test.
ISSUE_12 = {
    # gateway ingest against raw verification, one instance and two
    "gateway.ingest.e2e_records_per_s": True,
    "gateway.fleet.one_instance_records_per_s": True,
    "gateway.fleet.two_instances_records_per_s": True,
    "gateway.fleet.two_instances_vs_raw_verify": True,
    # the Merkle log against pymerkle; record verification against pure-Python ecdsa
    "merkle.append_prove_verify": True,
    "records.verify_vs_ecdsa": True,
    # trace p95 on SQLite and PostgreSQL
    "cloud.bundle_30d.sqlite.cold.p95_ms": True,
    "cloud.bundle_30d.sqlite.warm.p95_ms": True,
    "cloud.bundle_30d.postgresql.cold.p95_ms": True,
    "cloud.bundle_30d.postgresql.warm.p95_ms": True,
    # bundle size against raw records
    "cloud.bundle_size.journey_30d.bundle_bytes": True,
    "cloud.bundle_size.journey_30d.gzip_bytes": True,
    # verification of a large bundle, CLI and browser
    "verify.bundle_10000.seconds": True,
    "verify.bundle_100000.seconds": True,
    "verify.bundle_10000.browser_seconds": True,
    "verify.bundle_100000.browser_seconds": True,
    "verify.bundle_10000.browser_peak_rss_mib": True,
    "verify.bundle_100000.browser_peak_rss_mib": True,
    "verify.bundle_100000.browser_js_heap_peak_mib": True,
    # firmware sign and verify time, and heap, under MicroPython
    "firmware.sign_ms.micropython_wasm": True,
    "firmware.verify_ms.micropython_wasm": True,
    "firmware.heap.allocated_per_sign": False,
    "firmware.heap.allocated_per_verify": True,
    "firmware.heap.resident_table_and_key": False,
    # bytes per reading, single and in blocks; battery days
    "firmware.record_bytes.temp+rh+batt, 9-byte id": True,
    "blocks.bytes_per_reading.n12": True,
    "blocks.mqtt_bytes_per_reading.n12": True,
    "blocks.battery_days.python_sign.5min.n12": True,
    "blocks.battery_days.atecc_sign.5min.n12": True,
    # anchoring cost per million readings; reading-to-anchored latency
    "evm.cost_per_million_readings.demo": True,
    "evm.cost_per_million_readings.site": True,
    "evm.reading_to_anchored.p50_s": True,
    "evm.reading_to_anchored.p95_s": True,
    "evm.reading_to_anchored.max_s": True,
}
SAMPLED = (
    "evm.reading_to_anchored.p50_s",
    "cloud.bundle_30d.sqlite.cold.p50_ms",
    "cloud.bundle_30d.postgresql.cold.p50_ms",
)


def test_every_issue_12_figure_is_recorded_with_its_baseline():
    results = report.load()
    by = {f["name"]: f for f in results["figures"]}
    missing = sorted(set(ISSUE_12) - set(by))
    assert not missing, f"bench/results.json lacks {missing}: run python -m bench"
    no_ratio = sorted(n for n, want in ISSUE_12.items() if want and not by[n].get("ratio"))
    assert not no_ratio, f"no same-run baseline: {no_ratio}"
    for name in SAMPLED:
        assert len(by[name].get("samples") or []) >= 5, f"{name}: no samples"
    assert len(by["blocks.bytes_per_reading.n12"].get("series") or []) >= 3
    groups = results.get("groups", {})
    # bench modules are named as their figures' first part, but for bench_fleet (gateway.fleet)
    for g in {report.group_of(n) for n in ISSUE_12} | {"fleet"}:
        assert g in groups, f"no load average recorded for bench group {g}"
        assert groups[g]["load_before"] and groups[g]["load_after"]
    m = by["verify.bundle_10000.browser_seconds"]["machine"]
    assert m.get("chromium") and m.get("node") and m.get("ram_gib")
