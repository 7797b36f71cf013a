"""Run a firmware test script (tests/firmware/scripts/) under CPython and
under the real MicroPython interpreter (wasm, via Node), with the same
modules on the path: firmware/lib, firmware/sim and the scripts directory;
JSON data files from tests/firmware/data and hardware/ are readable as
``data/<name>`` (see scripts/fwrun.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"
LIB = ROOT / "firmware" / "lib"
SIM = ROOT / "firmware" / "sim"
DATA = (Path(__file__).resolve().parent / "data", ROOT / "hardware")
MP = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
INTERPRETERS = ("cpython", "micropython")
TIMEOUT = 180


def run(interp: str, script: str) -> str:
    path = SCRIPTS / script
    if interp == "cpython":
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (LIB, SIM, SCRIPTS))
        cmd = [sys.executable, str(path)]
    else:
        node = shutil.which("node")
        if node is None or not MP.exists():
            pytest.fail("MicroPython (wasm) needs node and `npm ci` (make system)")
        env = dict(os.environ)
        cmd = [
            node,
            str(Path(__file__).with_name("mprun.mjs")),
            str(path),
            str(LIB),
            str(SIM),
            str(SCRIPTS),
        ] + [f"{d}:/data" for d in DATA]
    p = subprocess.run(
        cmd, cwd=SCRIPTS, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    out = p.stdout + p.stderr
    if p.returncode != 0 or ", 0 failed" not in out:
        pytest.fail(f"{script} under {interp} failed ({p.returncode}):\n{out}")
    return out
