"""Compile ColdTraceAnchor.sol with solcjs from npm into a reproducible artifact.

    python -m gateway.evidence.contracts.build          # (re)write ColdTraceAnchor.json
    python -m gateway.evidence.contracts.build --check  # exit 1 if the artifact differs

The compiler is the ``solc`` npm package pinned in package.json (solcjs, the
Emscripten build of solc: no native download). Its standard-JSON interface is
fed fixed settings - optimizer on with 200 runs, EVM version ``paris`` (no
PUSH0: it deploys on every chain docs/evm.md names), no metadata hash - so the
same source gives the same bytes on any machine. The artifact records the
compiler version, the settings and the SHA-256 of the source next to the ABI and
the bytecode; a test recompiles and compares byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.evidence.contracts import ARTIFACT, SOURCE

__all__ = ["SETTINGS", "BuildError", "compile_artifact", "main", "solcjs"]

CONTRACT = "ColdTraceAnchor"
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "paris",
    "metadata": {"bytecodeHash": "none"},
    "outputSelection": {"*": {CONTRACT: ["abi", "evm.bytecode.object"]}},
}
_REPO = Path(__file__).resolve().parents[3]


class BuildError(Exception):
    """solcjs is missing or the source does not compile."""


def solcjs() -> list[str]:
    """The command that runs the npm solcjs (``node <repo>/node_modules/solc/solc.js``)."""
    script = _REPO / "node_modules" / "solc" / "solc.js"
    node = shutil.which("node")
    if node is None or not script.exists():
        raise BuildError(
            "solcjs is not installed: run `npm ci` (scripts/ensure-system.sh) in the repository"
        )
    return [node, str(script)]


def compile_artifact(source: Path = SOURCE) -> dict[str, Any]:
    """Compile ``source`` and return the artifact (a JSON object)."""
    text = source.read_text(encoding="utf-8")
    request = {
        "language": "Solidity",
        "sources": {source.name: {"content": text}},
        "settings": SETTINGS,
    }
    cmd = solcjs()
    version = subprocess.run(
        [*cmd, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    done = subprocess.run(
        [*cmd, "--standard-json"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        out = json.loads(done.stdout[done.stdout.index("{") :])
    except ValueError:
        raise BuildError(f"solcjs gave no JSON: {done.stderr.strip() or done.stdout}") from None
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise BuildError("; ".join(e.get("formattedMessage", e["message"]) for e in errors))
    unit = out["contracts"][source.name][CONTRACT]
    return {
        "contract": CONTRACT,
        "source": f"gateway/evidence/contracts/{source.name}",
        "source_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "compiler": f"solcjs {version}",
        "settings": {k: v for k, v in SETTINGS.items() if k != "outputSelection"},
        "abi": unit["abi"],
        "bytecode": "0x" + unit["evm"]["bytecode"]["object"],
    }


def render(art: dict[str, Any]) -> str:
    """The artifact's file text: sorted keys, two-space indent, final newline."""
    return json.dumps(art, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.evidence.contracts.build")
    p.add_argument("--check", action="store_true", help="compare with the committed artifact")
    args = p.parse_args(argv)
    try:
        text = render(compile_artifact())
    except BuildError as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 2
    if args.check:
        same = ARTIFACT.exists() and ARTIFACT.read_text(encoding="utf-8") == text
        print(f"{ARTIFACT.name}: {'reproduced' if same else 'DIFFERS from a fresh build'}")
        return 0 if same else 1
    ARTIFACT.write_text(text, encoding="utf-8")
    print(f"wrote {ARTIFACT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
