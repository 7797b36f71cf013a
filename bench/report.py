"""Readable benchmark report: bench/results.json -> bench/results.md and SVG charts.

    python -m bench --report     # regenerate from results.json, run nothing

``render(results)`` returns the Markdown text; ``charts(results)`` returns the SVG
files (name -> text) it links to; ``write(results)`` writes both. The SVGs are
written by hand as plain text (a few rects, lines and labels), so the report needs
no plotting library and no new dependency. Everything here is deterministic:
the same results.json always gives the same bytes, so a test can check that the
committed report is fresh.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

BENCH = Path(__file__).parent
RESULTS = BENCH / "results.json"
REPORT = BENCH / "results.md"
CHARTS = BENCH / "charts"
BLOCKS_SVG = BENCH.parent / "hardware" / "blocks.svg"


def group_of(name: str) -> str:
    return name.split(".", 1)[0]


def fmt_number(x: float | None) -> str:
    """Thousands separators and a rounding that suits the magnitude."""
    if x is None:
        return ""
    if x == int(x) and abs(x) >= 1:
        return f"{int(x):,}"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:,.1f}"
    if a >= 1:
        return f"{x:,.2f}"
    if a == 0:
        return "0"
    return f"{x:.3g}"


def fmt_ratio(r: float | None) -> str:
    """Three significant digits (2.43, 0.0833, 25.6, 1,234)."""
    if r is None:
        return ""
    if r == 0:
        return "0"
    digits = 3 - 1 - math.floor(math.log10(abs(r)))
    if digits <= 0:
        return f"{round(r, digits):,.0f}"
    return f"{r:.{digits}f}"


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _machine_key(m: dict[str, Any] | None) -> str:
    return json.dumps(m or {}, sort_keys=True)


MACHINE_FIELDS = (
    ("cpu", "cpu"),
    ("cores", "cores"),
    ("ram_gib", "RAM (GiB)"),
    ("python", "Python"),
    ("os", "OS"),
    ("system", "kernel"),
    ("node", "Node"),
    ("chromium", "Chromium"),
)


def _load(x: list[float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in x) if x else ""


def _share(x: float | None) -> str:
    return "" if x is None else f"{x:.0%}"


def shared_verdict(groups: dict[str, dict[str, Any]], cores: int) -> str:
    """One sentence: did other work share the machine while the benches ran?"""
    if not groups:
        return "The load of the machine was not recorded for these figures."
    others = [g["other_cpu_share"] for g in groups.values() if g.get("other_cpu_share") is not None]
    loads = [g["load_before"][0] for g in groups.values() if g.get("load_before")]
    busiest = max(others, default=0.0)
    if busiest >= 0.1 or max(loads, default=0.0) > cores:
        return (
            f"**The machine was shared**: other work used up to {busiest:.0%} of its CPU "
            f"during a group (mean {sum(others) / max(len(others), 1):.0%}), and the 1-minute "
            f"load average before a group reached {max(loads, default=0):.2f} on {cores} cores. "
            "Absolute figures (records/s, ms) are therefore lower and noisier than on an idle "
            "machine; the ratios against baselines measured in the same run are what stay "
            "meaningful."
        )
    return (
        f"The machine was quiet: other work used at most {busiest:.0%} of its CPU during any group."
    )


def machine_section(figures: list[dict[str, Any]], groups: dict[str, dict[str, Any]]) -> list[str]:
    machines: dict[str, list[dict[str, Any]]] = {}
    for f in figures:
        machines.setdefault(_machine_key(f.get("machine")), []).append(f)
    dates = sorted({(f.get("measured") or "")[:10] for f in figures} - {""})
    out = ["## Machine", ""]
    if len(machines) > 1:
        out += [
            f"**The figures come from {len(machines)} different machines**; "
            "compare figures within one machine only.",
            "",
        ]
    cores = 1
    for key, figs in machines.items():
        m = json.loads(key)
        cores = max(cores, int(m.get("cores") or 1))
        if len(machines) > 1:
            names = ", ".join(sorted({group_of(f["name"]) for f in figs}))
            out += [f"Machine used for {len(figs)} figures ({names}):", ""]
        fields = [(k, label) for k, label in MACHINE_FIELDS if k in m]
        out += [
            "| " + " | ".join(label for _, label in fields) + " |",
            "|" + "|".join("---:" if k in ("cores", "ram_gib") else "---" for k, _ in fields) + "|",
            "| "
            + " | ".join(cell(m.get(k) if m.get(k) is not None else "?") for k, _ in fields)
            + " |",
            "",
        ]
    if groups:
        ordered = sorted(groups.items(), key=lambda kv: kv[1].get("started", ""))
        first = ordered[0][1]
        out += [
            f"Load average (1 / 5 / 15 min) when the first group started "
            f"({first.get('started', '?')}): {_load(first.get('load_before'))}.",
            "",
            shared_verdict(groups, cores),
            "",
            "| bench group | started | seconds | load before | load after "
            "| CPU: this bench | CPU: other work |",
            "|---|---|---:|---|---|---:|---:|",
        ]
        for name, g in ordered:
            out.append(
                f"| {cell(name)} | {cell(g.get('started', ''))} | {g.get('seconds', '')} "
                f"| {_load(g.get('load_before'))} | {_load(g.get('load_after'))} "
                f"| {_share(g.get('own_cpu_share'))} | {_share(g.get('other_cpu_share'))} |"
            )
        total = sum(g.get("seconds") or 0 for g in groups.values())
        out += [
            "",
            f"CPU shares are of the whole machine ({cores} cores) over the group's run: "
            "*this bench* is the bench process and the children it waited for (gateways, "
            "brokers, databases, browsers), *other work* the rest of /proc/stat's busy time. "
            f"The groups took {total:,.0f} s in all.",
            "",
        ]
    if len(dates) > 1:
        out += [
            f"Figures were measured on different dates, {dates[0]} to {dates[-1]} "
            "(see each row's *measured* column); groups are re-measured separately.",
            "",
        ]
    elif dates:
        out += [f"All figures were measured on {dates[0]}.", ""]
    return out


def _ratio_figures(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in figures if f.get("ratio") not in (None, 0)]


def _battery_figures(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """firmware.battery_days.<signer>.<N>min, by signer then interval (1, 5, 10 min)."""

    def key(f: dict[str, Any]) -> tuple[str, int, str]:
        signer, _, interval = f["name"][len("firmware.battery_days.") :].rpartition(".")
        digits = "".join(c for c in interval if c.isdigit())
        return signer, int(digits) if digits else 0, interval

    return sorted((f for f in figures if f["name"].startswith("firmware.battery_days.")), key=key)


def render(results: dict[str, Any]) -> str:
    figures = sorted(results.get("figures", []), key=lambda f: f["name"])
    out = [
        "# ColdTrace benchmark results",
        "",
        "Generated by `python -m bench --report` from `bench/results.json`; "
        "do not edit by hand (`make bench` re-measures and rewrites it).",
        "",
    ]
    out += machine_section(figures, results.get("groups", {}))
    links = [f"- [{CHART_TITLES[name]}](charts/{name})" for name in charts(results)]
    if BLOCKS_SVG.exists():
        links.append(
            "- [Block size against bytes, battery, queue days and delay "
            "(hardware/power.md's chart)](../hardware/blocks.svg)"
        )
    if links:
        out += [
            "## Charts",
            "",
            "Drawn from this file's figures (their `samples` and `series` in results.json):",
            "",
            *links,
            "",
        ]
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in figures:
        groups.setdefault(group_of(f["name"]), []).append(f)
    for g, figs in groups.items():
        out += [
            f"## {g}",
            "",
            "| figure | value | baseline | baseline value | ratio | note | measured |",
            "|---|---:|---|---:|---:|---|---|",
        ]
        for f in figs:
            value = f"{fmt_number(f.get('value'))} {f.get('unit', '')}".strip()
            out.append(
                "| "
                + " | ".join(
                    cell(x)
                    for x in (
                        f["name"][len(g) + 1 :] or f["name"],
                        value,
                        f.get("baseline") or "",
                        fmt_number(f.get("baseline_value")),
                        fmt_ratio(f.get("ratio")),
                        f.get("note") or "",
                        (f.get("measured") or "")[:10],
                    )
                )
                + " |"
            )
        out.append("")
    return "\n".join(out)


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="{width // 2}" y="20" text-anchor="middle" font-size="14" '
            f'font-weight="bold">{escape(title)}</text>',
            *body,
            "</svg>",
            "",
        ]
    )


def ratio_chart(figures: list[dict[str, Any]]) -> str:
    """Horizontal bars of every ratio on a log scale; the baseline (1.0) is a line."""
    figs = _ratio_figures(figures)
    label_w, plot_w, bar_h, top = 380, 440, 16, 40
    width = label_w + plot_w + 70
    height = top + bar_h * len(figs) + 50
    logs = [math.log10(abs(f["ratio"])) for f in figs]
    lo = math.floor(min([*logs, 0]))
    hi = math.ceil(max([*logs, 0]))
    if hi == lo:
        hi = lo + 1

    def x(v: float) -> float:
        return label_w + (v - lo) / (hi - lo) * plot_w

    body = []
    bottom = top + bar_h * len(figs)
    for d in range(lo, hi + 1):
        xx = x(d)
        body.append(f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{bottom}" stroke="#ddd"/>')
        body.append(f'<text x="{xx:.1f}" y="{bottom + 14}" text-anchor="middle">{10.0**d:g}</text>')
    for i, (f, lg) in enumerate(zip(figs, logs, strict=True)):
        y = top + i * bar_h
        x0, x1 = sorted((x(0), x(lg)))
        colour = "#4a7fb5" if lg >= 0 else "#d08a3c"
        body.append(
            f'<text x="{label_w - 6}" y="{y + bar_h - 4}" text-anchor="end">'
            f"{escape(f['name'])}</text>"
        )
        body.append(
            f'<rect class="bar" x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 1):.1f}" '
            f'height="{bar_h - 4}" fill="{colour}"><title>{escape(f["name"])}: '
            f"{fmt_ratio(f['ratio'])} x {escape(f.get('baseline') or '')}</title></rect>"
        )
        body.append(
            # the value sits right of the bar's right end (the 1.0 line for ratios < 1)
            f'<text x="{x1 + 4:.1f}" y="{y + bar_h - 4}" fill="#333">{fmt_ratio(f["ratio"])}</text>'
        )
    body.append(
        f'<line x1="{x(0):.1f}" y1="{top - 4}" x2="{x(0):.1f}" y2="{bottom}" '
        'stroke="black" stroke-width="1.5"/>'
    )
    body.append(
        f'<line x1="{label_w}" y1="{bottom}" x2="{label_w + plot_w}" y2="{bottom}" stroke="black"/>'
    )
    body.append(
        f'<text x="{label_w + plot_w / 2:.0f}" y="{bottom + 32}" text-anchor="middle">'
        "ratio = figure / its baseline (log scale; line at 1.0 = baseline)</text>"
    )
    return _svg(width, height, "Every figure against its baseline", body)


def battery_chart(figures: list[dict[str, Any]]) -> str:
    """Horizontal bars of firmware.battery_days.<signer>.<interval>, in days."""
    figs = _battery_figures(figures)
    label_w, plot_w, bar_h, top = 260, 420, 20, 40
    width = label_w + plot_w + 80
    bottom = top + bar_h * len(figs)
    height = bottom + 50
    vmax = max(f["value"] for f in figs) or 1
    step = 10 ** math.floor(math.log10(vmax))
    if vmax / step < 3:
        step /= 2
    top_tick = math.ceil(vmax / step) * step

    def x(v: float) -> float:
        return label_w + v / top_tick * plot_w

    body = []
    t = 0.0
    while t <= top_tick + 1e-9:
        body.append(
            f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{bottom}" stroke="#ddd"/>'
        )
        body.append(
            f'<text x="{x(t):.1f}" y="{bottom + 14}" text-anchor="middle">{fmt_number(t)}</text>'
        )
        t += step
    for i, f in enumerate(figs):
        y = top + i * bar_h
        label = f["name"][len("firmware.battery_days.") :].replace(".", ", every ")
        body.append(
            f'<text x="{label_w - 6}" y="{y + bar_h - 6}" text-anchor="end">{escape(label)}</text>'
        )
        body.append(
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{x(f["value"]) - label_w:.1f}" '
            f'height="{bar_h - 6}" fill="#5a9b5a"/>'
        )
        body.append(
            f'<text x="{x(f["value"]) + 4:.1f}" y="{y + bar_h - 6}">{fmt_number(f["value"])}</text>'
        )
    body.append(f'<line x1="{label_w}" y1="{top}" x2="{label_w}" y2="{bottom}" stroke="black"/>')
    body.append(
        f'<line x1="{label_w}" y1="{bottom}" x2="{label_w + plot_w}" y2="{bottom}" stroke="black"/>'
    )
    body.append(
        f'<text x="{label_w + plot_w / 2:.0f}" y="{bottom + 32}" text-anchor="middle">'
        "battery life (days)</text>"
    )
    return _svg(width, height, "Battery life by signer and reading interval", body)


# --- pictures of single figures: throughput, latency distributions, block size ---------------

EDGE = ' stroke="black" stroke-width="2"'  # the default block size's bar
PALETTE = ("#4a7fb5", "#d08a3c", "#5a9b5a", "#b5524a", "#8a6bb5", "#4aa5a5", "#a5a54a", "#777")


def _by_name(figures: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in figures}


def _nice_step(vmax: float, ticks: int = 5) -> float:
    raw = (vmax or 1) / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _x_axis(
    body: list[str], x0: float, x1: float, y_top: float, y: float, vmax: float, label: str
) -> float:
    """Grid lines and tick labels from 0 to a round top >= vmax; returns the top value."""
    step = _nice_step(vmax)
    top = math.ceil(vmax / step - 1e-9) * step or step
    t = 0.0
    while t <= top + 1e-9:
        xx = x0 + t / top * (x1 - x0)
        body.append(f'<line x1="{xx:.1f}" y1="{y_top}" x2="{xx:.1f}" y2="{y}" stroke="#ddd"/>')
        body.append(f'<text x="{xx:.1f}" y="{y + 14}" text-anchor="middle">{fmt_number(t)}</text>')
        t += step
    body.append(f'<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="black"/>')
    body.append(
        f'<text x="{(x0 + x1) / 2:.0f}" y="{y + 32}" text-anchor="middle">{escape(label)}</text>'
    )
    return top


def pair_chart(title: str, rows: list[tuple[str, float, str, float]], axis: str) -> str:
    """Per row a figure's bar (colour) over its baseline's bar (grey), one linear scale;
    the figure's value and its ratio to the baseline at its end."""
    # about 6.3 px per character at font-size 11 (bold labels a little wider)
    longest = max((max(len(r[0]) * 1.1, len(r[2])) for r in rows), default=20)
    label_w, plot_w, top = max(160, round(longest * 6.3) + 16), 420, 44
    row_h = 44
    width = label_w + plot_w + 150
    bottom = top + row_h * len(rows)
    height = bottom + 50
    body: list[str] = []
    vmax = max([v for _, v, _, b in rows] + [b for _, v, _, b in rows] + [1e-9])
    scale_top = _x_axis(body, label_w, label_w + plot_w, top, bottom, vmax, axis)

    def x(v: float) -> float:
        return label_w + v / scale_top * plot_w

    for i, (label, value, base_label, base) in enumerate(rows):
        y = top + i * row_h
        body.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-weight="bold">'
            f"{escape(label)}</text>"
        )
        body.append(
            f'<text x="{label_w - 6}" y="{y + 31}" text-anchor="end" fill="#666">'
            f"{escape(base_label)}</text>"
        )
        body.append(
            f'<rect class="bar" x="{label_w}" y="{y + 5}" width="{max(x(value) - label_w, 1):.1f}" '
            f'height="14" fill="{PALETTE[0]}"/>'
        )
        body.append(
            f'<rect class="baseline" x="{label_w}" y="{y + 21}" '
            f'width="{max(x(base) - label_w, 1):.1f}" height="14" fill="#bbb"/>'
        )
        body.append(
            f'<text x="{x(value) + 4:.1f}" y="{y + 16}">{fmt_number(value)} '
            f"(x{fmt_ratio(value / base) if base else ''})</text>"
        )
        body.append(
            f'<text x="{x(base) + 4:.1f}" y="{y + 32}" fill="#666">{fmt_number(base)}</text>'
        )
    body.append(f'<line x1="{label_w}" y1="{top}" x2="{label_w}" y2="{bottom}" stroke="black"/>')
    body.append(
        f'<text x="{label_w}" y="{top - 8}" fill="#666">colour: the figure (x its ratio); '
        "grey: its baseline, measured in the same run</text>"
    )
    return _svg(width, height, title, body)


THROUGHPUT = (
    ("gateway.ingest.e2e_records_per_s", "gateway, 1 instance, SQLite"),
    ("gateway.fleet.one_instance_records_per_s", "fleet, 1 instance, PostgreSQL"),
    ("gateway.fleet.two_instances_vs_raw_verify", "fleet, 2 instances, PostgreSQL"),
    ("gateway.fleet.two_instances_records_per_s", "fleet, 2 instances, PostgreSQL"),
    ("cloud.push.sqlite.records_per_s", "cloud push, SQLite"),
    ("cloud.push.postgresql.records_per_s", "cloud push, PostgreSQL"),
)


def _pair_rows(figures: list[dict[str, Any]], wanted: tuple[tuple[str, str], ...]) -> list[Any]:
    by = _by_name(figures)
    return [
        (label, by[n]["value"], by[n]["baseline"], by[n]["baseline_value"])
        for n, label in wanted
        if n in by and by[n].get("baseline_value")
    ]


def throughput_chart(figures: list[dict[str, Any]]) -> str:
    return pair_chart(
        "Ingest throughput against same-run baselines (records/s)",
        _pair_rows(figures, THROUGHPUT),
        "records per second (2 cores shared by everything)",
    )


def _verify_rows(figures: list[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    out = []
    for f in figures:
        name = f["name"]
        if name.startswith("verify.bundle_") and name.endswith(".seconds"):
            n = int(name.split(".")[1].removeprefix("bundle_"))
            size = f"10^{round(math.log10(n))}" if n > 0 else str(n)
            out.append((name, f"{size} records: CLI"))
            out.append((name.replace(".seconds", ".browser_seconds"), f"{size} records: browser"))
    return tuple(out)


def verify_chart(figures: list[dict[str, Any]]) -> str:
    return pair_chart(
        "Verifying a large bundle: command line and browser (seconds)",
        _pair_rows(figures, _verify_rows(figures)),
        "seconds (less is better)",
    )


def _samples(figures: list[dict[str, Any]], name: str) -> list[float]:
    return [float(x) for x in _by_name(figures).get(name, {}).get("samples") or []]


ANCHOR = "evm.reading_to_anchored.p50_s"


def anchor_latency_chart(figures: list[dict[str, Any]]) -> str:
    """Histogram of every reading's time to anchored, with p50, p95, max and the goal."""
    xs = sorted(_samples(figures, ANCHOR))
    by = _by_name(figures)
    goal = (by.get("evm.reading_to_anchored.max_s") or {}).get("baseline_value") or 0
    left, plot_w, top, plot_h = 60, 600, 50, 220
    marks_h = 14 * 4  # a row above the plot for each mark's label (p50, p95, max, goal)
    top += marks_h
    width, height = left + plot_w + 40, top + plot_h + 60
    bin_w = 5.0
    xmax = max(xs[-1], goal) * 1.05
    nbins = math.ceil(xmax / bin_w)
    counts = [0] * nbins
    for v in xs:
        counts[min(int(v // bin_w), nbins - 1)] += 1
    cmax = max(counts) or 1
    bottom = top + plot_h
    body: list[str] = []
    top_x = _x_axis(
        body,
        left,
        left + plot_w,
        top,
        bottom,
        xmax,
        "seconds from a reading's commit to a final (12-confirmation) anchor covering it",
    )

    def x(v: float) -> float:
        return left + v / top_x * plot_w

    ystep = max(1, math.ceil(cmax / 5))
    ytop = math.ceil((cmax + 1) / ystep) * ystep  # headroom above the tallest bar
    for c in range(0, ytop + 1, ystep):
        yy = bottom - c / ytop * plot_h
        body.append(
            f'<line x1="{left}" y1="{yy:.1f}" x2="{left + plot_w}" y2="{yy:.1f}" stroke="#eee"/>'
        )
        body.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{c}</text>')
    for i, c in enumerate(counts):
        if c:
            h = c / ytop * plot_h
            body.append(
                f'<rect class="bar" x="{x(i * bin_w):.1f}" y="{bottom - h:.1f}" '
                f'width="{x(bin_w) - left - 1:.1f}" height="{h:.1f}" fill="{PALETTE[0]}"/>'
            )
    body.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="black"/>')
    body.append(
        f'<text x="14" y="{top + plot_h / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.0f})">readings per {bin_w:g} s bin</text>'
    )
    marks = [
        ("p50", _pct(xs, 0.5), "#333"),
        ("p95", _pct(xs, 0.95), "#333"),
        ("max", xs[-1], "#333"),
    ]
    if goal:
        marks.append(("goal", goal, "#b5524a"))
    for k, (label, v, colour) in enumerate(marks):
        body.append(
            f'<line x1="{x(v):.1f}" y1="{top - marks_h + 14 * k}" x2="{x(v):.1f}" y2="{bottom}" '
            f'stroke="{colour}" stroke-dasharray="4 3"/>'
        )
        body.append(
            f'<text x="{x(v) + 3:.1f}" y="{top - marks_h + 12 + 14 * k}" fill="{colour}">'
            f"{label} {v:.0f} s</text>"
        )
    return _svg(width, height, f"Reading to anchored on Anvil: {len(xs)} readings", body)


def _pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (as the benches compute them)."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))
    return s[k]


def _trace_series(figures: list[dict[str, Any]]) -> list[tuple[str, list[float]]]:
    out = []
    for f in figures:
        parts = f["name"].split(".")
        if (
            len(parts) == 5
            and parts[0] == "cloud"
            and parts[1].startswith("bundle_")
            and parts[4] == "p50_ms"
            and f.get("samples")
        ):
            out.append((f"{parts[2]} {parts[3]}", [float(x) for x in f["samples"]]))
    return out


def trace_latency_chart(figures: list[dict[str, Any]]) -> str:
    """Cumulative distribution of the bundle requests' server time, per store and case,
    on a log scale (cold requests take hundreds of ms, warm ones a few)."""
    # SQLite first, then PostgreSQL; within each: cold, warm, warm_gzip, warm_304
    order = {"sqlite": 0, "cold": 0, "warm": 1, "warm_gzip": 2, "warm_304": 3}
    series = sorted(
        _trace_series(figures),
        key=lambda s: tuple(order.get(w, 9) for w in s[0].split()),
    )
    left, plot_w, top, plot_h = 60, 560, 40, 260
    legend_w = 240
    width, height = left + plot_w + legend_w, top + plot_h + 60
    allv = [v for _, xs in series for v in xs if v > 0]
    lo = math.floor(math.log10(min(allv)))
    hi = math.ceil(math.log10(max([*allv, 100.0])))
    bottom = top + plot_h

    def x(v: float) -> float:
        return left + (math.log10(max(v, 10.0**lo)) - lo) / (hi - lo) * plot_w

    def y(q: float) -> float:
        return bottom - q * plot_h

    body: list[str] = []
    for d in range(lo, hi + 1):
        body.append(
            f'<line x1="{x(10.0**d):.1f}" y1="{top}" x2="{x(10.0**d):.1f}" y2="{bottom}" '
            'stroke="#ddd"/>'
        )
        body.append(
            f'<text x="{x(10.0**d):.1f}" y="{bottom + 14}" text-anchor="middle">'
            f"{fmt_number(10.0**d)}</text>"
        )
    for q in (0, 0.25, 0.5, 0.75, 0.95, 1):
        body.append(
            f'<line x1="{left}" y1="{y(q):.1f}" x2="{left + plot_w}" y2="{y(q):.1f}" '
            f'stroke="{"#bbb" if q == 0.95 else "#eee"}"/>'
        )
        body.append(f'<text x="{left - 6}" y="{y(q) + 4:.1f}" text-anchor="end">{q:g}</text>')
    body.append(
        f'<line x1="{x(100):.1f}" y1="{top}" x2="{x(100):.1f}" y2="{bottom}" '
        'stroke="#b5524a" stroke-dasharray="4 3"/>'
    )
    body.append(
        f'<text x="{x(100) + 3:.1f}" y="{bottom - 6}" fill="#b5524a">goal: p95 under 100 ms</text>'
    )
    for i, (label, xs) in enumerate(series):
        s = sorted(xs)
        colour = PALETTE[0] if label.startswith("sqlite") else PALETTE[1]
        dash = [
            "",
            ' stroke-dasharray="6 3"',
            ' stroke-dasharray="2 2"',
            ' stroke-dasharray="8 2 2 2"',
        ][i % 4]
        pts = [f"{x(s[0]):.1f},{y(0):.1f}"]
        for k, v in enumerate(s):
            pts.append(f"{x(v):.1f},{y(k / len(s)):.1f}")
            pts.append(f"{x(v):.1f},{y((k + 1) / len(s)):.1f}")
        body.append(
            f'<polyline class="cdf" points="{" ".join(pts)}" fill="none" '
            f'stroke="{colour}" stroke-width="1.6"{dash}/>'
        )
        ly = top + 10 + 18 * i
        lx = left + plot_w + 14
        body.append(
            f'<line x1="{lx}" y1="{ly}" x2="{lx + 26}" y2="{ly}" stroke="{colour}" '
            f'stroke-width="1.6"{dash}/>'
        )
        body.append(f'<text x="{lx + 32}" y="{ly + 4}">{escape(label)} (N={len(s)})</text>')
    body.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="black"/>')
    body.append(
        f'<line x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}" stroke="black"/>'
    )
    body.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{bottom + 32}" text-anchor="middle">'
        "server time per bundle request, ms (log scale)</text>"
    )
    body.append(
        f'<text x="14" y="{top + plot_h / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.0f})">fraction of requests</text>'
    )
    return _svg(width, height, "Trace bundle latency (30-day journey): distribution", body)


BLOCK_SERIES = (
    ("bytes per reading (record bytes / N)", "blocks.bytes_per_reading.", "B", "goal <= "),
    (
        "battery days, pure-MicroPython signing",
        "blocks.battery_days.python_sign.",
        "days",
        "goal >= ",
    ),
    ("battery days, ATECC608B signing", "blocks.battery_days.atecc_sign.", "days", None),
)


def _block_series(figures: list[dict[str, Any]]) -> list[tuple[str, str, list[Any], float, int]]:
    out = []
    for title, prefix, unit, goal_word in BLOCK_SERIES:
        f = next((f for f in figures if f["name"].startswith(prefix) and f.get("series")), None)
        if f is None:
            continue
        goal = 0.0
        note = f.get("note") or ""
        if goal_word and goal_word in note:
            goal = float(note.split(goal_word, 1)[1].split(":")[0].split()[0])
        default = int(f["name"].rsplit(".n", 1)[1])  # blocks.<...>.n12: the default N
        out.append((title, unit, f["series"], goal, default))
    return out


def blocks_chart(figures: list[dict[str, Any]]) -> str:
    """One panel per series: the value at each block size N (categorical axis)."""
    panels = _block_series(figures)
    left, plot_w, plot_h, gap = 70, 460, 120, 60
    width = left + plot_w + 90
    height = 40 + len(panels) * (plot_h + gap) + 10
    body: list[str] = []
    for i, (title, unit, series, goal, default) in enumerate(panels):
        top = 40 + i * (plot_h + gap) + 14
        bottom = top + plot_h
        ns = [n for n, _ in series]
        vmax = max([v for _, v in series] + [goal])
        step = _nice_step(vmax, 4)
        vtop = math.ceil(vmax / step - 1e-9) * step

        def x(k: int, ns: list[Any] = ns) -> float:
            return left + (k + 0.5) / len(ns) * plot_w

        def y(v: float, vtop: float = vtop, bottom: float = bottom) -> float:
            return bottom - v / vtop * plot_h

        body.append(f'<text x="{left}" y="{top - 8}" font-weight="bold">{escape(title)}</text>')
        t = 0.0
        while t <= vtop + 1e-9:
            body.append(
                f'<line x1="{left}" y1="{y(t):.1f}" x2="{left + plot_w}" y2="{y(t):.1f}" '
                'stroke="#eee"/>'
            )
            body.append(
                f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{fmt_number(t)}</text>'
            )
            t += step
        if goal:
            body.append(
                f'<line x1="{left}" y1="{y(goal):.1f}" x2="{left + plot_w}" '
                f'y2="{y(goal):.1f}" stroke="#b5524a" stroke-dasharray="4 3"/>'
            )
            body.append(
                f'<text x="{left + plot_w + 4}" y="{y(goal) + 4:.1f}" fill="#b5524a">'
                f"goal {fmt_number(goal)}</text>"
            )
        bw = plot_w / len(ns) * 0.6
        for k, (n, v) in enumerate(series):
            body.append(
                f'<rect class="bar" x="{x(k) - bw / 2:.1f}" y="{y(v):.1f}" '
                f'width="{bw:.1f}" height="{bottom - y(v):.1f}" '
                f'fill="{PALETTE[0] if i == 0 else PALETTE[2]}"'
                f"{EDGE if n == default else ''}/>"
            )
            body.append(
                f'<text x="{x(k):.1f}" y="{y(v) - 3:.1f}" text-anchor="middle">'
                f"{fmt_number(v)}</text>"
            )
            body.append(
                f'<text x="{x(k):.1f}" y="{bottom + 14}" text-anchor="middle">'
                f"N={fmt_number(n)}{' (default)' if n == default else ''}</text>"
            )
        body.append(
            f'<line x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}" stroke="black"/>'
        )
        body.append(
            f'<text x="{left - 50}" y="{top + plot_h / 2:.0f}" text-anchor="middle" '
            f'transform="rotate(-90 {left - 50} {top + plot_h / 2:.0f})">{unit}</text>'
        )
    return _svg(width, height, "Block size N against bytes per reading and battery", body)


CHART_TITLES = {
    "ratios.svg": "Every ratio against its baseline",
    "throughput.svg": "Ingest throughput: gateway (1 and 2 instances) and cloud push against "
    "raw verification",
    "verify.svg": "Verifying a large bundle: CLI against raw verify, browser against the CLI",
    "trace_latency.svg": "Trace bundle latency distribution (SQLite, PostgreSQL; cold, warm)",
    "anchor_latency.svg": "Reading-to-anchored latency histogram (Anvil)",
    "blocks.svg": "Block size against bytes per reading and battery days",
    "battery_days.svg": "Battery life by reading interval",
}


def charts(results: dict[str, Any]) -> dict[str, str]:
    """The SVG files the report links, name -> text, each only when its figures exist."""
    figures = sorted(results.get("figures", []), key=lambda f: f["name"])
    out = {}
    if _ratio_figures(figures):
        out["ratios.svg"] = ratio_chart(figures)
    if _pair_rows(figures, THROUGHPUT):
        out["throughput.svg"] = throughput_chart(figures)
    if _pair_rows(figures, _verify_rows(figures)):
        out["verify.svg"] = verify_chart(figures)
    if _trace_series(figures):
        out["trace_latency.svg"] = trace_latency_chart(figures)
    if _samples(figures, ANCHOR):
        out["anchor_latency.svg"] = anchor_latency_chart(figures)
    if _block_series(figures):
        out["blocks.svg"] = blocks_chart(figures)
    if _battery_figures(figures):
        out["battery_days.svg"] = battery_chart(figures)
    return out


def load(path: Path = RESULTS) -> dict[str, Any]:
    return json.loads(path.read_text())


def write(results: dict[str, Any], report: Path = REPORT, chart_dir: Path = CHARTS) -> Path:
    chart_dir.mkdir(parents=True, exist_ok=True)
    for name, text in charts(results).items():
        (chart_dir / name).write_text(text)
    report.write_text(render(results))
    return report
