"""What the gateway keeps as evidence: the stateless checks (:mod:`.checks`),
ingest and its verification workers, the store, the registry, the Merkle log
and its proofs, and the ledger that anchors it."""
