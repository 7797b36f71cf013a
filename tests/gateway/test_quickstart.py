"""The quick start of docs/operations.md, run as written: the doc and the test cannot
drift. Each ``sh`` block of the section runs in bash in a fresh directory, with
``coldtrace`` the command line of this checkout; blocks marked
``<!-- quickstart: background -->`` are started in the background (the broker, the
gateway) and stopped at the end, blocks marked ``<!-- quickstart: skip -->`` are not
run. The broker's port, 1883 in the doc, is a free port here."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.transport.broker import free_port
from tests.gateway.env import mosquitto_missing

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations.md"
STATUS = "coldtrace gateway status --config site/gateway.toml --json"
_BLOCK = re.compile(r"(?:<!-- quickstart: (\w+) -->\n)?```sh\n(.*?)```", re.S)


def quickstart_blocks() -> list[tuple[str, str]]:
    """(mode, script) for each shell block of the quick start, in order."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## 0. Quick start:")
    end = text.index("\n## ", start + 1)
    return [(m.group(1) or "run", m.group(2)) for m in _BLOCK.finditer(text[start:end])]


def test_the_quick_start_has_the_steps_the_issue_asks_for() -> None:
    blocks = quickstart_blocks()
    assert {mode for mode, _ in blocks} == {"run", "background", "skip"}
    script = "\n".join(body for _, body in blocks)
    for command in (
        "coldtrace gateway init",
        "coldtrace gateway broker",
        "coldtrace gateway run",
        "coldtrace sim",
        "coldtrace gateway status",
        "coldtrace gateway alerts",
        "coldtrace gateway rejects",
        "coldtrace gateway trace",
        "coldtrace gateway trust",
        "coldtrace verify",
    ):
        assert command in script, command
    # No password or key is copied by hand from one file into another.
    assert not re.search(r"\bcp\b|password\s*=|credentials\.json\s*>", script)


def test_readme_links_the_guides_a_new_operator_needs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in ("docs/operations.md", "firmware/README.md", "hardware/"):
        assert f"]({target})" in readme, target
        assert (ROOT / target).exists(), target


def _ready(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"quick start: timed out waiting for {what}")
        time.sleep(0.2)


def test_quick_start_runs_as_written(tmp_path: Path) -> None:
    if mosquitto_missing():
        pytest.fail("mosquitto is not installed: run `make system`")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), CT_PY=sys.executable)
    prelude = 'coldtrace() { "$CT_PY" -m protocol.cli "$@"; }\nset -euo pipefail\n'

    def bash(script: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", prelude + script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    background: list[subprocess.Popen[bytes]] = []
    outputs: list[str] = []
    try:
        for n, (mode, body) in enumerate(quickstart_blocks()):
            script = body.replace("1883", str(port))
            if mode == "skip":
                continue
            if mode == "background":
                with open(tmp_path / f"background-{n}.log", "wb") as log:
                    background.append(
                        subprocess.Popen(
                            ["bash", "-c", prelude + script],
                            cwd=tmp_path,
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
                if "gateway broker" in script:
                    _wait(lambda: _ready(port), 30, "the broker")
                if "gateway run" in script:

                    def connected() -> bool:
                        done = bash(STATUS, 30)
                        return done.returncode == 0 and json.loads(done.stdout)["connected"]

                    _wait(connected, 60, "the gateway to connect")
                continue
            done = bash(script)
            outputs.append(done.stdout)
            assert done.returncode == 0, (
                f"quick start block {n} failed ({done.returncode}):\n{script}\n"
                f"{done.stdout}\n{done.stderr}"
            )
            assert "Traceback" not in done.stderr
    finally:
        for proc in reversed(background):  # the gateway first, then the broker
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
    text = "\n".join(outputs)
    assert "registered 3 devices with gateway wh-1; loggers bound to wh-1:cold-room-1" in text
    assert "rejects       0" in text and "no rejected messages" in text
    # The item's trace holds both loggers' readings of the cold room while it was there.
    assert re.search(r"leg 0 +wh-1:cold-room-1 .*sim-tl-1 \(\d+ records\), sim-tl-2", text)
    assert text.count("VERDICT: PASS") == 2  # the gateway's report and the customer's
    bundle = json.loads((tmp_path / "item-1.json").read_text())
    assert bundle["subject"]["uid"] == "045ec001001001"
    trust = json.loads((tmp_path / "trust.json").read_text())
    assert trust["logs"][0]["origin"] == "wh1.example.com/gw"
    # The short excursion raised alerts (the quick start's delay-0 profile), now ended.
    alerts = re.findall(r"excursion/sim-tl-\d/\d/high/\d+ +sim-tl-\d / wh-1:cold-room-1 ", text)
    assert len(alerts) >= 2 and re.search(r"\d+ alert\(s\), 0 open", text), text
    assert "High excursion from" in text  # the trace's note: inside the item's leg
