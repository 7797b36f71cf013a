"""A verified bundle as an FSMA 204 sortable spreadsheet, CSV or XLSX (operations.md §5).

One row per Critical Tracking Event (21 CFR 1.1310 ff.), from the custody
scans (§12.3) in custody order:

=============  ==================  =================================================
scan action    CTE                 why
=============  ==================  =================================================
commission     Initial Packing     the item is packed and labelled with its lot
load           Shipping            the item leaves the place on a carrier's vehicle
ship           Shipping            the item is dispatched
unload         Receiving           the item arrives off the vehicle
receive        Receiving           the item is taken in
sell           (no row)            a sale to the consumer is not a CTE
=============  ==================  =================================================

A ``ship`` followed by a ``load`` (or an ``unload`` followed by a ``receive``)
gives two rows, each with its own proof: both are signed events of the chain.

Columns (:data:`COLUMNS`), with the Key Data Elements the evidence holds:
the traceability lot code as the GS1 element string ``(01)<GTIN>(10)<lot>``
(empty when the item has no lot), the GTIN, lot and serial, the product
description (the profile's name and the GTIN), the location (the place id;
for a load, the vehicle too), the date and time in UTC (ISO 8601, so the
rows sort by time as text), the reference document (the scan's ``ref``, not
for a load, whose ``ref`` is the vehicle), the reader and its seq, the verdict
of the whole trace, and the **proof reference** of the row: log origin, leaf
index and the SHA-256 of the signed scan record, which the bundle holds.

``quantity``, ``unit_of_measure`` and ``tlc_source`` are columns the
evidence cannot fill (scans identify one item, not quantities; the TLC source
is a business fact ColdTrace does not sign): they are present and empty.

**Selection** (:class:`Selection`, what an FDA request names): a lot and a
date range. ``lot`` keeps the rows only when the item's lot is that lot (an
item with another lot, or none, is refused: :class:`SelectionError`, the
bundle is not about that lot); ``start`` and ``end`` (Unix seconds, UTC) keep
the rows with ``start`` ≤ event time < ``end``. The rows keep custody order.

**CSV** (:func:`csv_text`): cells written by the :mod:`csv` module (RFC 4180
quoting), UTF-8, with a header row; a cell starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return gets a leading apostrophe, so a spreadsheet
never runs a place id or a reference that a device wrote as a formula.

**XLSX** (:func:`xlsx_bytes`, openpyxl): sheet ``FSMA 204`` holds the same
header and rows, cell for cell the CSV's text except for typed cells:
``event_datetime_utc`` a datetime, ``event_date_utc`` a date,
``event_time_utc`` a time (all UTC; Excel has no time zones, the column
names say UTC), ``reader_seq`` and ``proof_index`` integers. Every other
cell is a text cell with the CSV's (escaped) text, never a formula. The
header row is bold and frozen, an autofilter covers the table, and columns
are as wide as their longest text (capped). Sheet ``export`` says what the
rows are: the bundle's name and SHA-256, the verdict, the selection (lot,
``from_utc``: events at or after, ``before_utc``: events before) and the row count.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloud.exports.evidence import Evidence, ExportOptionError, iso_utc

__all__ = [
    "COLUMNS",
    "CTES",
    "Selection",
    "SelectionError",
    "csv_text",
    "escape_cell",
    "rows",
    "xlsx_bytes",
]

CTES = {
    "commission": "Initial Packing",
    "load": "Shipping",
    "ship": "Shipping",
    "unload": "Receiving",
    "receive": "Receiving",
}

COLUMNS = (
    "cte",
    "coldtrace_action",
    "event_datetime_utc",
    "event_date_utc",
    "event_time_utc",
    "traceability_lot_code",
    "gtin",
    "lot",
    "serial",
    "item",
    "product_description",
    "quantity",
    "unit_of_measure",
    "location_id",
    "vehicle_id",
    "reference_document",
    "tlc_source",
    "reader",
    "reader_seq",
    "verdict",
    "proof_log",
    "proof_index",
    "record_sha256",
)

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


class SelectionError(ExportOptionError):
    """The selection does not fit the bundle (e.g. the item is of another lot)."""


@dataclass(frozen=True)
class Selection:
    """The rows an FSMA request asks for (module docstring): a lot, [start, end) in Unix s."""

    lot: str | None = None
    start: int | None = None
    end: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "lot": self.lot,
            "from": None if self.start is None else iso_utc(self.start),
            "to": None if self.end is None else iso_utc(self.end),
        }


def escape_cell(value: object) -> str:
    """A cell's text, with a leading apostrophe when a spreadsheet would read a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def rows(ev: Evidence, selection: Selection | None = None) -> Iterator[dict[str, str]]:
    """One dict per CTE (module docstring), keyed by :data:`COLUMNS`, unescaped.

    Raises :class:`SelectionError` when ``selection`` names a lot the item is not of."""
    sel = selection or Selection()
    doc = ev.document
    subject = doc["subject"] or {}
    profile = doc["profile"] or {}
    gtin, lot = subject.get("gtin"), subject.get("lot")
    if sel.lot is not None and sel.lot != lot:
        have = f"lot {lot!r}" if lot else "no lot"
        raise SelectionError(
            f"the bundle's item {subject.get('item')!r} has {have}, not lot {sel.lot!r}"
        )
    tlc = f"(01){gtin}(10){lot}" if gtin and lot else ""
    described = [p for p in (profile.get("name"), f"GTIN {gtin}" if gtin else None) if p]
    for leg in ev.verdict.legs:
        scan = leg.leg.scan_json()
        cte = CTES.get(scan["action"])
        if cte is None:
            continue
        if sel.start is not None and leg.leg.start < sel.start:
            continue
        if sel.end is not None and leg.leg.start >= sel.end:
            continue
        when = iso_utc(leg.leg.start)
        proof = ev.proof(leg)
        load = scan["action"] == "load"
        yield {
            "cte": cte,
            "coldtrace_action": scan["action"],
            "event_datetime_utc": when,
            "event_date_utc": when[:10],
            "event_time_utc": when[11:19],
            "traceability_lot_code": tlc,
            "gtin": gtin or "",
            "lot": lot or "",
            "serial": subject.get("serial") or "",
            "item": subject.get("item") or "",
            "product_description": ", ".join(described),
            "quantity": "",
            "unit_of_measure": "",
            "location_id": scan["place"],
            "vehicle_id": (scan["ref"] or "") if load else "",
            "reference_document": "" if load else (scan["ref"] or ""),
            "tlc_source": "",
            "reader": scan["device"],
            "reader_seq": str(scan["seq"]),
            "verdict": doc["verdict"],
            "proof_log": proof.log,
            "proof_index": str(proof.index),
            "record_sha256": proof.sha256,
        }


def csv_text(ev: Evidence, selection: Selection | None = None) -> str:
    """The spreadsheet as CSV text (header row, CRLF line ends, cells escaped)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows(ev, selection):
        writer.writerow([escape_cell(row[c]) for c in COLUMNS])
    return out.getvalue()


_INTEGERS = frozenset({"reader_seq", "proof_index"})
_FORMATS = {
    "event_datetime_utc": "yyyy-mm-dd hh:mm:ss",
    "event_date_utc": "yyyy-mm-dd",
    "event_time_utc": "hh:mm:ss",
}
_MAX_WIDTH = 70


def _typed(column: str, text: str) -> Any:
    """The XLSX value of a row's cell (module docstring); ``text`` unescaped."""
    if column == "event_datetime_utc" and text:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")  # naive, UTC
    if column == "event_date_utc" and text:
        return datetime.strptime(text, "%Y-%m-%d").date()
    if column == "event_time_utc" and text:
        return datetime.strptime(text, "%H:%M:%S").time()
    if column in _INTEGERS and text:
        return int(text)
    return escape_cell(text)


def xlsx_bytes(
    ev: Evidence, selection: Selection | None = None, *, created: int | None = None
) -> bytes:
    """The spreadsheet as an XLSX workbook (module docstring); ``created`` (Unix s) is the
    workbook's creation time, default now."""
    from openpyxl import Workbook
    from openpyxl.cell.cell import TYPE_STRING
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    table = [[_typed(c, row[c]) for c in COLUMNS] for row in rows(ev, selection)]
    wb = Workbook()
    ws = wb.active
    ws.title = "FSMA 204"
    ws.append(list(COLUMNS))
    widths = [len(c) for c in COLUMNS]
    for values in table:
        ws.append(values)
    bold = Font(bold=True)
    for cell in ws[1]:
        cell.font = bold
    for r, values in enumerate(table, start=2):
        for c, (column, value) in enumerate(zip(COLUMNS, values, strict=True), start=1):
            cell = ws.cell(row=r, column=c)
            if column in _FORMATS:
                cell.number_format = _FORMATS[column]
                widths[c - 1] = max(widths[c - 1], 19)
            elif isinstance(value, str):
                cell.data_type = TYPE_STRING  # never a formula
                widths[c - 1] = max(widths[c - 1], len(value))
            else:
                widths[c - 1] = max(widths[c - 1], len(str(value)))
    for c, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(c)].width = min(width, _MAX_WIDTH) + 2
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{len(table) + 1}"

    about = wb.create_sheet("export")
    sel = (selection or Selection()).to_json()
    facts = [
        ("export", "FSMA 204 sortable spreadsheet (ColdTrace, verified bundle)"),
        ("bundle", ev.name),
        ("bundle_sha256", ev.sha256),
        ("verdict", ev.document["verdict"]),
        ("lot", sel["lot"] or ""),
        ("from_utc", sel["from"] or ""),  # events at or after
        ("before_utc", sel["to"] or ""),  # events before (the end is exclusive here)
        ("rows", len(table)),
    ]
    for key, value in facts:
        about.append([key, escape_cell(value) if isinstance(value, str) else value])
    for cell in about["A"]:
        cell.font = bold
    about.column_dimensions["A"].width = 16
    about.column_dimensions["B"].width = 70

    when = datetime.now(UTC) if created is None else datetime.fromtimestamp(created, UTC)
    wb.properties.creator = "ColdTrace"
    wb.properties.created = when.replace(tzinfo=None)
    wb.properties.modified = when.replace(tzinfo=None)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
