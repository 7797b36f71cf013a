"""The anchor contract (ColdTraceAnchor.sol) and its compiled artifact (ColdTraceAnchor.json)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["ARTIFACT", "SOURCE", "artifact"]

SOURCE = Path(__file__).with_name("ColdTraceAnchor.sol")
ARTIFACT = Path(__file__).with_name("ColdTraceAnchor.json")


@cache
def artifact() -> dict[str, Any]:
    """The committed artifact: abi, bytecode, compiler, settings, source sha256."""
    return json.loads(ARTIFACT.read_text(encoding="utf-8"))
