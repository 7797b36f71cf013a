"""The page's JavaScript verifier (cloud/page/static/verify/index.js) agrees with Python's.

``node --test tests/page/`` runs verify.test.mjs (every verdict vector and the scenario
bundles of tests/page/make_expected.py: verified flag, failures, summary, passed-check
counts and the verdict document equal to Python's reports), verify_timing.test.mjs (times
the pass vector and 10,000 records; the times are printed) and the other page tests
(verdict.js, charts). Here: the committed reports are a fresh run of the Python verifier,
and the Node tests pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.page import make_expected

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = make_expected.outputs()


@pytest.mark.parametrize(
    "path", sorted(OUTPUTS), ids=lambda p: str(p.relative_to(make_expected.OUT))
)
def test_committed_reports_are_a_fresh_run_of_the_verifier(path: Path) -> None:
    want = OUTPUTS[path]
    assert path.read_bytes() == (want if isinstance(want, bytes) else want.encode()), (
        "run: python -m tests.page.make_expected"
    )


def test_no_stale_reports() -> None:
    on_disk = {
        p
        for sub in ("vectors", "provenance", "extra", "records", "json")
        for p in (make_expected.OUT / sub).rglob("*")
        if p.is_file()
    }
    assert on_disk == set(OUTPUTS)


def test_node_tests_of_the_page_pass() -> None:
    node = shutil.which("node")
    assert node is not None, "Node 20 is needed for the page's tests (make setup)"
    proc = subprocess.run(
        [node, "--test", "tests/page/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
    )
    for line in proc.stdout.splitlines():
        if "verify-timing:" in line:
            print(line)
    assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr[-5000:]
    assert "# fail 0" in proc.stdout
