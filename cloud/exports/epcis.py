"""A verified bundle as a GS1 EPCIS 2.0 JSON-LD document (docs/operations.md, "Exports").

One ``ObjectEvent`` per custody scan (§12.3), in custody order:

- ``action`` ADD for a commission, OBSERVE for every other scan; ``bizStep``
  from the scan's action: commission ``commissioning``, load ``loading``,
  unload ``unloading``, receive ``receiving``, ship ``shipping``, sell
  ``retail_selling``;
- ``eventTime``: the scan's date (§12.2) in UTC, ``eventTimeZoneOffset``
  ``+00:00``; ``eventID``: ``urn:coldtrace:record:sha256:`` + the SHA-256 of
  the signed scan;
- ``epcList``: the item (GS1 Digital Link, :func:`~cloud.exports.evidence.item_uri`);
- ``readPoint``: the scan's place (:func:`~cloud.exports.evidence.place_uri`);
  ``bizLocation`` the same place, except after a load, a ship or a sell (the
  item is then on its way or sold, as EPCIS leaves ``bizLocation`` out);
- ``bizTransactionList``: the scan's ``ref`` as ``urn:coldtrace:ref:`` + the
  percent-encoded ref, except for a load, whose ``ref`` is the vehicle: that
  goes to ``ct:vehicle`` as a place URI;
- ``sensorElementList`` (legs with readings): ``sensorMetadata`` with ``time``
  and ``startTime`` the leg's start, ``endTime`` its end, ``deviceID`` the
  logger when exactly one monitored the leg (``ct:devices`` lists them all),
  ``rawData`` a URI naming the verifiable series:
  ``urn:coldtrace:bundle:sha256:<bundle file SHA-256>#leg=<index>;device=<id>…``
  (the bundle holds the loggers' signed readings of that leg, with their
  proofs); one ``sensorReport`` of type ``Temperature`` with ``minValue``,
  ``maxValue``, ``meanValue`` in ``CEL`` — the verdict's per-leg figures
  (§13.1), 0.01 °C integers divided by 100 (a correctly rounded division whose
  JSON text is the exact decimal) — and one more report per excursion that
  starts in the leg: ``exception`` ``ALARM_CONDITION`` when it reached the
  alarm delay, the peak as ``maxValue`` (high) or ``minValue`` (low),
  ``time`` its start, and ``ct:excursion`` with its §13.1 members.

The schema lets every object carry members named by a URI; ColdTrace's are
``ct:`` (``https://coldtrace.example/epcis/``, in the document's ``@context``):
``ct:verdict`` on the document (verdict, reasons, subject, profile, totals: the
§13.1 members, in their units), ``ct:bundle`` (file name and SHA-256), and on
each event ``ct:proof`` (log origin, leaf index and SHA-256 of the signed scan)
and ``ct:scan`` (reader device, seq, ColdTrace action name, tag UID).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from cloud.exports.evidence import Evidence, device_uri, iso_utc, item_uri, place_uri
from protocol.verdict import ExcursionReport, LegReport

__all__ = [
    "BIZ_STEPS",
    "CT_NAMESPACE",
    "EPCIS_CONTEXT",
    "REF_PREFIX",
    "dumps",
    "epcis_document",
]

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
CT_NAMESPACE = "https://coldtrace.example/epcis/"
REF_PREFIX = "urn:coldtrace:ref:"
RECORD_PREFIX = "urn:coldtrace:record:sha256:"
BUNDLE_PREFIX = "urn:coldtrace:bundle:sha256:"

BIZ_STEPS = {
    "commission": "commissioning",
    "load": "loading",
    "unload": "unloading",
    "receive": "receiving",
    "ship": "shipping",
    "sell": "retail_selling",
}


#: After these the item is on its way (or sold), not at the scan's place: no bizLocation.
_IN_TRANSIT = frozenset({"load", "ship", "sell"})


def _celsius(centi: int) -> float:
    # One correctly rounded division: the float's shortest repr is the exact decimal
    # (at most 6 significant digits here), e.g. 260 -> 2.6, never 2.6000000000000001.
    return centi / 100


def _raw_data(ev: Evidence, leg: LegReport) -> str:
    devices = sorted({m.device for m in leg.monitors})
    parts = [f"leg={leg.leg.index}"] + [f"device={quote(d, safe=':')}" for d in devices]
    return f"{BUNDLE_PREFIX}{ev.sha256}#" + ";".join(parts)


def _excursion_report(x: ExcursionReport) -> dict[str, Any]:
    report: dict[str, Any] = {"type": "Temperature"}
    if x.alarm:
        report["exception"] = "ALARM_CONDITION"
    if len(x.devices) == 1:
        report["deviceID"] = device_uri(x.devices[0])
    report["time"] = iso_utc(x.start)
    report["maxValue" if x.side == "high" else "minValue"] = _celsius(x.peak)
    report["uom"] = "CEL"
    report["ct:excursion"] = x.to_json()
    return report


def _sensor_element(
    ev: Evidence, leg: LegReport, excursions: list[ExcursionReport]
) -> dict[str, Any] | None:
    f = leg.figures
    if f.readings == 0 or f.min is None or f.max is None or f.mean is None:
        return None
    devices = sorted({m.device for m in leg.monitors})
    meta: dict[str, Any] = {
        "time": iso_utc(leg.leg.start),
        "startTime": iso_utc(leg.leg.start),
        "endTime": iso_utc(leg.leg.end),
    }
    if len(devices) == 1:
        meta["deviceID"] = device_uri(devices[0])
    meta["rawData"] = _raw_data(ev, leg)
    meta["ct:devices"] = [device_uri(d) for d in devices]
    summary: dict[str, Any] = {
        "type": "Temperature",
        "minValue": _celsius(f.min),
        "maxValue": _celsius(f.max),
        "meanValue": _celsius(f.mean),
        "uom": "CEL",
        "ct:readings": f.readings,
        "ct:covered": f.covered,
    }
    if f.mkt is not None:
        summary["ct:mkt"] = _celsius(f.mkt)
    if f.tor is not None:
        summary["ct:timeOutOfRange"] = f.tor
    reports = [summary] + [_excursion_report(x) for x in excursions]
    return {"sensorMetadata": meta, "sensorReport": reports}


def _event(ev: Evidence, leg: LegReport, item: str | None, uid: str) -> dict[str, Any]:
    scan = leg.leg.payload
    action = leg.leg.scan_json()["action"]
    proof = ev.proof(leg)
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventID": RECORD_PREFIX + proof.sha256,
        "eventTime": iso_utc(leg.leg.start),
        "eventTimeZoneOffset": "+00:00",
        "epcList": [item_uri(item)] if item else [],
        "action": "ADD" if action == "commission" else "OBSERVE",
        "bizStep": BIZ_STEPS[action],
        "readPoint": {"id": place_uri(scan.place)},
    }
    if action not in _IN_TRANSIT:
        event["bizLocation"] = {"id": place_uri(scan.place)}
    if scan.ref is not None:
        if action == "load":
            event["ct:vehicle"] = place_uri(scan.ref)
        else:
            event["bizTransactionList"] = [
                {"bizTransaction": REF_PREFIX + quote(scan.ref, safe=":")}
            ]
    event["ct:proof"] = proof.to_json()
    event["ct:scan"] = {
        "device": leg.leg.scan.signer,
        "seq": scan.seq,
        "action": action,
        "uid": uid,
    }
    return event


def epcis_document(ev: Evidence, *, created: int | None = None) -> dict[str, Any]:
    """The EPCIS 2.0 document of a verified bundle (module docstring).

    ``created`` (Unix seconds) is the ``creationDate``; default now.
    """
    v = ev.verdict
    doc = ev.document
    subject = doc["subject"] or {}
    item = subject.get("item")
    # Each excursion is reported once, on the first leg it touches.
    first: dict[int, list[ExcursionReport]] = {}
    for x in v.excursions:
        if x.legs:
            first.setdefault(min(x.legs), []).append(x)
    events = []
    for leg in v.legs:
        event = _event(ev, leg, item, subject.get("uid") or v.uid.hex())
        element = _sensor_element(ev, leg, first.get(leg.leg.index, []))
        if element is not None:
            event["sensorElementList"] = [element]
        events.append(event)
    when = datetime.now(UTC) if created is None else datetime.fromtimestamp(created, UTC)
    return {
        "@context": [EPCIS_CONTEXT, {"ct": CT_NAMESPACE}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ct:bundle": {"name": ev.name, "sha256": ev.sha256},
        "ct:verdict": {
            "verdict": doc["verdict"],
            "reasons": doc["reasons"],
            "subject": doc["subject"],
            "profile": doc["profile"],
            "totals": doc["totals"],
        },
        "epcisBody": {"eventList": events},
    }


def dumps(document: dict[str, Any]) -> str:
    """The document as UTF-8 JSON text, indented, with a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
