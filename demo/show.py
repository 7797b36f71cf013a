"""What the demo shows: charts, the custody table, alerts, and the tampering.

Everything here reads evidence (the bundle's records, the gateway's alert
events); nothing comes from the simulator's own view of the world.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from protocol.bundle import Bundle
from protocol.record import Reading, encode_payload, open_record


def channel(ch: int | None) -> str:
    """The simulated loggers' channels: 0 the DS18B20 probe, 1 the SHT4x (box air)."""
    return {0: "probe", 1: "air"}.get(ch or 0, f"ch{ch}")


def clock(t: int) -> str:
    return time.strftime("%d %b %H:%M", time.gmtime(t))


def span(seconds: int) -> str:
    h, m = divmod(round(seconds / 60), 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def spark(values: list[int], lo: int, hi: int, width: int = 60) -> str:
    """A one-line terminal chart; the limits lo..hi map to the full height."""
    blocks = " ▁▂▃▄▅▆▇█"
    step = max(1, -(-len(values) // width))
    cells = []
    for i in range(0, len(values), step):
        v = max(values[i : i + step])
        frac = (v - lo) / (hi - lo) if hi > lo else 0
        cells.append(blocks[max(0, min(8, round(frac * 8)))])
    return "".join(cells)


def marks(values: list[int], limits: tuple[int, int], width: int = 60) -> str:
    """Under a :func:`spark` line: ``^`` where a cell has a reading outside the band."""
    step = max(1, -(-len(values) // width))
    out = []
    for i in range(0, len(values), step):
        cell = values[i : i + step]
        out.append("^" if any(not limits[0] <= v <= limits[1] for v in cell) else " ")
    return "".join(out).rstrip()


def svg_chart(
    series: dict[str, list[tuple[int, int]]],
    limits: tuple[int, int],
    path: Path,
    events: Sequence[tuple[int, str]] = (),
) -> None:
    """Draw temperature curves with the profile band and excursions marked;
    ``events`` (time, label) are drawn as dashed vertical lines (handovers)."""
    w, h, pad = 900, 340, 50
    pts = [p for s in series.values() for p in s]
    t0 = min([t for t, _ in pts] + [t for t, _ in events])
    t1 = max([t for t, _ in pts] + [t for t, _ in events])
    v0 = min(min(v for _, v in pts), limits[0]) - 100
    v1 = max(max(v for _, v in pts), limits[1]) + 100

    def x(t: int) -> float:
        return pad + (t - t0) / max(1, t1 - t0) * (w - 2 * pad)

    def y(v: int) -> float:
        return h - pad - (v - v0) / (v1 - v0) * (h - 2 * pad)

    colors = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
    band_top, band_bottom = y(limits[1]), y(limits[0])
    title = (
        f"Temperature (°C), allowed band {limits[0] / 100:.0f}–{limits[1] / 100:.0f} °C "
        "shaded; red = outside the band"
    )
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect x="{pad}" y="{band_top:.1f}" width="{w - 2 * pad}" '
        f'height="{band_bottom - band_top:.1f}" fill="#e8f4e8"/>',
        f'<text x="{pad}" y="20" font-size="14">{title}</text>',
    ]
    for c in range(v0 // 100, v1 // 100 + 1):
        out.append(f'<text x="10" y="{y(c * 100) + 4:.1f}">{c}</text>')
        yc = y(c * 100)
        out.append(f'<line x1="{pad}" x2="{w - pad}" y1="{yc:.1f}" y2="{yc:.1f}" stroke="#ddd"/>')
    for t in range(t0 - t0 % 3600 + 3600, t1, 3 * 3600):  # a time label every 3 h (UTC)
        label = time.strftime("%H:%M", time.gmtime(t))
        out.append(f'<text x="{x(t) - 15:.1f}" y="{h - pad + 18}">{label}</text>')
    for i, (t, label) in enumerate(events):
        out.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{pad}" y2="{h - pad}" '
            'stroke="#888" stroke-dasharray="4 3"/>'
        )
        right = x(t) > w - pad - 80  # near the right edge: the label goes left of the line
        out.append(
            f'<text x="{x(t) + (-3 if right else 3):.1f}" y="{pad + 12 + 14 * (i % 2)}" '
            f'fill="#555" text-anchor="{"end" if right else "start"}">{label}</text>'
        )
    for i, (name, s) in enumerate(series.items()):
        d = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s)
        out.append(
            f'<polyline fill="none" stroke="{colors[i % len(colors)]}" stroke-width="1.5" '
            f'points="{d}"/>'
        )
        for t, v in s:
            if not limits[0] <= v <= limits[1]:
                out.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="#d62728"/>')
        step = (w - 2 * pad) / max(1, len(series))  # the legend shares the width
        color = colors[i % len(colors)]
        out.append(f'<text x="{pad + step * i:.0f}" y="40" fill="{color}">— {name}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def probe_series(bundle: Bundle) -> dict[str, list[tuple[int, int]]]:
    """(time, temp) of each logger's channel-0 readings in the bundle, in time order."""
    series: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for item in bundle.records:
        rec = open_record(item.raw)
        p = rec.payload
        if isinstance(p, Reading) and p.temp is not None and not p.ch:
            series[rec.signer].append((p.time, p.temp))
    return {k: sorted(v) for k, v in series.items()}


def show_alerts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Print the gateway's alerts (one line per alarm, from its last event); return them."""
    last: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev.get("phase") == "end" or ev.get("id") not in last:
            last[ev.get("id", "?")] = ev
    alarms = list(last.values())
    if not alarms:
        print("   no alerts were raised")
    for ev in alarms:
        ch = channel(ev.get("channel"))
        if ev.get("kind") != "excursion":
            print(f"   ALERT {ev.get('kind')} {ev.get('device')} {ch} {ev.get('phase')}")
            continue
        end = ev.get("end")
        start = clock(ev["start"])
        window = f"{start} – {clock(end)[-5:]}" if end else f"since {start}"
        extra = f", MKT {ev['mkt_centi'] / 100:.2f} °C" if ev.get("mkt_centi") is not None else ""
        print(
            f"   ALERT {ev['side']} excursion  {ev['device']} {ch} at {ev['place']} "
            f"(profile {ev['profile']}, limit {ev['limit_centi'] / 100:.2f} °C): {window}"
            + (f" ({span(ev['duration'])})" if ev.get("duration") else "")
            + f", peak {ev['peak_centi'] / 100:.2f} °C{extra}; alarm by {ev['reason']}"
        )
    return alarms


def tamper(bundle_path: Path, out: Path) -> Path:
    """Edit the hottest reading down to 3.90 °C, keeping its signature."""
    from protocol.bundle import load_bundle

    doc = load_bundle(bundle_path)
    at, peak, signer = -1, None, ""
    for i, r in enumerate(doc.records):
        rec = open_record(r.raw)
        p = rec.payload
        if (
            isinstance(p, Reading)
            and p.temp is not None
            and (peak is None or p.temp > (peak.temp or 0))
        ):
            at, peak, signer = i, p, rec.signer
    assert at >= 0 and peak is not None and peak.temp is not None
    item = doc.records[at]
    raw = item.raw
    old = encode_payload(peak)
    new = encode_payload(dataclasses.replace(peak, temp=390))
    edited = raw.replace(old, new, 1)
    doc.records[at] = dataclasses.replace(item, raw=edited)
    print(
        f"   edited {signer} seq {peak.seq} ({channel(peak.ch)}, log leaf {item.index}) "
        "from "
        f"{peak.temp / 100:.2f} °C to 3.90 °C, signature kept "
        f"({sum(a != b for a, b in zip(raw, edited, strict=True))} byte(s) changed)"
    )
    path = out / "bundle-tampered.json"
    path.write_text(doc.dumps())
    return path


def cut_logger(bundle_path: Path, out: Path, device: str) -> Path:
    """The bundle without ``device``'s records, each log's multiproof recomputed for the rest.

    Anyone holding the bundle can do this: the records' leaf hashes and the
    proofs' nodes are all the hashes the smaller proofs need. Here each log's
    tree is rebuilt from them: every range a new proof names is hashed from
    the leaves and the old proof's ranges it is made of.
    """
    from protocol.bundle import load_bundle
    from protocol.merkle import hash_children, hash_leaf, multiproof_ranges

    b = load_bundle(bundle_path)
    kept = [r for r in b.records if open_record(r.raw).signer != device]
    proofs = []
    for mp in b.proofs:
        mine = [r for r in b.records if r.log == mp.log]
        leaves = {r.index: hash_leaf(r.raw) for r in mine}
        known = {
            rng: h
            for rng, h in zip(
                multiproof_ranges(mp.tree_size, list(mp.leaves)), mp.nodes, strict=True
            )
        }
        known.update({(i, i + 1): h for i, h in leaves.items()})

        def mth(lo: int, hi: int, known: dict[tuple[int, int], bytes] = known) -> bytes:
            h = known.get((lo, hi))
            if h is None:
                k = 1 << ((hi - lo - 1).bit_length() - 1)
                h = hash_children(mth(lo, lo + k), mth(lo + k, hi))
                known[(lo, hi)] = h
            return h

        left = sorted(r.index for r in kept if r.log == mp.log)
        if len(left) == len(mine):
            proofs.append(mp)
            continue
        nodes = tuple(mth(lo, hi) for lo, hi in multiproof_ranges(mp.tree_size, left))
        proofs.append(dataclasses.replace(mp, leaves=tuple(left), nodes=nodes))
        print(
            f"   left out {device}'s {len(mine) - len(left)} records of {mp.log}; "
            f"{len(left)} of that log remain, with a proof of {len(nodes)} nodes"
        )
    b.records = kept
    b.proofs = proofs
    path = out / "bundle-cut.json"
    path.write_text(b.dumps())
    return path


def custody(trace: dict[str, Any]) -> None:
    """The cloud's legs (``GET /v1/traces/{uid}``): one line each."""
    from demo.world import ACTIONS

    print(
        f"     {'#':<2} {'from':<12} {'action':<10} {'where':<26} {'organisation':<13} "
        f"{'monitored by':<15} scan from the log of"
    )
    logs = {lg["log"]: lg["organisation"] for lg in trace["logs"]}
    for leg in trace["legs"]:
        monitors = sorted({m["device"] for m in leg["monitors"]}) or ["-"]
        scanned = leg["scanned_in"]
        owner = logs.get(scanned, "?") if scanned else "-"
        print(
            f"     {leg['index']:<2} {clock(leg['start']):<12} "
            f"{ACTIONS.get(leg['action'], '?'):<10} {leg['location'] or leg['place'] or '-':<26} "
            f"{leg['organisation'] or '-':<13} {', '.join(monitors):<15} {owner} "
            f"({leg['reader']})"
        )


def _rank(order: list[str], origin: str) -> int:
    return order.index(origin) if origin in order else len(order)


def checkpoints(bundle: Bundle, orgs: dict[str, str], trace: dict[str, Any]) -> None:
    """Each log's checkpoint in the bundle and who signed it: the log, the cloud's
    witness, peer gateways' witnesses (``<origin>/witness``)."""
    from demo.system import WITNESS_NAME
    from protocol.note import parse_note

    peers = {f"{origin}/witness": name for origin, name in orgs.items()}
    order = list(orgs)
    for text in sorted(bundle.checkpoints, key=lambda t: _rank(order, t.split("\n", 1)[0])):
        note = parse_note(text)
        origin, size = note.body.split("\n")[:2]
        who = []
        for sig in note.signatures:
            if sig.name == origin:
                continue  # the log's own signature
            if sig.name == WITNESS_NAME:
                who.append("the cloud")
            elif sig.name in peers:
                who.append(f"{peers[sig.name]}'s gateway (peer)")
            else:
                who.append(sig.name)
        records = sum(1 for r in bundle.records if r.log == origin)
        print(
            f"     {orgs.get(origin, '?'):<10} {origin:<44} size {size:>5}, {records:>3} records "
            f"in the bundle; cosigned by {' and '.join(who) or 'no witness'}"
        )
