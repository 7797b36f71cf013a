"""Bounded in CI, full under ``make soak``.

The fault suite (tests/reliability), the attack suite (tests/attacks) and the
fuzzers (tests/fuzz) size themselves with :func:`scale`: ``make test`` runs the
bounded variant every time; ``make soak`` sets ``COLDTRACE_SOAK=1`` and runs the
full one (issue 12's sizes: 100,000 records from 200 devices, 72 simulated
hours, long fuzzing runs). Tests that only make sense at full size carry
``@pytest.mark.soak`` and are skipped unless soaking.
"""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")

SOAK = os.environ.get("COLDTRACE_SOAK") == "1"


def scale(bounded: T, full: T) -> T:
    """``full`` under ``make soak``, else ``bounded``."""
    return full if SOAK else bounded
