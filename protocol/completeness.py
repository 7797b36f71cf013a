"""One device's records as evidence: completeness and readings (docs/protocol.md §12.6).

    dev = DeviceRecords(records_by_seq, dates)
    dev.missing(x, y) -> [(from, to)]     # parts of [x, y) no joined run spans: records_missing
    dev.losses_in(x, y) -> [Loss]         # declared losses whose time meets [x, y): lost
    dev.readings(gap) -> [Held]           # what each dated reading stands for (step 3)
    dev.overlaps() -> [Overlap]           # blocks that overlap readings signed around them

A reading block (kind 7) is one record of a run, and N readings: reading i
at the block's date + i * ivl. It reaches its *end date* (its last reading's)
in spans, and its readings are taken in signing order (seq, then index), so
each stands until the next reading of its channel. Where a block is
involved (a reading of a block, or a reading followed by a block of its
channel), a reading also stands no later than any dated reading of its
channel signed after it: the later-signed reading stands (§12.6 step 3).

A device's records form *runs* of consecutive seqs. Runs joined across gaps
that one status record declared lost (§5.2) *span* [lowest date, highest
date) of their dated records: within a span no record was left out
unannounced. A reading stands for the time until the next reading of its
channel in the same strict run (a declared loss does not join runs here),
never longer than ``gap``.

Interval helpers: :func:`union` and :func:`subtract` on half-open integer
intervals.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate

from protocol.record import Reading, ReadingBlock, Record, Status

__all__ = ["DeviceRecords", "Held", "Interval", "Loss", "Overlap", "last_date", "subtract", "union"]

Interval = tuple[int, int]


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """The union as sorted, disjoint, non-touching, non-empty intervals."""
    out: list[Interval] = []
    for s, e in sorted(intervals):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def subtract(x: int, y: int, covered: Sequence[Interval]) -> list[Interval]:
    """The maximal parts of [x, y) outside ``covered`` (a :func:`union` result)."""
    out = []
    i = max(bisect_right(covered, (x, x)) - 1, 0)
    at = x
    while i < len(covered) and covered[i][0] < y:
        s, e = covered[i]
        if e > at:
            if s > at:
                out.append((at, s))
            at = e
        i += 1
    if at < y:
        out.append((at, y))
    return out


@dataclass(frozen=True)
class Loss:
    """A declared loss inside a span: seqs first..last, between the dates of the dated
    records around the gap."""

    first: int
    last: int
    start: int
    end: int


@dataclass(frozen=True)
class Held:
    """A dated reading with a temperature, over the interval [start, end) it stands for."""

    start: int
    end: int
    channel: int
    temp: int
    tq: int
    seq: int
    index: int = 0  # the reading's index in its block; 0 for a kind-1 reading


@dataclass(frozen=True)
class Overlap:
    """A dated block that overlaps readings of its channel signed before or after it."""

    seq: int
    start: int  # the block's date
    end: int  # its end date


def last_date(r: Record, date: int | None) -> int | None:
    """A record's last date (§12.2): its date, or a block's end date."""
    p = r.payload
    if date is None or not isinstance(p, ReadingBlock):
        return date
    return date + (len(p.temps) // 2 - 1) * p.ivl


def _temps(p: Reading | ReadingBlock) -> list[int | None]:
    """The temperature of each reading of a kind-1 record or a block; None when faulted."""
    if isinstance(p, Reading):
        return [p.temp]
    t = p.temps
    return [
        None if t[k] == 0x80 else int.from_bytes(t[k : k + 2], "big", signed=True)
        for k in range(0, len(t), 2)
    ]


class DeviceRecords:
    """A device's records in ``V`` (one per seq, in seq order) and their dates."""

    def __init__(
        self,
        records: Sequence[Record],
        dates: Mapping[bytes, int | None],
        refused: Collection[bytes] = frozenset(),
    ) -> None:
        self.records = records
        self.dates = dates
        #: readings of the wrong role (§12.1): records for runs and spans, never readings
        self.refused = refused
        runs: list[list[Record]] = []
        for r in records:
            if runs and runs[-1][-1].payload.seq + 1 == r.payload.seq:
                runs[-1].append(r)
            else:
                runs.append([r])
        self.runs = runs
        declared = sorted(
            (p.lost, p.lost + p.detail - 1)
            for r in records
            if isinstance(p := r.payload, Status) and p.lost is not None and p.detail is not None
        )
        self._lost_from = [lo for lo, _ in declared]
        self._lost_to = list(accumulate((hi for _, hi in declared), max))
        spans: list[Interval] = []
        losses: list[Loss] = []
        joined: list[Record] = []
        gaps: list[int] = []  # positions in `joined` after which a declared gap lies
        for k, run in enumerate(runs):
            if k and self._declared(runs[k - 1][-1].payload.seq + 1, run[0].payload.seq - 1):
                gaps.append(len(joined) - 1)
            elif k:
                self._span(joined, gaps, spans, losses)
                joined, gaps = [], []
            joined.extend(run)
        self._span(joined, gaps, spans, losses)
        self.spans = union(spans)
        losses.sort(key=lambda x: (min(x.start, x.end), x.first))
        self.losses = losses
        self._loss_from = [min(x.start, x.end) for x in losses]
        self._loss_reach = list(accumulate((max(x.start, x.end) for x in losses), max))

    def _declared(self, first: int, last: int) -> bool:
        """Whether one status record declared every seq of first..last lost."""
        j = bisect_right(self._lost_from, first)
        return j > 0 and self._lost_to[j - 1] >= last

    def _span(
        self, joined: list[Record], gaps: list[int], spans: list[Interval], losses: list[Loss]
    ) -> None:
        ds = [self.dates.get(r.raw) for r in joined]
        known = [d for d in ds if d is not None]
        if known:
            ends = [last_date(r, d) or 0 for r, d in zip(joined, ds, strict=True) if d is not None]
            spans.append((min(known), max(ends)))
        for g in gaps:
            before = next(
                (
                    last_date(r, d)
                    for r, d in zip(reversed(joined[: g + 1]), reversed(ds[: g + 1]), strict=True)
                    if d is not None
                ),
                None,
            )
            after = next((d for d in ds[g + 1 :] if d is not None), None)
            if before is not None and after is not None:
                first, last = joined[g].payload.seq + 1, joined[g + 1].payload.seq - 1
                losses.append(Loss(first, last, before, after))

    def missing(self, x: int, y: int) -> list[Interval]:
        """The parts of [x, y) outside every span (``records_missing``)."""
        return subtract(x, y, self.spans)

    def losses_in(self, x: int, y: int) -> list[Loss]:
        """The declared losses whose time [start, end] meets [x, y) (``lost``)."""
        out = []
        i = bisect_left(self._loss_from, y) - 1
        while i >= 0 and self._loss_reach[i] >= x:
            loss = self.losses[i]
            lo, hi = min(loss.start, loss.end), max(loss.start, loss.end)
            if (max(lo, x) < min(hi, y)) if lo < hi else x <= lo:
                out.append(loss)
            i -= 1
        return out[::-1]

    def readings(self, gap: int) -> list[Held]:
        """§12.6 step 3: each dated reading with a temperature and what it stands for."""
        out: list[Held] = []
        for run in self.runs:
            ds = [self.dates.get(r.raw) for r in run]
            last_dated = max((i for i, d in enumerate(ds) if d is not None), default=-1)
            # the last date of the run's last dated record
            run_end = last_date(run[last_dated], ds[last_dated]) if last_dated >= 0 else None
            # channel -> date of its next reading in signing order (None: undated)
            following: dict[int, int | None] = {}
            # channel -> the earliest date of its dated readings in later records, and
            # whether a block of the channel comes later (the later-signed reading stands)
            earliest: dict[int, int] = {}
            block_later: set[int] = set()
            for i in range(len(run) - 1, -1, -1):
                p = run[i].payload
                if not isinstance(p, (Reading, ReadingBlock)) or run[i].raw in self.refused:
                    continue
                ch = p.ch or 0
                d = ds[i]
                is_block = isinstance(p, ReadingBlock)
                step = p.ivl if isinstance(p, ReadingBlock) else 0
                temps = _temps(p)
                cap = earliest.get(ch) if is_block or ch in block_later else None
                has_next = ch in following
                nxt = following.get(ch)
                for j in range(len(temps) - 1, -1, -1):
                    t = None if d is None else d + j * step
                    temp = temps[j]
                    if t is not None and temp is not None:
                        if has_next:  # the next reading's date (undated: stands for nothing)
                            e = t if nxt is None else nxt
                        else:  # no next reading: the run's last dated record after it, else t
                            e = run_end if last_dated > i and run_end is not None else t
                        if cap is not None:
                            e = min(e, cap)
                        e = min(e, t + gap)
                        if e > t:
                            out.append(Held(t, e, ch, temp, p.tq, p.seq, j))
                    nxt, has_next = t, True
                following[ch] = d
                if d is not None:
                    earliest[ch] = min(d, earliest.get(ch, d))
                if is_block:
                    block_later.add(ch)
        return out

    def overlaps(self) -> list[Overlap]:
        """§12.6 step 3: the dated blocks that a dated reading of their channel in an earlier
        record of the run is dated at or after the block's date, or one in a later record at
        or before its end date (``block_overlap``), in seq order."""
        found: dict[int, Overlap] = {}
        for run in self.runs:
            # (channel, first date, last date, index in run, is a block) of dated readings
            spans = []
            for i, r in enumerate(run):
                p = r.payload
                d = self.dates.get(r.raw)
                if (
                    d is not None
                    and isinstance(p, (Reading, ReadingBlock))
                    and r.raw not in self.refused
                ):
                    spans.append((p.ch or 0, d, last_date(r, d) or d, i))
            by_ch: dict[int, list[tuple[int, int, int]]] = {}
            for ch, first, last, i in spans:
                by_ch.setdefault(ch, []).append((first, last, i))
            for items in by_ch.values():
                latest = None  # the highest date among earlier records' readings
                for first, last, i in items:
                    p = run[i].payload
                    if isinstance(p, ReadingBlock) and latest is not None and latest >= first:
                        found[p.seq] = Overlap(p.seq, first, last)
                    latest = last if latest is None else max(latest, last)
                earliest = None  # the lowest date among later records' readings
                for first, last, i in reversed(items):
                    p = run[i].payload
                    if isinstance(p, ReadingBlock) and earliest is not None and earliest <= last:
                        found[p.seq] = Overlap(p.seq, first, last)
                    earliest = first if earliest is None else min(earliest, first)
        return [found[k] for k in sorted(found)]
