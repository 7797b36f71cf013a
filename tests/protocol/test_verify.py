"""The bundle verifier: one genuine bundle passes; each kind of damage is
reported with its own failure code (docs/protocol.md §11)."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.bundle import BundleRecord, InclusionProof, loads_bundle
from protocol.checkpoint import Checkpoint, sign_checkpoint
from protocol.errors import TrustError
from protocol.merkle import MerkleTree
from protocol.note import NoteSigner
from protocol.record import open_record
from protocol.trust import parse_trust
from protocol.verify import verify_bundle
from tests.protocol.factory import ORIGIN, Dev, replace_payload_field, world


def codes(report):
    return {c.code for c in report.failures}


def test_verify_accepts_genuine_bundle():
    w = world()
    report = verify_bundle(w.bundle(), w.trust())
    assert report.failures == []
    assert report.ok
    assert report.summary["records_verified"] == len(w.leaves)
    assert report.summary["devices"] == ["dev-0", "dev-1", "reg-1"]


def test_verify_roundtrips_through_json():
    w = world()
    b = loads_bundle(w.bundle().dumps())
    assert verify_bundle(b, w.trust()).ok


def test_verify_reports_edited_temperature_as_bad_signature():
    w = world()
    b = w.bundle()
    item = b.records[4]
    rec = open_record(item.raw)
    b.records[4] = BundleRecord(
        item.log,
        item.index,
        replace_payload_field(item.raw, rec.payload, temp=rec.payload.temp + 1),
    )
    report = verify_bundle(b, w.trust())
    assert not report.ok
    assert "bad_signature" in codes(report)
    # the changed leaf no longer matches the logged one either
    assert "proof_mismatch" in codes(report)


def test_verify_reports_unregistered_device_as_unknown_key():
    w = world()
    stranger = Dev("dev-x")
    w.reading(stranger, 300)
    report = verify_bundle(w.bundle(), w.trust())
    assert {c.code for c in report.failures} == {"unknown_key"}
    assert report.failures[0].subject == "dev-x#0"


def test_verify_accepts_directly_pinned_device_key():
    from protocol.keys import p256_public_to_sec1

    w = world()
    stranger = Dev("dev-x")
    w.reading(stranger, 300)
    trust = w.trust(devices={"dev-x": p256_public_to_sec1(stranger.key.public_key())})
    assert verify_bundle(w.bundle(), trust).ok


def test_verify_refuses_records_logged_after_revocation_but_keeps_earlier_ones():
    w = world(n_devices=1, readings=2)
    dev = w.devices["dev-0"]
    w.register(dev, state=2)
    w.reading(dev, 250)
    report = verify_bundle(w.bundle(), w.trust())
    revoked = [c for c in report.failures if c.code == "revoked_key"]
    assert [c.subject for c in revoked] == ["dev-0#2"]
    assert report.summary["records_verified"] == len(w.leaves) - 1


def test_verify_refuses_registration_with_a_second_key():
    from protocol.keys import generate_p256, p256_public_to_sec1

    w = world(n_devices=1, readings=1)
    w.register(w.devices["dev-0"], key=p256_public_to_sec1(generate_p256().public_key()))
    w.reading(w.devices["dev-0"], 250)
    assert "unknown_key" in codes(verify_bundle(w.bundle(), w.trust()))


def test_verify_reports_missing_record_as_sequence_gap():
    w = world(n_devices=1, readings=4)
    b = w.bundle()
    del b.records[3]  # dev-0 seq 2
    report = verify_bundle(b, w.trust())
    assert codes(report) == {"sequence_gap"}


def test_verify_reports_wrong_prev_as_broken_chain():
    w = world(n_devices=1, readings=2)
    dev = w.devices["dev-0"]
    dev.prev = bytes(16)
    w.reading(dev, 100)
    report = verify_bundle(w.bundle(), w.trust())
    assert codes(report) == {"broken_chain"}


def test_verify_reports_fork_under_one_seq_as_broken_chain():
    w = world(n_devices=1, readings=2)
    dev = w.devices["dev-0"]
    dev.seq -= 1
    w.reading(dev, 999)
    assert "broken_chain" in codes(verify_bundle(w.bundle(), w.trust()))


def test_verify_reports_flipped_path_hash_as_proof_mismatch():
    w = world()
    b = w.bundle()
    p = b.inclusion[2]
    bad = bytearray(p.path[0])
    bad[0] ^= 0x80
    b.inclusion[2] = dataclasses.replace(p, path=(bytes(bad), *p.path[1:]))
    assert codes(verify_bundle(b, w.trust())) == {"proof_mismatch"}


def test_verify_reports_record_without_proof_as_missing_proof():
    w = world()
    b = w.bundle()
    del b.inclusion[3]
    assert codes(verify_bundle(b, w.trust())) == {"missing_proof"}


def test_verify_reports_unpinned_log_key():
    w = world()
    other = NoteSigner.generate(ORIGIN)
    report = verify_bundle(w.bundle(), w.trust(logs=[(ORIGIN, other.vkey)]))
    assert "unknown_log_key" in codes(report)
    assert not report.ok


def test_verify_links_checkpoints_by_consistency_and_covers_earlier_ones():
    w = world(readings=6)
    n = len(w.leaves)
    report = verify_bundle(w.bundle(sizes=(4, 9, n)), w.trust())
    assert report.ok, report.failures
    assert report.summary["anchored_checkpoints"] == 3


def test_verify_reports_missing_consistency_proof():
    w = world(readings=6)
    b = w.bundle(sizes=(4, len(w.leaves)))
    b.consistency.clear()
    report = verify_bundle(b, w.trust())
    assert "inconsistent_checkpoints" in codes(report)
    assert "unanchored_checkpoint" in codes(report)


def test_verify_reports_forked_log_as_inconsistent():
    w = world(readings=3)
    b = w.bundle()
    # the log operator signs a second tree of the same size with a different history
    fork = MerkleTree()
    for raw in reversed(w.leaves):
        fork.append(raw)
    b.checkpoints.append(sign_checkpoint(Checkpoint(ORIGIN, fork.size, fork.root()), w.log))
    assert "inconsistent_checkpoints" in codes(verify_bundle(b, w.trust()))


def test_verify_reports_unanchored_checkpoint():
    w = world()
    report = verify_bundle(w.bundle(anchor_sizes=()), w.trust())
    assert codes(report) == {"unanchored_checkpoint"}
    assert not report.ok


def test_verify_reports_anchor_with_unpinned_ledger_key():
    w = world()
    report = verify_bundle(w.bundle(), w.trust(ledgers={}, devices={}))
    assert {"unknown_key", "unanchored_checkpoint"} <= codes(report)


def test_verify_reports_anchor_for_another_checkpoint_as_bad_anchor():
    w = world()
    b = w.bundle()
    receipt = dict(b.anchors[0].receipt)
    receipt["checkpoint_hash"] = "00" * 32
    b.anchors[0] = dataclasses.replace(b.anchors[0], receipt=receipt)
    assert "bad_anchor" in codes(verify_bundle(b, w.trust()))


def test_verify_evm_anchor_without_rpc_is_unverifiable_not_verified():
    from protocol.trust import EvmLedger

    w = world()
    b = w.bundle()
    evm = {
        "type": "evm",
        "chain_id": 31337,
        "contract": "0x" + "11" * 20,
        "tx_hash": "0x" + "22" * 32,
        "block_number": 7,
        "block_hash": "0x" + "33" * 32,
        "log_index": 0,
        "checkpoint_hash": "44" * 32,
        "confirmations": 1,
    }
    b.anchors[0] = dataclasses.replace(b.anchors[0], receipt=evm)
    report = verify_bundle(b, w.trust(evm=[EvmLedger(31337, "0x" + "11" * 20)]))
    assert "anchor_unverifiable" in codes(report)
    assert not report.ok


def test_verify_bundle_without_records_is_not_ok():
    w = world()
    b = w.bundle()
    b.records.clear()
    report = verify_bundle(b, w.trust())
    assert report.failures == []
    assert not report.ok


def test_empty_trust_file_is_an_error():
    with pytest.raises(TrustError):
        parse_trust({"format": "coldtrace-trust", "version": 1})


def test_inclusion_proof_against_unknown_checkpoint_is_missing_proof():
    w = world()
    b = w.bundle()
    p = b.inclusion[-1]
    b.inclusion[-1] = InclusionProof(p.log, p.index, p.tree_size + 100, p.path)
    assert codes(verify_bundle(b, w.trust())) == {"missing_proof"}


def test_verify_names_the_declaration_that_explains_a_gap():
    from protocol.record import Status

    w = world(n_devices=1, readings=2)
    dev = w.devices["dev-0"]
    dev.seq += 1  # seq 2 never made it off the device
    raw = dev.sign(Status, 1_790_001_000, event=11, detail=1, lost=2)
    w.leaves.append(raw)
    report = verify_bundle(w.bundle(), w.trust())
    (gap,) = report.failures
    assert gap.code == "sequence_gap"
    assert "2..2 declared lost by status record #3" in gap.message
