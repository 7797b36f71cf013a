"""A small input that claims a huge length or count must not make a parser allocate it.

Each case is a few bytes whose CBOR head, run, count, size or decompressed
length claims gigabytes (or 2^64); the parser must refuse it with its
documented error and a tracemalloc peak under :data:`SMALL_PEAK` (64 KiB), far
below what the claim would need. The firmware's decoder is checked here under
CPython; its MicroPython run (test_firmware.py) starts with the same messages.
"""

from __future__ import annotations

import base64
import copy
import json
import time
import zlib
from pathlib import Path

import pytest

from cloud import sun
from protocol.bundle import loads_bundle
from protocol.errors import BundleError, VerificationError
from protocol.merkle.multiproof import verify_multiproof
from protocol.merkle.verify import verify_consistency, verify_inclusion
from tests.fuzz import targets as t
from tests.fuzz.harness import Target, attempt, peak_bytes

SMALL_PEAK = 64 << 10
_H = bytes(32)
_U64 = (1 << 64) - 1
_HUGE8 = b"\xff" * 8

# (parser, input): CBOR heads claiming 2^32 .. 2^64 - 1 entries or bytes
CBOR_CLAIMS = {
    "payload: map of 2^64-1 pairs": (t.record_payload, b"\xbb" + _HUGE8),
    "payload: map of 2^32-1 pairs": (t.record_payload, b"\xba\xff\xff\xff\xff\x01\x01"),
    "payload: bstr of 2^62 bytes": (
        t.record_payload,
        b"\xa2\x01\x01\x06\x5b" + (1 << 62).to_bytes(8, "big") + b"ab",
    ),
    "payload: tstr of 2^32-1 bytes": (t.record_payload, b"\xa2\x01\x02\x16\x7a\xff\xff\xff\xff"),
    "payload: array of 2^64-1 items": (t.record_payload, b"\xa2\x01\x01\x06\x9b" + _HUGE8),
    "sign1: protected of 2^63 bytes": (t.cose_sign1, b"\xd2\x84\x5b\x7f" + b"\xff" * 7),
    "sign1: array of 2^64-1 items": (t.cose_sign1, b"\xd2\x9b" + _HUGE8),
    "mac0: payload of 2^32-1 bytes": (
        t.cose_mac0,
        b"\xd1\x84\x43\xa1\x01\x05\xa0\x5a\xff\xff\xff\xff",
    ),
    "firmware ack: map of 2^64-1 pairs": (t.fw_cbor_map, b"\xbb" + _HUGE8),
    "firmware ack: bstr of 2^64-1 bytes": (t.fw_cbor_map, b"\xa1\x01\x5b" + _HUGE8),
    "firmware ack envelope: bstr of 2^32-1 bytes": (t.fw_mac0, b"\xd1\x84\x5a\xff\xff\xff\xff"),
}


@pytest.mark.parametrize("name", sorted(CBOR_CLAIMS))
def test_a_claimed_length_is_not_allocated(name):
    fn, data = CBOR_CLAIMS[name]
    allowed = next(e.target.allowed for e in t.TARGETS.values() if e.run is fn)
    assert peak_bytes(lambda: fn(data), allowed) < SMALL_PEAK
    with pytest.raises(allowed) as err:
        fn(data)
    assert str(err.value)


def test_merkle_proofs_of_a_tree_of_2_to_the_64_leaves_stay_small():
    """The work is in the leaves given (at most 64 nodes each), never in the tree size."""
    checks = [
        (lambda: verify_inclusion(_U64 - 1, _U64, _H, [_H] * 64, _H), SMALL_PEAK),
        (lambda: verify_inclusion(0, _U64, _H, [_H] * 10_000, _H), 2 * SMALL_PEAK),
        (lambda: verify_consistency(1, _U64, [_H] * 10_000, _H, _H), 2 * SMALL_PEAK),
        (lambda: verify_multiproof(_U64, [0, _U64 - 1], [_H, _H], [_H] * 200, _H), SMALL_PEAK),
        # 256 leaves spread over the tree: 64 levels x 256 paths, about 1.8 KiB per leaf
        (
            lambda: verify_multiproof(_U64, list(range(0, 1 << 20, 4096)), [_H] * 256, [_H], _H),
            256 * 64 * 40,
        ),
    ]
    for check, limit in checks:
        assert peak_bytes(check, (VerificationError,)) < limit


GOOD = json.loads(t.bundle_text())


def _compact(**entry) -> str:
    doc = copy.deepcopy(GOOD)
    doc["logs"][0].update(entry)
    return json.dumps(doc)


def _deflate(data: bytes) -> str:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(c.compress(data) + c.flush()).decode()


@pytest.mark.parametrize(
    "entry",
    [
        {"runs": [[0, 1_000_000]]},  # a million records claimed, a few given
        {"runs": [[0, 2**63 - 1]]},
        {"runs": [[0, 1], [2**63 - 2, 1]]},
        {"runs": [[0, 1]], "records": _deflate(bytes(32 << 20))},  # 32 MiB of zeros
        {"runs": [[0, 1]], "records": _deflate(b"\x04\x01" + bytes(1025))},
        {"runs": [[0, 1]], "records": _deflate(b"\xff\xff" + bytes(8))},
    ],
    ids=["million", "2^63", "far run", "bomb", "record over 1024", "length 65535"],
)
def test_compact_bundle_claims_are_not_allocated(entry):
    text = _compact(**entry)
    assert peak_bytes(lambda: loads_bundle(text), (VerificationError,)) < 16 * len(text) + (1 << 20)
    with pytest.raises(VerificationError):
        loads_bundle(text)


FIXED = Path(__file__).with_name("data") / "fixed"


def test_compact_bundle_of_tiny_records_stays_within_the_input_rule():
    """D44, fixed: 50,000 one-byte records in a few hundred bytes of DEFLATE are refused
    before inflating (under 32 compressed bytes a record), fast and small."""
    case = json.loads((FIXED / "compact-tiny-records.json").read_text(encoding="utf-8"))
    text = _compact(**case["logs_entry"])
    err = attempt(Target("bundle_compact", (VerificationError,)), loads_bundle, text)
    assert err is not None and type(err).__name__ == case["want"]["error"], err
    assert err.code == case["want"]["code"] and case["want"]["message"] in str(err)
    assert peak_bytes(lambda: loads_bundle(text), (VerificationError,)) < 16 * len(text) + (1 << 20)


def test_a_million_tiny_records_and_a_million_leaves_are_refused_before_they_are_built():
    """The D44 bundle at full size (a million 1-byte records, 4.9 KB) and its variants: each
    refused with malformed_bundle in well under a second and a peak far below a million of
    anything (before: 4.7 s and 216 MB to build the records)."""
    million = [[0, 1_000_000]]
    cases = {
        "a million 1-byte records": {"runs": million, "records": _deflate(b"\x00\x01x" * 10**6)},
        # a million records of the shortest size, repeated: still far under 32 bytes a record
        "a million 78-byte records": {
            "runs": million,
            "records": _deflate((b"\x00\x4e" + bytes(78)) * 10**6),
        },
    }
    texts = {name: _compact(**entry) for name, entry in cases.items()}
    doc = copy.deepcopy(GOOD)
    doc["proofs"] = [{**doc["proofs"][0], "tree_size": 2**40, "leaves": million, "nodes": ""}]
    texts["a proof of a million leaves"] = json.dumps(doc)
    for name, text in texts.items():
        start = time.perf_counter()
        peak = peak_bytes(lambda text=text: loads_bundle(text), (VerificationError,))
        assert time.perf_counter() - start < 1, name
        assert peak < 16 * len(text) + (1 << 20), (name, peak)
        with pytest.raises(BundleError) as err:
            loads_bundle(text)
        assert err.value.code == "malformed_bundle", name
        want = "names more leaves" if "proof" in name else "fewer than 32 compressed bytes"
        assert want in str(err.value), (name, err.value)


def test_sun_refuses_oversized_file_data_before_decoding_it():
    params = {"picc": "00" * 16, "cmac": "00" * 8, "enc": "00" * (1 << 20)}
    with pytest.raises(sun.SunError) as err:
        sun.parse_sun(params)
    assert err.value.code == "malformed"
    assert peak_bytes(lambda: sun.parse_sun(params), (sun.SunError,)) < SMALL_PEAK
