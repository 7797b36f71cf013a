"""Signed firmware releases and the gateway's side of an update (docs/protocol.md §5.4).

    coldtrace device release --key release.pem --version 2 --files firmware/lib --out rel/
    coldtrace gateway ota offer --release rel/ --device tl-7f3a21   (or --all)

A release directory holds ``manifest.cose`` (a COSE_Sign1, ES256, over the
deterministic CBOR map ``{1: version, 2: label, 3: [[name, size, sha256],
...]}``), the files under ``files/`` and ``release.json`` (a summary for
people). The device pins the release key's public half (``coldtrace device
provision --release-key``) and checks everything again.

``offer`` records which release each device is offered in
``<data_dir>/ota/offers.json``. The running gateway (:class:`GatewayOta`, over
its MQTT connection) sends each device a §5.3 command (COSE_Mac0 under
its ack key, a counter above any it sent before) with 20 = version, 21 =
SHA-256 of ``manifest.cose``, 22 = its size, and answers the device's chunk
requests on ``ct/v1/{dev}/fwreq`` from that release only, each chunk a
COSE_Mac0 under the device's ack key on ``ct/v1/{dev}/fw``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from protocol import cbor, cose, rfc6979
from protocol.keys import load_p256_private_key, p256_public_to_sec1

__all__ = [
    "MAX_CHUNK",
    "GatewayOta",
    "OtaError",
    "Release",
    "answer",
    "load_release",
    "make_release",
    "manifest_payload",
    "offer_command",
    "record_offer",
    "register_ota_commands",
]

MAX_CHUNK = 1024  # bytes of file data per chunk (§5.4)
MAX_FILES = 64
MAX_FILE = 262144
MAX_MANIFEST = 8192
log = logging.getLogger("coldtrace.gateway.ota")
_NAME = re.compile(r"^[a-z0-9_][a-z0-9_.]{0,29}\.(py|mpy)$")


class OtaError(Exception):
    """A release, an offer or a chunk request is not acceptable; the message says why."""


@dataclass(frozen=True)
class Release:
    version: int
    label: str
    manifest: bytes  # manifest.cose, exactly as signed
    files: tuple[tuple[str, bytes], ...]

    @property
    def manifest_hash(self) -> bytes:
        return hashlib.sha256(self.manifest).digest()

    def blob(self, index: int) -> bytes:
        """File ``index`` of a chunk request: 0 is the manifest, 1.. the files."""
        if index == 0:
            return self.manifest
        if not 1 <= index <= len(self.files):
            raise OtaError(f"file index {index}: the release has {len(self.files)} files")
        return self.files[index - 1][1]


def manifest_payload(version: int, label: str, files: Iterable[tuple[str, bytes]]) -> bytes:
    """The signed payload: deterministic CBOR {1: version, 2: label, 3: [[name, size, sha256]]}."""
    items = list(files)
    if not 1 <= version <= 0xFFFFFFFF:
        raise OtaError(f"version {version}: an integer 1 .. 2^32-1")
    if not 1 <= len(label.encode()) <= 32:
        raise OtaError(f"label {label!r}: 1 .. 32 bytes")
    if not 1 <= len(items) <= MAX_FILES:
        raise OtaError(f"{len(items)} files: a release has 1 .. {MAX_FILES}")
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise OtaError("two files with the same name")
    for name, data in items:
        if not _NAME.match(name):
            raise OtaError(f"file name {name!r}: [a-z0-9_.], ending .py or .mpy, at most 32")
        if len(data) > MAX_FILE:
            raise OtaError(f"{name}: {len(data)} bytes, at most {MAX_FILE}")
    return cbor.encode(
        {1: version, 2: label, 3: [[n, len(d), hashlib.sha256(d).digest()] for n, d in items]}
    )


# COSE envelopes as in §3/§5.2, built here because the record profile's
# 1024-byte limit (protocol/cose.py) does not fit manifests and chunks.


def _envelope(tag: int, protected: bytes, payload: bytes, last: bytes) -> bytes:
    return b"".join((cbor.head(6, tag), b"\x84", cbor.head(2, len(protected)), protected,
                     b"\xa0", cbor.head(2, len(payload)), payload, cbor.head(2, len(last)), last))


def sign_manifest(payload: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """COSE_Sign1 (ES256, kid "release", low-S r||s) over a manifest payload."""
    prot = cbor.encode({1: -7, 4: b"release"})
    r, s = decode_dss_signature(key.sign(cose.sig_structure(prot, payload),
                                         ec.ECDSA(hashes.SHA256())))
    sig = r.to_bytes(32, "big") + rfc6979.low_s(s).to_bytes(32, "big")
    return _envelope(18, prot, payload, sig)


def open_manifest(data: bytes, public_key: ec.EllipticCurvePublicKey | None) -> object:
    """The decoded payload of a manifest COSE_Sign1, its signature checked when a key
    is given. Raises OtaError."""
    try:
        item = cbor.decode(data, max_size=MAX_MANIFEST, max_depth=6,
                           allowed_tags=frozenset({18}))
        if not (isinstance(item, cbor.Tag) and item.tag == 18 and isinstance(item.value, list)
                and len(item.value) == 4):
            raise OtaError("not a COSE_Sign1 (tag 18, an array of 4)")
        prot, unprot, payload, sig = item.value
        if not (isinstance(prot, bytes) and isinstance(payload, bytes)
                and isinstance(sig, bytes)):
            raise OtaError("protected header, payload and signature are byte strings")
        if cbor.decode(prot, max_size=64) != {1: -7, 4: b"release"} or unprot != {}:
            raise OtaError("protected header must be {1: -7, 4: 'release'}")
        if public_key is not None:
            if len(sig) != 64:
                raise OtaError("signature must be 64 bytes")
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                       int.from_bytes(sig[32:], "big"))
            public_key.verify(der, cose.sig_structure(prot, payload), ec.ECDSA(hashes.SHA256()))
        return cbor.decode(payload, max_size=MAX_MANIFEST, max_depth=3)
    except InvalidSignature:
        raise OtaError("manifest signature does not verify under the release key") from None
    except OtaError:
        raise
    except Exception as e:
        raise OtaError(f"not a manifest COSE_Sign1: {e}") from e


def _mac0(payload: bytes, gateway_id: str, key: bytes) -> bytes:
    import hmac

    prot = cbor.encode({1: 5, 4: gateway_id.encode()})
    return _envelope(17, prot, payload,
                     hmac.digest(key, cose.mac_structure(prot, payload), hashlib.sha256))


def _collect(paths: Iterable[Path]) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix in (".py", ".mpy") and f.is_file())
            out += [(f.name, f.read_bytes()) for f in found]
        elif p.is_file():
            out.append((p.name, p.read_bytes()))
        else:
            raise OtaError(f"{p}: no such file or directory")
    return out


def make_release(
    key: ec.EllipticCurvePrivateKey, version: int, label: str, paths: Iterable[Path], out: Path
) -> Release:
    """Sign a release of the given files (directories: their .py/.mpy) into ``out``."""
    files = _collect(paths)
    payload = manifest_payload(version, label, files)
    manifest = sign_manifest(payload, key)
    if len(manifest) > MAX_MANIFEST:
        raise OtaError(f"manifest is {len(manifest)} bytes, at most {MAX_MANIFEST}")
    (out / "files").mkdir(parents=True, exist_ok=True)
    for name, data in files:
        (out / "files" / name).write_bytes(data)
    (out / "manifest.cose").write_bytes(manifest)
    rel = Release(version, label, manifest, tuple(files))
    summary = {
        "version": version,
        "label": label,
        "manifest_sha256": rel.manifest_hash.hex(),
        "release_key": p256_public_to_sec1(key.public_key()).hex(),
        "files": [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                  for n, d in files],
    }
    (out / "release.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return rel


def load_release(path: Path, public_key: ec.EllipticCurvePublicKey | None = None) -> Release:
    """Read a release directory and check it: every file against the manifest, and
    the signature when ``public_key`` is given. Raises OtaError."""
    try:
        manifest = (path / "manifest.cose").read_bytes()
    except OSError as e:
        raise OtaError(f"{path}: no manifest.cose ({e.strerror})") from e
    try:
        m = open_manifest(manifest, public_key)
    except OtaError as e:
        raise OtaError(f"{path / 'manifest.cose'}: {e}") from e
    if not (isinstance(m, dict) and set(m) == {1, 2, 3} and isinstance(m[3], list)):
        raise OtaError(f"{path / 'manifest.cose'}: not a firmware manifest")
    files = []
    for entry in m[3]:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise OtaError(f"{path}: a file entry is not [name, size, sha256]")
        name, size, digest = entry
        if not (isinstance(name, str) and _NAME.match(name)):
            raise OtaError(f"{path}: file name {name!r} in the manifest")
        try:
            data = (path / "files" / name).read_bytes()
        except OSError as e:
            raise OtaError(f"{path}: file {name} is missing ({e.strerror})") from e
        if len(data) != size or hashlib.sha256(data).digest() != digest:
            raise OtaError(f"{path}: file {name} does not match the manifest")
        files.append((name, data))
    return Release(m[1], m[2], manifest, tuple(files))


def offer_command(rel: Release, counter: int, gateway_id: str, key: bytes,
                  now: int | None = None) -> bytes:
    """The §5.3 command announcing ``rel``: {1: counter, 2: time, 20, 21, 22}."""
    t = int(time.time()) if now is None else now
    payload = cbor.encode({1: counter, 2: t, 20: rel.version, 21: rel.manifest_hash,
                           22: len(rel.manifest)})
    return _mac0(payload, gateway_id, key)


def answer(rel: Release, request: bytes, gateway_id: str, key: bytes) -> bytes:
    """The chunk message for one request {1: version, 2: index, 3: offset, 4: length}."""
    if len(request) > 64:
        raise OtaError(f"chunk request of {len(request)} bytes")
    try:
        req = cbor.decode(request, max_size=64, max_depth=1)
    except Exception as e:
        raise OtaError(f"chunk request: {e}") from e
    if not (isinstance(req, dict) and set(req) == {1, 2, 3, 4}
            and all(type(v) is int for v in req.values())):
        raise OtaError("chunk request is {1: version, 2: index, 3: offset, 4: length}")
    if req[1] != rel.version:
        raise OtaError(f"version {req[1]} asked, {rel.version} offered")
    blob = rel.blob(req[2])
    off, n = req[3], req[4]
    if not (0 <= off < len(blob) and 1 <= n <= MAX_CHUNK):
        raise OtaError(f"offset {off} / length {n} outside {len(blob)} bytes")
    payload = cbor.encode({1: rel.version, 2: req[2], 3: off, 4: blob[off : off + n]})
    return _mac0(payload, gateway_id, key)


# --- the gateway side: offers and the chunk server --------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise OtaError(f"{path}: {e}") from e
    if not isinstance(d, dict):
        raise OtaError(f"{path}: not a JSON object")
    return d


def _write_json(path: Path, d: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(d, f, indent=1)
    os.replace(tmp, path)


def record_offer(data_dir: Path, release_dir: Path, devices: Iterable[str]) -> Release:
    """``coldtrace gateway ota offer``: note in ``<data_dir>/ota/offers.json`` that
    ``devices`` are offered the (checked) release; the running gateway sends it."""
    rel = load_release(release_dir)
    path = data_dir / "ota" / "offers.json"
    d = _read_json(path)
    for dev in devices:
        n = int(d.get(dev, {}).get("n", 0)) + 1
        d[dev] = {"release": str(release_dir.resolve()), "n": n}
    _write_json(path, d)
    return rel


class GatewayOta:
    """The gateway's part (gateway/service.py): sends the offers that
    ``offers.json`` holds and it has not sent (``sent.json``: per device the
    offer number sent, and the command counter), and answers ``fwreq``
    chunk requests from the release each device was offered."""

    KEYS_TTL = 5.0

    def __init__(self, data_dir: Path, gateway_id: str, keys: Callable[[], dict[str, bytes]],
                 publish: Callable[[str, bytes], None]):
        self.dir = data_dir / "ota"
        self.gateway_id = gateway_id
        self._keys_fn = keys
        self._keys: dict[str, bytes] = {}
        self._keys_at = 0.0
        self.publish = publish
        self._offers: dict[str, Any] = {}
        self._mtime: float | None = None
        self._releases: dict[str, Release] = {}
        self._lock = threading.Lock()
        self.served = 0
        self.refused = 0
        self.offered = 0

    def _key(self, dev: str) -> bytes | None:
        now = time.monotonic()
        if dev not in self._keys or now - self._keys_at > self.KEYS_TTL:
            self._keys = self._keys_fn()
            self._keys_at = now
        return self._keys.get(dev)

    def _load_offers(self) -> dict[str, Any]:
        path = self.dir / "offers.json"
        try:
            m = path.stat().st_mtime
        except FileNotFoundError:
            return {}
        if m != self._mtime:
            self._offers = _read_json(path)
            self._mtime = m
        return self._offers

    def _release(self, dev: str) -> Release:
        o = self._load_offers().get(dev)
        if not isinstance(o, dict) or "release" not in o:
            raise OtaError("no release offered to this device")
        path = str(o["release"])
        if path not in self._releases:
            self._releases[path] = load_release(Path(path))
        return self._releases[path]

    def poll(self) -> int:
        """Send the offers not sent yet; returns how many were sent."""
        with self._lock:
            offers = self._load_offers()
            sent_path = self.dir / "sent.json"
            sent = _read_json(sent_path)
            todo = [d for d, o in offers.items()
                    if isinstance(o, dict) and int(o.get("n", 0)) > int(sent.get(d, 0))]
            done = 0
            for dev in todo:
                key = self._key(dev)
                if key is None:
                    continue  # not registered (yet): offered once it is
                try:
                    rel = self._release(dev)
                except OtaError as e:
                    log.error("firmware offer to %s not sent: %s", dev, e)
                    sent[dev] = offers[dev]["n"]
                    continue
                # above every counter sent before, and above the clock, so a
                # lost sent.json never repeats a counter a device accepted
                counter = max(int(sent.get("counter", 0)) + 1, int(time.time()))
                sent["counter"] = counter
                sent[dev] = offers[dev]["n"]
                _write_json(sent_path, sent)  # before it leaves: never a counter twice
                self.publish(f"ct/v1/{dev}/cmd", offer_command(rel, counter, self.gateway_id, key))
                done += 1
            self.offered += done
            return done

    def handle(self, topic: str, payload: bytes) -> bool:
        """A message on ``ct/v1/{dev}/fwreq``: answer it (True), or refuse it, logged."""
        parts = topic.split("/")
        if len(parts) != 4 or parts[:2] != ["ct", "v1"] or parts[3] != "fwreq":
            return False
        dev = parts[2]
        try:
            key = self._key(dev)
            if key is None:
                raise OtaError("no ack key")
            msg = answer(self._release(dev), payload, self.gateway_id, key)
        except OtaError as e:
            self.refused += 1
            log.warning("firmware chunk request from %s refused: %s", dev, e)
            return True
        self.served += 1
        self.publish(f"ct/v1/{dev}/fw", msg)
        return True


def _device_ids(cfg: Any) -> list[str]:
    """Every device this gateway holds an ack key for (its store, SQLite or PostgreSQL)."""
    from gateway.evidence.store import StoreError, open_store

    if cfg.store.url is None and not cfg.db_path.exists():
        raise OtaError(f"{cfg.db_path}: no gateway store (run the gateway once)")
    try:
        store = open_store(cfg, readonly=True)
    except StoreError as e:
        raise OtaError(str(e)) from e
    try:
        return sorted(store.ack_keys())
    finally:
        store.close()


def _cmd_offer(args: argparse.Namespace) -> int:
    from gateway.config import load_config

    try:
        cfg = load_config(args.config)
        devices = _device_ids(cfg) if args.all else list(args.device or [])
        if not devices:
            raise OtaError("name devices with --device, or --all")
        rel = record_offer(cfg.data_dir, args.release, devices)
    except (OtaError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"release {rel.version} offered to {len(devices)} device(s); the running gateway "
          "sends the offer and serves the files")
    return 0


def register_ota_commands(sub: Any) -> None:
    """Add ``ota offer`` to the ``coldtrace gateway`` subcommands."""
    p = sub.add_parser("ota", help="offer signed firmware releases to devices")
    osub = p.add_subparsers(dest="ota_command", required=True)
    q = osub.add_parser("offer", help="offer a release to devices (the gateway sends a §5.3 "
                        "command and serves the files)")
    q.add_argument("--config", "-c", type=Path, default=Path("gateway.toml"))
    q.add_argument("--release", type=Path, required=True, help="release directory")
    q.add_argument("--device", action="append", help="device id (repeatable)")
    q.add_argument("--all", action="store_true", help="every device with an ack key")
    q.set_defaults(func=_cmd_offer)


def release_pin(path: Path, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.json's "ota" for a board that trusts the release key at ``path`` (a PEM
    public key, or the private key, whose public half is taken)."""
    from cryptography.hazmat.primitives import serialization

    try:
        data = path.read_bytes()
    except OSError as e:
        raise OtaError(f"release key {path}: {e.strerror}") from e
    try:
        if b"PRIVATE KEY" in data:
            pub = serialization.load_pem_private_key(data, None).public_key()
        else:
            pub = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise OtaError(f"release key {path}: not a PEM P-256 key") from e
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != "secp256r1":
        raise OtaError(f"release key {path}: not a P-256 key")
    out = dict(base or {})
    out["key"] = p256_public_to_sec1(pub).hex()
    return out


def _cmd_release(args: argparse.Namespace) -> int:
    try:
        key = load_p256_private_key(args.key)
        rel = make_release(key, args.version, args.label or f"coldtrace-{args.version}",
                           args.files, args.out)
    except (OtaError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"release {rel.version} ({rel.label}): {len(rel.files)} files, "
          f"manifest {rel.manifest_hash.hex()} in {args.out}")
    return 0


def register_release_command(sub: Any) -> None:
    """Add ``release`` to the ``coldtrace device`` subcommands."""
    p = sub.add_parser("release", help="sign a firmware release (docs/protocol.md §5.4)")
    p.add_argument("--key", type=Path, required=True, help="release key (P-256 PEM)")
    p.add_argument("--version", type=int, required=True, help="release number, 1 .. 2^32-1, "
                   "above every earlier release")
    p.add_argument("--label", help="version text for status records (default coldtrace-N)")
    p.add_argument("--files", type=Path, nargs="+", required=True,
                   help="files, or directories whose .py/.mpy files are taken")
    p.add_argument("--out", type=Path, required=True, help="release directory to write")
    p.set_defaults(func=_cmd_release)
