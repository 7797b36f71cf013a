"""Deterministic cold-chain scenarios: signed records, one log, a bundle, a trust file.

A :class:`Scenario` plays the parties of docs/protocol.md with fixed keys and
RFC 6979 signatures, so the same script always gives the same bytes (the
verdict vectors rely on it): a registry that registers devices, binds them to
places and signs product profiles; loggers that read temperatures; readers
that scan a tag and pass the custody link along on it (§4.3); one gateway log
with a checkpoint and a local-ledger anchor.

    s = Scenario()
    s.profile(GTIN, T0, low=0, high=400, delay=1800, gap=1800)
    truck = s.logger("tl-truck")
    s.bind("fleet:truck-1", ["tl-truck"], T0)
    dock = s.reader("rd-dock", "dc:dock")
    s.scan(dock, COMMISSION, T0 + 60, item=ITEM)
    s.readings(truck, T0, T0 + 7200, 300, lambda t: 250)
    bundle, trust = s.bundle(), s.trust()

Tests then cut, edit or reorder what they like: :meth:`Scenario.bundle`
takes a ``keep`` filter over the records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from protocol import anchor, cbor, cose
from protocol.bundle import AnchorRef, Bundle, BundleRecord, ConsistencyProof, MultiProof, Subject
from protocol.checkpoint import Checkpoint, checkpoint_hash, cosign_checkpoint, sign_checkpoint
from protocol.keys import p256_private_from_scalar, p256_public_to_sec1
from protocol.merkle import MerkleTree, multiproof_ranges
from protocol.merkle.proof import subtree_nodes
from protocol.note import NoteSigner, WitnessSigner
from protocol.record import (
    ZERO_PREV,
    Binding,
    Payload,
    ProductProfile,
    Reading,
    ReadingBlock,
    Registration,
    Scan,
    Status,
    chain_hash,
    make_record,
    pack_block,
    statement_chain_key,
)
from protocol.rfc6979 import N as _N
from protocol.trust import Scopes, Trust, parse_trust, trust_document
from tests.schemas import assert_bundle, assert_trust

ORIGIN = "vectors.example/gateway-1"
LEDGER = "vectors.example/ledger-1"
T0 = 1_790_000_000  # 2026-09-21T14:13:20Z
UID = bytes.fromhex("04a23c5a1b6f80")
GTIN = "09506000134352"
ITEM = f"/01/{GTIN}/10/L42/21/7"
COMMISSION, LOAD, UNLOAD, RECEIVE, SHIP, SELL, INSTALL = 1, 2, 3, 4, 5, 6, 7


def _scalar(label: str) -> int:
    return (
        int.from_bytes(hashlib.sha256(b"coldtrace-vectors/" + label.encode()).digest()) % (_N - 1)
        + 1
    )


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"coldtrace-vectors-ed25519/" + label.encode()).digest()


@dataclass
class Signer:
    """A device or registry: its key and its signer chain (§4.1)."""

    id: str
    key: ec.EllipticCurvePrivateKey
    boot: int = 1
    seq: int = 0
    prev: bytes = ZERO_PREV
    tq: int = 2
    place: str | None = None  # a reader's place
    deterministic: bool = True  # RFC 6979 nonces (slow, pure Python) or pyca's

    @property
    def sec1(self) -> bytes:
        return p256_public_to_sec1(self.key.public_key())

    def sign(self, cls: type, t: int, **kw: Any) -> bytes:
        tq = kw.pop("tq", self.tq)
        payload = cls(boot=self.boot, seq=self.seq, time=t, tq=tq, prev=self.prev, **kw)
        raw = make_record(payload, self.id, self.key, deterministic=self.deterministic)
        self.seq += 1
        self.prev = chain_hash(raw)
        return raw


@dataclass
class Scenario:
    """One operator's log and registry, and the devices that feed it."""

    registry_id: str = "reg-acme"
    origin: str = ORIGIN
    records: list[bytes] = field(default_factory=list)
    devices: dict[str, Signer] = field(default_factory=dict)
    roles: dict[str, int] = field(default_factory=dict)  # device id -> its registered role
    tags: dict[bytes, bytes] = field(default_factory=dict)  # uid -> custody link on the tag
    deterministic: bool = True
    org: str = "Acme"  # the registry's organisation, in its registrations
    _chains: dict[tuple[Any, ...], tuple[int, bytes]] = field(default_factory=dict)
    # More registries (another organisation's, a brand owner's): id -> (signer, scopes, org).
    others: dict[str, tuple[Signer, Scopes, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.registry = Signer(
            self.registry_id,
            p256_private_from_scalar(_scalar(self.registry_id)),
            boot=0,
            deterministic=self.deterministic,
        )
        self.log = NoteSigner(
            self.origin, ed25519.Ed25519PrivateKey.from_private_bytes(_seed(self.origin))
        )
        self.ledger = ed25519.Ed25519PrivateKey.from_private_bytes(_seed(LEDGER))

    # --- the registry --------------------------------------------------------------
    def add(self, raw: bytes) -> bytes:
        self.records.append(raw)
        return raw

    def other_registry(
        self,
        registry_id: str,
        org: str,
        *,
        devices: Sequence[str] = (),
        places: Sequence[str] = (),
        gtins: Sequence[str] = (),
    ) -> Signer:
        """Another organisation's registry, pinned in the trust file with these scopes."""
        reg = Signer(
            registry_id,
            p256_private_from_scalar(_scalar(registry_id)),
            boot=0,
            deterministic=self.deterministic,
        )
        self.others[registry_id] = (reg, Scopes(tuple(devices), tuple(places), tuple(gtins)), org)
        return reg

    def _device(
        self,
        device_id: str,
        role: int,
        place: str | None = None,
        registry: Signer | None = None,
    ) -> Signer:
        registry = registry or self.registry
        org = self.others[registry.id][2] if registry.id in self.others else self.org
        dev = Signer(
            device_id,
            p256_private_from_scalar(_scalar(device_id)),
            place=place,
            deterministic=self.deterministic,
        )
        self.devices[device_id] = dev
        self.roles[device_id] = role
        self.add(
            registry.sign(
                Registration,
                T0 - 86400,
                device=device_id,
                key=dev.sec1,
                role=role,
                org=org,
                state=1,
            )
        )
        return dev

    def logger(self, device_id: str) -> Signer:
        return self._device(device_id, 1)

    def reader(self, device_id: str, place: str, registry: Signer | None = None) -> Signer:
        return self._device(device_id, 2, place, registry)

    def revoke(self, dev: Signer, t: int) -> bytes:
        return self.add(
            self.registry.sign(
                Registration,
                t,
                device=dev.id,
                key=dev.sec1,
                role=self.roles.get(dev.id, 1),
                org="Acme",
                state=2,
            )
        )

    def _statement(self, cls: type, t: int, **kw: Any) -> bytes:
        probe: Payload = cls(
            boot=0, seq=0, time=t, tq=2, prev=ZERO_PREV, cseq=0, cprev=ZERO_PREV, **kw
        )
        key = statement_chain_key(self.registry.id, probe)
        cseq, cprev = self._chains.get(key, (0, ZERO_PREV))
        raw = self.registry.sign(cls, t, cseq=cseq, cprev=cprev, **kw)
        self._chains[key] = (cseq + 1, chain_hash(raw))
        return self.add(raw)

    def bind(self, target: str, devices: Sequence[str], t: int) -> bytes:
        listed = " ".join(sorted(devices)) if devices else None
        return self._statement(Binding, t, target=target, devices=listed)

    def profile(self, gtin: str, t: int, **kw: Any) -> bytes:
        return self._statement(ProductProfile, t, gtin=gtin, **kw)

    # --- devices ----------------------------------------------------------------------
    def scan(
        self,
        reader: Signer,
        action: int,
        t: int,
        *,
        uid: bytes = UID,
        link: bool | bytes | None = True,
        write: bool = True,
        **kw: Any,
    ) -> bytes:
        """A scan of ``uid``; ``link=True`` signs the link the tag holds (§4.3),
        ``write=False`` models a failed write of the new link to the tag."""
        if link is True:
            link = None if action == COMMISSION else self.tags.get(uid)
        elif link is False:
            link = None
        fields = {"uid": uid, "action": action, "place": kw.pop("place", reader.place)}
        if link is not None:
            fields["link"] = link
        raw = reader.sign(Scan, t, **fields, **kw)
        if write:
            self.tags[uid] = chain_hash(raw)
        return self.add(raw)

    def reading(self, dev: Signer, t: int, temp: int | None, **kw: Any) -> bytes:
        if temp is None:
            return self.add(dev.sign(Reading, t, fault=kw.pop("fault", 1), **kw))
        return self.add(dev.sign(Reading, t, temp=temp, **kw))

    def readings(
        self,
        dev: Signer,
        start: int,
        end: int,
        every: int,
        temp: Callable[[int], int | None],
        **kw: Any,
    ) -> list[bytes]:
        """Readings at start, start + every, … up to and including end."""
        return [self.reading(dev, t, temp(t), **kw) for t in range(start, end + 1, every)]

    def block(
        self,
        dev: Signer,
        t: int,
        ivl: int,
        temps: Sequence[int | None],
        rhs: Sequence[int | None] | None = None,
        **kw: Any,
    ) -> bytes:
        """A reading block (kind 7) of readings at t, t + ivl, ...; a None temp is fault 1."""
        faults = [1 if v is None else None for v in temps]
        packed, packed_rh = pack_block(temps, faults, rhs)
        return self.add(dev.sign(ReadingBlock, t, ivl=ivl, temps=packed, rhs=packed_rh, **kw))

    def raw_record(self, dev: Signer, fields: dict[int, Any]) -> bytes:
        """A record whose payload is ``fields`` (keys 2-6 from the chain) encoded as is,
        unchecked: for records a verifier must refuse."""
        m = {1: fields.pop(1), 2: dev.boot, 3: dev.seq, 5: dev.tq, 6: dev.prev, **fields}
        raw = cose.sign1_deterministic(cbor.encode(dict(sorted(m.items()))), dev.id, dev.key)
        dev.seq += 1
        dev.prev = chain_hash(raw)
        return self.add(raw)

    def status(self, dev: Signer, t: int, event: int, **kw: Any) -> bytes:
        return self.add(dev.sign(Status, t, event=event, **kw))

    def skip(self, dev: Signer, n: int = 1) -> None:
        """Number ``n`` records that never reach the log (lost on the device)."""
        for _ in range(n):
            dev.sign(Status, 0, event=2)

    # --- the log ----------------------------------------------------------------------
    def witness(self, name: str) -> WitnessSigner:
        """A witness with a fixed key (its seed derives from its name)."""
        return WitnessSigner(name, ed25519.Ed25519PrivateKey.from_private_bytes(_seed(name)))

    def trust_doc(
        self,
        *,
        witnesses: Sequence[WitnessSigner] = (),
        quorum: int | None = None,
        **scopes: Any,
    ) -> dict[str, Any]:
        """The trust file; ``witnesses`` (default none) are pinned with ``quorum``."""
        scope = Scopes(
            devices=tuple(scopes.get("devices", ["*"])),
            places=tuple(scopes.get("places", ["*"])),
            gtins=tuple(scopes.get("gtins", ["*"])),
        )
        registries = {self.registry.id: (self.registry.sec1, scope)}
        registries.update({rid: (reg.sec1, sc) for rid, (reg, sc, _) in self.others.items()})
        doc = trust_document(
            logs=[(self.origin, self.log.vkey)],
            registries=registries,
            ledgers={LEDGER: self.ledger.public_key().public_bytes_raw()},
            witnesses=[w.vkey for w in witnesses],
            quorum=quorum,
        )
        assert_trust(doc)
        return doc

    def trust(
        self,
        *,
        witnesses: Sequence[WitnessSigner] = (),
        quorum: int | None = None,
        **scopes: Any,
    ) -> Trust:
        return parse_trust(self.trust_doc(witnesses=witnesses, quorum=quorum, **scopes))

    def bundle(
        self,
        keep: Callable[[bytes], bool] | None = None,
        *,
        uid: bytes = UID,
        item: str | None = None,
        records: Iterable[bytes] | None = None,
        sizes: Sequence[int] = (),
        anchor_sizes: Sequence[int] | None = None,
        witnesses: Sequence[WitnessSigner] = (),
        validate: bool = True,
    ) -> Bundle:
        """The bundle of the log's records that pass ``keep`` (all by default).

        The log holds ``records`` (default: every record made so far, in
        order). Checkpoints are signed at ``sizes`` and at the full size, with
        consistency proofs between them; ``anchor_sizes`` (default: the full
        size) are anchored on the local ledger, one entry each. One multiproof
        proves every chosen record in the full tree. Each of ``witnesses``
        (default none) cosigns every checkpoint, as of T0 + its size."""
        log = list(self.records if records is None else records)
        tree = MerkleTree()
        for raw in log:
            tree.append(raw)
        size = tree.size
        all_sizes = sorted({*sizes, size})
        cps = {n: Checkpoint(self.origin, n, tree.root(n)) for n in all_sizes}
        chosen = [i for i, raw in enumerate(log) if keep is None or keep(raw)]
        b = Bundle(created=T0, subject=Subject(uid, item))
        b.records = [BundleRecord(self.origin, i, log[i]) for i in chosen]
        b.checkpoints = [sign_checkpoint(cps[n], self.log) for n in all_sizes]
        for w in witnesses:
            b.checkpoints = [
                cosign_checkpoint(text, w, T0 + n)
                for n, text in zip(all_sizes, b.checkpoints, strict=True)
            ]
        if chosen:
            nodes = tuple(
                tree._hash_of(subtree_nodes(lo, hi)) for lo, hi in multiproof_ranges(size, chosen)
            )
            b.proofs = [MultiProof(self.origin, size, tuple(chosen), nodes)]
        for old, new in pairwise(all_sizes):
            b.consistency.append(
                ConsistencyProof(self.origin, old, new, tuple(tree.consistency_proof(old, new)))
            )
        prev = bytes(32)
        for n, at in enumerate([size] if anchor_sizes is None else anchor_sizes):
            receipt = anchor.sign_local_entry(
                self.ledger, LEDGER, n, prev, T0 + n, checkpoint_hash(cps[at])
            )
            prev = anchor.entry_hash(receipt)
            b.anchors.append(AnchorRef(self.origin, at, receipt.to_json()))
        if validate:
            assert_bundle(b.to_json())
        return b


def without(*raws: bytes) -> Callable[[bytes], bool]:
    """A ``keep`` filter that drops the given records."""
    dropped = set(raws)
    return lambda raw: raw not in dropped


__all__ = [
    "COMMISSION",
    "GTIN",
    "INSTALL",
    "ITEM",
    "LOAD",
    "ORIGIN",
    "RECEIVE",
    "SELL",
    "SHIP",
    "T0",
    "UID",
    "UNLOAD",
    "Scenario",
    "Signer",
    "replace",
    "without",
]
