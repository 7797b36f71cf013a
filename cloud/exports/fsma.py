"""A verified bundle as an FSMA 204 sortable spreadsheet (CSV; docs/operations.md, "Exports").

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

Cells are written by the :mod:`csv` module (RFC 4180 quoting), UTF-8, with a
header row; a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return gets a leading apostrophe, so a spreadsheet never runs a
place id or a reference that a device wrote as a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from cloud.exports.evidence import Evidence, iso_utc

__all__ = ["COLUMNS", "CTES", "csv_text", "escape_cell", "rows"]

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


def escape_cell(value: object) -> str:
    """A cell's text, with a leading apostrophe when a spreadsheet would read a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def rows(ev: Evidence) -> Iterator[dict[str, str]]:
    """One dict per CTE (module docstring), keyed by :data:`COLUMNS`, unescaped."""
    doc = ev.document
    subject = doc["subject"] or {}
    profile = doc["profile"] or {}
    gtin, lot = subject.get("gtin"), subject.get("lot")
    tlc = f"(01){gtin}(10){lot}" if gtin and lot else ""
    described = [p for p in (profile.get("name"), f"GTIN {gtin}" if gtin else None) if p]
    for leg in ev.verdict.legs:
        scan = leg.leg.scan_json()
        cte = CTES.get(scan["action"])
        if cte is None:
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


def csv_text(ev: Evidence) -> str:
    """The spreadsheet as CSV text (header row, CRLF line ends, cells escaped)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows(ev):
        writer.writerow([escape_cell(row[c]) for c in COLUMNS])
    return out.getvalue()
