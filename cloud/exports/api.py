"""One entry point for every export: :func:`render` (for the CLI and for a web API).

    content, media_type, filename = render("fsma", bundle_bytes, trust_bytes,
                                           format="xlsx", lot="L42",
                                           date_from="2026-09-21", date_to="2026-09-22")

A pure function of its inputs (plus the clock for ``created`` when it is not
given): it verifies the bundle, renders and returns the bytes; it writes no
file and prints nothing. Failures are :class:`~cloud.exports.evidence.ExportError`
subclasses whose messages are safe to show:

- :class:`~cloud.exports.evidence.NotVerifiedError`: the bundle does not verify
  (``.report`` holds the verification report);
- :class:`UnreadableInputError`: the bundle or trust file breaks
  docs/protocol.md §9/§10 (``.code`` is the protocol error code);
- :class:`ExportOptionError` (also a ``ValueError``): an unknown kind, format
  or option, a date that is not ISO 8601, an empty range, or a selection the
  bundle does not fit (:class:`~cloud.exports.fsma.SelectionError`, a subclass:
  the item is not of the requested lot).

Dates (``date_from``, ``date_to``; ISO 8601, a string or a ``date``/``datetime``):
a date alone is a whole UTC day — ``date_from`` its first second,
``date_to`` its last (both ends inclusive); a date-time without an offset is
UTC; a date-time is inclusive to the second.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from cloud.exports import epcis, fsma
from cloud.exports.evidence import (
    Evidence,
    ExportOptionError,
    UnreadableInputError,
    evidence_from_bytes,
)
from protocol.errors import VerificationError
from protocol.trust import Trust

__all__ = [
    "FORMATS",
    "KINDS",
    "MEDIA_TYPES",
    "ExportOptionError",
    "Rendered",
    "UnreadableInputError",
    "parse_when",
    "render",
    "render_evidence",
]

KINDS = ("epcis", "fsma")
#: The formats of each kind; the first is the default.
FORMATS = {"epcis": ("jsonld",), "fsma": ("csv", "xlsx")}
MEDIA_TYPES = {
    "jsonld": "application/ld+json",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_SUFFIX = {"jsonld": "epcis.jsonld", "csv": "fsma204.csv", "xlsx": "fsma204.xlsx"}
_DATE_ONLY = re.compile(r"\d{4}-?\d\d-?\d\d")


class Rendered(NamedTuple):
    """An export: its bytes, media type and a file name to offer (no directories)."""

    content: bytes
    media_type: str
    filename: str


def parse_when(value: str | date | datetime, *, end: bool, option: str = "date") -> int:
    """An ISO 8601 date or date-time as Unix seconds: the start of the range it opens
    (``end=False``) or the exclusive end of the range it closes (``end=True``); see the
    module docstring."""
    when: date | datetime
    if isinstance(value, datetime | date):
        when = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            if _DATE_ONLY.fullmatch(text):
                when = date.fromisoformat(text)
            else:
                when = datetime.fromisoformat(text)
        except ValueError:
            raise ExportOptionError(
                f"{option}: not an ISO 8601 date or date-time: {value[:40]!r}"
            ) from None
    else:
        raise ExportOptionError(f"{option}: want an ISO 8601 string, a date or a datetime")
    if isinstance(when, datetime):
        aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        t = aware.timestamp()
        return math.floor(t) + 1 if end else math.ceil(t)
    day = datetime(when.year, when.month, when.day, tzinfo=UTC)
    return int((day + timedelta(days=1) if end else day).timestamp())


def _selection(lot: Any, date_from: Any, date_to: Any) -> fsma.Selection:
    if lot is not None and (not isinstance(lot, str) or not lot):
        raise ExportOptionError("lot: want a non-empty string")
    start = None if date_from is None else parse_when(date_from, end=False, option="from")
    end = None if date_to is None else parse_when(date_to, end=True, option="to")
    if start is not None and end is not None and start >= end:
        raise ExportOptionError("from is after to: the date range is empty")
    return fsma.Selection(lot, start, end)


class _Options(NamedTuple):
    kind: str
    format: str
    selection: fsma.Selection
    created: int | None


def _check(
    kind: str,
    format: str | None = None,
    lot: str | None = None,
    date_from: str | date | datetime | None = None,
    date_to: str | date | datetime | None = None,
    created: int | None = None,
    **unknown: Any,
) -> _Options:
    if unknown:
        raise ExportOptionError(f"unknown option: {sorted(unknown)[0]}")
    if kind not in FORMATS:
        raise ExportOptionError(f"unknown export {kind!r}: want one of {', '.join(KINDS)}")
    fmt = format or FORMATS[kind][0]
    if fmt not in FORMATS[kind]:
        raise ExportOptionError(
            f"{kind} has no format {fmt!r}: want one of {', '.join(FORMATS[kind])}"
        )
    if created is not None and (isinstance(created, bool) or not isinstance(created, int)):
        raise ExportOptionError("created: want Unix seconds (an integer)")
    if kind == "epcis" and (lot is not None or date_from is not None or date_to is not None):
        raise ExportOptionError("lot, from and to select FSMA rows: fsma only")
    return _Options(kind, fmt, _selection(lot, date_from, date_to), created)


def render_evidence(kind: str, ev: Evidence, **options: Any) -> Rendered:
    """Render verified evidence as ``kind`` (``epcis`` or ``fsma``). Options:

    - ``format``: ``jsonld`` for epcis; ``csv`` (default) or ``xlsx`` for fsma;
    - ``lot``, ``date_from``, ``date_to``: the FSMA selection (fsma only);
    - ``created`` (Unix s): the EPCIS ``creationDate`` / the workbook's time, default now.
    """
    return _render(_check(kind, **options), ev)


def _render(o: _Options, ev: Evidence) -> Rendered:
    filename = f"coldtrace-{ev.verdict.uid.hex()}-{_SUFFIX[o.format]}"
    if o.kind == "epcis":
        content = epcis.dumps(epcis.epcis_document(ev, created=o.created)).encode("utf-8")
    elif o.format == "xlsx":
        content = fsma.xlsx_bytes(ev, o.selection, created=o.created)
    else:
        content = fsma.csv_text(ev, o.selection).encode("utf-8")
    return Rendered(content, MEDIA_TYPES[o.format], filename)


def render(
    kind: str,
    bundle: bytes | Evidence,
    trust: Trust | bytes | None = None,
    *,
    name: str = "bundle.json",
    **options: Any,
) -> Rendered:
    """Verify ``bundle`` (its bytes) against ``trust`` (a Trust or the trust file's bytes)
    and render it (options: :func:`render_evidence`). ``bundle`` may also be an
    :class:`~cloud.exports.evidence.Evidence` already verified (``trust`` is then unused).
    ``name`` is the bundle's file name as the export shows it (EPCIS ``ct:bundle``).
    The options are checked before the bundle is verified.

    Returns ``(content, media_type, filename)``; raises an
    :class:`~cloud.exports.evidence.ExportError` (module docstring).
    """
    o = _check(kind, **options)
    if isinstance(bundle, Evidence):
        return _render(o, bundle)
    if not isinstance(bundle, bytes | bytearray | memoryview):
        raise ExportOptionError("bundle: want the bundle file's bytes or verified Evidence")
    if trust is None:
        raise ExportOptionError("trust: a trust file is required to verify the bundle")
    if not isinstance(trust, Trust | bytes | bytearray | memoryview):
        raise ExportOptionError("trust: want a Trust or the trust file's bytes")
    try:
        ev = evidence_from_bytes(
            bytes(bundle), trust if isinstance(trust, Trust) else bytes(trust), name
        )
    except VerificationError as err:
        raise UnreadableInputError(err.code or "unreadable", str(err)) from err
    return _render(o, ev)
