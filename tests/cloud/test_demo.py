"""`coldtrace demo` runs end to end: the genuine bundle verifies, the edited
one is refused, and the files it promises are there."""

from __future__ import annotations

import json

from protocol.bundle import loads_bundle
from protocol.cli import main
from protocol.trust import load_trust
from protocol.verify import verify_bundle


def test_demo_writes_a_bundle_that_verifies_and_a_tampered_one_that_does_not(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str((tmp_path / "bundle.json").resolve()) in out
    trust = load_trust(tmp_path / "trust.json")
    good = verify_bundle(loads_bundle((tmp_path / "bundle.json").read_bytes()), trust)
    assert good.ok
    assert good.summary["temp_max_centi"] > 400  # the door-open excursion is in the evidence
    bad = verify_bundle(loads_bundle((tmp_path / "bundle-tampered.json").read_bytes()), trust)
    assert {c.code for c in bad.failures} >= {"bad_signature", "proof_mismatch"}
    assert (tmp_path / "temperature.svg").read_text().startswith("<svg")
    assert json.loads((tmp_path / "trust.json").read_text())["format"] == "coldtrace-trust"
