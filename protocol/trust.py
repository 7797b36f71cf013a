"""The trust file, version 2: what a verifier pins (docs/protocol.md §10).

Nothing in a bundle is trusted on its own say-so. Log keys, registry keys
with their scopes, ledger keys and directly pinned device keys come from
here. The file is read with the same hardened JSON reader as bundles
(:mod:`protocol.strictjson`, limit 1 MiB) and checked strictly:

- ``format`` and ``version`` (the integer 2) are required; ``logs``,
  ``registries``, ``ledgers``, ``devices`` and ``witnesses`` are optional
  lists (absent = empty), ``quorum`` an optional integer (default 0); no
  other member anywhere, and each entry has exactly its members;
- a file that pins no key (no log, registry, ledger or device) is an error,
  not a pass;
- a log's ``origin`` is an origin (§1) equal to the name in its ``vkey``,
  and the vkey's key id matches its key; witness vkeys are cosigner keys
  (signature type 0x04, c2sp.org/tlog-cosignature) with an origin-syntax
  name and a matching key id;
- ids are unique per list: one origin per log, one id per registry, ledger
  and device, one (chain id, contract) per EVM ledger, one key per witness;
- keys are canonical standard base64: SEC1 uncompressed P-256 points on the
  curve (65 bytes) for registries and devices, Ed25519 (32 bytes) for local
  ledgers; EVM contracts are ``0x`` and 40 hex digits (mixed case only with
  a valid EIP-55 checksum);
- registry scopes (``devices``, ``places``, ``gtins``) are lists of
  patterns (:mod:`protocol.scope`): non-empty strings of at most 128 bytes
  without control characters;
- ``quorum`` is 0 … len(``witnesses``): how many distinct pinned witnesses
  must have cosigned each checkpoint (§7.1; the verifier checks it, §11).

Every refusal is a :class:`~protocol.errors.TrustError` (``malformed_trust``).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from protocol import scope
from protocol.anchor import _address as _evm_address
from protocol.cose import ID_PATTERN
from protocol.errors import KeyTrustError, MalformedReceiptError, NoteKeyError, TrustError
from protocol.keys import b64d, p256_public_from_sec1
from protocol.note import NoteVerifier, WitnessVerifier
from protocol.strictjson import check_text, load_strict, loads_strict, show

__all__ = [
    "FORMAT",
    "MAX_PATTERN_BYTES",
    "MAX_TRUST_BYTES",
    "VERSION",
    "EvmLedger",
    "Scopes",
    "Trust",
    "load_trust",
    "loads_trust",
    "parse_trust",
    "trust_document",
]

FORMAT = "coldtrace-trust"
VERSION = 2
MAX_TRUST_BYTES = 1024 * 1024
MAX_PATTERN_BYTES = 128
_MAX_UINT64 = 2**64 - 1

_ORIGIN = re.compile(r"[\x21-\x2a\x2c-\x7e]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

_TOP_MEMBERS = frozenset(
    {"format", "version", "logs", "registries", "ledgers", "devices", "witnesses", "quorum"}
)
_LOG_MEMBERS = frozenset({"origin", "vkey"})
_REGISTRY_MEMBERS = frozenset({"id", "key", "devices", "places", "gtins"})
_LOCAL_MEMBERS = frozenset({"type", "id", "key"})
_EVM_MEMBERS = frozenset({"type", "chain_id", "contract"})
_DEVICE_MEMBERS = frozenset({"id", "key"})
_WITNESS_MEMBERS = frozenset({"vkey"})


# --- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvmLedger:
    """A pinned anchor contract: ``contract`` (lowercase ``0x`` hex) on chain ``chain_id``."""

    chain_id: int
    contract: str


@dataclass(frozen=True)
class Scopes:
    """What a registry speaks for: patterns of device ids, place ids and GTINs (§10)."""

    devices: tuple[str, ...] = ()
    places: tuple[str, ...] = ()
    gtins: tuple[str, ...] = ()


@dataclass
class Trust:
    """Pinned keys. Build with :func:`load_trust`, :func:`loads_trust` or :func:`parse_trust`."""

    logs: list[NoteVerifier] = field(default_factory=list)
    #: Registry id → pinned key; its scopes are in ``scopes`` under the same id.
    registries: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    scopes: dict[str, Scopes] = field(default_factory=dict)
    ledgers: dict[str, ed25519.Ed25519PublicKey] = field(default_factory=dict)
    evm: list[EvmLedger] = field(default_factory=list)
    devices: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    witnesses: list[WitnessVerifier] = field(default_factory=list)
    quorum: int = 0

    def is_empty(self) -> bool:
        """Whether no key is pinned at all (witnesses do not count: they make no checkpoint)."""
        return not (self.logs or self.registries or self.ledgers or self.evm or self.devices)

    def registry_key(self, registry_id: str) -> ec.EllipticCurvePublicKey | None:
        """The pinned key of a registry, or None."""
        return self.registries.get(registry_id)

    def pins_evm(self, chain_id: int, contract: str) -> bool:
        """Whether the anchor contract ``contract`` (any case) on ``chain_id`` is pinned."""
        return EvmLedger(chain_id, contract.lower()) in self.evm

    def device_authority(self, device_id: str) -> str | None:
        """The registry that speaks for ``device_id`` (most specific pattern), or None."""
        return scope.authority({r: s.devices for r, s in self.scopes.items()}, device_id)

    def place_authority(self, place: str) -> str | None:
        """The registry that speaks for the place (or vehicle, container) id, or None."""
        return scope.authority({r: s.places for r, s in self.scopes.items()}, place)

    def gtin_authority(self, gtin: str) -> str | None:
        """The registry that speaks for the GTIN, or None."""
        return scope.authority({r: s.gtins for r, s in self.scopes.items()}, gtin)


# --- reading ----------------------------------------------------------------------------------


def load_trust(source: str | os.PathLike[str] | IO[bytes]) -> Trust:
    """Read and check a trust file from a path or binary stream (module docstring)."""
    doc = load_strict(source, limit=MAX_TRUST_BYTES, what="trust file", error=TrustError)
    return parse_trust(doc)


def loads_trust(data: bytes | str) -> Trust:
    """Read and check a trust file from its JSON text (module docstring)."""
    doc = loads_strict(data, limit=MAX_TRUST_BYTES, what="trust file", error=TrustError)
    return parse_trust(doc)


def _fail(where: str, message: str, found: object = None) -> TrustError:
    return TrustError(
        f"trust file {where}: {message}", found=None if found is None else show(found)
    )


def _members(
    value: object, where: str, members: frozenset[str], required: frozenset[str] | None = None
) -> dict[str, Any]:
    if type(value) is not dict:
        raise _fail(where, "want an object", type(value).__name__)
    extra = value.keys() - members
    if extra:
        raise _fail(where, "unknown member", min(map(str, extra)))
    missing = (members if required is None else required) - value.keys()
    if missing:
        raise _fail(where, f"missing member {sorted(missing)[0]!r}")
    return value


def _list(doc: dict[str, Any], name: str) -> list[Any]:
    value = doc.get(name, [])
    if type(value) is not list:
        raise _fail(name, "want a list", type(value).__name__)
    return value


def _id(value: object, where: str) -> str:
    if type(value) is not str or ID_PATTERN.fullmatch(value) is None:
        raise _fail(where, "not an id (1-32 bytes of [a-z0-9._-], first a letter or digit)", value)
    return value


def _origin(value: object, where: str) -> str:
    if type(value) is not str or _ORIGIN.fullmatch(value) is None:
        raise _fail(where, "not an origin (1-128 bytes of printable ASCII, no '+')", value)
    return value


def _key_bytes(value: object, where: str) -> bytes:
    if type(value) is not str:
        raise _fail(where, "want a base64 string", type(value).__name__)
    try:
        return b64d(value)
    except ValueError as exc:
        raise _fail(where, f"not canonical standard base64 ({exc})", value) from None


def _p256(value: object, where: str) -> ec.EllipticCurvePublicKey:
    try:
        return p256_public_from_sec1(_key_bytes(value, where))
    except KeyTrustError as exc:
        raise _fail(where, exc.message) from None


def _vkey(value: object, where: str) -> NoteVerifier:
    """A vkey ``<name>+<key id>+<base64 key>``, split at its first two ``+``."""
    if type(value) is not str:
        raise _fail(where, "want a vkey string", type(value).__name__)
    try:
        verifier = NoteVerifier.from_vkey(value)
    except NoteKeyError as exc:
        raise _fail(where, f"bad vkey: {exc.message}", value) from None
    if _ORIGIN.fullmatch(verifier.name) is None:
        raise _fail(where, "a vkey name here has the origin syntax (§1)", verifier.name)
    return verifier


def _witness_vkey(value: object, where: str) -> WitnessVerifier:
    """A witness vkey ``<name>+<key id>+<base64(0x04 || key)>`` (§7.1)."""
    if type(value) is not str:
        raise _fail(where, "want a vkey string", type(value).__name__)
    try:
        witness = WitnessVerifier.from_vkey(value)
    except NoteKeyError as exc:
        raise _fail(where, f"bad witness vkey: {exc.message}", value) from None
    if _ORIGIN.fullmatch(witness.name) is None:
        raise _fail(where, "a vkey name here has the origin syntax (§1)", witness.name)
    return witness


def _patterns(value: object, where: str) -> tuple[str, ...]:
    if type(value) is not list:
        raise _fail(where, "want a list of patterns", type(value).__name__)
    for i, pattern in enumerate(value):
        w = f"{where}[{i}]"
        if type(pattern) is not str:
            raise _fail(w, "want a pattern (a string)", type(pattern).__name__)
        raw = check_text(pattern)
        if raw is None:
            raise _fail(w, "not valid Unicode (a lone surrogate)")
        if not 1 <= len(raw) <= MAX_PATTERN_BYTES:
            raise _fail(w, f"a pattern is 1..{MAX_PATTERN_BYTES} bytes", f"{len(raw)} bytes")
        control = _CONTROL.search(pattern)
        if control is not None:
            raise _fail(w, "holds a control character", f"U+{ord(control.group()):04X}")
    return tuple(value)


def _unique(seen: Any, key: object, where: str, what: str) -> None:
    """Refuse a second entry with the same id (``seen``: a set or the dict being filled)."""
    if key in seen:
        raise _fail(where, f"{what} pinned twice", key)


def parse_trust(doc: object) -> Trust:
    """Check a decoded trust document (module docstring) and build :class:`Trust`."""
    top = _members(doc, "(top level)", _TOP_MEMBERS, frozenset({"format", "version"}))
    if type(top["format"]) is not str or top["format"] != FORMAT:
        raise _fail("format", f"not a ColdTrace trust file: want {FORMAT!r}", top["format"])
    version = top["version"]
    if type(version) is not int or version != VERSION:
        if type(version) is int and version == 1:
            raise TrustError(
                "version 1 trust files are not supported by this verifier (protocol v2): "
                "rewrite it with registry scopes",
                expected=VERSION,
                found=1,
            )
        raise _fail("version", f"want the integer {VERSION}", version)
    trust = Trust()

    origins: set[object] = set()
    for i, item in enumerate(_list(top, "logs")):
        where = f"logs[{i}]"
        o = _members(item, where, _LOG_MEMBERS)
        origin = _origin(o["origin"], f"{where}.origin")
        verifier = _vkey(o["vkey"], f"{where}.vkey")
        if verifier.name != origin:
            raise _fail(
                f"{where}.vkey", f"the key's name must be the origin {origin!r}", verifier.name
            )
        _unique(origins, origin, where, "log origin")
        origins.add(origin)
        trust.logs.append(verifier)

    for i, item in enumerate(_list(top, "registries")):
        where = f"registries[{i}]"
        o = _members(item, where, _REGISTRY_MEMBERS)
        rid = _id(o["id"], f"{where}.id")
        key = _p256(o["key"], f"{where}.key")
        scopes = Scopes(
            _patterns(o["devices"], f"{where}.devices"),
            _patterns(o["places"], f"{where}.places"),
            _patterns(o["gtins"], f"{where}.gtins"),
        )
        _unique(trust.registries, rid, where, "registry id")
        trust.registries[rid] = key
        trust.scopes[rid] = scopes

    contracts: set[object] = set()
    for i, item in enumerate(_list(top, "ledgers")):
        where = f"ledgers[{i}]"
        kind = item.get("type") if type(item) is dict else None
        if kind == "local":
            o = _members(item, where, _LOCAL_MEMBERS)
            lid = _origin(o["id"], f"{where}.id")
            raw = _key_bytes(o["key"], f"{where}.key")
            if len(raw) != 32:
                raise _fail(f"{where}.key", "an Ed25519 key is 32 bytes", f"{len(raw)} bytes")
            _unique(trust.ledgers, lid, where, "ledger id")
            try:
                trust.ledgers[lid] = ed25519.Ed25519PublicKey.from_public_bytes(raw)
            except ValueError:
                raise _fail(f"{where}.key", "not an Ed25519 public key") from None
        elif kind == "evm":
            o = _members(item, where, _EVM_MEMBERS)
            chain_id = o["chain_id"]
            if type(chain_id) is not int or not 1 <= chain_id <= _MAX_UINT64:
                raise _fail(f"{where}.chain_id", f"want an integer in 1..{_MAX_UINT64}", chain_id)
            try:
                contract = _evm_address(o["contract"])
            except MalformedReceiptError as exc:
                raise _fail(f"{where}.contract", exc.message, o["contract"]) from None
            _unique(contracts, (chain_id, contract), where, "EVM contract")
            contracts.add((chain_id, contract))
            trust.evm.append(EvmLedger(chain_id, contract))
        else:
            _members(item, where, _LOCAL_MEMBERS | _EVM_MEMBERS, frozenset({"type"}))
            raise _fail(f"{where}.type", "want 'local' or 'evm'", kind)

    for i, item in enumerate(_list(top, "devices")):
        where = f"devices[{i}]"
        o = _members(item, where, _DEVICE_MEMBERS)
        did = _id(o["id"], f"{where}.id")
        key = _p256(o["key"], f"{where}.key")
        _unique(trust.devices, did, where, "device id")
        trust.devices[did] = key

    witnesses: set[object] = set()
    for i, item in enumerate(_list(top, "witnesses")):
        where = f"witnesses[{i}]"
        o = _members(item, where, _WITNESS_MEMBERS)
        witness = _witness_vkey(o["vkey"], f"{where}.vkey")
        _unique(witnesses, witness.vkey, where, "witness key")
        witnesses.add(witness.vkey)
        trust.witnesses.append(witness)

    quorum = top.get("quorum", 0)
    if type(quorum) is not int or not 0 <= quorum <= len(trust.witnesses):
        raise _fail(
            "quorum", f"want an integer in 0..{len(trust.witnesses)} (the witnesses)", quorum
        )
    trust.quorum = quorum

    if trust.is_empty():
        raise TrustError("trust file pins no keys: nothing could be verified against it")
    return trust


# --- writing ------------------------------------------------------------------------------------


def trust_document(
    *,
    logs: Sequence[tuple[str, str]] = (),
    registries: Mapping[str, tuple[bytes, Scopes]] | None = None,
    ledgers: Mapping[str, bytes] | None = None,
    evm: Sequence[EvmLedger] = (),
    devices: Mapping[str, bytes] | None = None,
    witnesses: Sequence[str] = (),
    quorum: int | None = None,
) -> dict[str, Any]:
    """The JSON document (version 2) for the given keys.

    ``logs``: (origin, vkey) pairs; ``registries``: id → (SEC1 key bytes,
    scopes), the scopes always explicit; ``ledgers``: local ledger id → raw
    Ed25519 key; ``devices``: id → SEC1 key bytes; ``witnesses``: vkeys.
    Lists with no entries and an absent ``quorum`` are left out. The document
    is not checked here: read it back with :func:`parse_trust`.
    """

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    if logs:
        doc["logs"] = [{"origin": o, "vkey": v} for o, v in logs]
    if registries:
        doc["registries"] = [
            {
                "id": rid,
                "key": b64(key),
                "devices": list(s.devices),
                "places": list(s.places),
                "gtins": list(s.gtins),
            }
            for rid, (key, s) in registries.items()
        ]
    ledger_list: list[dict[str, Any]] = [
        {"type": "local", "id": k, "key": b64(v)} for k, v in (ledgers or {}).items()
    ]
    ledger_list += [{"type": "evm", "chain_id": e.chain_id, "contract": e.contract} for e in evm]
    if ledger_list:
        doc["ledgers"] = ledger_list
    if devices:
        doc["devices"] = [{"id": k, "key": b64(v)} for k, v in devices.items()]
    if witnesses:
        doc["witnesses"] = [{"vkey": v} for v in witnesses]
    if quorum is not None:
        doc["quorum"] = quorum
    return doc
