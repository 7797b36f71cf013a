"""Command-line values in the units people type, converted exactly.

- temperatures in °C with at most two decimals (``4``, ``4.00``, ``-18.5``)
  to the records' integer 0.01 °C (docs/protocol.md §2.2), never through a
  float;
- durations ``30m``, ``2h``, ``1800s``, ``1h30m`` or plain seconds to seconds;
- times as Unix seconds or ISO 8601 UTC (``2026-06-01T08:00:00Z``,
  ``2026-06-01T08:00Z``, ``2026-06-01 08:00``) to Unix seconds, and back.

Each parser raises :class:`UnitError` (a ``ValueError``) with what it expected.
"""

from __future__ import annotations

import calendar
import re
from decimal import Decimal, InvalidOperation

from protocol.reasons import fmt_time

__all__ = [
    "UnitError",
    "format_time",
    "parse_centi",
    "parse_duration",
    "parse_time",
]


class UnitError(ValueError):
    """A value on the command line is not in the expected unit or form."""


_DECIMAL = re.compile(r"[+-]?[0-9]{1,6}(?:\.[0-9]+)?")
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?(Z|\+00:00)?")


def parse_centi(text: str) -> int:
    """``"4"``, ``"4.00"``, ``"-0.5"`` °C -> 400, 400, -50 (0.01 °C), exactly."""
    t = text.strip().removesuffix("°C").removesuffix("C").strip()
    if _DECIMAL.fullmatch(t) is None:
        raise UnitError(f"{text!r} is not a temperature in °C (e.g. 4 or -18.50)")
    try:
        value = Decimal(t)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise UnitError(f"{text!r} is not a temperature in °C") from None
    centi = value * 100
    if centi != centi.to_integral_value():
        raise UnitError(f"{text!r}: a temperature has at most two decimals (0.01 °C)")
    return int(centi)


def parse_duration(text: str) -> int:
    """``30m``, ``2h``, ``1800s``, ``1h30m`` or ``1800`` -> seconds."""
    t = text.strip().lower()
    if t.isdigit():
        return int(t)
    m = _DURATION.fullmatch(t)
    if not t or m is None or not any(m.groups()):
        raise UnitError(f"{text!r} is not a duration (e.g. 30m, 2h, 1800s, 1h30m)")
    h, mnt, s = (int(g) if g else 0 for g in m.groups())
    return h * 3600 + mnt * 60 + s


def parse_time(text: str) -> int:
    """Unix seconds, or an ISO 8601 time in UTC (``Z`` optional), -> Unix seconds."""
    t = text.strip()
    if t.isdigit():
        return int(t)
    m = _ISO.fullmatch(t)
    if m is None:
        raise UnitError(f"{text!r} is not a time: give Unix seconds or UTC as 2026-06-01T08:00:00Z")
    y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups()[:6])
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]):
        raise UnitError(f"{y:04d}-{mo:02d}-{d:02d} is not a date")
    if not (h < 24 and mi < 60 and s < 60):
        raise UnitError(f"{h:02d}:{mi:02d}:{s:02d} is not a time of day")
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))


def format_time(t: int | None) -> str:
    """Unix seconds -> ``2026-06-01T08:00:00Z``."""
    return "-" if t is None else fmt_time(t)
