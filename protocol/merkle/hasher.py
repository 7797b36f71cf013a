"""RFC 9162 §2.1.1 hashing: SHA-256 with domain separation of leaves and nodes.

A leaf hash is ``SHA-256(0x00 || data)`` and an interior node hash is
``SHA-256(0x01 || left || right)``; the two prefixes keep a leaf from ever
being mistaken for a node (second-preimage resistance, RFC 9162 §2.1.1).
The hash of the empty tree is ``SHA-256("")`` with no prefix.

These functions sit on the hot path of every append, so they stay one
expression each: a single concatenation hashes faster in CPython than
several ``update()`` calls.
"""

from __future__ import annotations

from hashlib import sha256

__all__ = ["EMPTY_ROOT", "HASH_SIZE", "hash_children", "hash_leaf"]

HASH_SIZE = 32
"""Size in bytes of every hash in the log (SHA-256)."""

EMPTY_ROOT: bytes = sha256(b"").digest()
"""MTH({}) = SHA-256() — the root of the tree with no leaves (RFC 9162 §2.1.1)."""

_LEAF = b"\x00"
_NODE = b"\x01"


def hash_leaf(data: bytes) -> bytes:
    """Return MTH({d}) = SHA-256(0x00 || d), the hash of one leaf (RFC 9162 §2.1.1)."""
    return sha256(_LEAF + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 || left || right), an interior node (RFC 9162 §2.1.1)."""
    return sha256(_NODE + left + right).digest()
