"""Organisations, their API tokens, the keys the operator pins for them, and the audit log.

An **organisation** is a party of the supply chain (a packhouse, a carrier, a
retailer) or the cloud's **operator** (made by ``coldtrace cloud init``).
Each holds API tokens with scopes:

- ``read``: its own logs' records and rejections, and the traces and exports
  of items its logs have scanned;
- ``push``: reserved for tools that push on a gateway's behalf (gateways
  themselves sign their pushes with their log key, docs/cloud.md §2);
- ``admin``: its own tokens and audit log.

Only the operator pins keys - logs, registries with their scopes, ledgers,
witnesses - since a registry's scopes decide whose word counts for which
devices, places and products (docs/protocol.md §10). Tokens are random
(``ct_`` + 43 characters) and kept only as their SHA-256. Every change is
written to the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from cloud import db
from cloud.logs import check_scopes
from protocol.keys import b64d, ed25519_public_from_raw, p256_public_from_sec1
from protocol.note import NoteVerifier, WitnessVerifier

__all__ = ["SCOPES", "OrgError", "Principal", "authenticate", "new_token"]

SCOPES = ("read", "push", "admin")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class OrgError(ValueError):
    """A bad request to manage organisations (a 4xx with this message)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Principal:
    """Who made a request: an organisation through one of its tokens."""

    org_id: int
    org: str
    operator: bool
    token_id: int
    scopes: frozenset[str]

    def can(self, scope: str) -> bool:
        return scope in self.scopes or (self.operator and "admin" in self.scopes)


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def audit(conn: Connection, who: Principal | None, action: str, target: str, **detail: Any) -> None:
    conn.execute(
        insert(db.audit).values(
            org_id=None if who is None else who.org_id,
            token_id=None if who is None else who.token_id,
            action=action,
            target=target[:255],
            detail=json.dumps(detail, sort_keys=True, default=str),
            time=int(time.time()),
        )
    )


def org_id(conn: Connection, name: str) -> int:
    row = conn.execute(select(db.orgs.c.id).where(db.orgs.c.name == name)).first()
    if row is None:
        raise OrgError(f"no organisation {name!r}", 404)
    return int(row.id)


def add_org(
    conn: Connection, who: Principal | None, name: str, display: str = "", *, operator: bool = False
) -> int:
    if not _NAME.match(name):
        raise OrgError("an organisation name is 1-63 of a-z, 0-9 and '-', starting alphanumeric")
    if conn.execute(select(db.orgs.c.id).where(db.orgs.c.name == name)).first() is not None:
        raise OrgError(f"organisation {name!r} exists", 409)
    res = conn.execute(
        insert(db.orgs).values(
            name=name, display=display[:128], operator=operator, created=int(time.time())
        )
    )
    audit(conn, who, "org.add", name, display=display, operator=operator)
    return int(res.inserted_primary_key[0])


def new_token(
    conn: Connection, who: Principal | None, org: str, scopes: list[str], label: str = ""
) -> tuple[int, str]:
    """A new token for ``org``: (its id, the token - shown once, kept only hashed)."""
    bad = [s for s in scopes if s not in SCOPES]
    if not scopes or bad:
        raise OrgError(f"scopes must be some of {', '.join(SCOPES)}; got {scopes}")
    oid = org_id(conn, org)
    if who is not None and not who.operator and who.org_id != oid:
        raise OrgError("an organisation manages only its own tokens", 403)
    token = "ct_" + secrets.token_urlsafe(32)
    res = conn.execute(
        insert(db.tokens).values(
            org_id=oid,
            hash=_hash(token),
            scopes=" ".join(sorted(set(scopes))),
            label=label[:128],
            created=int(time.time()),
        )
    )
    tid = int(res.inserted_primary_key[0])
    audit(conn, who, "token.add", org, token_id=tid, scopes=sorted(set(scopes)), label=label)
    return tid, token


def revoke_token(conn: Connection, who: Principal, token_id: int) -> None:
    row = conn.execute(select(db.tokens).where(db.tokens.c.id == token_id)).first()
    if row is None or (not who.operator and row.org_id != who.org_id):
        raise OrgError(f"no token {token_id}", 404)
    conn.execute(
        update(db.tokens).where(db.tokens.c.id == token_id).values(revoked=int(time.time()))
    )
    audit(conn, who, "token.revoke", str(token_id))


def authenticate(conn: Connection, token: str) -> Principal | None:
    """The principal of a bearer token, or None (unknown or revoked)."""
    if not token.startswith("ct_") or len(token) > 100:
        return None
    digest = _hash(token)
    row = conn.execute(
        select(db.tokens, db.orgs.c.name, db.orgs.c.operator)
        .join(db.orgs, db.orgs.c.id == db.tokens.c.org_id)
        .where(db.tokens.c.hash == digest)
    ).first()
    if row is None or row.revoked is not None or not hmac.compare_digest(bytes(row.hash), digest):
        return None
    return Principal(
        row.org_id, row.name, bool(row.operator), row.id, frozenset(row.scopes.split())
    )


# --- keys the operator pins -----------------------------------------------------------------


def _operator(who: Principal | None) -> None:
    if who is not None and not who.operator:
        raise OrgError("only the cloud's operator pins keys", 403)


def add_log(conn: Connection, who: Principal | None, org: str, vkey: str) -> str:
    _operator(who)
    try:
        v = NoteVerifier.from_vkey(vkey)
    except Exception as e:
        raise OrgError(f"not a log verifier key: {e}") from None
    oid = org_id(conn, org)
    if conn.execute(select(db.logs.c.id).where(db.logs.c.origin == v.name)).first() is not None:
        raise OrgError(f"log {v.name!r} is registered", 409)
    conn.execute(
        insert(db.logs).values(
            org_id=oid, origin=v.name, vkey=vkey, size=0, frozen=False, created=int(time.time())
        )
    )
    audit(conn, who, "log.add", v.name, org=org, vkey=vkey)
    return v.name


def add_registry(
    conn: Connection,
    who: Principal | None,
    org: str,
    registry: str,
    key: str,
    scopes: dict[str, Any],
) -> None:
    _operator(who)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$", registry):
        raise OrgError(f"{registry!r} is not a registry id")
    try:
        p256_public_from_sec1(b64d(key))
        clean = check_scopes(scopes)
    except Exception as e:
        raise OrgError(f"registry {registry}: {e}") from None
    oid = org_id(conn, org)
    if conn.execute(select(db.registries.c.id).where(db.registries.c.registry == registry)).first():
        raise OrgError(f"registry {registry!r} is pinned", 409)
    conn.execute(
        insert(db.registries).values(
            org_id=oid, registry=registry, key=key, scopes=json.dumps(clean, sort_keys=True)
        )
    )
    audit(conn, who, "registry.add", registry, org=org, key=key, scopes=clean)


def add_ledger(conn: Connection, who: Principal | None, org: str, ledger: str, key: str) -> None:
    _operator(who)
    try:
        raw = b64d(key)
        ed25519_public_from_raw(raw)
        if base64.b64encode(raw).decode() != key:
            raise ValueError("not canonical base64")
    except Exception as e:
        raise OrgError(f"ledger {ledger}: not an Ed25519 key: {e}") from None
    oid = org_id(conn, org)
    if conn.execute(select(db.ledgers.c.id).where(db.ledgers.c.ledger == ledger)).first():
        raise OrgError(f"ledger {ledger!r} is pinned", 409)
    conn.execute(insert(db.ledgers).values(org_id=oid, ledger=ledger, key=key))
    audit(conn, who, "ledger.add", ledger, org=org, key=key)


def add_evm_ledger(
    conn: Connection, who: Principal | None, org: str, chain_id: int, contract: str
) -> None:
    """Pin an EVM anchor contract (chain id, address) the org's gateways anchor with."""
    from protocol.anchor import _address

    _operator(who)
    if type(chain_id) is not int or not 1 <= chain_id < 2**63:
        raise OrgError(f"chain id {chain_id!r} is not a positive integer")
    try:
        contract = _address(contract)
    except Exception as e:
        raise OrgError(f"contract {contract!r}: {e}") from None
    oid = org_id(conn, org)
    t = db.evm_ledgers
    if conn.execute(
        select(t.c.id).where(t.c.chain_id == chain_id, t.c.contract == contract)
    ).first():
        raise OrgError(f"contract {contract} on chain {chain_id} is pinned", 409)
    conn.execute(insert(t).values(org_id=oid, chain_id=chain_id, contract=contract))
    audit(conn, who, "ledger.add_evm", f"{chain_id}:{contract}", org=org)


def add_witness(conn: Connection, who: Principal | None, org: str, vkey: str) -> str:
    _operator(who)
    try:
        w = WitnessVerifier.from_vkey(vkey)
    except Exception as e:
        raise OrgError(f"not a witness (cosigner) key: {e}") from None
    oid = org_id(conn, org)
    if conn.execute(select(db.witness_keys.c.id).where(db.witness_keys.c.vkey == vkey)).first():
        raise OrgError("that witness key is registered", 409)
    conn.execute(insert(db.witness_keys).values(org_id=oid, vkey=vkey))
    audit(conn, who, "witness.add", w.name, org=org, vkey=vkey)
    return w.name


def witness_verifiers(conn: Connection) -> list[WitnessVerifier]:
    return [WitnessVerifier.from_vkey(r.vkey) for r in conn.execute(select(db.witness_keys.c.vkey))]


def org_of_log(conn: Connection, origin: str) -> int | None:
    row = conn.execute(select(db.logs.c.org_id).where(db.logs.c.origin == origin)).first()
    return None if row is None else int(row.org_id)


def list_orgs(conn: Connection, who: Principal) -> list[dict[str, Any]]:
    q = select(db.orgs).order_by(db.orgs.c.name)
    if not who.operator:
        q = q.where(db.orgs.c.id == who.org_id)
    out = []
    for o in conn.execute(q):
        logs = [
            r.origin for r in conn.execute(select(db.logs.c.origin).where(db.logs.c.org_id == o.id))
        ]
        regs = [
            r.registry
            for r in conn.execute(
                select(db.registries.c.registry).where(db.registries.c.org_id == o.id)
            )
        ]
        out.append(
            {
                "name": o.name,
                "display": o.display,
                "operator": bool(o.operator),
                "logs": logs,
                "registries": regs,
            }
        )
    return out


def audit_rows(conn: Connection, who: Principal, limit: int = 100) -> list[dict[str, Any]]:
    q = select(db.audit).order_by(db.audit.c.id.desc()).limit(max(1, min(limit, 1000)))
    if not who.operator:
        q = q.where(db.audit.c.org_id == who.org_id)
    return [
        {
            "id": r.id,
            "time": r.time,
            "action": r.action,
            "target": r.target,
            "detail": json.loads(r.detail),
            "token_id": r.token_id,
        }
        for r in conn.execute(q)
    ]


def registry_orgs(conn: Connection) -> dict[str, int]:
    """Registry id → organisation id."""
    return {r.registry: r.org_id for r in conn.execute(select(db.registries))}


__all__ += ["add_ledger", "add_log", "add_org", "add_registry", "add_witness", "audit"]
