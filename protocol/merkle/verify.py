"""Check inclusion and consistency proofs (RFC 9162 §2.1.3.2 and §2.1.4.2).

Verification raises, it never returns a bool. Every input is checked for
shape before any hashing, with want/got in the error:

- sizes and indexes are integers, ``0 <= index < size <= MAX_TREE_SIZE``;
- a proof has at most ``MAX_PROOF_HASHES`` hashes, then exactly the number
  the sizes call for (computed here from the sizes alone);
- every hash (leaf, roots, each proof entry) is ``bytes`` of 32 bytes.

A shape failure raises ``ProofShapeError``; a proof of the right shape that
leads to another root raises ``RootMismatchError``. Both are ``ProofError``.

This module does not use ``protocol.merkle.proof``: the proof length is
derived independently here, so the tests can cross-check the two.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.errors import ProofShapeError, RootMismatchError
from protocol.merkle.hasher import HASH_SIZE, hash_children

__all__ = [
    "MAX_PROOF_HASHES",
    "MAX_TREE_SIZE",
    "consistency_proof_length",
    "inclusion_proof_length",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

MAX_TREE_SIZE = 2**63 - 1
"""Largest tree size accepted: a signed 64-bit integer (SQLite INTEGER,
PostgreSQL BIGINT). Within it no proof needs more than 64 hashes."""

MAX_PROOF_HASHES = 64
"""No valid proof in a tree of at most ``MAX_TREE_SIZE`` leaves is longer."""


def inclusion_proof_length(index: int, size: int) -> int:
    """Number of hashes in the inclusion proof of leaf ``index`` in a tree of ``size``.

    Below the level where the paths to ``index`` and to the last leaf
    ``size - 1`` part, every level contributes a sibling; above it, only the
    levels where the leaf's ancestor is a right child do. Requires
    ``0 <= index < size``.
    """
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(size1: int, size2: int) -> int:
    """Number of hashes in the consistency proof from ``size1`` to ``size2``.

    It is the inclusion path of the last complete subtree of the old tree
    (of ``2**shift`` leaves, ending at leaf ``size1 - 1``), from level
    ``shift`` up, plus that subtree's own hash unless it is the whole old
    tree (``size1`` a power of two). Requires ``0 < size1 < size2``.
    """
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    shift = (size1 & -size1).bit_length() - 1
    seed = 0 if size1 == 1 << shift else 1
    return seed + inner - shift + border


def _check_int(name: str, value: int, low: int) -> None:
    if type(value) is not int:
        raise ProofShapeError(
            f"{name} must be an integer", expected="int", found=type(value).__name__
        )
    if not low <= value <= MAX_TREE_SIZE:
        raise ProofShapeError(
            f"{name} is out of range", expected=f"{low}..{MAX_TREE_SIZE}", found=value
        )


def _check_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes):
        raise ProofShapeError(f"{name} must be bytes", expected="bytes", found=type(value).__name__)
    if len(value) != HASH_SIZE:
        raise ProofShapeError(
            f"{name} must be a {HASH_SIZE}-byte hash", expected=HASH_SIZE, found=len(value)
        )


def _check_proof(proof: Sequence[bytes], want: int) -> None:
    got = len(proof)
    if got > MAX_PROOF_HASHES:
        raise ProofShapeError(
            "proof is longer than any valid proof", expected=f"<= {MAX_PROOF_HASHES}", found=got
        )
    if got != want:
        raise ProofShapeError("proof has the wrong number of hashes", expected=want, found=got)
    for i, h in enumerate(proof):
        _check_hash(f"proof[{i}]", h)


def _check_inclusion_shape(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> None:
    _check_int("tree size", size, 1)
    _check_int("leaf index", index, 0)
    if index >= size:
        raise ProofShapeError(
            "leaf index is not in the tree", expected=f"index < {size}", found=index
        )
    _check_hash("leaf hash", leaf_hash)
    _check_proof(proof, inclusion_proof_length(index, size))


def _inclusion_root(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    # RFC 9162 §2.1.3.2, steps 2-5; step 1 (index < size) is in the shape check.
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:  # unreachable after the length check; kept as the RFC writes it
            raise ProofShapeError("inclusion proof is too long", expected=0, found=len(proof))
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # unreachable after the length check
        raise ProofShapeError("inclusion proof is too short", expected=0, found=sn)
    return r


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """Return the root that ``proof`` leads to from leaf ``index`` of a tree of ``size``.

    RFC 9162 §2.1.3.2 without the final comparison; ``verify_inclusion``
    adds it. Raises ``ProofShapeError`` if the inputs have the wrong shape.
    """
    _check_inclusion_shape(index, size, leaf_hash, proof)
    return _inclusion_root(index, size, leaf_hash, proof)


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    RFC 9162 §2.1.3.2 (verifying an inclusion proof). Returns nothing on
    success; raises ``ProofShapeError`` for malformed inputs and
    ``RootMismatchError`` (expected/found as hex) if the proof leads to
    another root.
    """
    _check_inclusion_shape(index, size, leaf_hash, proof)
    _check_hash("root", root)
    got = _inclusion_root(index, size, leaf_hash, proof)
    if got != root:
        raise RootMismatchError(
            f"inclusion proof for leaf {index} in tree size {size} leads to another root",
            expected=root.hex(),
            found=got.hex(),
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size1`` with ``root1`` is a prefix of ``size2`` with ``root2``.

    RFC 9162 §2.1.4.2 (verifying consistency between two tree heads). Sizes
    must satisfy ``0 < size1 <= size2``: every tree extends the empty one, so
    a proof from size 0 proves nothing and is refused. Equal sizes take an
    empty proof and equal roots. Returns nothing on success; raises
    ``ProofShapeError`` for malformed inputs and ``RootMismatchError`` if the
    proof does not reproduce both roots.
    """
    _check_int("first tree size", size1, 1)
    _check_int("second tree size", size2, 1)
    if size1 > size2:
        raise ProofShapeError(
            "first tree is larger than the second", expected=f"size1 <= {size2}", found=size1
        )
    _check_hash("first root", root1)
    _check_hash("second root", root2)
    if size1 == size2:
        _check_proof(proof, 0)
        if root1 != root2:
            raise RootMismatchError(
                f"two roots for the same tree size {size1}",
                expected=root1.hex(),
                found=root2.hex(),
            )
        return
    _check_proof(proof, consistency_proof_length(size1, size2))

    # RFC 9162 §2.1.4.2, steps 2-7; step 1 (empty proof) is in the length check.
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # unreachable after the length check; kept as the RFC writes it
            raise ProofShapeError("consistency proof is too long", expected=0, found=len(proof))
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # unreachable after the length check
        raise ProofShapeError("consistency proof is too short", expected=0, found=sn)
    if fr != root1:
        raise RootMismatchError(
            f"consistency proof {size1} -> {size2} does not lead to the first root",
            expected=root1.hex(),
            found=fr.hex(),
        )
    if sr != root2:
        raise RootMismatchError(
            f"consistency proof {size1} -> {size2} does not lead to the second root",
            expected=root2.hex(),
            found=sr.hex(),
        )
