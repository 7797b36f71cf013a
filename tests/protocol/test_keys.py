"""Key encodings, key files and base64 (protocol.keys)."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given
from hypothesis import strategies as st

from protocol import keys
from protocol.errors import KeyTrustError
from protocol.keys import (
    b64d,
    b64e,
    ed25519_private_from_raw,
    ed25519_public_from_raw,
    ed25519_public_to_raw,
    generate_ed25519,
    generate_p256,
    load_ed25519_private_key,
    load_p256_private_key,
    p256_private_from_scalar,
    p256_private_scalar,
    p256_public_from_sec1,
    p256_public_to_sec1,
    save_private_key,
)

RFC6979_X = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
RFC6979_U = bytes.fromhex(
    "04"
    "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6"
    "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299"
)


def test_p256_public_key_round_trips_as_65_byte_sec1() -> None:
    key = generate_p256().public_key()
    sec1 = p256_public_to_sec1(key)
    assert len(sec1) == 65
    assert sec1[0] == 0x04
    assert p256_public_to_sec1(p256_public_from_sec1(sec1)) == sec1


def test_p256_sec1_matches_rfc6979_key_pair() -> None:
    key = p256_private_from_scalar(RFC6979_X)
    assert p256_public_to_sec1(key.public_key()) == RFC6979_U
    assert p256_private_scalar(key) == RFC6979_X


@pytest.mark.parametrize(
    "data",
    [
        RFC6979_U[:-1],  # 64 bytes
        RFC6979_U + b"\x00",
        b"\x02" + RFC6979_U[1:33],  # compressed form: refused, one encoding per key
        b"\x03" + RFC6979_U[1:],
        RFC6979_U[:-1] + bytes([RFC6979_U[-1] ^ 1]),  # not on the curve
        b"\x04" + bytes(64),
        b"",
    ],
)
def test_p256_public_from_sec1_refuses_malformed_keys(data: bytes) -> None:
    with pytest.raises(KeyTrustError):
        p256_public_from_sec1(data)


def test_p256_public_from_sec1_refuses_text() -> None:
    with pytest.raises(KeyTrustError):
        p256_public_from_sec1(RFC6979_U.hex())  # type: ignore[arg-type]


def test_other_curves_are_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(KeyTrustError):
        p256_public_to_sec1(p384.public_key())
    with pytest.raises(KeyTrustError):
        p256_private_scalar(p384)


def test_ed25519_raw_round_trips() -> None:
    key = generate_ed25519()
    raw = ed25519_public_to_raw(key.public_key())
    assert len(raw) == 32
    assert ed25519_public_to_raw(ed25519_public_from_raw(raw)) == raw
    seed = bytes(range(32))
    assert ed25519_private_from_raw(seed).public_key().public_bytes_raw() == (
        ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    )


@pytest.mark.parametrize("data", [bytes(31), bytes(33), b""])
def test_ed25519_wrong_length_is_refused(data: bytes) -> None:
    with pytest.raises(KeyTrustError):
        ed25519_public_from_raw(data)
    with pytest.raises(KeyTrustError):
        ed25519_private_from_raw(data)


# --- key files ---------------------------------------------------------------------------


def test_private_key_file_is_written_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "device.pem"
    key = generate_p256()
    old = os.umask(0)  # even with a permissive umask
    try:
        save_private_key(key, path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_p256_private_key(path)
    assert p256_private_scalar(loaded) == p256_private_scalar(key)
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_saving_replaces_an_existing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    save_private_key(generate_p256(), path)
    key = generate_p256()
    save_private_key(key, path)
    assert p256_private_scalar(load_p256_private_key(path)) == p256_private_scalar(key)


def test_ed25519_key_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "log.pem"
    key = generate_ed25519()
    save_private_key(key, path)
    loaded = load_ed25519_private_key(path)
    assert loaded.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()


def test_loading_refuses_a_key_file_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    save_private_key(generate_p256(), path)
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_p256_private_key(path)
    load_p256_private_key(path, unsafe_allow_open_mode=True)


def test_loading_the_wrong_key_type_is_refused(tmp_path: Path) -> None:
    p256, ed = tmp_path / "p.pem", tmp_path / "e.pem"
    save_private_key(generate_p256(), p256)
    save_private_key(generate_ed25519(), ed)
    with pytest.raises(KeyTrustError):
        load_p256_private_key(ed)
    with pytest.raises(KeyTrustError):
        load_ed25519_private_key(p256)


def test_a_broken_key_file_error_does_not_echo_its_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "k.pem"
    secret = b"-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n"
    path.write_bytes(secret)
    path.chmod(0o600)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(KeyTrustError) as info:
        load_p256_private_key(path)
    assert "TOPSECRET" not in str(info.value)
    assert info.value.__cause__ is None
    assert "TOPSECRET" not in caplog.text


def test_save_refuses_other_key_types(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_private_key(b"raw", tmp_path / "x.pem")  # type: ignore[arg-type]
    with pytest.raises(KeyTrustError):
        save_private_key(ec.generate_private_key(ec.SECP384R1()), tmp_path / "y.pem")
    assert not list(tmp_path.iterdir())


# --- base64 --------------------------------------------------------------------------------


@given(st.binary(max_size=100))
def test_b64_round_trips(data: bytes) -> None:
    text = b64e(data)
    assert text == base64.b64encode(data).decode()
    assert b64d(text) == data
    assert b64d(text.encode()) == data


@pytest.mark.parametrize(
    "text",
    [
        "AQI",  # missing padding
        "AQ",
        "AQ=",
        "AQ==\n",  # whitespace
        " AQ==",
        "AQ==AQ==",  # padding in the middle
        "-_8=",  # URL-safe alphabet
        "AR==",  # non-zero pad bits (canonical is AQ==)
        "AQI=A",
        "é===",
        "A===",
    ],
)
def test_b64d_is_strict(text: str) -> None:
    with pytest.raises(ValueError):
        b64d(text)


def test_b64d_raises_the_callers_error_class() -> None:
    with pytest.raises(KeyTrustError):
        b64d("AQ", error=KeyTrustError)


def test_module_exports() -> None:
    for name in keys.__all__:
        assert hasattr(keys, name)
