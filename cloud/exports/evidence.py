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
  bytes, §9).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from protocol.bundle import Bundle, loads_bundle
from protocol.custody import parse_item
from protocol.trust import Trust, load_trust
from protocol.verdict import LegReport, Verdict
from protocol.verify import Report, verify_bundle

__all__ = [
    "DEVICE_PREFIX",
    "DIGITAL_LINK_ROOT",
    "ITEM_PREFIX",
    "PLACE_PREFIX",
    "Evidence",
    "NotVerifiedError",
    "ProofRef",
    "centi_decimal",
    "device_uri",
    "iso_utc",
    "item_uri",
    "load_evidence",
    "place_id",
    "place_uri",
]

PLACE_PREFIX = "urn:coldtrace:place:"
DEVICE_PREFIX = "urn:coldtrace:device:"
ITEM_PREFIX = "urn:coldtrace:item:"
SGLN_PREFIX = "urn:epc:id:sgln:"
DIGITAL_LINK_ROOT = "https://id.gs1.org"


class NotVerifiedError(Exception):
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
    parsed = loads_bundle(data)
    report = verify_bundle(parsed, pinned)
    if not report.verified or report.verdict is None:
        raise NotVerifiedError(report)
    locations: dict[bytes, ProofRef] = {}
    for r in parsed.records:
        if r.raw not in locations:
            locations[r.raw] = ProofRef(r.log, r.index, hashlib.sha256(r.raw).hexdigest())
    return Evidence(parsed, report, path.name, hashlib.sha256(data).hexdigest(), locations)


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
