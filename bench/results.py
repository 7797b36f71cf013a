"""Collects benchmark figures and writes them to bench/results.json.

Each figure is one entry: name, value, unit, the baseline it is compared with
(name and value, measured in the same run), the ratio value/baseline and the
machine it ran on. Entries of the same name replace older ones, so issues can
add their figures to the same file without erasing the others'.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results.json")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


class Recorder:
    """Prints each figure as it is measured and keeps it for results.json."""

    def __init__(self, path: Path = RESULTS) -> None:
        self.path = path
        self.entries: list[dict[str, Any]] = []
        self.machine = machine()

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        baseline: str | None = None,
        baseline_value: float | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        ratio = None
        if baseline_value:
            ratio = value / baseline_value
        entry = {
            "name": name,
            "value": round(value, 4),
            "unit": unit,
            "baseline": baseline,
            "baseline_value": None if baseline_value is None else round(baseline_value, 4),
            "ratio": None if ratio is None else round(ratio, 4),
            "note": note,
            "machine": self.machine,
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.entries.append(entry)
        line = f"  {name:<48} {value:>14,.2f} {unit}"
        if ratio is not None:
            line += f"   ratio {ratio:.3f} vs {baseline} ({baseline_value:,.2f})"
        if note:
            line += f"   [{note}]"
        print(line, flush=True)
        return entry

    def save(self) -> None:
        old: list[dict[str, Any]] = []
        if self.path.exists():
            try:
                old = json.loads(self.path.read_text())["figures"]
            except (ValueError, KeyError):
                old = []
        new_names = {e["name"] for e in self.entries}
        merged = [e for e in old if e["name"] not in new_names] + self.entries
        merged.sort(key=lambda e: e["name"])
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"figures": merged}, indent=2) + "\n")
        tmp.replace(self.path)
