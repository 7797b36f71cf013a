"""What a gateway sends the cloud: push batches and signed requests (docs/cloud.md §2).

Shared by the gateway (which writes them) and the cloud (which reads them);
neither imports the other.

**A batch** is one JSON object, read with the hardened reader of bundles
(:mod:`protocol.strictjson`)::

    {"format": "coldtrace-push", "version": 1,
     "first": 120,                      # index of the first record below
     "records": ["<base64 COSE_Sign1>"],   # leaves first .. first+n-1, in order
     "checkpoint": "<signed note>",     # the log's checkpoint of size first+n
     "consistency": {"old_size": 100, "path": ["<base64>"]},   # optional
     "anchors": [{"tree_size": 100, "receipt": {...}}]}       # optional

**A signed request** carries the header
``Authorization: ColdTrace-Log origin="<origin>", time=<unix>, sig="<base64>"``
where ``sig`` is the log key's Ed25519 signature (the key that signs the
log's checkpoints) over::

    coldtrace-push/v1\\n<METHOD>\\n<path>\\n<time>\\n<hex SHA-256 of the body>\\n

The first line keeps such a message from ever being a checkpoint body
(whose second line is a tree size).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time as _time
from dataclasses import dataclass, field
from typing import Any

from protocol.bundle import MAX_RECORD_BYTES
from protocol.errors import VerificationError
from protocol.keys import b64d
from protocol.note import NoteSigner, NoteVerifier
from protocol.strictjson import loads_strict

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_RECORDS",
    "PushAuthError",
    "PushBatch",
    "PushError",
    "auth_header",
    "check_auth",
    "parse_batch",
]

FORMAT = "coldtrace-push"
VERSION = 1
MAX_BATCH_RECORDS = 20_000
MAX_BATCH_BYTES = 32 * 1024 * 1024
MAX_SKEW = 300  # seconds a signed request's time may differ from the server's clock
SCHEME = "ColdTrace-Log"
_HEADER = re.compile(
    r'^ColdTrace-Log origin="([^"]{1,255})", time=(\d{1,12}), sig="([A-Za-z0-9+/=]{1,200})"$'
)


class PushError(VerificationError):
    """A push batch that does not follow its format."""

    code = "malformed_push"


class PushAuthError(Exception):
    """A request that does not carry a valid log signature."""


@dataclass
class PushBatch:
    first: int
    records: list[bytes]
    checkpoint: str
    consistency: tuple[int, list[bytes]] | None = None
    anchors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "first": self.first,
            "records": [base64.b64encode(r).decode() for r in self.records],
            "checkpoint": self.checkpoint,
        }
        if self.consistency is not None:
            old, path = self.consistency
            doc["consistency"] = {
                "old_size": old,
                "path": [base64.b64encode(h).decode() for h in path],
            }
        if self.anchors:
            doc["anchors"] = [{"tree_size": s, "receipt": r} for s, r in self.anchors]
        return doc


def _int(value: object, where: str, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise PushError(f"{where}: an integer {lo} … {hi} is required", found=repr(value)[:40])
    return value


def _b64(value: object, where: str, lo: int, hi: int) -> bytes:
    if not isinstance(value, str):
        raise PushError(f"{where}: base64 text is required", found=type(value).__name__)
    raw = b64d(value, error=PushError)
    if base64.b64encode(raw).decode() != value:
        raise PushError(f"{where}: base64 is not canonical")
    if not lo <= len(raw) <= hi:
        raise PushError(f"{where}: {lo} … {hi} bytes are required", found=len(raw))
    return raw


def _obj(value: object, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PushError(f"{where}: an object is required")
    missing = required - value.keys()
    extra = value.keys() - required - optional
    if missing:
        raise PushError(f"{where}: missing member(s) {sorted(missing)}")
    if extra:
        raise PushError(f"{where}: unknown member(s) {sorted(extra)}")
    return value


def parse_batch(body: bytes) -> PushBatch:
    """Read a push batch; :class:`~protocol.errors.PushError` with a reason if malformed."""
    if len(body) > MAX_BATCH_BYTES:
        raise PushError("push batch too large", expected=f"<= {MAX_BATCH_BYTES}", found=len(body))
    doc = _obj(
        loads_strict(body, limit=MAX_BATCH_BYTES, what="push batch", error=PushError),
        "batch",
        {"format", "version", "first", "records", "checkpoint"},
        {"consistency", "anchors"},
    )
    if doc["format"] != FORMAT or doc["version"] != VERSION:
        raise PushError("not a coldtrace-push batch of version 1")
    first = _int(doc["first"], "first", 0, 2**63 - 1)
    recs = doc["records"]
    if not isinstance(recs, list) or len(recs) > MAX_BATCH_RECORDS:
        raise PushError(f"records: a list of at most {MAX_BATCH_RECORDS} is required")
    records = [_b64(r, f"records[{i}]", 1, MAX_RECORD_BYTES) for i, r in enumerate(recs)]
    note = doc["checkpoint"]
    if not isinstance(note, str) or not 1 <= len(note) <= 16384:
        raise PushError("checkpoint: a signed note (text) is required")
    batch = PushBatch(first, records, note)
    if "consistency" in doc:
        c = _obj(doc["consistency"], "consistency", {"old_size", "path"}, set())
        path = c["path"]
        if not isinstance(path, list) or len(path) > 64:
            raise PushError("consistency.path: a list of at most 64 hashes is required")
        batch.consistency = (
            _int(c["old_size"], "consistency.old_size", 1, 2**64 - 1),
            [_b64(h, f"consistency.path[{i}]", 32, 32) for i, h in enumerate(path)],
        )
    anchors = doc.get("anchors", [])
    if not isinstance(anchors, list) or len(anchors) > 1000:
        raise PushError("anchors: a list of at most 1000 is required")
    for i, a in enumerate(anchors):
        a = _obj(a, f"anchors[{i}]", {"tree_size", "receipt"}, set())
        if not isinstance(a["receipt"], dict):
            raise PushError(f"anchors[{i}].receipt: an object is required")
        batch.anchors.append(
            (_int(a["tree_size"], f"anchors[{i}].tree_size", 1, 2**64 - 1), a["receipt"])
        )
    return batch


def _message(method: str, path: str, when: int, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"coldtrace-push/v1\n{method.upper()}\n{path}\n{when}\n{digest}\n".encode()


def auth_header(
    signer: NoteSigner, method: str, path: str, body: bytes, *, now: int | None = None
) -> str:
    """The Authorization header for a request by the log whose key is ``signer``."""
    when = int(_time.time()) if now is None else now
    sig = signer.signature(_message(method, path, when, body)).sig
    return f'{SCHEME} origin="{signer.name}", time={when}, sig="{base64.b64encode(sig).decode()}"'


def header_origin(header: str) -> str:
    """The origin an Authorization header names (not yet verified)."""
    m = _HEADER.match(header or "")
    if m is None:
        raise PushAuthError(f'Authorization must be: {SCHEME} origin="…", time=…, sig="…"')
    return m.group(1)


def check_auth(
    header: str,
    verifier: NoteVerifier,
    method: str,
    path: str,
    body: bytes,
    *,
    now: int | None = None,
) -> None:
    """Verify a signed request; :class:`PushAuthError` with the reason if it fails."""
    m = _HEADER.match(header or "")
    if m is None:
        raise PushAuthError(f'Authorization must be: {SCHEME} origin="…", time=…, sig="…"')
    origin, when, sig_text = m.group(1), int(m.group(2)), m.group(3)
    if origin != verifier.name:
        raise PushAuthError(f"the request is signed for {origin!r}, not {verifier.name!r}")
    clock = int(_time.time()) if now is None else now
    if abs(clock - when) > MAX_SKEW:
        raise PushAuthError(
            f"request time {when} is more than {MAX_SKEW} s from the server's {clock}"
        )
    try:
        sig = base64.b64decode(sig_text, validate=True)
        verifier.verify(_message(method, path, when, body), sig)
    except Exception as err:  # any failure is the same answer
        raise PushAuthError("the request's signature does not verify under the log's key") from err
