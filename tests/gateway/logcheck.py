"""One check of a gateway's evidence after a crash test: every checkpoint of its
log verifies under the log key of its trust file and is consistent with the one
before, sampled records are included in the last, the local ledger verifies and
anchors every checkpoint."""

from __future__ import annotations

import itertools

from gateway.config import GatewayConfig
from gateway.evidence.ledger import LocalLedger
from gateway.evidence.proofs import TreeReader
from gateway.evidence.store import Store
from gateway.service import trust_document
from protocol.checkpoint import Checkpoint, open_checkpoint
from protocol.keys import load_ed25519_private_key
from protocol.merkle import hash_leaf, verify_consistency, verify_inclusion
from protocol.note import NoteVerifier


def check_log_and_ledger(cfg: GatewayConfig, store: Store, samples: int) -> list[Checkpoint]:
    """Assert all of the above for the gateway ``cfg`` (``store`` open on it), with
    about ``samples`` inclusion proofs; return the verified checkpoints."""
    cps = check_log(cfg, store, samples)
    ledger = LocalLedger(
        cfg.ledger_path, cfg.ledger.id, load_ed25519_private_key(cfg.ledger.key_file)
    )
    try:
        assert ledger.verify() == len(cps)
    finally:
        ledger.close()
    assert [a.size for a in store.anchors()] == [c.size for c in cps]
    return cps


def check_log(cfg: GatewayConfig, store: Store, samples: int) -> list[Checkpoint]:
    """The log part of :func:`check_log_and_ledger` (any ledger backend): checkpoints
    verify and are consistent one to the next; sampled records are included."""
    verifier = NoteVerifier.from_vkey(trust_document(cfg)["logs"][0]["vkey"])
    cps = [open_checkpoint(c.note, [verifier]) for c in store.checkpoints()]
    assert cps and cps[-1].size == store.leaf_count()
    reader = TreeReader(cfg.tree_dir, cps[-1].size)
    try:
        for old, new in itertools.pairwise(cps):
            proof = reader.consistency_proof(old.size, new.size)
            verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
        last = cps[-1]
        for leaf in range(0, last.size, max(1, last.size // samples)):
            rec = store.record(leaf)
            assert rec is not None
            proof = reader.inclusion_proof(leaf, last.size)
            verify_inclusion(leaf, last.size, hash_leaf(rec.raw), proof, last.root_hash)
    finally:
        reader.close()
    return cps
