"""MerkleTree: appending, reading roots and proofs of any size, recovery and rollback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from protocol.merkle import (
    EMPTY_ROOT,
    MemoryNodeStore,
    MerkleTree,
    NodeStore,
    hash_leaf,
    verify_inclusion,
)
from tests.protocol.test_merkle_reference import (
    LEAVES,
    ROOTS,
    StoreFactory,
    leaf_data,
    make_store,
    ref_mth,
    ref_path,
    ref_proof,
)

__all__ = ["make_store"]  # the fixture, re-used from the reference module


class CountingStore(MemoryNodeStore):
    """A memory store that counts reads and writes."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.appends = 0

    def get(self, level: int, index: int) -> bytes:
        self.gets += 1
        return super().get(level, index)

    def append(self, level: int, h: bytes) -> None:
        self.appends += 1
        super().append(level, h)


def built(n: int, store: NodeStore | None = None) -> MerkleTree:
    tree = MerkleTree(store)
    tree.extend(leaf_data(i) for i in range(n))
    return tree


# --- appending ---------------------------------------------------------------------------


def test_empty_tree_has_size_zero_and_root_sha256_of_nothing() -> None:
    tree = MerkleTree()
    assert tree.size == 0
    assert tree.root() == tree.root(0) == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_append_returns_consecutive_indexes_from_zero() -> None:
    tree = MerkleTree()
    assert [tree.append(d) for d in LEAVES[:10]] == list(range(10))
    assert tree.size == 10


def test_append_leaf_hash_equals_append_of_the_data() -> None:
    a, b = MerkleTree(), MerkleTree()
    for d in LEAVES[:13]:
        a.append(d)
        b.append_leaf_hash(hash_leaf(d))
    assert a.root() == b.root() == ROOTS[13]
    assert b.leaf_hash(12) == hash_leaf(LEAVES[12])


@pytest.mark.parametrize("length", [0, 31, 33])
def test_append_leaf_hash_rejects_wrong_size(length: int) -> None:
    tree = MerkleTree()
    with pytest.raises(ValueError, match="32 bytes"):
        tree.append_leaf_hash(bytes(length))
    assert tree.size == 0


def test_extend_returns_index_of_first_new_leaf() -> None:
    tree = MerkleTree()
    assert tree.extend(LEAVES[:5]) == 0
    assert tree.extend(LEAVES[5:9]) == 5
    assert tree.extend([]) == 9
    assert tree.size == 9 and tree.root() == ROOTS[9]


def test_extend_equals_appending_one_by_one(make_store: StoreFactory) -> None:
    a, b = MerkleTree(make_store()), MerkleTree(make_store())
    for d in LEAVES:
        a.append(d)
    b.extend(iter(LEAVES))
    assert a.root() == b.root() == ROOTS[len(LEAVES)]
    assert [a.leaf_hash(i) for i in range(64)] == [b.leaf_hash(i) for i in range(64)]


def test_extend_keeps_the_tree_consistent_when_the_leaves_fail_midway() -> None:
    def leaves() -> Iterator[bytes]:
        yield from LEAVES[:11]
        raise RuntimeError("source failed")

    tree = MerkleTree()
    with pytest.raises(RuntimeError):
        tree.extend(leaves())
    assert tree.size == 11 and tree.root() == ROOTS[11]
    tree.append(LEAVES[11])
    assert tree.root() == ROOTS[12]


def test_append_stores_each_complete_subtree_once() -> None:
    store = CountingStore()
    n = 1000
    built(n, store)
    assert store.appends == 2 * n - n.bit_count()  # n leaves + n - popcount(n) parents
    assert store.gets == 0  # appending never reads the store


# --- reading -----------------------------------------------------------------------------


def test_leaf_hash_rejects_index_outside_the_tree() -> None:
    tree = built(3)
    assert tree.leaf_hash(2) == hash_leaf(leaf_data(2))
    for bad in (-1, 3, 10):
        with pytest.raises(IndexError):
            tree.leaf_hash(bad)


def test_root_rejects_size_beyond_the_tree() -> None:
    tree = built(5)
    for bad in (-1, 6):
        with pytest.raises(ValueError):
            tree.root(bad)


def test_inclusion_proof_rejects_index_or_size_out_of_range() -> None:
    tree = built(5)
    for index, size in [(5, None), (3, 3), (-1, 4), (0, 0), (0, 6)]:
        with pytest.raises(ValueError):
            tree.inclusion_proof(index, size)


def test_consistency_proof_rejects_sizes_out_of_range() -> None:
    tree = built(5)
    for size1, size2 in [(0, 5), (0, None), (4, 3), (6, None), (2, 6), (-1, 3)]:
        with pytest.raises(ValueError):
            tree.consistency_proof(size1, size2)


def test_consistency_proof_between_equal_sizes_is_empty() -> None:
    tree = built(5)
    assert tree.consistency_proof(5) == [] and tree.consistency_proof(3, 3) == []


def test_single_leaf_tree_has_empty_inclusion_proof_and_leaf_hash_as_root() -> None:
    tree = built(1)
    assert tree.inclusion_proof(0) == []
    assert tree.root() == tree.leaf_hash(0)


def test_root_and_proofs_read_o_log_n_nodes() -> None:
    store = CountingStore()
    n = 2**14 + 2**9 + 3
    tree = built(n, store)
    for size in (n - 1, 2**14 + 1, 12_345, 2**13 - 1):
        store.gets = 0
        tree.root(size)
        assert store.gets <= size.bit_count()
        store.gets = 0
        tree.inclusion_proof(size // 3, size)
        assert store.gets <= 2 * size.bit_length()
        store.gets = 0
        tree.consistency_proof(size // 2 + 1, size)
        assert store.gets <= 2 * size.bit_length() + 1
    store.gets = 0
    tree.root()
    assert store.gets == 0  # the current root comes from the in-memory frontier


def test_proofs_of_an_old_size_stay_valid_as_the_tree_grows() -> None:
    tree = built(10)
    proof, root = tree.inclusion_proof(7), tree.root()
    tree.extend(LEAVES[10:40])
    assert tree.inclusion_proof(7, 10) == proof and tree.root(10) == root
    verify_inclusion(7, 10, tree.leaf_hash(7), proof, root)


# --- reopening and recovery ----------------------------------------------------------------


def test_tree_reopened_on_a_store_continues_where_it_was(make_store: StoreFactory) -> None:
    store = make_store()
    built(23, store)
    tree = MerkleTree(store)
    assert tree.size == 23 and tree.root() == ROOTS[23]
    tree.extend(LEAVES[23:])
    assert tree.root() == ROOTS[64]
    assert tree.inclusion_proof(22) == ref_path(22, LEAVES)


def test_reopening_recomputes_parents_lost_in_a_crash() -> None:
    store = MemoryNodeStore()
    built(45, store)
    for level, keep in [(1, 17), (2, 3), (3, 0), (5, 0)]:
        store.truncate(level, keep)
    tree = MerkleTree(store)
    assert tree.size == 45 and tree.root() == ROOTS[45]
    assert all(store.count(level) == 45 >> level for level in range(8))
    assert tree.consistency_proof(13) == ref_proof(13, LEAVES[:45])


def test_reopening_drops_nodes_above_the_surviving_leaves() -> None:
    store = MemoryNodeStore()
    built(64, store)
    store.truncate(0, 37)  # the leaf level lost a suffix, the parents did not
    store.append(9, bytes(32))  # and a stray node far above
    tree = MerkleTree(store)
    assert tree.size == 37 and tree.root() == ROOTS[37]
    assert all(store.count(level) == 37 >> level for level in range(12))
    tree.extend(LEAVES[37:])
    assert tree.root() == ROOTS[64]


# --- rollback -------------------------------------------------------------------------------


def test_rollback_to_every_size_restores_that_tree(make_store: StoreFactory) -> None:
    for size in (0, 1, 2, 7, 8, 31, 32, 33, 63):
        tree = MerkleTree(make_store())
        tree.extend(LEAVES)
        tree.rollback(size)
        assert tree.size == size and tree.root() == ROOTS[size]
        for level in range(8):
            assert tree.store.count(level) == size >> level
        tree.extend(LEAVES[size:])
        assert tree.root() == ROOTS[64]


def test_rollback_then_different_leaves_gives_the_other_tree() -> None:
    tree = built(40)
    tree.rollback(30)
    other = [b"other-" + bytes([i]) for i in range(5)]
    tree.extend(other)
    assert tree.root() == ref_mth([leaf_data(i) for i in range(30)] + other)


def test_rollback_cannot_grow_the_tree() -> None:
    tree = built(4)
    for bad in (5, -1):
        with pytest.raises(ValueError):
            tree.rollback(bad)
    assert tree.size == 4
