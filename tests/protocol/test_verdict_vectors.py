"""The verdict vectors (docs/protocol.md §13.4): for each, this verifier must
produce ``expected.json`` exactly from ``bundle.json`` and ``trust.json``,
through the library and through the command line (with its exit status).
The files are published for other implementations (the consumer page's
JavaScript checks itself against the same files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.bundle import load_bundle
from protocol.cli import main
from protocol.trust import load_trust
from protocol.verify import verify_bundle
from tests.schemas import assert_bundle, assert_trust

VECTORS = Path(__file__).resolve().parent / "vectors" / "verdict"
NAMES = sorted(p.name for p in VECTORS.iterdir() if p.is_dir()) if VECTORS.exists() else []
EXIT = {"PASS": 0, "FAIL": 4, "INCOMPLETE": 5, None: 3}

# What issue 7 asks the vectors to cover, at least.
REQUIRED = {
    "pass",
    "fail_excursion",
    "pass_short_excursion",
    "fail_cumulative",
    "incomplete_gap",
    "incomplete_unmonitored",
    "incomplete_cut_tail",
    "pass_clock_unset_dated",
}


def test_the_required_vectors_are_published():
    assert set(NAMES) >= REQUIRED


@pytest.mark.parametrize("name", NAMES)
def test_vector_files_follow_the_published_schemas(name):
    assert_bundle(VECTORS / name / "bundle.json")
    assert_trust(VECTORS / name / "trust.json")


@pytest.mark.parametrize("name", NAMES)
def test_vector_verdict_document_is_reproduced_exactly(name):
    d = VECTORS / name
    expected = json.loads((d / "expected.json").read_text(encoding="utf-8"))
    report = verify_bundle(load_bundle(d / "bundle.json"), load_trust(d / "trust.json"))
    got = json.loads(json.dumps(report.verdict_document(), ensure_ascii=False))
    assert got == expected


@pytest.mark.parametrize("name", NAMES)
def test_vector_through_the_command_line(name, capsys):
    d = VECTORS / name
    expected = json.loads((d / "expected.json").read_text(encoding="utf-8"))
    rc = main(["verify", str(d / "bundle.json"), "--trust", str(d / "trust.json"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == EXIT[expected["verdict"]]
    for key, value in expected.items():
        assert out[key] == value, key


def test_vectors_name_their_verdict():
    """A vector's name says what it shows; its expected verdict must agree (``unverified_``:
    the bundle is refused, no verdict)."""
    for name in NAMES:
        doc = json.loads((VECTORS / name / "expected.json").read_text())
        prefix = name.split("_")[0]
        if prefix == "unverified":
            assert doc["verified"] is False and doc["verdict"] is None, name
        else:
            assert prefix.upper() == doc["verdict"], name
