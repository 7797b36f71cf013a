"""The provenance verdict: GENUINE, SUSPECT or UNCONFIRMED (docs/protocol.md §12.10).

A product without a temperature profile - a spare part, not food - is judged
on where it came from instead of how it was kept: its tag must authenticate,
its custody must start at the brand owner's commissioning, and no evidence may
show a second item with its identity (the same serial on another tag, a scan
after the item was sold or installed, one tag in two places at once).

Pure functions over the records that passed §11, like :mod:`protocol.verdict`
(which calls :func:`judge_provenance` when §12.10's condition holds)::

    applies(records, item, brand) -> bool
    judge_provenance(records, dates, custody, item, brand, uid, tag)
        -> (verdict, reasons, Provenance)

Tag authentication is not in a bundle: the NTAG 424 DNA SUN message is
checked where the tag is tapped (the cloud). ``tag`` is that result:
``genuine``, ``replayed``, ``unauthenticated``, or ``unknown`` when nobody
checked (an offline verification of a bundle): UNCONFIRMED at best
(docs/decisions.md D24).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from protocol import reasons as why
from protocol.custody import ACTION_NAMES, CLOSING, Custody, Item, Leg, parse_item
from protocol.reasons import SEV_SUSPECT, SEV_UNCONFIRMED, Reason, provenance_of
from protocol.record import ACTION_COMMISSION, ProductProfile, Record, Registration, Scan

__all__ = [
    "TAG_VALUES",
    "TWO_PLACES_WINDOW",
    "Provenance",
    "applies",
    "judge_provenance",
]

#: The values of the ``tag`` input (§12.10).
TAG_VALUES = ("genuine", "replayed", "unauthenticated", "unknown")

#: Two scans of one tag at different places at most this many seconds apart: ``two_places``.
TWO_PLACES_WINDOW = 10

# §12.3's custody reasons, as the provenance verdict weighs them.
_CONFLICT_SEVERITY = {
    "before_commission": SEV_SUSPECT,
    "recommissioned": SEV_SUSPECT,
    "load_while_loaded": SEV_SUSPECT,
    "unload_not_loaded": SEV_UNCONFIRMED,
    "place_while_loaded": SEV_SUSPECT,
    "after_sale": SEV_SUSPECT,
    "after_install": SEV_SUSPECT,
}
_CUSTODY_SEVERITY = {
    "undated_scan": SEV_UNCONFIRMED,
    "wrong_role": SEV_UNCONFIRMED,
    "custody_gap": SEV_UNCONFIRMED,
    "custody_branch": SEV_UNCONFIRMED,
}


def applies(records: Sequence[Record], item: Item | None, brand: str | None) -> bool:
    """§12.10's condition: the item has a GTIN, the GTIN has an authority (the brand
    owner), and no verified record is a product profile of that GTIN."""
    if item is None or brand is None:
        return False
    return not any(
        isinstance(r.payload, ProductProfile) and r.payload.gtin == item.gtin for r in records
    )


@dataclass(frozen=True)
class Provenance:
    """The ``provenance`` member of the verdict document (§13.1)."""

    tag: str
    brand: str
    custody: list[dict[str, Any]]
    closed: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "brand": self.brand,
            "custody": self.custody,
            "closed": self.closed,
        }


def _registrars(records: Sequence[Record]) -> dict[str, tuple[str, str]]:
    """device id -> (registry, org): the registry that registered it in ``records`` (the
    lowest id in byte order should there be several) and the ``org`` of that registry's
    registration of it with the highest ``seq``."""
    best: dict[str, tuple[bytes, int, str, str]] = {}
    for r in records:
        p = r.payload
        if not isinstance(p, Registration):
            continue
        key = (r.signer.encode(), -p.seq)
        have = best.get(p.device)
        if have is None or key < (have[0], have[1]):
            best[p.device] = (key[0], key[1], r.signer, p.org)
    return {d: (v[2], v[3]) for d, v in best.items()}


def _entry(leg: Leg, registrars: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    p = leg.payload
    registry, org = registrars.get(leg.scan.signer, (None, None))
    return {
        "index": leg.index,
        "device": leg.scan.signer,
        "seq": p.seq,
        "action": ACTION_NAMES[p.action],
        "place": p.place,
        "ref": p.ref,
        "at": leg.start,
        "registry": registry,
        "org": org,
    }


def judge_provenance(
    records: Sequence[Record],
    dates: Mapping[bytes, int | None],
    cust: Custody,
    item: Item,
    brand: str,
    uid: bytes,
    tag: str,
) -> tuple[str, list[Reason], Provenance]:
    """§12.10 over the verified records, given the custody of §12.3 (with a commission),
    the item, its GTIN's authority ``brand`` and the tag's authentication ``tag``."""
    if tag not in TAG_VALUES:
        raise ValueError(f"tag must be one of {', '.join(TAG_VALUES)}, not {tag!r}")
    if cust.commission is None:
        raise ValueError("the provenance verdict needs a commission")
    reasons: list[Reason] = [why.provenance_only(item.gtin)]
    t = why.tag_reason(uid, tag)
    if t is not None:
        reasons.append(t)
    # §12.3's reasons, weighed for provenance; no_custody is no reason here.
    for r in cust.reasons:
        if r.code == "custody_conflict" and r.detail is not None:
            reasons.append(replace(r, severity=_CONFLICT_SEVERITY[r.detail]))
        elif r.code in _CUSTODY_SEVERITY:
            reasons.append(replace(r, severity=_CUSTODY_SEVERITY[r.code]))
    reasons.extend(cust.unlinked_reasons(False))
    registrars = _registrars(records)
    # The origin: the commission's reader is registered by the brand owner (any of its
    # registrations in V, whatever the registry shown in the custody list).
    first = cust.legs[0]
    brand_registered = any(
        isinstance(r.payload, Registration)
        and r.payload.device == first.scan.signer
        and r.signer == brand
        for r in records
    )
    if not brand_registered:
        reasons.append(
            why.foreign_commission(
                first.scan.signer, first.payload.seq, first.start, brand, item.gtin
            )
        )
    # The same GTIN and serial commissioned on another tag.
    if item.serial is not None:
        for rec in records:
            p = rec.payload
            if not isinstance(p, Scan) or p.action != ACTION_COMMISSION or p.uid == uid:
                continue
            if rec.raw in cust.refused:  # not signed as a reader (§12.1)
                continue
            other = parse_item(p.item) if p.item is not None else None
            date = dates.get(rec.raw)
            if other is None or date is None:
                continue
            if (other.gtin, other.serial) == (item.gtin, item.serial):
                reasons.append(
                    why.duplicate_serial(rec.signer, p.seq, date, p.uid, item.gtin, item.serial)
                )
    # One tag in two places at once.
    legs = cust.legs
    for j, later in enumerate(legs):
        i = j - 1
        while i >= 0 and later.start - legs[i].start <= TWO_PLACES_WINDOW:
            earlier = legs[i]
            if earlier.payload.place != later.payload.place:
                reasons.append(
                    why.two_places(
                        later.scan.signer, later.payload.seq, earlier.start, later.start,
                        earlier.payload.place,
                    )
                )  # fmt: skip
            i -= 1
    reasons.sort(key=Reason.sort_key)
    closed = next((g for g in legs if g.payload.action in CLOSING), None)
    closed_doc = None
    if closed is not None:
        closed_doc = {
            "index": closed.index,
            "action": ACTION_NAMES[closed.payload.action],
            "device": closed.scan.signer,
            "seq": closed.payload.seq,
            "place": closed.payload.place,
            "at": closed.start,
        }
    doc = Provenance(tag, brand, [_entry(g, registrars) for g in legs], closed_doc)
    return provenance_of(reasons), reasons, doc
