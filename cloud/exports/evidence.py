"""Verified evidence for the exports: the bundle, its report and where each record is.

:func:`load_evidence` reads a bundle and a trust file, runs
:func:`protocol.verify.verify_bundle` and returns an :class:`Evidence` only when
the bundle verified (§11); otherwise it raises :class:`NotVerifiedError`. The
exports take nothing but an :class:`Evidence`, so unverified data cannot reach
them.

The helpers here fix the identifiers the exports write, the same in every
format:

- a **place** (operator-assigned id, §1) becomes ``urn:coldtrace:place:`` +
  the id percent-encoded (RFC 3986, every character but unreserved ones and
  ``:``); :func:`place_id` reverses it. A place id that already is an SGLN EPC
  URN (``urn:epc:id:sgln:…``) is used unchanged;
- a **device** becomes ``urn:coldtrace:device:`` + the id, encoded the same way;
- the **item** becomes a GS1 Digital Link URI ``https://id.gs1.org`` + the item
  path when it is a Digital Link path (§1), is kept as it is when it is an EPC
  URN, and otherwise becomes ``urn:coldtrace:item:`` + the encoded item;
- a **record** is named by its SHA-256 (lowercase hex) and its place in a log:
  the log origin and the leaf index (the bundle's first entry holding those
  bytes, §9);
- an **organisation** (a device registration's ``org``, §2.5) becomes
  ``urn:coldtrace:org:`` + the encoded name, unless it already is a GS1 PGLN
  EPC URN (``urn:epc:id:pgln:…``), used unchanged;
- a **tag** that has no item in the bundle (a container tag named by a scan's
  ``parent``) becomes ``urn:coldtrace:tag:`` + its UID in lowercase hex.

:func:`evidence_from_bytes` is :func:`load_evidence` for a bundle already in
memory (an upload), with the trust as a :class:`~protocol.trust.Trust` or the
trust file's bytes.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from protocol.bundle import Bundle, loads_bundle
from protocol.custody import parse_item
from protocol.record import Record, Registration, Scan, open_record
from protocol.trust import Trust, load_trust, loads_trust
from protocol.verdict import LegReport, Verdict
from protocol.verify import Report, verify_bundle

__all__ = [
    "DEVICE_PREFIX",
    "DIGITAL_LINK_ROOT",
    "ITEM_PREFIX",
    "ORG_PREFIX",
    "PLACE_PREFIX",
    "TAG_PREFIX",
    "Evidence",
    "ExportError",
    "ExportOptionError",
    "NotVerifiedError",
    "ProofRef",
    "UnreadableInputError",
    "centi_decimal",
    "device_uri",
    "evidence_from_bytes",
    "iso_utc",
    "item_uri",
    "load_evidence",
    "org_uri",
    "place_id",
    "place_uri",
    "tag_uri",
]

PLACE_PREFIX = "urn:coldtrace:place:"
DEVICE_PREFIX = "urn:coldtrace:device:"
ITEM_PREFIX = "urn:coldtrace:item:"
ORG_PREFIX = "urn:coldtrace:org:"
TAG_PREFIX = "urn:coldtrace:tag:"
SGLN_PREFIX = "urn:epc:id:sgln:"
PGLN_PREFIX = "urn:epc:id:pgln:"
DIGITAL_LINK_ROOT = "https://id.gs1.org"


class ExportError(Exception):
    """Nothing was exported; the message says why (safe to show to the user)."""


class ExportOptionError(ExportError, ValueError):
    """A bad kind, format or option, or one the bundle does not fit; nothing was exported."""


class UnreadableInputError(ExportError):
    """The bundle or the trust file cannot be read (docs/protocol.md §9/§10); ``code`` is the
    protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class NotVerifiedError(ExportError):
    """The bundle did not verify: there is nothing to export."""

    def __init__(self, report: Report) -> None:
        codes = sorted({c.code or "?" for c in report.failures})
        if codes:
            why = f"{len(report.failures)} check(s) failed: {', '.join(codes)}"
        else:
            why = "the bundle holds no verifiable record"
        super().__init__(f"the bundle is not verified ({why}); nothing is exported")
        self.report = report


@dataclass(frozen=True)
class ProofRef:
    """Where a verified record is: log origin, leaf index, SHA-256 of its bytes."""

    log: str
    index: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"log": self.log, "index": self.index, "sha256": self.sha256}


@dataclass(frozen=True)
class Evidence:
    """A verified bundle, its report and verdict, and where each record is in its logs."""

    bundle: Bundle
    report: Report
    name: str  # the bundle's file name (no directories)
    sha256: str  # SHA-256 of the bundle file's bytes, hex
    locations: dict[bytes, ProofRef]  # record bytes -> its first (log, index) in the bundle

    @property
    def verdict(self) -> Verdict:
        v = self.report.verdict
        if v is None:  # load_evidence never builds one without a verdict
            raise NotVerifiedError(self.report)
        return v

    @property
    def document(self) -> dict[str, Any]:
        """The verdict document (§13.1)."""
        return self.report.verdict_document()

    def proof(self, leg: LegReport) -> ProofRef:
        """The proof reference of the custody scan that opened ``leg``."""
        return self.locations[leg.leg.scan.raw]

    @functools.cached_property
    def records(self) -> list[Record]:
        """The bundle's records, each distinct record once, opened (all verified: the
        bundle verified as a whole)."""
        return [open_record(raw) for raw in self.locations]

    @functools.cached_property
    def _orgs(self) -> dict[str, set[str]]:
        orgs: dict[str, set[str]] = {}
        for r in self.records:
            p = r.payload
            if isinstance(p, Registration):
                orgs.setdefault(p.device, set()).add(p.org)
        return orgs

    def org_of(self, device: str) -> str | None:
        """The organisation that owns ``device``: the ``org`` of its registrations in the
        bundle (§2.5) when they all name the same one, else None (unknown or ambiguous)."""
        orgs = self._orgs.get(device, set())
        return next(iter(orgs)) if len(orgs) == 1 else None

    def tag_item(self, uid: bytes) -> str | None:
        """The item a commission scan in the bundle gave the tag ``uid`` (its first, in
        date order), or None."""
        found = [
            (r.payload.time, r.signer, r.payload.seq, r.payload.item)
            for r in self.records
            if isinstance(r.payload, Scan)
            and r.payload.uid == uid
            and r.payload.action == 1
            and r.payload.item is not None
            and r.payload.tq > 0
        ]
        return min(found)[3] if found else None


def load_evidence(
    bundle: str | os.PathLike[str], trust: str | os.PathLike[str] | Trust
) -> Evidence:
    """Read and verify ``bundle`` against ``trust``.

    Raises :class:`protocol.errors.VerificationError` (``malformed_bundle``,
    …) or :class:`OSError` when an input cannot be read, and
    :class:`NotVerifiedError` when the bundle does not verify.
    """
    path = Path(bundle)
    data = path.read_bytes()
    pinned = trust if isinstance(trust, Trust) else load_trust(trust)
    return _evidence(data, pinned, path.name)


def evidence_from_bytes(
    data: bytes, trust: Trust | bytes, name: str = "bundle.json", *, rpc: Any = None
) -> Evidence:
    """:func:`load_evidence` for a bundle's bytes; ``trust`` a Trust or the trust file's
    bytes; ``name`` the bundle's file name as the exports show it (no directories);
    ``rpc`` a JSON-RPC call that checks EVM anchors (docs/evm.md), or None."""
    pinned = trust if isinstance(trust, Trust) else loads_trust(trust)
    return _evidence(data, pinned, Path(name).name or "bundle.json", rpc)


def _evidence(data: bytes, pinned: Trust, name: str, rpc: Any = None) -> Evidence:
    parsed = loads_bundle(data)
    report = verify_bundle(parsed, pinned, rpc=rpc)
    if not report.verified or report.verdict is None:
        raise NotVerifiedError(report)
    locations: dict[bytes, ProofRef] = {}
    for r in parsed.records:
        if r.raw not in locations:
            locations[r.raw] = ProofRef(r.log, r.index, hashlib.sha256(r.raw).hexdigest())
    return Evidence(parsed, report, name, hashlib.sha256(data).hexdigest(), locations)


# --- identifiers ------------------------------------------------------------------------


def _enc(text: str) -> str:
    return quote(text, safe=":")


def place_uri(place: str) -> str:
    """A place id as a URI (module docstring); reversed by :func:`place_id`."""
    if place.startswith(SGLN_PREFIX):
        return place
    return PLACE_PREFIX + _enc(place)


def place_id(uri: str) -> str:
    """The place id a :func:`place_uri` stands for."""
    if uri.startswith(PLACE_PREFIX):
        return unquote(uri.removeprefix(PLACE_PREFIX), errors="strict")
    return uri


def device_uri(device: str) -> str:
    return DEVICE_PREFIX + _enc(device)


def org_uri(org: str) -> str:
    """An organisation (a registration's ``org``) as a URI (module docstring)."""
    if org.startswith(PGLN_PREFIX):
        return org
    return ORG_PREFIX + _enc(org)


def tag_uri(uid: bytes) -> str:
    return TAG_PREFIX + uid.hex()


def item_uri(item: str) -> str:
    """The item as a URI: GS1 Digital Link for a Digital Link path (module docstring)."""
    if parse_item(item) is not None:
        return DIGITAL_LINK_ROOT + item
    if item.startswith("urn:epc:id:"):
        return item
    return ITEM_PREFIX + _enc(item)


# --- values -----------------------------------------------------------------------------


def iso_utc(t: int) -> str:
    """Unix seconds as ISO 8601 UTC, e.g. ``2026-09-21T14:13:20Z``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def centi_decimal(centi: int) -> str:
    """0.01 °C as exact decimal text: 260 -> ``2.6``, -5 -> ``-0.05``, 400 -> ``4``."""
    whole, frac = divmod(abs(centi), 100)
    text = f"{whole}.{frac:02d}".rstrip("0").rstrip(".")
    return ("-" if centi < 0 else "") + text
