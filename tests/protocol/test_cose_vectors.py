"""Published and reproducible COSE vectors, one case per data file.

- testdata/cose/cose-wg/: fields transcribed from cose-wg/Examples
  (``sign1-tests/``, ``ecdsa-examples/ecdsa-sig-01``, ``mac0-tests/``). Their
  headers are outside our profile (kid unprotected, extra parameters, other
  tags), so the published CBOR is checked through the lower-level
  ``verify_sign1_raw`` / ``verify_mac0_raw``, and the profile parsers must
  refuse each message with the error class and reason recorded in the file.
- testdata/cose/coldtrace/: a typical record signed with the RFC 6979 key
  (byte-for-byte reproducible) and mutated negatives, each with its error.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import ecdsa
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from protocol import cose, errors
from protocol.errors import MacError, SignatureError, VerificationError
from protocol.keys import p256_private_from_scalar, p256_public_from_sec1
from protocol.record import Reading, decode_payload, make_record, open_record, verify_record

DATA = Path(__file__).parent / "testdata" / "cose"
COSE_WG = sorted((DATA / "cose-wg").glob("*.json"))
SIGN1_WG = [p for p in COSE_WG if json.loads(p.read_text())["type"] == "COSE_Sign1"]
SIGN1_WG_VALID = [
    p for p in SIGN1_WG if json.loads(p.read_text())["expect"]["signature"] == "valid"
]
MAC0_WG = [p for p in COSE_WG if json.loads(p.read_text())["type"] == "COSE_Mac0"]
OURS = DATA / "coldtrace"
OUR_NEGATIVES = sorted(
    p for p in OURS.glob("*.json") if json.loads(p.read_text())["expect"] != "valid"
)


def b64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def wg_key(case: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    k = case["key"]
    return p256_public_from_sec1(b"\x04" + b64url(k["x"]) + b64url(k["y"]))


def components(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(protected, payload, signature/tag) of a COSE message, read with the strict decoder
    (tagged with any tag, or untagged), without any profile check."""
    from protocol import cbor

    pos = 0
    if raw[0] >> 5 == 6:  # skip one tag head
        pos = {0xD8: 2, 0xD9: 3}.get(raw[0], 1)
    items, end = cbor.decode_at(raw, pos, max_depth=2)
    assert end == len(raw)
    assert isinstance(items, list)
    protected, _, payload, last = items
    assert isinstance(protected, bytes) and isinstance(payload, bytes) and isinstance(last, bytes)
    return protected, payload, last


def test_vector_files_are_present() -> None:
    assert len(SIGN1_WG) == 10
    assert len(MAC0_WG) == 10
    assert len(OUR_NEGATIVES) >= 12


@pytest.mark.parametrize("path", SIGN1_WG, ids=lambda p: p.stem)
def test_cose_wg_sign1_to_be_signed_matches_published(path: Path) -> None:
    case = json.loads(path.read_text())
    protected, payload, _ = components(bytes.fromhex(case["cbor_hex"]))
    aad = bytes.fromhex(case["external_aad_hex"])
    body_protected = b"" if protected == b"\xa0" else protected  # RFC 9052 §4.4
    tbs = cose.sig_structure(body_protected, payload, aad)
    if case["expect"]["signature"] == "valid":
        assert tbs.hex().upper() == case["to_be_signed_hex"]
        assert payload == case["plaintext"].encode()


@pytest.mark.parametrize("path", SIGN1_WG, ids=lambda p: p.stem)
def test_cose_wg_sign1_signature_through_raw_check(path: Path) -> None:
    case = json.loads(path.read_text())
    protected, payload, signature = components(bytes.fromhex(case["cbor_hex"]))
    aad = bytes.fromhex(case["external_aad_hex"])
    if case["expect"]["signature"] == "valid":
        cose.verify_sign1_raw(protected, payload, signature, wg_key(case), external_aad=aad)
        if aad:  # the external data is covered by the signature
            with pytest.raises(SignatureError):
                cose.verify_sign1_raw(protected, payload, signature, wg_key(case))
    else:
        with pytest.raises(SignatureError):
            cose.verify_sign1_raw(protected, payload, signature, wg_key(case), external_aad=aad)


@pytest.mark.parametrize("path", SIGN1_WG, ids=lambda p: p.stem)
def test_cose_wg_sign1_is_refused_by_the_profile(path: Path) -> None:
    case = json.loads(path.read_text())
    raw = bytes.fromhex(case["cbor_hex"])
    want = getattr(errors, case["expect"]["profile_error"])
    with pytest.raises(want):
        cose.parse_sign1(raw)
    with pytest.raises(want):
        cose.verify_sign1(raw, wg_key(case))
    with pytest.raises(want):
        open_record(raw)


@pytest.mark.parametrize("path", SIGN1_WG_VALID, ids=lambda p: p.stem)
def test_cose_wg_sign1_valid_signature_verifies_in_ecdsa_package(path: Path) -> None:
    case = json.loads(path.read_text())
    protected, payload, signature = components(bytes.fromhex(case["cbor_hex"]))
    vk = ecdsa.VerifyingKey.from_string(
        b"\x04" + b64url(case["key"]["x"]) + b64url(case["key"]["y"]), curve=ecdsa.NIST256p
    )
    body_protected = b"" if protected == b"\xa0" else protected  # RFC 9052 §4.4
    tbs = cose.sig_structure(body_protected, payload, bytes.fromhex(case["external_aad_hex"]))
    assert vk.verify(signature, tbs, hashfunc=hashlib.sha256)


@pytest.mark.parametrize("path", MAC0_WG, ids=lambda p: p.stem)
def test_cose_wg_mac0_tag_through_raw_check(path: Path) -> None:
    case = json.loads(path.read_text())
    protected, payload, tag = components(bytes.fromhex(case["cbor_hex"]))
    key = b64url(case["key"]["k"])
    aad = bytes.fromhex(case["external_aad_hex"])
    if case["expect"]["tag"] == "valid":
        body_protected = b"" if protected == b"\xa0" else protected  # RFC 9052 §6.3
        tbm = cose.mac_structure(body_protected, payload, aad)
        assert tbm.hex().upper() == case["to_be_maced_hex"]
        cose.verify_mac0_raw(protected, payload, tag, key, external_aad=aad)
    else:
        with pytest.raises(MacError):
            cose.verify_mac0_raw(protected, payload, tag, key, external_aad=aad)


@pytest.mark.parametrize("path", MAC0_WG, ids=lambda p: p.stem)
def test_cose_wg_mac0_is_refused_by_the_profile(path: Path) -> None:
    case = json.loads(path.read_text())
    raw = bytes.fromhex(case["cbor_hex"])
    want = getattr(errors, case["expect"]["profile_error"])
    with pytest.raises(want):
        cose.parse_mac0(raw)
    with pytest.raises(want):
        cose.verify_mac0(raw, b64url(case["key"]["k"]))


# --- our reproducible vectors --------------------------------------------------------------


def our_case(name: str) -> dict[str, Any]:
    case: dict[str, Any] = json.loads((OURS / name).read_text())
    return case


def test_reading_vector_is_reproduced_byte_for_byte() -> None:
    case = our_case("reading-01.json")
    key = p256_private_from_scalar(int(case["key"]["x"], 16))
    fields = dict(case["payload_fields"], prev=bytes.fromhex(case["payload_fields"]["prev"]))
    raw = make_record(Reading(**fields), case["kid"], key, deterministic=True)
    assert raw.hex() == case["record_hex"]
    assert len(raw) == case["record_bytes"]
    msg = cose.parse_sign1(raw)
    assert msg.payload.hex() == case["payload_hex"]
    assert cose.sig_structure(msg.protected, msg.payload).hex() == case["sig_structure_hex"]
    assert decode_payload(msg.payload) == Reading(**fields)


def test_reading_vector_verifies() -> None:
    case = our_case("reading-01.json")
    pub = p256_public_from_sec1(bytes.fromhex(case["key"]["public_sec1_hex"]))
    rec = verify_record(bytes.fromhex(case["record_hex"]), pub)
    assert rec.signer == case["kid"]
    # and independently, in python-ecdsa
    vk = ecdsa.VerifyingKey.from_string(
        bytes.fromhex(case["key"]["public_sec1_hex"]), curve=ecdsa.NIST256p
    )
    msg = cose.parse_sign1(bytes.fromhex(case["record_hex"]))
    assert vk.verify(msg.signature, bytes.fromhex(case["sig_structure_hex"]), hashlib.sha256)


@pytest.mark.parametrize("path", OUR_NEGATIVES, ids=lambda p: p.stem)
def test_mutated_record_is_refused_with_its_error(path: Path) -> None:
    case = json.loads(path.read_text())
    raw = bytes.fromhex(case["record_hex"])
    pub = p256_public_from_sec1(bytes.fromhex(case["key"]["public_sec1_hex"]))
    want = getattr(errors, case["error"])
    with pytest.raises(want) as info:
        verify_record(raw, pub)
    assert type(info.value) is want
    assert isinstance(info.value, VerificationError)
    if not issubclass(want, SignatureError):
        with pytest.raises(want):
            open_record(raw)  # shape errors show without any crypto


def test_high_s_vector_is_otherwise_a_valid_ecdsa_signature() -> None:
    case = our_case("reading-01-high-s.json")
    raw = bytes.fromhex(case["record_hex"])
    protected, payload, signature = components(raw)
    pub = p256_public_from_sec1(bytes.fromhex(case["key"]["public_sec1_hex"]))
    cose.verify_sign1_raw(protected, payload, signature, pub)  # the math holds
    open_record(raw)  # the envelope and payload are fine
    with pytest.raises(errors.HighSError):
        verify_record(raw, pub)  # only the low-S rule refuses it
