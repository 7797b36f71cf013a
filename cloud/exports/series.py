"""The readings behind each leg's figures: which records, and the humidity they carry.

The verdict (docs/protocol.md §12.6–§12.7) reports per leg the temperature
figures over *segments*: each dated reading's interval clipped to a device's
monitoring intervals in the leg. The exports also name the readings a leg's
figures come from (EPCIS ``rawData``) and summarise the other measured type a
reading may carry, relative humidity (``rh``, 0.01 %RH, §2.2). This module
cuts the same segments from the same verified records with the same rules
(:class:`protocol.completeness.DeviceRecords`, the profile's ``gap``), so
that a leg's readings here are exactly those the verdict counted (the tests
check the count against every verdict vector).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field

from cloud.exports.evidence import Evidence
from protocol.completeness import DeviceRecords
from protocol.custody import by_signer, dates_of_signers, wrong_role
from protocol.record import Reading, ReadingBlock
from protocol.verdict import DEFAULT_GAP

__all__ = ["LegSeries", "leg_series", "seq_ranges"]


@dataclass
class LegSeries:
    """One leg's readings: seqs per device (the records: a reading block is one seq, many
    readings), the readings themselves as (seq, index in its block), and the humidity
    samples (rh, seconds)."""

    seqs: dict[str, set[int]] = field(default_factory=dict)
    rh: list[tuple[int, int]] = field(default_factory=list)
    named: dict[str, set[tuple[int, int]]] = field(default_factory=dict)

    @property
    def readings(self) -> int:
        return sum(len(s) for s in self.named.values())


def seq_ranges(seqs: set[int]) -> str:
    """Sorted seqs as ranges: {3, 4, 5, 9} -> ``3-5,9``."""
    out: list[str] = []
    ordered = sorted(seqs)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def leg_series(ev: Evidence) -> dict[int, LegSeries]:
    """Each leg's :class:`LegSeries`, by leg index (legs without readings are absent)."""
    verdict = ev.verdict
    profile = ev.document.get("profile") or {}
    gap = profile.get("gap") or DEFAULT_GAP
    signers = by_signer(ev.records)
    dates = dates_of_signers(signers)
    refused = wrong_role(ev.records, dates)  # readings of a device not registered as a logger
    bound: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for leg in verdict.legs:
        for m in leg.monitors:
            bound[m.device].append((m.start, m.end, leg.leg.index))
    out: dict[int, LegSeries] = {}
    for device, spans in bound.items():
        recs = signers.get(device, [])
        by_seq = {r.payload.seq: r.payload for r in recs}
        intervals = sorted(spans)
        ends = [y for _, y, _ in intervals]
        for held in DeviceRecords(recs, dates, refused).readings(gap):
            i = bisect_right(ends, held.start)
            while i < len(intervals) and intervals[i][0] < held.end:
                x, y, k = intervals[i]
                s, e = max(x, held.start), min(y, held.end)
                if s < e:
                    series = out.setdefault(k, LegSeries())
                    series.seqs.setdefault(device, set()).add(held.seq)
                    series.named.setdefault(device, set()).add((held.seq, held.index))
                    p = by_seq.get(held.seq)
                    if isinstance(p, ReadingBlock):  # reading held.index of a block (§2.8)
                        p = p.readings()[held.index]
                    if isinstance(p, Reading) and p.rh is not None:
                        series.rh.append((p.rh, e - s))
                i += 1
    return out
