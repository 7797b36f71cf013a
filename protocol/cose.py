"""The COSE profile: COSE_Sign1 records (RFC 9052 §4.2) and COSE_Mac0 acks (§6.2).

A record is exactly (docs/protocol.md §3)::

    D2                                  tag 18
    84                                  array(4)
    4n A2 01 26 04 4m <kid>             protected: bstr .cbor {1: -7, 4: kid}
    A0                                  unprotected: {}
    4n/58 nn/59 nnnn <payload>          payload: bstr (never nil)
    58 40 <r ‖ s>                       signature: 64 bytes, low-S

and an ack or command is the same shape with tag 17, ``{1: 5, 4: kid}``
(HMAC 256/256) and a 32-byte tag (§5.2).

:func:`parse_sign1` checks that shape on the exact bytes received: it takes
an exact-match fast path for well-formed records and, for anything else, a
strict path that decodes the message with :mod:`protocol.cbor` to say
precisely what is wrong (tests check that the fast path accepts nothing the
strict path refuses). Nothing is re-encoded: the signature is checked over
``Sig_structure`` built from the received protected and payload bytes
(RFC 9052 §4.4).

Verification speed matters (the gateway verifies ~20k records/s over a few
cores), so the record hot path (:func:`_split_sign1`, :func:`_verify_split`,
used by ``protocol.record.verify_record``) memoises the check of each
signer's fixed envelope prefix, slices ``Sig_structure`` out of the received
bytes, and writes the DER signature for pyca directly from r ‖ s (the same
bytes as ``encode_dss_signature``, a third of the cost).

Errors: :class:`~protocol.errors.AlgorithmError` (alg is not ES256 / HMAC
256/256), :class:`~protocol.errors.HeaderError` and its
:class:`~protocol.errors.KidError` (any other header deviation),
:class:`~protocol.errors.EnvelopeError` and its
:class:`~protocol.errors.DetachedPayloadError` (tag, array, element types,
signature length), CBOR errors for bytes that are not deterministic CBOR,
:class:`~protocol.errors.SignatureError` / :class:`~protocol.errors.HighSError`
for the signature itself and :class:`~protocol.errors.MacError` for a tag.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from protocol import cbor, rfc6979
from protocol.errors import (
    AlgorithmError,
    DetachedPayloadError,
    EnvelopeError,
    HeaderError,
    HighSError,
    KidError,
    MacError,
    SignatureError,
    SizeError,
    TrailingBytesError,
    TruncatedError,
)
from protocol.rfc6979 import HALF_N, N

__all__ = [
    "ALG_ES256",
    "ALG_HMAC_256_256",
    "ID_PATTERN",
    "MAC_TAG_LEN",
    "MAX_MESSAGE_SIZE",
    "SIGNATURE_LEN",
    "TAG_MAC0",
    "TAG_SIGN1",
    "Mac0",
    "Sign1",
    "check_id",
    "mac0",
    "mac_structure",
    "parse_mac0",
    "parse_sign1",
    "sig_structure",
    "sign1",
    "sign1_deterministic",
    "verify_mac0",
    "verify_mac0_raw",
    "verify_sign1",
    "verify_sign1_raw",
]

TAG_SIGN1 = 18  # RFC 9052 §4.2
TAG_MAC0 = 17  # RFC 9052 §6.2
ALG_ES256 = -7  # RFC 9053 §2.1
ALG_HMAC_256_256 = 5  # RFC 9053 §3.1
SIGNATURE_LEN = 64  # r ‖ s, 32 bytes each
MAC_TAG_LEN = 32
#: A whole record (or ack) is at most this many bytes (§3, §12).
MAX_MESSAGE_SIZE = 1024
#: Device, registry and gateway ids (§1): 1-32 bytes of [a-z0-9._-], first a letter or digit.
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
_ID_BYTES = re.compile(rb"[a-z0-9][a-z0-9._-]{0,31}")

_ES256 = ec.ECDSA(hashes.SHA256())
_SIG1_CONTEXT = b"\x84\x6aSignature1"  # array(4), tstr(10) "Signature1"
_MAC0_CONTEXT = b"\x84\x64MAC0"  # array(4), tstr(4) "MAC0"
_ZERO32 = bytes(32)
_N_BYTES = N.to_bytes(32, "big")
_HALF_N_BYTES = HALF_N.to_bytes(32, "big")
_R_MIN = (1).to_bytes(32, "big")


def check_id(value: str, what: str = "kid") -> None:
    """Raise KidError unless ``value`` is a valid device/registry/gateway id (§1)."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise KidError(
            f"{what} is not a valid id",
            expected="1-32 bytes of [a-z0-9._-], starting with a letter or digit",
            found=value,
        )


@dataclass(frozen=True, slots=True)
class Sign1:
    """A COSE_Sign1 message that passed :func:`parse_sign1`.

    ``protected`` and ``payload`` are the exact bytes inside their bstr
    wrappers, ``signature`` is r ‖ s, ``raw`` the whole message as received.
    """

    raw: bytes
    protected: bytes
    kid: str
    payload: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Mac0:
    """A COSE_Mac0 message that passed :func:`parse_mac0`."""

    raw: bytes
    protected: bytes
    kid: str
    payload: bytes
    tag: bytes


# --- structures to be signed / MACed ------------------------------------------------


# bstr heads for lengths 0..255 (the structures below are built per record).
_BSTR_HEADS = [cbor.head(2, n) for n in range(256)]


def _bstr(data: bytes) -> bytes:
    n = len(data)
    return _BSTR_HEADS[n] if n < 256 else cbor.head(2, n)


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """``["Signature1", protected, external_aad, payload]`` (RFC 9052 §4.4).

    The profile has no external data; ``external_aad`` exists for the
    published COSE examples that use it.
    """
    return b"".join(
        (
            _SIG1_CONTEXT,
            _bstr(protected),
            protected,
            _bstr(external_aad),
            external_aad,
            _bstr(payload),
            payload,
        )
    )


def mac_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """``["MAC0", protected, external_aad, payload]`` (RFC 9052 §6.3)."""
    return b"".join(
        (
            _MAC0_CONTEXT,
            _bstr(protected),
            protected,
            _bstr(external_aad),
            external_aad,
            _bstr(payload),
            payload,
        )
    )


def _protected_bytes(alg: int, kid: str) -> bytes:
    check_id(kid)
    raw_kid = kid.encode("ascii")
    return cbor.encode({1: alg, 4: raw_kid})


def _assemble(tag: int, protected: bytes, payload: bytes, last: bytes) -> bytes:
    if not isinstance(payload, bytes):
        raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
    msg = b"".join(
        (
            cbor.head(6, tag),
            b"\x84",
            cbor.head(2, len(protected)),
            protected,
            b"\xa0",
            cbor.head(2, len(payload)),
            payload,
            cbor.head(2, len(last)),
            last,
        )
    )
    if len(msg) > MAX_MESSAGE_SIZE:
        raise SizeError(
            "message would exceed the profile's size limit",
            expected=f"<= {MAX_MESSAGE_SIZE} bytes",
            found=len(msg),
        )
    return msg


# --- parsing ---------------------------------------------------------------------------


def parse_sign1(data: bytes) -> Sign1:
    """Check that ``data`` is a record envelope of the profile (§3); no crypto.

    Checks, in order: size ≤ 1024, tag 18, a 4-element array, the protected
    header is exactly ``{1: -7, 4: kid}`` in deterministic encoding with a
    valid kid (§1), the unprotected map is empty, the payload is a byte string
    (not nil), the signature is a 64-byte byte string, and nothing follows.
    """
    if type(data) is not bytes:
        if not isinstance(data, (bytearray, memoryview)):
            raise TypeError(f"parse_sign1() wants bytes, got {type(data).__name__}")
        data = bytes(data)
    msg = _parse_sign1_fast(data)
    if msg is not None:
        return msg
    return _parse_sign1_strict(data)


def _parse_sign1_fast(data: bytes) -> Sign1 | None:
    """Exact-match parse of a well-formed record, or None to take the strict path.

    Accepts only byte sequences :func:`_parse_sign1_strict` accepts, with the
    same result; it never raises for bad input.
    """
    split = _split_sign1(data)
    if split is None:
        return None
    kid, p0, pend, y0, yend = split
    return Sign1(data, data[p0:pend], kid, data[y0:yend], data[yend + 2 :])


def _split_sign1(data: bytes) -> tuple[str, int, int, int, int] | None:
    """Offsets of a well-formed record: (kid, protected start, protected end,
    payload start, payload end).

    ``data[2:pend]`` is the protected bstr and ``data[pend + 1:yend]`` the
    payload bstr, heads included, exactly as Sig_structure needs them. None
    when anything differs from the exact profile shape (the strict parser
    then says what); never raises.
    """
    n = len(data)
    if n > MAX_MESSAGE_SIZE or n < 80:
        return None
    b = data[2]
    if 0x46 <= b <= 0x57:
        pend = b - 0x3D  # 3 + (b - 0x40)
    elif b == 0x58:
        pend = 4 + data[3]
        if pend > 42:  # a protected header holds at most 6 + 32 bytes
            return None
    else:
        return None
    # Tag, array head, protected header and empty unprotected map: the same
    # bytes for every record of a signer, so their check is memoised on the
    # exact bytes (a pure function of them; the cache is bounded).
    prefix = data[: pend + 1]
    head = _PREFIX_CACHE.get(prefix)
    if head is None:
        head = _check_prefix(prefix)
        if head is None:
            return None
        if len(_PREFIX_CACHE) >= _PREFIX_CACHE_MAX:
            _PREFIX_CACHE.clear()
        _PREFIX_CACHE[prefix] = head
    kid, p0 = head
    q = pend + 1
    b = data[q]
    if 0x40 <= b <= 0x57:
        y0 = q + 1
        yend = y0 + b - 0x40
    elif b == 0x58 and data[q + 1] >= 24:
        y0 = q + 2
        yend = y0 + data[q + 1]
    elif b == 0x59:
        y0 = q + 3
        ylen = (data[q + 1] << 8) | data[q + 2]
        if ylen < 256:
            return None
        yend = y0 + ylen
    else:
        return None
    if yend + 2 + SIGNATURE_LEN != n or data[yend] != 0x58 or data[yend + 1] != 0x40:
        return None
    return kid, p0, pend, y0, yend


_PREFIX_CACHE: dict[bytes, tuple[str, int]] = {}
_PREFIX_CACHE_MAX = 4096


def _check_prefix(prefix: bytes) -> tuple[str, int] | None:
    """(kid, protected start) if ``prefix`` is ``D2 84 <protected bstr> A0`` of the profile."""
    if len(prefix) < 11 or prefix[0] != 0xD2 or prefix[1] != 0x84:
        return None
    b = prefix[2]
    if 0x46 <= b <= 0x57:
        p0 = 3
    elif b == 0x58 and prefix[3] >= 24:
        p0 = 4
    else:
        return None
    pend = len(prefix) - 1
    if p0 + (b - 0x40 if p0 == 3 else prefix[3]) != pend:
        return None
    if prefix[p0 : p0 + 4] != b"\xa2\x01\x26\x04" or prefix[pend] != 0xA0:
        return None
    kh = prefix[p0 + 4]
    if 0x41 <= kh <= 0x57:
        k0 = p0 + 5
        klen = kh - 0x40
    elif kh == 0x58 and prefix[p0 + 5] >= 24:
        k0 = p0 + 6
        klen = prefix[p0 + 5]
    else:
        return None
    kid = prefix[k0:pend]
    if k0 + klen != pend or _ID_BYTES.fullmatch(kid) is None:
        return None
    return kid.decode("ascii"), p0


def _parse_sign1_strict(data: bytes) -> Sign1:
    protected, kid, payload, signature = _parse_envelope(
        data, TAG_SIGN1, ALG_ES256, SIGNATURE_LEN, "signature"
    )
    return Sign1(data, protected, kid, payload, signature)


def parse_mac0(data: bytes) -> Mac0:
    """Check that ``data`` is an ack/command envelope of the profile (§5.2); no crypto."""
    if type(data) is not bytes:
        if not isinstance(data, (bytearray, memoryview)):
            raise TypeError(f"parse_mac0() wants bytes, got {type(data).__name__}")
        data = bytes(data)
    protected, kid, payload, tag = _parse_envelope(
        data, TAG_MAC0, ALG_HMAC_256_256, MAC_TAG_LEN, "MAC tag"
    )
    return Mac0(data, protected, kid, payload, tag)


_MESSAGE_NAMES = {TAG_SIGN1: "COSE_Sign1", TAG_MAC0: "COSE_Mac0"}
_ALG_NAMES = {ALG_ES256: "ES256 (-7)", ALG_HMAC_256_256: "HMAC 256/256 (5)"}


def _tag_found(data: bytes) -> str:
    """Describe what a message starts with instead of the wanted tag."""
    ib = data[0]
    if ib >> 5 != 6:
        names = ("uint", "negative int", "bstr", "tstr", "array", "map", "tag", "simple/float")
        return f"untagged {names[ib >> 5]} (0x{ib:02x})"
    ai = ib & 0x1F
    if ai < 24:
        return f"tag {ai}"
    width = {24: 1, 25: 2, 26: 4, 27: 8}.get(ai)
    if width is None or len(data) < 1 + width:
        return f"0x{ib:02x}"
    return f"tag {int.from_bytes(data[1 : 1 + width], 'big')}"


def _parse_envelope(
    data: bytes, tag: int, alg: int, last_len: int, last_name: str
) -> tuple[bytes, str, bytes, bytes]:
    """Strictly parse ``tag([protected, {}, payload, last])``; raise what is wrong.

    Returns (protected bytes, kid, payload bytes, last element bytes).
    """
    name = _MESSAGE_NAMES[tag]
    n = len(data)
    if n > MAX_MESSAGE_SIZE:
        raise SizeError(
            f"{name} too large", expected=f"<= {MAX_MESSAGE_SIZE} bytes", found=f"{n} bytes"
        )
    if n == 0:
        raise TruncatedError(f"empty {name}", expected=f"tag {tag}", found="0 bytes")
    want_tag = cbor.head(6, tag)
    if not data.startswith(want_tag):
        raise EnvelopeError(
            f"not a tagged {name}",
            expected=f"tag {tag} (0x{want_tag.hex()})",
            found=_tag_found(data),
        )
    pos = len(want_tag)
    if pos >= n:
        raise TruncatedError(f"{name} ends after its tag", expected="array(4)", found=f"{n} bytes")
    if data[pos] != 0x84:
        value, _ = cbor.decode_at(data, pos, max_depth=3)
        found = f"array({len(value)})" if isinstance(value, list) else type(value).__name__
        raise EnvelopeError(f"{name} must be a 4-element array", expected="array(4)", found=found)
    pos += 1

    # protected
    _expect_major(data, pos, 2, f"{name} protected header", "bstr")
    protected, pos = cbor.decode_at(data, pos, max_depth=0)
    assert isinstance(protected, bytes)
    kid = _check_protected(protected, alg, name)

    # unprotected
    _expect_major(data, pos, 5, f"{name} unprotected header", "map")
    unprotected, pos = cbor.decode_at(data, pos, max_depth=1)
    assert isinstance(unprotected, dict)
    if unprotected:
        raise HeaderError(
            f"{name} unprotected header must be empty",
            expected="{}",
            found=f"labels {sorted(unprotected)}",
        )

    # payload
    if pos < n and data[pos] == 0xF6:
        raise DetachedPayloadError(
            f"{name} payload is nil (detached)", expected="bstr payload", found="nil"
        )
    _expect_major(data, pos, 2, f"{name} payload", "bstr")
    payload, pos = cbor.decode_at(data, pos, max_depth=0)
    assert isinstance(payload, bytes)

    # signature / tag
    _expect_major(data, pos, 2, f"{name} {last_name}", "bstr")
    last, pos = cbor.decode_at(data, pos, max_depth=0)
    assert isinstance(last, bytes)
    if len(last) != last_len:
        raise EnvelopeError(
            f"{name} {last_name} has the wrong length",
            expected=f"{last_len} bytes",
            found=f"{len(last)} bytes",
        )
    if pos != n:
        raise TrailingBytesError(
            f"bytes after the {name}", expected=f"{pos} bytes", found=f"{n} bytes"
        )
    return protected, kid, payload, last


def _expect_major(data: bytes, pos: int, major: int, what: str, want: str) -> None:
    if pos >= len(data):
        raise TruncatedError(f"{what} missing", expected=want, found="end of input")
    ib = data[pos]
    if ib >> 5 != major:
        value, _ = cbor.decode_at(data, pos, max_depth=cbor.MAX_DEPTH_LIMIT)
        raise EnvelopeError(f"{what} has the wrong type", expected=want, found=_kind(value))


def _kind(value: object) -> str:
    if isinstance(value, cbor.Tag):
        return f"tag {value.tag}"
    return {int: "int", bytes: "bstr", str: "tstr", list: "array", dict: "map"}.get(
        type(value), type(value).__name__
    )


def _check_protected(protected: bytes, alg: int, name: str) -> str:
    """Check the protected header bytes decode to exactly ``{1: alg, 4: kid}``."""
    if not protected:
        raise HeaderError(
            f"{name} protected header is empty",
            expected=f"{{1: {alg}, 4: kid}}",
            found="h'' (no protected parameters)",
        )
    # Depth 4 so that any plausible header (crit arrays, x5chain...) decodes
    # and is refused below as a parameter outside the profile.
    header = cbor.decode(protected, max_size=MAX_MESSAGE_SIZE, max_depth=4)
    if not isinstance(header, dict):
        raise HeaderError(
            f"{name} protected header is not a map", expected="map", found=_kind(header)
        )
    if 1 not in header:
        raise HeaderError(
            f"{name} protected header has no alg",
            expected=f"alg {_ALG_NAMES[alg]} in the protected header",
            found=f"labels {sorted(header)}",
        )
    if header[1] != alg or type(header[1]) is not int:
        raise AlgorithmError(f"{name}: wrong algorithm", expected=_ALG_NAMES[alg], found=header[1])
    extra = sorted(set(header) - {1, 4})
    if extra:
        raise HeaderError(
            f"{name} protected header has parameters outside the profile",
            expected="only alg (1) and kid (4)",
            found=f"labels {extra}",
        )
    if 4 not in header:
        raise HeaderError(f"{name} protected header has no kid", expected="kid (4)", found="no kid")
    raw_kid = header[4]
    if not isinstance(raw_kid, bytes):
        raise HeaderError(f"{name} kid must be a bstr", expected="bstr", found=_kind(raw_kid))
    if _ID_BYTES.fullmatch(raw_kid) is None:
        raise KidError(
            f"{name} kid is not a valid id (§1)",
            expected="1-32 bytes of [a-z0-9._-], starting with a letter or digit",
            found=raw_kid,
        )
    return raw_kid.decode("ascii")


# --- ES256 -----------------------------------------------------------------------------


def _check_scalars(signature: bytes, *, low_s_only: bool) -> None:
    """Shape of r ‖ s before any crypto: 1 ≤ r, s < n, and s ≤ n/2 if asked."""
    if len(signature) != SIGNATURE_LEN:
        raise SignatureError(
            "ES256 signature has the wrong length",
            expected=f"{SIGNATURE_LEN} bytes",
            found=f"{len(signature)} bytes",
        )
    rb = signature[:32]
    sb = signature[32:]
    # Equal-length big-endian byte strings compare like the integers they encode.
    if rb == _ZERO32 or rb >= _N_BYTES:
        raise SignatureError(
            "ES256 signature r out of range", expected="1 <= r < n", found=rb.hex()
        )
    if sb == _ZERO32 or sb >= _N_BYTES:
        raise SignatureError(
            "ES256 signature s out of range", expected="1 <= s < n", found=sb.hex()
        )
    if low_s_only and sb > _HALF_N_BYTES:
        raise HighSError(
            "ES256 signature has a high s (the profile demands low-S)",
            expected="s <= n/2",
            found=sb.hex(),
        )


_DER_HEAD_R32 = b"\x30\x44\x02\x20"  # SEQUENCE(68), INTEGER(32)
_DER_HEAD_R33 = b"\x30\x45\x02\x21\x00"  # SEQUENCE(69), INTEGER(33) with a 00 pad
_DER_HEAD_S32 = b"\x02\x20"


def _der(signature: bytes) -> bytes:
    """DER ``Ecdsa-Sig-Value`` (X9.62) of r ‖ s, r and s already checked to be in 1..n-1.

    The same bytes as pyca's ``encode_dss_signature(r, s)`` (a test checks
    it on edge cases and random values), built from the bytes without going
    through integers. Common case: neither r nor s starts with a zero byte
    and s < 2^255, so only r's top bit decides the layout.
    """
    if signature[0] and signature[32] and signature[32] < 0x80:
        if signature[0] < 0x80:
            return b"".join((_DER_HEAD_R32, signature[:32], _DER_HEAD_S32, signature[32:]))
        return b"".join((_DER_HEAD_R33, signature[:32], _DER_HEAD_S32, signature[32:]))
    r = signature[:32].lstrip(b"\x00")
    s = signature[32:].lstrip(b"\x00")
    if r[0] & 0x80:
        r = b"\x00" + r
    if s[0] & 0x80:
        s = b"\x00" + s
    return b"".join((bytes((0x30, len(r) + len(s) + 4, 2, len(r))), r, bytes((2, len(s))), s))


def _verify_split(
    data: bytes, kid: str, pend: int, yend: int, public_key: ec.EllipticCurvePublicKey
) -> None:
    """The signature check of :func:`verify_sign1` on a record split by :func:`_split_sign1`.

    Sig_structure is built from the received protected and payload bstrs
    (heads included: the split guarantees shortest heads, so these are the
    bytes RFC 9052 §4.4 prescribes). Shape of r and s first; any deviation
    goes through :func:`_check_scalars` for the precise error. The same
    checks as :func:`verify_sign1`, inlined: this is the gateway's hot path.
    """
    signature = data[yend + 2 :]
    sb = signature[32:]
    # signature < N_BYTES  <=>  r < n;  signature >= R_MIN  <=>  r >= 1.
    if not _R_MIN <= signature < _N_BYTES or sb == _ZERO32 or sb > _HALF_N_BYTES:
        _check_scalars(signature, low_s_only=True)  # raises
    try:
        curve = public_key.curve.name  # cheaper than isinstance() on pyca's ABC
    except AttributeError:
        curve = None
    if curve != "secp256r1":
        raise TypeError(f"ES256 needs a P-256 public key, got {type(public_key).__name__}")
    # s <= n/2 < 2^255, so s never needs a DER pad byte; see _der() for the rest.
    if signature[0] and signature[32]:
        der = b"".join(
            (
                _DER_HEAD_R32 if signature[0] < 0x80 else _DER_HEAD_R33,
                signature[:32],
                _DER_HEAD_S32,
                sb,
            )
        )
    else:
        der = _der(signature)
    try:
        public_key.verify(
            der, b"".join((_SIG1_CONTEXT, data[2:pend], b"\x40", data[pend + 1 : yend])), _ES256
        )
    except InvalidSignature:
        raise SignatureError(
            "ES256 signature does not verify",
            expected=f"a signature by the registered key of {kid}",
            found="signature mismatch",
        ) from None


def verify_sign1(msg: Sign1 | bytes, public_key: ec.EllipticCurvePublicKey) -> Sign1:
    """Verify a record's envelope and ES256 signature (§3); return the parsed message.

    Shape first (:func:`parse_sign1` when given bytes), then the scalars:
    1 ≤ r < n, 1 ≤ s ≤ n/2 (:class:`~protocol.errors.HighSError` for a high s),
    then ECDSA P-256/SHA-256 over ``Sig_structure`` of the received bytes.
    """
    if not isinstance(msg, Sign1):
        msg = parse_sign1(msg)
    signature = msg.signature
    sb = signature[32:]
    # As in _verify_split: bytes comparisons for the common case, the precise
    # error from _check_scalars otherwise.
    if (
        len(signature) != SIGNATURE_LEN
        or not _R_MIN <= signature < _N_BYTES
        or sb == _ZERO32
        or sb > _HALF_N_BYTES
    ):
        _check_scalars(signature, low_s_only=True)  # raises
    protected = msg.protected
    payload = msg.payload
    tbs = b"".join((_SIG1_CONTEXT, _bstr(protected), protected, b"\x40", _bstr(payload), payload))
    _ecdsa_verify(public_key, signature, tbs, msg.kid)
    return msg


def verify_sign1_raw(
    protected: bytes,
    payload: bytes,
    signature: bytes,
    public_key: ec.EllipticCurvePublicKey,
    *,
    external_aad: bytes = b"",
) -> None:
    """Check only the ES256 signature math of RFC 9052 §4.4, not the profile.

    No header, tag, size or low-S checks: this is the building block for
    checking COSE messages outside the profile (the published cose-wg
    examples). Records are verified with :func:`verify_sign1`.
    """
    _check_scalars(signature, low_s_only=False)
    tbs = sig_structure(_body_protected(protected), payload, external_aad)
    _ecdsa_verify(public_key, signature, tbs, None)


def _body_protected(protected: bytes) -> bytes:
    """RFC 9052 §4.4/§6.3: with no protected parameters, the structure carries h''.

    A message may wrap the empty map (h'A0'); cose-wg's sign-pass-01 and
    mac-pass-01 are signed that way. (Never the case in the profile.)
    """
    return b"" if protected == b"\xa0" else protected


def _ecdsa_verify(
    public_key: ec.EllipticCurvePublicKey, signature: bytes, tbs: bytes, kid: str | None
) -> None:
    """ECDSA P-256/SHA-256 check of r ‖ s (already range-checked) over ``tbs``."""
    try:
        curve = public_key.curve.name  # cheaper than isinstance() on pyca's ABC
    except AttributeError:
        curve = None
    if curve != "secp256r1":
        raise TypeError(f"ES256 needs a P-256 public key, got {type(public_key).__name__}")
    try:
        public_key.verify(_der(signature), tbs, _ES256)
    except InvalidSignature:
        raise SignatureError(
            "ES256 signature does not verify",
            expected="a signature by the registered key" + (f" of {kid}" if kid else ""),
            found="signature mismatch",
        ) from None


def _private_p256(private_key: ec.EllipticCurvePrivateKey) -> None:
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP256R1
    ):
        raise TypeError("ES256 needs a P-256 private key")


def sign1(payload: bytes, kid: str, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Sign ``payload`` as a profile COSE_Sign1 with pyca's (random-nonce) ECDSA.

    For gateway-side signing. s is normalised to low-S. Devices use RFC 6979
    nonces; :func:`sign1_deterministic` reproduces those signatures.
    """
    _private_p256(private_key)
    protected = _protected_bytes(ALG_ES256, kid)
    der = private_key.sign(sig_structure(protected, payload), _ES256)
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(32, "big") + rfc6979.low_s(s).to_bytes(32, "big")
    return _assemble(TAG_SIGN1, protected, payload, signature)


def sign1_deterministic(payload: bytes, kid: str, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Sign like a device: RFC 6979 nonce (SHA-256), s normalised to low-S.

    The same key and payload always give the same bytes, so the host can
    reproduce a device's record exactly. Pure Python, not constant-time: for
    tests, the simulator and tools, not for keys an attacker can time.
    """
    _private_p256(private_key)
    protected = _protected_bytes(ALG_ES256, kid)
    x = private_key.private_numbers().private_value
    r, s = rfc6979.sign(x, sig_structure(protected, payload))
    signature = r.to_bytes(32, "big") + rfc6979.low_s(s).to_bytes(32, "big")
    return _assemble(TAG_SIGN1, protected, payload, signature)


# --- HMAC 256/256 (acks and commands, §5.2-§5.3) ------------------------------------------


def _check_mac_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != 32:
        raise ValueError("the ack key K_dev must be 32 bytes")


def mac0(payload: bytes, kid: str, key: bytes) -> bytes:
    """A profile COSE_Mac0: tag 17, ``{1: 5, 4: kid}``, HMAC-SHA-256 under ``key``."""
    _check_mac_key(key)
    protected = _protected_bytes(ALG_HMAC_256_256, kid)
    tag = hmac.digest(key, mac_structure(protected, payload), hashlib.sha256)
    return _assemble(TAG_MAC0, protected, payload, tag)


def verify_mac0(data: bytes, key: bytes) -> Mac0:
    """Parse an ack/command (§5.2) and check its HMAC in constant time; return it."""
    _check_mac_key(key)
    msg = parse_mac0(data)
    verify_mac0_raw(msg.protected, msg.payload, msg.tag, key)
    return msg


def verify_mac0_raw(
    protected: bytes, payload: bytes, tag: bytes, key: bytes, *, external_aad: bytes = b""
) -> None:
    """Check only the HMAC-SHA-256 of RFC 9052 §6.3, not the profile (any key length)."""
    tbm = mac_structure(_body_protected(protected), payload, external_aad)
    want = hmac.digest(key, tbm, hashlib.sha256)
    if not hmac.compare_digest(want, tag):
        raise MacError("COSE_Mac0 tag does not verify", expected="a tag by the shared key")
