"""`make bench`: run every bench/bench_*.py module's ``run(recorder)``.

    python -m bench            # all benchmarks
    python -m bench merkle     # only modules whose name contains "merkle"
    python -m bench --report   # only rewrite bench/results.md and bench/charts/*.svg

After the benches run, the report is rewritten from the whole results.json.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench
from bench import report
from bench.results import Recorder

# A bench that compares with another's figure measured in the same run runs after it
# (bench_cloud's push ingest rate is a ratio to bench_gateway's ingest rate).
AFTER = {"bench_cloud": ("bench_gateway",)}


def ordered(names: list[str]) -> list[str]:
    """``names`` in order, each moved just after the benches it needs (AFTER)."""
    pending, out = list(names), []
    while pending:
        ready = next(
            (n for n in pending if all(d in out or d not in names for d in AFTER.get(n, ()))),
            pending[0],
        )
        out.append(ready)
        pending.remove(ready)
    return out


def main(argv: list[str]) -> int:
    wanted = [a for a in argv[1:] if a != "--report"]
    if "--report" in argv[1:]:
        print(f"report written to {report.write(report.load())}")
        return 0
    names = sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
    )
    if wanted:
        names = [n for n in names if any(w in n for w in wanted)]
    names = ordered(names)
    rec = Recorder()
    print(f"machine: {rec.machine}")
    start = time.perf_counter()
    for name in names:
        mod = importlib.import_module(f"bench.{name}")
        print(f"\n== {name}: {(mod.__doc__ or '').strip().splitlines()[0]}", flush=True)
        rec.start_group(name.removeprefix("bench_"))
        mod.run(rec)
        g = rec.end_group()
        rec.save()
        print(
            f"   ({g['seconds']:.1f} s; load average {g['load_before'][0]:.2f} before, "
            f"{g['load_after'][0]:.2f} after; other work {g['other_cpu_share'] or 0:.0%} "
            "of the CPU)"
        )
    print(f"\n{len(names)} bench modules in {time.perf_counter() - start:.0f} s")
    print(f"figures written to {rec.path}")
    print(f"report written to {report.write(report.load(rec.path))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
