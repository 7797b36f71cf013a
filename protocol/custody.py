"""Dates, the item and its custody (docs/protocol.md §1 "Item", §12.2, §12.3).

Pure functions over records that passed §11 (the verdict's ``V``):

    date_records(records) -> {record bytes: date | None}     # §12.2
    parse_item(item) -> Item(gtin, lot, serial) | None         # §1 "Item"
    custody(records, dates, uid) -> Custody                    # §12.3 steps 1-7
    wrong_role(records, dates) -> {record bytes}               # §12.1 "Roles"

A record's *date* is its ``time`` when its clock was set, or is derived from
the device's next clock-set record, or it is undated. The custody of a tag
is its dated scans from the first commission on, each opening a leg; its
reasons are the contradictions and broken custody links among them. Whether
an unlinked scan is a note or makes the verdict incomplete depends on the
product profile (§12.4), so :class:`Custody` keeps those scans apart
(:meth:`Custody.unlinked_reasons`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from protocol import reasons as why
from protocol.reasons import Reason
from protocol.record import (
    ACTION_COMMISSION,
    ACTION_INSTALL,
    ACTION_LOAD,
    ACTION_RECEIVE,
    ACTION_SELL,
    ACTION_SHIP,
    ACTION_UNLOAD,
    EVENT_CLOCK_SET,
    ROLE_LOGGER,
    ROLE_READER,
    Reading,
    ReadingBlock,
    Record,
    Registration,
    Scan,
    Status,
    chain_hash,
)

__all__ = [
    "ACTION_NAMES",
    "CLOSING",
    "Custody",
    "Item",
    "Leg",
    "by_signer",
    "custody",
    "date_records",
    "dates_of_signers",
    "parse_item",
    "wrong_role",
]

ACTION_NAMES = {
    ACTION_COMMISSION: "commission",
    ACTION_LOAD: "load",
    ACTION_UNLOAD: "unload",
    ACTION_RECEIVE: "receive",
    ACTION_SHIP: "ship",
    ACTION_SELL: "sell",
    ACTION_INSTALL: "install",
}

#: The actions that close an item's life (§2.3): every later scan is a contradiction.
CLOSING = {ACTION_SELL: "after_sale", ACTION_INSTALL: "after_install"}


# --- the item (§1) ------------------------------------------------------------------------

# The lot and serial are RFC 3986 path segments (pchar), percent-decoded, then held to
# 1-20 characters of GS1 AI (10)/(21) (GS1 General Specifications, character set 82).
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+"
_DIGITAL_LINK = re.compile(rf"/01/([0-9]{{14}})(?:/10/({_PCHAR}))?(?:/21/({_PCHAR}))?")
_CSET82 = re.compile(r"""[!"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}""")


@dataclass(frozen=True)
class Item:
    """The GTIN, lot and serial of a GS1 Digital Link path."""

    gtin: str
    lot: str | None
    serial: str | None


def parse_item(item: str) -> Item | None:
    """Parse ``/01/{gtin}[/10/{lot}][/21/{serial}]`` exactly; None for anything else.

    An EPC URI, a full URL, a query string, other AIs, a GTIN that is not 14
    ASCII digits or a lot outside GS1 AI (10)'s characters all give None: the
    item then has no GTIN (§12.4).
    """
    m = _DIGITAL_LINK.fullmatch(item)
    if m is None:
        return None
    parts: list[str | None] = []
    for raw in (m.group(2), m.group(3)):
        if raw is None:
            parts.append(None)
            continue
        try:
            text = unquote_to_bytes(raw).decode("ascii")
        except UnicodeDecodeError:
            return None
        if _CSET82.fullmatch(text) is None:
            return None
        parts.append(text)
    return Item(m.group(1), parts[0], parts[1])


# --- dates (§12.2) --------------------------------------------------------------------------


def by_signer(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Each signer's records in ``seq`` order, one per ``seq``; signers in byte order.

    Verified records never hold two under one ``seq`` (§11 step 11 calls that
    a fork); should they, the one with the lowest bytes is kept, so the result
    is still a function of the set of records.
    """
    unique = {r.raw: r for r in records}
    groups: dict[str, dict[int, Record]] = defaultdict(dict)
    for raw in sorted(unique):
        r = unique[raw]
        groups[r.signer].setdefault(r.payload.seq, r)
    ordered = sorted(groups.items(), key=lambda item: item[0].encode())
    return {signer: [g[seq] for seq in sorted(g)] for signer, g in ordered}


def _dates_of(recs: Sequence[Record], dates: dict[bytes, int | None]) -> None:
    """Date one signer's records (by seq): walk down, carrying the clock-set record C that
    a ``tq`` 0 record just below would be dated from."""
    below: Record | None = None
    above_seq = -1
    for r in reversed(recs):
        p = r.payload
        c = below if p.seq + 1 == above_seq else None
        if p.tq >= 1:
            dates[r.raw] = p.time
            clock_set = isinstance(p, Status) and p.event == EVENT_CLOCK_SET
            below = r if clock_set and getattr(p, "detail", None) is not None else None
        else:
            # a block is dated only if its last reading was taken before the clock set (§12.2)
            end = p.end_time if isinstance(p, ReadingBlock) else p.time
            date = _clock_date(p.boot, end, c)
            first = None if date is None else date - (end - p.time)
            dates[r.raw] = first if first is None or first >= 0 else None
            below = c
        above_seq = p.seq


def _clock_date(boot: int, time: int, c: Record | None) -> int | None:
    """The date of a ``tq`` 0 record of ``boot`` at ``time`` from clock-set record ``c``."""
    cp = c.payload if c is not None else None
    if not isinstance(cp, Status) or cp.detail is None or cp.boot != boot or time > cp.detail:
        return None
    date = time + cp.time - cp.detail
    return date if date >= 0 else None


def date_records(records: Iterable[Record]) -> dict[bytes, int | None]:
    """The date of every record (§12.2), keyed by its bytes; None when undated.

    ``tq`` ≥ 1: its ``time``. ``tq`` = 0: ``time + C.time − C.detail``, with C
    the first clock-set record after it (``event`` 6, ``tq`` ≥ 1, ``detail``
    present, the same ``boot``, every seq in between held by a ``tq`` 0
    record), when ``time`` ≤ ``C.detail`` and the result is not negative.
    """
    records = list(records)
    dates = dates_of_signers(by_signer(records))
    for r in records:
        dates.setdefault(r.raw, None)  # the other record of a fork
    return dates


def dates_of_signers(groups: Mapping[str, Sequence[Record]]) -> dict[bytes, int | None]:
    """:func:`date_records` over records already grouped by :func:`by_signer`."""
    dates: dict[bytes, int | None] = {}
    for recs in groups.values():
        _dates_of(recs, dates)
    return dates


# --- roles (§12.1) -------------------------------------------------------------------------


def wrong_role(records: Iterable[Record], dates: Mapping[bytes, int | None]) -> set[bytes]:
    """The bytes of the scans whose role is not reader and of the readings and reading
    blocks whose role is not logger (§12.1 "Roles"): evidence the verdict does not use.

    A record's role is its signer's registration in force at its date: among the
    registrations in ``records`` of that device, the highest ``seq`` with ``time`` at or
    before the date, else (undated, or dated before them all) the lowest ``seq``. A device
    with no registration among ``records`` (pinned directly) is refused nothing."""
    unique = {r.raw: r for r in records}
    regs: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # device -> (seq, time, role)
    for r in unique.values():
        p = r.payload
        if isinstance(p, Registration):
            regs[p.device].append((p.seq, p.time, p.role))
    for history in regs.values():
        history.sort()
    refused: set[bytes] = set()
    for raw, r in unique.items():
        p = r.payload
        if isinstance(p, Scan):
            want = ROLE_READER
        elif isinstance(p, (Reading, ReadingBlock)):
            want = ROLE_LOGGER
        else:
            continue
        held = regs.get(r.signer)
        if not held:
            continue
        date = dates.get(raw)
        role = held[0][2]
        if date is not None:
            for _, time, in_force in held:
                if time <= date:
                    role = in_force
        if role != want:
            refused.add(raw)
    return refused


# --- custody (§12.3) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Leg:
    """Leg ``index``: opened by custody scan ``scan`` at its date ``start``, ending at the next
    scan's date ``end`` (the last leg ends where it starts), at ``location``."""

    index: int
    scan: Record
    start: int
    end: int
    location: str | None  # a load's ref (None without one), else the scan's place
    vehicle: bool  # opened by a load

    @property
    def payload(self) -> Scan:
        p = self.scan.payload
        if not isinstance(p, Scan):
            raise TypeError("a leg is opened by a scan")
        return p

    def scan_json(self) -> dict[str, Any]:
        """The leg's ``scan`` member (§13.1)."""
        p = self.payload
        return {
            "device": self.scan.signer,
            "seq": p.seq,
            "action": ACTION_NAMES[p.action],
            "place": p.place,
            "ref": p.ref,
        }


@dataclass
class Custody:
    """The commission, the custody scans in order, their legs and the custody reasons.

    ``unlinked`` holds the legs whose scan (after the commission) carries no
    custody link; they are not in ``reasons``: see :meth:`unlinked_reasons`.
    """

    commission: Record | None
    scans: list[Record]
    legs: list[Leg]
    reasons: list[Reason]
    unlinked: list[Leg] = field(default_factory=list)
    #: the bytes of every record of the wrong role (§12.1), scans and readings of any tag
    refused: set[bytes] = field(default_factory=set)

    def unlinked_reasons(self, links: bool) -> list[Reason]:
        """``custody_unlinked``: incomplete for each such scan when the profile sets
        ``links``, else one note, for the first."""
        legs = self.unlinked if links else self.unlinked[:1]
        return [
            why.custody_link(
                "custody_unlinked", g.scan.signer, g.payload.seq, g.start, note=not links
            )
            for g in legs
        ]


def custody(records: Sequence[Record], dates: Mapping[bytes, int | None], uid: bytes) -> Custody:
    """§12.3 steps 1-7 for the tag ``uid``: the scans of it among ``records``, dated by
    ``dates`` (:func:`date_records`); the registrations among ``records`` give the
    scans' roles (§12.1), and a scan not signed as a reader is dropped (``wrong_role``);
    records of other kinds or tags are ignored."""
    reasons: list[Reason] = []
    dated: list[tuple[int, bytes, int, Record]] = []
    refused = wrong_role(records, dates)
    mine = {r.raw: r for r in records if isinstance(r.payload, Scan) and r.payload.uid == uid}
    for raw in sorted(mine):
        r = mine[raw]
        date = dates.get(raw)
        if raw in refused:
            reasons.append(why.wrong_role_scan(r.signer, r.payload.seq, date))
        elif date is None:
            reasons.append(why.undated_scan(r.signer, r.payload.seq))
        else:
            dated.append((date, r.signer.encode(), r.payload.seq, r))
    dated.sort(key=lambda e: e[:3])
    first = next((i for i, e in enumerate(dated) if _action(e[3]) == ACTION_COMMISSION), None)
    if first is None:
        reasons.append(why.no_commission(uid))
        reasons.sort(key=Reason.sort_key)
        return Custody(None, [], [], reasons, refused=refused)
    for date, _, seq, r in dated[:first]:
        reasons.append(why.custody_conflict(r.signer, seq, date, "before_commission"))
    kept = dated[first:]
    legs = []
    for k, (date, _, _, r) in enumerate(kept):
        load = _action(r) == ACTION_LOAD
        p = r.payload
        assert isinstance(p, Scan)
        end = kept[k + 1][0] if k + 1 < len(kept) else date
        legs.append(Leg(k, r, date, end, p.ref if load else p.place, load))
    result = Custody(kept[0][3], [e[3] for e in kept], legs, reasons, refused=refused)
    _links(result)
    _contradictions(result)
    if not any(g.end > g.start for g in legs):
        reasons.append(why.no_custody())
    reasons.sort(key=Reason.sort_key)
    return result


def _action(r: Record) -> int:
    p = r.payload
    return p.action if isinstance(p, Scan) else 0


def _links(c: Custody) -> None:
    """Step 4: each scan's ``link`` against the custody scans before it."""
    earlier: set[bytes] = set()
    for before, leg in zip(c.legs, c.legs[1:], strict=False):
        want = chain_hash(before.scan.raw)
        link = leg.payload.link
        code = None
        if link is None:
            c.unlinked.append(leg)
        elif link in earlier:
            code = "custody_branch"
        elif link != want:
            code = "custody_gap"
        if code is not None:
            c.reasons.append(why.custody_link(code, leg.scan.signer, leg.payload.seq, leg.start))
        earlier.add(want)


def _contradictions(c: Custody) -> None:
    """Step 6: walk the scans with a state, at a place or loaded; each scan may break
    more than one rule (a load after a sale while loaded). The first ``sell`` or
    ``install`` closes the item's life: every later scan comes after it."""
    loaded = False
    closed: str | None = None  # after_sale | after_install, once closed
    for leg in c.legs[1:]:
        action = leg.payload.action
        found = []
        if closed is not None:
            found.append(closed)
        if action == ACTION_COMMISSION:
            found.append("recommissioned")
        elif action == ACTION_LOAD and loaded:
            found.append("load_while_loaded")
        elif action == ACTION_UNLOAD and not loaded:
            found.append("unload_not_loaded")
        elif action in (ACTION_RECEIVE, ACTION_SHIP, ACTION_SELL, ACTION_INSTALL) and loaded:
            found.append("place_while_loaded")
        for detail in found:
            c.reasons.append(
                why.custody_conflict(leg.scan.signer, leg.payload.seq, leg.start, detail)
            )
        loaded = action == ACTION_LOAD
        if closed is None:
            closed = CLOSING.get(action)
