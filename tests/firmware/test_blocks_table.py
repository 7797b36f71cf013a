"""hardware/power.md's block-size table and hardware/blocks.svg are what
bench/bench_blocks.py generates from the firmware's own records and
hardware/power.json, and the default block size meets issue 11's goals."""

import itertools
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_table_and_chart_match_the_generator() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "bench.bench_blocks", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_default_block_meets_the_bytes_and_battery_goals() -> None:
    from bench import bench_blocks as bb

    rows = {r["n"]: r for r in bb.rows()}
    base, dflt = rows[1], rows[bb.DEFAULT]
    assert base["record"] == 135  # today's kind-1 reading, the baseline
    assert dflt["per_reading"] <= bb.GOAL_BYTES
    assert dflt["days"] >= bb.GOAL_DAYS > base["days"]
    assert dflt["queue_days"] > 5 * base["queue_days"]
    # more readings per signature never costs bytes, battery or queue space
    ns = sorted(rows)
    for a, b in itertools.pairwise(ns):
        assert rows[b]["per_reading"] < rows[a]["per_reading"]
        assert rows[b]["days"] > rows[a]["days"]
        assert rows[b]["delay_min"] > rows[a]["delay_min"]
