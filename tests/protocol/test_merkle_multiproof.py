"""Multi-leaf inclusion proofs (protocol/merkle/multiproof.py, docs/protocol.md §9).

The reference here is the definition itself, written as the obvious
recursion over leaf data (MTH computed from scratch, RFC 9162 §2.1.1); the
module under test walks the tree bottom-up without recursion. They must agree
on the root, on which ranges a proof holds and on their order, for every tree
and leaf set tried. A single-leaf multiproof is checked against the published
RFC 9162 inclusion vectors, and every mutation of a good proof must fail.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from functools import cache
from hashlib import sha256
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ProofError, ProofShapeError, RootMismatchError
from protocol.merkle import (
    MAX_MULTIPROOF_TREE_SIZE,
    MerkleTree,
    hash_children,
    hash_leaf,
    multiproof_ranges,
    root_from_multiproof,
    verify_multiproof,
)
from protocol.merkle import proof as nodes_of
from protocol.merkle.verify import inclusion_proof_length
from tests.protocol.test_merkle_reference import leaf_data

DATA = Path(__file__).parent / "testdata" / "merkle"


# --- the reference: the definition, recursively, from the leaf data ----------------------


def mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 §2.1.1, from scratch."""
    n = len(leaves)
    if n == 0:
        return sha256(b"").digest()
    if n == 1:
        return hash_leaf(leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return hash_children(mth(leaves[:k]), mth(leaves[k:]))


def reference(data: Sequence[bytes], proven: Sequence[int]) -> tuple[bytes, list[tuple[int, int]]]:
    """The root and the ``nodes`` ranges, in order, of the definition's recursion."""
    used: list[tuple[int, int]] = []

    def subtree(lo: int, hi: int, inside: list[int]) -> bytes:
        if not inside:
            used.append((lo, hi))
            return mth(data[lo:hi])
        if hi - lo == 1:
            return hash_leaf(data[lo])
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        left = subtree(lo, lo + k, [i for i in inside if i < lo + k])
        right = subtree(lo + k, hi, [i for i in inside if i >= lo + k])
        return hash_children(left, right)

    return subtree(0, len(data), list(proven)), used


@cache
def data(size: int) -> tuple[bytes, ...]:
    return tuple(leaf_data(i) for i in range(size))


def prove(size: int, leaves: Sequence[int]) -> tuple[list[bytes], list[bytes], bytes]:
    """(leaf hashes, nodes, root) of a genuine multiproof built from the reference."""
    d = data(size)
    root, ranges = reference(d, leaves)
    return [hash_leaf(d[i]) for i in leaves], [mth(d[lo:hi]) for lo, hi in ranges], root


# --- agreement with the definition ------------------------------------------------------


@pytest.mark.parametrize("size", range(1, 18))
def test_every_leaf_set_of_small_trees_agrees_with_the_definition(size: int) -> None:
    d = data(size)
    for mask in range(1, 1 << size, max(1, (1 << size) // 300)):
        leaves = [i for i in range(size) if mask >> i & 1]
        root, ranges = reference(d, leaves)
        assert multiproof_ranges(size, leaves) == ranges
        hashes = [hash_leaf(d[i]) for i in leaves]
        nodes = [mth(d[lo:hi]) for lo, hi in ranges]
        assert root == mth(d)
        assert root_from_multiproof(size, leaves, hashes, nodes) == root
        verify_multiproof(size, leaves, hashes, nodes, root)


@st.composite
def tree_and_leaves(draw: st.DrawFn) -> tuple[int, list[int]]:
    size = draw(st.integers(1, 300))
    leaves = draw(st.sets(st.integers(0, size - 1), min_size=1, max_size=size))
    return size, sorted(leaves)


@given(tree_and_leaves())
@settings(max_examples=300, deadline=None)
def test_random_trees_and_leaf_sets_agree_with_the_definition(case: tuple[int, list[int]]) -> None:
    size, leaves = case
    hashes, nodes, root = prove(size, leaves)
    assert root == mth(data(size))
    assert multiproof_ranges(size, leaves) == reference(data(size), leaves)[1]
    verify_multiproof(size, leaves, hashes, nodes, root)


def test_all_leaves_need_no_nodes_and_ranges_are_disjoint_and_ascending() -> None:
    size = 77
    assert multiproof_ranges(size, list(range(size))) == []
    verify_multiproof(
        size, list(range(size)), [hash_leaf(x) for x in data(size)], [], mth(data(size))
    )
    ranges = multiproof_ranges(1000, [3, 500, 501, 998])
    assert all(a[1] <= b[0] for a, b in pairwise(ranges))
    assert all(lo < hi for lo, hi in ranges)


def test_one_leaf_tree() -> None:
    leaf = hash_leaf(b"only")
    assert multiproof_ranges(1, [0]) == []
    assert root_from_multiproof(1, [0], [leaf], []) == leaf


# --- a single leaf: the RFC 9162 audit path ------------------------------------------------


def by_position(index: int, size: int, path: Sequence[bytes]) -> list[bytes]:
    """The audit path (leaf side first, RFC 9162 §2.1.3.1) in left-to-right order."""
    ranges = nodes_of.inclusion_ranges(index, size)
    return [h for _, h in sorted(zip(ranges, path, strict=True))]


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 100])
def test_single_leaf_nodes_are_the_audit_path_by_position(size: int) -> None:
    tree = MerkleTree()
    tree.extend(data(size))
    for index in range(size):
        path = tree.inclusion_proof(index, size)
        hashes, nodes, _ = prove(size, [index])
        assert nodes == by_position(index, size, path)
        # the siblings left of the leaf come root side first, those right of it leaf side first:
        ranges = nodes_of.inclusion_ranges(index, size)
        left = [h for (lo, _), h in zip(ranges, path, strict=True) if lo < index]
        right = [h for (lo, _), h in zip(ranges, path, strict=True) if lo > index]
        assert nodes == left[::-1] + right
        verify_multiproof(size, [index], hashes, nodes, tree.root(size))


def test_single_leaf_nodes_are_reversed_audit_path_only_for_the_last_leaf() -> None:
    """The audit path reversed (root side first) is the multiproof order exactly when no
    sibling lies right of the leaf: leaf 0 of 4 gives the path in its own order."""
    tree = MerkleTree()
    tree.extend(data(4))
    assert prove(4, [3])[1] == tree.inclusion_proof(3, 4)[::-1]
    assert prove(4, [0])[1] == tree.inclusion_proof(0, 4)
    assert prove(4, [0])[1] != tree.inclusion_proof(0, 4)[::-1]


def vector_cases() -> list[dict[str, object]]:
    files = sorted((DATA / "inclusion").glob("*.json"))
    assert files
    return [c for c in (json.loads(f.read_text()) for f in files) if c["want"] == "ok"]


@pytest.mark.parametrize("case", vector_cases(), ids=lambda c: str(c["description"]))
def test_published_inclusion_vectors_verify_as_single_leaf_multiproofs(
    case: dict[str, object],
) -> None:
    index, size = case["index"], case["size"]
    assert isinstance(index, int)
    assert isinstance(size, int)
    path = [bytes.fromhex(h) for h in case["proof"]]  # type: ignore[attr-defined]
    leaf = bytes.fromhex(str(case["leaf_hash"]))
    root = bytes.fromhex(str(case["root"]))
    nodes = by_position(index, size, path)
    verify_multiproof(size, [index], [leaf], nodes, root)
    if len(nodes) > 1 and nodes != path[::-1] and nodes != path:
        with pytest.raises(RootMismatchError):
            verify_multiproof(size, [index], [leaf], path, root)


# --- every mutation fails ------------------------------------------------------------------

SIZE = 45
LEAVES = [0, 5, 6, 17, 30, 44]
HASHES, NODES, ROOT = prove(SIZE, LEAVES)


def test_the_fixture_proof_verifies() -> None:
    assert len(NODES) == len(multiproof_ranges(SIZE, LEAVES)) > 3
    verify_multiproof(SIZE, LEAVES, HASHES, NODES, ROOT)


@pytest.mark.parametrize("which", range(len(NODES)))
@pytest.mark.parametrize("bit", [0, 7, 100, 255])
def test_flipping_any_node_bit_fails(which: int, bit: int) -> None:
    nodes = list(NODES)
    b = bytearray(nodes[which])
    b[bit // 8] ^= 1 << (bit % 8)
    nodes[which] = bytes(b)
    with pytest.raises(RootMismatchError) as info:
        verify_multiproof(SIZE, LEAVES, HASHES, nodes, ROOT)
    assert info.value.expected == ROOT.hex()


@pytest.mark.parametrize("which", range(len(LEAVES)))
def test_changing_any_leaf_hash_fails(which: int) -> None:
    hashes = list(HASHES)
    hashes[which] = hash_leaf(b"forged")
    with pytest.raises(RootMismatchError):
        verify_multiproof(SIZE, LEAVES, hashes, NODES, ROOT)


def test_swapping_nodes_or_leaf_hashes_fails() -> None:
    for i in range(len(NODES) - 1):
        nodes = list(NODES)
        nodes[i], nodes[i + 1] = nodes[i + 1], nodes[i]
        with pytest.raises(RootMismatchError):
            verify_multiproof(SIZE, LEAVES, HASHES, nodes, ROOT)
    hashes = list(HASHES)
    hashes[0], hashes[1] = hashes[1], hashes[0]
    with pytest.raises(RootMismatchError):
        verify_multiproof(SIZE, LEAVES, hashes, NODES, ROOT)


def test_dropping_or_adding_a_node_fails_on_shape() -> None:
    for i in range(len(NODES)):
        with pytest.raises(ProofShapeError) as info:
            verify_multiproof(SIZE, LEAVES, HASHES, NODES[:i] + NODES[i + 1 :], ROOT)
        assert (info.value.expected, info.value.found) == (len(NODES), len(NODES) - 1)
    for i in range(len(NODES) + 1):
        with pytest.raises(ProofShapeError):
            verify_multiproof(SIZE, LEAVES, HASHES, [*NODES[:i], bytes(32), *NODES[i:]], ROOT)


@pytest.mark.parametrize(
    "leaves",
    [
        [],
        [5, 0, 6, 17, 30, 44],  # reordered
        [0, 5, 5, 17, 30, 44],  # repeated
        [0, 5, 6, 17, 30, 45],  # out of range
        [-1, 5, 6, 17, 30, 44],
        [0, 5, 6, 17, 30, 2**64],
        [0, 5, 6, 17, 30, True],
        [0, 5, 6.0, 17, 30, 44],
        "056",
    ],
)
def test_bad_leaves_fail_on_shape(leaves: list[int]) -> None:
    hashes = HASHES[: len(leaves)] + [bytes(32)] * (len(leaves) - len(HASHES))
    with pytest.raises(ProofShapeError):
        verify_multiproof(SIZE, leaves, hashes, NODES, ROOT)
    with pytest.raises(ProofShapeError):
        multiproof_ranges(SIZE, leaves)


def test_other_leaves_or_size_with_the_same_nodes_fail() -> None:
    for leaves in ([0, 5, 6, 17, 30, 43], [1, 5, 6, 17, 30, 44], [0, 4, 6, 17, 30, 44]):
        with pytest.raises(ProofError):
            verify_multiproof(SIZE, leaves, HASHES, NODES, ROOT)
    for size in (SIZE - 0 + 1, SIZE + 19, 64):
        with pytest.raises(ProofError):
            verify_multiproof(size, LEAVES, HASHES, NODES, ROOT)


@pytest.mark.parametrize("size", [0, -1, MAX_MULTIPROOF_TREE_SIZE + 1, True, 45.0, "45"])
def test_bad_tree_size_fails_on_shape(size: object) -> None:
    with pytest.raises(ProofShapeError):
        verify_multiproof(size, LEAVES, HASHES, NODES, ROOT)  # type: ignore[arg-type]


def test_hashes_of_the_wrong_size_or_type_fail_on_shape() -> None:
    for bad in (bytes(31), bytes(33), bytearray(32), "00" * 32):
        with pytest.raises(ProofShapeError):
            verify_multiproof(SIZE, LEAVES, HASHES, [*NODES[:-1], bad], ROOT)  # type: ignore[list-item]
        with pytest.raises(ProofShapeError):
            verify_multiproof(SIZE, LEAVES, [*HASHES[:-1], bad], NODES, ROOT)  # type: ignore[list-item]
        with pytest.raises(ProofShapeError):
            verify_multiproof(SIZE, LEAVES, HASHES, NODES, bad)  # type: ignore[arg-type]
    with pytest.raises(ProofShapeError):
        verify_multiproof(SIZE, LEAVES, HASHES[:-1], NODES, ROOT)


def test_shape_errors_say_what_was_expected_and_found() -> None:
    with pytest.raises(ProofShapeError) as info:
        verify_multiproof(SIZE, [0, 45], HASHES[:2], NODES, ROOT)
    assert (info.value.expected, info.value.found) == ("< 45", 45)
    assert info.value.code == "proof_mismatch"


# --- the largest trees, and speed ---------------------------------------------------------


def test_largest_tree_size_has_64_levels() -> None:
    size = MAX_MULTIPROOF_TREE_SIZE
    ranges = multiproof_ranges(size, [0, size - 1])
    # leaf 0: 63 siblings in the perfect left half of 2**63 leaves; the last leaf: 62 in the
    # right part of 2**63 - 1 leaves; the two paths meet at the root.
    assert len(ranges) == 63 + 62
    assert ranges[0] == (1, 2)
    assert ranges[62] == (2**62, 2**63)
    root = root_from_multiproof(size, [0, size - 1], [bytes(32)] * 2, [bytes(32)] * len(ranges))
    assert len(root) == 32
    middle = size // 3
    assert len(multiproof_ranges(size, [middle])) == inclusion_proof_length(middle, size)


def test_100k_leaves_verify_well_under_a_second() -> None:
    size = 300_000
    tree = MerkleTree()
    tree.extend(leaf_data(i) for i in range(size))
    leaves = sorted(random.Random(7).sample(range(size), 100_000))
    hashes = [tree.leaf_hash(i) for i in leaves]

    def subtree(lo: int, hi: int) -> bytes:
        return nodes_of.fold([tree._store.get(*n) for n in nodes_of.subtree_nodes(lo, hi)])

    nodes = [subtree(lo, hi) for lo, hi in multiproof_ranges(size, leaves)]
    start = time.perf_counter()
    verify_multiproof(size, leaves, hashes, nodes, tree.root())
    elapsed = time.perf_counter() - start
    assert elapsed < 5, f"{elapsed:.2f} s"  # linear, not quadratic (about 0.3 s; bench/ measures)


# --- the prover side: MerkleTree.multiproof --------------------------------------------------


@given(tree_and_leaves(), st.integers(0, 40))
@settings(max_examples=150, deadline=None)
def test_tree_multiproof_matches_the_definition_for_any_earlier_size(
    case: tuple[int, list[int]], extra: int
) -> None:
    size, leaves = case
    tree = MerkleTree()
    tree.extend(data(size + extra))
    _, nodes, root = prove(size, leaves)
    assert tree.multiproof(leaves, size) == nodes
    assert tree.root(size) == root
    if not extra:
        assert tree.multiproof(leaves) == nodes


def test_tree_multiproof_refuses_sizes_and_leaves_out_of_range() -> None:
    tree = MerkleTree()
    tree.extend(data(10))
    with pytest.raises(ValueError):
        tree.multiproof([0], 11)
    with pytest.raises(ProofShapeError):
        tree.multiproof([10], 10)
    with pytest.raises(ProofShapeError):
        tree.multiproof([], 10)
