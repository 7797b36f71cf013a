"""Proofs from the gateway's log, and the proof half of a bundle (docs/protocol.md §6, §9).

- :func:`inclusion` - the audit path of any stored record in the tree of any
  checkpoint (RFC 9162 §2.1.3), checked against the signed root before it is
  handed out;
- :func:`consistency` - the proof between two checkpoints (§2.1.4), checked
  against both signed roots;
- :func:`multiproof` - one multi-leaf inclusion proof (§9) for many records:
  the hashes of the leaf ranges :func:`protocol.merkle.multiproof_ranges`
  names, each MTH(D[lo:hi]) folded from stored subtrees (``range_hash``);
- :func:`prove` - a bundle of given records (§9; its ``dumps`` writes the
  compact version 3 of §9.1): the records, the latest *anchored* checkpoint
  that covers them all, one multiproof for all of them (verified against the
  signed root before it is returned) and the anchor receipt. Which records
  an item's bundle needs is gateway/trace.py's business.

Proofs come from a :class:`LiveTree` (the running gateway's ``MerkleTree``)
or from a :class:`TreeReader`, which reads the tree's level files without
taking the writer's lock: it serves every size up to the last checkpoint,
whose nodes the gateway flushed before signing it. That is how the CLI
answers while the gateway runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from gateway.evidence.store import CheckpointRow, Store, StoredRecord
from protocol.bundle import AnchorRef, Bundle, BundleRecord, MultiProof, Subject
from protocol.checkpoint import parse_checkpoint
from protocol.merkle import (
    MerkleTree,
    hash_leaf,
    multiproof_ranges,
    proof,
    verify_consistency,
    verify_inclusion,
    verify_multiproof,
)
from protocol.merkle.hasher import EMPTY_ROOT, HASH_SIZE
from protocol.note import parse_note

__all__ = [
    "LiveTree",
    "ProofSource",
    "ProofUnavailable",
    "TreeReader",
    "consistency",
    "covering_checkpoint",
    "inclusion",
    "multiproof",
    "prove",
]


class ProofUnavailable(Exception):
    """No proof can be given (unknown record, no checkpoint covering it...)."""


class ProofSource(Protocol):
    @property
    def size(self) -> int: ...
    def root(self, size: int | None = None) -> bytes: ...
    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]: ...
    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]: ...
    def range_hash(self, lo: int, hi: int) -> bytes: ...


class TreeReader:
    """Read-only access to a ``FileNodeStore`` directory (no lock, no repair)."""

    def __init__(self, directory: str | Path, size: int) -> None:
        self.directory = Path(directory)
        self._fds: dict[int, int] = {}
        self._size = size
        leaves = self._count(0)
        if leaves < size:
            raise ProofUnavailable(f"the tree files hold {leaves} leaves, fewer than {size}")

    @property
    def size(self) -> int:
        return self._size

    def _fd(self, level: int) -> int:
        fd = self._fds.get(level)
        if fd is None:
            fd = os.open(self.directory / f"level-{level:02d}.hashes", os.O_RDONLY)
            self._fds[level] = fd
        return fd

    def _count(self, level: int) -> int:
        try:
            return os.fstat(self._fd(level)).st_size // HASH_SIZE
        except FileNotFoundError:
            return 0

    def _get(self, level: int, index: int) -> bytes:
        h = os.pread(self._fd(level), HASH_SIZE, index * HASH_SIZE)
        if len(h) != HASH_SIZE:
            raise ProofUnavailable(f"tree node ({level}, {index}) is not on disk yet")
        return h

    def _hash(self, nodes: tuple[proof.NodeID, ...]) -> bytes:
        return proof.fold([self._get(level, index) for level, index in nodes])

    def root(self, size: int | None = None) -> bytes:
        size = self._size if size is None else size
        if size == 0:
            return EMPTY_ROOT
        return self._hash(proof.subtree_nodes(0, size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self._size if size is None else size
        if not 0 <= index < size <= self._size:
            raise ProofUnavailable(f"leaf {index} is not in a tree of {size} leaves")
        return [self._hash(nodes) for nodes in proof.inclusion(index, size)]

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        size2 = self._size if size2 is None else size2
        if not 0 < size1 <= size2 <= self._size:
            raise ProofUnavailable(f"no consistency proof from {size1} to {size2}")
        return [self._hash(nodes) for nodes in proof.consistency(size1, size2)]

    def range_hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) of a range RFC 9162's split produces, from stored subtrees."""
        if not 0 <= lo < hi <= self._size:
            raise ProofUnavailable(f"leaf range [{lo}, {hi}) is not in a tree of {self._size}")
        return self._hash(proof.subtree_nodes(lo, hi))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class LiveTree:
    """A running gateway's ``MerkleTree`` as a :class:`ProofSource` (with ``range_hash``)."""

    def __init__(self, tree: MerkleTree) -> None:
        self.tree = tree

    @property
    def size(self) -> int:
        return self.tree.size

    def root(self, size: int | None = None) -> bytes:
        return self.tree.root(size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return self.tree.inclusion_proof(index, size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        return self.tree.consistency_proof(size1, size2)

    def range_hash(self, lo: int, hi: int) -> bytes:
        if not 0 <= lo < hi <= self.tree.size:
            raise ProofUnavailable(f"leaf range [{lo}, {hi}) is not in a tree of {self.size}")
        get = self.tree.store.get
        return proof.fold([get(level, index) for level, index in proof.subtree_nodes(lo, hi)])


def _checkpoint(store: Store, size: int | None) -> CheckpointRow:
    cp = store.latest_checkpoint() if size is None else store.checkpoint_at(size)
    if cp is None:
        raise ProofUnavailable("no checkpoint" if size is None else f"no checkpoint of size {size}")
    return cp


def inclusion(
    store: Store, tree: ProofSource, leaf: int, checkpoint_size: int | None = None
) -> dict[str, Any]:
    """Inclusion proof of ``leaf`` in a checkpoint (default: the latest), verified."""
    cp = _checkpoint(store, checkpoint_size)
    rec = store.record(leaf)
    if rec is None:
        raise ProofUnavailable(f"no record at leaf {leaf}")
    if leaf >= cp.size:
        raise ProofUnavailable(f"leaf {leaf} is not in checkpoint {cp.size} (not yet checkpointed)")
    path = tree.inclusion_proof(leaf, cp.size)
    verify_inclusion(leaf, cp.size, hash_leaf(rec.raw), path, cp.root)
    return {"index": leaf, "tree_size": cp.size, "path": path, "checkpoint": cp.note}


def consistency(store: Store, tree: ProofSource, old_size: int, new_size: int) -> list[bytes]:
    """Consistency proof between two signed checkpoints, verified against both roots."""
    old, new = _checkpoint(store, old_size), _checkpoint(store, new_size)
    path = tree.consistency_proof(old.size, new.size)
    verify_consistency(old.size, new.size, path, old.root, new.root)
    return path


def covering_checkpoint(
    store: Store, max_leaf: int, *, anchored: bool = True
) -> tuple[CheckpointRow, dict[str, Any] | None]:
    """The latest checkpoint that holds leaf ``max_leaf`` (anchored ones only, by
    default) and its receipt; ProofUnavailable if there is none yet."""
    receipts = {a.size: a.receipt for a in store.anchors()}
    cps = [c for c in store.checkpoints() if c.size > max_leaf]
    if anchored:
        cps = [c for c in cps if c.size in receipts]
    if not cps:
        what = "anchored checkpoint" if anchored else "checkpoint"
        raise ProofUnavailable(f"no {what} covers leaf {max_leaf} yet")
    cp = cps[-1]
    return cp, receipts.get(cp.size)


def multiproof(
    tree: ProofSource, origin: str, cp: CheckpointRow, records: list[StoredRecord]
) -> MultiProof:
    """One multiproof (§9) of ``records`` (ascending leaves) in checkpoint ``cp``,
    verified against its signed root."""
    leaves = [r.leaf for r in records]
    nodes = [tree.range_hash(lo, hi) for lo, hi in multiproof_ranges(cp.size, leaves)]
    verify_multiproof(cp.size, leaves, [hash_leaf(r.raw) for r in records], nodes, cp.root)
    return MultiProof(origin, cp.size, tuple(leaves), tuple(nodes))


def prove(
    store: Store,
    tree: ProofSource,
    origin: str,
    leaves: Iterable[int],
    subject: Subject,
    *,
    now: int | None = None,
) -> Bundle:
    """A bundle of the records at ``leaves`` (see the module docstring); its ``dumps``
    writes the compact version 3 (§9.1)."""
    records: list[StoredRecord] = []
    for leaf in sorted(set(leaves)):
        rec = store.record(leaf)
        if rec is None:
            raise ProofUnavailable(f"no record at leaf {leaf}")
        records.append(rec)
    if not records:
        raise ProofUnavailable("no records to prove")
    cp, receipt = covering_checkpoint(store, records[-1].leaf)
    # The checkpoint's own origin: after a log key rotation (gateway/rotate.py) the
    # latest checkpoint may still be one of the old origin.
    origin = parse_checkpoint(parse_note(cp.note).body).origin
    bundle = Bundle(subject=subject, created=int(time.time()) if now is None else now)
    bundle.records = [BundleRecord(origin, r.leaf, r.raw) for r in records]
    bundle.checkpoints.append(cp.note)
    bundle.proofs.append(multiproof(tree, origin, cp, records))
    if receipt is not None:
        bundle.anchors.append(AnchorRef(origin, cp.size, receipt))
    return bundle
