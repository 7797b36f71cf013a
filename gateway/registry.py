"""The device registry: who may sign records, with what key, where and since when.

A device is known to the gateway only through a **registration record**
(kind 4, docs/protocol.md §2.5): a record signed by the operator's registry
key and appended to the log like any other, so that a verifier can check
"signed by a registered device" from a bundle alone (docs/decisions.md D4).
The registry keeps its own hash chain (seq, prev) like a device.

- **add** registers a device (key, role, organisation, place, calibration);
- **update** records a new place or calibration (same key);
- **revoke** registers state 2: the device's later records are refused,
  records logged before the revocation stay valid (log order decides, §2.5).

The CLI (:class:`RegistrySigner`) signs registrations with the registry's
private key and puts them in the store's *outbox*; the running gateway logs
them through the same ingest path as device records (and the gateway logs
them at start-up too). :class:`Registry` is what ingest consults: the key of
every active device and registry, updated as registrations are logged.

The per-device **ack key** (32 bytes, §5.2) is a secret shared with the
device at provisioning. It is kept in the store, never in the log.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from gateway.store import DeviceRow, SQLiteStore
from protocol.cose import ID_PATTERN, parse_sign1
from protocol.keys import b64d, b64e, p256_public_from_sec1, p256_public_to_sec1
from protocol.record import Registration, chain_hash, decode_payload, make_record

__all__ = [
    "ROLES",
    "KeyEntry",
    "Registry",
    "RegistryError",
    "RegistrySigner",
    "load_provisioning",
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
STATE_ACTIVE = 1
STATE_REVOKED = 2
ZERO_PREV = bytes(16)


class RegistryError(Exception):
    """A registration is invalid (unknown device, key mismatch, already revoked...)."""


@dataclass(slots=True)
class KeyEntry:
    """A signer the gateway knows: its key, whether it may sign now, what it is."""

    key: ec.EllipticCurvePublicKey
    active: bool = True
    is_registry: bool = False


class Registry:
    """Keys of registries (pinned) and devices (from logged registrations).

    ``keys`` is read by the verification threads; entries are replaced, never
    mutated, so a reader always sees a whole entry. ``updates`` lists every
    change as ``(id, SEC1 key, active, is_registry)``, oldest first, so that
    verification processes can follow the registry by applying ``updates[n:]``.
    """

    def __init__(
        self, registries: dict[str, ec.EllipticCurvePublicKey], devices: dict[str, DeviceRow]
    ) -> None:
        self.registries = dict(registries)
        self.devices = dict(devices)
        self.keys: dict[str, KeyEntry] = {
            rid: KeyEntry(key, True, True) for rid, key in registries.items()
        }
        self.updates: list[tuple[str, bytes, bool, bool]] = [
            (rid, p256_public_to_sec1(key), True, True) for rid, key in registries.items()
        ]
        for d in devices.values():
            if d.id not in self.keys:
                self.keys[d.id] = KeyEntry(p256_public_from_sec1(d.key), d.state == STATE_ACTIVE)
                self.updates.append((d.id, d.key, d.state == STATE_ACTIVE, False))

    def check(self, reg: Registration, registry: str) -> DeviceRow | None:
        """Raise RegistryError if ``reg`` may not be applied; the current row, if any."""
        if reg.device in self.registries:
            raise RegistryError(f"{reg.device!r} is a registry id, not a device")
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
        if row is None:
            new = DeviceRow(
                id=reg.device,
                role=reg.role,
                key=reg.key,
                org=reg.org,
                state=reg.state,
                registry=registry,
                registered_leaf=leaf,
                place=reg.place,
                cal=reg.cal,
                revoked_leaf=leaf if revoked else None,
                updated=now,
            )
        else:
            new = DeviceRow(
                id=row.id,
                role=reg.role,
                key=row.key,
                org=reg.org,
                state=reg.state,
                registry=registry,
                registered_leaf=row.registered_leaf,
                place=reg.place if reg.place is not None else row.place,
                cal=reg.cal if reg.cal is not None else row.cal,
                revoked_leaf=leaf if revoked else None,
                updated=now,
            )
        self.devices[new.id] = new
        old = self.keys.get(new.id)
        key = old.key if old is not None else p256_public_from_sec1(new.key)
        self.keys[new.id] = KeyEntry(key, not revoked, False)
        self.updates.append((new.id, new.key, not revoked, False))
        return new


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


class RegistrySigner:
    """Signs registrations with the registry key and queues them for the log."""

    def __init__(
        self, store: SQLiteStore, registry_id: str, private_key: ec.EllipticCurvePrivateKey
    ):
        if not ID_PATTERN.fullmatch(registry_id):
            raise RegistryError(f"registry id {registry_id!r} is not a protocol id")
        self.store = store
        self.id = registry_id
        self.key = private_key
        self.public_key = private_key.public_key()

    def _view(self) -> dict[str, DeviceRow]:
        """Devices as the log will have them once the outbox is logged."""
        reg = Registry({self.id: self.public_key}, self.store.devices())
        leaf = 1 << 62  # pending registrations have no leaf yet
        for _, raw in self.store.outbox_pending():
            msg = parse_sign1(raw)
            p = decode_payload(msg.payload)
            if isinstance(p, Registration):
                with contextlib.suppress(RegistryError):  # the gateway will refuse it too
                    reg.apply(p, msg.kid, leaf, 0)
        return reg.devices

    def _sign(self, build: Any) -> bytes:
        self.store.begin_exclusive()
        ok = False
        try:
            devices = self._view()
            last = self.store.last_signed(self.id)
            seq, prev = (0, ZERO_PREV) if last is None else (last[0] + 1, chain_hash(last[1]))
            payload = build(devices, seq, prev)
            raw = make_record(payload, self.id, self.key)
            self.store.outbox_add(self.id, seq, raw)
            ok = True
            return raw
        finally:
            self.store.end(ok)

    def add(
        self,
        device: str,
        key: bytes | ec.EllipticCurvePublicKey,
        *,
        role: int,
        org: str,
        place: str | None = None,
        cal: int | None = None,
        ack_key: bytes | None = None,
    ) -> tuple[bytes, bytes]:
        """Register ``device``; return (registration record, ack key)."""
        if not ID_PATTERN.fullmatch(device):
            raise RegistryError(f"{device!r} is not a device id (§1)")
        sec1 = key if isinstance(key, bytes) else p256_public_to_sec1(key)
        p256_public_from_sec1(sec1)
        if ack_key is None:
            ack_key = secrets.token_bytes(32)
        if len(ack_key) != 32:
            raise RegistryError("an ack key is 32 bytes")

        def build(devices: dict[str, DeviceRow], seq: int, prev: bytes) -> Registration:
            row = devices.get(device)
            if row is not None:
                if row.key != sec1:
                    raise RegistryError(f"{device} is registered with another key")
                if row.state == STATE_REVOKED:
                    raise RegistryError(f"{device} is revoked; give the board a new id")
            return Registration(
                boot=0,
                seq=seq,
                time=int(time.time()),
                tq=2,
                prev=prev,
                device=device,
                key=sec1,
                role=role,
                org=org,
                state=STATE_ACTIVE,
                place=place,
                cal=cal,
            )

        raw = self._sign(build)
        self.store.set_ack_key(device, ack_key)
        return raw, ack_key

    def update(self, device: str, *, place: str | None = None, cal: int | None = None) -> bytes:
        """Log a new registration of an active device with a new place/calibration."""
        return self._restate(device, STATE_ACTIVE, place=place, cal=cal)

    def revoke(self, device: str) -> bytes:
        """Log the device's revocation; records logged before it stay valid."""
        return self._restate(device, STATE_REVOKED)

    def _restate(
        self, device: str, state: int, *, place: str | None = None, cal: int | None = None
    ) -> bytes:
        def build(devices: dict[str, DeviceRow], seq: int, prev: bytes) -> Registration:
            row = self._known(devices, device)
            return Registration(
                boot=0,
                seq=seq,
                time=int(time.time()),
                tq=2,
                prev=prev,
                device=device,
                key=row.key,
                role=row.role,
                org=row.org,
                state=state,
                place=place if place is not None else row.place,
                cal=cal if cal is not None else row.cal,
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

    def import_entries(self, entries: Iterable[dict[str, Any]]) -> list[str]:
        """Register every provisioning entry; return the device ids registered."""
        done = []
        for e in entries:
            device = str(e.get("device") or e.get("id") or "")
            key = _key_bytes(e.get("key") or e.get("public_key"), f"{device}: key", 65)
            ack = e.get("ack_key")
            self.add(
                device,
                key,
                role=parse_role(e.get("role", 1)),
                org=str(e.get("org") or e.get("organisation") or e.get("organization") or ""),
                place=e.get("place"),
                cal=e.get("cal"),
                ack_key=None if ack is None else _key_bytes(ack, f"{device}: ack_key", 32),
            )
            done.append(device)
        return done


def load_provisioning(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Entries of a provisioning JSON file: one object, a list, or {"devices": [...]}.

    Each entry: ``device`` (or ``id``), ``key`` (SEC1 P-256, base64 or hex),
    ``role`` (1/logger or 2/reader), ``org``, optional ``place``, ``cal`` and
    ``ack_key`` (32 bytes, base64 or hex; generated when absent).
    """
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(doc, dict) and "devices" in doc:
        doc = doc["devices"]
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
        raise RegistryError(f"{path}: want an object, a list of objects or {{'devices': [...]}}")
    return doc


def device_json(row: DeviceRow) -> dict[str, Any]:
    return {
        "device": row.id,
        "role": ROLES.get(row.role, str(row.role)),
        "key": b64e(row.key),
        "org": row.org,
        "place": row.place,
        "cal": row.cal,
        "state": "active" if row.state == STATE_ACTIVE else "revoked",
        "registry": row.registry,
        "registered_leaf": row.registered_leaf,
        "revoked_leaf": row.revoked_leaf,
    }
