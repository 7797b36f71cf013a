"""`coldtrace verify`: exit status, text and JSON reports."""

from __future__ import annotations

import json
import subprocess
import sys

from protocol.cli import main
from tests.protocol.factory import world


def write(tmp_path, w, bundle=None):
    b = tmp_path / "bundle.json"
    t = tmp_path / "trust.json"
    b.write_text((bundle or w.bundle()).dumps())
    t.write_text(json.dumps(w.trust_doc()))
    return b, t


def test_verify_exits_zero_and_says_verified(tmp_path, capsys):
    w = world()
    b, t = write(tmp_path, w)
    assert main(["verify", str(b), "--trust", str(t)]) == 0
    out = capsys.readouterr().out
    assert "VERIFIED" in out and "NOT VERIFIED" not in out


def test_verify_json_report_lists_failures(tmp_path, capsys):
    w = world()
    bundle = w.bundle(anchor_sizes=())
    b, t = write(tmp_path, w, bundle)
    assert main(["verify", str(b), "--trust", str(t), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert {f["code"] for f in report["failures"]} == {"unanchored_checkpoint"}


def test_verify_exits_two_on_unreadable_input(tmp_path, capsys):
    w = world()
    b, t = write(tmp_path, w)
    b.write_text("{}")
    assert main(["verify", str(b), "--trust", str(t)]) == 2
    assert "malformed_bundle" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "missing.json"), "--trust", str(t)]) == 2


def test_console_script_runs_verify(tmp_path):
    w = world()
    b, t = write(tmp_path, w)
    proc = subprocess.run(
        [sys.executable, "-m", "protocol.cli", "verify", str(b), "--trust", str(t), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True
