"""A gateway's push, checked from scratch and stored whole or not at all (docs/cloud.md §2).

:func:`ingest` takes one signed request and either stores the batch (every
record, the checkpoint, the receipts) and cosigns the checkpoint as a
witness, or refuses all of it with a code and a reason, kept in the
``rejected`` table. In order:

1. the log is registered, the request is signed by its key and the log is
   not frozen (``unknown_log`` 404, ``bad_signature`` 401, ``log_frozen`` 423);
2. the batch is well formed (``malformed_push`` 400) and starts at or before
   the cloud's size of the log (``out_of_order`` 409, with the size expected);
3. the checkpoint is signed by the log's key and is of size first + n
   (``bad_checkpoint`` 422);
4. the records the cloud already holds are the same bytes; when they are not
   and the log signed the other history, or a checkpoint of a size the cloud
   holds has another root, or the log's own consistency proof fails, the log
   has **forked**: it is frozen, an alarm is raised, nothing is merged
   (``log_forked`` 409);
5. the root of the mirrored tree (stored leaves + the new ones) equals the
   checkpoint's (``root_mismatch`` 422);
6. the new records and the receipts pass the verifier of docs/protocol.md §11
   (:func:`protocol.verify.verify_bundle`, anchors not yet required): device
   signatures under registered keys, registrations and statements under
   pinned registry keys within their scopes, signer and statement chains
   linked to what the cloud holds (``unverified_records`` 422 with every
   failure);
7. stored in one transaction; the cloud cosigns the checkpoint.

A batch sent twice is stored once: the second answer is ``duplicate`` (also
when it carries receipts, if the cloud holds the same ones already), however
late it comes after newer batches, as long as its signature's time is within
``MAX_SKEW`` of the cloud's clock (``bad_signature`` 401 after that).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from cloud import db
from cloud.logs import (
    LogRow,
    Mirrors,
    add_cosignature,
    chain_name,
    checkpoint_at,
    cosigned_note,
    get_log,
    record_row,
    trust_of,
)
from protocol.bundle import AnchorRef, Bundle, BundleRecord, ConsistencyProof, MultiProof, Subject
from protocol.checkpoint import Checkpoint, open_checkpoint
from protocol.errors import VerificationError
from protocol.merkle import MerkleTree, hash_leaf, proof, verify_consistency
from protocol.merkle.multiproof import multiproof_ranges
from protocol.note import WitnessSigner
from protocol.push import PushAuthError, PushBatch, check_auth, parse_batch
from protocol.record import Record, open_record
from protocol.verify import verify_bundle

__all__ = ["PushRefused", "ingest"]

_PLACEHOLDER = Subject(b"\x00\x00\x00\x00")  # batches are about no item: no verdict
_KEEP_UNAUTHENTICATED = 4096  # bytes of an unauthenticated body kept with its rejection


@dataclass
class PushRefused(Exception):
    status: int
    code: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.detail}


def _reject(
    conn: Connection, log: LogRow | None, origin: str, err: PushRefused, body: bytes, keep: int
) -> None:
    conn.execute(
        insert(db.rejected).values(
            log_id=None if log is None else log.id,
            origin=origin[:255],
            reason=err.code,
            message=json.dumps(err.body())[:20000],
            body=body[:keep],
            received=int(time.time()),
        )
    )


def _freeze(conn: Connection, log: LogRow, reason: str, evidence: dict[str, Any]) -> PushRefused:
    now = int(time.time())
    conn.execute(
        update(db.logs).where(db.logs.c.id == log.id).values(frozen=True, frozen_reason=reason)
    )
    conn.execute(
        insert(db.alarms).values(
            org_id=log.org_id,
            log_id=log.id,
            kind="log_forked",
            message=f"{log.origin}: {reason}",
            detail=json.dumps(evidence),
            created=now,
        )
    )
    return PushRefused(
        409,
        "log_forked",
        f"{log.origin} forked ({reason}); the log is frozen and an alarm raised",
        {"evidence": evidence},
    )


@dataclass
class _Context:
    """What the verifier needs besides the batch: stored neighbours and registrations."""

    entries: dict[tuple[int, int], bytes] = field(default_factory=dict)


def _context(conn: Connection, log: LogRow, new: Sequence[tuple[int, Record]]) -> _Context:
    """Stored records that the new ones must link to, and the devices' registrations:
    for each signer the stored record just before its first new seq (and any stored
    record under a new seq: a fork shows), for each statement chain the stored
    statements at and before its first new cseq, for each device every registration."""
    ctx = _Context()
    r = db.records.c
    first_seq: dict[str, tuple[int, set[int]]] = {}
    first_cseq: dict[tuple[int, str, str], int] = {}
    devices: set[str] = set()
    for _, rec in new:
        p = rec.payload
        if p.kind in (5, 6):
            key = (p.kind, rec.signer, chain_name(p))  # type: ignore[arg-type]
            first_cseq[key] = min(first_cseq.get(key, 1 << 62), p.cseq)  # type: ignore[union-attr]
        elif p.kind == 4:
            devices.add(p.device)  # type: ignore[union-attr]
        else:
            devices.add(rec.signer)
            lo, seqs = first_seq.get(rec.signer, (1 << 62, set()))
            seqs.add(p.seq)
            first_seq[rec.signer] = (min(lo, p.seq), seqs)
    for signer, (lo, seqs) in first_seq.items():
        want = {lo - 1} | seqs
        for row in conn.execute(
            select(r.log_id, r.idx, r.raw).where(
                and_(r.signer == signer, r.kind.in_((1, 2, 3, 7)), r.seq.in_(sorted(want)[:1000]))
            )
        ):
            ctx.entries[(row.log_id, row.idx)] = row.raw
    for (kind, signer, chain), lo in first_cseq.items():
        for row in conn.execute(
            select(r.log_id, r.idx, r.raw).where(
                and_(r.kind == kind, r.signer == signer, r.chain == chain, r.cseq >= lo - 1)
            )
        ):
            ctx.entries[(row.log_id, row.idx)] = row.raw
    if devices:
        for row in conn.execute(
            select(r.log_id, r.idx, r.raw).where(and_(r.kind == 4, r.chain.in_(sorted(devices))))
        ):
            ctx.entries[(row.log_id, row.idx)] = row.raw
    # only what is under a verified checkpoint: leaves below each log's size
    sizes = {row.id: row.size for row in conn.execute(select(db.logs.c.id, db.logs.c.size))}
    ctx.entries = {k: v for k, v in ctx.entries.items() if k[1] < sizes.get(k[0], 0)}
    return ctx


def _verify_records(
    conn: Connection,
    mirrors: Mirrors,
    log: LogRow,
    tree: MerkleTree,
    cp: Checkpoint,
    note: str,
    new: Sequence[tuple[int, Record]],
    anchors: Sequence[tuple[int, dict[str, Any]]],
    rpc: Any = None,
) -> None:
    """Step 6: the verifier of §11 over the new records with their context. An EVM
    receipt the cloud cannot check (no ``[[evm]]`` endpoint for its chain, or the
    node away) is kept, unverified: it does not refuse the batch (docs/evm.md)."""
    ctx = _context(conn, log, new)
    bundle = Bundle(subject=_PLACEHOLDER)
    origins = {row.id: row.origin for row in conn.execute(select(db.logs.c.id, db.logs.c.origin))}
    by_log: dict[int, dict[int, bytes]] = {}
    for (log_id, idx), raw in ctx.entries.items():
        by_log.setdefault(log_id, {})[idx] = raw
    mine = by_log.setdefault(log.id, {})
    for idx, rec in new:
        mine[idx] = rec.raw
    for log_id, leaves in sorted(by_log.items()):
        if not leaves:
            if log_id == log.id and anchors:
                bundle.checkpoints.append(note)  # receipts only: they need the checkpoint
            continue
        origin = origins[log_id]
        if log_id == log.id:
            size, text, t = cp.size, note, tree
        else:
            other = get_log(conn, origin)
            assert other is not None
            row = checkpoint_at(conn, log_id, other.size)
            if row is None:
                continue
            size, text, t = other.size, str(row.note), mirrors.tree(conn, other)
        idxs = sorted(leaves)
        bundle.records += [BundleRecord(origin, i, leaves[i]) for i in idxs]
        bundle.checkpoints.append(text)
        nodes = tuple(_range_hash(t, lo, hi) for lo, hi in multiproof_ranges(size, idxs))
        bundle.proofs.append(MultiProof(origin, size, tuple(idxs), nodes))
    for tree_size, receipt in anchors:
        if tree_size != cp.size:
            row = checkpoint_at(conn, log.id, tree_size)
            if row is None:
                raise PushRefused(
                    422,
                    "unknown_checkpoint",
                    f"a receipt is for checkpoint {tree_size}, which the cloud does not hold",
                )
            bundle.checkpoints.append(str(row.note))
            lo, hi = sorted((tree_size, cp.size))
            bundle.consistency.append(
                ConsistencyProof(log.origin, lo, hi, tuple(tree.consistency_proof(lo, hi)))
            )
        bundle.anchors.append(AnchorRef(log.origin, tree_size, receipt))
    if not bundle.records and not bundle.anchors:
        return
    trust = trust_of(conn)
    report = verify_bundle(bundle, trust, rpc=rpc, require_anchor=False, judge=False)
    failures = [f for f in report.failures if f.code != "anchor_unverifiable"]
    if failures:
        raise PushRefused(
            422,
            "unverified_records",
            f"{len(failures)} check(s) failed; the batch is refused whole",
            {"failures": [_failure(f) for f in failures[:200]]},
        )


def _evm_receipt_holds(
    conn: Connection, log: LogRow, size: int, receipt: dict[str, Any], rpc: Any
) -> bool:
    """Whether ``receipt`` is an EVM receipt that verifies on the cloud's node for the
    checkpoint of ``size`` (never without a node: an unchecked receipt does not replace
    a stored one)."""
    from protocol.anchor import EvmReceipt, verify_evm_receipt

    row = checkpoint_at(conn, log.id, size)
    if rpc is None or receipt.get("type") != "evm" or row is None:
        return False
    try:
        cp = open_checkpoint(str(row.note), [log.verifier])
        verify_evm_receipt(EvmReceipt.from_json(receipt), cp, rpc)
    except VerificationError:
        return False
    return True


def _range_hash(tree: MerkleTree, lo: int, hi: int) -> bytes:
    """MTH of leaves [lo, hi) of ``tree`` (a node of a multiproof, §9)."""
    get = tree.store.get
    return proof.fold([get(level, index) for level, index in proof.subtree_nodes(lo, hi)])


def _failure(check: Any) -> dict[str, Any]:
    out = {
        "check": check.check,
        "subject": check.subject,
        "code": check.code,
        "message": check.message,
    }
    return out


def ingest(
    engine: Any,
    mirrors: Mirrors,
    witness: WitnessSigner,
    origin: str,
    path: str,
    body: bytes,
    authorization: str,
    *,
    now: int | None = None,
    rpc: Any = None,
) -> dict[str, Any]:
    """Check and store one push (see the module docstring); :class:`PushRefused` if not.
    ``rpc``: a JSON-RPC call to check EVM receipts with (``[[evm]]``), or None."""
    with engine.connect() as conn:
        log = get_log(conn, origin)
    if log is None:
        err = PushRefused(404, "unknown_log", f"no log {origin!r} is registered with this cloud")
        _record(engine, None, origin, err, body, _KEEP_UNAUTHENTICATED)
        raise err
    try:
        check_auth(authorization, log.verifier, "POST", path, body, now=now)
    except PushAuthError as e:
        err = PushRefused(401, "bad_signature", str(e))
        _record(engine, log, origin, err, body, _KEEP_UNAUTHENTICATED)
        raise err from None
    mirror = mirrors.get(log.id)
    with mirror.lock:
        return _ingest_locked(engine, mirrors, mirror, witness, origin, body, now, rpc)


def _record(
    engine: Any, log: LogRow | None, origin: str, err: PushRefused, body: bytes, keep: int
) -> None:
    with engine.begin() as conn:
        _reject(conn, log, origin, err, body, keep)


def _ingest_locked(
    engine: Any,
    mirrors: Mirrors,
    mirror: Any,
    witness: WitnessSigner,
    origin: str,
    body: bytes,
    now: int | None,
    rpc: Any = None,
) -> dict[str, Any]:
    keep = len(body)
    with engine.connect() as conn:
        log = get_log(conn, origin)
        assert log is not None
        try:
            result = _check(conn, mirrors, mirror, log, body, rpc)
        except PushRefused as err:
            conn.rollback()
            with engine.begin() as wconn:
                if err.code == "log_forked":
                    fresh = get_log(wconn, origin)
                    if fresh is not None and not fresh.frozen:
                        err = _freeze(wconn, log, err.detail.pop("reason"), err.detail["evidence"])
                _reject(wconn, log, origin, err, body, keep)
            raise err from None
    batch, cp, new, duplicate = result
    stamp = int(time.time()) if now is None else now
    with engine.begin() as conn:
        if new:
            conn.execute(insert(db.records), [record_row(log.id, i, rec) for i, rec in new])
        if checkpoint_at(conn, log.id, cp.size) is None:
            conn.execute(
                insert(db.checkpoints).values(
                    log_id=log.id,
                    size=cp.size,
                    root=cp.root_hash,
                    note=batch.checkpoint,
                    received=stamp,
                )
            )
        for tree_size, receipt in batch.anchors:
            have = conn.execute(
                select(db.anchors.c.receipt).where(
                    and_(db.anchors.c.log_id == log.id, db.anchors.c.size == tree_size)
                )
            ).first()
            text = json.dumps(receipt, sort_keys=True)
            if have is None:
                conn.execute(insert(db.anchors).values(log_id=log.id, size=tree_size, receipt=text))
            elif have.receipt != text and _evm_receipt_holds(conn, log, tree_size, receipt, rpc):
                # A chain reorganisation moved the anchor: the gateway's new receipt,
                # checked on the cloud's node of that chain, replaces the stored one.
                conn.execute(
                    update(db.anchors)
                    .where(and_(db.anchors.c.log_id == log.id, db.anchors.c.size == tree_size))
                    .values(receipt=text)
                )
        new_size = max(log.size, cp.size)
        done = conn.execute(
            update(db.logs)
            .where(and_(db.logs.c.id == log.id, db.logs.c.size == log.size))
            .values(size=new_size, last_push=stamp)
        )
        if done.rowcount != 1:
            raise PushRefused(
                409, "conflict", "another push of this log was stored meanwhile; retry"
            )
        add_cosignature(
            conn,
            log.id,
            cp.size,
            f"{witness.name}+{witness.key_id:08x}",
            witness.cosign(cp.body(), stamp),
            stamp,
        )
    with engine.connect() as conn:
        note = cosigned_note(conn, log.id, cp.size)
    return {
        "origin": origin,
        "size": max(log.size, cp.size),
        "stored": len(new),
        "duplicate": duplicate,
        "checkpoint": note,
    }


def _check(
    conn: Connection, mirrors: Mirrors, mirror: Any, log: LogRow, body: bytes, rpc: Any = None
) -> tuple[PushBatch, Checkpoint, list[tuple[int, Record]], bool]:
    if log.frozen:
        raise PushRefused(423, "log_frozen", f"{log.origin} is frozen: {log.frozen_reason}")
    try:
        batch = parse_batch(body)
    except VerificationError as e:
        raise PushRefused(400, "malformed_push", str(e)) from None
    size = log.size
    if batch.first > size:
        raise PushRefused(
            409,
            "out_of_order",
            f"the cloud holds {size} records of {log.origin}; push from there",
            {"expected_first": size},
        )
    try:
        cp = open_checkpoint(batch.checkpoint, [log.verifier])
    except VerificationError as e:
        raise PushRefused(422, "bad_checkpoint", f"checkpoint: {e}") from None
    if cp.origin != log.origin:
        raise PushRefused(422, "bad_checkpoint", f"the checkpoint is of {cp.origin!r}")
    end = batch.first + len(batch.records)
    if cp.size != end or cp.size == 0:
        raise PushRefused(
            422,
            "bad_checkpoint",
            f"the checkpoint's size is {cp.size}; the batch ends at {end}",
        )
    mirror.catch_up(conn, size)
    tree: MerkleTree = mirror.tree
    records: list[tuple[int, Record]] = []
    for i, raw in enumerate(batch.records):
        try:
            records.append((batch.first + i, open_record(raw)))
        except VerificationError as e:
            raise PushRefused(
                422,
                "unverified_records",
                f"record {batch.first + i}: {e}",
                {
                    "failures": [
                        {
                            "check": "record",
                            "subject": f"{log.origin}#{batch.first + i}",
                            "code": e.code,
                            "message": str(e),
                        }
                    ]
                },
            ) from None
    # 4. what the cloud holds must be what the log sends again
    overlap = min(size, end)
    stored: dict[int, bytes] = {}
    if batch.first < overlap:
        for row in conn.execute(
            select(db.records.c.idx, db.records.c.raw).where(
                and_(
                    db.records.c.log_id == log.id,
                    db.records.c.idx >= batch.first,
                    db.records.c.idx < overlap,
                )
            )
        ):
            stored[row.idx] = row.raw
    differ = [
        i for i in range(batch.first, overlap) if stored.get(i) != batch.records[i - batch.first]
    ]
    held = checkpoint_at(conn, log.id, cp.size)
    if differ:
        other = _rebuilt(tree, batch.first, batch.records)
        if other.root(cp.size) == cp.root_hash:
            covering = conn.execute(
                select(db.checkpoints.c.note)
                .where(and_(db.checkpoints.c.log_id == log.id, db.checkpoints.c.size > differ[0]))
                .order_by(db.checkpoints.c.size)
                .limit(1)
            ).first()
            raise PushRefused(
                409,
                "log_forked",
                "",
                {
                    "reason": f"the log signed another record at index {differ[0]}",
                    "evidence": {
                        "held": None if covering is None else covering.note,
                        "pushed": batch.checkpoint,
                        "index": differ[0],
                    },
                },
            )
        raise PushRefused(
            422,
            "root_mismatch",
            f"record {differ[0]} differs from the one the cloud holds, and the records do not "
            "give the checkpoint's root",
        )
    if held is not None and bytes(held.root) != cp.root_hash:
        raise PushRefused(
            409,
            "log_forked",
            "",
            {
                "reason": f"two checkpoints of size {cp.size} with different roots",
                "evidence": {"held": held.note, "pushed": batch.checkpoint},
            },
        )
    new = [(i, rec) for i, rec in records if i >= size]
    if not new and held is not None and _receipts_held(conn, log, batch.anchors):
        return batch, cp, [], True  # a replay: nothing to store, nothing to check again
    tree.extend(rec.raw for _, rec in new)
    try:
        if tree.root(cp.size) != cp.root_hash:
            raise PushRefused(
                422,
                "root_mismatch",
                f"the records do not give the root of checkpoint {cp.size}",
            )
        if batch.consistency is not None:
            old_size, path = batch.consistency
            old = checkpoint_at(conn, log.id, old_size)
            if old is None:
                raise PushRefused(
                    422,
                    "unknown_checkpoint",
                    f"the consistency proof starts at {old_size}, "
                    "a checkpoint the cloud does not hold",
                )
            try:
                verify_consistency(old_size, cp.size, path, bytes(old.root), cp.root_hash)
            except VerificationError as e:
                raise PushRefused(
                    409,
                    "log_forked",
                    "",
                    {
                        "reason": f"the log's consistency proof {old_size}->{cp.size} fails: {e}",
                        "evidence": {"held": old.note, "pushed": batch.checkpoint},
                    },
                ) from None
        _verify_records(conn, mirrors, log, tree, cp, batch.checkpoint, new, batch.anchors, rpc)
    except BaseException:
        tree.rollback(size)
        raise
    # leave the tree extended: the transaction below stores these leaves, or, if it
    # fails, the next catch_up rolls the tree back to the stored size
    return batch, cp, new, False


def _receipts_held(
    conn: Connection, log: LogRow, anchors: Sequence[tuple[int, dict[str, Any]]]
) -> bool:
    """Whether the cloud holds every receipt of ``anchors`` already, byte for byte as
    it stores them (a push sent again carries the receipts it carried the first time)."""
    for tree_size, receipt in anchors:
        have = conn.execute(
            select(db.anchors.c.receipt).where(
                and_(db.anchors.c.log_id == log.id, db.anchors.c.size == tree_size)
            )
        ).first()
        if have is None or have.receipt != json.dumps(receipt, sort_keys=True):
            return False
    return True


def _rebuilt(tree: MerkleTree, first: int, raws: Sequence[bytes]) -> MerkleTree:
    other = MerkleTree()
    for i in range(first):
        other.append_leaf_hash(tree.leaf_hash(i))
    other.extend(raws)
    return other


def batch_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


__all__ += ["batch_digest", "hash_leaf"]
