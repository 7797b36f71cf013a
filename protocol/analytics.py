"""Temperature arithmetic shared by the verdict and the gateway's live alerts.

docs/protocol.md §12.7 (rounding, excursions) and §12.8 (mean kinetic
temperature). Temperatures are integers in 0.01 °C, times and weights
integers in seconds. Everything is exact integer arithmetic except the mean
kinetic temperature, whose binary64 steps are fixed by §12.8 so that every
implementation (this one, the page's JavaScript) gets the same integer.

Interface::

    round_div(n, d) -> int                  # ⌊(2n + d) / (2d)⌋, d > 0: halves up (§12.7)
    mean_centi([(temp, w), ...]) -> int | None          # round_div(Σ temp·w, Σ w)
    mkt_centi([(temp, w), ...]) -> int | None           # §12.8, in the order given
    dexp(y) -> float; dlog(v) -> float      # §12.8's exp (y ≤ 0) and log (0 < v ≤ 1)

    exc = Excursion("high", limit)          # or "low"
    exc.beyond(temp) -> bool                # temp > limit (high) / temp < limit (low)
    exc.extend(start, end, temp)            # one more piece [start, end) held at temp
    exc.start, exc.end, exc.peak            # None until the first extend
    exc.excess                              # Σ |temp − limit|·(end − start), 0.01 °C·s
    exc.duration -> int                     # end − start
    exc.degree_minutes -> int               # round_div(excess, 60), 0.01 °C·min

An :class:`Excursion` is one maximal stretch of time on one side of a limit,
built from contiguous pieces: each ``extend`` must start where the previous
one ended (``ValueError`` otherwise) and carry a temperature beyond the
limit. A piece may be empty (``start == end``): it opens the excursion or
raises the peak without adding time. Who decides where an excursion ends is
the caller: the verdict's sweep (protocol/verdict.py) feeds it elementary
intervals of the trace and starts a new one after a gap; a streaming alert
engine, which sees one reading at a time and holds each value until the
next reading, opens it with ``extend(t, t, temp)`` at the first reading
beyond the limit, calls ``extend(t_prev, t, temp_prev)`` at each later
reading while the held value is beyond it, and drops it at the first reading
back in range (after a final ``extend`` up to that reading's time).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = [
    "HIGH",
    "LOW",
    "Excursion",
    "dexp",
    "dlog",
    "mean_centi",
    "mkt_centi",
    "round_div",
]

HIGH = "high"
LOW = "low"

# §12.8 constants, written as the decimal literals that round to the hex values.
_LOG2E = 1.4426950408889634  # 0x1.71547652b82fep+0
_LN2_HI = 0.6931471803691238  # 0x1.62e42fee00000p-1
_LN2_LO = 1.9082149292705877e-10  # 0x1.a39ef35793c76p-33
_SQRT_HALF = 0.7071067811865476  # 0x1.6a09e667f3bcdp-1
_DH_R_CENTI = 1000000  # ΔH/R = 10,000 K, in 0.01 K
_ZERO_C = 27315  # 0 °C in 0.01 K


def round_div(n: int, d: int) -> int:
    """n / d rounded to the nearest integer, halves up (towards +∞): ⌊(2n + d) / (2d)⌋.

    §12.7; exact on integers. ``d`` must be positive.
    """
    if d <= 0:
        raise ValueError(f"round_div needs a positive divisor, got {d}")
    return (2 * n + d) // (2 * d)


def mean_centi(samples: Iterable[tuple[int, int]]) -> int | None:
    """Time-weighted mean of (temp, weight) samples, round_div(Σ temp·w, Σ w); None if Σ w = 0.

    Weights must not be negative (``ValueError``).
    """
    total = weight = 0
    for temp, w in samples:
        if w < 0:
            raise ValueError(f"negative weight {w}")
        total += temp * w
        weight += w
    return round_div(total, weight) if weight else None


def dexp(y: float) -> float:
    """e^y for y ≤ 0 in fixed binary64 steps (§12.8): Cody–Waite reduction, Taylor to 13."""
    k = math.floor(y * _LOG2E + 0.5)
    r = (y - k * _LN2_HI) - k * _LN2_LO
    p = 1.0
    for n in range(13, 0, -1):
        p = 1.0 + (r * p) / n
    return p * math.ldexp(1.0, k)  # 2^k is exact (0.0 below 2^-1074)


def dlog(v: float) -> float:
    """ln v for 0 < v ≤ 1 in fixed binary64 steps (§12.8): atanh series to s^25."""
    if not v > 0.0:
        raise ValueError(f"dlog needs a positive argument, got {v}")
    e = 0
    f = v
    while f < _SQRT_HALF:
        f = f * 2.0
        e = e - 1
    s = (f - 1.0) / (f + 1.0)
    s2 = s * s
    t = 0.0
    for n in range(12, -1, -1):
        t = 1.0 / (2 * n + 1) + s2 * t
    return e * _LN2_HI + (e * _LN2_LO + (2.0 * s) * t)


def mkt_centi(samples: Iterable[tuple[int, int]]) -> int | None:
    """Mean kinetic temperature in 0.01 °C of (temp, weight) samples, in the order given (§12.8).

    Samples with weight 0 are left out (they would still move the shift ``m``);
    a negative weight is a ``ValueError``. None when no weight remains. The
    verdict passes its segments in the order (from, device, channel, to); the
    order matters only in the last bit of the sum, which §12.8 fixes.
    """
    pairs = []
    for temp, w in samples:
        if w < 0:
            raise ValueError(f"negative weight {w}")
        if w:
            pairs.append((temp, w))
    if not pairs:
        return None
    total = 0
    xs = []
    for temp, w in pairs:
        total += w
        xs.append(-_DH_R_CENTI / (temp + _ZERO_C))
    m = max(xs)
    s = 0.0
    for (_, w), x in zip(pairs, xs, strict=True):
        s = s + float(w) * dexp(x - m)
    big_l = m + dlog(s / float(total))
    k = -_DH_R_CENTI / big_l
    return math.floor(k - _ZERO_C + 0.5)


class Excursion:
    """One excursion beyond ``limit`` on ``side`` (``"high"`` or ``"low"``); see the module doc."""

    __slots__ = ("end", "excess", "limit", "peak", "side", "start")

    def __init__(self, side: str, limit: int) -> None:
        if side not in (HIGH, LOW):
            raise ValueError(f"side is 'high' or 'low', got {side!r}")
        self.side = side
        self.limit = limit
        self.start: int | None = None
        self.end: int | None = None
        self.peak: int | None = None
        self.excess = 0  # 0.01 °C·s

    def beyond(self, temp: int) -> bool:
        """Whether ``temp`` is out of range on this side (strictly beyond the limit)."""
        return temp > self.limit if self.side == HIGH else temp < self.limit

    def extend(self, start: int, end: int, temp: int) -> None:
        """Add [start, end) held at ``temp``; it must follow on and be beyond the limit."""
        if end < start:
            raise ValueError(f"piece ends before it starts: [{start}, {end})")
        if self.end is not None and start != self.end:
            raise ValueError(f"piece starts at {start}, not where the excursion ends ({self.end})")
        if not self.beyond(temp):
            raise ValueError(f"{temp} is not beyond the {self.side} limit {self.limit}")
        if self.start is None:
            self.start = start
        self.end = end
        if self.peak is None or (temp > self.peak if self.side == HIGH else temp < self.peak):
            self.peak = temp
        self.excess += abs(temp - self.limit) * (end - start)

    @property
    def duration(self) -> int:
        return 0 if self.start is None or self.end is None else self.end - self.start

    @property
    def degree_minutes(self) -> int:
        """Σ |temp − limit|·time in 0.01 °C·min, rounded halves up (§12.7)."""
        return round_div(self.excess, 60)

    def __repr__(self) -> str:
        return (
            f"Excursion({self.side!r}, {self.limit}, start={self.start}, end={self.end}, "
            f"peak={self.peak}, excess={self.excess})"
        )
