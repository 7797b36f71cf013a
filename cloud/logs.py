"""The logs the cloud mirrors: their records, checkpoints, cosignatures and trees.

Every gateway log is mirrored leaf for leaf (docs/cloud.md §2): the cloud
holds every record from index 0, so it computes each tree root itself and
needs nobody's word that a checkpoint is consistent with the last one. The
trees are kept in memory (:class:`Mirror`), rebuilt from the database on
first use and extended as pushes are stored; several processes may share
one database, each with its own mirrors.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select

from cloud import db
from protocol.keys import b64d, b64e, ed25519_public_from_raw, p256_public_from_sec1
from protocol.merkle import MerkleTree
from protocol.note import NoteVerifier, WitnessVerifier, parse_note
from protocol.record import (
    Binding,
    ProductProfile,
    Record,
    Registration,
    Scan,
    Status,
)
from protocol.trust import EvmLedger, Scopes, Trust

__all__ = ["LogRow", "Mirror", "Mirrors", "chain_name", "record_row", "trust_of"]


@dataclass(frozen=True)
class LogRow:
    id: int
    org_id: int
    origin: str
    vkey: str
    size: int
    frozen: bool
    frozen_reason: str | None
    last_push: int | None

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier.from_vkey(self.vkey)


def log_row(row: Any) -> LogRow:
    return LogRow(
        row.id,
        row.org_id,
        row.origin,
        row.vkey,
        row.size,
        bool(row.frozen),
        row.frozen_reason,
        row.last_push,
    )


def get_log(conn: Connection, origin: str) -> LogRow | None:
    row = conn.execute(select(db.logs).where(db.logs.c.origin == origin)).first()
    return None if row is None else log_row(row)


def all_logs(conn: Connection) -> list[LogRow]:
    return [log_row(r) for r in conn.execute(select(db.logs).order_by(db.logs.c.origin))]


def chain_name(payload: Binding | ProductProfile) -> str:
    """A statement chain's name as the gateway's store writes it: the binding's target,
    or the profile's GTIN (and lot, after a space)."""
    if isinstance(payload, Binding):
        return payload.target
    return payload.gtin if payload.lot is None else f"{payload.gtin} {payload.lot}"


def record_row(log_id: int, index: int, rec: Record) -> dict[str, Any]:
    """The ``records`` row of ``rec`` at ``index`` of log ``log_id``."""
    p = rec.payload
    row: dict[str, Any] = {
        "log_id": log_id,
        "idx": index,
        "raw": rec.raw,
        "kind": p.kind,
        "signer": rec.signer,
        "seq": p.seq,
        "time": p.time,
        "tq": p.tq,
        "uid": None,
        "item": None,
        "chain": None,
        "cseq": None,
        "lost_from": None,
        "lost_to": None,
    }
    if isinstance(p, Scan):
        row["uid"] = p.uid
        row["item"] = p.item
    elif isinstance(p, (Binding, ProductProfile)):
        row["chain"] = chain_name(p)
        row["cseq"] = p.cseq
    elif isinstance(p, Registration):
        row["chain"] = p.device
    elif isinstance(p, Status) and p.lost is not None and p.detail:
        row["lost_from"] = p.lost
        row["lost_to"] = p.lost + p.detail - 1
    return row


# --- trees ------------------------------------------------------------------------------------


class Mirror:
    """One log's Merkle tree, as far as the database holds its leaves."""

    def __init__(self, log_id: int) -> None:
        self.log_id = log_id
        self.tree = MerkleTree()
        self.lock = threading.Lock()

    def catch_up(self, conn: Connection, size: int) -> None:
        """Extend the tree with the stored leaves up to ``size``."""
        have = self.tree.size
        if have > size:
            self.tree.rollback(size)
            return
        if have == size:
            return
        rows = conn.execute(
            select(db.records.c.raw)
            .where(
                and_(
                    db.records.c.log_id == self.log_id,
                    db.records.c.idx >= have,
                    db.records.c.idx < size,
                )
            )
            .order_by(db.records.c.idx)
        )
        self.tree.extend(r.raw for r in rows)
        if self.tree.size != size:
            raise RuntimeError(
                f"log {self.log_id}: {self.tree.size} leaves stored, {size} expected"
            )


class Mirrors:
    """The process's mirrors, one per log."""

    def __init__(self) -> None:
        self._by_log: dict[int, Mirror] = {}
        self._lock = threading.Lock()

    def get(self, log_id: int) -> Mirror:
        with self._lock:
            m = self._by_log.get(log_id)
            if m is None:
                m = self._by_log[log_id] = Mirror(log_id)
            return m

    def tree(self, conn: Connection, log: LogRow) -> MerkleTree:
        """The tree of ``log`` at its verified size (callers hold no lock: read-only use)."""
        m = self.get(log.id)
        with m.lock:
            m.catch_up(conn, log.size)
            return m.tree


# --- checkpoints and cosignatures ---------------------------------------------------------------


def latest_checkpoint(conn: Connection, log_id: int) -> Any | None:
    return conn.execute(
        select(db.checkpoints)
        .where(db.checkpoints.c.log_id == log_id)
        .order_by(db.checkpoints.c.size.desc())
        .limit(1)
    ).first()


def checkpoint_at(conn: Connection, log_id: int, size: int) -> Any | None:
    return conn.execute(
        select(db.checkpoints).where(
            and_(db.checkpoints.c.log_id == log_id, db.checkpoints.c.size == size)
        )
    ).first()


def cosigned_note(conn: Connection, log_id: int, size: int) -> str | None:
    """The checkpoint of ``size`` with every stored cosignature line added (C2SP
    signed-note: the log's lines first, then the witnesses' in name order)."""
    cp = checkpoint_at(conn, log_id, size)
    if cp is None:
        return None
    lines = [
        r.line
        for r in conn.execute(
            select(db.cosignatures.c.line)
            .where(and_(db.cosignatures.c.log_id == log_id, db.cosignatures.c.size == size))
            .order_by(db.cosignatures.c.witness)
        )
    ]
    if not lines:
        return str(cp.note)
    note = parse_note(cp.note)
    have = {s.line() for s in note.signatures}
    return str(cp.note) + "".join(line for line in lines if line not in have)


def add_cosignature(
    conn: Connection, log_id: int, size: int, witness: str, line: str, when: int
) -> bool:
    """Store witness ``witness``'s ("name+keyid") cosignature ``line`` on checkpoint
    ``size`` unless one is there already; whether it was stored. The caller checked it."""
    c = db.cosignatures.c
    held = conn.execute(
        select(c.line).where(and_(c.log_id == log_id, c.size == size, c.witness == witness))
    ).first()
    if held is not None:
        return False
    conn.execute(
        insert(db.cosignatures).values(
            log_id=log_id, size=size, witness=witness, line=line, time=when
        )
    )
    return True


def anchor_of(conn: Connection, log_id: int, size: int) -> dict[str, Any] | None:
    row = conn.execute(
        select(db.anchors.c.receipt).where(
            and_(db.anchors.c.log_id == log_id, db.anchors.c.size == size)
        )
    ).first()
    return None if row is None else dict(json.loads(row.receipt))


# --- the cloud's trust ---------------------------------------------------------------------------


def trust_of(conn: Connection, witnesses: Sequence[WitnessVerifier] = (), quorum: int = 0) -> Trust:
    """The keys the operator pinned, as a :class:`~protocol.trust.Trust`: every
    registered log, registry (with its scopes) and local ledger."""
    trust = Trust(quorum=quorum)
    for r in conn.execute(select(db.logs.c.vkey)):
        trust.logs.append(NoteVerifier.from_vkey(r.vkey))
    for r in conn.execute(select(db.registries)):
        trust.registries[r.registry] = p256_public_from_sec1(b64d(r.key))
        s = json.loads(r.scopes)
        trust.scopes[r.registry] = Scopes(
            tuple(s.get("devices", ())), tuple(s.get("places", ())), tuple(s.get("gtins", ()))
        )
    for r in conn.execute(select(db.ledgers)):
        trust.ledgers[r.ledger] = ed25519_public_from_raw(b64d(r.key))
    for r in conn.execute(select(db.evm_ledgers)):
        trust.evm.append(EvmLedger(int(r.chain_id), r.contract))
    trust.witnesses = list(witnesses)
    return trust


def trust_document(
    conn: Connection, witnesses: Sequence[WitnessVerifier], quorum: int
) -> dict[str, Any]:
    """The trust file (§10) of everything this cloud pins, for clients to review and pin."""
    doc: dict[str, Any] = {"format": "coldtrace-trust", "version": 2}
    doc["logs"] = [{"origin": r.origin, "vkey": r.vkey} for r in all_logs(conn)]
    regs = []
    for r in conn.execute(select(db.registries).order_by(db.registries.c.registry)):
        s = json.loads(r.scopes)
        regs.append(
            {
                "id": r.registry,
                "key": r.key,
                "devices": s.get("devices", []),
                "places": s.get("places", []),
                "gtins": s.get("gtins", []),
            }
        )
    doc["registries"] = regs
    doc["ledgers"] = [
        {"type": "local", "id": r.ledger, "key": r.key}
        for r in conn.execute(select(db.ledgers).order_by(db.ledgers.c.ledger))
    ]
    e = db.evm_ledgers
    doc["ledgers"] += [
        {"type": "evm", "chain_id": int(r.chain_id), "contract": r.contract}
        for r in conn.execute(select(e).order_by(e.c.chain_id, e.c.contract))
    ]
    doc["witnesses"] = [{"vkey": w.vkey} for w in witnesses]
    doc["quorum"] = quorum
    return doc


def check_scopes(scopes: dict[str, Any]) -> dict[str, list[str]]:
    """Registry scopes as given to the API: three lists of patterns (§1)."""
    out: dict[str, list[str]] = {}
    for name in ("devices", "places", "gtins"):
        items = scopes.get(name, [])
        if not isinstance(items, list):
            raise ValueError(f"{name}: a list of patterns is required")
        for p in items:
            if (
                not isinstance(p, str)
                or not 1 <= len(p.encode()) <= 128
                or any(ord(c) < 0x20 or ord(c) == 0x7F for c in p)
            ):
                raise ValueError(f"{name}: {p!r} is not a pattern (1-128 bytes of text)")
        out[name] = list(items)
    extra = set(scopes) - {"devices", "places", "gtins"}
    if extra:
        raise ValueError(f"unknown scope list(s): {sorted(extra)}")
    return out


def records_at(conn: Connection, where: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Raw records by (log id, index)."""
    want = sorted(set(where))
    out: dict[tuple[int, int], bytes] = {}
    by_log: dict[int, list[int]] = {}
    for log_id, idx in want:
        by_log.setdefault(log_id, []).append(idx)
    for log_id, idxs in by_log.items():
        for i in range(0, len(idxs), 500):
            chunk = idxs[i : i + 500]
            for r in conn.execute(
                select(db.records.c.idx, db.records.c.raw).where(
                    and_(db.records.c.log_id == log_id, db.records.c.idx.in_(chunk))
                )
            ):
                out[(log_id, r.idx)] = r.raw
    return out


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            "logs": conn.execute(select(func.count()).select_from(db.logs)).scalar_one(),
            "records": conn.execute(select(func.count()).select_from(db.records)).scalar_one(),
            "checkpoints": conn.execute(
                select(func.count()).select_from(db.checkpoints)
            ).scalar_one(),
        }


def b64(raw: bytes) -> str:
    return b64e(raw)
