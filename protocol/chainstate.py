"""The state of a statement chain over an interval (docs/protocol.md §4.2, §12.5).

A binding or profile chain's statements each restate the whole state from
their ``time`` on. Over [a, b) a bundle *shows* the state from the statement
in force at a along a run of consecutive ``cseq`` up to one whose ``time``
is at or after b; where the run breaks first, the rest is not shown::

    chain_state(statements, a, b) -> ChainState(pieces, shown_until)
    StatementChain(statements).state(a, b)       # the same, indexed once

``pieces`` are (statement or None, from, to) with from < to, covering
[a, shown_until); [shown_until, b) is not shown (empty when shown_until = b).
A gateway can use it to decide whether a bundle needs a restatement.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate

from protocol.record import Binding, ProductProfile, Record

__all__ = ["ChainState", "Piece", "StatementChain", "chain_state"]

Piece = tuple[Record | None, int, int]


@dataclass(frozen=True)
class ChainState:
    pieces: list[Piece]
    shown_until: int


class StatementChain:
    """The statements of one chain (§4.2) held in ``V``, indexed for :meth:`state` queries.

    Records that are not statements are ignored. Verified chains hold one
    statement per ``cseq`` with times that do not go back (§11 step 12);
    should two share a ``cseq``, the one with the lowest bytes is used, and a
    time that goes back is treated as no later than the one before it.
    """

    def __init__(self, statements: Iterable[Record]) -> None:
        unique = {r.raw: r for r in statements if isinstance(r.payload, (Binding, ProductProfile))}
        by_cseq: dict[int, Record] = {}
        for raw in sorted(unique):
            by_cseq.setdefault(_cseq(unique[raw]), unique[raw])
        self._by_cseq = by_cseq
        timed = sorted((r.payload.time, cseq) for cseq, r in by_cseq.items())
        self._times = [t for t, _ in timed]
        self._best = list(accumulate((c for _, c in timed), max))  # highest cseq so far

    def state(self, a: int, b: int) -> ChainState:
        """§12.5 over [a, b); ``ValueError`` unless a < b."""
        if a >= b:
            raise ValueError(f"empty interval [{a}, {b})")
        pieces: list[Piece] = []
        i = bisect_right(self._times, a)  # statements with time <= a
        if i:
            current = self._by_cseq[self._best[i - 1]]
            start = a
        elif 0 in self._by_cseq:
            current = self._by_cseq[0]
            start = min(current.payload.time, b)
            pieces.append((None, a, start))
            if start == b:
                return ChainState(pieces, b)
        else:
            return ChainState(pieces, a)
        while True:
            following = self._by_cseq.get(_cseq(current) + 1)
            if following is None:
                return ChainState(pieces, start)  # shown up to the last statement's time
            t = following.payload.time
            if t >= b:
                pieces.append((current, start, b))
                return ChainState(pieces, b)
            if t > start:
                pieces.append((current, start, t))
                start = t
            current = following


def _cseq(r: Record) -> int:
    p = r.payload
    assert isinstance(p, (Binding, ProductProfile))
    return p.cseq


def chain_state(statements: Iterable[Record], a: int, b: int) -> ChainState:
    """The state over [a, b) of the chain whose statements in ``V`` are ``statements``."""
    return StatementChain(statements).state(a, b)
