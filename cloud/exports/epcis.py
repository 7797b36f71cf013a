"""A verified bundle as a GS1 EPCIS 2.0 JSON-LD document (docs/operations.md, "Exports").

Events come from the custody scans (§12.3), in custody order; every scan
gives one **primary event**, and a scan with ``parent`` one more, an
``AggregationEvent``, right after it.

Primary events:

- a ``ship`` or ``receive`` that carries a business reference (``ref``) is a
  ``TransactionEvent`` (a handover under that reference): ``action`` ADD
  (the item is associated with the reference) for a ship, and for a receive
  whose ``ref`` no earlier custody scan carried; OBSERVE for a receive whose
  ``ref`` an earlier custody scan carried (it confirms the shipment arrived
  under it);
- every other scan is an ``ObjectEvent``: ``action`` ADD for a commission
  (the item is created: ``bizStep`` commissioning), OBSERVE otherwise;
- ``bizStep`` from the scan's action: commission ``commissioning``, load
  ``loading``, unload ``unloading``, receive ``receiving``, ship
  ``shipping``, sell ``retail_selling``;
- ``eventTime``: the scan's date (§12.2) in UTC, ``eventTimeZoneOffset``
  ``+00:00``; ``eventID``: ``urn:coldtrace:record:sha256:`` + the SHA-256 of
  the signed scan;
- ``epcList``: the item (GS1 Digital Link, :func:`~cloud.exports.evidence.item_uri`);
- ``readPoint``: the scan's place (:func:`~cloud.exports.evidence.place_uri`,
  an SGLN URN stays one); ``bizLocation`` the same place, except after a
  load, a ship or a sell (the item is then on its way or sold, as EPCIS
  leaves ``bizLocation`` out);
- ``bizTransactionList``: the scan's ``ref`` as ``urn:coldtrace:ref:`` + the
  percent-encoded ref, except for a load, whose ``ref`` is the vehicle: that
  goes to ``ct:vehicle`` as a place URI;
- ``sourceList`` / ``destinationList`` on a ship or a receive (either event
  type), each with an ``owning_party`` (:func:`~cloud.exports.evidence.org_uri`
  of the ``org`` in the reader's registration, when the bundle's
  registrations name exactly one) and a ``location`` (the place). A ship's
  source is its own reader and place; its destination is the first later
  custody scan that is an unload or a receive, passing loads, stopping at a
  ship, sell or commission (none found: no ``destinationList``). A receive's
  destination is its own reader and place; its source is the last earlier
  custody scan that is a ship or a load, passing unloads, stopping at a
  receive, sell or commission;
- ``sensorElementList`` (legs with readings): ``sensorMetadata`` with ``time``
  and ``startTime`` the leg's start, ``endTime`` its end, ``deviceID`` the
  logger when exactly one monitored the leg (``ct:devices`` lists them all),
  ``rawData`` a URI naming the verifiable series:
  ``urn:coldtrace:bundle:sha256:<bundle file SHA-256>#leg=<index>;device=<id>;seq=<ranges>…``
  (per device, sorted, the seqs of the signed readings that make the leg's
  figures, as ranges ``a-b`` joined by commas; the bundle holds them with
  their proofs); one ``sensorReport`` per measured type: ``Temperature`` with
  ``minValue``, ``maxValue``, ``meanValue`` in ``CEL`` — the verdict's per-leg
  figures (§13.1), 0.01 °C integers divided by 100 (a correctly rounded
  division whose JSON text is the exact decimal) — and, when the readings
  carry it, ``RelativeHumidity`` in ``P1`` (percent) over the same readings
  (time-weighted mean as for temperature); then one more report per
  excursion that starts in the leg: ``exception`` ``ALARM_CONDITION`` when it
  reached the alarm delay, the peak as ``maxValue`` (high) or ``minValue``
  (low), ``time`` its start, and ``ct:excursion`` with its §13.1 members.

Aggregation (``parent``, §2.3: the container tag this tag was packed into or
taken from; the scan's action says which):

==========  ==========  ==============  ===========================================
scan        ``action``  ``bizStep``     meaning
==========  ==========  ==============  ===========================================
commission  ADD         packing         packed into the container when commissioned
load        ADD         loading         packed into the container as it is loaded
unload      DELETE      unloading       taken out of the container at unloading
receive     DELETE      unpacking       taken out of the container
ship        DELETE      unpacking       taken out of the container
sell        DELETE      unpacking       taken out of the container
==========  ==========  ==============  ===========================================

``parentID`` is the container's item when the bundle holds the container
tag's commission scan, else ``urn:coldtrace:tag:<uid hex>``; ``childEPCs``
the item; ``eventID`` the scan's, with ``#aggregation``; time, places and
proof as the primary event's.

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

from cloud.exports.evidence import (
    Evidence,
    device_uri,
    iso_utc,
    item_uri,
    org_uri,
    place_uri,
    tag_uri,
)
from cloud.exports.series import LegSeries, leg_series, seq_ranges
from protocol.analytics import mean_centi
from protocol.verdict import ExcursionReport, LegReport

__all__ = [
    "AGGREGATION",
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
    "install": "installing",
}

#: A scan with ``parent``: the AggregationEvent's (action, bizStep) (module docstring).
AGGREGATION = {
    "commission": ("ADD", "packing"),
    "load": ("ADD", "loading"),
    "unload": ("DELETE", "unloading"),
    "receive": ("DELETE", "unpacking"),
    "ship": ("DELETE", "unpacking"),
    "sell": ("DELETE", "unpacking"),
    "install": ("DELETE", "unpacking"),
}

#: After these the item is on its way (or sold), not at the scan's place: no bizLocation.
_IN_TRANSIT = frozenset({"load", "ship", "sell"})


def _celsius(centi: int) -> float:
    # One correctly rounded division: the float's shortest repr is the exact decimal
    # (at most 6 significant digits here), e.g. 260 -> 2.6, never 2.6000000000000001.
    return centi / 100


def _raw_data(ev: Evidence, leg: LegReport, series: LegSeries | None) -> str:
    devices = sorted({m.device for m in leg.monitors} | set(series.seqs if series else ()))
    parts = [f"leg={leg.leg.index}"]
    for d in devices:
        parts.append(f"device={quote(d, safe=':')}")
        seqs = series.seqs.get(d) if series else None
        if seqs:
            parts.append(f"seq={seq_ranges(seqs)}")
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


def _humidity_report(series: LegSeries | None) -> dict[str, Any] | None:
    if series is None or not series.rh:
        return None
    values = [v for v, _ in series.rh]
    mean = mean_centi(series.rh)
    if mean is None:
        return None
    return {
        "type": "RelativeHumidity",
        "minValue": _celsius(min(values)),
        "maxValue": _celsius(max(values)),
        "meanValue": _celsius(mean),
        "uom": "P1",
    }


def _sensor_element(
    ev: Evidence,
    leg: LegReport,
    excursions: list[ExcursionReport],
    series: LegSeries | None,
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
    meta["rawData"] = _raw_data(ev, leg, series)
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
    reports = [summary]
    humidity = _humidity_report(series)
    if humidity is not None:
        reports.append(humidity)
    reports += [_excursion_report(x) for x in excursions]
    return {"sensorMetadata": meta, "sensorReport": reports}


def _action(leg: LegReport) -> str:
    return str(leg.leg.scan_json()["action"])


def _party(ev: Evidence, leg: LegReport, key: str) -> list[dict[str, str]]:
    """A source or destination list: the reader's organisation (when known) and place."""
    out = []
    org = ev.org_of(leg.leg.scan.signer)
    if org is not None:
        out.append({"type": "owning_party", key: org_uri(org)})
    out.append({"type": "location", key: place_uri(leg.leg.payload.place)})
    return out


def _handover(
    ev: Evidence, legs: list[LegReport], k: int
) -> tuple[list[dict[str, str]] | None, list[dict[str, str]] | None]:
    """(sourceList, destinationList) of the ship or receive that opened leg ``k``."""
    action = _action(legs[k])
    if action == "ship":
        for later in legs[k + 1 :]:
            a = _action(later)
            if a in ("unload", "receive"):
                return _party(ev, legs[k], "source"), _party(ev, later, "destination")
            if a != "load":
                break
        return _party(ev, legs[k], "source"), None
    for earlier in reversed(legs[:k]):
        a = _action(earlier)
        if a in ("ship", "load"):
            return _party(ev, earlier, "source"), _party(ev, legs[k], "destination")
        if a != "unload":
            break
    return None, _party(ev, legs[k], "destination")


def _ref_uri(ref: str) -> str:
    return REF_PREFIX + quote(ref, safe=":")


def _scan_member(ev: Evidence, leg: LegReport, uid: str) -> dict[str, Any]:
    return {
        "device": leg.leg.scan.signer,
        "seq": leg.leg.payload.seq,
        "action": _action(leg),
        "uid": uid,
    }


def _primary(
    ev: Evidence, legs: list[LegReport], k: int, item: str | None, uid: str, refs: set[str]
) -> dict[str, Any]:
    leg = legs[k]
    scan = leg.leg.payload
    action = _action(leg)
    proof = ev.proof(leg)
    transaction = action in ("ship", "receive") and scan.ref is not None
    if transaction:
        kind = "TransactionEvent"
        verb = "OBSERVE" if action == "receive" and scan.ref in refs else "ADD"
    else:
        kind = "ObjectEvent"
        verb = "ADD" if action == "commission" else "OBSERVE"
    event: dict[str, Any] = {
        "type": kind,
        "eventID": RECORD_PREFIX + proof.sha256,
        "eventTime": iso_utc(leg.leg.start),
        "eventTimeZoneOffset": "+00:00",
        "epcList": [item_uri(item)] if item else [],
        "action": verb,
        "bizStep": BIZ_STEPS[action],
        "readPoint": {"id": place_uri(scan.place)},
    }
    if action not in _IN_TRANSIT:
        event["bizLocation"] = {"id": place_uri(scan.place)}
    if scan.ref is not None:
        if action == "load":
            event["ct:vehicle"] = place_uri(scan.ref)
        else:
            event["bizTransactionList"] = [{"bizTransaction": _ref_uri(scan.ref)}]
    if action in ("ship", "receive"):
        source, destination = _handover(ev, legs, k)
        if source:
            event["sourceList"] = source
        if destination:
            event["destinationList"] = destination
    event["ct:proof"] = proof.to_json()
    event["ct:scan"] = _scan_member(ev, leg, uid)
    return event


def _aggregation(ev: Evidence, leg: LegReport, item: str | None, uid: str) -> dict[str, Any]:
    scan = leg.leg.payload
    assert scan.parent is not None
    action = _action(leg)
    verb, step = AGGREGATION[action]
    container = ev.tag_item(scan.parent)
    proof = ev.proof(leg)
    event: dict[str, Any] = {
        "type": "AggregationEvent",
        "eventID": RECORD_PREFIX + proof.sha256 + "#aggregation",
        "eventTime": iso_utc(leg.leg.start),
        "eventTimeZoneOffset": "+00:00",
        "parentID": item_uri(container) if container else tag_uri(scan.parent),
        "childEPCs": [item_uri(item)] if item else [],
        "action": verb,
        "bizStep": step,
        "readPoint": {"id": place_uri(scan.place)},
    }
    if action not in _IN_TRANSIT:
        event["bizLocation"] = {"id": place_uri(scan.place)}
    event["ct:parent"] = scan.parent.hex()
    event["ct:proof"] = proof.to_json()
    event["ct:scan"] = _scan_member(ev, leg, uid)
    return event


def _custody_legs(ev: Evidence, uid: bytes) -> list[LegReport]:
    """A provenance verdict (§12.10) has no legs with temperatures: its custody scans,
    as legs without monitors or figures, so the events are the same as for a cold chain."""
    from protocol.custody import custody, date_records
    from protocol.verdict import Figures

    records = ev.records
    return [LegReport(g, [], Figures()) for g in custody(records, date_records(records), uid).legs]


def epcis_document(ev: Evidence, *, created: int | None = None) -> dict[str, Any]:
    """The EPCIS 2.0 document of a verified bundle (module docstring).

    ``created`` (Unix seconds) is the ``creationDate``; default now.
    """
    v = ev.verdict
    doc = ev.document
    subject = doc["subject"] or {}
    item = subject.get("item")
    uid = subject.get("uid") or v.uid.hex()
    # Each excursion is reported once, on the first leg it touches.
    first: dict[int, list[ExcursionReport]] = {}
    for x in v.excursions:
        if x.legs:
            first.setdefault(min(x.legs), []).append(x)
    series = leg_series(ev)
    events = []
    refs: set[str] = set()  # business references of the custody scans so far
    legs = v.legs if v.legs or v.provenance is None else _custody_legs(ev, v.uid)
    for k, leg in enumerate(legs):
        event = _primary(ev, legs, k, item, uid, refs)
        index = leg.leg.index
        element = _sensor_element(ev, leg, first.get(index, []), series.get(index))
        if element is not None:
            # Before the ct: members, after the standard ones.
            ct = {key: event.pop(key) for key in [k2 for k2 in event if k2.startswith("ct:")]}
            event["sensorElementList"] = [element]
            event.update(ct)
        events.append(event)
        if leg.leg.payload.parent is not None:
            events.append(_aggregation(ev, leg, item, uid))
        ref = leg.leg.payload.ref
        if ref is not None and _action(leg) != "load":
            refs.add(ref)
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
