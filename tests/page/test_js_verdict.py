"""The page's JavaScript verdict (cloud/page/static/verify/verdict.js) agrees with Python's.

``node --test tests/page/verdict.test.mjs`` runs judge() over the inputs the Python verifier
hands its own judge (tests/page/data/verdict_inputs/, written by
tests/page/make_verdict_inputs.py) and compares with every verdict vector's expected.json
(docs/protocol.md §13.4) and with Python's verdict over 150 random traces (``_fuzz.json.gz``);
it also checks §12.8's dexp/dlog/MKT, the mean, T/C/D and the string order bit for bit
against values Python computed. Here: the committed inputs are what
a fresh run of the Python verifier gives, and the Node tests pass.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.page import make_verdict_inputs as inputs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", inputs.names())
def test_committed_inputs_are_a_fresh_run_of_the_verifier(name: str) -> None:
    committed = (inputs.OUT / f"{name}.json").read_text(encoding="utf-8")
    assert committed == inputs.render(name), "run: python -m tests.page.make_verdict_inputs"


def test_committed_arithmetic_values_are_a_fresh_run() -> None:
    committed = (inputs.OUT / inputs.ARITHMETIC).read_text(encoding="utf-8")
    assert committed == inputs.render_arithmetic(), "run: python -m tests.page.make_verdict_inputs"


def test_committed_random_traces_are_a_fresh_run() -> None:
    committed = gzip.decompress((inputs.OUT / inputs.FUZZ).read_bytes()).decode("utf-8")
    assert committed == inputs.render_fuzz(), "run: python -m tests.page.make_verdict_inputs"


def test_committed_random_block_traces_are_a_fresh_run() -> None:
    committed = gzip.decompress((inputs.OUT / inputs.FUZZ_BLOCKS).read_bytes()).decode("utf-8")
    fresh = inputs.render_fuzz(inputs.BLOCKS_FUZZ_N, blocks=True)
    assert committed == fresh, "run: python -m tests.page.make_verdict_inputs"
    # the traces do hold blocks, overlapping ones among them
    assert '"kind": 7' in fresh and "block_overlap" in fresh


def test_no_stale_inputs() -> None:
    names = {p.stem for p in inputs.OUT.glob("*.json") if not p.name.startswith("_")}
    assert names == set(inputs.names())


def test_javascript_verdict_reproduces_every_vector() -> None:
    node = shutil.which("node")
    assert node is not None, "Node 20 is needed for the page's tests (make setup)"
    proc = subprocess.run(
        [node, "--test", "tests/page/verdict.test.mjs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr[-5000:]
    assert "# fail 0" in proc.stdout
