"""The registry: who may sign records, with what key, what they watch, how products keep.

Everything a verifier learns from the operator is a record signed by the
operator's registry key and appended to the log like any other
(docs/protocol.md §2.5-§2.7, docs/decisions.md D4, D8):

- **registrations** (kind 4): a device's key, role, organisation and
  calibration; a later one updates them or revokes the key (state 2:
  records logged before the revocation stay valid, log order decides);
- **bindings** (kind 5): *from ``time`` on, exactly these devices monitor
  ``target``* (a place, vehicle or container);
- **profiles** (kind 6): how a product (a GTIN, or one lot of it) must be
  kept: range, alarm delay, cumulative limit, MKT limit, reading gap.

The registry numbers all three in its own signer chain (seq, prev), as a
device does. Bindings and profiles are also *statements*: each restates the
whole state of its subject and sits in a **statement chain** per (signer,
target) or (signer, gtin, lot), numbered by ``cseq`` and linked by ``cprev``;
``time`` (the effective time, which the operator may set in the past) never
goes back along a chain (§4.2). A chain is *restated* (same content, new
statement) when a bundle needs an interval closed, and daily.

:class:`RegistrySigner` (the CLI, the gateway's daily restating) signs with
the registry's private key and puts the records in the store's *outbox*; the
running gateway logs them through the same ingest path as device records.
:class:`Registry` is what ingest consults: the key of every active device and
registry, the head of every statement chain, and the current bindings
(device -> target), updated as registry records are logged.

The registry speaks only within its **scopes** (§10): patterns for the device
ids it registers, the places it binds and the GTINs it profiles, from
``[registry] devices / places / gtins`` (default ``["*"]``: a single
operator). A verifier refuses a record outside them (``out_of_scope``), so the
signer refuses to make one and ingest refuses to log one.

The per-device **ack key** (32 bytes, §5.2) is a secret shared with the
device at provisioning. It is kept in the store, never in the log.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from gateway.evidence.store import DeviceRow, SqlStore, StatementRow
from protocol.assemble import ChainKey, chain_label, chain_of
from protocol.cose import ID_PATTERN, parse_sign1
from protocol.errors import VerificationError
from protocol.keys import b64d, b64e, p256_public_from_sec1, p256_public_to_sec1
from protocol.record import (
    KIND_BINDING,
    KIND_PROFILE,
    ZERO_PREV,
    Binding,
    ProductProfile,
    Registration,
    chain_hash,
    decode_payload,
    make_record,
)
from protocol.scope import authority, pattern_matches

__all__ = [
    "ROLES",
    "ChainHead",
    "KeyEntry",
    "Registry",
    "RegistryError",
    "RegistrySigner",
    "Scopes",
    "StatementEntry",
    "StatementError",
    "chain_label",
    "chain_of",
    "load_provisioning",
    "statement_history",
    "statement_row",
]

ROLES = {1: "logger", 2: "reader"}
_ROLE_NAMES = {
    "1": 1,
    "logger": 1,
    "temperature logger": 1,
    "temperature-logger": 1,
    "sensor": 1,
    "2": 2,
    "reader": 2,
    "handover reader": 2,
    "handover-reader": 2,
}
ROLE_LOGGER = 1
STATE_ACTIVE = 1
STATE_REVOKED = 2
MIN_TIME = 1577836800  # 2020-01-01: no statement is effective earlier (ingest's min_time)
FUTURE_SLACK = 60  # s a statement's time may be ahead of the signer's clock
MAX_DEVICES_FIELD = 128  # bytes of binding field 51 (§2.6)

Statement = Binding | ProductProfile
# A statement chain within one registry: (kind, chain name), see chain_of()
# (ChainKey, chain_of and chain_label are protocol.assemble's).


class RegistryError(Exception):
    """A registry record is invalid or may not be signed (unknown device, key
    mismatch, already revoked, a time before the chain's last statement...)."""


class StatementError(RegistryError):
    """A logged statement breaks its chain's rules (§4.2); ``reason`` is the
    quarantine reason (``statement_fork``, ``statement_gap``,
    ``statement_unlinked``, ``statement_backdated``, ``out_of_scope``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# --- scopes (§1 "Pattern", §10) ------------------------------------------------------------


SELF = ""  # the gateway's own registry in Scopes.authority_for (never a protocol id)


@dataclass(frozen=True)
class Scopes:
    """The device ids, places and GTINs a registry speaks for (patterns, ``*`` = any).

    ``others``: the ``gtins`` patterns of the other authorities this gateway
    logs (``[[registry.authorities]]``, e.g. a brand owner's key): the
    registry speaks for a GTIN only where it is the authority (§10: the most
    specific matching pattern wins; a tie gives no authority).
    """

    devices: tuple[str, ...] = ("*",)
    places: tuple[str, ...] = ("*",)
    gtins: tuple[str, ...] = ("*",)
    others: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @staticmethod
    def _any(patterns: Sequence[str], value: str) -> bool:
        return any(pattern_matches(p, value) for p in patterns)

    def authority_for(self, gtin: str) -> str | None:
        """Who speaks for ``gtin``: :data:`SELF`, another authority's id, or None."""
        return authority({SELF: self.gtins, **dict(self.others)}, gtin)

    def matches(self, what: str, value: str) -> bool:
        """Whether ``value`` is in the ``what`` scope (devices, places or gtins)."""
        if what == "gtins" and self.others:
            return self.authority_for(value) == SELF
        return self._any(getattr(self, what), value)

    def check(self, what: str, value: str) -> None:
        """Raise StatementError(``out_of_scope``) unless ``value`` is in the ``what`` scope."""
        if self.matches(what, value):
            return
        patterns = getattr(self, what)
        noun = {"devices": "device id", "places": "place", "gtins": "GTIN"}[what]
        owner = self.authority_for(value) if what == "gtins" else None
        if owner:
            raise StatementError(
                "out_of_scope",
                f"GTIN {value!r} belongs to authority {owner!r} ([[registry.authorities]], a "
                "more specific gtins pattern): only its key may sign the GTIN's profile",
            )
        raise StatementError(
            "out_of_scope",
            f"{noun} {value!r} is outside the registry's scope ([registry] {what} = "
            f"{list(patterns)}): a verifier would refuse the record as out_of_scope",
        )


# --- statement chains ---------------------------------------------------------------------


# chain_of (kind, chain name) and chain_label (how the CLI names a chain) are
# protocol.assemble's, shared with the trace planner.


@dataclass(slots=True)
class ChainHead:
    """The last logged (or pending) statement of a chain."""

    cseq: int
    chash: bytes
    time: int
    leaf: int  # PENDING while it waits in the outbox
    devices: tuple[str, ...] = ()  # a binding's devices
    raw: bytes | None = None  # pending statements only (logged ones are in the store)


PENDING = 1 << 62  # the leaf of a record still in the outbox


def statement_row(p: Statement, signer: str, leaf: int, chash: bytes) -> StatementRow:
    kind, name = chain_of(p)
    devices = p.devices if isinstance(p, Binding) else None
    return StatementRow(leaf, signer, kind, name, p.cseq, p.time, chash, devices)


@dataclass(slots=True)
class KeyEntry:
    """A signer the gateway knows: its key, whether it may sign now, what it is."""

    key: ec.EllipticCurvePublicKey
    active: bool = True
    is_registry: bool = False


class Registry:
    """Keys of registries (pinned) and devices (from logged registrations), the
    heads of the registries' statement chains and the current bindings.

    ``keys`` is read by the verification threads; entries are replaced, never
    mutated, so a reader always sees a whole entry. ``updates`` lists every
    change as ``(id, SEC1 key, active, is_registry)``, oldest first, so that
    verification processes can follow the registry by applying ``updates[n:]``.
    Statement heads and bindings are used on the ingest thread only.
    """

    def __init__(
        self,
        registries: dict[str, ec.EllipticCurvePublicKey],
        devices: dict[str, DeviceRow],
        statements: Iterable[StatementRow] = (),
        scopes: Scopes | None = None,
        authorities: Mapping[str, ec.EllipticCurvePublicKey] | None = None,
    ) -> None:
        self.registries = dict(registries)
        self.devices = dict(devices)
        self.scopes = scopes or Scopes()
        # Other authorities (a brand owner's key): they sign product profiles
        # only, within their gtins (``scopes.others``), and are never restated here.
        self.authorities = dict(authorities or {})
        signers = {**self.authorities, **self.registries}
        self.keys: dict[str, KeyEntry] = {
            rid: KeyEntry(key, True, True) for rid, key in signers.items()
        }
        self.updates: list[tuple[str, bytes, bool, bool]] = [
            (rid, p256_public_to_sec1(key), True, True) for rid, key in signers.items()
        ]
        for d in devices.values():
            if d.id not in self.keys:
                self.keys[d.id] = KeyEntry(p256_public_from_sec1(d.key), d.state == STATE_ACTIVE)
                self.updates.append((d.id, d.key, d.state == STATE_ACTIVE, False))
        # (signer, kind, chain name) -> head; target -> (leaf, devices) of its head
        self.heads: dict[tuple[str, int, str], ChainHead] = {}
        for row in statements:
            devs = tuple(row.devices.split(" ")) if row.devices else ()
            head = ChainHead(row.cseq, row.chash, row.time, row.leaf, devs)
            old = self.heads.get((row.signer, row.kind, row.chain))
            if old is None or row.cseq > old.cseq:
                self.heads[(row.signer, row.kind, row.chain)] = head

    # --- registrations ---------------------------------------------------------------

    def check(self, reg: Registration, registry: str) -> DeviceRow | None:
        """Raise RegistryError if ``reg`` may not be applied; the current row, if any."""
        if registry in self.authorities:
            raise StatementError(
                "out_of_scope", f"authority {registry!r} may sign product profiles only"
            )
        if reg.device in self.registries or reg.device in self.authorities:
            raise RegistryError(f"{reg.device!r} is a registry id, not a device")
        self.scopes.check("devices", reg.device)
        row = self.devices.get(reg.device)
        if row is None:
            if reg.state == STATE_REVOKED:
                raise RegistryError(f"revocation of unknown device {reg.device!r}")
            return None
        if row.key != reg.key:
            raise RegistryError(
                f"registration of {reg.device!r} carries another key than its registered one"
            )
        if row.state == STATE_REVOKED:
            raise RegistryError(f"{reg.device!r} is revoked; a device id is never reused")
        return row

    def apply(self, reg: Registration, registry: str, leaf: int, now: int) -> DeviceRow:
        """Apply a logged registration (already checked); return the new device row."""
        row = self.check(reg, registry)
        revoked = reg.state == STATE_REVOKED
        new = DeviceRow(
            id=reg.device,
            role=reg.role,
            key=reg.key if row is None else row.key,
            org=reg.org,
            state=reg.state,
            registry=registry,
            registered_leaf=leaf if row is None else row.registered_leaf,
            place=None,
            cal=reg.cal if reg.cal is not None or row is None else row.cal,
            revoked_leaf=leaf if revoked else None,
            updated=now,
        )
        self.devices[new.id] = new
        old = self.keys.get(new.id)
        key = old.key if old is not None else p256_public_from_sec1(new.key)
        self.keys[new.id] = KeyEntry(key, not revoked, False)
        self.updates.append((new.id, new.key, not revoked, False))
        return new

    # --- statements (§4.2) -------------------------------------------------------------

    def check_statement(self, p: Statement, signer: str) -> None:
        """Raise StatementError if ``p`` may not be logged next in its chain."""
        if signer in self.authorities:
            if isinstance(p, Binding):
                raise StatementError(
                    "out_of_scope", f"authority {signer!r} may sign product profiles only"
                )
            owner = self.scopes.authority_for(p.gtin)
            if owner != signer:
                who = {None: "no one (no pattern matches, or two tie)", SELF: "this registry"}
                raise StatementError(
                    "out_of_scope",
                    f"GTIN {p.gtin!r} is outside the gtins of authority {signer!r}: "
                    f"its authority is {who.get(owner, repr(owner))}",
                )
        elif isinstance(p, Binding):
            self.scopes.check("places", p.target)
        else:
            self.scopes.check("gtins", p.gtin)
        kind, name = chain_of(p)
        label = chain_label((kind, name))
        head = self.heads.get((signer, kind, name))
        if head is None:
            if p.cseq != 0:
                raise StatementError(
                    "statement_gap",
                    f"{label}: cseq {p.cseq}, but no statement of the chain is logged "
                    "(a chain starts at cseq 0)",
                )
            return
        if p.cseq <= head.cseq:
            raise StatementError(
                "statement_fork",
                f"{label}: cseq {p.cseq} is taken (the chain is at cseq {head.cseq}): "
                "two different statements for one position",
            )
        if p.cseq != head.cseq + 1:
            raise StatementError(
                "statement_gap",
                f"{label}: cseq {p.cseq} follows cseq {head.cseq}; "
                f"{head.cseq + 1}..{p.cseq - 1} are missing",
            )
        if p.cprev != head.chash:
            raise StatementError(
                "statement_unlinked",
                f"{label}: cprev {p.cprev.hex()} is not the hash of cseq {head.cseq} "
                f"({head.chash.hex()})",
            )
        if p.time < head.time:
            raise StatementError(
                "statement_backdated",
                f"{label}: time {p.time} is before the time {head.time} of cseq {head.cseq}: "
                "a statement cannot change a past the chain already stated",
            )

    def apply_statement(self, p: Statement, signer: str, leaf: int, chash: bytes) -> StatementRow:
        """Apply a logged statement (already checked); return its store row."""
        kind, name = chain_of(p)
        devices = p.device_list if isinstance(p, Binding) else ()
        self.heads[(signer, kind, name)] = ChainHead(p.cseq, chash, p.time, leaf, devices)
        return statement_row(p, signer, leaf, chash)

    def bindings(self) -> dict[str, tuple[str, ...]]:
        """Target -> the devices its latest binding names (targets with none left out)."""
        out: dict[str, tuple[str, ...]] = {}
        for (_, kind, name), head in self.heads.items():
            if kind == KIND_BINDING and head.devices:
                out[name] = head.devices
        return out

    def place_of(self, device: str) -> str | None:
        """The target ``device`` monitors now: the latest binding that names it."""
        best: tuple[int, str] | None = None
        for (_, kind, name), head in self.heads.items():
            if (
                kind == KIND_BINDING
                and device in head.devices
                and (best is None or head.leaf > best[0])
            ):
                best = (head.leaf, name)
        return None if best is None else best[1]

    def places_of(self) -> dict[str, str]:
        """Device -> :meth:`place_of` for every bound device."""
        best: dict[str, tuple[int, str]] = {}
        for (_, kind, name), head in self.heads.items():
            if kind != KIND_BINDING:
                continue
            for dev in head.devices:
                if dev not in best or head.leaf > best[dev][0]:
                    best[dev] = (head.leaf, name)
        return {dev: name for dev, (_, name) in best.items()}


def parse_role(value: object) -> int:
    role = _ROLE_NAMES.get(str(value).strip().lower())
    if role is None:
        raise RegistryError(f"unknown role {value!r} (want logger/1 or reader/2)")
    return role


def _key_bytes(value: object, what: str, size: int | None = None) -> bytes:
    """Bytes from base64 or hex text."""
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            raw = (
                bytes.fromhex(text)
                if all(c in "0123456789abcdefABCDEF" for c in text)
                else b64d(text)
            )
        except ValueError:
            raise RegistryError(f"{what} is neither hex nor base64") from None
    else:
        raise RegistryError(f"{what} must be a string")
    if size is not None and len(raw) != size:
        raise RegistryError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def _when(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


#: A profile's own fields (§2.7), as keyword arguments of :func:`profile_payload`;
#: ``lots`` and ``links`` are flags (True: the field is 1; False: absent).
PROFILE_FIELDS = ("lot", "low", "high", "delay", "gap", "cumul", "mkt", "name", "lots", "links")


def profile_payload(gtin: str, values: Mapping[str, Any], **chain: Any) -> ProductProfile:
    """A kind-6 payload for ``gtin``; ``chain`` gives the common and statement fields
    (boot, seq, time, tq, prev, cseq, cprev), zero until the signer fills them in."""
    unknown = set(values) - set(PROFILE_FIELDS)
    if unknown:
        raise TypeError(f"unknown profile fields {sorted(unknown)}")
    fields: dict[str, Any] = {f: values.get(f) for f in PROFILE_FIELDS}
    fields["lots"] = 1 if fields["lots"] else None
    fields["links"] = 1 if fields["links"] else None
    common: dict[str, Any] = {
        "boot": 0,
        "seq": 0,
        "time": 0,
        "tq": 2,
        "prev": ZERO_PREV,
        "cseq": 0,
        "cprev": ZERO_PREV,
    }
    return ProductProfile(**(common | chain), gtin=gtin, **fields)


class RegistrySigner:
    """Signs registry records with the registry key and queues them for the log.

    Every method signs in one exclusive store transaction against the view
    the log will have once the outbox is logged (:meth:`view`), so two CLI
    processes cannot give two records one seq or one cseq.
    """

    def __init__(
        self,
        store: SqlStore,
        registry_id: str,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        scopes: Scopes | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if not ID_PATTERN.fullmatch(registry_id):
            raise RegistryError(f"registry id {registry_id!r} is not a protocol id")
        self.store = store
        self.id = registry_id
        self.key = private_key
        self.public_key = private_key.public_key()
        self.scopes = scopes or Scopes()
        self.clock = clock

    def view(self) -> Registry:
        """The registry as the log will have it once the outbox is logged."""
        reg = Registry(
            {self.id: self.public_key},
            self.store.devices(),
            self.store.statement_heads(),
            Scopes(),  # what is already signed stands; scopes apply to new records
        )
        for _, raw in self.store.outbox_pending():
            with contextlib.suppress(RegistryError, VerificationError):  # the gateway refuses it
                msg = parse_sign1(raw)
                p = decode_payload(msg.payload)
                if isinstance(p, Registration):
                    reg.apply(p, msg.kid, PENDING, 0)
                elif isinstance(p, (Binding, ProductProfile)):
                    reg.check_statement(p, msg.kid)
                    reg.apply_statement(p, msg.kid, PENDING, chain_hash(raw))
                    reg.heads[(msg.kid, *chain_of(p))].raw = raw
        return reg

    def _sign(self, build: Callable[[Registry, int, bytes], Any]) -> bytes:
        self.store.begin_exclusive()
        ok = False
        try:
            view = self.view()
            last = self.store.last_signed(self.id)
            seq, prev = (0, ZERO_PREV) if last is None else (last[0] + 1, chain_hash(last[1]))
            payload = build(view, seq, prev)
            try:
                raw = make_record(payload, self.id, self.key)
            except VerificationError as exc:  # a field out of its bounds (§2)
                raise RegistryError(str(exc)) from None
            self.store.outbox_add(self.id, seq, raw)
            ok = True
            return raw
        finally:
            self.store.end(ok)

    def _now(self) -> int:
        return int(self.clock())

    # --- registrations ---------------------------------------------------------------

    def add(
        self,
        device: str,
        key: bytes | ec.EllipticCurvePublicKey,
        *,
        role: int,
        org: str,
        cal: int | None = None,
        ack_key: bytes | None = None,
        place: str | None = None,
        at: int | None = None,
    ) -> tuple[bytes, bytes]:
        """Register ``device``; return (registration record, ack key).

        ``place`` (a convenience, version 1 had it in the registration): bind
        the device to it as well, from ``at`` (default now). Only a logger is
        bound: a binding says which devices *monitor* a place, and a reader's
        place is its own configuration (every scan carries it).
        """
        if not ID_PATTERN.fullmatch(device):
            raise RegistryError(f"{device!r} is not a device id (§1)")
        if place is not None and role != ROLE_LOGGER:
            raise RegistryError(
                f"{device}: only temperature loggers are bound to places; a reader's place "
                "is in its own configuration and in every scan it signs"
            )
        self._in_scope("devices", device)
        if place is not None:
            self._in_scope("places", place)
        sec1 = key if isinstance(key, bytes) else p256_public_to_sec1(key)
        try:
            p256_public_from_sec1(sec1)
        except (ValueError, VerificationError) as exc:
            raise RegistryError(f"{device}: the key is not a P-256 point: {exc}") from None
        if ack_key is None:
            ack_key = secrets.token_bytes(32)
        if len(ack_key) != 32:
            raise RegistryError("an ack key is 32 bytes")

        def build(view: Registry, seq: int, prev: bytes) -> Registration:
            row = view.devices.get(device)
            if row is not None:
                if row.key != sec1:
                    raise RegistryError(f"{device} is registered with another key")
                if row.state == STATE_REVOKED:
                    raise RegistryError(f"{device} is revoked; give the board a new id")
            return Registration(
                boot=0,
                seq=seq,
                time=self._now(),
                tq=2,
                prev=prev,
                device=device,
                key=sec1,
                role=role,
                org=org,
                state=STATE_ACTIVE,
                cal=cal,
            )

        raw = self._sign(build)
        self.store.set_ack_key(device, ack_key)
        if place is not None:
            self.bind(place, [device], at=at)
        return raw, ack_key

    def update(
        self,
        device: str,
        *,
        cal: int | None = None,
        place: str | None = None,
        at: int | None = None,
        extensions: Mapping[int, int | bytes | str] | None = None,
    ) -> list[bytes]:
        """A new calibration (a registration) and/or a new place: unbind the
        device from the targets it monitors, bind it to ``place``. Returns the
        records signed. ``extensions`` (keys >= 1000) go into the registration,
        e.g. the calibration document's hash (gateway/calibrate.py)."""
        out: list[bytes] = []
        if cal is None and place is None:
            raise RegistryError("update needs --cal or --place")
        if place is not None:
            self._in_scope("places", place)
        known = self._known(self.view().devices, device)
        if cal is not None:
            out.append(self._registration(known.id, STATE_ACTIVE, cal=cal, extensions=extensions))
        if place is not None:
            for target in self._targets_of(device):
                if target != place:
                    out.append(self.unbind(target, [device], at=at))
            if place not in self._targets_of(device):
                out.append(self.bind(place, [device], at=at))
        return out

    def revoke(self, device: str) -> list[bytes]:
        """Unbind the device from every target it monitors, then log its
        revocation (records logged before it stay valid). Returns the records."""
        self._known(self.view().devices, device)
        out = [self.unbind(target, [device]) for target in self._targets_of(device)]
        out.append(self._registration(device, STATE_REVOKED))
        return out

    def _registration(
        self,
        device: str,
        state: int,
        *,
        cal: int | None = None,
        extensions: Mapping[int, int | bytes | str] | None = None,
    ) -> bytes:
        def build(view: Registry, seq: int, prev: bytes) -> Registration:
            row = self._known(view.devices, device)
            return Registration(
                boot=0,
                seq=seq,
                time=self._now(),
                tq=2,
                prev=prev,
                device=device,
                key=row.key,
                role=row.role,
                org=row.org,
                state=state,
                cal=cal if cal is not None else row.cal,
                **({"extensions": dict(extensions)} if extensions else {}),
            )

        return self._sign(build)

    @staticmethod
    def _known(devices: dict[str, DeviceRow], device: str) -> DeviceRow:
        row = devices.get(device)
        if row is None:
            raise RegistryError(f"{device} is not registered")
        if row.state == STATE_REVOKED:
            raise RegistryError(f"{device} is already revoked")
        return row

    def _in_scope(self, what: str, value: str) -> None:
        try:
            self.scopes.check(what, value)
        except StatementError as exc:
            raise RegistryError(str(exc)) from None

    def _targets_of(self, device: str) -> list[str]:
        return sorted(t for t, devs in self.view().bindings().items() if device in devs)

    # --- statements --------------------------------------------------------------------

    def _statement(
        self,
        key: ChainKey,
        at: int | None,
        make: Callable[[Registry, ChainHead | None], Statement],
    ) -> bytes:
        """Sign the next statement of chain ``key``: ``make(view, head)`` gives its
        content (cseq, cprev, time and the signer chain are filled in here)."""

        def build(view: Registry, seq: int, prev: bytes) -> Statement:
            head = view.heads.get((self.id, *key))
            now = self._now()
            when = now if at is None else int(at)
            label = chain_label(key)
            if when > now + FUTURE_SLACK:
                raise RegistryError(f"{label}: --at {_when(when)} is in the future")
            if when < MIN_TIME:
                raise RegistryError(f"{label}: --at {_when(when)} is before 2020")
            if head is not None and when < head.time:
                raise RegistryError(
                    f"{label}: --at {_when(when)} is before the chain's previous statement "
                    f"(cseq {head.cseq}, effective {_when(head.time)}); a statement cannot "
                    "change a past the chain already stated"
                )
            p = make(view, head)
            cseq, cprev = (0, ZERO_PREV) if head is None else (head.cseq + 1, head.chash)
            return replace(p, seq=seq, prev=prev, time=when, cseq=cseq, cprev=cprev)

        return self._sign(build)

    def _binding(self, target: str, devices: Iterable[str]) -> Binding:
        ids = sorted(set(devices))
        text = " ".join(ids) if ids else None
        if text is not None and len(text.encode()) > MAX_DEVICES_FIELD:
            raise RegistryError(
                f"binding of {target}: {len(ids)} device ids take {len(text.encode())} bytes, "
                f"the field holds {MAX_DEVICES_FIELD}"
            )
        return Binding(
            boot=0,
            seq=0,
            time=0,
            tq=2,
            prev=ZERO_PREV,
            cseq=0,
            cprev=ZERO_PREV,
            target=target,
            devices=text,
        )

    def bind(self, target: str, devices: Sequence[str], *, at: int | None = None) -> bytes:
        """Add ``devices`` to the set monitoring ``target`` (from ``at``, default now)."""
        self._in_scope("places", target)
        if not devices:
            raise RegistryError("bind needs at least one device")

        def make(view: Registry, head: ChainHead | None) -> Statement:
            for dev in devices:
                row = view.devices.get(dev)
                if row is None:
                    raise RegistryError(f"{dev} is not registered: register it before binding it")
                if row.state == STATE_REVOKED:
                    raise RegistryError(f"{dev} is revoked and cannot monitor anything")
            current = head.devices if head is not None else ()
            return self._binding(target, [*current, *devices])

        return self._statement((KIND_BINDING, target), at, make)

    def unbind(self, target: str, devices: Sequence[str], *, at: int | None = None) -> bytes:
        """Remove ``devices`` from the set monitoring ``target``; an empty set is a
        statement without ``devices`` (no device monitors the target)."""
        if not devices:
            raise RegistryError("unbind needs at least one device")

        def make(view: Registry, head: ChainHead | None) -> Statement:
            current = head.devices if head is not None else ()
            missing = [d for d in devices if d not in current]
            if missing:
                raise RegistryError(
                    f"{', '.join(missing)} {'does' if len(missing) == 1 else 'do'} not "
                    f"monitor {target} (bound now: {', '.join(current) or 'none'})"
                )
            return self._binding(target, [d for d in current if d not in devices])

        return self._statement((KIND_BINDING, target), at, make)

    def set_profile(self, gtin: str, *, at: int | None = None, **values: Any) -> bytes:
        """Sign the product profile of ``gtin`` (or of its ``lot``) in force from ``at``;
        ``values`` are the fields of :data:`PROFILE_FIELDS`."""
        self._in_scope("gtins", gtin)
        profile = profile_payload(gtin, values)
        key = chain_of(profile)
        return self._statement(key, at, lambda view, head: profile)

    def last_statement(self, key: ChainKey, view: Registry | None = None) -> Statement | None:
        """The chain's last statement (logged or pending), decoded; None if it has none."""
        view = view or self.view()
        head = view.heads.get((self.id, *key))
        if head is None:
            return None
        raw = head.raw
        if raw is None:
            rec = self.store.record(head.leaf)
            if rec is None:
                raise RegistryError(f"{chain_label(key)}: leaf {head.leaf} is not stored")
            raw = rec.raw
        p = decode_payload(parse_sign1(raw).payload)
        assert isinstance(p, (Binding, ProductProfile))
        return p

    def restate(self, key: ChainKey, *, at: int | None = None) -> bytes:
        """Sign a new statement of chain ``key`` with unchanged content (§4.2)."""
        kind, name = key
        if kind == KIND_PROFILE:  # e.g. the GTIN has another authority now
            self._in_scope("gtins", name.partition(" ")[0])

        def make(view: Registry, head: ChainHead | None) -> Statement:
            last = self.last_statement(key, view)
            if last is None:
                raise RegistryError(f"{chain_label(key)}: no statement to restate")
            return last

        return self._statement(key, at, make)

    def chains(self, view: Registry | None = None) -> dict[ChainKey, ChainHead]:
        """This registry's statement chains and their heads (pending included)."""
        view = view or self.view()
        return {(k, n): h for (s, k, n), h in view.heads.items() if s == self.id}

    def restate_due(self, older_than: int) -> list[ChainKey]:
        """Restate every chain whose last statement is older than ``older_than``
        seconds; return the chains restated."""
        now = self._now()
        done = []
        for key, head in sorted(self.chains().items()):
            kind, name = key
            if kind == KIND_PROFILE and not self.scopes.matches("gtins", name.partition(" ")[0]):
                continue  # no longer ours to state (another authority, a narrower scope)
            if head.time <= now - older_than:
                self.restate(key)
                done.append(key)
        return done

    # --- provisioning files ---------------------------------------------------------

    def import_entries(
        self, entries: Iterable[dict[str, Any]], *, at: int | None = None
    ) -> list[str]:
        """Register every provisioning entry (and bind a logger to its
        ``place``, if any, from ``at``); return the device ids registered."""
        done = []
        for e in entries:
            device = str(e.get("device") or e.get("id") or "")
            key = _key_bytes(e.get("key") or e.get("public_key"), f"{device}: key", 65)
            ack = e.get("ack_key")
            place = e.get("place")
            if place is not None and not isinstance(place, str):
                raise RegistryError(f"{device}: place must be a string")
            role = parse_role(e.get("role", 1))
            if role != ROLE_LOGGER:
                place = None  # a reader's place is its configuration, not a binding
            self.add(
                device,
                key,
                role=role,
                org=str(e.get("org") or e.get("organisation") or e.get("organization") or ""),
                cal=e.get("cal"),
                ack_key=None if ack is None else _key_bytes(ack, f"{device}: ack_key", 32),
                place=place or None,
                at=at,
            )
            done.append(device)
        return done


@dataclass(frozen=True)
class StatementEntry:
    """One statement of a chain, for listings: ``leaf`` None while it waits
    in the outbox."""

    key: ChainKey
    signer: str
    cseq: int
    time: int
    leaf: int | None
    payload: Statement


def statement_history(store: SqlStore, kind: int | None = None) -> list[StatementEntry]:
    """Every logged and pending statement (of ``kind``), by chain then cseq."""
    out: list[StatementEntry] = []
    for row in store.statements(kind=kind):
        rec = store.record(row.leaf)
        if rec is None:
            continue
        p = decode_payload(parse_sign1(rec.raw).payload)
        if isinstance(p, (Binding, ProductProfile)):
            out.append(
                StatementEntry((row.kind, row.chain), row.signer, row.cseq, row.time, row.leaf, p)
            )
    for _, raw in store.outbox_pending():
        with contextlib.suppress(VerificationError):
            msg = parse_sign1(raw)
            p = decode_payload(msg.payload)
            if isinstance(p, (Binding, ProductProfile)) and (kind is None or p.kind == kind):
                out.append(StatementEntry(chain_of(p), msg.kid, p.cseq, p.time, None, p))
    out.sort(key=lambda e: (e.key, e.signer, e.cseq))
    return out


def load_provisioning(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Entries of a provisioning JSON file: one object, a list, or {"devices": [...]}.

    Each entry: ``device`` (or ``id``), ``key`` (SEC1 P-256, base64 or hex),
    ``role`` (1/logger or 2/reader), ``org``, optional ``place`` (the device
    is bound to it: a binding statement), ``cal`` and ``ack_key`` (32 bytes,
    base64 or hex; generated when absent).
    """
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(doc, dict) and "devices" in doc:
        doc = doc["devices"]
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
        raise RegistryError(f"{path}: want an object, a list of objects or {{'devices': [...]}}")
    return doc


def device_json(row: DeviceRow, place: str | None = None) -> dict[str, Any]:
    """A device for ``registry list``; ``place``: the target it is bound to now."""
    return {
        "device": row.id,
        "role": ROLES.get(row.role, str(row.role)),
        "key": b64e(row.key),
        "org": row.org,
        "place": place,
        "cal": row.cal,
        "state": "active" if row.state == STATE_ACTIVE else "revoked",
        "registry": row.registry,
        "registered_leaf": row.registered_leaf,
        "revoked_leaf": row.revoked_leaf,
    }
