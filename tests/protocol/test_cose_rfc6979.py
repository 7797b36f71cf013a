"""RFC 6979 deterministic ECDSA (protocol.rfc6979) against the RFC's own vectors.

Data: testdata/rfc6979/, one case per file, transcribed from RFC 6979
Appendix A.2.5 (P-256), with mutated negatives (``expect`` != "valid").
Every case is also checked against two independent implementations:
pyca/cryptography (verification) and the pure-Python ``ecdsa`` package
(its ``sign_deterministic``, compared before low-S normalisation).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import ecdsa
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from protocol import rfc6979

DATA = Path(__file__).parent / "testdata" / "rfc6979"
CASES = sorted(DATA.glob("*.json"))
VALID = [p for p in CASES if json.loads(p.read_text())["expect"] == "valid"]
INVALID = [p for p in CASES if json.loads(p.read_text())["expect"] != "valid"]
PYCA_HASHES = {
    "sha1": hashes.SHA1(),
    "sha224": hashes.SHA224(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


def load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text())
    for name in ("x", "Ux", "Uy", "k", "r", "s"):
        if name in case:
            case[name] = int(case[name], 16)
    return case


def pyca_verifies(case: dict[str, Any]) -> bool:
    try:
        pub = ec.EllipticCurvePublicNumbers(case["Ux"], case["Uy"], ec.SECP256R1()).public_key()
    except ValueError:
        return False
    try:
        pub.verify(
            encode_dss_signature(case["r"], case["s"]),
            case["message"].encode(),
            ec.ECDSA(PYCA_HASHES[case["hash"]]),
        )
    except InvalidSignature:
        return False
    return True


def test_vector_files_are_present() -> None:
    assert len(VALID) == 10  # 5 hashes x 2 messages
    assert len(INVALID) >= 6


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_public_key_matches_rfc(path: Path) -> None:
    case = load(path)
    assert rfc6979.public_point(case["x"]) == (case["Ux"], case["Uy"])


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_nonce_matches_rfc(path: Path) -> None:
    case = load(path)
    h1 = hashlib.new(case["hash"], case["message"].encode()).digest()
    assert rfc6979.generate_k(case["x"], h1, case["hash"]) == case["k"]


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_signature_matches_rfc(path: Path) -> None:
    case = load(path)
    assert rfc6979.sign(case["x"], case["message"].encode(), case["hash"]) == (
        case["r"],
        case["s"],
    )


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_rfc_signature_verifies_in_pyca(path: Path) -> None:
    assert pyca_verifies(load(path))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_ecdsa_package_agrees_before_low_s(path: Path) -> None:
    """python-ecdsa's RFC 6979 signer gives the same (r, s), not normalised."""
    case = load(path)
    sk = ecdsa.SigningKey.from_secret_exponent(case["x"], curve=ecdsa.NIST256p)
    hashfunc = getattr(hashlib, case["hash"])
    sig = sk.sign_deterministic(case["message"].encode(), hashfunc=hashfunc)
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    assert (r, s) == (case["r"], case["s"])
    assert rfc6979.low_s(s) <= rfc6979.HALF_N


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_mutated_vector_is_refused(path: Path) -> None:
    case = load(path)
    assert not pyca_verifies(case)
    if case["expect"] == "invalid":
        assert rfc6979.sign(case["x"], case["message"].encode(), case["hash"]) != (
            case["r"],
            case["s"],
        )
    else:
        assert case["expect"] == "invalid-key"
        assert rfc6979.public_point(case["x"]) != (case["Ux"], case["Uy"])


def test_sha256_sample_vector_is_high_s_and_normalises() -> None:
    """The RFC's SHA-256 'sample' s is above n/2: a record would carry n - s."""
    case = load(DATA / "p256-sha256-sample.json")
    assert case["s"] > rfc6979.HALF_N
    assert rfc6979.low_s(case["s"]) == rfc6979.N - case["s"]
    assert rfc6979.low_s(rfc6979.low_s(case["s"])) == rfc6979.N - case["s"]


def test_curve_constants_match_pyca() -> None:
    one = ec.derive_private_key(1, ec.SECP256R1()).public_key().public_numbers()
    assert (one.x, one.y) == (rfc6979.GX, rfc6979.GY)
    minus_one = ec.derive_private_key(rfc6979.N - 1, ec.SECP256R1()).public_key().public_numbers()
    assert (minus_one.x, minus_one.y) == (rfc6979.GX, rfc6979.P - rfc6979.GY)


@pytest.mark.parametrize("x", [1, 2, 3, 0xFFFF, rfc6979.N - 2, rfc6979.N - 1])
def test_public_point_matches_pyca_at_edges(x: int) -> None:
    want = ec.derive_private_key(x, ec.SECP256R1()).public_key().public_numbers()
    assert rfc6979.public_point(x) == (want.x, want.y)


@pytest.mark.parametrize("x", [0, rfc6979.N, -1])
def test_private_scalar_out_of_range_is_refused(x: int) -> None:
    with pytest.raises(ValueError):
        rfc6979.generate_k(x, hashlib.sha256(b"m").digest())
    with pytest.raises(ValueError):
        rfc6979.public_point(x)


def test_signatures_verify_in_pyca_for_many_keys() -> None:
    for seed in range(20):
        x = int.from_bytes(hashlib.sha256(b"key %d" % seed).digest(), "big") % rfc6979.N
        msg = b"message %d" % seed
        r, s = rfc6979.sign(x, msg)
        pub = ec.derive_private_key(x, ec.SECP256R1()).public_key()
        pub.verify(encode_dss_signature(r, s), msg, ec.ECDSA(hashes.SHA256()))
        pub.verify(encode_dss_signature(r, rfc6979.low_s(s)), msg, ec.ECDSA(hashes.SHA256()))
