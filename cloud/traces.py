"""Traces across organisations: filled in by the trace assembly (docs/cloud.md §4)."""

from __future__ import annotations

from typing import Any


def install(app: Any, cloud: Any, needs: Any, public: Any) -> None:
    """Add the trace and export endpoints to ``app``."""
