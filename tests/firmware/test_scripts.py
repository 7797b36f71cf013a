"""Every firmware test script passes under CPython and under MicroPython."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.firmware import harness

SCRIPTS = harness.scripts()


@pytest.fixture(scope="session")
def results() -> dict[tuple[str, str], harness.Result]:
    return harness.run_all(SCRIPTS)


@pytest.mark.parametrize("interpreter", harness.INTERPRETERS)
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_firmware_script(
    script: Path, interpreter: str, results: dict[tuple[str, str], harness.Result]
) -> None:
    r = results[(script.stem, interpreter)]
    assert r.ok, r.report()


def test_both_interpreters_ran_the_same_tests(
    results: dict[tuple[str, str], harness.Result],
) -> None:
    for s in SCRIPTS:
        c = results[(s.stem, "cpython")].counts
        m = results[(s.stem, "micropython")].counts
        if c and m and c[1] == 0 and m[1] == 0:
            assert c[0] == m[0], f"{s.stem}: {c[0]} tests under CPython, {m[0]} under MicroPython"
