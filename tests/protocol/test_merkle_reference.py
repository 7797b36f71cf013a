"""MerkleTree and the proof/verify modules against a naive RFC 9162 §2.1 reference.

The reference below is the recursive definition of the RFC, written for
clarity, not speed: MTH (§2.1.1), PATH (§2.1.3.1) and PROOF/SUBPROOF
(§2.1.4.1) over a list of leaf data. Other merkle test modules import it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from protocol.merkle import (
    FileNodeStore,
    MemoryNodeStore,
    MerkleTree,
    NodeStore,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from protocol.merkle import proof as nodes
from protocol.merkle.verify import consistency_proof_length, inclusion_proof_length

# --- the reference -------------------------------------------------------------


def split_point(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    """MTH(D[n]), RFC 9162 §2.1.1."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = split_point(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]), RFC 9162 §2.1.3.1."""
    if len(d) <= 1:
        return []
    k = split_point(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b), RFC 9162 §2.1.4.1."""
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = split_point(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true), RFC 9162 §2.1.4.1."""
    return ref_subproof(m, d, True)


def ref_path_length(m: int, n: int) -> int:
    """len(PATH(m, D[n])) by the same recursion, without hashing."""
    if n <= 1:
        return 0
    k = split_point(n)
    return 1 + (ref_path_length(m, k) if m < k else ref_path_length(m - k, n - k))


def ref_proof_length(m: int, n: int, b: bool = True) -> int:
    """len(SUBPROOF(m, D[n], b)) by the same recursion, without hashing."""
    if m == n:
        return 0 if b else 1
    k = split_point(n)
    if m <= k:
        return 1 + ref_proof_length(m, k, b)
    return 1 + ref_proof_length(m - k, n - k, False)


def leaf_data(i: int) -> bytes:
    """Distinct leaf data for index i (distinct leaves keep every subtree hash distinct)."""
    return b"leaf-" + i.to_bytes(4, "big")


# --- fixtures ------------------------------------------------------------------------

N = 64
LEAVES = [leaf_data(i) for i in range(N)]
ROOTS = [ref_mth(LEAVES[:n]) for n in range(N + 1)]

StoreFactory = Callable[[], NodeStore]


@pytest.fixture(params=["memory", "file"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of empty stores of one kind; file stores are closed afterwards."""
    opened: list[FileNodeStore] = []

    def make() -> NodeStore:
        if request.param == "memory":
            return MemoryNodeStore()
        # a small buffer so that reads cross the written/pending boundary often
        store = FileNodeStore(tmp_path / f"store{len(opened)}", buffer_nodes=3)
        opened.append(store)
        return store

    yield make
    for s in opened:
        s.close()


# --- cross-checks ----------------------------------------------------------------------


def test_reference_reproduces_published_root_of_eight_leaves() -> None:
    leaves = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243"]]
    leaves += [bytes.fromhex("5051525354555657"), bytes(range(0x60, 0x70))]
    want = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    assert ref_mth(leaves).hex() == want


def test_root_after_each_append_equals_reference(make_store: StoreFactory) -> None:
    tree = MerkleTree(make_store())
    assert tree.root() == ROOTS[0]
    for n, data in enumerate(LEAVES, start=1):
        assert tree.append(data) == n - 1
        assert tree.size == n
        assert tree.root() == ROOTS[n]


def test_root_of_every_earlier_size_equals_reference(make_store: StoreFactory) -> None:
    tree = MerkleTree(make_store())
    tree.extend(LEAVES)
    for n in range(N + 1):
        assert tree.root(n) == ROOTS[n], n


def test_inclusion_proofs_for_all_index_size_pairs_equal_reference(
    make_store: StoreFactory,
) -> None:
    tree = MerkleTree(make_store())
    tree.extend(LEAVES)
    for n in range(1, N + 1):
        for m in range(n):
            got = tree.inclusion_proof(m, n)
            assert got == ref_path(m, LEAVES[:n]), (m, n)
            leaf = tree.leaf_hash(m)
            assert root_from_inclusion_proof(m, n, leaf, got) == ROOTS[n]
            verify_inclusion(m, n, leaf, got, ROOTS[n])


def test_consistency_proofs_for_all_size_pairs_equal_reference(make_store: StoreFactory) -> None:
    tree = MerkleTree(make_store())
    tree.extend(LEAVES)
    for n in range(1, N + 1):
        for m in range(1, n + 1):
            got = tree.consistency_proof(m, n)
            assert got == ref_proof(m, LEAVES[:n]), (m, n)
            verify_consistency(m, n, got, ROOTS[m], ROOTS[n])


def test_proofs_at_current_size_equal_reference_while_growing(make_store: StoreFactory) -> None:
    tree = MerkleTree(make_store())
    for n in range(1, 34):
        tree.append(LEAVES[n - 1])
        for m in range(n):
            assert tree.inclusion_proof(m) == ref_path(m, LEAVES[:n])
            assert tree.consistency_proof(m + 1) == ref_proof(m + 1, LEAVES[:n])


def test_node_ranges_fold_to_reference_hashes() -> None:
    for n in range(1, N + 1):
        for m in range(n):
            ranges = nodes.inclusion_ranges(m, n)
            assert [ref_mth(LEAVES[a:b]) for a, b in ranges] == ref_path(m, LEAVES[:n])
        for m in range(1, n + 1):
            ranges = nodes.consistency_ranges(m, n)
            assert [ref_mth(LEAVES[a:b]) for a, b in ranges] == ref_proof(m, LEAVES[:n])


def test_subtree_nodes_fold_to_mth_of_their_range() -> None:
    leaf_hashes = [hashlib.sha256(b"\x00" + d).digest() for d in LEAVES]

    def node_hash(level: int, index: int) -> bytes:
        return ref_mth(LEAVES[index << level : (index + 1) << level])

    for n in range(1, N + 1):
        got = nodes.fold([node_hash(*node) for node in nodes.subtree_nodes(0, n)])
        assert got == ROOTS[n]
    assert nodes.fold([leaf_hashes[5]]) == leaf_hashes[5]


def test_reference_lengths_count_reference_proofs() -> None:
    for n in range(1, 33):
        for m in range(n):
            assert ref_path_length(m, n) == len(ref_path(m, LEAVES[:n]))
            assert ref_proof_length(m + 1, n) == len(ref_proof(m + 1, LEAVES[:n]))


def test_verifier_proof_lengths_equal_reference_lengths() -> None:
    for n in range(1, 200):
        for m in range(n):
            assert inclusion_proof_length(m, n) == ref_path_length(m, n), (m, n)
            assert len(nodes.inclusion(m, n)) == ref_path_length(m, n), (m, n)
        for m in range(1, n):
            assert consistency_proof_length(m, n) == ref_proof_length(m, n), (m, n)
            assert len(nodes.consistency(m, n)) == ref_proof_length(m, n), (m, n)


def test_proof_lengths_agree_far_beyond_the_tested_trees() -> None:
    sizes = [2**k + d for k in range(9, 63) for d in (-1, 0, 1)] + [2**63 - 1]
    for n in sizes:
        for m in (0, 1, n // 3, n // 2, n - 2, n - 1):
            assert inclusion_proof_length(m, n) == ref_path_length(m, n)
            assert len(nodes.inclusion_ranges(m, n)) == ref_path_length(m, n)
            if m > 0:
                assert consistency_proof_length(m, n) == ref_proof_length(m, n)
                assert len(nodes.consistency_ranges(m, n)) == ref_proof_length(m, n)
