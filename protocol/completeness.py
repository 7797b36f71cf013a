"""One device's records as evidence: completeness and readings (docs/protocol.md §12.6).

    dev = DeviceRecords(records_by_seq, dates)
    dev.missing(x, y) -> [(from, to)]     # parts of [x, y) no joined run spans: records_missing
    dev.losses_in(x, y) -> [Loss]         # declared losses whose time meets [x, y): lost
    dev.readings(gap) -> [Held]           # what each dated reading stands for (step 3)

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate

from protocol.record import Reading, Record, Status

__all__ = ["DeviceRecords", "Held", "Interval", "Loss", "subtract", "union"]

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


class DeviceRecords:
    """A device's records in ``V`` (one per seq, in seq order) and their dates."""

    def __init__(self, records: Sequence[Record], dates: Mapping[bytes, int | None]) -> None:
        self.records = records
        self.dates = dates
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
            spans.append((min(known), max(known)))
        for g in gaps:
            before = next((d for d in reversed(ds[: g + 1]) if d is not None), None)
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
            run_end = ds[last_dated]  # the date of the run's last dated record
            following: dict[int, int | None] = {}  # channel -> date of its next reading
            for i in range(len(run) - 1, -1, -1):
                p = run[i].payload
                if not isinstance(p, Reading):
                    continue
                ch = p.ch or 0
                t = ds[i]
                if t is not None and p.temp is not None:
                    # the next reading's date (None if undated: this one stands for nothing),
                    # else the run's last dated record after it, else t
                    nxt = following.get(ch, run_end if last_dated > i else t)
                    e = min(t if nxt is None else nxt, t + gap)
                    if e > t:
                        out.append(Held(t, e, ch, p.temp, p.tq, p.seq))
                following[ch] = t
        return out
