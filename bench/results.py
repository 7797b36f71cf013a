"""Collects benchmark figures and writes them to bench/results.json.

Each figure is one entry: name, value, unit, the baseline it is compared with
(name and value, measured in the same run), the ratio value/baseline and the
machine it ran on; a figure that summarises a distribution may carry its
``samples`` (e.g. every reading's latency), and one that varies with a
parameter its ``series`` ([x, y] pairs), so the report can draw them.
Entries of the same name replace older ones, so issues can add their figures
to the same file without erasing the others'.

Beside the figures, ``groups`` holds one entry per bench module run: when it
started, how long it took, the load average before and after, and how much
of the machine's CPU time went to other work meanwhile (busy time from
/proc/stat minus this process's and its children's CPU time): the machine
may be shared, and the report says so.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
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
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "os": _os_name(),
        "system": f"{platform.system()} {platform.release()}",
        "node": _version(["node", "--version"]),
        "chromium": _version(["/usr/bin/chromium", "--version"]),
    }


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _version(cmd: list[str]) -> str | None:
    """The first line a ``--version`` prints, or None when the program is absent."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = (out.stdout or "").strip().splitlines()
    return line[0].strip() if line else None


def _busy_s() -> float | None:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    try:
        f = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_s() -> float:
    """CPU seconds used by this process and its (waited-for) children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class GroupClock:
    """Load average and CPU shares around one bench module's run."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.load_before = [round(x, 2) for x in os.getloadavg()]
        self.t0 = time.perf_counter()
        self.busy0, self.own0 = _busy_s(), _own_s()

    def done(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        busy1, own = _busy_s(), _own_s() - self.own0
        cores = os.cpu_count() or 1
        other = None
        if busy1 is not None and self.busy0 is not None and wall > 0:
            other = max(0.0, (busy1 - self.busy0) - own) / (wall * cores)
        return {
            "started": self.started,
            "seconds": round(wall, 1),
            "load_before": self.load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "own_cpu_share": round(own / (wall * cores), 3) if wall > 0 else None,
            "other_cpu_share": None if other is None else round(other, 3),
        }


class Recorder:
    """Prints each figure as it is measured and keeps it for results.json."""

    def __init__(self, path: Path = RESULTS) -> None:
        self.path = path
        self.entries: list[dict[str, Any]] = []
        self.groups: dict[str, dict[str, Any]] = {}
        self.machine = machine()
        self._clock: GroupClock | None = None

    def start_group(self, name: str) -> None:
        """Note the load before bench module ``name`` runs (``end_group`` after it)."""
        self._clock = GroupClock(name)

    def end_group(self) -> dict[str, Any]:
        assert self._clock is not None, "end_group without start_group"
        g = self._clock.done()
        self.groups[self._clock.name] = g
        self._clock = None
        return g

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        baseline: str | None = None,
        baseline_value: float | None = None,
        note: str = "",
        samples: list[float] | None = None,
        series: list[tuple[float, float]] | None = None,
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
        if samples is not None:
            entry["samples"] = [round(float(x), 4) for x in samples]
        if series is not None:
            entry["series"] = [[round(float(x), 4), round(float(y), 4)] for x, y in series]
        self.entries.append(entry)
        line = f"  {name:<48} {value:>14,.2f} {unit}"
        if ratio is not None:
            line += f"   ratio {ratio:.3f} vs {baseline} ({baseline_value:,.2f})"
        if note:
            line += f"   [{note}]"
        print(line, flush=True)
        return entry

    def save(self) -> None:
        old: dict[str, Any] = {}
        if self.path.exists():
            try:
                old = json.loads(self.path.read_text())
            except ValueError:
                old = {}
        new_names = {e["name"] for e in self.entries}
        merged = [e for e in old.get("figures", []) if e["name"] not in new_names] + self.entries
        merged.sort(key=lambda e: e["name"])
        groups = {**old.get("groups", {}), **self.groups}
        out = {"figures": merged, "groups": dict(sorted(groups.items()))}
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        tmp.replace(self.path)
