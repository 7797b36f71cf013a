"""Runs firmware test scripts under CPython and under the real MicroPython.

A firmware test script is a plain module in ``tests/firmware/scripts/`` whose
``test_*`` functions are called by ``fwrun.main(globals())`` (see README.md).
The same file runs, unchanged, in two interpreters:

* CPython: ``python SCRIPT`` with cwd ``tests/firmware/scripts`` and
  PYTHONPATH = scripts, fakes, firmware/sim, firmware/lib;
* MicroPython 1.27 (wasm, under Node): ``tests/firmware/mp_run.mjs`` copies
  firmware/lib, firmware/sim, tests/firmware/fakes and scripts into the
  interpreter's in-memory filesystem (``/fw/...``), ``tests/firmware/data``
  to ``/data``, ``tests/protocol/testdata/rfc6979`` to ``/data/rfc6979`` and
  ``hardware/`` to ``/hardware``, puts the same folders on
  ``sys.path`` and runs the script with cwd ``/``.

``fwrun.main`` ends with the line ``N passed, N failed``; the run counts as
passed when the exit status is 0, nothing failed and something ran.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCRIPTS = HERE / "scripts"
FAKES = HERE / "fakes"
DATA = HERE / "data"
LIB = ROOT / "firmware" / "lib"
SIM = ROOT / "firmware" / "sim"
HARDWARE = ROOT / "hardware"
RFC6979 = ROOT / "tests" / "protocol" / "testdata" / "rfc6979"
MP_RUN = HERE / "mp_run.mjs"
MICROPYTHON = (
    ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript" / "micropython.mjs"
)
INTERPRETERS = ("cpython", "micropython")
_SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$", re.M)


@dataclass
class Result:
    script: str
    interpreter: str
    status: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def counts(self) -> tuple[int, int] | None:
        found = _SUMMARY.findall(self.stdout)
        if not found:
            return None
        passed, failed = found[-1]
        return int(passed), int(failed)

    @property
    def ok(self) -> bool:
        c = self.counts
        return self.status == 0 and c is not None and c[1] == 0 and c[0] > 0

    def report(self) -> str:
        return (
            f"{self.script} under {self.interpreter}: exit {self.status}, "
            f"counts {self.counts}, {self.seconds:.1f} s\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


_MAIN = re.compile(r"^\s*(fwrun\.)?main\(globals\(\)\)\s*$", re.M)


def scripts() -> list[Path]:
    """Every test script: a scripts/*.py file that calls ``main(globals())``
    (helper modules in the same folder, like fwrun.py, are not scripts)."""
    return sorted(
        p for p in SCRIPTS.glob("*.py")
        if not p.name.startswith("_") and _MAIN.search(p.read_text(encoding="utf-8"))
    )


def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        raise RuntimeError("node is not installed (make system installs the test tools)")
    if not MICROPYTHON.exists():
        raise RuntimeError(f"{MICROPYTHON} is missing: run `npm ci` (make system)")
    return exe


def cpython_command(script: Path) -> tuple[list[str], dict[str, str], Path]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (SCRIPTS, FAKES, SIM, LIB))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return [sys.executable, str(script)], env, SCRIPTS


def micropython_command(script: Path, heap: int = 4 * 1024 * 1024) -> list[str]:
    cmd = [node(), str(MP_RUN), "--heap", str(heap)]
    for host, mp in ((LIB, "/fw/lib"), (SIM, "/fw/sim"), (FAKES, "/fw/fakes"),
                     (SCRIPTS, "/fw/scripts"), (DATA, "/data"), (HARDWARE, "/hardware"),
                     (RFC6979, "/data/rfc6979")):
        if host.is_dir():
            cmd += ["--put", f"{host}={mp}"]
    for mp in ("/fw/scripts", "/fw/fakes", "/fw/sim", "/fw/lib"):
        cmd += ["--path", mp]
    return [*cmd, "--cwd", "/", str(script)]


def run(script: Path, interpreter: str, timeout: float = 120) -> Result:
    script = Path(script).resolve()
    if interpreter == "cpython":
        cmd, env, cwd = cpython_command(script)
    elif interpreter == "micropython":
        cmd, env, cwd = micropython_command(script), None, ROOT
    else:
        raise ValueError(interpreter)
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return Result(script.stem, interpreter, -1, out, f"timed out after {timeout} s",
                      time.monotonic() - t0)
    return Result(script.stem, interpreter, p.returncode, p.stdout, p.stderr,
                  time.monotonic() - t0)


_cache: dict[tuple[str, str], Result] = {}


def run_all(names: list[Path] | None = None) -> dict[tuple[str, str], Result]:
    """Run every script under both interpreters, in parallel, once per session."""
    todo = [(s, i) for s in (names or scripts()) for i in INTERPRETERS
            if (s.stem, i) not in _cache]
    if todo:
        workers = max(2, min(len(todo), (os.cpu_count() or 2) + 1))
        with ThreadPoolExecutor(workers) as ex:
            for r in ex.map(lambda si: run(*si), todo):
                _cache[(r.script, r.interpreter)] = r
    return _cache
