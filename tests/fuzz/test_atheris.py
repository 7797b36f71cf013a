"""Coverage-guided fuzzing (atheris/libFuzzer) of every parser of tests/fuzz/targets.py,
bounded: :data:`tests.fuzz.harness.ATHERIS_RUNS` runs each (2,000 under ``make
test``, 200,000 under ``make soak``), seeded with the genuine inputs and a few
mutations of them, two parsers at a time (one subprocess each; see
harness.run_atheris). A finding (a disallowed exception, a slow input, an
allocation over the limit, a libFuzzer timeout or out-of-memory) fails the test
with libFuzzer's report; the crashing input is in the test's tmp_path.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fuzz.harness import ATHERIS_RUNS, mutate, run_atheris
from tests.fuzz.targets import TARGETS

pytest.importorskip("atheris", reason="atheris does not install on this platform")


def _seeds(name: str) -> list[bytes]:
    rng = random.Random(name)
    genuine = TARGETS[name].seeds
    return [*genuine, *(mutate(rng, rng.choice(genuine)) for _ in range(8))]


def test_atheris_every_parser(tmp_path):
    names = sorted(TARGETS)
    with ThreadPoolExecutor(2) as pool:
        tried = dict(
            zip(
                names,
                pool.map(lambda n: run_atheris(n, _seeds(n), tmp_path / n), names),
                strict=True,
            )
        )
    for name, n in tried.items():
        assert n >= ATHERIS_RUNS, (name, n)
