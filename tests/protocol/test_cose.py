"""The COSE profile (§3, §5.2): protocol.cose parsing, signing, verification, MAC."""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any

import ecdsa
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import cbor, cose, rfc6979
from protocol.cbor import Tag
from protocol.cose import (
    Mac0,
    Sign1,
    mac0,
    parse_mac0,
    parse_sign1,
    sig_structure,
    sign1,
    sign1_deterministic,
    verify_mac0,
    verify_sign1,
)
from protocol.errors import (
    AlgorithmError,
    CBORError,
    CoseError,
    DetachedPayloadError,
    EnvelopeError,
    HeaderError,
    HighSError,
    IndefiniteLengthError,
    KidError,
    MacError,
    NonCanonicalError,
    SignatureError,
    SizeError,
    TrailingBytesError,
    TruncatedError,
    UnsortedKeysError,
    VerificationError,
)
from protocol.keys import generate_p256, p256_private_from_scalar

KEY = generate_p256()
PUB = KEY.public_key()
KID = "tl-7f3a21"
PAYLOAD = cbor.encode({1: 1, 2: 0, 3: 0, 4: 0, 5: 0, 6: bytes(16), 10: 215})
RECORD = sign1(PAYLOAD, KID, KEY)
MSG = parse_sign1(RECORD)
SIG = MSG.signature
PROTECTED = MSG.protected


def envelope(
    protected: Any = PROTECTED,
    unprotected: Any = None,
    payload: Any = PAYLOAD,
    signature: Any = SIG,
    tag: int | None = 18,
) -> bytes:
    """Build a message from parts with the generic encoder (so it can break the profile)."""
    body = [protected, {} if unprotected is None else unprotected, payload, signature]
    return cbor.encode(body if tag is None else Tag(tag, body))


def resign(raw_protected: bytes, payload: bytes = PAYLOAD) -> bytes:
    """A valid ES256 signature over any protected bytes (to show the header is what fails)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    der = KEY.sign(sig_structure(raw_protected, payload), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + rfc6979.low_s(s).to_bytes(32, "big")


# --- the profile's exact shape -------------------------------------------------------------


def test_record_has_the_exact_profile_bytes() -> None:
    kid = KID.encode()
    protected = bytes([0xA2, 0x01, 0x26, 0x04, 0x40 + len(kid)]) + kid
    assert protected == PROTECTED
    assert RECORD.startswith(b"\xd2\x84" + bytes([0x40 + len(protected)]) + protected + b"\xa0")
    assert RECORD.endswith(b"\x58\x40" + SIG)
    assert Sign1(RECORD, protected, KID, PAYLOAD, SIG) == MSG


def test_parse_fast_and_strict_paths_agree_on_a_valid_record() -> None:
    assert cose._parse_sign1_fast(RECORD) == cose._parse_sign1_strict(RECORD) == MSG


@pytest.mark.parametrize("kid", ["a", "0", "x" * 23, "y" * 24, "z" * 32, "a.b_c-d"])
def test_kid_lengths_1_to_32_round_trip(kid: str) -> None:
    raw = sign1(PAYLOAD, kid, KEY)
    assert parse_sign1(raw).kid == kid
    assert cose._parse_sign1_strict(raw).kid == kid
    verify_sign1(raw, PUB)


@pytest.mark.parametrize("size", [0, 1, 23, 24, 255, 256, 800])
def test_payload_lengths_round_trip(size: int) -> None:
    payload = os.urandom(size)
    raw = sign1(payload, KID, KEY)
    assert parse_sign1(raw).payload == payload
    assert cose._parse_sign1_strict(raw).payload == payload
    verify_sign1(raw, PUB)


@pytest.mark.parametrize("size", [24, 32])
def test_long_kid_protected_header_uses_the_one_byte_length_head(size: int) -> None:
    """Kids of 24-32 bytes: protected = A2 01 26 04 58 nn <kid>, wrapped in 58 mm (§3)."""
    kid = ("k" * size).encode()
    raw = sign1(PAYLOAD, kid.decode(), KEY)
    protected = b"\xa2\x01\x26\x04\x58" + bytes([size]) + kid
    assert raw.startswith(b"\xd2\x84\x58" + bytes([len(protected)]) + protected + b"\xa0")
    assert cose._parse_sign1_fast(raw) == cose._parse_sign1_strict(raw)
    assert parse_sign1(raw).protected == protected
    verify_sign1(raw, PUB)


@pytest.mark.parametrize("size", [1, 23, 24, 32])
def test_parse_rejects_a_non_shortest_kid_or_protected_head(size: int) -> None:
    kid = ("k" * size).encode()
    # kid head one size too long: 58 nn for a short kid, 59 00 nn for a long one
    head = b"\x58" + bytes([size]) if size < 24 else b"\x59\x00" + bytes([size])
    protected = b"\xa2\x01\x26\x04" + head + kid
    raw = envelope(protected, signature=resign(protected))
    assert cose._parse_sign1_fast(raw) is None
    with pytest.raises(NonCanonicalError):
        parse_sign1(raw)
    # the protected bstr itself with a longer head than needed
    good = cbor.encode({1: -7, 4: kid})
    wrapped = (b"\x58" if len(good) < 24 else b"\x59\x00") + bytes([len(good)]) + good
    raw = b"\xd2\x84" + wrapped + b"\xa0" + cbor.encode(PAYLOAD) + b"\x58\x40" + resign(good)
    assert cose._parse_sign1_fast(raw) is None
    with pytest.raises(NonCanonicalError):
        parse_sign1(raw)


# --- refusals, one rule each ---------------------------------------------------------------


def test_parse_rejects_wrong_tag() -> None:
    with pytest.raises(EnvelopeError, match="tagged"):
        parse_sign1(envelope(tag=17))
    with pytest.raises(EnvelopeError):
        parse_sign1(envelope(tag=98))
    with pytest.raises(EnvelopeError) as info:
        parse_sign1(envelope(tag=None))
    assert "untagged" in str(info.value.found)


@pytest.mark.parametrize("n", [3, 5])
def test_parse_rejects_array_of_wrong_size(n: int) -> None:
    items = [PROTECTED, {}, PAYLOAD, SIG, b""][:n]
    with pytest.raises(EnvelopeError, match="4-element"):
        parse_sign1(cbor.encode(Tag(18, items)))


def test_parse_rejects_wrong_alg() -> None:
    for alg in (-35, -8, 1, 5, "ES256"):
        protected = cbor.encode({1: alg, 4: KID.encode()})
        with pytest.raises(AlgorithmError) as info:
            parse_sign1(envelope(protected, signature=resign(protected)))
        assert info.value.found == alg
        assert info.value.expected == "ES256 (-7)"


def test_parse_rejects_extra_header() -> None:
    for extra in ({3: 0}, {2: [1]}, {5: b"iv"}, {-1: 1}, {33: b"x5chain"}):
        protected = cbor.encode({1: -7, 4: KID.encode(), **extra})
        with pytest.raises(HeaderError):
            parse_sign1(envelope(protected, signature=resign(protected)))


def test_parse_rejects_header_in_unprotected_map() -> None:
    with pytest.raises(HeaderError, match="unprotected"):
        parse_sign1(envelope(unprotected={4: KID.encode()}))
    with pytest.raises(HeaderError):
        parse_sign1(envelope(unprotected={33: b"cert"}))


def test_parse_rejects_missing_alg_or_kid() -> None:
    for header in ({4: KID.encode()}, {1: -7}, {}):
        with pytest.raises(HeaderError):
            parse_sign1(envelope(cbor.encode(header)))
    with pytest.raises(HeaderError, match="empty"):
        parse_sign1(envelope(b""))


@pytest.mark.parametrize("kid", [b"", b"TL-1", b"-tl", b".tl", b"tl 1", b"x" * 33, b"t\xc3\xa9"])
def test_parse_rejects_kid_syntax(kid: bytes) -> None:
    protected = cbor.encode({1: -7, 4: kid})
    with pytest.raises(KidError):
        parse_sign1(envelope(protected, signature=resign(protected)))


def test_parse_rejects_kid_as_text() -> None:
    with pytest.raises(HeaderError):
        parse_sign1(envelope(cbor.encode({1: -7, 4: KID})))


def test_parse_rejects_protected_header_not_in_deterministic_form() -> None:
    unsorted = b"\xa2\x04" + cbor.encode(KID.encode()) + b"\x01\x26"
    with pytest.raises(UnsortedKeysError):
        parse_sign1(envelope(unsorted))
    long_kid_head = b"\xa2\x01\x26\x04\x58" + bytes([len(KID)]) + KID.encode()
    with pytest.raises(NonCanonicalError):
        parse_sign1(envelope(long_kid_head))


def test_parse_rejects_protected_header_as_a_map() -> None:
    with pytest.raises(EnvelopeError, match="protected"):
        parse_sign1(envelope({1: -7, 4: KID.encode()}))


def test_parse_rejects_detached_payload() -> None:
    raw = RECORD.replace(cbor.encode(PAYLOAD), b"\xf6")
    with pytest.raises(DetachedPayloadError):
        parse_sign1(raw)


def test_parse_rejects_payload_of_wrong_type() -> None:
    with pytest.raises(EnvelopeError, match="payload"):
        parse_sign1(envelope(payload="text"))
    with pytest.raises(EnvelopeError):
        parse_sign1(envelope(payload=[1]))


@pytest.mark.parametrize("size", [0, 32, 63, 65, 96])
def test_parse_rejects_signature_of_wrong_length(size: int) -> None:
    with pytest.raises(EnvelopeError, match="signature") as info:
        parse_sign1(envelope(signature=bytes(size)))
    assert info.value.expected == "64 bytes"


def test_parse_rejects_trailing_bytes() -> None:
    with pytest.raises(TrailingBytesError):
        parse_sign1(RECORD + b"\x00")


def test_parse_rejects_truncated_record() -> None:
    for cut in range(len(RECORD)):
        with pytest.raises((TruncatedError, EnvelopeError)):
            parse_sign1(RECORD[:cut])


def test_parse_rejects_oversize_record() -> None:
    overhead = len(sign1(bytes(300), KID, KEY)) - 300
    raw = sign1(bytes(1024 - overhead), KID, KEY)
    assert len(raw) == 1024
    parse_sign1(raw)
    raw = envelope(payload=bytes(1025 - overhead))
    with pytest.raises(SizeError):
        parse_sign1(raw)
    with pytest.raises(SizeError):
        sign1(bytes(1025 - overhead), KID, KEY)


def test_parse_rejects_indefinite_lengths() -> None:
    with pytest.raises(IndefiniteLengthError):
        parse_sign1(b"\xd2\x9f" + RECORD[2:] + b"\xff")
    with pytest.raises(IndefiniteLengthError):
        parse_sign1(RECORD.replace(cbor.encode(PAYLOAD), b"\x5f" + cbor.encode(PAYLOAD) + b"\xff"))


def test_parse_rejects_non_shortest_payload_length() -> None:
    raw = RECORD.replace(cbor.encode(PAYLOAD), b"\x59\x00" + bytes([len(PAYLOAD)]) + PAYLOAD)
    with pytest.raises(NonCanonicalError):
        parse_sign1(raw)


# --- signatures ---------------------------------------------------------------------------------


def test_verify_accepts_bytes_or_parsed_message() -> None:
    assert verify_sign1(RECORD, PUB) == MSG
    assert verify_sign1(MSG, PUB) == MSG


def test_verify_rejects_high_s() -> None:
    s = int.from_bytes(SIG[32:], "big")
    high = SIG[:32] + (rfc6979.N - s).to_bytes(32, "big")
    raw = envelope(signature=high)
    parse_sign1(raw)  # the shape is fine
    with pytest.raises(HighSError) as info:
        verify_sign1(raw, PUB)
    assert info.value.expected == "s <= n/2"
    assert info.value.code == "bad_signature"
    with pytest.raises(HighSError):
        cose._verify_split(raw, KID, len(PROTECTED) + 3, len(raw) - 66, PUB)
    cose.verify_sign1_raw(PROTECTED, PAYLOAD, high, PUB)  # and the math holds


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 1), (1, 0), (rfc6979.N, 1), (1, rfc6979.N), (2**256 - 1, 1), (1, 2**256 - 1)],
)
def test_verify_rejects_scalars_out_of_range(r: int, s: int) -> None:
    raw = envelope(signature=r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    with pytest.raises(SignatureError):
        verify_sign1(raw, PUB)
    with pytest.raises(SignatureError):
        cose._verify_split(raw, KID, len(PROTECTED) + 3, len(raw) - 66, PUB)


def test_verify_rejects_wrong_key_and_altered_payload() -> None:
    with pytest.raises(SignatureError):
        verify_sign1(RECORD, generate_p256().public_key())
    altered = envelope(payload=PAYLOAD[:-1] + b"\x01")
    with pytest.raises(SignatureError):
        verify_sign1(altered, PUB)


def test_verify_refuses_a_key_that_is_not_p256() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(TypeError):
        verify_sign1(RECORD, p384)
    with pytest.raises(TypeError):
        verify_sign1(RECORD, "not a key")  # type: ignore[arg-type]


def test_sign1_normalises_to_low_s() -> None:
    for i in range(64):
        sig = parse_sign1(sign1(b"%d" % i, KID, KEY)).signature
        assert int.from_bytes(sig[32:], "big") <= rfc6979.HALF_N


def test_sign1_refuses_bad_kid_and_wrong_key_type() -> None:
    with pytest.raises(KidError):
        sign1(PAYLOAD, "Bad Kid", KEY)
    with pytest.raises(TypeError):
        sign1(PAYLOAD, KID, ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(TypeError):
        sign1("text", KID, KEY)  # type: ignore[arg-type]


def test_sign1_deterministic_is_reproducible_and_matches_python_ecdsa() -> None:
    x = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
    key = p256_private_from_scalar(x)
    a = sign1_deterministic(PAYLOAD, KID, key)
    assert a == sign1_deterministic(PAYLOAD, KID, key)
    verify_sign1(a, key.public_key())
    msg = parse_sign1(a)
    sk = ecdsa.SigningKey.from_secret_exponent(x, curve=ecdsa.NIST256p)
    theirs = sk.sign_deterministic(sig_structure(msg.protected, msg.payload), hashlib.sha256)
    r, s = int.from_bytes(theirs[:32], "big"), int.from_bytes(theirs[32:], "big")
    assert msg.signature == r.to_bytes(32, "big") + rfc6979.low_s(s).to_bytes(32, "big")


def test_sig_structure_is_the_rfc9052_array() -> None:
    assert sig_structure(PROTECTED, PAYLOAD) == cbor.encode(["Signature1", PROTECTED, b"", PAYLOAD])
    assert sig_structure(b"p", b"x" * 300, b"aad") == cbor.encode(
        ["Signature1", b"p", b"aad", b"x" * 300]
    )


DER_EDGES = [
    (1, 1),
    (0x7F, 0x80),
    (2**255, 2**255 - 1),
    (2**248 - 1, 2**247),
    (rfc6979.N - 1, rfc6979.HALF_N),
    (0x80 << 240, 0xFF),
]


@pytest.mark.parametrize(("r", "s"), DER_EDGES)
def test_der_matches_pyca_encode_dss_signature(r: int, s: int) -> None:
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert cose._der(sig) == encode_dss_signature(r, s)


@given(st.integers(1, rfc6979.N - 1), st.integers(1, rfc6979.N - 1))
@settings(max_examples=500)
def test_der_matches_pyca_for_random_scalars(r: int, s: int) -> None:
    assert cose._der(r.to_bytes(32, "big") + s.to_bytes(32, "big")) == encode_dss_signature(r, s)


@given(st.data())
@settings(max_examples=400)
def test_parse_fast_path_accepts_only_what_the_strict_path_accepts(data: st.DataObject) -> None:
    raw = bytearray(RECORD)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    mutated = bytes(raw)
    fast = cose._parse_sign1_fast(mutated)
    try:
        strict = cose._parse_sign1_strict(mutated)
    except VerificationError:
        assert fast is None
        return
    assert fast is None or fast == strict


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_parse_fuzz_raises_only_protocol_errors(data: bytes) -> None:
    for parse in (parse_sign1, parse_mac0):
        with contextlib.suppress(CBORError, CoseError):
            parse(data)


# --- COSE_Mac0 (§5.2) -----------------------------------------------------------------------

ACK_KEY = bytes(range(32))
ACK_PAYLOAD = cbor.encode({1: 41, 2: 1_790_000_000, 3: bytes(16)})


def test_mac0_round_trips() -> None:
    raw = mac0(ACK_PAYLOAD, "gw-1", ACK_KEY)
    msg = verify_mac0(raw, ACK_KEY)
    assert msg == Mac0(raw, cbor.encode({1: 5, 4: b"gw-1"}), "gw-1", ACK_PAYLOAD, msg.tag)
    assert raw.startswith(b"\xd1\x84")
    assert len(msg.tag) == 32


def test_mac0_tag_is_hmac_sha256_over_mac_structure() -> None:
    import hmac

    raw = mac0(ACK_PAYLOAD, "gw-1", ACK_KEY)
    msg = parse_mac0(raw)
    structure = cbor.encode(["MAC0", msg.protected, b"", ACK_PAYLOAD])
    assert cose.mac_structure(msg.protected, ACK_PAYLOAD) == structure
    assert msg.tag == hmac.digest(ACK_KEY, structure, "sha256")


def test_verify_mac0_rejects_wrong_key_and_tampering() -> None:
    raw = mac0(ACK_PAYLOAD, "gw-1", ACK_KEY)
    with pytest.raises(MacError):
        verify_mac0(raw, bytes(32))
    tampered = raw.replace(ACK_PAYLOAD, cbor.encode({1: 42, 2: 1_790_000_000, 3: bytes(16)}))
    with pytest.raises(MacError):
        verify_mac0(tampered, ACK_KEY)
    flipped = bytearray(raw)
    flipped[-1] ^= 1
    with pytest.raises(MacError):
        verify_mac0(bytes(flipped), ACK_KEY)


def test_verify_mac0_rejects_off_profile_messages() -> None:
    protected = cbor.encode({1: 7, 4: b"gw-1"})  # HMAC 384/384
    body = [protected, {}, ACK_PAYLOAD, bytes(32)]
    with pytest.raises(AlgorithmError):
        verify_mac0(cbor.encode(Tag(17, body)), ACK_KEY)
    with pytest.raises(EnvelopeError):
        verify_mac0(cbor.encode(Tag(18, body)), ACK_KEY)
    good = cbor.encode({1: 5, 4: b"gw-1"})
    with pytest.raises(EnvelopeError, match="MAC tag"):
        verify_mac0(cbor.encode(Tag(17, [good, {}, ACK_PAYLOAD, bytes(16)])), ACK_KEY)
    with pytest.raises(AlgorithmError):  # a record is not an ack
        verify_mac0(cbor.encode(Tag(17, [PROTECTED, {}, PAYLOAD, bytes(32)])), ACK_KEY)


def test_mac0_refuses_keys_that_are_not_32_bytes() -> None:
    with pytest.raises(ValueError):
        mac0(ACK_PAYLOAD, "gw-1", bytes(16))
    with pytest.raises(ValueError):
        verify_mac0(mac0(ACK_PAYLOAD, "gw-1", ACK_KEY), bytes(31))


def test_signature_error_codes() -> None:
    with pytest.raises(SignatureError) as info:
        verify_sign1(RECORD, generate_p256().public_key())
    assert info.value.code == "bad_signature"
    with pytest.raises(HeaderError) as hinfo:
        parse_sign1(envelope(unprotected={1: -7}))
    assert hinfo.value.code == "malformed_record"
