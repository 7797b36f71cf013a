"""`coldtrace demo`: the main job, end to end, on the embedded defaults.

One pallet of chilled produce goes from a packhouse, by truck, through a
distribution centre's cold room to a shop. Devices sign readings and scans;
records go into a Merkle log; checkpoints are signed and anchored on the local
ledger; a trace bundle is written and verified by ``coldtrace verify``; then
one byte is flipped and the verifier's refusal is shown.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from protocol import anchor, cli
from protocol.bundle import AnchorRef, Bundle, BundleRecord, ConsistencyProof, InclusionProof
from protocol.checkpoint import Checkpoint, checkpoint_hash, sign_checkpoint
from protocol.keys import generate_p256, p256_public_to_sec1
from protocol.merkle import MerkleTree
from protocol.note import NoteSigner
from protocol.record import (
    ZERO_PREV,
    Reading,
    Registration,
    Scan,
    chain_hash,
    encode_payload,
    make_record,
    open_record,
)
from protocol.trust import trust_document

ORIGIN = "coldtrace.example/acme/dc-rotterdam"
REGISTRY = "reg-acme"
LEDGER = "ledger-acme"
START = 1_795_000_000  # 2026-11-18 ~10:13 UTC
CHILLED = (0, 400)  # 0.00 .. 4.00 °C in 0.01 °C

TAG = bytes.fromhex("04a23c5a1b6f80")  # NTAG 424 DNA, 7-byte UID
ITEM = "/01/09506000134352/10/L2611-42/21/000731"


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on the embedded defaults")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output directory")
    p.set_defaults(func=run)


@dataclass
class Signer:
    """A device (or the registry) with its own seq counter and hash chain."""

    id: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=generate_p256)
    boot: int = 1
    seq: int = 0
    prev: bytes = ZERO_PREV
    records: list[bytes] = field(default_factory=list)

    def sign(self, payload_cls: type, t: int, **fields: Any) -> bytes:
        payload = payload_cls(boot=self.boot, seq=self.seq, time=t, tq=2, prev=self.prev, **fields)
        raw = make_record(payload, self.id, self.key)
        self.seq += 1
        self.prev = chain_hash(raw)
        self.records.append(raw)
        return raw


def truck_temperature(minute: int) -> int:
    """Trailer air, 0.01 °C: pulls down after loading, a door-open excursion."""
    base = 240 + (60 if minute < 40 else 0) - (minute % 97) // 12
    if 200 <= minute < 230:  # door open at a cross-dock stop
        base = 420 + (minute - 200) * 6 if minute < 215 else 510 - (minute - 215) * 8
    return base


def coldroom_temperature(minute: int) -> int:
    return 310 + ((minute * 7) % 23) - 11


def spark(values: list[int], lo: int, hi: int, width: int = 60) -> str:
    """A one-line terminal chart; the limits lo..hi map to the full height."""
    blocks = " ▁▂▃▄▅▆▇█"
    step = max(1, len(values) // width)
    cells = []
    for i in range(0, len(values), step):
        v = max(values[i : i + step])
        frac = (v - lo) / (hi - lo) if hi > lo else 0
        cells.append(blocks[max(0, min(8, round(frac * 8)))])
    return "".join(cells)


def svg_chart(
    series: dict[str, list[tuple[int, int]]], limits: tuple[int, int], path: Path
) -> None:
    """Draw temperature curves with the profile band and excursions marked."""
    w, h, pad = 900, 320, 50
    pts = [p for s in series.values() for p in s]
    t0, t1 = min(t for t, _ in pts), max(t for t, _ in pts)
    v0 = min(min(v for _, v in pts), limits[0]) - 100
    v1 = max(max(v for _, v in pts), limits[1]) + 100

    def x(t: int) -> float:
        return pad + (t - t0) / max(1, t1 - t0) * (w - 2 * pad)

    def y(v: int) -> float:
        return h - pad - (v - v0) / (v1 - v0) * (h - 2 * pad)

    colors = ["#1f77b4", "#2ca02c", "#9467bd"]
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
    for i, (name, s) in enumerate(series.items()):
        d = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s)
        out.append(
            f'<polyline fill="none" stroke="{colors[i % 3]}" stroke-width="1.5" points="{d}"/>'
        )
        for t, v in s:
            if not limits[0] <= v <= limits[1]:
                out.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="#d62728"/>')
        out.append(
            f'<text x="{w - pad - 160}" y="{40 + 16 * i}" fill="{colors[i % 3]}">{name}</text>'
        )
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def build(out: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Make keys, records, log, checkpoints, an anchor; write bundle and trust file."""
    out.mkdir(parents=True, exist_ok=True)
    print("1. keys: a registry key, 4 device keys (P-256), a log key (Ed25519), a ledger key")
    registry = Signer(REGISTRY, boot=0)
    truck = Signer("tl-truck-07")
    room = Signer("tl-coldroom-2")
    pack = Signer("rd-packhouse-1")
    dock = Signer("rd-dock-3")
    log_signer = NoteSigner.generate(ORIGIN)
    ledger_key = ed25519.Ed25519PrivateKey.generate()

    print("2. registration records for each device, signed by the registry")
    placements = [
        (truck, 1, "truck:NL-47-BXT"),
        (room, 1, "dc-rotterdam:cold-room-2"),
        (pack, 2, "packhouse-westland"),
        (dock, 2, "dc-rotterdam:dock-3"),
    ]
    ordered: list[bytes] = []
    for dev, role, place in placements:
        ordered.append(
            registry.sign(
                Registration,
                START - 86_400,
                device=dev.id,
                key=p256_public_to_sec1(dev.key.public_key()),
                role=role,
                org="Acme Cold Logistics",
                place=place,
                state=1,
            )
        )

    print("3. a day of custody: commission, load, 8 h by truck, receive, cold room, ship")
    t = START
    ordered.append(pack.sign(Scan, t, uid=TAG, action=1, place="packhouse-westland", item=ITEM))
    ordered.append(
        pack.sign(Scan, t + 600, uid=TAG, action=2, place="packhouse-westland", ref="SH-2611-0042")
    )
    truck_series, room_series = [], []
    for minute in range(0, 480, 5):
        temp = truck_temperature(minute)
        ts = t + 900 + minute * 60
        ordered.append(
            truck.sign(Reading, ts, temp=temp, rh=8800 - minute, batt=3710 - minute // 60)
        )
        truck_series.append((ts, temp))
    t_arrive = t + 900 + 480 * 60
    ordered.append(dock.sign(Scan, t_arrive + 300, uid=TAG, action=3, place="dc-rotterdam:dock-3"))
    ordered.append(
        dock.sign(
            Scan, t_arrive + 420, uid=TAG, action=4, place="dc-rotterdam:dock-3", ref="SH-2611-0042"
        )
    )
    for minute in range(0, 600, 10):
        temp = coldroom_temperature(minute)
        ts = t_arrive + 600 + minute * 60
        ordered.append(room.sign(Reading, ts, temp=temp))
        room_series.append((ts, temp))
    ordered.append(
        dock.sign(Scan, t_arrive + 600 + 600 * 60, uid=TAG, action=5, place="dc-rotterdam:dock-3")
    )
    print(
        f"   {len(ordered)} signed records, {sum(len(r) for r in ordered)} bytes "
        f"(a reading is {len(truck.records[0])} bytes on the wire)"
    )

    print("4. append every record to the RFC 9162 log; two signed checkpoints")
    tree = MerkleTree()
    for raw in ordered:
        tree.append(raw)
    mid = len(ordered) // 2
    cps = [Checkpoint(ORIGIN, size, tree.root(size)) for size in (mid, tree.size)]
    notes = [sign_checkpoint(cp, log_signer) for cp in cps]
    print(f"   tree of {tree.size} leaves, root {cps[1].root_hash.hex()[:16]}…")

    print("5. anchor the latest checkpoint on the local ledger")
    receipt = anchor.sign_local_entry(
        ledger_key, LEDGER, 0, bytes(32), int(time.time()), checkpoint_hash(cps[1])
    )

    bundle = Bundle(
        created=int(time.time()),
        subject={"uid": TAG.hex(), "item": ITEM},
        records=[BundleRecord(ORIGIN, i, raw) for i, raw in enumerate(ordered)],
        checkpoints=notes,
        inclusion=[
            InclusionProof(ORIGIN, i, tree.size, tuple(tree.inclusion_proof(i, tree.size)))
            for i in range(tree.size)
        ],
        consistency=[
            ConsistencyProof(ORIGIN, mid, tree.size, tuple(tree.consistency_proof(mid, tree.size)))
        ],
        anchors=[AnchorRef(ORIGIN, tree.size, receipt.to_json())],
    )
    bundle_path = out / "bundle.json"
    bundle_path.write_text(bundle.dumps())
    trust = trust_document(
        logs=[(ORIGIN, log_signer.vkey)],
        registries={REGISTRY: p256_public_to_sec1(registry.key.public_key())},
        ledgers={LEDGER: ledger_key.public_key().public_bytes_raw()},
    )
    trust_path = out / "trust.json"
    trust_path.write_text(json.dumps(trust, indent=2) + "\n")

    svg_chart(
        {"truck NL-47-BXT (tl-truck-07)": truck_series, "cold room 2 (tl-coldroom-2)": room_series},
        CHILLED,
        out / "temperature.svg",
    )
    temps = [v for _, v in truck_series]
    print("   truck   " + spark(temps, -200, 600) + f"  max {max(temps) / 100:.2f} °C")
    temps = [v for _, v in room_series]
    print("   room    " + spark(temps, -200, 600) + f"  max {max(temps) / 100:.2f} °C")
    return bundle_path, trust_path, {"truck_records": len(truck.records)}


def tamper(bundle_path: Path, out: Path) -> Path:
    """Edit the peak excursion reading down to 3.90 °C, keeping its signature."""
    doc = json.loads(bundle_path.read_text())
    peak_item, peak = None, None
    for item in doc["records"]:
        rec = open_record(base64.b64decode(item["record"]))
        p = rec.payload
        if isinstance(p, Reading) and p.temp is not None and (peak is None or p.temp > peak.temp):
            peak_item, peak = item, p
    assert peak_item is not None and peak is not None and peak.temp is not None
    raw = base64.b64decode(peak_item["record"])
    old = encode_payload(peak)
    new = encode_payload(dataclasses.replace(peak, temp=390))
    edited = raw.replace(old, new, 1)
    peak_item["record"] = base64.b64encode(edited).decode()
    print(
        f"   edited seq {peak.seq} of the truck logger from {peak.temp / 100:.2f} °C to 3.90 °C "
        f"({sum(a != b for a, b in zip(raw, edited, strict=True))} byte(s) changed)"
    )
    path = out / "bundle-tampered.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    bundle_path, trust_path, _ = build(out)
    print(f"\nbundle written to {bundle_path.resolve()}")
    print(f"trust file (pinned keys) {trust_path.resolve()}")
    print(f"temperature chart {(out / 'temperature.svg').resolve()}\n")
    print(f"6. $ coldtrace verify {bundle_path} --trust {trust_path}")
    status = cli.main(["verify", str(bundle_path), "--trust", str(trust_path)])
    if status != 0:
        print("demo: the genuine bundle did not verify — this is a bug")
        return 1
    print("7. tamper with the bundle and verify again")
    bad = tamper(bundle_path, out)
    print(f"$ coldtrace verify {bad} --trust {trust_path}")
    status = cli.main(["verify", str(bad), "--trust", str(trust_path)])
    if status == 0:
        print("demo: the tampered bundle verified — this is a bug")
        return 1
    print("\ndemo: done. The genuine bundle verified; the one-bit change was refused.")
    return 0
