"""The trust file: the keys a verifier pins (docs/protocol.md §10).

Nothing in a bundle is trusted on its own say-so. Log keys, registry keys,
ledger keys and directly pinned device keys come from here. An empty trust
file is an error, not a pass.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from protocol.errors import TrustError
from protocol.note import NoteVerifier

FORMAT = "coldtrace-trust"
VERSION = 1


@dataclass(frozen=True)
class EvmLedger:
    chain_id: int
    contract: str


@dataclass
class Trust:
    """Pinned keys. Build with :func:`load_trust` or :func:`parse_trust`."""

    logs: list[NoteVerifier] = field(default_factory=list)
    registries: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    ledgers: dict[str, ed25519.Ed25519PublicKey] = field(default_factory=dict)
    evm: list[EvmLedger] = field(default_factory=list)
    devices: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.logs or self.registries or self.ledgers or self.evm or self.devices)


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise TrustError(f"{what}: want a base64 string", found=type(value).__name__)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TrustError(f"{what}: not valid base64") from exc


def _p256(value: object, what: str) -> ec.EllipticCurvePublicKey:
    raw = _b64(value, what)
    if len(raw) != 65 or raw[0] != 4:
        raise TrustError(f"{what}: want a 65-byte uncompressed SEC1 P-256 point", found=len(raw))
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:
        raise TrustError(f"{what}: not a point on P-256") from exc


def _list(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    items = doc.get(name, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise TrustError(f"trust file: {name!r} must be a list of objects")
    return items


def parse_trust(doc: object) -> Trust:
    """Build :class:`Trust` from the decoded JSON document; raise TrustError."""
    if not isinstance(doc, dict):
        raise TrustError("trust file: want a JSON object")
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise TrustError(
            "trust file: unknown format or version",
            expected=f"{FORMAT} v{VERSION}",
            found=f"{doc.get('format')} v{doc.get('version')}",
        )
    trust = Trust()
    for item in _list(doc, "logs"):
        try:
            verifier = NoteVerifier.from_vkey(str(item.get("vkey", "")))
        except Exception as exc:
            raise TrustError(f"trust file: bad log vkey {item.get('vkey')!r}: {exc}") from exc
        origin = item.get("origin", verifier.name)
        if origin != verifier.name:
            raise TrustError(
                "trust file: a log key's name must equal its origin",
                expected=origin,
                found=verifier.name,
            )
        trust.logs.append(verifier)
    for item in _list(doc, "registries"):
        trust.registries[str(item.get("id"))] = _p256(item.get("key"), f"registry {item.get('id')}")
    for item in _list(doc, "devices"):
        trust.devices[str(item.get("id"))] = _p256(item.get("key"), f"device {item.get('id')}")
    for item in _list(doc, "ledgers"):
        kind = item.get("type")
        if kind == "local":
            raw = _b64(item.get("key"), f"ledger {item.get('id')}")
            if len(raw) != 32:
                raise TrustError("trust file: a local ledger key is 32 bytes", found=len(raw))
            trust.ledgers[str(item.get("id"))] = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        elif kind == "evm":
            chain_id, contract = item.get("chain_id"), item.get("contract")
            if not isinstance(chain_id, int) or not isinstance(contract, str):
                raise TrustError("trust file: an evm ledger needs chain_id and contract")
            trust.evm.append(EvmLedger(chain_id, contract.lower()))
        else:
            raise TrustError("trust file: unknown ledger type", expected="local|evm", found=kind)
    if trust.is_empty():
        raise TrustError("trust file pins no keys: nothing could be verified against it")
    return trust


def load_trust(path: str | Path) -> Trust:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrustError(f"cannot read trust file {path}: {exc}") from exc
    return parse_trust(doc)


def trust_document(
    *,
    logs: Sequence[tuple[str, str]] = (),
    registries: dict[str, bytes] | None = None,
    ledgers: dict[str, bytes] | None = None,
    evm: list[EvmLedger] | None = None,
    devices: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """The JSON document for the given keys (origin/vkey pairs, raw key bytes)."""

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return {
        "format": FORMAT,
        "version": VERSION,
        "logs": [{"origin": o, "vkey": v} for o, v in logs],
        "registries": [{"id": k, "key": b64(v)} for k, v in (registries or {}).items()],
        "ledgers": [{"type": "local", "id": k, "key": b64(v)} for k, v in (ledgers or {}).items()]
        + [{"type": "evm", "chain_id": e.chain_id, "contract": e.contract} for e in (evm or [])],
        "devices": [{"id": k, "key": b64(v)} for k, v in (devices or {}).items()],
    }
