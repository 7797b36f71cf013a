"""The provenance vectors (docs/protocol.md §12.10, §13.4): for each, this verifier must
produce ``expected.json`` exactly from ``bundle.json``, ``trust.json`` and ``input.json``
(the tag's authentication), through the library and through the command line (with its
exit status); and the generator must make the published files again, byte for byte.
Other implementations (the consumer page's JavaScript) check themselves against the same
files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.bundle import load_bundle
from protocol.cli import main
from protocol.trust import load_trust
from protocol.verify import verify_bundle
from tests.protocol.vectors.make_verdict_vectors import PWANT, make_provenance
from tests.schemas import assert_bundle, assert_trust

VECTORS = Path(__file__).resolve().parent / "vectors" / "provenance"
NAMES = sorted(p.name for p in VECTORS.iterdir() if p.is_dir()) if VECTORS.exists() else []
EXIT = {"GENUINE": 0, "SUSPECT": 6, "UNCONFIRMED": 7}
FILES = ("bundle.json", "trust.json", "input.json", "expected.json")

# What the issue asks the vectors to cover, at least.
REQUIRED = {
    "genuine_two_distributors",
    "suspect_starts_at_distributor",
    "suspect_sold_twice",
    "suspect_two_places_at_once",
    "suspect_installed_scanned_again",
    "suspect_replayed_tag",
}


def tag_of(name: str) -> str:
    doc = json.loads((VECTORS / name / "input.json").read_text(encoding="utf-8"))
    assert set(doc) == {"tag"}
    tag: str = doc["tag"]
    return tag


def test_the_required_vectors_are_published():
    assert set(NAMES) >= REQUIRED
    assert set(NAMES) == set(PWANT)


@pytest.mark.parametrize("name", NAMES)
def test_vector_files_follow_the_published_schemas(name):
    assert_bundle(VECTORS / name / "bundle.json")
    assert_trust(VECTORS / name / "trust.json")
    assert tag_of(name) in ("genuine", "replayed", "unauthenticated", "unknown")


@pytest.mark.parametrize("name", NAMES)
def test_vector_verdict_document_is_reproduced_exactly(name):
    d = VECTORS / name
    expected = json.loads((d / "expected.json").read_text(encoding="utf-8"))
    report = verify_bundle(
        load_bundle(d / "bundle.json"), load_trust(d / "trust.json"), tag=tag_of(name)
    )
    got = json.loads(json.dumps(report.verdict_document(), ensure_ascii=False))
    assert got == expected


@pytest.mark.parametrize("name", NAMES)
def test_vector_through_the_command_line(name, capsys):
    d = VECTORS / name
    expected = json.loads((d / "expected.json").read_text(encoding="utf-8"))
    tag = tag_of(name)
    args = ["verify", str(d / "bundle.json"), "--trust", str(d / "trust.json"), "--json"]
    if tag != "unknown":  # unknown is the default
        args += ["--tag", tag]
    rc = main(args)
    out = json.loads(capsys.readouterr().out)
    assert rc == EXIT[expected["verdict"]]
    for key, value in expected.items():
        assert out[key] == value, key


@pytest.mark.parametrize("name", NAMES)
def test_vector_text_report_shows_the_custody(name, capsys):
    d = VECTORS / name
    expected = json.loads((d / "expected.json").read_text(encoding="utf-8"))
    main(
        ["verify", str(d / "bundle.json"), "--trust", str(d / "trust.json"), "--tag", tag_of(name)]
    )
    out = capsys.readouterr().out
    assert f"VERDICT: {expected['verdict']}" in out
    assert "provenance verdict" in out and "Custody (UTC)" in out
    if expected["provenance"]["closed"] is not None:
        assert "life closed:" in out


def test_vectors_name_their_verdict():
    for name in NAMES:
        verdict = json.loads((VECTORS / name / "expected.json").read_text())["verdict"]
        assert name.split("_")[0].upper() == verdict, name


@pytest.mark.parametrize("name", sorted(PWANT))
def test_the_generator_makes_the_published_files_again(name, tmp_path):
    make_provenance(name, tmp_path)
    for f in FILES:
        assert (tmp_path / name / f).read_bytes() == (VECTORS / name / f).read_bytes(), f
