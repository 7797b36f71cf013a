"""`make bench`: run every bench/bench_*.py module's ``run(recorder)``.

    python -m bench            # all benchmarks
    python -m bench merkle     # only modules whose name contains "merkle"
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench
from bench.results import Recorder


def main(argv: list[str]) -> int:
    wanted = argv[1:]
    names = sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
    )
    if wanted:
        names = [n for n in names if any(w in n for w in wanted)]
    rec = Recorder()
    print(f"machine: {rec.machine}")
    for name in names:
        mod = importlib.import_module(f"bench.{name}")
        print(f"\n== {name}: {(mod.__doc__ or '').strip().splitlines()[0]}", flush=True)
        t0 = time.perf_counter()
        mod.run(rec)
        rec.save()
        print(f"   ({time.perf_counter() - t0:.1f} s)")
    print(f"\nfigures written to {rec.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
