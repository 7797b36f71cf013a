"""An append-only RFC 9162 Merkle tree over a ``NodeStore``.

The tree keeps in memory only its size and its *frontier*: the roots of the
complete subtrees that make up the current tree, one per set bit of the size
(at most 63 hashes). Everything else is in the store (``protocol.merkle.store``):
with a ``FileNodeStore`` a tree of millions of leaves uses O(log n) memory
apart from the OS page cache.

- ``append`` hashes the leaf, stores it, and stores each subtree it
  completes: two hashes per leaf on average, O(log n) at worst.
- ``root(size)``, ``inclusion_proof``, ``multiproof`` and ``consistency_proof`` work for the
  current size and any earlier one, reading O(log n) stored nodes
  (``protocol.merkle.proof`` says which) and hashing only to rebuild the one
  ephemeral node on the right edge.

Durability is the store's: call ``flush()`` before acknowledging appends.
If the store raises during an append, drop this object and open a new tree
on the store; opening repairs what a crash or failed write left behind (see
``MerkleTree``). A tree serves one writer; it is not thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from protocol.merkle import proof
from protocol.merkle.hasher import EMPTY_ROOT, HASH_SIZE, hash_children, hash_leaf
from protocol.merkle.multiproof import multiproof_ranges
from protocol.merkle.store import MemoryNodeStore, NodeStore
from protocol.merkle.verify import MAX_TREE_SIZE

__all__ = ["MerkleTree"]

_LEVELS = MAX_TREE_SIZE.bit_length() + 1  # every level a store may hold


class MerkleTree:
    """RFC 9162 §2.1 Merkle tree: leaves numbered from 0 in append order.

    Opening a tree on a store that already holds nodes recovers it: the size
    is the number of leaf hashes (level 0); a parent lost in a crash is
    recomputed from its children, and nodes above what the leaves support are
    dropped. Nothing here can check that the surviving leaf hashes are the
    leaves the application meant to log: compare ``size`` and ``leaf_hash``
    with the application's own durable records, and ``rollback`` what they
    do not cover.
    """

    def __init__(self, store: NodeStore | None = None) -> None:
        self._store: NodeStore = MemoryNodeStore() if store is None else store
        self._size = self._recover()
        self._frontier = self._load_frontier()

    @property
    def store(self) -> NodeStore:
        """The store holding this tree's nodes."""
        return self._store

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._size

    # --- opening and recovery -------------------------------------------------

    def _recover(self) -> int:
        store = self._store
        size = store.count(0)
        if size > MAX_TREE_SIZE:
            raise ValueError(f"store holds {size} leaves, more than {MAX_TREE_SIZE}")
        changed = False
        for level in range(1, _LEVELS):
            want, have = size >> level, store.count(level)
            if have > want:
                store.truncate(level, want)
                changed = True
            for i in range(have, want):
                left = store.get(level - 1, 2 * i)
                right = store.get(level - 1, 2 * i + 1)
                store.append(level, hash_children(left, right))
                changed = True
        if changed:
            store.flush()
        return size

    def _load_frontier(self) -> list[bytes]:
        size = self._size
        return [
            self._store.get(level, (size >> level) - 1)
            for level in range(size.bit_length() - 1, -1, -1)
            if size >> level & 1
        ]

    # --- appending ------------------------------------------------------------

    def append(self, leaf_data: bytes) -> int:
        """Append a leaf (the record bytes exactly as received); return its index."""
        return self.append_leaf_hash(hash_leaf(leaf_data))

    def append_leaf_hash(self, h: bytes) -> int:
        """Append a leaf by its leaf hash (SHA-256(0x00 || data)); return its index."""
        if len(h) != HASH_SIZE:
            raise ValueError(f"a leaf hash has {HASH_SIZE} bytes, got {len(h)}")
        index = self._size
        if index >= MAX_TREE_SIZE:
            raise ValueError(f"the tree is full ({MAX_TREE_SIZE} leaves)")
        store_append = self._store.append
        frontier = self._frontier
        store_append(0, h)
        level, i = 0, index
        while i & 1:  # the new node completes a subtree with its left neighbour
            h = hash_children(frontier.pop(), h)
            level += 1
            i >>= 1
            store_append(level, h)
        frontier.append(h)
        self._size = index + 1
        return index

    def extend(self, leaves: Iterable[bytes]) -> int:
        """Append each leaf in order; return the index of the first one.

        The leaves get consecutive indexes from the returned one; with no
        leaves it is the current ``size``. Same work as ``append`` per leaf,
        without the per-call overhead.
        """
        first = size = self._size
        store_append = self._store.append
        frontier = self._frontier
        pop, push = frontier.pop, frontier.append
        try:
            for data in leaves:
                if size >= MAX_TREE_SIZE:
                    raise ValueError(f"the tree is full ({MAX_TREE_SIZE} leaves)")
                h = hash_leaf(data)
                store_append(0, h)
                level, i = 0, size
                while i & 1:
                    h = hash_children(pop(), h)
                    level += 1
                    i >>= 1
                    store_append(level, h)
                push(h)
                size += 1
        finally:
            self._size = size
        return first

    def flush(self) -> None:
        """Make every append so far durable (the store's ``flush``)."""
        self._store.flush()

    # --- reading --------------------------------------------------------------

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._size:
            raise ValueError(f"tree size {size} is not in 0..{self._size}")

    def _hash_of(self, nodes: tuple[proof.NodeID, ...]) -> bytes:
        get = self._store.get
        if len(nodes) == 1:  # a complete subtree: stored as is
            return get(*nodes[0])
        return proof.fold([get(level, index) for level, index in nodes])

    def leaf_hash(self, index: int) -> bytes:
        """The leaf hash at ``index``; ``IndexError`` if there is no such leaf."""
        if not 0 <= index < self._size:
            raise IndexError(f"leaf index {index} is not in a tree of {self._size} leaves")
        return self._store.get(0, index)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all), RFC 9162 §2.1.1.

        Any earlier size works: its root is folded from at most 63 stored
        complete subtrees. The empty tree's root is SHA-256("").
        """
        if size is None or size == self._size:
            return proof.fold(self._frontier) if self._frontier else EMPTY_ROOT
        self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        return self._hash_of(proof.subtree_nodes(0, size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 9162 §2.1.3.1).

        ``size`` defaults to the current size; it may be any earlier size
        that includes the leaf. Verify with ``verify_inclusion``. Raises
        ``ValueError`` unless ``0 <= index < size <= self.size``.
        """
        size = self._size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is not in a tree of {size} leaves")
        return [self._hash_of(nodes) for nodes in proof.inclusion(index, size)]

    def multiproof(self, leaves: Sequence[int], size: int | None = None) -> list[bytes]:
        """The ``nodes`` of a multiproof of ``leaves`` in the tree of ``size`` leaves.

        ``size`` defaults to the current size. The hashes are those of
        ``multiproof_ranges(size, leaves)``, in its order; verify with
        ``verify_multiproof``. Raises ``ValueError`` for a size out of range
        and ``ProofShapeError`` for bad leaves.
        """
        size = self._size if size is None else size
        self._check_size(size)
        return [
            self._hash_of(proof.subtree_nodes(lo, hi)) for lo, hi in multiproof_ranges(size, leaves)
        ]

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Proof that the tree of ``size1`` is a prefix of ``size2`` (RFC 9162 §2.1.4.1).

        ``size2`` defaults to the current size. Requires ``0 < size1 <=
        size2``: every tree extends the empty one, so there is nothing to prove
        from size 0. Equal sizes give an empty proof. Verify with
        ``verify_consistency``. Raises ``ValueError`` for sizes out of range.
        """
        size2 = self._size if size2 is None else size2
        self._check_size(size2)
        if not 0 < size1 <= size2:
            raise ValueError(f"no consistency proof from size {size1} to size {size2}")
        return [self._hash_of(nodes) for nodes in proof.consistency(size1, size2)]

    # --- crash recovery -----------------------------------------------------------

    def rollback(self, size: int) -> None:
        """DANGER: forget every leaf from index ``size`` on, then flush.

        Only for crash recovery of appends that never committed: leaves the
        application's own durable records do not contain, which no
        checkpoint, inclusion proof or acknowledgement has ever covered.
        Rolling back a leaf that was in a published checkpoint makes the log
        provably inconsistent (a split view) — never do that.
        """
        self._check_size(size)
        for level in range(_LEVELS):
            self._store.truncate(level, size >> level)
        self._store.flush()
        self._size = size
        self._frontier = self._load_frontier()
