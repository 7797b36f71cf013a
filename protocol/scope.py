"""Registry scopes: who may speak for which device id, place or GTIN (docs/protocol.md §1, §10).

A trust file pins each registry key with three lists of *patterns*. A
pattern is a non-empty string in which ``*`` matches any sequence of zero or
more characters and every other character matches itself (there is no
escape: a pattern cannot match a literal ``*`` other than through ``*``
itself). Its *specificity* is its number of characters other than ``*``.

The *authority* for a text (a device id, a place id, a GTIN) is the registry
whose matching pattern is the most specific; when two different registries
tie at that specificity, or no pattern matches, there is none. Matching is
done by hand on the literal pieces between the stars (no regular
expression is built from a pattern, so nothing in it is special but ``*``);
greedy leftmost matching of the pieces is exact for patterns whose only
wildcard is ``*``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["WILDCARD", "authority", "pattern_matches", "specificity"]

WILDCARD = "*"


def specificity(pattern: str) -> int:
    """The number of characters of ``pattern`` other than ``*``."""
    return len(pattern) - pattern.count(WILDCARD)


def pattern_matches(pattern: str, text: str) -> bool:
    """Whether ``text`` matches ``pattern`` as a whole (``*``: any run of characters)."""
    pieces = pattern.split(WILDCARD)
    if len(pieces) == 1:
        return pattern == text
    first, last = pieces[0], pieces[-1]
    pos, end = len(first), len(text) - len(last)
    if end < pos or not text.startswith(first) or not text.endswith(last):
        return False
    for piece in pieces[1:-1]:
        if piece:
            found = text.find(piece, pos, end)
            if found < 0:
                return False
            pos = found + len(piece)
    return True


def authority(scopes: Mapping[str, Sequence[str]], text: str) -> str | None:
    """The registry id whose matching pattern is the most specific, or None.

    ``scopes`` maps registry ids to their patterns for one kind of name
    (devices, places or GTINs). None when nothing matches or when two
    registries tie at the highest specificity (an ambiguous scope gives no
    one authority). One registry matching through several patterns is not a
    tie.
    """
    best = -1
    winner: str | None = None
    tied = False
    for registry, patterns in scopes.items():
        mine = max((specificity(p) for p in patterns if pattern_matches(p, text)), default=-1)
        if mine < 0:
            continue
        if mine > best:
            best, winner, tied = mine, registry, False
        elif mine == best and registry != winner:
            tied = True
    return None if tied else winner
