"""The stateless checks of ingest (docs/protocol.md §2, §4, §5): what one message
is worth on its own, before any stored state is consulted.

:func:`precheck` runs every check but the signature's; :func:`check_message`
runs them all. The ingest pipeline (:mod:`gateway.evidence.ingest`) and the
verification workers (:mod:`gateway.evidence.verifiers`) both use them, so
they live here, below both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.evidence.registry import Registry
from gateway.transport.mqtt import Inbound, parse_topic
from protocol import cbor
from protocol.cose import Sign1, mac0, parse_sign1, verify_sign1
from protocol.errors import (
    AlgorithmError,
    CBORError,
    RecordError,
    SignatureError,
    SizeError,
    VerificationError,
)
from protocol.record import (
    Binding,
    ProductProfile,
    Registration,
    Status,
    chain_hash,
    decode_payload,
)

__all__ = [
    "EV_DROPPED",
    "MAX_RECORD",
    "REASONS",
    "ZERO_PREV",
    "Accepted",
    "Handle",
    "IngestSettings",
    "Pending",
    "Presence",
    "Refused",
    "Result",
    "check_chunk",
    "check_message",
    "declared_range",
    "make_ack",
    "precheck",
]

log = logging.getLogger("coldtrace.gateway.ingest")

MAX_RECORD = 1024
ZERO_PREV = bytes(16)
EV_DROPPED = 11  # status event "records dropped" (§2.4); with ``lost``: declared losses

REASONS = {
    "oversized": "record larger than 1024 bytes",
    "malformed_cbor": "not deterministic CBOR",
    "bad_cose": "not the COSE_Sign1 profile",
    "wrong_algorithm": "algorithm is not ES256",
    "wrong_topic": "signer is not the device of the topic",
    "unknown_device": "no registration for this signer",
    "unknown_key": "signed by neither this registry nor a configured authority",
    "revoked_device": "device revoked before this record",
    "bad_payload": "payload breaks the record rules",
    "bad_signature": "signature does not verify",
    "bad_time": "time impossible for the clock quality",
    "bad_declaration": "declares seqs lost that it cannot",
    "conflict": "another record is stored under this sequence number",
    "replayed_seq": "sequence number reused after a reboot",
    "bad_registration": "registration the registry may not apply",
    "out_of_scope": "outside the registry's scopes",
    "statement_fork": "statement chain position already taken",
    "statement_gap": "statement chain positions skipped",
    "statement_unlinked": "statement does not link to its chain's previous one",
    "statement_backdated": "statement time before its chain's previous one",
    "broken_link": "an authority's record does not link to its adjacent seq",
    "internal_error": "unexpected failure while checking",
    "rate_limited": "over the device's rate limit: counted, never stored one by one",
}


@dataclass(frozen=True)
class IngestSettings:
    future_skew: int = 300
    holdover_skew: int = 86400
    min_time: int = 1577836800
    ack_interval: float = 0.2


@dataclass(slots=True)
class Accepted:
    """A message that passed the stateless checks."""

    msg: Inbound
    signer: str
    payload: Any  # a protocol.record payload dataclass
    chash: bytes  # chain hash of the record (prev of its successor)


@dataclass(slots=True)
class Refused:
    msg: Inbound
    reason: str
    detail: str
    signer: str | None = None
    seq: int | None = None


@dataclass(slots=True)
class Presence:
    """A device's retained ``online``/``offline`` state message (§5)."""

    msg: Inbound
    device: str
    state: str


Result = Accepted | Refused | Presence


# --- stateless checks ---------------------------------------------------------------


def _topic_device(topic: str) -> str | None:
    parts = parse_topic(topic)
    if parts is None or parts[1] != "rec":
        return None
    return parts[0]


def check_message(msg: Inbound, registry: Registry, now: int, settings: IngestSettings) -> Result:
    """Run every stateless check on one message (see the module docstring)."""
    try:
        r = precheck(msg, registry, now, settings)
        if type(r) is not Pending:
            return r  # type: ignore[return-value]
        try:
            verify_sign1(r.sign1, r.key)
        except SignatureError as exc:
            return r.refused(str(exc))
        return r.after
    except Exception as exc:
        log.exception("unexpected failure checking a message on %s", msg.topic)
        return Refused(msg, "internal_error", f"{type(exc).__name__}: {exc}")


@dataclass(slots=True)
class Pending:
    """A message that passed every stateless check but the signature.

    ``after`` is its result once the signature verifies (the checks that
    follow the signature, ``bad_time`` and ``bad_declaration``, have run
    already; their verdict only stands if the signature does).
    """

    sign1: Sign1
    key: Any  # the signer's P-256 public key
    after: Result

    def refused(self, detail: str) -> Refused:
        """The result when the signature does not verify (``detail``: the SignatureError)."""
        a = self.after
        seq = a.payload.seq if type(a) is Accepted else a.seq  # type: ignore[union-attr]
        return Refused(a.msg, "bad_signature", detail, self.sign1.kid, seq)


def precheck(
    msg: Inbound, registry: Registry, now: int, settings: IngestSettings
) -> Result | Pending:
    """Every stateless check but the signature's: a final Result, or a :class:`Pending`.

    Never raises (anything unexpected is ``internal_error``). The verifiers
    run this where the registry lives and send only the signature checks to
    their workers.
    """
    try:
        return _precheck(msg, registry, now, settings)
    except Exception as exc:
        log.exception("unexpected failure checking a message on %s", msg.topic)
        return Refused(msg, "internal_error", f"{type(exc).__name__}: {exc}")


def _precheck(msg: Inbound, registry: Registry, now: int, s: IngestSettings) -> Result | Pending:
    data = msg.payload
    if msg.topic.endswith("/state"):
        parts = parse_topic(msg.topic)
        if parts is not None and parts[1] == "state" and len(data) <= 16:
            return Presence(msg, parts[0], data.decode("utf-8", "replace"))
    if len(data) > MAX_RECORD:
        return Refused(msg, "oversized", f"{len(data)} bytes, limit {MAX_RECORD}")
    try:
        s1 = parse_sign1(data)
    except AlgorithmError as exc:
        return Refused(msg, "wrong_algorithm", str(exc))
    except SizeError as exc:
        return Refused(msg, "oversized", str(exc))
    except CBORError as exc:
        return Refused(msg, "malformed_cbor", str(exc))
    except VerificationError as exc:
        return Refused(msg, "bad_cose", str(exc))
    kid = s1.kid
    if not msg.outbox_id and msg.topic != f"ct/v1/{kid}/rec":
        return Refused(msg, "wrong_topic", f"signed by {kid!r}, published on {msg.topic!r}", kid)
    entry = registry.keys.get(kid)
    if entry is None:
        if msg.outbox_id:
            why = (
                f"{kid!r} is neither this gateway's registry nor a [[registry.authorities]] "
                "entry of its configuration"
            )
            return Refused(msg, "unknown_key", why, kid)
        return Refused(msg, "unknown_device", f"{kid!r} is not registered", kid)
    if not entry.active:
        return Refused(msg, "revoked_device", f"{kid!r} is revoked", kid)
    try:
        p = decode_payload(s1.payload)
    except CBORError as exc:
        return Refused(msg, "malformed_cbor", f"payload: {exc}", kid)
    except RecordError as exc:
        seq = _declared_seq(s1.payload)
        if seq is not None:  # §5.2 names this refusal; the record rules hold it since v2
            return Refused(msg, "bad_declaration", str(exc), kid, seq)
        return Refused(msg, "bad_payload", str(exc), kid)
    is_reg = type(p) in _REGISTRY_KINDS
    if is_reg != entry.is_registry:
        why = (
            f"a {type(p).__name__.lower()} (kind {p.kind}) must be signed by a registry key"
            if is_reg
            else "a registry key signs registrations, bindings and profiles only"
        )
        return Refused(msg, "bad_payload", why, kid, p.seq)
    # The signature comes next (see Pending): what follows is decided now and
    # stands only if the signature verifies.
    after: Result
    tq = p.tq
    if tq and (
        p.time < s.min_time or p.time > now + (s.holdover_skew if tq == 1 else s.future_skew)
    ):
        skew = s.holdover_skew if tq == 1 else s.future_skew
        after = Refused(
            msg,
            "bad_time",
            f"time {p.time} with tq {tq}: allowed {s.min_time}..{now + skew}",
            kid,
            p.seq,
        )
    elif type(p) is Status and p.lost is not None and (bad := declaration_error(p)) is not None:
        after = Refused(msg, "bad_declaration", bad, kid, p.seq)
    else:
        after = Accepted(msg, kid, p, chain_hash(s1.raw))
    return Pending(s1, entry.key, after)


_REGISTRY_KINDS = (Registration, Binding, ProductProfile)


def _declared_seq(payload: bytes) -> int | None:
    """The seq of a status record (kind 3) carrying ``lost`` (key 38), else None.

    Version 2's record rules refuse a declaration that breaks §2.4 in the
    decoder already; §5.2 calls that refusal ``bad_declaration``.
    """
    try:
        m = cbor.decode(payload, max_size=MAX_RECORD, max_depth=1)
    except CBORError:
        return None
    if not isinstance(m, dict) or m.get(1) != 3 or 38 not in m:
        return None
    seq = m.get(3)
    return seq if isinstance(seq, int) else None


def declaration_error(p: Status) -> str | None:
    """Why a status record carrying ``lost`` is not a valid declaration (§2.4, §5.2)."""
    if p.event != EV_DROPPED:
        return f"lost (key 38) belongs to event {EV_DROPPED} only, this is event {p.event}"
    assert p.lost is not None
    if p.detail is None or p.detail < 1:
        return f"event {EV_DROPPED} with lost {p.lost} needs detail >= 1 (a count), has {p.detail}"
    last = p.lost + p.detail - 1
    if last >= p.seq:
        return (
            f"declares seqs {p.lost}..{last} lost, but its own seq is {p.seq}: "
            "a device can only lose seqs it has already numbered"
        )
    return None


def declared_range(p: Any) -> tuple[int, int] | None:
    """(first, last) seqs a checked payload declares lost, or None (§5.2)."""
    if type(p) is Status and p.lost is not None and p.event == EV_DROPPED and p.detail:
        return p.lost, p.lost + p.detail - 1
    return None


def check_chunk(
    msgs: Sequence[Inbound], registry: Registry, now: int, settings: IngestSettings
) -> list[Result]:
    return [check_message(m, registry, now, settings) for m in msgs]


# --- acks (§5.2) ---------------------------------------------------------------------


def make_ack(gateway_id: str, key: bytes, seq: int, head: bytes, now: int) -> bytes:
    """The COSE_Mac0 ack: ``{1: seq, 2: time, 3: head}`` under the device's ack key."""
    return mac0(cbor.encode({1: seq, 2: now, 3: head}), gateway_id, key)


Handle = Callable[[], list[Result]]  # a submitted batch: call it for the results, in message order
