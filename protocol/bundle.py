"""The trace bundle: one JSON document with everything needed to verify a
product's trace (docs/protocol.md §9).

This module only models and (de)serialises bundles, strictly. What a bundle
proves is decided by :mod:`protocol.verify`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from protocol.errors import BundleError

FORMAT = "coldtrace-bundle"
VERSION = 1
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
MAX_PATH = 64


@dataclass(frozen=True)
class BundleRecord:
    log: str
    index: int
    raw: bytes


@dataclass(frozen=True)
class InclusionProof:
    log: str
    index: int
    tree_size: int
    path: tuple[bytes, ...]


@dataclass(frozen=True)
class ConsistencyProof:
    log: str
    old_size: int
    new_size: int
    path: tuple[bytes, ...]


@dataclass(frozen=True)
class AnchorRef:
    log: str
    tree_size: int
    receipt: dict[str, Any]


@dataclass
class Bundle:
    records: list[BundleRecord] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    inclusion: list[InclusionProof] = field(default_factory=list)
    consistency: list[ConsistencyProof] = field(default_factory=list)
    anchors: list[AnchorRef] = field(default_factory=list)
    subject: dict[str, Any] = field(default_factory=dict)
    created: int = 0

    def to_json(self) -> dict[str, Any]:
        b64 = _b64e
        return {
            "format": FORMAT,
            "version": VERSION,
            "created": self.created,
            "subject": self.subject,
            "records": [
                {"log": r.log, "index": r.index, "record": b64(r.raw)} for r in self.records
            ],
            "checkpoints": list(self.checkpoints),
            "inclusion": [
                {
                    "log": p.log,
                    "index": p.index,
                    "tree_size": p.tree_size,
                    "path": [b64(h) for h in p.path],
                }
                for p in self.inclusion
            ],
            "consistency": [
                {
                    "log": p.log,
                    "old_size": p.old_size,
                    "new_size": p.new_size,
                    "path": [b64(h) for h in p.path],
                }
                for p in self.consistency
            ],
            "anchors": [
                {"log": a.log, "tree_size": a.tree_size, "receipt": a.receipt} for a in self.anchors
            ],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n"


def _b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _where(path: str, message: str) -> BundleError:
    return BundleError(f"bundle {path}: {message}")


def _obj(
    value: object, path: str, keys: set[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _where(path, "want an object")
    missing = keys - value.keys()
    if missing:
        raise _where(path, f"missing {sorted(missing)}")
    extra = value.keys() - keys - optional
    if extra:
        raise _where(path, f"unknown fields {sorted(extra)}")
    return value


def _int(value: object, path: str, *, lo: int = 0, hi: int = 2**63 - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _where(path, f"want an integer in [{lo}, {hi}], got {value!r}")
    return value


def _str(value: object, path: str, *, max_len: int = 128) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise _where(path, f"want a string of 1..{max_len} characters")
    return value


def _bytes(value: object, path: str, *, size: int | None = None, max_len: int = 1024) -> bytes:
    if not isinstance(value, str):
        raise _where(path, "want a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _where(path, "not valid base64") from exc
    if size is not None and len(raw) != size:
        raise _where(path, f"want {size} bytes, got {len(raw)}")
    if len(raw) > max_len:
        raise _where(path, f"longer than {max_len} bytes")
    return raw


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _where(path, "want a list")
    return value


def _path(value: object, path: str) -> tuple[bytes, ...]:
    items = _list(value, path)
    if len(items) > MAX_PATH:
        raise _where(path, f"more than {MAX_PATH} hashes")
    return tuple(_bytes(h, f"{path}[{i}]", size=32) for i, h in enumerate(items))


def parse_bundle(doc: object) -> Bundle:
    """Validate a decoded bundle document strictly and build a :class:`Bundle`.

    Raises :class:`BundleError` naming the first offending field.
    """
    top = _obj(
        doc,
        "",
        {"format", "version", "records", "checkpoints", "inclusion", "consistency", "anchors"},
        frozenset({"created", "subject"}),
    )
    if top["format"] != FORMAT:
        raise BundleError("not a ColdTrace bundle", expected=FORMAT, found=top["format"])
    if top["version"] != VERSION:
        raise BundleError("unsupported bundle version", expected=VERSION, found=top["version"])
    bundle = Bundle(created=_int(top.get("created", 0), "created"))
    subject = top.get("subject", {})
    if not isinstance(subject, dict):
        raise _where("subject", "want an object")
    bundle.subject = subject
    for i, item in enumerate(_list(top["records"], "records")):
        p = f"records[{i}]"
        o = _obj(item, p, {"log", "index", "record"})
        bundle.records.append(
            BundleRecord(
                _str(o["log"], f"{p}.log"),
                _int(o["index"], f"{p}.index"),
                _bytes(o["record"], f"{p}.record"),
            )
        )
    for i, item in enumerate(_list(top["checkpoints"], "checkpoints")):
        if not isinstance(item, str) or not 0 < len(item) <= 16 * 1024:
            raise _where(f"checkpoints[{i}]", "want a signed note of at most 16 KiB")
        bundle.checkpoints.append(item)
    for i, item in enumerate(_list(top["inclusion"], "inclusion")):
        p = f"inclusion[{i}]"
        o = _obj(item, p, {"log", "index", "tree_size", "path"})
        bundle.inclusion.append(
            InclusionProof(
                _str(o["log"], f"{p}.log"),
                _int(o["index"], f"{p}.index"),
                _int(o["tree_size"], f"{p}.tree_size", lo=1),
                _path(o["path"], f"{p}.path"),
            )
        )
    for i, item in enumerate(_list(top["consistency"], "consistency")):
        p = f"consistency[{i}]"
        o = _obj(item, p, {"log", "old_size", "new_size", "path"})
        bundle.consistency.append(
            ConsistencyProof(
                _str(o["log"], f"{p}.log"),
                _int(o["old_size"], f"{p}.old_size", lo=1),
                _int(o["new_size"], f"{p}.new_size", lo=1),
                _path(o["path"], f"{p}.path"),
            )
        )
    for i, item in enumerate(_list(top["anchors"], "anchors")):
        p = f"anchors[{i}]"
        o = _obj(item, p, {"log", "tree_size", "receipt"})
        receipt = o["receipt"]
        if not isinstance(receipt, dict) or receipt.get("type") not in ("local", "evm"):
            raise _where(f"{p}.receipt", "want an object with type 'local' or 'evm'")
        bundle.anchors.append(
            AnchorRef(
                _str(o["log"], f"{p}.log"), _int(o["tree_size"], f"{p}.tree_size", lo=1), receipt
            )
        )
    return bundle


def loads_bundle(text: str | bytes) -> Bundle:
    """Parse bundle JSON text; raise :class:`BundleError` for anything wrong."""
    if len(text) > MAX_BUNDLE_BYTES:
        raise BundleError("bundle too large", expected=MAX_BUNDLE_BYTES, found=len(text))
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle is not valid JSON: {exc}") from exc
    return parse_bundle(doc)
