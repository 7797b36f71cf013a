"""The trace bundle: one JSON document with everything needed to verify one item's
trace (docs/protocol.md §9), in version 2 or in version 3, the compact encoding
of §9.1 (written by default).

This module models, reads and writes bundles, strictly; what a bundle proves
is decided by the verifier. Both versions read into the same :class:`Bundle`:
version 3 differs only in its encoding (records per log as index runs and
one raw DEFLATE blob, leaves as runs, hashes as one base64 string per list).

:func:`load_bundle` / :func:`loads_bundle` read hostile input: the hardened
JSON reader (:mod:`protocol.strictjson`: size, UTF-8, nesting and container
limits before parsing; no duplicate members, no float or NaN forms) and then
every member of every object is checked:

- exactly the members of §9, no other (an unknown member is malformed);
- integers are JSON integers, never booleans: indexes below 2^63, ``created``
  below 2^32, tree sizes 1 … 2^64 − 1;
- ``log`` (and a receipt's ``ledger``) is an origin: 1-128 bytes of printable
  ASCII without ``+``;
- base64 is standard, padded and canonical (decoding and encoding again
  gives the same text); records are 1-1024 bytes, proof nodes and path
  hashes 32 bytes, a path at most 64 hashes, a multiproof at most 64 nodes
  per leaf, its leaves non-empty, strictly ascending and below its tree size;
- the subject's ``uid`` is lowercase hex of 4, 7 or 10 bytes and its
  ``item`` 1-128 bytes without control characters;
- checkpoints are strings of 1-16384 bytes (their syntax is the verifier's:
  a malformed note is ``bad_checkpoint``, not a malformed bundle);
- receipts are checked completely (§8: :meth:`protocol.anchor.LocalReceipt.from_json`,
  :meth:`protocol.anchor.EvmReceipt.from_json`);
- lists are at most: 1,000,000 records, 10,000 checkpoints, 100,000 proofs,
  consistency proofs and anchors each; the proofs hold at most 1,000,000
  leaves in all;
- version 3 (§9.1): runs are non-empty, strictly ascending, neither
  overlapping nor adjacent; a log appears once in ``logs``; a blob is
  decompressed with a bound fixed beforehand (1026 bytes per record its runs
  count, 64 MiB for the bundle) and must hold exactly the records its runs
  count, each 78-1024 bytes after its 2-byte length, and end its DEFLATE
  stream with no byte after it; a blob of n records is at least 32 × n
  compressed bytes (checked before decompressing); a proof's leaves are at
  most as many as the records of its log in ``logs`` (checked before they are
  expanded); hash strings are whole 32-byte hashes.

Every refusal is a :class:`~protocol.errors.BundleError` (``malformed_bundle``)
naming the member (``records[12].index``). The JSON Schema
``protocol/schema/bundle.schema.json`` says the same, as far as JSON Schema
can (it cannot see duplicate members, number spelling, byte lengths of
non-ASCII text, EIP-55 checksums, how runs relate to each other or what a
DEFLATE blob holds).
"""

from __future__ import annotations

import binascii
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import IO, Any

from protocol.anchor import EvmReceipt, LocalReceipt
from protocol.errors import BundleError, MalformedReceiptError
from protocol.strictjson import check_text, load_strict, loads_strict, show

__all__ = [
    "FORMAT",
    "MAX_ANCHORS",
    "MAX_BUNDLE_BYTES",
    "MAX_CHECKPOINTS",
    "MAX_CHECKPOINT_BYTES",
    "MAX_CONSISTENCY",
    "MAX_INDEX",
    "MAX_INFLATED_BYTES",
    "MAX_ITEM_BYTES",
    "MAX_NODES_PER_LEAF",
    "MAX_PATH",
    "MAX_PROOFS",
    "MAX_PROOF_LEAVES",
    "MAX_RECORDS",
    "MAX_RECORD_BYTES",
    "MAX_TREE_SIZE",
    "MIN_PACKED_BYTES_PER_RECORD",
    "MIN_RECORD_BYTES",
    "VERSION",
    "VERSIONS",
    "AnchorRef",
    "Bundle",
    "BundleRecord",
    "ConsistencyProof",
    "MultiProof",
    "Subject",
    "load_bundle",
    "loads_bundle",
    "parse_bundle",
]

FORMAT = "coldtrace-bundle"
#: The version :meth:`Bundle.dumps` writes by default: the compact encoding (§9.1).
VERSION = 3
#: The versions :func:`parse_bundle` reads.
VERSIONS = (2, 3)
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
MAX_RECORDS = 1_000_000
MAX_CHECKPOINTS = 10_000
MAX_PROOFS = 100_000
MAX_CONSISTENCY = 100_000
MAX_ANCHORS = 100_000
MAX_PATH = 64
MAX_NODES_PER_LEAF = 64
MAX_RECORD_BYTES = 1024
MAX_CHECKPOINT_BYTES = 16 * 1024
MAX_ITEM_BYTES = 128
MAX_INDEX = 2**63 - 1
MAX_TREE_SIZE = 2**64 - 1
#: The leaves of all the proofs of one bundle together (both versions).
MAX_PROOF_LEAVES = 1_000_000
#: Version 3: the record blobs of one bundle decompress to at most this many bytes in all.
MAX_INFLATED_BYTES = 64 * 1024 * 1024
#: Version 3: a blob of n records is at least this many × n compressed bytes. A genuine
#: record carries a 64-byte ES256 signature, which does not compress (§9.1).
MIN_PACKED_BYTES_PER_RECORD = 32
#: Version 3: the shortest record a blob may hold, the shortest envelope §3 allows: tag and
#: array (2), the protected header with a 1-byte kid (7), the empty unprotected map (1), a
#: payload of at least one byte with its head (2) and the signature with its head (66).
MIN_RECORD_BYTES = 78
_LENGTH_BYTES = 2  # version 3: each record in a blob is preceded by its length, big-endian
_HASH = 32

_ORIGIN = re.compile(r"[\x21-\x2a\x2c-\x7e]{1,128}")
_UID = re.compile(r"[0-9a-f]{8}|[0-9a-f]{14}|[0-9a-f]{20}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_HASH32 = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")
_MAX_RECORD_B64 = 4 * ((MAX_RECORD_BYTES + 2) // 3)

_TOP_REQUIRED = frozenset(
    {"format", "version", "subject", "records", "checkpoints", "proofs", "consistency", "anchors"}
)
_TOP_MEMBERS = _TOP_REQUIRED | {"created"}
_TOP_REQUIRED_3 = _TOP_REQUIRED - {"records"} | {"logs"}
_TOP_MEMBERS_3 = _TOP_REQUIRED_3 | {"created"}
_LOG_MEMBERS = frozenset({"log", "runs", "records"})
MAX_TIME = 2**32 - 1  # Unix seconds (§1)
_SUBJECT_MEMBERS = frozenset({"uid", "item"})
_RECORD_MEMBERS = frozenset({"log", "index", "record"})
_PROOF_MEMBERS = frozenset({"log", "tree_size", "leaves", "nodes"})
_CONSISTENCY_MEMBERS = frozenset({"log", "old_size", "new_size", "path"})
_ANCHOR_MEMBERS = frozenset({"log", "tree_size", "receipt"})


# --- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """What the bundle claims to be about: a tag ``uid`` and, optionally, its ``item``."""

    uid: bytes
    item: str | None = None

    def __post_init__(self) -> None:
        if type(self.uid) is not bytes or len(self.uid) not in (4, 7, 10):
            raise BundleError(
                "subject uid is a tag UID of 4, 7 or 10 bytes",
                expected="4, 7 or 10 bytes",
                found=show(self.uid),
            )
        if self.item is not None:
            _check_item(self.item, "subject.item")

    def to_json(self) -> dict[str, str]:
        out = {"uid": self.uid.hex()}
        if self.item is not None:
            out["item"] = self.item
        return out


@dataclass(frozen=True)
class BundleRecord:
    """A record's exact bytes and where it is: leaf ``index`` of the log ``log``."""

    log: str
    index: int
    raw: bytes


@dataclass(frozen=True)
class MultiProof:
    """A multi-leaf inclusion proof: ``leaves`` are in the tree of ``tree_size`` (§9)."""

    log: str
    tree_size: int
    leaves: tuple[int, ...]
    nodes: tuple[bytes, ...]


@dataclass(frozen=True)
class ConsistencyProof:
    """An RFC 9162 §2.1.4 proof that tree ``old_size`` is a prefix of tree ``new_size``."""

    log: str
    old_size: int
    new_size: int
    path: tuple[bytes, ...]


@dataclass(frozen=True)
class AnchorRef:
    """A receipt (§8) for the checkpoint (``log``, ``tree_size``).

    ``receipt`` is the receipt's JSON object as read; a bundle that was read
    by :func:`parse_bundle` holds only receipts that
    :meth:`~protocol.anchor.LocalReceipt.from_json` or
    :meth:`~protocol.anchor.EvmReceipt.from_json` accepts.
    """

    log: str
    tree_size: int
    receipt: dict[str, Any]


@dataclass
class Bundle:
    """A trace bundle (§9). Build one and :meth:`dumps` it, or read one with :func:`load_bundle`."""

    subject: Subject
    records: list[BundleRecord] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    proofs: list[MultiProof] = field(default_factory=list)
    consistency: list[ConsistencyProof] = field(default_factory=list)
    anchors: list[AnchorRef] = field(default_factory=list)
    created: int | None = None

    def to_json(self, *, version: int = VERSION) -> dict[str, Any]:
        """The bundle as a JSON document (dicts and lists), members in the order of §9.

        ``version`` 3 (the default) is the compact encoding of §9.1: records
        grouped by log in the order the logs first appear, ascending by index
        (the order :func:`parse_bundle` gives them back). It cannot hold one
        (``log``, ``index``) twice: :class:`BundleError` if the bundle does
        (version 2 can, and the verifier reports ``duplicate_entry``).
        """
        if version not in VERSIONS:
            raise ValueError(f"cannot write bundle version {version!r}: want one of {VERSIONS}")
        b64 = _b64e
        doc: dict[str, Any] = {"format": FORMAT, "version": version}
        if self.created is not None:
            doc["created"] = self.created
        doc["subject"] = self.subject.to_json()
        v3 = version == 3
        if v3:
            doc["logs"] = _logs_json(self.records)
        else:
            doc["records"] = [
                {"log": r.log, "index": r.index, "record": b64(r.raw)} for r in self.records
            ]

        def nodes(hashes: tuple[bytes, ...]) -> str | list[str]:
            return b64(b"".join(hashes)) if v3 else [b64(h) for h in hashes]

        def leaves(ints: tuple[int, ...]) -> list[list[int]] | list[int]:
            return [list(run) for run in _runs_of(ints)] if v3 else list(ints)

        doc["checkpoints"] = list(self.checkpoints)
        doc["proofs"] = [
            {
                "log": p.log,
                "tree_size": p.tree_size,
                "leaves": leaves(p.leaves),
                "nodes": nodes(p.nodes),
            }
            for p in self.proofs
        ]
        doc["consistency"] = [
            {
                "log": p.log,
                "old_size": p.old_size,
                "new_size": p.new_size,
                "path": nodes(p.path),
            }
            for p in self.consistency
        ]
        doc["anchors"] = [
            {"log": a.log, "tree_size": a.tree_size, "receipt": a.receipt} for a in self.anchors
        ]
        return doc

    def dumps(self, *, check: bool = True, version: int = VERSION) -> str:
        """The bundle as JSON text (UTF-8 when encoded), ending in a newline.

        ``version`` as in :meth:`to_json` (default 3, the compact encoding).
        With ``check`` (the default) the text is read back with
        :func:`loads_bundle` first, so a bundle this writes is one a verifier
        reads: :class:`BundleError` if not.
        """
        doc = self.to_json(version=version)
        if version == 2:
            text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
        else:
            text = _layout(doc)
        if check:
            loads_bundle(text)
        return text


def _layout(doc: dict[str, Any]) -> str:
    """Version 3 text: one line per top-level member and per list entry, compact inside
    (runs would take four lines each with ``indent``)."""

    def one(value: object) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    lines = []
    for key, value in doc.items():
        if type(value) is list and value:
            entries = ",\n".join(f"  {one(v)}" for v in value)
            lines.append(f" {one(key)}: [\n{entries}\n ]")
        else:
            lines.append(f" {one(key)}: {one(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _runs_of(indexes: Iterable[int]) -> Iterator[tuple[int, int]]:
    """Maximal runs (first, count) of strictly ascending integers."""
    first = count = -1
    for i in indexes:
        if count > 0 and i == first + count:
            count += 1
            continue
        if count > 0:
            yield first, count
        first, count = i, 1
    if count > 0:
        yield first, count


def _logs_json(records: list[BundleRecord]) -> list[dict[str, Any]]:
    """The ``logs`` member of version 3 (§9.1)."""
    by_log: dict[str, dict[int, bytes]] = {}
    for r in records:
        at = by_log.setdefault(r.log, {})
        if r.index in at:
            raise _fail(
                "records",
                "version 3 holds one record per (log, index); this bundle has one twice",
                f"{r.log} {r.index}",
            )
        at[r.index] = r.raw
    out: list[dict[str, Any]] = []
    for log, at in by_log.items():
        order = sorted(at)
        for i in order:
            if type(i) is not int or not 0 <= i <= MAX_INDEX:
                raise _fail("records", f"want an index in 0..{MAX_INDEX}", i)
        blob = bytearray()
        for i in order:
            raw = at[i]
            if not 1 <= len(raw) <= MAX_RECORD_BYTES:
                raise _fail("records", f"want 1..{MAX_RECORD_BYTES} bytes", f"{len(raw)} bytes")
            blob += len(raw).to_bytes(_LENGTH_BYTES, "big")
            blob += raw
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
        packed = deflate.compress(bytes(blob)) + deflate.flush()
        out.append(
            {"log": log, "runs": [list(run) for run in _runs_of(order)], "records": _b64e(packed)}
        )
    return out


def _b64e(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


# --- reading ----------------------------------------------------------------------------------


def load_bundle(source: str | os.PathLike[str] | IO[bytes]) -> Bundle:
    """Read and check a bundle from a file path or binary stream (module docstring)."""
    doc = load_strict(source, limit=MAX_BUNDLE_BYTES, what="bundle", error=BundleError)
    return parse_bundle(doc)


def loads_bundle(data: bytes | str) -> Bundle:
    """Read and check a bundle from its JSON text (module docstring)."""
    doc = loads_strict(data, limit=MAX_BUNDLE_BYTES, what="bundle", error=BundleError)
    return parse_bundle(doc)


def _fail(where: str, message: str, found: object = None) -> BundleError:
    return BundleError(f"bundle {where}: {message}", found=None if found is None else show(found))


def _members(
    value: object, where: str, members: frozenset[str], required: frozenset[str] | None = None
) -> dict[str, Any]:
    if type(value) is not dict:
        raise _fail(where, "want an object", type(value).__name__)
    keys = value.keys()
    if keys == members:
        return value
    extra = keys - members
    if extra:
        raise _fail(where, "unknown member", min(map(str, extra)))
    missing = (required if required is not None else members) - keys
    if missing:
        raise _fail(where, f"missing member {sorted(missing)[0]!r}")
    return value


def _list(value: object, where: str, limit: int) -> list[Any]:
    if type(value) is not list:
        raise _fail(where, "want a list", type(value).__name__)
    if len(value) > limit:
        raise _fail(where, f"more than {limit} entries", len(value))
    return value


def _integer(value: object, where: str, lo: int, hi: int) -> int:
    if type(value) is not int:  # bool is not int here
        raise _fail(where, "want an integer", value)
    if not lo <= value <= hi:
        raise _fail(where, f"want an integer in {lo}..{hi}", value)
    return value


def _b64_canonical(text: str) -> bytes | None:
    """The bytes of canonical standard base64 with padding, or None.

    ``strict_mode`` refuses characters outside the alphabet (whitespace
    included) and misplaced padding; the length and the last character then
    make it canonical: no surplus padding, no bits set beyond the data.
    """
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    if len(text) != 4 * ((len(raw) + 2) // 3):
        return None
    pad = len(raw) % 3
    if pad == 1 and text[-3] not in _PAD2_LAST:
        return None
    if pad == 2 and text[-2] not in _PAD1_LAST:
        return None
    return raw


_PAD2_LAST = frozenset("AQgw")  # before "==": 1 byte, the low 4 bits of this character are 0
_PAD1_LAST = frozenset("AEIMQUYcgkosw048")  # before "=": 2 bytes, the low 2 bits are 0


def _b64(text: object, where: str, lo: int, hi: int) -> bytes:
    if type(text) is not str:
        raise _fail(where, "want a base64 string", type(text).__name__)
    if len(text) > 4 * ((hi + 2) // 3):
        raise _fail(where, f"want {lo}..{hi} bytes", f"{len(text)} base64 characters")
    raw = _b64_canonical(text)
    if raw is None:
        raise _fail(where, "not canonical standard base64 with padding", text)
    if not lo <= len(raw) <= hi:
        raise _fail(where, f"want {lo}..{hi} bytes", f"{len(raw)} bytes")
    return raw


def _hashes(value: object, where: str, limit: int) -> tuple[bytes, ...]:
    items = _list(value, where, limit)
    a2b = binascii.a2b_base64
    match = _HASH32.fullmatch
    for i, text in enumerate(items):
        if type(text) is not str or match(text) is None:
            raise _fail(f"{where}[{i}]", "want a 32-byte hash in canonical base64", text)
    return tuple(a2b(text) for text in items)


def _check_item(item: object, where: str) -> str:
    if type(item) is not str:
        raise _fail(where, "want a string", type(item).__name__)
    raw = check_text(item)
    if raw is None:
        raise _fail(where, "not valid Unicode (a lone surrogate)")
    if not 1 <= len(raw) <= MAX_ITEM_BYTES:
        raise _fail(where, f"want 1..{MAX_ITEM_BYTES} bytes", f"{len(raw)} bytes")
    control = _CONTROL.search(item)
    if control is not None:
        raise _fail(where, "holds a control character", f"U+{ord(control.group()):04X}")
    return item


class _Origins:
    """Checks ``log`` values, remembering the (few) distinct ones already accepted."""

    def __init__(self) -> None:
        self._ok: set[str] = set()

    def __call__(self, value: object, where: str) -> str:
        if type(value) is not str:
            raise _fail(where, "want a log origin (a string)", type(value).__name__)
        if value in self._ok:
            return value
        if _ORIGIN.fullmatch(value) is None:
            raise _fail(where, "not a log origin (1-128 bytes of printable ASCII, no '+')", value)
        self._ok.add(value)
        return value


def parse_bundle(doc: object) -> Bundle:
    """Check a decoded bundle document (module docstring) and build the :class:`Bundle`.

    Reads version 2 and version 3 (§9.1); both give the same :class:`Bundle`
    for the same content. Raises :class:`BundleError` naming the first
    offending member.
    """
    if type(doc) is not dict:
        raise _fail("(top level)", "want an object", type(doc).__name__)
    version = doc.get("version")
    if type(version) is not int or version not in VERSIONS:
        if "version" not in doc:
            raise _fail("(top level)", "missing member 'version'")
        if type(version) is int and version == 1:
            raise BundleError(
                "version 1 bundles are not supported by this verifier (protocol v2); "
                "rebuild the bundle",
                expected=VERSION,
                found=1,
            )
        raise _fail("version", "want the integer 2 or 3", version)
    v3 = version == 3
    top = _members(
        doc,
        "(top level)",
        _TOP_MEMBERS_3 if v3 else _TOP_MEMBERS,
        _TOP_REQUIRED_3 if v3 else _TOP_REQUIRED,
    )
    if top["format"] != FORMAT or type(top["format"]) is not str:
        raise _fail("format", f"not a ColdTrace bundle: want {FORMAT!r}", top["format"])
    created = None
    if "created" in top:
        created = _integer(top["created"], "created", 0, MAX_TIME)
    subject = _parse_subject(top["subject"])
    origin = _Origins()
    records = _parse_logs(top["logs"], origin) if v3 else _parse_records(top["records"], origin)
    return Bundle(
        subject=subject,
        records=records,
        checkpoints=_parse_checkpoints(top["checkpoints"]),
        proofs=_parse_proofs(top["proofs"], origin, v3, records),
        consistency=_parse_consistency(top["consistency"], origin, v3),
        anchors=_parse_anchors(top["anchors"], origin),
        created=created,
    )


def _parse_subject(value: object) -> Subject:
    o = _members(value, "subject", _SUBJECT_MEMBERS, frozenset({"uid"}))
    uid = o["uid"]
    if type(uid) is not str or _UID.fullmatch(uid) is None:
        raise _fail("subject.uid", "want lowercase hex of 4, 7 or 10 bytes", uid)
    item = o.get("item")
    if item is not None or "item" in o:
        item = _check_item(item, "subject.item")
    return Subject(bytes.fromhex(uid), item)


def _parse_records(value: object, origin: _Origins) -> list[BundleRecord]:
    items = _list(value, "records", MAX_RECORDS)
    out: list[BundleRecord] = []
    append = out.append
    members = _RECORD_MEMBERS
    for i, o in enumerate(items):
        if type(o) is not dict or len(o) != 3 or not members.issuperset(o):
            _members(o, f"records[{i}]", members)
        index = o["index"]
        if type(index) is not int or not 0 <= index <= MAX_INDEX:
            _integer(index, f"records[{i}].index", 0, MAX_INDEX)
        text = o["record"]
        raw = None
        if type(text) is str and len(text) <= _MAX_RECORD_B64:
            raw = _b64_canonical(text)
        if raw is None or not 1 <= len(raw) <= MAX_RECORD_BYTES:
            raw = _b64(text, f"records[{i}].record", 1, MAX_RECORD_BYTES)  # raises
        append(BundleRecord(origin(o["log"], f"records[{i}].log"), index, raw))
    return out


def _parse_checkpoints(value: object) -> list[str]:
    items = _list(value, "checkpoints", MAX_CHECKPOINTS)
    for i, text in enumerate(items):
        where = f"checkpoints[{i}]"
        if type(text) is not str:
            raise _fail(where, "want a signed note (a string)", type(text).__name__)
        raw = check_text(text)
        if raw is None:
            raise _fail(where, "not valid Unicode (a lone surrogate)")
        if not 1 <= len(raw) <= MAX_CHECKPOINT_BYTES:
            raise _fail(where, f"want 1..{MAX_CHECKPOINT_BYTES} bytes", f"{len(raw)} bytes")
    return list(items)


def _parse_proofs(
    value: object, origin: _Origins, v3: bool, records: list[BundleRecord]
) -> list[MultiProof]:
    items = _list(value, "proofs", MAX_PROOFS)
    out: list[MultiProof] = []
    budget = MAX_PROOF_LEAVES
    held: dict[str, int] = {}  # version 3: records of each log in ``logs``
    if v3:
        for r in records:
            held[r.log] = held.get(r.log, 0) + 1
    for i, o in enumerate(items):
        where = f"proofs[{i}]"
        _members(o, where, _PROOF_MEMBERS)
        log = origin(o["log"], f"{where}.log")
        size = _integer(o["tree_size"], f"{where}.tree_size", 1, MAX_TREE_SIZE)
        if v3:
            runs = _runs(o["leaves"], f"{where}.leaves", size, budget, "leaves", MAX_PROOF_LEAVES)
            named = sum(n for _, n in runs)
            if named > held.get(log, 0):
                raise _fail(
                    f"{where}.leaves",
                    f"names more leaves than logs holds records of its log ({held.get(log, 0)})",
                    named,
                )
            leaves: tuple[int, ...] = tuple(
                chain.from_iterable(range(first, first + n) for first, n in runs)
            )
        else:
            leaves = tuple(_leaves(o["leaves"], f"{where}.leaves", size, budget))
        budget -= len(leaves)
        limit = MAX_NODES_PER_LEAF * len(leaves)
        if v3:
            nodes = _hash_string(o["nodes"], f"{where}.nodes", limit)
        else:
            nodes = _hashes(o["nodes"], f"{where}.nodes", limit)
        out.append(MultiProof(log, size, leaves, nodes))
    return out


def _leaves(value: object, where: str, size: int, budget: int) -> list[int]:
    """Version 2 ``leaves``: a non-empty list of strictly ascending integers below ``size``."""
    leaves = _list(value, where, MAX_RECORDS)
    if not leaves:
        raise _fail(where, "a proof proves at least one leaf")
    if len(leaves) > budget:
        raise _fail(where, f"more than {MAX_PROOF_LEAVES} leaves in all in the bundle")
    prev = -1
    for j, leaf in enumerate(leaves):
        if type(leaf) is not int or not prev < leaf < size:
            if type(leaf) is not int:
                raise _fail(f"{where}[{j}]", "want an integer", leaf)
            if leaf >= size:
                raise _fail(f"{where}[{j}]", f"not in a tree of {size} leaves", leaf)
            raise _fail(f"{where}[{j}]", "leaves must be strictly ascending", leaf)
        prev = leaf
    return leaves


def _runs(
    value: object, where: str, end: int, budget: int, what: str, limit: int
) -> list[tuple[int, int]]:
    """Version 3 runs (§9.1): a non-empty list of ``[first, count]``, count ≥ 1, strictly
    ascending, neither overlapping nor adjacent, every ``first + count`` at most ``end``
    and the counts together at most ``budget`` (what is left of the bundle's ``limit``)."""
    items = _list(value, where, MAX_RECORDS)
    if not items:
        raise _fail(where, "want at least one run")
    out: list[tuple[int, int]] = []
    after = -1  # one past the end of the previous run, -1 before the first
    total = 0
    for j, run in enumerate(items):
        w = f"{where}[{j}]"
        if type(run) is not list or len(run) != 2:
            raise _fail(w, "want a run [first, count]", run if type(run) is not list else len(run))
        first = _integer(run[0], f"{w}[0]", 0, end - 1)
        count = _integer(run[1], f"{w}[1]", 1, end - first)
        if first <= after:
            message = "runs must be ascending and must not overlap"
            if first == after:
                message = "adjacent runs must be one run (not canonical)"
            raise _fail(w, message, first)
        total += count
        if total > budget:
            raise _fail(where, f"more than {limit} {what} in all in the bundle", total)
        after = first + count
        out.append((first, count))
    return out


def _parse_consistency(value: object, origin: _Origins, v3: bool) -> list[ConsistencyProof]:
    items = _list(value, "consistency", MAX_CONSISTENCY)
    out: list[ConsistencyProof] = []
    read = _hash_string if v3 else _hashes
    for i, o in enumerate(items):
        where = f"consistency[{i}]"
        _members(o, where, _CONSISTENCY_MEMBERS)
        out.append(
            ConsistencyProof(
                origin(o["log"], f"{where}.log"),
                _integer(o["old_size"], f"{where}.old_size", 1, MAX_TREE_SIZE),
                _integer(o["new_size"], f"{where}.new_size", 1, MAX_TREE_SIZE),
                read(o["path"], f"{where}.path", MAX_PATH),
            )
        )
    return out


def _hash_string(value: object, where: str, limit: int) -> tuple[bytes, ...]:
    """Version 3 hashes (§9.1): canonical base64 of 0 to ``limit`` concatenated 32-byte hashes."""
    raw = _b64(value, where, 0, limit * _HASH)
    if len(raw) % _HASH:
        raise _fail(where, f"want a multiple of {_HASH} bytes (whole hashes)", f"{len(raw)} bytes")
    return tuple(raw[k : k + _HASH] for k in range(0, len(raw), _HASH))


def _parse_logs(value: object, origin: _Origins) -> list[BundleRecord]:
    """Version 3 ``logs`` (§9.1): each log once, its records in runs and one DEFLATE blob."""
    items = _list(value, "logs", MAX_RECORDS)
    out: list[BundleRecord] = []
    seen: set[str] = set()
    budget = MAX_RECORDS
    inflated = MAX_INFLATED_BYTES
    for i, o in enumerate(items):
        where = f"logs[{i}]"
        _members(o, where, _LOG_MEMBERS)
        log = origin(o["log"], f"{where}.log")
        if log in seen:
            raise _fail(f"{where}.log", "a log appears at most once in logs", log)
        seen.add(log)
        runs = _runs(o["runs"], f"{where}.runs", MAX_INDEX + 1, budget, "records", MAX_RECORDS)
        count = sum(n for _, n in runs)
        budget -= count
        packed = _b64(o["records"], f"{where}.records", 1, MAX_BUNDLE_BYTES)
        if len(packed) < MIN_PACKED_BYTES_PER_RECORD * count:
            raise _fail(
                f"{where}.records",
                f"fewer than {MIN_PACKED_BYTES_PER_RECORD} compressed bytes per record "
                f"(want at least {MIN_PACKED_BYTES_PER_RECORD * count} for {count} records)",
                f"{len(packed)} bytes",
            )
        cap = min(inflated, count * (_LENGTH_BYTES + MAX_RECORD_BYTES))
        blob = _inflate(packed, f"{where}.records", cap)
        inflated -= len(blob)
        raws = _split_records(blob, count, f"{where}.records")
        indexes = chain.from_iterable(range(first, first + n) for first, n in runs)
        out.extend(BundleRecord(log, index, raw) for index, raw in zip(indexes, raws, strict=True))
    return out


def _inflate(packed: bytes, where: str, cap: int) -> bytes:
    """Raw DEFLATE (RFC 1951) of ``packed``, refusing more than ``cap`` bytes of output
    before producing them, a stream that does not end, and bytes after its end."""
    inflater = zlib.decompressobj(-15)
    try:
        blob = inflater.decompress(packed, cap + 1)
    except zlib.error as exc:
        raise _fail(where, "not a valid raw DEFLATE stream", str(exc)) from None
    if len(blob) > cap or inflater.unconsumed_tail:
        raise _fail(where, f"decompresses to more than {cap} bytes (the limit here)")
    if not inflater.eof:
        raise _fail(where, "the DEFLATE stream is truncated (no final block)")
    if inflater.unused_data:
        raise _fail(
            where, "bytes after the end of the DEFLATE stream", f"{len(inflater.unused_data)} bytes"
        )
    return blob


def _split_records(blob: bytes, count: int, where: str) -> list[bytes]:
    """``count`` records of 78..1024 bytes, each after its 2-byte big-endian length, filling
    ``blob`` exactly."""
    out: list[bytes] = []
    append = out.append
    pos, end = 0, len(blob)
    for k in range(count):
        if pos + _LENGTH_BYTES > end:
            raise _fail(where, f"holds {k} records, fewer than its runs count", count)
        n = (blob[pos] << 8) | blob[pos + 1]
        pos += _LENGTH_BYTES
        if not MIN_RECORD_BYTES <= n <= MAX_RECORD_BYTES:
            raise _fail(
                f"{where} (record {k})",
                f"want {MIN_RECORD_BYTES}..{MAX_RECORD_BYTES} bytes",
                f"{n} bytes",
            )
        if pos + n > end:
            raise _fail(f"{where} (record {k})", "cut short: the data ends inside it", f"{n} bytes")
        append(blob[pos : pos + n])
        pos += n
    if pos != end:
        raise _fail(where, "holds more than its runs count (trailing bytes)", f"{end - pos} bytes")
    return out


def _parse_anchors(value: object, origin: _Origins) -> list[AnchorRef]:
    items = _list(value, "anchors", MAX_ANCHORS)
    out: list[AnchorRef] = []
    for i, o in enumerate(items):
        where = f"anchors[{i}]"
        _members(o, where, _ANCHOR_MEMBERS)
        log = origin(o["log"], f"{where}.log")
        size = _integer(o["tree_size"], f"{where}.tree_size", 1, MAX_TREE_SIZE)
        receipt = o["receipt"]
        if type(receipt) is not dict:
            raise _fail(f"{where}.receipt", "want an object", type(receipt).__name__)
        kind = receipt.get("type")
        try:
            if kind == "local":
                LocalReceipt.from_json(receipt)
            elif kind == "evm":
                EvmReceipt.from_json(receipt)
            else:
                raise _fail(f"{where}.receipt.type", "want 'local' or 'evm'", kind)
        except MalformedReceiptError as exc:
            found = exc.found if isinstance(exc.found, (str, int)) else None
            raise _fail(f"{where}.receipt", exc.message, found) from None
        out.append(AnchorRef(log, size, receipt))
    return out
