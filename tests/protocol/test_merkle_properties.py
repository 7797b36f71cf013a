"""Property tests (hypothesis): proofs from the tree verify; any change to them fails.

One tree of a few thousand distinct leaves is built once. For random sizes
and indexes, the proof the tree gives verifies; flipping any single bit of
any proof hash, or of a root or the leaf, fails with RootMismatchError; a
proof used for another tree size (against that size's real root) or another
index fails with a ProofError subclass.

A size change is tested against the root *of the changed size*: a proof does
not commit to the tree size on its own (the checkpoint signature binds size
and root), so e.g. the proof of leaf 0 in a tree of 3 leaves also checks out
as "leaf 0 of a 4-leaf tree whose root is the 3-leaf root".
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ProofError, RootMismatchError
from protocol.merkle import MerkleTree, verify_consistency, verify_inclusion
from tests.protocol.test_merkle_reference import leaf_data

N = 3000
MAX_SIZE = N - 5  # room to test larger sizes against real roots
EXAMPLES = settings(max_examples=150, deadline=None)


@cache
def tree() -> MerkleTree:
    t = MerkleTree()
    t.extend(leaf_data(i) for i in range(N))
    return t


@cache
def root(size: int) -> bytes:
    return tree().root(size)


def flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(0, size - 1)), size


@st.composite
def size_pair(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(1, size2)), size2


@EXAMPLES
@given(index_and_size(), st.data())
def test_inclusion_proof_verifies_and_any_bit_flip_fails(
    params: tuple[int, int], data: st.DataObject
) -> None:
    index, size = params
    t = tree()
    leaf, proof = t.leaf_hash(index), t.inclusion_proof(index, size)
    verify_inclusion(index, size, leaf, proof, root(size))

    bit = data.draw(st.integers(0, 255), label="bit")
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1), label="proof hash")
        bad = [*proof]
        bad[i] = flip(bad[i], bit)
        with pytest.raises(RootMismatchError):
            verify_inclusion(index, size, leaf, bad, root(size))
    for wrong_leaf, wrong_root in [(flip(leaf, bit), root(size)), (leaf, flip(root(size), bit))]:
        with pytest.raises(RootMismatchError):
            verify_inclusion(index, size, wrong_leaf, proof, wrong_root)


@EXAMPLES
@given(index_and_size(), st.integers(-3, 3), st.integers(-3, 3))
def test_inclusion_proof_fails_for_another_index_or_size(
    params: tuple[int, int], d_index: int, d_size: int
) -> None:
    index, size = params
    if d_index == d_size == 0:
        d_index = 1
    t = tree()
    leaf, proof = t.leaf_hash(index), t.inclusion_proof(index, size)
    other_size = size + d_size
    other_root = root(max(other_size, 0))
    with pytest.raises(ProofError):
        verify_inclusion(index + d_index, other_size, leaf, proof, other_root)


@EXAMPLES
@given(size_pair(), st.data())
def test_consistency_proof_verifies_and_any_bit_flip_fails(
    params: tuple[int, int], data: st.DataObject
) -> None:
    size1, size2 = params
    proof = tree().consistency_proof(size1, size2)
    verify_consistency(size1, size2, proof, root(size1), root(size2))

    bit = data.draw(st.integers(0, 255), label="bit")
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1), label="proof hash")
        bad = [*proof]
        bad[i] = flip(bad[i], bit)
        with pytest.raises(RootMismatchError):
            verify_consistency(size1, size2, bad, root(size1), root(size2))
    for r1, r2 in [(flip(root(size1), bit), root(size2)), (root(size1), flip(root(size2), bit))]:
        with pytest.raises(RootMismatchError):
            verify_consistency(size1, size2, proof, r1, r2)


@EXAMPLES
@given(size_pair(), st.integers(-3, 3), st.integers(-3, 3))
def test_consistency_proof_fails_for_other_sizes(params: tuple[int, int], d1: int, d2: int) -> None:
    size1, size2 = params
    other1, other2 = size1 + d1, size2 + d2
    if other1 == other2:
        other2 += 1  # equal sizes with equal real roots are trivially consistent
    if (other1, other2) == (size1, size2):
        other2 += 1
    proof = tree().consistency_proof(size1, size2)
    r1, r2 = root(max(other1, 0)), root(max(other2, 0))
    with pytest.raises(ProofError):
        verify_consistency(other1, other2, proof, r1, r2)
