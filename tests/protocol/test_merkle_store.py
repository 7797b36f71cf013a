"""NodeStore implementations: the shared contract, and FileNodeStore on disk."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from protocol.merkle import FileNodeStore, MemoryNodeStore, MerkleTree, NodeStore
from tests.protocol.test_merkle_reference import (
    LEAVES,
    ROOTS,
    StoreFactory,
    leaf_data,
    make_store,
)

__all__ = ["make_store"]  # the fixture, re-used from the reference module


def h(n: int) -> bytes:
    return n.to_bytes(32, "big")


# --- the contract, for every implementation ----------------------------------------------


def test_store_counts_zero_on_unused_levels(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.count(0) == store.count(5) == 0


def test_store_returns_appended_hashes_by_level_and_index(make_store: StoreFactory) -> None:
    store = make_store()
    for i in range(10):
        store.append(0, h(i))
        if i % 2:
            store.append(1, h(100 + i))
    assert store.count(0) == 10 and store.count(1) == 5
    assert [store.get(0, i) for i in range(10)] == [h(i) for i in range(10)]
    assert store.get(1, 4) == h(109)


def test_store_get_raises_index_error_outside_stored_nodes(make_store: StoreFactory) -> None:
    store = make_store()
    store.append(0, h(1))
    for level, index in [(0, 1), (0, -1), (1, 0), (7, 3)]:
        with pytest.raises(IndexError):
            store.get(level, index)


def test_store_truncate_keeps_a_prefix(make_store: StoreFactory) -> None:
    store = make_store()
    for i in range(9):
        store.append(0, h(i))
    store.flush()
    store.append(0, h(9))
    store.truncate(0, 12)  # nothing to drop
    assert store.count(0) == 10
    store.truncate(0, 4)
    assert store.count(0) == 4 and store.get(0, 3) == h(3)
    with pytest.raises(IndexError):
        store.get(0, 4)
    store.truncate(3, 0)  # an unused level
    store.append(0, h(44))
    assert store.get(0, 4) == h(44)


def test_store_rejects_hashes_that_are_not_32_bytes(make_store: StoreFactory) -> None:
    store = make_store()
    with pytest.raises(ValueError):
        store.append(0, bytes(31))
    assert store.count(0) == 0


def test_stores_satisfy_the_protocol() -> None:
    def use(store: NodeStore) -> int:
        return store.count(0)

    assert use(MemoryNodeStore()) == 0


# --- FileNodeStore -----------------------------------------------------------------------------


def test_file_store_gives_the_same_tree_as_memory_store(tmp_path: Path) -> None:
    with FileNodeStore(tmp_path, buffer_nodes=5) as store:
        on_disk, in_memory = MerkleTree(store), MerkleTree(MemoryNodeStore())
        for d in LEAVES:
            on_disk.append(d)
            in_memory.append(d)
            assert on_disk.root() == in_memory.root()
        for size in range(1, 65):
            assert on_disk.root(size) == in_memory.root(size)
            assert on_disk.inclusion_proof(size // 2, size) == in_memory.inclusion_proof(
                size // 2, size
            )
            assert on_disk.consistency_proof(size, 64) == in_memory.consistency_proof(size, 64)


def test_file_store_keeps_one_file_of_32_byte_hashes_per_level(tmp_path: Path) -> None:
    with FileNodeStore(tmp_path) as store:
        MerkleTree(store).extend(LEAVES[:6])
        store.flush()
        sizes = {p.name: p.stat().st_size for p in tmp_path.glob("level-*.hashes")}
    assert sizes == {"level-00.hashes": 6 * 32, "level-01.hashes": 3 * 32, "level-02.hashes": 32}


def test_file_store_reopened_continues_the_tree(tmp_path: Path) -> None:
    with FileNodeStore(tmp_path, buffer_nodes=7) as store:
        MerkleTree(store).extend(LEAVES[:29])
    with FileNodeStore(tmp_path) as store:
        tree = MerkleTree(store)
        assert tree.size == 29 and tree.root() == ROOTS[29]
        tree.extend(LEAVES[29:])
        assert tree.root() == ROOTS[64]
    with FileNodeStore(tmp_path) as store:
        assert MerkleTree(store).root(50) == ROOTS[50]


def test_file_store_cuts_a_torn_partial_hash_at_the_end(tmp_path: Path) -> None:
    with FileNodeStore(tmp_path) as store:
        MerkleTree(store).extend(LEAVES[:10])
    with (tmp_path / "level-00.hashes").open("ab") as f:
        f.write(b"\x17" * 13)  # a crash in the middle of writing the 11th leaf hash
    with (tmp_path / "level-01.hashes").open("ab") as f:
        f.write(b"\x17" * 31)
    with FileNodeStore(tmp_path) as store:
        assert store.torn == {0: 13, 1: 31}
        assert (tmp_path / "level-00.hashes").stat().st_size == 10 * 32
        tree = MerkleTree(store)
        assert tree.size == 10 and tree.root() == ROOTS[10]
        tree.append(LEAVES[10])
        assert tree.root() == ROOTS[11]


def test_file_store_recovers_from_levels_that_lost_different_suffixes(tmp_path: Path) -> None:
    with FileNodeStore(tmp_path) as store:
        MerkleTree(store).extend(LEAVES)
    # what a crash without fsync may leave: each file keeps some prefix
    for level, keep in [(0, 45), (1, 30), (2, 5), (3, 8), (4, 0)]:
        os.truncate(tmp_path / f"level-{level:02d}.hashes", keep * 32)
    with FileNodeStore(tmp_path) as store:
        tree = MerkleTree(store)
        assert tree.size == 45 and tree.root() == ROOTS[45]
        assert [store.count(level) for level in range(7)] == [45 >> lv for lv in range(7)]


def test_file_store_reads_see_unflushed_and_written_nodes(tmp_path: Path) -> None:
    with FileNodeStore(tmp_path, buffer_nodes=4) as store:
        for i in range(10):
            store.append(0, h(i))
        assert (tmp_path / "level-00.hashes").stat().st_size == 8 * 32  # two full buffers
        assert [store.get(0, i) for i in range(10)] == [h(i) for i in range(10)]
        store.truncate(0, 9)  # inside the buffer
        store.truncate(0, 6)  # inside what was written
        assert store.count(0) == 6 and store.get(0, 5) == h(5)
        store.append(0, h(66))
        store.flush()
        assert (tmp_path / "level-00.hashes").read_bytes()[-32:] == h(66)


def test_file_store_flush_puts_everything_on_disk(tmp_path: Path) -> None:
    store = FileNodeStore(tmp_path)
    MerkleTree(store).extend(LEAVES[:3])
    assert (tmp_path / "level-00.hashes").stat().st_size == 0  # still buffered
    store.flush()
    assert (tmp_path / "level-00.hashes").stat().st_size == 3 * 32
    store.close()


def test_file_store_refuses_a_second_opener(tmp_path: Path) -> None:
    with FileNodeStore(tmp_path), pytest.raises(RuntimeError, match="in use"):
        FileNodeStore(tmp_path)
    with FileNodeStore(tmp_path) as store:  # released on close
        assert store.count(0) == 0


def test_file_store_refuses_use_after_close(tmp_path: Path) -> None:
    store = FileNodeStore(tmp_path)
    store.append(0, h(1))
    store.close()
    store.close()  # twice is fine
    for call in (lambda: store.append(0, h(2)), lambda: store.get(0, 0), store.flush):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_file_store_memory_does_not_grow_with_the_tree(tmp_path: Path) -> None:
    n = 1 << 16
    with FileNodeStore(tmp_path) as store:
        tree = MerkleTree(store)
        tracemalloc.start()
        try:
            tree.extend(leaf_data(i) for i in range(n))
            proof = tree.inclusion_proof(n // 3)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        root = tree.root()
    in_memory = MerkleTree()
    in_memory.extend(leaf_data(i) for i in range(n))
    assert root == in_memory.root() and proof == in_memory.inclusion_proof(n // 3)
    # the hashes alone are 2 * n * 32 bytes = 4 MiB; buffers hold at most 32 KiB per level
    assert peak < 2**20, peak
