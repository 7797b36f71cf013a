"""The ColdTrace log: an RFC 9162 Merkle tree, its proofs and their verification.

Layered like transparency-dev/merkle (docs/protocol.md §6):

- ``hasher``: leaf and node hashing (RFC 9162 §2.1.1);
- ``proof``: which stored nodes an inclusion or consistency proof needs;
- ``verify``: checking proofs; raises ``ProofError`` subclasses, never
  returns a bool;
- ``multiproof``: multi-leaf inclusion proofs (which ranges a prover sends,
  and checking them), as trace bundles carry them (docs/protocol.md §9);
- ``store``: where complete subtrees are kept (memory, files; the gateway
  adds SQLite);
- ``tree``: the append-only tree that builds roots and proofs from a store.
"""

from protocol.merkle.hasher import EMPTY_ROOT, hash_children, hash_leaf
from protocol.merkle.multiproof import (
    MAX_MULTIPROOF_TREE_SIZE,
    multiproof_ranges,
    root_from_multiproof,
    verify_multiproof,
)
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
    "MAX_MULTIPROOF_TREE_SIZE",
    "MAX_PROOF_HASHES",
    "MAX_TREE_SIZE",
    "FileNodeStore",
    "MemoryNodeStore",
    "MerkleTree",
    "NodeID",
    "NodeStore",
    "hash_children",
    "hash_leaf",
    "multiproof_ranges",
    "root_from_inclusion_proof",
    "root_from_multiproof",
    "verify_consistency",
    "verify_inclusion",
    "verify_multiproof",
]
