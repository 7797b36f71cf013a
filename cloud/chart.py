"""Temperature charts, independent of how they are drawn (SVG, PDF, a terminal).

The shipment release report (:mod:`cloud.report`) draws with reportlab, the
demo (``demo/show.py``) writes SVG; both need the same three things, here:

- :func:`envelope`: a long series cut to at most ``2 * buckets`` points by
  keeping, in every time bucket, its lowest and its highest reading (in time
  order). A min/max envelope never averages a peak away: an excursion of a
  single reading is still drawn, at its exact value, however long the trace;
- :func:`runs`: a series split where the readings stop standing for time (a
  gap), so that a line is never drawn across missing evidence;
- :func:`time_ticks` and :func:`value_ticks`: round axis labels.

Times are Unix seconds, temperatures 0.01 °C (the protocol's units).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

__all__ = ["Point", "envelope", "runs", "time_ticks", "value_ticks"]

#: (time, temperature): Unix seconds, 0.01 °C.
Point = tuple[int, int]

_STEPS = (
    60,
    300,
    600,
    900,
    1800,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    30 * 86400,
)


def envelope(points: Sequence[Point], t0: int, t1: int, buckets: int) -> list[Point]:
    """``points`` (sorted by time) reduced to each bucket's minimum and maximum.

    [t0, t1] is cut into ``buckets`` equal buckets; a bucket with one reading
    keeps it, one with more keeps its lowest and its highest (the first of
    equal ones), in time order. A series of at most ``2 * buckets`` points is
    returned as it is.
    """
    if len(points) <= 2 * buckets or buckets < 1:
        return list(points)
    width = max(1, t1 - t0)
    out: list[Point] = []
    current = -1
    lo: Point | None = None
    hi: Point | None = None

    def flush() -> None:
        if lo is None or hi is None:
            return
        if lo == hi:
            out.append(lo)
        else:
            out.extend(sorted((lo, hi)))

    for p in points:
        b = min(buckets - 1, max(0, (p[0] - t0) * buckets // width))
        if b != current:
            flush()
            current, lo, hi = b, p, p
            continue
        assert lo is not None and hi is not None
        if p[1] < lo[1]:
            lo = p
        if p[1] > hi[1]:
            hi = p
    flush()
    return out


def runs(held: Sequence[tuple[int, int, int]]) -> list[list[Point]]:
    """Readings as (start, end, temp) - each standing for [start, end), sorted - split into
    runs: a new run starts where a reading starts after the previous one stopped standing."""
    out: list[list[Point]] = []
    last_end: int | None = None
    for s, e, v in held:
        if last_end is None or s > last_end:
            out.append([])
        out[-1].append((s, v))
        last_end = e if last_end is None else max(last_end, e)
    return out


def time_ticks(t0: int, t1: int, most: int = 7) -> list[tuple[int, str]]:
    """Round UTC times in [t0, t1] (at most ``most``), each with a label: ``HH:MM``, with
    the date (``21 Sep``) on the first tick and wherever the day changes."""
    span = max(1, t1 - t0)
    step = next((s for s in _STEPS if span / s <= most), _STEPS[-1])
    first = t0 + (-t0) % step
    out: list[tuple[int, str]] = []
    day = None
    for t in range(first, t1 + 1, step):
        g = time.gmtime(t)
        this_day = (g.tm_year, g.tm_yday)
        hm = time.strftime("%H:%M", g)
        if step >= 86400:
            label = time.strftime("%d %b", g)
        elif this_day != day:
            label = time.strftime("%d %b ", g) + hm
        else:
            label = hm
        day = this_day
        out.append((t, label))
    return out


def value_ticks(v0: int, v1: int, most: int = 6) -> list[int]:
    """Round temperatures (0.01 °C) in [v0, v1], at most ``most`` + 1 of them."""
    span = max(1, v1 - v0)
    step = next(
        (s for s in (50, 100, 200, 250, 500, 1000, 2000, 2500, 5000) if span / s <= most), 10000
    )
    first = v0 + (-v0) % step
    return list(range(first, v1 + 1, step))
