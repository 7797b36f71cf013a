"""Builds small, genuine trace bundles for verifier tests, with handles to
every key and record so tests can break exactly one thing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from protocol import anchor
from protocol.bundle import (
    AnchorRef,
    Bundle,
    BundleRecord,
    ConsistencyProof,
    MultiProof,
    Subject,
)
from protocol.checkpoint import Checkpoint, checkpoint_hash, sign_checkpoint
from protocol.keys import generate_p256, p256_public_to_sec1
from protocol.merkle import MerkleTree
from protocol.note import NoteSigner
from protocol.record import ZERO_PREV, Reading, Registration, Scan, chain_hash, make_record
from protocol.trust import Scopes, Trust, parse_trust, trust_document
from tests.schemas import assert_bundle, assert_trust

ORIGIN = "test.example/log"
T0 = 1_790_000_000
UID = bytes.fromhex("04a23c5a1b6f80")
#: A single registry speaks for everything.
ALL = Scopes(devices=("*",), places=("*",), gtins=("*",))


@dataclass
class Dev:
    id: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=generate_p256)
    boot: int = 1
    seq: int = 0
    prev: bytes = ZERO_PREV

    def sign(self, cls: type, t: int, **kw: Any) -> bytes:
        payload = cls(boot=self.boot, seq=self.seq, time=t, tq=2, prev=self.prev, **kw)
        raw = make_record(payload, self.id, self.key)
        self.seq += 1
        self.prev = chain_hash(raw)
        return raw


@dataclass
class World:
    registry: Dev
    devices: dict[str, Dev]
    log: NoteSigner
    ledger: ed25519.Ed25519PrivateKey
    leaves: list[bytes] = field(default_factory=list)

    def register(self, dev: Dev, state: int = 1, key: bytes | None = None) -> bytes:
        raw = self.registry.sign(
            Registration,
            T0,
            device=dev.id,
            key=key or p256_public_to_sec1(dev.key.public_key()),
            role=1,
            org="Test Org",
            state=state,
        )
        self.leaves.append(raw)
        return raw

    def reading(self, dev: Dev, temp: int, t: int | None = None) -> bytes:
        raw = dev.sign(Reading, t or T0 + 60 * dev.seq, temp=temp)
        self.leaves.append(raw)
        return raw

    def trust_doc(self, **override: Any) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "logs": [(ORIGIN, self.log.vkey)],
            "registries": {
                self.registry.id: (p256_public_to_sec1(self.registry.key.public_key()), ALL)
            },
            "ledgers": {"ledger-1": self.ledger.public_key().public_bytes_raw()},
        }
        kw.update(override)
        doc = trust_document(**kw)
        assert_trust(doc)  # every trust file the tests make follows the published schema
        return doc

    def trust(self, **override: Any) -> Trust:
        return parse_trust(self.trust_doc(**override))

    def bundle(
        self,
        *,
        sizes: tuple[int, ...] | None = None,
        anchor_sizes: tuple[int, ...] | None = None,
        leaves: list[bytes] | None = None,
    ) -> Bundle:
        leaves = self.leaves if leaves is None else leaves
        tree = MerkleTree()
        for raw in leaves:
            tree.append(raw)
        sizes = sizes or (tree.size,)
        anchor_sizes = anchor_sizes if anchor_sizes is not None else (sizes[-1],)
        cps = {s: Checkpoint(ORIGIN, s, tree.root(s)) for s in sizes}
        b = Bundle(
            subject=Subject(UID),
            created=T0,
            records=[BundleRecord(ORIGIN, i, raw) for i, raw in enumerate(leaves)],
            checkpoints=[sign_checkpoint(cp, self.log) for cp in cps.values()],
        )
        # One multiproof per checkpoint, for the leaves it is the first to hold.
        by_size: dict[int, list[int]] = {}
        for i in range(tree.size):
            by_size.setdefault(min(s for s in sizes if s > i), []).append(i)
        for size, proven in by_size.items():
            b.proofs.append(
                MultiProof(ORIGIN, size, tuple(proven), tuple(tree.multiproof(proven, size)))
            )
        for a, c in pairwise(sizes):
            b.consistency.append(
                ConsistencyProof(ORIGIN, a, c, tuple(tree.consistency_proof(a, c)))
            )
        prev = bytes(32)
        for n, s in enumerate(anchor_sizes):
            r = anchor.sign_local_entry(
                self.ledger, "ledger-1", n, prev, T0 + n, checkpoint_hash(cps[s])
            )
            prev = anchor.entry_hash(r) if hasattr(anchor, "entry_hash") else prev
            b.anchors.append(AnchorRef(ORIGIN, s, r.to_json()))
        assert_bundle(b.to_json())  # and every bundle
        return b


def world(n_devices: int = 2, readings: int = 5) -> World:
    w = World(
        registry=Dev("reg-1", boot=0),
        devices={},
        log=NoteSigner.generate(ORIGIN),
        ledger=ed25519.Ed25519PrivateKey.generate(),
    )
    for k in range(n_devices):
        dev = Dev(f"dev-{k}")
        w.devices[dev.id] = dev
        w.register(dev)
    for r in range(readings):
        for dev in w.devices.values():
            w.reading(dev, 200 + r * 10)
    return w


def replace_payload_field(raw: bytes, payload: Any, **changes: Any) -> bytes:
    """Re-encode one field of a signed record's payload, keeping the signature."""
    from protocol.record import encode_payload

    old = encode_payload(payload)
    new = encode_payload(dataclasses.replace(payload, **changes))
    assert old in raw
    return raw.replace(old, new, 1)


__all__ = ["ALL", "ORIGIN", "T0", "UID", "Dev", "Scan", "World", "replace_payload_field", "world"]
