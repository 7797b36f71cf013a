"""verify_inclusion / verify_consistency: shape checks before hashing, errors with want/got."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from protocol.errors import ProofError, ProofShapeError, RootMismatchError, VerificationError
from protocol.merkle import (
    MAX_PROOF_HASHES,
    MAX_TREE_SIZE,
    MerkleTree,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from protocol.merkle import verify as verify_module
from protocol.merkle.verify import consistency_proof_length, inclusion_proof_length


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    t = MerkleTree()
    t.extend(f"record {i}".encode() for i in range(21))
    return t


def inclusion_args(tree: MerkleTree, index: int = 5, size: int = 21) -> dict[str, Any]:
    return {
        "index": index,
        "size": size,
        "leaf_hash": tree.leaf_hash(index),
        "proof": tree.inclusion_proof(index, size),
        "root": tree.root(size),
    }


def consistency_args(tree: MerkleTree, size1: int = 7, size2: int = 21) -> dict[str, Any]:
    return {
        "size1": size1,
        "size2": size2,
        "proof": tree.consistency_proof(size1, size2),
        "root1": tree.root(size1),
        "root2": tree.root(size2),
    }


def shape_error(fn: Any, **kwargs: Any) -> ProofShapeError:
    with pytest.raises(ProofShapeError) as info:
        fn(**kwargs)
    return info.value


# --- inclusion ---------------------------------------------------------------------------


def test_verify_inclusion_accepts_valid_proof(tree: MerkleTree) -> None:
    verify_inclusion(**inclusion_args(tree))  # returns nothing, raises nothing


def test_verify_inclusion_rejects_short_proof(tree: MerkleTree) -> None:
    args = inclusion_args(tree)
    args["proof"] = args["proof"][:-1]
    err = shape_error(verify_inclusion, **args)
    assert (err.expected, err.found) == (5, 4)
    assert "want 5, got 4" in str(err)


def test_verify_inclusion_rejects_long_proof(tree: MerkleTree) -> None:
    args = inclusion_args(tree)
    args["proof"] = [*args["proof"], args["root"]]
    err = shape_error(verify_inclusion, **args)
    assert (err.expected, err.found) == (5, 6)


def test_verify_inclusion_rejects_more_than_64_hashes_before_looking_at_them() -> None:
    proof: list[Any] = [None] * (MAX_PROOF_HASHES + 1)  # not even hashes: never inspected
    err = shape_error(
        verify_inclusion, index=0, size=2, leaf_hash=bytes(32), proof=proof, root=bytes(32)
    )
    assert err.found == MAX_PROOF_HASHES + 1


def test_verify_inclusion_rejects_index_not_below_size(tree: MerkleTree) -> None:
    args = inclusion_args(tree)
    err = shape_error(verify_inclusion, **{**args, "index": 21})
    assert err.found == 21 and "21" in str(err.expected)
    shape_error(verify_inclusion, **{**args, "index": 22})


def test_verify_inclusion_rejects_negative_index_and_empty_tree(tree: MerkleTree) -> None:
    args = inclusion_args(tree)
    shape_error(verify_inclusion, **{**args, "index": -1})
    shape_error(verify_inclusion, **{**args, "index": 0, "size": 0, "proof": []})


def test_verify_inclusion_rejects_sizes_beyond_63_bits(tree: MerkleTree) -> None:
    args = inclusion_args(tree)
    shape_error(verify_inclusion, **{**args, "size": MAX_TREE_SIZE + 1})
    shape_error(verify_inclusion, **{**args, "size": 2**64 + 21})


def test_verify_inclusion_rejects_non_integer_index(tree: MerkleTree) -> None:
    args = inclusion_args(tree)
    shape_error(verify_inclusion, **{**args, "index": True})
    shape_error(verify_inclusion, **{**args, "index": 5.0})


@pytest.mark.parametrize("field", ["leaf_hash", "root"])
@pytest.mark.parametrize("length", [0, 20, 31, 33, 64])
def test_verify_inclusion_rejects_wrong_hash_size(
    tree: MerkleTree, field: str, length: int
) -> None:
    args = inclusion_args(tree)
    args[field] = bytes(length)
    err = shape_error(verify_inclusion, **args)
    assert (err.expected, err.found) == (32, length)


def test_verify_inclusion_rejects_wrong_size_proof_hash(tree: MerkleTree) -> None:
    args = inclusion_args(tree)
    args["proof"] = [*args["proof"][:2], args["proof"][2][:31], *args["proof"][3:]]
    err = shape_error(verify_inclusion, **args)
    assert "proof[2]" in str(err) and (err.expected, err.found) == (32, 31)


def test_verify_inclusion_rejects_text_instead_of_bytes(tree: MerkleTree) -> None:
    args = inclusion_args(tree)
    args["proof"] = [h.hex()[:32] for h in args["proof"]]
    err = shape_error(verify_inclusion, **args)
    assert (err.expected, err.found) == ("bytes", "str")


def test_verify_inclusion_checks_shape_before_hashing(tree: MerkleTree) -> None:
    args = inclusion_args(tree)
    args["root"] = bytes(31)
    with mock.patch.object(verify_module, "hash_children") as hashed:
        shape_error(verify_inclusion, **args)
    hashed.assert_not_called()


def test_verify_inclusion_reports_both_roots_on_mismatch(tree: MerkleTree) -> None:
    args = inclusion_args(tree)
    other = tree.root(20)
    with pytest.raises(RootMismatchError) as info:
        verify_inclusion(**{**args, "root": other})
    err = info.value
    assert err.expected == other.hex() and err.found == args["root"].hex()
    assert isinstance(err, ProofError) and isinstance(err, VerificationError)
    assert err.code == "proof_mismatch"


def test_root_from_inclusion_proof_returns_the_root(tree: MerkleTree) -> None:
    args = inclusion_args(tree, 20, 21)
    del args["root"]
    assert root_from_inclusion_proof(**args) == tree.root(21)


def test_root_from_inclusion_proof_checks_shape(tree: MerkleTree) -> None:
    args = inclusion_args(tree)
    del args["root"]
    shape_error(root_from_inclusion_proof, **{**args, "proof": args["proof"][1:]})


def test_single_leaf_tree_needs_empty_proof_and_root_equal_to_leaf() -> None:
    leaf = bytes(range(32))
    verify_inclusion(0, 1, leaf, [], leaf)
    shape_error(verify_inclusion, index=0, size=1, leaf_hash=leaf, proof=[leaf], root=leaf)
    with pytest.raises(RootMismatchError):
        verify_inclusion(0, 1, leaf, [], bytes(32))


# --- consistency ---------------------------------------------------------------------------


def test_verify_consistency_accepts_valid_proof(tree: MerkleTree) -> None:
    verify_consistency(**consistency_args(tree))  # returns nothing, raises nothing


def test_verify_consistency_rejects_short_proof(tree: MerkleTree) -> None:
    args = consistency_args(tree)
    want = len(args["proof"])
    args["proof"] = args["proof"][:-1]
    err = shape_error(verify_consistency, **args)
    assert (err.expected, err.found) == (want, want - 1)


def test_verify_consistency_rejects_empty_proof_for_different_sizes(tree: MerkleTree) -> None:
    err = shape_error(verify_consistency, **{**consistency_args(tree), "proof": []})
    assert err.found == 0


def test_verify_consistency_rejects_long_proof(tree: MerkleTree) -> None:
    args = consistency_args(tree)
    args["proof"] = [args["root1"], *args["proof"]]
    shape_error(verify_consistency, **args)


def test_verify_consistency_rejects_first_size_above_second(tree: MerkleTree) -> None:
    err = shape_error(verify_consistency, **{**consistency_args(tree), "size1": 22})
    assert err.found == 22 and "21" in str(err.expected)


def test_verify_consistency_rejects_proof_from_empty_tree(tree: MerkleTree) -> None:
    args = consistency_args(tree)
    shape_error(verify_consistency, **{**args, "size1": 0, "proof": []})
    shape_error(verify_consistency, **{**args, "size1": 0, "size2": 0, "proof": []})


def test_verify_consistency_rejects_more_than_64_hashes(tree: MerkleTree) -> None:
    args = consistency_args(tree)
    err = shape_error(verify_consistency, **{**args, "proof": [bytes(32)] * 65})
    assert err.found == 65


@pytest.mark.parametrize("field", ["root1", "root2"])
def test_verify_consistency_rejects_wrong_root_size(tree: MerkleTree, field: str) -> None:
    err = shape_error(verify_consistency, **{**consistency_args(tree), field: b"WrongRoot"})
    assert (err.expected, err.found) == (32, 9)


def test_verify_consistency_equal_sizes_need_empty_proof_and_equal_roots(tree: MerkleTree) -> None:
    root = tree.root(9)
    verify_consistency(9, 9, [], root, root)
    shape_error(verify_consistency, size1=9, size2=9, proof=[root], root1=root, root2=root)
    with pytest.raises(RootMismatchError) as info:
        verify_consistency(9, 9, [], root, tree.root(8))
    assert info.value.expected == root.hex()


def test_verify_consistency_names_the_root_that_differs(tree: MerkleTree) -> None:
    args = consistency_args(tree)
    with pytest.raises(RootMismatchError, match="first root"):
        verify_consistency(**{**args, "root1": tree.root(6)})
    with pytest.raises(RootMismatchError, match="second root") as info:
        verify_consistency(**{**args, "root2": tree.root(20)})
    assert info.value.found == args["root2"].hex()


def test_verify_consistency_checks_shape_before_hashing(tree: MerkleTree) -> None:
    args = consistency_args(tree)
    args["proof"] = [*args["proof"][:-1], b""]
    with mock.patch.object(verify_module, "hash_children") as hashed:
        shape_error(verify_consistency, **args)
    hashed.assert_not_called()


# --- limits ----------------------------------------------------------------------------------


def test_no_valid_proof_in_the_largest_tree_exceeds_64_hashes() -> None:
    n = MAX_TREE_SIZE
    assert inclusion_proof_length(0, n) == 63
    assert inclusion_proof_length(n - 1, n) <= MAX_PROOF_HASHES
    worst = max(consistency_proof_length(m, n) for m in (1, 3, 2**62 - 1, 2**62 + 1, n - 2, n - 1))
    assert worst <= MAX_PROOF_HASHES
    assert consistency_proof_length(2**62 - 1, n) == 64  # seed + a node at every level


def test_verify_inclusion_works_at_the_largest_tree_size() -> None:
    n = MAX_TREE_SIZE
    leaf = bytes(32)
    proof = [bytes([i]) * 32 for i in range(inclusion_proof_length(n - 1, n))]
    root = root_from_inclusion_proof(n - 1, n, leaf, proof)
    verify_inclusion(n - 1, n, leaf, proof, root)
