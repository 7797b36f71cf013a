"""Bundle format (docs/protocol.md §9): schema, strict parsing, and the
property that any single-bit change to the evidence is caught."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.bundle import BundleRecord, loads_bundle, parse_bundle
from protocol.errors import BundleError
from protocol.verify import verify_bundle
from tests.protocol.factory import world

SCHEMA = json.loads(
    (Path(__file__).parents[2] / "protocol" / "schema" / "bundle.schema.json").read_text()
)
W = world(n_devices=2, readings=4)
GOOD = W.bundle(sizes=(5, len(W.leaves)))
TRUST = W.trust()


def test_genuine_bundle_matches_the_json_schema():
    jsonschema.validate(GOOD.to_json(), SCHEMA)


def test_schema_and_parser_agree_on_malformed_bundles():
    doc = GOOD.to_json()
    broken = [
        {k: v for k, v in doc.items() if k != "records"},
        {**doc, "version": 2},
        {**doc, "format": "something-else"},
        {**doc, "extra": 1},
        {**doc, "records": [{"log": "x", "index": -1, "record": "AA=="}]},
        {**doc, "records": [{"log": "x", "index": 0, "record": "not base64!"}]},
        {**doc, "inclusion": [{"log": "x", "index": 0, "tree_size": 1, "path": ["AAAA"]}]},
        {
            **doc,
            "inclusion": [
                {
                    "log": "x",
                    "index": 0,
                    "tree_size": 1,
                    "path": [base64.b64encode(bytes(32)).decode()] * 65,
                }
            ],
        },
        {**doc, "anchors": [{"log": "x", "tree_size": 1, "receipt": {"type": "paper"}}]},
    ]
    for bad in broken:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)
        with pytest.raises(BundleError):
            parse_bundle(bad)


def test_loads_bundle_refuses_non_json():
    with pytest.raises(BundleError):
        loads_bundle(b"\xff{not json")


def _flip(raw: bytes, bit: int) -> bytes:
    b = bytearray(raw)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(min_value=0), bit=st.integers(min_value=0))
def test_any_bit_flip_in_a_record_fails_verification(which, bit):
    b = dataclasses.replace(GOOD, records=list(GOOD.records))
    i = which % len(b.records)
    r = b.records[i]
    b.records[i] = BundleRecord(r.log, r.index, _flip(r.raw, bit))
    report = verify_bundle(b, TRUST)
    assert not report.ok
    assert codes_subset(
        report,
        {
            "malformed_record",
            "bad_signature",
            "proof_mismatch",
            "unknown_key",
            "broken_chain",
            "sequence_gap",
        },
    )


@settings(max_examples=40, deadline=None)
@given(which=st.integers(min_value=0), h=st.integers(min_value=0), bit=st.integers(0, 255))
def test_any_bit_flip_in_an_inclusion_proof_fails_verification(which, h, bit):
    b = dataclasses.replace(GOOD, inclusion=list(GOOD.inclusion))
    i = which % len(b.inclusion)
    p = b.inclusion[i]
    if not p.path:
        return
    path = list(p.path)
    j = h % len(path)
    path[j] = _flip(path[j], bit)
    b.inclusion[i] = dataclasses.replace(p, path=tuple(path))
    report = verify_bundle(b, TRUST)
    # a registration that is not proven in the log leaves its device's key unknown
    assert codes_subset(report, {"proof_mismatch", "unknown_key"})
    assert "proof_mismatch" in {c.code for c in report.failures}


@settings(max_examples=40, deadline=None)
@given(h=st.integers(min_value=0), bit=st.integers(0, 255))
def test_any_bit_flip_in_a_consistency_proof_fails_verification(h, bit):
    b = dataclasses.replace(GOOD, consistency=list(GOOD.consistency))
    p = b.consistency[0]
    path = list(p.path)
    j = h % len(path)
    path[j] = _flip(path[j], bit)
    b.consistency[0] = dataclasses.replace(p, path=tuple(path))
    report = verify_bundle(b, TRUST)
    assert {c.code for c in report.failures} == {
        "inconsistent_checkpoints",
        "unanchored_checkpoint",
    }


@settings(max_examples=60, deadline=None)
@given(which=st.integers(0, 1), pos=st.integers(min_value=0), bit=st.integers(0, 6))
def test_any_bit_flip_in_a_checkpoint_note_fails_verification(which, pos, bit):
    b = dataclasses.replace(GOOD, checkpoints=list(GOOD.checkpoints))
    text = b.checkpoints[which]
    k = pos % len(text)
    flipped = text[:k] + chr(ord(text[k]) ^ (1 << bit)) + text[k + 1 :]
    b.checkpoints[which] = flipped
    report = verify_bundle(b, TRUST)
    assert not report.ok
    assert codes_subset(
        report,
        {
            "bad_checkpoint",
            "unknown_log_key",
            "inconsistent_checkpoints",
            "unanchored_checkpoint",
            "missing_proof",
            "bad_anchor",
            "unknown_key",
        },
    )


@settings(max_examples=40, deadline=None)
@given(
    field=st.sampled_from(["index", "prev", "time", "checkpoint_hash", "signature", "ledger"]),
    bit=st.integers(0, 7),
)
def test_any_change_to_an_anchor_receipt_fails_verification(field, bit):
    b = dataclasses.replace(GOOD, anchors=list(GOOD.anchors))
    receipt = dict(b.anchors[0].receipt)
    v = receipt[field]
    if isinstance(v, int):
        receipt[field] = v ^ (1 << bit)
    else:
        receipt[field] = (
            v[:-3] + chr(ord(v[-3]) ^ (1 << (bit % 5))) + v[-2:] if len(v) > 3 else v + "x"
        )
    b.anchors[0] = dataclasses.replace(b.anchors[0], receipt=receipt)
    report = verify_bundle(b, TRUST)
    assert not report.ok
    assert "unanchored_checkpoint" in {c.code for c in report.failures}


def codes_subset(report, allowed):
    got = {c.code for c in report.failures}
    assert got, "a change was not detected"
    assert got <= allowed, got - allowed
    return True
