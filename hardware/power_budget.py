"""Power budget of the temperature logger (and the reader), from hardware/power.json.

    python hardware/power_budget.py          # print the tables (markdown)
    python hardware/power_budget.py --write  # refresh them in hardware/power.md
    python hardware/power_budget.py --check  # exit 1 if power.md is stale

Charge per day = sleep current x 24 h + per-wake phases x wakes/day +
per-record phases x records/day + per-upload phases x uploads/day.
One wake takes one reading (one record); an upload interval of 0 means
"upload at every reading" (no batching).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BEGIN = "<!-- power_budget.py: begin -->"
END = "<!-- power_budget.py: end -->"
READER_BEGIN = "<!-- power_budget.py: reader begin -->"
READER_END = "<!-- power_budget.py: reader end -->"


def mas(phase: dict) -> float:
    """Charge of one phase in mA*s."""
    return phase["ms"] / 1000 * phase["ma"]


def day_mah(d: dict, sc: dict, interval_s: int) -> dict:
    ph = d["phases"]
    sleep_ua = sum(d["sleep_ua"].values()) + sc.get("extra_sleep_ua", 0)
    wakes = 86400 / interval_s
    uploads = wakes if not sc["upload_s"] else 86400 / max(sc["upload_s"], interval_s)
    per_wake = mas(ph["boot"]) + mas(ph["measure"])
    per_record = mas(ph[sc["sign"]]) + mas(ph["flash_write"])
    per_upload = mas(ph[sc["upload"]])
    parts = {
        "sleep": sleep_ua / 1000 * 24,
        "wake": per_wake * wakes / 3600,
        "sign+store": per_record * wakes / 3600,
        "upload": per_upload * uploads / 3600,
    }
    total = sum(parts.values())
    usable = d["battery"]["mah"] * d["battery"]["usable"]
    return {"parts": parts, "total": total, "days": usable / total}


def tables(d: dict) -> str:
    lines = []
    lines.append("| phase | duration | current | charge | counted per |")
    lines.append("|---|---:|---:|---:|---|")
    for name, p in d["phases"].items():
        if "ms" in p:
            lines.append(
                f"| {name} | {p['ms']} ms | {p['ma']} mA | {mas(p):.1f} mA·s | {p['per']} |"
            )
    sleep = sum(d["sleep_ua"].values())
    lines.append(f"| deep sleep (board) | — | {sleep:g} µA | — | always |")
    lines.append("")
    b = d["battery"]
    lines.append(
        f"Battery: {b['name']}, {b['usable']:.0%} usable = {b['mah'] * b['usable']:.0f} mAh."
    )
    lines.append("")
    ivs = d["intervals_s"]
    head = " | ".join(f"{i // 60} min: mAh/day" for i in ivs)
    head2 = " | ".join(f"{i // 60} min: life" for i in ivs)
    lines.append(f"| scenario | {head} | {head2} |")
    lines.append("|---|" + "---:|" * (2 * len(ivs)))
    for sc in d["scenarios"]:
        rs = [day_mah(d, sc, i) for i in ivs]
        cells = [f"{r['total']:.1f}" for r in rs] + [life(r["days"]) for r in rs]
        lines.append(f"| {sc['name']} | " + " | ".join(cells) + " |")
    lines.append("")
    sc = d["scenarios"][0]
    lines.append(f"Where the charge goes ({sc['name']}), mAh/day:")
    lines.append("")
    lines.append("| interval | sleep | wake (boot+measure) | sign+store | upload |")
    lines.append("|---|---:|---:|---:|---:|")
    for i in ivs:
        p = day_mah(d, sc, i)["parts"]
        lines.append(
            f"| {i // 60} min | {p['sleep']:.2f} | {p['wake']:.2f} | "
            f"{p['sign+store']:.2f} | {p['upload']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def reader_day_mah(d: dict, scans_per_hour: float) -> dict:
    """The reader's charge per day at the 3.3 V rail: always awake (idle),
    a tag poll every ``every_ms``, and per scan the read, signature, flash
    write and feedback, with one upload per scan (the worst case: the
    firmware uploads after 1 s without scans, so a burst shares one)."""
    r = d["reader"]
    poll = r["poll"]
    polls_h = 3600_000 / poll["every_ms"]
    per_scan = sum(mas(p) for p in r["per_scan"].values()) + mas(r["upload"])
    parts = {
        "idle": r["idle"]["ma"] * 24,
        "poll": poll["ms"] / 1000 * poll["extra_ma"] * polls_h * 24 / 3600,
        "scans": per_scan * scans_per_hour * 24 / 3600,
    }
    total = sum(parts.values())
    usable = d["battery"]["mah"] * d["battery"]["usable"]
    avg_ma = total / 24
    usb_w = avg_ma / 1000 * 3.3 / r["efficiency"]
    return {
        "parts": parts,
        "total": total,
        "hours": usable / avg_ma,
        "avg_ma": avg_ma,
        "usb_w": usb_w,
    }


def reader_tables(d: dict) -> str:
    r = d["reader"]
    lines = ["| state | duration | current | counted |", "|---|---:|---:|---|"]
    lines.append(f"| idle (awake, polling loop) | — | {r['idle']['ma']} mA | always |")
    p = r["poll"]
    lines.append(
        f"| poll (RF field on) | {p['ms']} ms | +{p['extra_ma']} mA | every {p['every_ms']} ms |"
    )
    for name, ph in r["per_scan"].items():
        lines.append(f"| {name} | {ph['ms']} ms | {ph['ma']} mA | per scan |")
    u = r["upload"]
    lines.append(f"| wifi_upload | {u['ms']} ms | {u['ma']} mA | per scan (worst case) |")
    lines.append("")
    lines.append("| scans per hour | mAh/day | average | from USB | on the cell alone |")
    lines.append("|---:|---:|---:|---:|---:|")
    for n in r["scans_per_hour"]:
        x = reader_day_mah(d, n)
        lines.append(
            f"| {n} | {x['total']:.0f} | {x['avg_ma']:.1f} mA | {x['usb_w']:.2f} W | "
            f"{x['hours']:.0f} h |"
        )
    return "\n".join(lines) + "\n"


def life(days: float) -> str:
    if days >= 60:
        return f"{days / 30.44:.1f} months"
    return f"{days:.0f} days"


def splice(md: str, body: str, begin: str = BEGIN, end: str = END) -> str:
    a = md.index(begin) + len(begin)
    b = md.index(end)
    return md[:a] + "\n" + body + md[b:]


def splice_all(md: str, d: dict) -> str:
    md = splice(md, tables(d))
    if "reader" in d and READER_BEGIN in md:
        md = splice(md, reader_tables(d), READER_BEGIN, READER_END)
    return md


def main(argv: list[str]) -> int:
    d = json.loads((HERE / "power.json").read_text())
    body = tables(d)
    md_path = HERE / "power.md"
    if "--write" in argv:
        md_path.write_text(splice_all(md_path.read_text(), d))
        return 0
    if "--check" in argv:
        md = md_path.read_text()
        if splice_all(md, d) != md:
            print("hardware/power.md is stale: run python hardware/power_budget.py --write")
            return 1
        return 0
    sys.stdout.write(body)
    if "reader" in d:
        sys.stdout.write("\n" + reader_tables(d))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
