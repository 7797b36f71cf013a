"""One item's trace: exactly the records an honest bundle holds (docs/protocol.md §9, §12).

The choosing logic of a trace bundle, once, over an abstract :class:`Source`
of logged records: the gateway's ``trace`` command answers from its own log
(gateway/trace.py, as of one anchored checkpoint), a cloud service from
several organisations' logs (each below its latest verified checkpoint).
Records are identified by (log origin, index), never by one leaf number.
A source answers only from what it can prove: which prefix of which log
counts is its business, not the planner's.

From the source, :func:`plan` chooses:

1. **the custody**: the tag's scans, dated (``protocol.verdict.date_records``)
   and put in order by ``protocol.verdict.custody`` - the verifier's own code,
   so the planner and the verdict agree on the legs;
2. **for each leg** with a duration and a location that has an authority
   (:class:`Authorities`, the §10 places scopes): the run of the authority's
   binding chain for the location that spans the leg (§12.5: from the last
   statement in force at its start to the first at or after its end), and
   from it each device's monitoring intervals;
3. **the profile**: the run of the lot's profile chain (or, without one, the
   GTIN's) that spans [c, c + 1) for the commission date c, signed by the
   GTIN's authority (§10, §12.4);
4. **for each monitoring device**: its records from the last reading dated at
   or before its monitoring start to the first record dated at or after its
   end, every seq in between, and each status record that declares a loss
   there (:func:`seq_bounds`: a clock set back or forward makes dates go
   back within a device's seqs, so "last" and "first" are taken around the
   records dated inside the interval, never past one of them); a
   record whose clock was not set pulls in the records up to the next set
   clock, so the verifier can date it as the planner did (§12.2);
5. **the registrations** of every device in the bundle, all of them.

A run that does not reach its interval's end is *open* (:attr:`Run.closed`
is false; the verdict would say ``binding_unproven`` or ``no_profile``): the
gateway restates such chains of its own registry and plans again.

:class:`MemorySource` is a source over a list of :class:`Entry` (the cloud's
and the tests'). Nothing here imports the gateway.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from protocol.chainstate import chain_state
from protocol.custody import Custody, Leg, custody, date_records, parse_item
from protocol.record import (
    EVENT_RECORDS_DROPPED,
    KIND_BINDING,
    KIND_PROFILE,
    TQ_UNSET,
    Binding,
    Payload,
    ProductProfile,
    Record,
    Registration,
    Scan,
    Status,
    open_record,
)
from protocol.verdict import Authorities as TrustScopes

__all__ = [
    "UNSET",
    "Authorities",
    "ChainKey",
    "Entry",
    "LegPlan",
    "Loss",
    "MemorySource",
    "Plan",
    "Run",
    "Source",
    "TraceError",
    "chain_label",
    "chain_of",
    "declared_range",
    "find_uid",
    "plan",
]

UNSET = TQ_UNSET  # tq of a record made before the device's clock was set

#: A statement chain within one signer: (kind, name), the name being a binding's
#: target, a GTIN-wide profile's GTIN, or ``"{gtin} {lot}"`` for a lot's profile
#: (a lot holds no space).
ChainKey = tuple[int, str]


class TraceError(Exception):
    """The item cannot be traced (unknown tag, no commission scan...)."""


def chain_of(p: Binding | ProductProfile) -> ChainKey:
    """(kind, chain name): the target of a binding; ``gtin`` or ``"gtin lot"`` of a profile."""
    if isinstance(p, Binding):
        return (KIND_BINDING, p.target)
    return (KIND_PROFILE, p.gtin if p.lot is None else f"{p.gtin} {p.lot}")


def chain_label(key: ChainKey) -> str:
    """How a chain is named to people: ``binding of T``, ``profile of GTIN`` /
    ``profile of GTIN lot L``."""
    kind, name = key
    if kind == KIND_BINDING:
        return f"binding of {name}"
    gtin, _, lot = name.partition(" ")
    return f"profile of {gtin}" + (f" lot {lot}" if lot else "")


def declared_range(p: Payload) -> tuple[int, int] | None:
    """(first, last) seqs a status payload declares lost (§5.2: event 11, ``lost``
    the first, ``detail`` the count), or None."""
    if type(p) is Status and p.lost is not None and p.event == EVENT_RECORDS_DROPPED and p.detail:
        return p.lost, p.lost + p.detail - 1
    return None


@lru_cache(maxsize=1 << 15)
def _opened(raw: bytes) -> Record:
    """:func:`protocol.record.open_record`, remembered: a plan reads each record's payload
    several times (dating, custody, chains), and records never change."""
    return open_record(raw)


# --- what a source gives ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """A logged record: its bytes at index ``index`` of the log ``log``, with what the
    planner reads of it (``signer``, ``seq``, ``tq``, ``time``, ``kind``: the envelope's
    kid and the payload's fields)."""

    log: str
    index: int
    raw: bytes
    signer: str
    seq: int
    tq: int
    time: int
    kind: int

    @classmethod
    def of(cls, log: str, index: int, raw: bytes) -> Entry:
        """The entry of ``raw`` at (``log``, ``index``), its fields read from the record
        (envelope and payload checked, the signature NOT: verify before trusting)."""
        rec = _opened(raw)
        p = rec.payload
        return cls(log, index, rec.raw, rec.signer, p.seq, p.tq, p.time, p.kind)

    @property
    def at(self) -> tuple[str, int]:
        return (self.log, self.index)


@dataclass(frozen=True, slots=True)
class Loss:
    """Seqs ``first`` … ``last`` of a device declared lost by its status record ``status``."""

    first: int
    last: int
    status: Entry


class Source(Protocol):
    """The logged records a plan is made from, each distinct record once.

    A source answers only from what it can prove (the gateway: the leaves
    below an anchored checkpoint; a cloud: each log below its latest verified
    checkpoint). ``name`` says where the records are, for messages
    (``this gateway's log``)."""

    @property
    def name(self) -> str: ...

    def scans_of(self, *, uid: bytes | None = None, item: str | None = None) -> list[Entry]:
        """The scans of tag ``uid``, or the scans naming ``item`` (exactly one of the
        two is given), in log order."""
        ...

    def statements(self, kind: int, chain: str, signer: str) -> list[Entry]:
        """``signer``'s statements (kind 5 or 6) of the chain named ``chain``, ascending
        by cseq."""
        ...

    def records_of(self, device: str, seq_lo: int, seq_hi: int) -> list[Entry]:
        """``device``'s records with seq in [seq_lo, seq_hi], ascending by seq."""
        ...

    def seq_window(self, device: str, t0: int, t1: int) -> tuple[int, int] | None:
        """Seqs (lo, hi) of ``device`` around the time [t0, t1], from set clocks
        only (tq >= 1): :func:`seq_bounds` over those records. None when the device
        has no records."""
        ...

    def declared_losses(self, device: str) -> list[Loss]:
        """The losses ``device``'s status records declare (§5.2)."""
        ...

    def registrations(self, device: str) -> list[Entry]:
        """Every registration record of ``device`` (revocations included)."""
        ...


@dataclass(frozen=True)
class Authorities:
    """Who speaks for a place and for a GTIN (§10): ``place`` and ``gtin`` give a
    registry id - the signer of the statement records that count - or None.

    ``home`` is the registry the notes need not name (a gateway's own);
    ``no_place`` and ``no_gtin`` are the notes when there is no authority
    (``{place}``, ``{gtin}`` filled in)."""

    place: Callable[[str], str | None]
    gtin: Callable[[str], str | None]
    home: str | None = None
    no_place: str = "{place} has no authority (outside every places scope)"
    no_gtin: str = "GTIN {gtin} has no authority (outside every gtins scope)"

    @classmethod
    def of_trust(cls, trust: TrustScopes) -> Authorities:
        """A trust file's authorities (``protocol.trust.Trust``: the verifier's own)."""
        return cls(trust.place_authority, trust.gtin_authority)


# --- the plan --------------------------------------------------------------------------------


@dataclass
class Run:
    """The part of a statement chain that must span [start, until) (§12.5)."""

    key: ChainKey
    start: int
    until: int
    records: list[Entry]  # consecutive cseqs
    closed: bool  # the last one is in force from ``until`` or later
    signer: str = ""  # the registry whose chain it is

    @property
    def open(self) -> bool:
        return not self.closed

    @property
    def last_time(self) -> int | None:
        return None if not self.records else self.records[-1].time


@dataclass
class LegPlan:
    leg: Leg
    run: Run | None
    why_none: str | None  # why the leg has no binding run
    monitors: list[tuple[str, int, int]] = field(default_factory=list)  # device, from, to


@dataclass
class Plan:
    uid: bytes
    item: str | None
    custody: Custody
    scans: list[Entry]
    legs: list[LegPlan]
    profile: Run | None
    profile_note: str | None
    devices: dict[str, list[Entry]]
    registrations: list[Entry]

    @property
    def runs(self) -> list[Run]:
        runs = [lp.run for lp in self.legs if lp.run is not None]
        return runs + ([self.profile] if self.profile is not None else [])

    @property
    def open_runs(self) -> list[Run]:
        """Open runs, one per chain (a chain spanning two legs is restated once)."""
        seen: dict[tuple[str, ChainKey], Run] = {}
        for run in self.runs:
            at = (run.signer, run.key)
            if not run.closed and (at not in seen or run.until > seen[at].until):
                seen[at] = run
        return list(seen.values())

    def records(self) -> list[Entry]:
        """Every entry the bundle holds, once, ordered by (log, index)."""
        out: dict[tuple[str, int], Entry] = {r.at: r for r in self.scans}
        for run in self.runs:
            out.update((r.at, r) for r in run.records)
        for recs in self.devices.values():
            out.update((r.at, r) for r in recs)
        out.update((r.at, r) for r in self.registrations)
        return [out[k] for k in sorted(out)]

    def entries(self) -> list[tuple[str, int]]:
        """The (log, index) of every record to prove, ascending, each once."""
        return [r.at for r in self.records()]


# --- the subject --------------------------------------------------------------------------


def _digital_link_path(text: str) -> str | None:
    i = text.find("/01/")
    if i < 0:
        return None
    path = text[i:]
    for sep in "?#":
        path = path.split(sep, 1)[0]
    return path.rstrip("/")


def find_uid(source: Source, what: str) -> tuple[bytes, str | None]:
    """The tag UID for ``what``: a tag UID in hex (``04a23c5a1b6f80``, colons allowed) or a
    GS1 Digital Link (a URL or path) of the item a commission scan gave a tag; and the
    Digital Link path (None for a UID)."""
    hexed = what.replace(":", "").replace(" ", "").lower()
    if len(hexed) in (8, 14, 20) and all(c in "0123456789abcdef" for c in hexed):
        return bytes.fromhex(hexed), None
    path = _digital_link_path(what)
    if path is None:
        raise TraceError(
            f"{what!r} is neither a tag UID (8, 14 or 20 hex digits) nor a GS1 Digital Link"
        )
    recs = source.scans_of(item=path)
    if not recs:
        if parse_item(path) is None:
            raise TraceError(f"{path!r} is not a GS1 Digital Link path (/01/{{gtin}}/...)")
        raise TraceError(f"no commission scan in {source.name} names the item {path}")
    uids: list[bytes] = []
    for rec in recs:
        p = _opened(rec.raw).payload
        if isinstance(p, Scan) and p.uid not in uids:
            uids.append(p.uid)
    if len(uids) > 1:
        listed = ", ".join(u.hex() for u in uids)
        raise TraceError(f"the item {path} was commissioned on {len(uids)} tags ({listed})")
    return uids[0], path


# --- planning -------------------------------------------------------------------------------


def _cseq(e: Entry) -> int:
    p = _opened(e.raw).payload
    if not isinstance(p, Binding | ProductProfile):
        raise TraceError(f"{e.log} index {e.index} is not a statement")
    return p.cseq


def _run(source: Source, key: ChainKey, signer: str, a: int, b: int) -> Run:
    """The run of ``signer``'s chain ``key`` spanning [a, b) (§12.5)."""
    kind, name = key
    rows = source.statements(kind, name, signer)
    if not rows:
        return Run(key, a, b, [], False, signer)
    first = 0
    for i, r in enumerate(rows):
        if r.time <= a:
            first = i  # the highest cseq in force at a (times never go back)
    chosen: list[Entry] = []
    last = -1
    closed = False
    for r in rows[first:]:
        cseq = _cseq(r)
        if chosen and cseq == last:
            continue  # the same statement again (another log's copy)
        if chosen and cseq != last + 1:
            break  # a statement is missing: the run ends here
        chosen.append(r)
        last = cseq
        if r.time >= b:
            closed = True
            break
    return Run(key, a, b, chosen, closed, signer)


def _monitors(run: Run, a: int, b: int) -> list[tuple[str, int, int]]:
    """Device monitoring intervals over [a, b) from the pieces of the run's state."""
    state = chain_state([_opened(r.raw) for r in run.records], a, b)
    spans: dict[str, list[list[int]]] = {}
    for stmt, start, end in state.pieces:
        if stmt is None or not isinstance(stmt.payload, Binding):
            continue
        for dev in stmt.payload.device_list:
            mine = spans.setdefault(dev, [])
            if mine and mine[-1][1] == start:
                mine[-1][1] = end
            else:
                mine.append([start, end])
    return [(dev, x, y) for dev, ivs in sorted(spans.items()) for x, y in ivs]


READING_KINDS = (1, 7)  # what stands for time (§12.6 step 3): readings and blocks


def seq_bounds(
    dated: Iterable[tuple[int, int, int]], t0: int, t1: int, first: int, last: int
) -> tuple[int, int]:
    """The seqs (lo, hi) of one device's records that show [t0, t1], from its dated
    records ``(seq, kind, date)``; ``first``/``last`` are its lowest/highest seq.

    Let *inside* be the records dated strictly between t0 and t1. lo is the highest
    seq below every inside record whose reading is dated at or before t0 (it stands
    at t0), else the highest such record of any kind, else ``first``; hi the lowest
    seq at or above lo, above every inside record, dated at or after t1, else
    ``last``. With dates that grow with seq this is the last record at or before t0
    that is a reading and the first at or after t1; after a clock set back (or
    forward) a record dated inside the interval may come before one dated before it
    (after it), and is kept all the same.
    """
    rows = sorted(dated)
    inside = [q for q, _, d in rows if t0 < d < t1]
    below = min(inside) if inside else last + 1
    above = max(inside) if inside else first - 1
    lo = max((q for q, k, d in rows if d <= t0 and q < below and k in READING_KINDS), default=None)
    if lo is None:
        lo = max((q for q, _, d in rows if d <= t0 and q < below), default=first)
    hi = min((q for q, _, d in rows if q >= lo and q > above and d >= t1), default=last)
    return lo, hi


def _dating_tail(source: Source, recs: list[Entry]) -> list[Entry]:
    """``recs`` (one signer, ascending seq) with the records after the last one up to
    and including the first with a set clock, when the last has none (§12.2)."""
    out = list(recs)
    while out and out[-1].tq == UNSET:
        nxt = source.records_of(out[-1].signer, out[-1].seq + 1, out[-1].seq + 1)
        if not nxt:
            break
        out.append(nxt[0])
    return out


def _device_records(source: Source, device: str, spans: list[tuple[int, int]]) -> list[Entry]:
    """Every record of ``device`` a verifier needs over its monitoring ``spans``."""
    chosen: dict[tuple[int, bytes], Entry] = {}
    for x, y in spans:
        window = source.seq_window(device, x, y)
        if window is None:
            continue  # no records at all: the verdict says records_missing
        recs = _dating_tail(source, source.records_of(device, *window))
        dates = date_records(_opened(r.raw) for r in recs)
        lo, hi = seq_bounds(
            ((r.seq, r.kind, d) for r in recs if (d := dates.get(r.raw)) is not None),
            x,
            y,
            window[0],
            window[1],
        )
        keep = [r for r in recs if lo <= r.seq <= hi]
        for r in _dating_tail(source, keep):
            chosen.setdefault((r.seq, r.raw), r)
        for loss in source.declared_losses(device):
            if loss.first <= hi and loss.last >= lo:
                chosen.setdefault((loss.status.seq, loss.status.raw), loss.status)
    return [chosen[k] for k in sorted(chosen)]


def plan(source: Source, uid: bytes, authorities: Authorities) -> Plan:
    """What the bundle of tag ``uid`` holds, from ``source`` (see the module docstring)."""
    scans = source.scans_of(uid=uid)
    if not scans:
        raise TraceError(f"no scans of tag {uid.hex()} in {source.name}")
    readers: dict[str, list[Entry]] = {}
    for rec in scans:
        readers.setdefault(rec.signer, []).append(rec)
    scan_recs: list[Entry] = []
    for recs in readers.values():  # each scan with what dates it
        for rec in recs:
            scan_recs += _dating_tail(source, [rec])
    opened = [_opened(r.raw) for r in scan_recs]
    cust = custody(opened, date_records(opened), uid)
    custody_raws = {r.raw for r in cust.scans}
    kept = [r for r in scan_recs if r.raw in custody_raws]
    for r in list(kept):  # and their dating tails
        kept += [t for t in _dating_tail(source, [r]) if t not in kept]

    legs: list[LegPlan] = []
    for leg in cust.legs:
        if leg.end <= leg.start:
            legs.append(LegPlan(leg, None, "no duration"))
            continue
        if leg.location is None:
            legs.append(LegPlan(leg, None, "a load without a vehicle (no ref)"))
            continue
        owner = authorities.place(leg.location)
        if owner is None:
            why = authorities.no_place.format(place=leg.location)
            legs.append(LegPlan(leg, None, why))
            continue
        run = _run(source, (KIND_BINDING, leg.location), owner, leg.start, leg.end)
        lp = LegPlan(leg, run, None if run.records else f"{leg.location} was never bound")
        if run.records:
            lp.monitors = _monitors(run, leg.start, leg.end)
        legs.append(lp)

    item = None
    profile, note = None, None
    if cust.commission is not None:
        p = cust.commission.payload
        item = p.item if isinstance(p, Scan) else None
        parsed = parse_item(item) if item else None
        c = next(leg.start for leg in cust.legs)
        signer = None if parsed is None else authorities.gtin(parsed.gtin)
        if parsed is None:
            note = "the item has no GTIN: no product profile applies"
        elif signer is None:
            note = authorities.no_gtin.format(gtin=parsed.gtin)
        else:
            key: ChainKey = (KIND_PROFILE, parsed.gtin)
            if parsed.lot is not None:
                lot_key: ChainKey = (KIND_PROFILE, f"{parsed.gtin} {parsed.lot}")
                if source.statements(KIND_PROFILE, lot_key[1], signer):
                    key = lot_key
            profile = _run(source, key, signer, c, c + 1)
            if not profile.records:
                by = "" if signer == authorities.home else f" by {signer}"
                note = f"no profile for GTIN {parsed.gtin} was ever signed{by}"

    spans: dict[str, list[tuple[int, int]]] = {}
    for lp in legs:
        for dev, x, y in lp.monitors:
            spans.setdefault(dev, []).append((x, y))
    devices = {dev: _device_records(source, dev, sp) for dev, sp in spans.items()}

    named = set(readers) | set(devices)
    for lp in legs:
        if lp.run is not None:
            for rec in lp.run.records:
                bp = _opened(rec.raw).payload
                if isinstance(bp, Binding):
                    named.update(bp.device_list)
    registrations = [rec for dev in sorted(named) for rec in source.registrations(dev)]
    return Plan(uid, item, cust, kept, legs, profile, note, devices, registrations)


# --- a source in memory ----------------------------------------------------------------------


class MemorySource:
    """A :class:`Source` over entries held in memory (records of any number of logs).

    Give it only entries that are proven (below a verified checkpoint of their
    log). A record logged in two logs counts once: the first entry added
    that holds its bytes.
    """

    def __init__(self, entries: Iterable[Entry] = (), *, name: str = "the logs") -> None:
        self._name = name
        self._raws: set[bytes] = set()
        self._by_signer: dict[str, list[Entry]] = {}  # ascending (seq, log, index)
        self._scans: list[tuple[Entry, bytes, str | None]] = []  # entry, uid, item
        self._statements: dict[tuple[int, str, str], list[tuple[int, Entry]]] = {}
        self._losses: dict[str, list[Loss]] = {}
        self._registrations: dict[str, list[Entry]] = {}
        self.add(*entries)

    @property
    def name(self) -> str:
        return self._name

    def add(self, *entries: Entry) -> None:
        """Add entries (each record's first entry counts; later copies are ignored)."""
        for e in entries:
            if e.raw in self._raws:
                continue
            self._raws.add(e.raw)
            insort(self._by_signer.setdefault(e.signer, []), e, key=_seq_order)
            p = _opened(e.raw).payload
            if isinstance(p, Scan):
                self._scans.append((e, p.uid, p.item))
            elif isinstance(p, Binding | ProductProfile):
                kind, chain = chain_of(p)
                rows = self._statements.setdefault((kind, chain, e.signer), [])
                insort(rows, (p.cseq, e), key=lambda row: (row[0], row[1].log, row[1].index))
            elif isinstance(p, Registration):
                self._registrations.setdefault(p.device, []).append(e)
            else:
                lost = declared_range(p)
                if lost is not None:
                    self._losses.setdefault(e.signer, []).append(Loss(*lost, e))

    def __len__(self) -> int:
        return len(self._raws)

    def scans_of(self, *, uid: bytes | None = None, item: str | None = None) -> list[Entry]:
        if (uid is None) == (item is None):
            raise ValueError("give uid or item")
        if uid is not None:
            return [e for e, u, _ in self._scans if u == uid]
        return [e for e, _, i in self._scans if i == item]

    def statements(self, kind: int, chain: str, signer: str) -> list[Entry]:
        return [e for _, e in self._statements.get((kind, chain, signer), [])]

    def records_of(self, device: str, seq_lo: int, seq_hi: int) -> list[Entry]:
        recs = self._by_signer.get(device, [])
        i = bisect_left(recs, seq_lo, key=lambda e: e.seq)
        j = bisect_right(recs, seq_hi, key=lambda e: e.seq)
        return recs[i:j]

    def seq_window(self, device: str, t0: int, t1: int) -> tuple[int, int] | None:
        recs = self._by_signer.get(device, [])
        if not recs:
            return None
        set_clocks = ((e.seq, e.kind, e.time) for e in recs if e.tq >= 1)
        return seq_bounds(set_clocks, t0, t1, recs[0].seq, recs[-1].seq)

    def declared_losses(self, device: str) -> list[Loss]:
        return list(self._losses.get(device, []))

    def registrations(self, device: str) -> list[Entry]:
        return list(self._registrations.get(device, []))


def _seq_order(e: Entry) -> tuple[int, str, int]:
    return (e.seq, e.log, e.index)
