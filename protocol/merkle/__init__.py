"""The ColdTrace log: an RFC 9162 Merkle tree, its proofs and their verification.

Layered like transparency-dev/merkle (docs/protocol.md §6):

- ``hasher``: leaf and node hashing (RFC 9162 §2.1.1);
- ``proof``: which stored nodes an inclusion or consistency proof needs;
- ``verify``: checking proofs; raises ``ProofError`` subclasses, never
  returns a bool;
- ``store``: where complete subtrees are kept (memory, files; the gateway
  adds SQLite);
- ``tree``: the append-only tree that builds roots and proofs from a store.
"""

from protocol.merkle.hasher import EMPTY_ROOT, hash_children, hash_leaf
from protocol.merkle.proof import NodeID
from protocol.merkle.store import FileNodeStore, MemoryNodeStore, NodeStore
from protocol.merkle.tree import MerkleTree
from protocol.merkle.verify import (
    MAX_PROOF_HASHES,
    MAX_TREE_SIZE,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "MAX_PROOF_HASHES",
    "MAX_TREE_SIZE",
    "FileNodeStore",
    "MemoryNodeStore",
    "MerkleTree",
    "NodeID",
    "NodeStore",
    "hash_children",
    "hash_leaf",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]
