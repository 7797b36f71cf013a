"""Which stored nodes a proof needs (RFC 9162 §2.1.3.1 and §2.1.4.1).

A node is named by its coordinates ``(level, index)``: the complete
subtree of ``2**level`` leaves ``[index << level, (index + 1) << level)``.
Level 0 holds the leaf hashes. A log stores every complete subtree once the
last of its leaves is appended, and never changes it afterwards.

RFC 9162 defines each hash of a proof as MTH of a leaf range ``D[begin:end]``
that its recursive split produces. Such a range is either a complete subtree
(one stored node) or, on the right edge of the tree, an *ephemeral* node: a
subtree that is not yet complete, so it is not stored, and its hash is
recomputed by folding the complete subtrees that cover the range. A proof
contains at most one ephemeral node.

The functions here do arithmetic on coordinates only; ``fold`` then turns the
fetched hashes of one entry into a proof hash. The verifier does not use
this module (it derives the expected proof length on its own).

    inclusion(5, 7) -> [((0, 4),), ((0, 6),), ((2, 0),)]
                         leaf 4     leaf 6     leaves 0..3
    inclusion(0, 7) -> [((0, 1),), ((1, 1),), ((1, 2), (0, 6))]
                         leaf 1     leaves 2-3  ephemeral node over leaves 4..6
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.merkle.hasher import hash_children

__all__ = [
    "NodeID",
    "consistency",
    "consistency_ranges",
    "fold",
    "inclusion",
    "inclusion_ranges",
    "subtree_nodes",
]


NodeID = tuple[int, int]
"""``(level, index)``: the complete subtree over ``[index << level, (index + 1) << level)``."""


Range = tuple[int, int]
"""A half-open leaf range ``(begin, end)``."""


def _split(width: int) -> int:
    """The largest power of two strictly below ``width`` (``k`` in RFC 9162 §2.1.1)."""
    return 1 << ((width - 1).bit_length() - 1)


def subtree_nodes(begin: int, end: int) -> tuple[NodeID, ...]:
    """Complete subtrees covering ``D[begin:end]``, left to right, largest first.

    The range must be one that RFC 9162's split can produce: ``begin`` a
    multiple of the largest power of two not above ``end - begin``. Its MTH is
    then the right fold of these subtrees (see ``fold``): MTH(D[a:b]) =
    HASH(MTH(first complete part), MTH(rest)). ``subtree_nodes(0, size)`` gives
    the nodes of the root of a tree of ``size`` leaves.
    """
    width = end - begin
    if begin < 0 or width < 0:
        raise ValueError(f"bad leaf range [{begin}, {end})")
    if width and begin & ((1 << (width.bit_length() - 1)) - 1):
        raise ValueError(f"leaf range [{begin}, {end}) is not an RFC 9162 subtree")
    nodes: list[NodeID] = []
    while width:  # one complete subtree per set bit of the width, largest first
        level = width.bit_length() - 1
        nodes.append((level, begin >> level))
        begin += 1 << level
        width -= 1 << level
    return tuple(nodes)


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """Leaf ranges whose MTHs form PATH(index, D[0:size]), leaf end first.

    RFC 9162 §2.1.3.1: for n > 1 and k the largest power of two below n,
    PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) if m < k, else
    PATH(m - k, D[k:n]) : MTH(D[0:k]). Walked here from the root down.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of {size} leaves")
    lo, hi = 0, size
    path: list[Range] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_ranges(size1: int, size2: int) -> list[Range]:
    """Leaf ranges whose MTHs form PROOF(size1, D[0:size2]), lowest first.

    RFC 9162 §2.1.4.1: SUBPROOF(m, D[n], b) is empty if m = n and b is true,
    is [MTH(D[n])] if m = n and b is false; otherwise, with k the largest power
    of two below n, it is SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) if m <= k, else
    SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]). Requires 0 < size1 <= size2;
    the proof between equal sizes is empty.
    """
    if not 0 < size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to size {size2}")
    lo, hi = 0, size2
    known = True  # b: the verifier already holds MTH(D[lo:hi]) as the old root
    path: list[Range] = []
    while size1 != hi:
        k = _split(hi - lo)
        if size1 - lo <= k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo += k
            known = False
    if not known:
        path.append((lo, hi))
    path.reverse()
    return path


def inclusion(index: int, size: int) -> list[tuple[NodeID, ...]]:
    """Stored nodes for each hash of the inclusion proof of leaf ``index`` in ``size``.

    Each entry lists the complete subtrees whose fold is that proof hash: one
    node for most entries, several for the ephemeral node on the right edge.
    """
    return [subtree_nodes(a, b) for a, b in inclusion_ranges(index, size)]


def consistency(size1: int, size2: int) -> list[tuple[NodeID, ...]]:
    """Stored nodes for each hash of the consistency proof from ``size1`` to ``size2``.

    Same shape as ``inclusion``: fold each entry's node hashes to get the
    proof hash.
    """
    return [subtree_nodes(a, b) for a, b in consistency_ranges(size1, size2)]


def fold(hashes: Sequence[bytes]) -> bytes:
    """Hash of a range from its complete subtrees given left to right.

    Folds from the right: ``fold([a, b, c]) = hash_children(a, hash_children(b, c))``,
    which is MTH of the range (RFC 9162 §2.1.1, since the largest complete
    subtree is always the left child). A single hash is returned unchanged.
    """
    if not hashes:
        raise ValueError("nothing to fold")
    acc = hashes[-1]
    for i in range(len(hashes) - 2, -1, -1):
        acc = hash_children(hashes[i], acc)
    return acc
