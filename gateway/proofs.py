"""Proofs from the gateway's log, and trace bundles (docs/protocol.md §6, §9).

- :func:`inclusion` - the audit path of any stored record in the tree of any
  checkpoint (RFC 9162 §2.1.3), checked against the signed root before it is
  handed out;
- :func:`consistency` - the proof between two checkpoints (§2.1.4), checked
  against both signed roots;
- :func:`build_bundle` - a trace bundle for a set of records: the records,
  every record of each signer between the lowest and highest requested seq
  (so a verifier sees no sequence gap), the registration records of their
  devices with the registry's own records in between, one anchored
  checkpoint that covers them all, an inclusion proof per record and the
  anchor receipt;
- :func:`tag_scans` and :func:`bundle_for_tag` - the trace of one tag: the
  readers' scans of it, and the records of the loggers that held it, each
  within the time it held it (who held it when is the caller's judgement,
  e.g. from the places in the scans: cloud/trace.py).

Proofs come from a ``MerkleTree`` (inside the running gateway) or from a
:class:`TreeReader`, which reads the tree's level files without taking the
writer's lock: it serves every size up to the last checkpoint, whose nodes
the gateway flushed before signing it. That is how the CLI answers while the
gateway runs.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from gateway.store import CheckpointRow, Store, StoredRecord
from protocol.bundle import AnchorRef, Bundle, BundleRecord, ConsistencyProof, InclusionProof
from protocol.merkle import hash_leaf, proof, verify_consistency, verify_inclusion
from protocol.merkle.hasher import EMPTY_ROOT, HASH_SIZE
from protocol.record import KIND_SCAN, Scan, open_record

__all__ = [
    "ProofUnavailable",
    "TreeReader",
    "build_bundle",
    "bundle_for_device",
    "bundle_for_tag",
    "consistency",
    "inclusion",
    "tag_scans",
]


class ProofUnavailable(Exception):
    """No proof can be given (unknown record, no checkpoint covering it...)."""


class ProofSource(Protocol):
    @property
    def size(self) -> int: ...
    def root(self, size: int | None = None) -> bytes: ...
    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]: ...
    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]: ...


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

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


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


def _covering_checkpoint(
    store: Store, max_leaf: int
) -> tuple[CheckpointRow, dict[str, Any] | None]:
    anchors = {a.size: a.receipt for a in store.anchors()}
    cps = [c for c in store.checkpoints() if c.size > max_leaf]
    if not cps:
        raise ProofUnavailable(f"no checkpoint covers leaf {max_leaf} yet")
    anchored = [c for c in cps if c.size in anchors]
    cp = anchored[-1] if anchored else cps[-1]
    return cp, anchors.get(cp.size)


def build_bundle(
    store: Store,
    tree: ProofSource,
    origin: str,
    leaves: Iterable[int],
    *,
    subject: dict[str, Any] | None = None,
    now: int | None = None,
) -> Bundle:
    """A trace bundle (§9) proving the records at ``leaves``; see the module docstring."""
    chosen: dict[int, StoredRecord] = {}
    spans: dict[str, list[int]] = defaultdict(list)
    for leaf in leaves:
        rec = store.record(leaf)
        if rec is None:
            raise ProofUnavailable(f"no record at leaf {leaf}")
        spans[rec.signer].append(rec.seq)
    devices = store.devices()
    for signer, seqs in spans.items():
        for rec in store.records_of(signer, min(seqs), max(seqs)):
            chosen[rec.leaf] = rec
    # Registrations of every device in the bundle, then the registries' spans.
    reg_spans: dict[str, list[int]] = defaultdict(list)
    for signer in list(spans):
        if signer not in devices:
            continue
        for leaf, *_ in store.placements(signer):
            rec = store.record(leaf)
            if rec is not None:
                reg_spans[rec.signer].append(rec.seq)
    for registry, seqs in reg_spans.items():
        for rec in store.records_of(registry, min(seqs), max(seqs)):
            chosen[rec.leaf] = rec
    if not chosen:
        raise ProofUnavailable("no records")
    cp, receipt = _covering_checkpoint(store, max(chosen))
    # Drop registrations logged after the checkpoint (they prove nothing here).
    records = [chosen[leaf] for leaf in sorted(chosen) if leaf < cp.size]
    bundle = Bundle(created=int(time.time()) if now is None else now, subject=subject or {})
    bundle.checkpoints.append(cp.note)
    for rec in records:
        path = tree.inclusion_proof(rec.leaf, cp.size)
        verify_inclusion(rec.leaf, cp.size, hash_leaf(rec.raw), path, cp.root)
        bundle.records.append(BundleRecord(origin, rec.leaf, rec.raw))
        bundle.inclusion.append(InclusionProof(origin, rec.leaf, cp.size, tuple(path)))
    if receipt is not None:
        bundle.anchors.append(AnchorRef(origin, cp.size, receipt))
    return bundle


def add_consistency(
    bundle: Bundle, store: Store, tree: ProofSource, origin: str, old: int, new: int
) -> None:
    """Add checkpoint ``old`` and its consistency proof to checkpoint ``new``."""
    path = consistency(store, tree, old, new)
    cp = _checkpoint(store, old)
    if cp.note not in bundle.checkpoints:
        bundle.checkpoints.append(cp.note)
    bundle.consistency.append(ConsistencyProof(origin, old, new, tuple(path)))


def bundle_for_device(
    store: Store, tree: ProofSource, origin: str, device: str, seq_from: int, seq_to: int
) -> Bundle:
    """A bundle of one device's records ``seq_from..seq_to`` (those stored)."""
    recs = store.records_of(device, seq_from, seq_to)
    if not recs:
        raise ProofUnavailable(f"no records of {device} in {seq_from}..{seq_to}")
    return build_bundle(store, tree, origin, [r.leaf for r in recs], subject={"device": device})


def tag_scans(store: Store, uid: bytes) -> list[tuple[StoredRecord, Scan]]:
    """Every stored scan of the tag ``uid`` by a registered reader, by time then leaf."""
    out: list[tuple[StoredRecord, Scan]] = []
    for device in store.devices().values():
        if device.role != 2:  # handover readers (§2.5)
            continue
        for rec in store.records_of(device.id, 0, 2**32 - 1):
            if rec.kind != KIND_SCAN:
                continue
            payload = open_record(rec.raw).payload
            if isinstance(payload, Scan) and payload.uid == uid:
                out.append((rec, payload))
    out.sort(key=lambda item: (item[0].time, item[0].leaf))
    return out


def bundle_for_tag(
    store: Store,
    tree: ProofSource,
    origin: str,
    uid: bytes,
    holders: Iterable[tuple[str, int, int]] = (),
    *,
    now: int | None = None,
) -> Bundle:
    """The trace bundle of tag ``uid``: its scans, and for each ``(device,
    time_from, time_to)`` in ``holders`` that device's records timed inside
    the window (with the records between them, as :func:`build_bundle` adds).
    ``subject`` names the tag and the item its commission scan gave."""
    scans = tag_scans(store, uid)
    if not scans:
        raise ProofUnavailable(f"no scans of tag {uid.hex()}")
    leaves = [rec.leaf for rec, _ in scans]
    for device, t_from, t_to in holders:
        recs = [
            r
            for r in store.records_of(device, 0, 2**32 - 1)
            if r.tq > 0 and t_from <= r.time <= t_to
        ]
        leaves += [r.leaf for r in recs]
    subject: dict[str, Any] = {"uid": uid.hex()}
    item = next((scan.item for _, scan in scans if scan.item), None)
    if item is not None:
        subject["item"] = item
    return build_bundle(store, tree, origin, leaves, subject=subject, now=now)
