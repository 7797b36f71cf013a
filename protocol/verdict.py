"""The verdict: PASS, FAIL or INCOMPLETE over verified records (docs/protocol.md §12, §13.1).

Pure functions over records that already passed §11: nothing here checks a
signature, a proof or a chain link, and nothing raises on odd evidence (odd
evidence is a reason). Integers everywhere except the mean kinetic
temperature (protocol/analytics.py, §12.8). The result depends only on the
set of records (not their order or repeats) and on the trust scopes.

The building blocks live with their sections and are re-exported here (the
gateway builds trace bundles with them)::

    date_records(records) -> {record bytes: date | None}             # §12.2  custody.py
    parse_item(item) -> Item(gtin, lot, serial) | None                 # §1     custody.py
    custody(records, dates, uid) -> Custody                            # §12.3  custody.py
    chain_state(statements, a, b) -> ChainState(pieces, shown_until)   # §12.5  chainstate.py
    DeviceRecords(records, dates): missing, losses_in, readings        # §12.6  completeness.py
    Reason, fmt_time, fmt_centi, fmt_duration                          # §12.9  reasons.py

    judge(records, trust, uid, tag) -> Verdict                         # all of §12
    Verdict.to_json() -> {verdict, reasons, subject, profile, legs, excursions, totals}

A product without a profile (§12.10: no profile statement of its GTIN at all)
gets the provenance verdict of :mod:`protocol.provenance` instead: GENUINE,
SUSPECT or UNCONFIRMED, and the document's ``provenance`` member.

``trust`` needs only ``place_authority(place)`` and ``gtin_authority(gtin)``
(§10 scopes), each giving a registry id or None (:class:`Authorities`).

Cost is O(n log n) in the number of records: records are grouped by signer
once, statement chains are indexed once, readings are clipped to monitoring
intervals by bisection, and §12.7's cut into elementary intervals is one
sweep over the sorted segment end points with two lazy heaps.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from protocol import provenance as provenance_mod
from protocol import reasons as why
from protocol.analytics import HIGH, LOW, Excursion, mean_centi, mkt_centi
from protocol.chainstate import ChainState, StatementChain, chain_state
from protocol.completeness import DeviceRecords, Interval, subtract, union
from protocol.custody import (
    Custody,
    Item,
    Leg,
    by_signer,
    custody,
    date_records,
    dates_of_signers,
    parse_item,
)
from protocol.reasons import FAIL, INCOMPLETE, PASS, Reason, verdict_of
from protocol.record import Binding, ProductProfile, Reading, ReadingBlock, Record, Scan

__all__ = [
    "DEFAULT_GAP",
    "FAIL",
    "INCOMPLETE",
    "PASS",
    "Authorities",
    "ChainState",
    "Custody",
    "DeviceRecords",
    "ExcursionReport",
    "Figures",
    "Item",
    "Leg",
    "LegReport",
    "Monitor",
    "Reason",
    "Verdict",
    "chain_state",
    "custody",
    "date_records",
    "judge",
    "parse_item",
    "profile_document",
]

#: How long a reading may stand for without a profile (§12.6 step 3), s.
DEFAULT_GAP = 3600


class Authorities(Protocol):
    """What the verdict needs of a trust file (§10): who speaks for a place or a GTIN."""

    def place_authority(self, place: str) -> str | None: ...

    def gtin_authority(self, gtin: str) -> str | None: ...


# --- the verdict document (§13.1) ---------------------------------------------------------------


@dataclass(frozen=True)
class Monitor:
    """A monitoring interval (§12.6 step 1): ``device`` bound over [start, end) in a leg."""

    device: str
    start: int
    end: int


@dataclass(frozen=True)
class Figures:
    """Statistics over segments (§12.7): a leg's, or the totals. 0.01 °C, seconds."""

    readings: int = 0
    covered: int = 0
    min: int | None = None
    max: int | None = None
    mean: int | None = None
    mkt: int | None = None
    tor: int | None = None  # None without a profile
    tq_min: int | None = None


@dataclass(frozen=True)
class LegReport:
    leg: Leg
    monitors: list[Monitor]
    figures: Figures

    def to_json(self) -> dict[str, Any]:
        g, f = self.leg, self.figures
        return {
            "index": g.index,
            "location": g.location,
            "vehicle": g.vehicle,
            "from": g.start,
            "to": g.end,
            "scan": g.scan_json(),
            "monitors": [{"device": m.device, "from": m.start, "to": m.end} for m in self.monitors],
            "readings": f.readings,
            "covered": f.covered,
            "min": f.min,
            "max": f.max,
            "mean": f.mean,
            "mkt": f.mkt,
            "tor": f.tor,
            "tq_min": f.tq_min,
        }


@dataclass(frozen=True)
class ExcursionReport:
    side: str  # "high" | "low"
    start: int
    end: int
    peak: int
    degree_minutes: int
    devices: list[str]
    legs: list[int]
    alarm: bool  # duration >= the profile's delay

    @property
    def duration(self) -> int:
        return self.end - self.start

    def to_json(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "from": self.start,
            "to": self.end,
            "duration": self.duration,
            "peak": self.peak,
            "degree_minutes": self.degree_minutes,
            "devices": self.devices,
            "legs": self.legs,
            "alarm": self.alarm,
        }


def profile_document(signer: str, p: ProductProfile) -> dict[str, Any]:
    """A profile statement as the verdict document shows it (§13.1)."""
    return {
        "signer": signer,
        "gtin": p.gtin,
        "lot": p.lot,
        "name": p.name,
        "low": p.low,
        "high": p.high,
        "delay": p.delay,
        "cumul": p.cumul,
        "mkt": p.mkt,
        "gap": p.gap,
        "lots": p.lots == 1,
        "links": p.links == 1,
        "cseq": p.cseq,
        "time": p.time,
    }


@dataclass
class Verdict:
    """The verdict over a bundle's verified records (§12) and its document (§13.1)."""

    verdict: str  # PASS | FAIL | INCOMPLETE
    reasons: list[Reason]
    uid: bytes
    commission: Record | None = None
    item: Item | None = None
    profile: Record | None = None
    legs: list[LegReport] = field(default_factory=list)
    excursions: list[ExcursionReport] = field(default_factory=list)
    totals: Figures | None = None  # None without a commission
    provenance: provenance_mod.Provenance | None = None  # §12.10: products without a profile
    commission_date: int | None = None  # the commission's date (§12.3), when there is one

    @property
    def commissioned(self) -> int | None:
        return self.legs[0].leg.start if self.legs else self.commission_date

    def subject_json(self) -> dict[str, Any]:
        c = self.commission.payload if self.commission is not None else None
        scan = c if isinstance(c, Scan) else None
        return {
            "uid": self.uid.hex(),
            "item": scan.item if scan else None,
            "gtin": self.item.gtin if self.item else None,
            "lot": self.item.lot if self.item else None,
            "serial": self.item.serial if self.item else None,
            "commissioned": self.commissioned,
            "place": scan.place if scan else None,
            "reader": self.commission.signer if self.commission is not None else None,
        }

    def profile_json(self) -> dict[str, Any] | None:
        p = self.profile.payload if self.profile is not None else None
        if self.profile is None or not isinstance(p, ProductProfile):
            return None
        return profile_document(self.profile.signer, p)

    def totals_json(self) -> dict[str, Any] | None:
        t = self.totals
        if t is None or not self.legs:
            return None
        return {
            "from": self.legs[0].leg.start,
            "to": self.legs[-1].leg.start,
            "readings": t.readings,
            "covered": t.covered,
            "min": t.min,
            "max": t.max,
            "mean": t.mean,
            "mkt": t.mkt,
            "tor": t.tor,
        }

    def to_json(self) -> dict[str, Any]:
        """The members of §13.1 that the verdict owns (the verifier adds ``verified``);
        ``provenance`` only for a provenance verdict (§12.10)."""
        doc = {
            "verdict": self.verdict,
            "reasons": [r.to_json() for r in self.reasons],
            "subject": self.subject_json(),
            "profile": self.profile_json(),
            "legs": [g.to_json() for g in self.legs],
            "excursions": [e.to_json() for e in self.excursions],
            "totals": self.totals_json(),
        }
        if self.provenance is not None:
            doc["provenance"] = self.provenance.to_json()
        return doc


def judge(
    records: Sequence[Record], trust: Authorities, uid: bytes, tag: str = "unknown"
) -> Verdict:
    """All of §12 over the verified records ``records`` for the tag ``uid``.

    ``tag`` is the tag's authentication at the tap (§12.10: ``genuine``,
    ``replayed``, ``unauthenticated`` or ``unknown``); only the provenance
    verdict uses it."""
    if tag not in provenance_mod.TAG_VALUES:
        raise ValueError(f"tag must be one of {', '.join(provenance_mod.TAG_VALUES)}")
    return _Judge(records, trust, uid, tag).run()


# --- §12.4-§12.7 ---------------------------------------------------------------------------------

# A segment (§12.6 step 3): (from, device, channel, to, temp, leg, reading seq, tq, reading
# index). Tuples sort in §12.8's order (from, device, channel, to); (device, seq, index) names
# the reading (index: its place in a reading block, 0 for a kind-1 reading).
_Segment = tuple[int, str, int, int, int, int, int, int, int]
_ChainKey = tuple[str, str, str, str]


class _Judge:
    def __init__(
        self, records: Sequence[Record], trust: Authorities, uid: bytes, tag: str = "unknown"
    ) -> None:
        self.trust = trust
        self.uid = uid
        self.tag = tag
        self.signers = by_signer(records)
        self.records = [r for recs in self.signers.values() for r in recs]
        self.dates = dates_of_signers(self.signers)
        self.reasons: list[Reason] = []
        self.statements: dict[_ChainKey, list[Record]] = defaultdict(list)
        for r in self.records:
            p = r.payload
            if isinstance(p, Binding):
                self.statements[("binding", r.signer, p.target, "")].append(r)
            elif isinstance(p, ProductProfile):
                self.statements[("profile", r.signer, p.gtin, p.lot or "")].append(r)
        self.indexed: dict[_ChainKey, StatementChain] = {}
        self.profile: ProductProfile | None = None
        self.refused: set[bytes] = set()  # records of the wrong role (§12.1)

    def chain(self, key: _ChainKey) -> StatementChain:
        """The statement chain (kind, signer, target or gtin, lot or ""), indexed once."""
        if key not in self.indexed:
            self.indexed[key] = StatementChain(self.statements.get(key, []))
        return self.indexed[key]

    def run(self) -> Verdict:
        cust = custody(self.records, self.dates, self.uid)
        self.refused = cust.refused
        self.reasons.extend(cust.reasons)
        verdict = Verdict(INCOMPLETE, [], self.uid)
        if cust.commission is not None:
            commission = cust.commission.payload
            assert isinstance(commission, Scan) and commission.item is not None
            verdict.commission = cust.commission
            verdict.commission_date = cust.legs[0].start
            verdict.item = parse_item(commission.item)
            item = verdict.item
            brand = self.trust.gtin_authority(item.gtin) if item is not None else None
            if (
                item is not None
                and brand is not None
                and provenance_mod.applies(self.records, item, brand)
            ):
                verdict.verdict, verdict.reasons, verdict.provenance = (
                    provenance_mod.judge_provenance(
                        self.records, self.dates, cust, item, brand, self.uid, self.tag
                    )
                )
                return verdict
            verdict.profile = self.select_profile(verdict.item, cust.legs[0].start)
            if verdict.profile is not None:
                assert isinstance(verdict.profile.payload, ProductProfile)
                self.profile = verdict.profile.payload
            links = self.profile is not None and self.profile.links == 1
            self.reasons.extend(cust.unlinked_reasons(links))
            monitors = [self.monitor(leg) for leg in cust.legs]
            segments = self.segments(cust.legs, monitors)
            verdict.legs, verdict.excursions, verdict.totals = self.temperature(
                cust.legs, monitors, segments
            )
        self.reasons.sort(key=Reason.sort_key)
        verdict.reasons = self.reasons
        verdict.verdict = verdict_of(self.reasons)
        return verdict

    # §12.4 ----------------------------------------------------------------------------------------
    def select_profile(self, item: Item | None, c: int) -> Record | None:
        if item is None:
            self.reasons.append(why.no_profile("no_gtin"))
            return None
        gtin = item.gtin
        authority = self.trust.gtin_authority(gtin)
        if authority is None:
            self.reasons.append(why.no_profile("no_authority", gtin))
            return None
        lot_key = ("profile", authority, gtin, item.lot or "")
        lot_chain = item.lot is not None and lot_key in self.statements
        key = lot_key if lot_chain else ("profile", authority, gtin, "")
        state = self.chain(key).state(c, c + 1)
        statement = state.pieces[0][0] if state.pieces else None
        p = statement.payload if statement is not None else None
        if state.shown_until <= c:
            self.reasons.append(why.no_profile("unproven", gtin))
        elif statement is None or not isinstance(p, ProductProfile):
            self.reasons.append(why.no_profile("none_in_force", gtin))
        elif not lot_chain and p.lots == 1:
            self.reasons.append(why.no_profile("lot_required", gtin, item.lot))
        else:
            return statement
        return None

    # §12.6 step 1 ---------------------------------------------------------------------------------
    def monitor(self, leg: Leg) -> list[Monitor]:
        a, b, where, k = leg.start, leg.end, leg.location, leg.index
        if b <= a:
            return []
        if where is None:
            self.reasons.append(why.unmonitored(k, a, b, "no_location", None))
            return []
        authority = self.trust.place_authority(where)
        if authority is None:
            self.reasons.append(why.unmonitored(k, a, b, "no_authority", where))
            return []
        state = self.chain(("binding", authority, where, "")).state(a, b)
        if state.shown_until < b:
            self.reasons.append(why.binding_unproven(k, state.shown_until, b, where))
        opened: dict[str, int] = {}  # device -> start of its current monitoring interval
        monitors: list[Monitor] = []
        idle: list[Interval] = []  # pieces without devices
        for statement, s, e in state.pieces:
            p = statement.payload if statement is not None else None
            devices = p.device_list if isinstance(p, Binding) else ()
            if not devices:
                idle.append((s, e))
            for d in [d for d in opened if d not in devices]:
                monitors.append(Monitor(d, opened.pop(d), s))
            for d in devices:
                opened.setdefault(d, s)
        for s, e in union(idle):  # adjacent pieces without devices are one span
            self.reasons.append(why.unmonitored(k, s, e, "no_devices", where))
        end = state.shown_until
        monitors.extend(Monitor(d, s, end) for d, s in opened.items())
        monitors.sort(key=lambda m: (m.device.encode(), m.start))
        return monitors

    # §12.6 steps 2-4 ------------------------------------------------------------------------------
    def segments(self, legs: list[Leg], monitors: list[list[Monitor]]) -> list[_Segment]:
        bound: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for leg, ms in zip(legs, monitors, strict=True):
            for m in ms:
                bound[m.device].append((m.start, m.end, leg.index))
        gap = self.profile.gap if self.profile is not None else DEFAULT_GAP
        segments: list[_Segment] = []
        for device in sorted(bound, key=str.encode):
            dev = DeviceRecords(self.signers.get(device, []), self.dates, self.refused)
            intervals = sorted(bound[device])  # disjoint: legs do not overlap
            noted: set[tuple[int, int]] = set()
            for x, y, k in intervals:
                for s, e in dev.missing(x, y):
                    self.reasons.append(why.records_missing(k, device, s, e))
                for loss in dev.losses_in(x, y):
                    if (k, loss.first) not in noted:
                        noted.add((k, loss.first))
                        self.reasons.append(
                            why.lost(k, device, loss.start, loss.end, loss.first, loss.last)
                        )
            ends = [y for _, y, _ in intervals]
            for held in dev.readings(gap):
                i = bisect_right(ends, held.start)
                while i < len(intervals) and intervals[i][0] < held.end:
                    x, y, k = intervals[i]
                    s, e = max(x, held.start), min(y, held.end)
                    if s < e:
                        segments.append(
                            (
                                s, device, held.channel, e, held.temp, k, held.seq, held.tq,
                                held.index,
                            )
                        )  # fmt: skip
                    i += 1
            self.clock_notes(device, dev)
        segments.sort()
        by_leg: dict[int, list[Interval]] = defaultdict(list)
        for seg in segments:
            by_leg[seg[5]].append((seg[0], seg[3]))
        for leg, ms in zip(legs, monitors, strict=True):
            covered = union(by_leg.get(leg.index, []))
            for x, y in union((m.start, m.end) for m in ms):
                for s, e in subtract(x, y, covered):
                    self.reasons.append(why.no_readings(leg.index, s, e))
        return segments

    def clock_notes(self, device: str, dev: DeviceRecords) -> None:
        """§12.2: how many of the device's readings were dated from a clock set, or not at all;
        §12.1: how many are not a logger's."""
        clock = undated = wrong = 0
        for r in dev.records:
            p = r.payload
            if not isinstance(p, (Reading, ReadingBlock)):
                continue
            n = len(p.temps) // 2 if isinstance(p, ReadingBlock) else 1  # a block: N readings
            if r.raw in self.refused:
                wrong += n
            elif p.tq == 0:
                if self.dates.get(r.raw) is None:
                    undated += n
                else:
                    clock += n
        if clock:
            self.reasons.append(why.clock_dated(device, clock))
        if undated:
            self.reasons.append(why.undated(device, undated))
        if wrong:
            self.reasons.append(why.wrong_role_readings(device, wrong))
        for o in dev.overlaps():
            self.reasons.append(why.block_overlap(device, o.seq, o.start, o.end))

    # §12.7 ----------------------------------------------------------------------------------------
    def temperature(
        self, legs: list[Leg], monitors: list[list[Monitor]], segments: list[_Segment]
    ) -> tuple[list[LegReport], list[ExcursionReport], Figures]:
        prof = self.profile
        limits = {HIGH: prof.high, LOW: prof.low} if prof is not None else {}
        sweep = _Sweep(legs, limits, segments)
        excursions = self.excursions(sweep.found, segments)
        by_leg: dict[int, list[_Segment]] = defaultdict(list)
        for seg in segments:
            by_leg[seg[5]].append(seg)
        reports = []
        for leg, ms in zip(legs, monitors, strict=True):
            figures = _figures(by_leg.get(leg.index, []), sweep.covered[leg.index])
            if prof is not None:
                figures = replace(figures, tor=sweep.tor[leg.index])
            reports.append(LegReport(leg, ms, figures))
        totals = _figures(segments, sum(sweep.covered))
        if prof is not None:
            tor = sum(sweep.tor)
            totals = replace(totals, tor=tor)
            if prof.cumul is not None and tor >= prof.cumul:
                self.reasons.append(why.cumulative(tor, prof.cumul))
            if prof.mkt is not None and totals.mkt is not None and totals.mkt > prof.mkt:
                self.reasons.append(why.mkt(totals.mkt, prof.mkt))
        return reports, excursions, totals

    def excursions(
        self, found: dict[str, list[tuple[Excursion, set[int]]]], segments: list[_Segment]
    ) -> list[ExcursionReport]:
        prof = self.profile
        out: list[ExcursionReport] = []
        if prof is None:
            return out
        for side, items in found.items():
            spans = [(e.start or 0, e.end or 0) for e, _ in items]  # set by extend
            devices: list[set[str]] = [set() for _ in items]
            for seg in segments:  # the devices with a segment out of range in each
                if items and items[0][0].beyond(seg[4]):
                    j = max(bisect_right(spans, (seg[0], seg[0])) - 1, 0)
                    while j < len(spans) and spans[j][0] < seg[3]:
                        if spans[j][1] > seg[0]:
                            devices[j].add(seg[1])
                        j += 1
            for (exc, legs), devs in zip(items, devices, strict=True):
                start, end, peak = exc.start or 0, exc.end or 0, exc.peak or 0
                alarm = end - start >= prof.delay
                report = ExcursionReport(
                    side, start, end, peak, exc.degree_minutes, sorted(devs, key=str.encode),
                    sorted(legs), alarm,
                )  # fmt: skip
                out.append(report)
                self.reasons.append(why.excursion(side, start, end, peak, prof.delay))
        out.sort(key=lambda e: (e.start, e.side != HIGH))
        return out


class _Sweep:
    """§12.7's cut: the trace at every segment end point, one pass over the sorted end points.

    ``covered`` and ``tor`` per leg; ``found`` per side, the excursions in time order with the
    legs each touches. The active temperatures are a multiset kept as counts plus a max-heap
    and a min-heap with lazy deletion.
    """

    def __init__(
        self, legs: list[Leg], limits: dict[str, int | None], segments: list[_Segment]
    ) -> None:
        self.covered = [0] * len(legs)
        self.tor = [0] * len(legs)
        self.found: dict[str, list[tuple[Excursion, set[int]]]] = {HIGH: [], LOW: []}
        current: dict[str, tuple[Excursion, set[int]] | None] = {HIGH: None, LOW: None}
        events = sorted([(s[0], 1, s[4]) for s in segments] + [(s[3], -1, s[4]) for s in segments])
        starts = [g.start for g in legs]
        count: dict[int, int] = defaultdict(int)
        highs: list[int] = []  # negated temperatures
        lows: list[int] = []
        active = i = 0
        while i < len(events):
            u = events[i][0]
            while i < len(events) and events[i][0] == u:
                _, step, temp = events[i]
                if step > 0 and count[temp] == 0:
                    heapq.heappush(highs, -temp)
                    heapq.heappush(lows, temp)
                count[temp] += step
                active += step
                i += 1
            if i == len(events) or active == 0:
                continue
            v = events[i][0]
            while count[-highs[0]] == 0:
                heapq.heappop(highs)
            while count[lows[0]] == 0:
                heapq.heappop(lows)
            value = {HIGH: -highs[0], LOW: lows[0]}
            k = bisect_right(starts, u) - 1  # legs do not overlap: [u, v) lies in one
            self.covered[k] += v - u
            out = False
            for side in (HIGH, LOW):
                limit = limits.get(side)
                if limit is None or not Excursion(side, limit).beyond(value[side]):
                    current[side] = None
                    continue
                out = True
                cur = current[side]
                if cur is None or cur[0].end != u:
                    cur = current[side] = (Excursion(side, limit), set())
                    self.found[side].append(cur)
                cur[0].extend(u, v, value[side])
                cur[1].add(k)
            if out:
                self.tor[k] += v - u


def _figures(segments: Sequence[_Segment], covered: int) -> Figures:
    """A leg's or the totals' figures over segments in §12.8's order (``tor`` left to the
    caller)."""
    if not segments:
        return Figures(covered=covered)
    samples = [(s[4], s[3] - s[0]) for s in segments]
    temps = [s[4] for s in segments]
    return Figures(
        readings=len({(s[1], s[6], s[8]) for s in segments}),
        covered=covered,
        min=min(temps),
        max=max(temps),
        mean=mean_centi(samples),
        mkt=mkt_centi(samples),
        tq_min=min(s[7] for s in segments),
    )
