"""`coldtrace demo` runs the whole system end to end - a real Mosquitto, the
gateway process and the firmware code on simulated devices - and keeps its
promises: the pallet's trace bundle verifies and its verdict is FAIL (the
truck's excursion), the edited copy is not verified, the copy without the
truck logger is INCOMPLETE (never PASS), the gateway raised the excursion
alert, and nothing is left running, also after a Ctrl-C. Without Mosquitto
these tests fail (`make system` installs it): the broker is part of what
they test."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.system import descendants
from protocol.bundle import load_bundle
from protocol.cli import main
from protocol.record import Reading, Scan, open_record
from protocol.trust import load_trust
from protocol.verify import verify_bundle
from tests.schemas import assert_bundle, assert_trust

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def need_mosquitto() -> None:
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto is not installed: run `make system` (scripts/ensure-system.sh)")


def processes_mentioning(path: Path) -> list[str]:
    """Live processes whose command line names ``path`` (the broker, the gateway)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(path) in cmd and state != "Z":
            found.append(f"{d.name}: {cmd}")
    return found


def test_demo_runs_the_system_and_its_bundle_verifies_and_tampering_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_mosquitto()
    out = tmp_path / "demo"
    t0 = time.monotonic()
    status = main(["demo", "--out", str(out)])
    took = time.monotonic() - t0
    text = capsys.readouterr().out
    assert status == 0, text[-4000:]
    assert took < 90, f"the demo took {took:.0f} s"

    # Every device uploaded what it recorded and the gateway acked all of it.
    uploads = re.findall(
        r"(\S+) +(\d+) records sent, +(\d+) acked by the gateway, (\d+) left", text
    )
    assert {u[0] for u in uploads} == {
        "tl-truck-07",
        "tl-coldroom-2",
        "tl-packhouse-1",
        "tl-dock-3",
        "rd-packhouse-1",
        "rd-dock-3",
        "rd-coldroom-2",
    }
    assert all(int(sent) == int(acked) > 0 and left == "0" for _, sent, acked, left in uploads)
    assert re.search(r"checkpoint (\d+) signed and anchored on the local ledger", text)
    assert "no processes left" in text
    assert "bound 4 to their places" in text  # registry import --at: binding statements

    # The pallet's bundle (`coldtrace gateway trace`) verifies, and its verdict is FAIL.
    assert str(out / "bundle.json") in text
    assert "$ coldtrace gateway trace 04a23c5a1b6f80" in text
    assert "the restated chains are closed" in text
    assert_trust(out / "gateway" / "trust.json")
    for name in ("bundle.json", "bundle-tampered.json", "bundle-cut.json"):
        assert_bundle(out / name)
    trust = load_trust(out / "gateway" / "trust.json")
    bundle = load_bundle(out / "bundle.json")
    good = verify_bundle(bundle, trust)
    assert good.verified, [(f.code, f.message) for f in good.failures]
    doc = good.verdict_document()
    assert doc["verdict"] == "FAIL"
    assert bundle.subject.uid.hex() == "04a23c5a1b6f80"
    assert bundle.subject.item == "/01/09506000134352/10/L2611-42/21/000731"
    assert doc["subject"]["item"] == bundle.subject.item
    assert doc["profile"]["low"] == 0 and doc["profile"]["high"] == 400
    assert (doc["profile"]["delay"], doc["profile"]["cumul"], doc["profile"]["gap"]) == (
        1800,
        7200,
        1800,
    )
    # Every leg with a duration has its logger, and none is left incomplete.
    legs = [leg for leg in doc["legs"] if leg["to"] > leg["from"]]
    assert [[m["device"] for m in leg["monitors"]] for leg in legs] == [
        ["tl-packhouse-1"],
        ["tl-truck-07"],
        ["tl-dock-3"],
        ["tl-coldroom-2"],
    ]
    assert not [r for r in doc["reasons"] if r["severity"] == "incomplete"], doc["reasons"]
    (exc,) = [e for e in doc["excursions"] if e["alarm"]]
    assert exc["devices"] == ["tl-truck-07"] and exc["peak"] > 800
    assert 1800 <= exc["duration"] <= 3600  # the door-open stop: about 50 min
    assert [r["code"] for r in doc["reasons"] if r["severity"] == "fail"] == ["excursion"]
    payloads = [(open_record(r.raw).signer, open_record(r.raw).payload) for r in bundle.records]
    scans = sorted((p for _, p in payloads if isinstance(p, Scan)), key=lambda s: s.time)
    assert [s.action for s in scans] == [1, 2, 3, 4, 5]  # commission ... ship
    assert all(s.uid.hex() == "04a23c5a1b6f80" and s.sun for s in scans)
    loggers = {who for who, p in payloads if isinstance(p, Reading)}
    assert loggers == {"tl-truck-07", "tl-coldroom-2", "tl-packhouse-1", "tl-dock-3"}
    assert "VERDICT: FAIL" in text and "exit status 4: verified, verdict FAIL" in text

    # The edited copy is not verified: the signature and the log both catch it.
    bad = verify_bundle(load_bundle(out / "bundle-tampered.json"), trust)
    assert not bad.verified
    assert {f.code for f in bad.failures} >= {"bad_signature", "proof_mismatch"}
    assert "exit status 3: not verified" in text

    # The copy without the truck logger's records verifies but is not PASS.
    cut = verify_bundle(load_bundle(out / "bundle-cut.json"), trust)
    assert cut.verified
    cut_doc = cut.verdict_document()
    assert cut_doc["verdict"] == "INCOMPLETE"
    assert {(r["code"], r["device"]) for r in cut_doc["reasons"]} >= {
        ("records_missing", "tl-truck-07")
    }
    assert "exit status 5: verified, verdict INCOMPLETE" in text

    # The gateway raised the excursion alert, start and end, on its MQTT topic.
    alerts = json.loads((out / "alerts.json").read_text())
    probe = [
        a
        for a in alerts
        if a["kind"] == "excursion" and a["device"] == "tl-truck-07" and a["channel"] == 0
    ]
    assert {a["phase"] for a in probe} == {"start", "end"}
    end = next(a for a in probe if a["phase"] == "end")
    assert end["side"] == "high" and end["profile"] == "chilled" and end["peak_centi"] > 400
    assert end["duration"] >= 1800  # past the profile's 30-minute delay
    assert not [a for a in alerts if a["device"] == "tl-coldroom-2"]
    assert "ALERT high excursion  tl-truck-07" in text

    svg = (out / "temperature.svg").read_text()
    assert svg.startswith("<svg") and 'fill="#d62728"' in svg  # excursion points in red

    # Nothing the demo started is still running.
    assert descendants(os.getpid()) == set()
    assert processes_mentioning(out) == []


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    need_mosquitto()
    out = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "protocol.cli", "demo", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        text=True,
    )
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "on the devices' flash" in line:  # the gateway runs, the replay is under way
                break
        running = " ".join(processes_mentioning(out))
        assert "mosquitto" in running and "gateway run" in running
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = "".join(lines) + rest
    assert proc.returncode == 130, text[-3000:]
    assert "interrupted; stopping everything" in text
    assert "could not stop" not in text
    assert processes_mentioning(out) == []
