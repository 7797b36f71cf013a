"""The gateway log: checkpoints, consistency before signing, crash recovery."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
from pathlib import Path

import pytest

from gateway.evidence.log import LogError
from gateway.evidence.proofs import (
    LiveTree,
    ProofUnavailable,
    TreeReader,
    consistency,
    inclusion,
    prove,
)
from protocol.bundle import Subject
from protocol.checkpoint import open_checkpoint
from protocol.errors import ProofError
from protocol.merkle import MerkleTree, hash_leaf, verify_consistency, verify_inclusion
from tests.gateway.core import Core, rec
from tests.gateway.devices import SimDevice


@pytest.fixture
def core(tmp_path: Path):
    c = Core(tmp_path / "gw")
    yield c
    c.close()


def feed(core: Core, dev: SimDevice, n: int) -> None:
    core.send(*(rec(dev, dev.reading()) for _ in range(n)))


def snapshot_db(core: Core, dest: Path) -> None:
    src = sqlite3.connect(core.dir / "gateway.db")
    dst = sqlite3.connect(dest)
    src.backup(dst)
    src.close()
    dst.close()


def restore_db(core: Core, snap: Path) -> None:
    for suffix in ("-wal", "-shm"):
        (core.dir / f"gateway.db{suffix}").unlink(missing_ok=True)
    shutil.copy(snap, core.dir / "gateway.db")


def test_checkpoints_are_signed_consistent_and_anchored(core: Core) -> None:
    dev = SimDevice("tl-log")
    core.register(dev)
    sizes = []
    for _ in range(4):
        feed(core, dev, 7)
        sizes.append(core.log.checkpoint().size)
    assert core.log.checkpoint() is None  # nothing new, nothing signed
    cps = core.store.checkpoints()
    assert [c.size for c in cps] == sizes == [8, 15, 22, 29]
    verifier = core.signer.verifier()
    for old, new in itertools.pairwise(cps):
        path = consistency(core.store, core.log.tree, old.size, new.size)
        verify_consistency(old.size, new.size, path, old.root, new.root)
        assert open_checkpoint(new.note, [verifier]).root_hash == new.root
    assert [a.size for a in core.store.anchors()] == sizes
    assert core.ledger.verify() == 4
    # An inclusion proof for any record against any checkpoint.
    for cp in cps:
        for leaf in range(cp.size):
            p = inclusion(core.store, core.log.tree, leaf, cp.size)
            verify_inclusion(
                leaf, cp.size, hash_leaf(core.store.record(leaf).raw), p["path"], cp.root
            )


def test_a_tree_behind_the_store_is_rolled_forward(core: Core, tmp_path: Path) -> None:
    dev = SimDevice("tl-fwd")
    core.register(dev)
    feed(core, dev, 10)
    first = core.log.checkpoint()
    core.close()
    shutil.copytree(core.dir / "tree", tmp_path / "tree-at-11")
    core.open()
    feed(core, dev, 10)  # committed; the tree files are then lost
    core.close()
    shutil.rmtree(core.dir / "tree")
    shutil.copytree(tmp_path / "tree-at-11", core.dir / "tree")
    core.open()
    assert core.log.recovered == {"rolled_back": 0, "rolled_forward": 10, "size": 21}
    second = core.log.checkpoint()
    verify_consistency(
        first.size,
        second.size,
        core.log.tree.consistency_proof(first.size, second.size),
        first.root,
        second.root,
    )


def test_a_tree_ahead_of_the_store_is_rolled_back_to_what_committed(
    core: Core, tmp_path: Path
) -> None:
    dev = SimDevice("tl-back")
    core.register(dev)
    feed(core, dev, 10)
    first = core.log.checkpoint()
    snapshot_db(core, tmp_path / "db-at-11")
    feed(core, dev, 5)  # these never "committed": the database is restored below
    core.close()
    restore_db(core, tmp_path / "db-at-11")
    core.open()
    assert core.log.recovered["rolled_back"] == 5 and core.log.size == 11
    dev.seq, dev.prev = 10, chain_prev(core, dev, 9)
    feed(core, dev, 3)
    second = core.log.checkpoint()
    verify_consistency(
        first.size,
        second.size,
        core.log.tree.consistency_proof(first.size, second.size),
        first.root,
        second.root,
    )


def test_a_wrong_tail_leaf_is_replaced_by_the_stored_record(core: Core) -> None:
    dev = SimDevice("tl-tail")
    core.register(dev)
    feed(core, dev, 4)
    core.log.checkpoint()
    feed(core, dev, 2)
    core.close()
    from protocol.merkle import FileNodeStore

    with FileNodeStore(core.dir / "tree") as nodes:  # a leaf the store never held
        tree = MerkleTree(nodes)
        tree.rollback(6)
        tree.append(b"not a stored record")
        tree.flush()
    core.open()
    assert core.log.recovered["rolled_back"] == 1 and core.log.size == 7
    assert core.log.tree.leaf_hash(6) == hash_leaf(core.store.record(6).raw)


def test_losing_checkpointed_records_is_an_error_not_a_rollback(core: Core, tmp_path: Path) -> None:
    dev = SimDevice("tl-lost")
    core.register(dev)
    snapshot_db(core, tmp_path / "db-at-1")
    feed(core, dev, 5)
    core.log.checkpoint()
    core.close()
    restore_db(core, tmp_path / "db-at-1")
    with pytest.raises(LogError, match="lost committed records"):
        core.open()


def test_an_inconsistent_tree_is_never_signed(core: Core) -> None:
    dev = SimDevice("tl-split")
    core.register(dev)
    feed(core, dev, 3)
    cp = core.log.checkpoint()
    feed(core, dev, 3)
    core.log.last = type(cp)(cp.size, bytes(32), cp.note, cp.time)  # a forged previous root
    with pytest.raises(ProofError):
        core.log.checkpoint()
    assert [c.size for c in core.store.checkpoints()] == [cp.size]


def test_tree_reader_serves_proofs_while_the_writer_holds_the_lock(core: Core) -> None:
    dev = SimDevice("tl-read")
    core.register(dev)
    feed(core, dev, 20)
    cp = core.log.checkpoint()
    feed(core, dev, 5)  # beyond the checkpoint, not flushed
    reader = TreeReader(core.dir / "tree", cp.size)
    try:
        assert reader.root(cp.size) == cp.root
        for leaf in (0, 7, cp.size - 1):
            assert reader.inclusion_proof(leaf, cp.size) == core.log.tree.inclusion_proof(
                leaf, cp.size
            )
        live = LiveTree(core.log.tree)
        for lo, hi in ((0, 16), (16, cp.size), (5, 6), (20, 21)):
            assert reader.range_hash(lo, hi) == live.range_hash(lo, hi)
        subject = Subject(bytes(7))
        bundle = prove(core.store, reader, core.log.origin, [6, 5, 5], subject)
        assert [r.index for r in bundle.records] == [5, 6]
        (mp,) = bundle.proofs
        assert (mp.tree_size, mp.leaves) == (cp.size, (5, 6))
        assert [a.tree_size for a in bundle.anchors] == [cp.size]
        with pytest.raises(ProofUnavailable, match="no anchored checkpoint covers leaf"):
            prove(core.store, reader, core.log.origin, [cp.size + 1], subject)
    finally:
        reader.close()


def chain_prev(core: Core, dev: SimDevice, seq: int) -> bytes:
    from protocol.record import chain_hash

    return chain_hash(core.store.record_by_seq(dev.id, seq).raw)


def test_a_database_older_than_the_ledger_is_refused(core: Core, tmp_path: Path) -> None:
    dev = SimDevice("tl-old")
    core.register(dev)
    snapshot_db(core, tmp_path / "db-at-1")
    feed(core, dev, 5)
    core.log.checkpoint()
    core.close()
    restore_db(core, tmp_path / "db-at-1")
    (core.dir / "tree" / "checkpoint.json").unlink()  # only the ledger remembers now
    with pytest.raises(LogError, match="older than the ledger"):
        core.open()
