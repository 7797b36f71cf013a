"""Inputs the fuzzers found that broke a parser, one data file each (tests/fuzz/data/):
the parser, the input, the bug, and what it must raise now."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fuzz import targets as t
from tests.fuzz.harness import Target, attempt
from tests.fuzz.test_structured import _sun_params

DATA = Path(__file__).with_name("data")
CASES = sorted(DATA.glob("*.json"))

_RUN = {"sun_params": (t.TARGETS["sun_url"].target, _sun_params)}


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_found_input_is_refused_with_the_documented_error(path):
    case = json.loads(path.read_text(encoding="utf-8"))
    target, run = _RUN[case["parser"]]
    assert isinstance(target, Target)
    err = attempt(target, run, case["input"])
    assert err is not None and type(err).__name__ == case["want"]["error"], err
    assert getattr(err, "code", None) == case["want"].get("code")
