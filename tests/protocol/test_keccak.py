"""Keccak-256 (protocol/keccak.py) against published vectors and FIPS 202.

Vectors live in testdata/keccak/, one case per file: ``keccak256`` is the
expected digest, ``not_keccak256`` a digest the input must NOT have (mutated
negatives). Each file names its source.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.keccak import _SHA3_DOMAIN, RATE, _sponge_256, keccak256

DATA = Path(__file__).parent / "testdata" / "keccak"
CASES = sorted(DATA.glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return case


def _input(case: dict[str, Any]) -> bytes:
    if "input_utf8" in case:
        return str(case["input_utf8"]).encode("utf-8")
    return bytes.fromhex(case["input_hex"])


def test_vector_files_are_present() -> None:
    assert len([p for p in CASES if "keccak256" in _load(p)]) >= 9
    assert len([p for p in CASES if "not_keccak256" in _load(p)]) >= 4


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_keccak256_vector(path: Path) -> None:
    case = _load(path)
    digest = keccak256(_input(case)).hex()
    if "keccak256" in case:
        assert digest == case["keccak256"]
    else:
        assert digest != case["not_keccak256"]


def test_keccak256_is_not_sha3_256() -> None:
    assert keccak256(b"") != hashlib.sha3_256(b"").digest()


def test_keccak256_accepts_bytearray_and_memoryview() -> None:
    want = keccak256(b"abc")
    assert keccak256(bytearray(b"abc")) == want
    assert keccak256(memoryview(b"xabc")[1:]) == want


@pytest.mark.parametrize("length", [RATE - 2, RATE - 1, RATE, RATE + 1, 2 * RATE - 1, 2 * RATE])
def test_sponge_with_sha3_padding_matches_hashlib_at_rate_boundaries(length: int) -> None:
    # The permutation and sponge are shared with FIPS 202 SHA3-256; only the
    # padding byte differs. hashlib is an independent implementation of it.
    data = bytes(range(256)) * 3
    assert _sponge_256(data[:length], _SHA3_DOMAIN) == hashlib.sha3_256(data[:length]).digest()


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3 * RATE + 5))
def test_sponge_with_sha3_padding_matches_hashlib(data: bytes) -> None:
    assert _sponge_256(data, _SHA3_DOMAIN) == hashlib.sha3_256(data).digest()
