"""Multi-leaf inclusion proofs ("multiproofs") over an RFC 9162 tree (docs/protocol.md §9).

One proof shows several leaves to be in the tree of ``tree_size`` leaves and
sends each needed node once. The definition, with ``D`` the leaves and ``MTH``
as in RFC 9162 §2.1.1::

    subtree(lo, hi, L):     # L: the proven leaf indexes inside [lo, hi), ascending
      if L is empty:    the next hash of `nodes`          (= MTH(D[lo:hi]))
      elif hi - lo == 1: the leaf hash of the leaf at lo
      else: k = the largest power of two smaller than hi - lo
            SHA-256(0x01 || subtree(lo, lo+k, L ∩ [lo, lo+k)) || subtree(lo+k, hi, L ∩ [lo+k, hi)))
    root = subtree(0, tree_size, leaves); every hash of `nodes` is used exactly once

The hashes of ``nodes`` are therefore the MTHs of disjoint leaf ranges, in
the order the recursion meets them: left to right. For a single leaf they are
its RFC 9162 audit path ordered by position in the tree (the siblings left of
the leaf from the root down, then those right of it from the leaf up), not
the audit path's own leaf-to-root order.

The code does not recurse. It walks the tree bottom-up, a level at a time,
with the node of level ``l`` at position ``p`` covering leaves
``[p << l, min((p + 1) << l, tree_size))``. A node without a right sibling
(the last one of a level of odd width) is carried up unchanged: that is
exactly RFC 9162's split, where the right edge of the tree is not a complete
subtree. The work is linear in the number of nodes on the paths of the
proven leaves (at most 64 per leaf), and the number of ``nodes`` a proof
must hold is known, from the shape alone, before any hashing.

Errors are :class:`~protocol.errors.ProofShapeError` (with want/got) for a
malformed input and :class:`~protocol.errors.RootMismatchError` for a proof
that leads to another root; both are :class:`~protocol.errors.ProofError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

from protocol.errors import ProofShapeError, RootMismatchError
from protocol.merkle.hasher import HASH_SIZE

__all__ = [
    "MAX_MULTIPROOF_TREE_SIZE",
    "multiproof_ranges",
    "root_from_multiproof",
    "verify_multiproof",
]

MAX_MULTIPROOF_TREE_SIZE = 2**64 - 1
"""Largest tree size: a checkpoint's size fits the EVM anchor's uint64 (§7)."""

_NODE = b"\x01"

#: One level of the walk: for each parent, the indexes of its two children in the
#: level's *pool* (the level's path hashes, then the hashes it takes from `nodes`),
#: or (child, -1) for a node carried up unchanged.
_Ops = list[tuple[int, int]]


def _check_shape(tree_size: int, leaves: Sequence[int]) -> None:
    if type(tree_size) is not int:
        raise ProofShapeError(
            "tree size must be an integer", expected="int", found=type(tree_size).__name__
        )
    if not 1 <= tree_size <= MAX_MULTIPROOF_TREE_SIZE:
        raise ProofShapeError(
            "tree size is out of range",
            expected=f"1..{MAX_MULTIPROOF_TREE_SIZE}",
            found=tree_size,
        )
    if isinstance(leaves, (str, bytes)) or not isinstance(leaves, Sequence):
        raise ProofShapeError(
            "leaves must be a sequence of indexes",
            expected="sequence of int",
            found=type(leaves).__name__,
        )
    if not leaves:
        raise ProofShapeError("a multiproof proves at least one leaf", expected=">= 1", found=0)
    prev = -1
    for i, leaf in enumerate(leaves):
        if type(leaf) is not int:
            raise ProofShapeError(
                f"leaves[{i}] must be an integer", expected="int", found=type(leaf).__name__
            )
        if leaf <= prev:
            raise ProofShapeError(
                f"leaves[{i}] is not above the one before (leaves are strictly ascending)",
                expected=f"> {prev}",
                found=leaf,
            )
        prev = leaf
    if prev >= tree_size:
        raise ProofShapeError(
            "a leaf index is not in the tree", expected=f"< {tree_size}", found=prev
        )


def _plan(tree_size: int, leaves: Sequence[int]) -> tuple[list[tuple[_Ops, int]], list[int]]:
    """The walk, level by level, and the first leaf of each range it takes from ``nodes``.

    Per level: the operations that make the parents of the level's path
    nodes, and how many hashes of ``nodes`` the level takes. The needed
    ranges are listed in the walk's order (level by level, left to right);
    ``nodes`` holds them by position (the definition's recursion meets the
    disjoint ranges left to right), so their first leaves sort them.
    """
    levels: list[tuple[_Ops, int]] = []
    starts: list[int] = []
    need = starts.append
    known = list(leaves)
    width = tree_size
    level = 0
    while width > 1:
        ops: _Ops = []
        op = ops.append
        parents: list[int] = []
        parent = parents.append
        m = len(known)
        taken = 0
        i = 0
        while i < m:
            p = known[i]
            if p & 1:  # a right child: its left sibling comes from `nodes`
                need((p - 1) << level)
                op((m + taken, i))
                taken += 1
                i += 1
            elif i + 1 < m and known[i + 1] == p + 1:  # both children on the paths
                op((i, i + 1))
                i += 2
            elif p + 1 < width:  # a left child: its right sibling comes from `nodes`
                need((p + 1) << level)
                op((i, m + taken))
                taken += 1
                i += 1
            else:  # last of a level of odd width: RFC 9162 carries it up
                op((i, -1))
                i += 1
            parent(p >> 1)
        levels.append((ops, taken))
        known = parents
        width = (width + 1) >> 1
        level += 1
    return levels, starts


def multiproof_ranges(tree_size: int, leaves: Sequence[int]) -> list[tuple[int, int]]:
    """The leaf ranges ``(lo, hi)`` whose MTHs a multiproof of ``leaves`` holds, in order.

    A prover that can compute MTH(D[lo:hi]) for each range (e.g. with
    :meth:`~protocol.merkle.MerkleTree.root`-style folds of stored subtrees)
    sends those hashes in this order as ``nodes``. Raises
    :class:`~protocol.errors.ProofShapeError` for bad leaves or size.
    """
    _check_shape(tree_size, leaves)
    levels, starts = _plan(tree_size, leaves)
    ranges: list[tuple[int, int]] = []
    j = 0
    for level, (_, taken) in enumerate(levels):
        width = 1 << level  # a sibling subtree, cut at the tree's right edge
        ranges.extend((lo, min(lo + width, tree_size)) for lo in starts[j : j + taken])
        j += taken
    ranges.sort()
    return ranges


def _check_hashes(name: str, hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(hashes):
        if type(h) is not bytes:
            raise ProofShapeError(
                f"{name}[{i}] must be bytes", expected="bytes", found=type(h).__name__
            )
        if len(h) != HASH_SIZE:
            raise ProofShapeError(
                f"{name}[{i}] must be a {HASH_SIZE}-byte hash", expected=HASH_SIZE, found=len(h)
            )


def root_from_multiproof(
    tree_size: int,
    leaves: Sequence[int],
    leaf_hashes: Sequence[bytes],
    nodes: Sequence[bytes],
) -> bytes:
    """The root that a multiproof leads to (the definition above, without the comparison).

    ``leaf_hashes[i]`` is the leaf hash (SHA-256(0x00 || data)) of leaf
    ``leaves[i]``. Shape first: leaves non-empty, strictly ascending, below
    ``tree_size``; one 32-byte leaf hash per leaf; exactly as many 32-byte
    ``nodes`` as the leaves and size call for. Raises ProofShapeError.
    """
    _check_shape(tree_size, leaves)
    if isinstance(leaf_hashes, (str, bytes)) or len(leaf_hashes) != len(leaves):
        raise ProofShapeError(
            "one leaf hash per leaf",
            expected=len(leaves),
            found=len(leaf_hashes) if isinstance(leaf_hashes, Sequence) else None,
        )
    _check_hashes("leaf_hashes", leaf_hashes)
    levels, starts = _plan(tree_size, leaves)
    if isinstance(nodes, (str, bytes)) or len(nodes) != len(starts):
        raise ProofShapeError(
            "multiproof has the wrong number of nodes",
            expected=len(starts),
            found=len(nodes) if isinstance(nodes, Sequence) else None,
        )
    _check_hashes("nodes", nodes)

    # nodes[k] is the k-th needed range by position; the walk meets them level
    # by level. taken[j] is the hash of the walk's j-th need.
    taken: list[bytes] = [b""] * len(starts)
    for k, j in enumerate(sorted(range(len(starts)), key=starts.__getitem__)):
        taken[j] = nodes[k]

    hashes = list(leaf_hashes)
    s = 0
    for ops, count in levels:
        pool = hashes + taken[s : s + count]
        s += count
        hashes = [sha256(_NODE + pool[a] + pool[b]).digest() if b >= 0 else pool[a] for a, b in ops]
    return hashes[0]


def verify_multiproof(
    tree_size: int,
    leaves: Sequence[int],
    leaf_hashes: Sequence[bytes],
    nodes: Sequence[bytes],
    root: bytes,
) -> None:
    """Check that ``leaf_hashes`` are leaves ``leaves`` of the tree of ``tree_size`` with ``root``.

    Returns nothing on success; raises ProofShapeError for malformed inputs
    and RootMismatchError (expected/found as hex) if the proof leads to
    another root.
    """
    if type(root) is not bytes or len(root) != HASH_SIZE:
        raise ProofShapeError(
            f"root must be a {HASH_SIZE}-byte hash",
            expected=HASH_SIZE,
            found=len(root) if isinstance(root, bytes) else type(root).__name__,
        )
    got = root_from_multiproof(tree_size, leaves, leaf_hashes, nodes)
    if got != root:
        raise RootMismatchError(
            f"multiproof for {len(leaves)} leaves in tree size {tree_size} leads to another root",
            expected=root.hex(),
            found=got.hex(),
        )
