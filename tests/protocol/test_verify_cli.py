"""`coldtrace verify`: the text report, the JSON report and the exit status of
each outcome (docs/protocol.md §13.2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.bundle import load_bundle
from protocol.cli import main
from protocol.trust import load_trust
from protocol.verify import Check, verify_bundle
from protocol.verify_cli import render, safe

VECTORS = Path(__file__).resolve().parent / "vectors" / "verdict"


def _run(name: str, *extra: str) -> int:
    d = VECTORS / name
    return main(["verify", str(d / "bundle.json"), "--trust", str(d / "trust.json"), *extra])


@pytest.mark.parametrize(
    ("name", "status", "verdict_line"),
    [
        ("pass", 0, "VERDICT: PASS"),
        ("fail_excursion", 4, "VERDICT: FAIL"),
        ("incomplete_gap", 5, "VERDICT: INCOMPLETE"),
    ],
)
def test_exit_status_and_verdict_line(name, status, verdict_line, capsys):
    assert _run(name) == status
    out = capsys.readouterr().out
    assert verdict_line in out


def test_text_report_shows_subject_legs_temperatures_and_reasons(capsys):
    assert _run("fail_excursion") == 4
    out = capsys.readouterr().out
    assert "/01/09506000134352/10/L42/21/7" in out  # the subject, from the signed commission
    assert "GTIN 09506000134352, lot L42, serial 7" in out
    for place in ("pack:dock-1", "fleet:truck-1", "dc:dock-3", "dc:cold-room-2"):
        assert place in out
    assert "load by rd-pack#1" in out
    assert "tl-truck-1" in out
    assert "9.00" in out  # the leg's max and the excursion's peak
    assert "ALARM" in out
    assert "reaching the alarm delay of 30 min" in out


def test_not_verified_exits_3_without_a_verdict(tmp_path, capsys):
    d = VECTORS / "pass"
    doc = json.loads((d / "bundle.json").read_text())
    doc["records"] = doc["records"][:-1]  # its proof no longer matches: not verified
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps(doc))
    rc = main(["verify", str(bundle), "--trust", str(d / "trust.json")])
    out = capsys.readouterr().out
    assert rc == 3
    assert "NOT VERIFIED" in out and "VERDICT" not in out


def test_json_report_has_the_verdict_members(capsys):
    assert _run("incomplete_unmonitored", "--json") == 5
    doc = json.loads(capsys.readouterr().out)
    for key in ("verified", "verdict", "reasons", "subject", "legs", "excursions", "totals"):
        assert key in doc
    assert doc["verified"] is True and doc["verdict"] == "INCOMPLETE"
    assert any(r["code"] == "unmonitored" for r in doc["reasons"])


def test_unreadable_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    rc = main(["verify", str(bad), "--trust", str(VECTORS / "pass" / "trust.json")])
    assert rc == 2
    assert "malformed_bundle" in capsys.readouterr().err
    rc = main(["verify", str(tmp_path / "missing.json"), "--trust", str(bad)])
    assert rc == 2


def test_verbose_lists_passed_checks(capsys):
    assert _run("pass", "-v") == 0
    out = capsys.readouterr().out
    assert "record.signature" in out and "checkpoint.signature" in out


def test_safe_escapes_control_characters_and_cuts_long_text():
    assert safe("a\x1b[31mb") == "a\\x1b[31mb"
    assert safe("\u202ex") == "\\u202ex"  # a bidi override is not printable
    assert len(safe("x" * 10_000)) == 200


def test_render_never_shows_raw_control_characters():
    d = VECTORS / "pass"
    report = verify_bundle(load_bundle(d / "bundle.json"), load_trust(d / "trust.json"))
    report.failures.append(
        Check("x", "\x1b]0;pwned\x07", False, "bad_signature", "\x1b[2J" * 100, None, None)
    )
    text = render(report)
    assert "\x1b" not in text and "\x07" not in text


def test_console_script_runs_verify(tmp_path):
    exe = shutil.which("coldtrace") or str(Path(sys.executable).with_name("coldtrace"))
    d = VECTORS / "pass_short_excursion"
    proc = subprocess.run(
        [exe, "verify", str(d / "bundle.json"), "--trust", str(d / "trust.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "VERDICT: PASS" in proc.stdout
    assert "shorter than the alarm delay" in proc.stdout
