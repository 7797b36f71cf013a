"""End to end: devices (firmware record code) -> Mosquitto -> gateway -> store -> log
-> checkpoint -> local ledger, then everything checked from the outside."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest

from gateway.evidence.ledger import LocalLedger
from gateway.evidence.proofs import TreeReader, multiproof
from gateway.evidence.store import open_store
from gateway.service import trust_document
from protocol.anchor import LocalReceipt, verify_local_chain, verify_local_receipt
from protocol.checkpoint import checkpoint_hash, open_checkpoint
from protocol.cli import main as coldtrace
from protocol.keys import b64d, load_ed25519_private_key
from protocol.merkle import hash_leaf, verify_consistency, verify_inclusion, verify_multiproof
from protocol.note import NoteVerifier
from tests.gateway.devices import CT_RECORD, SimDevice, wait_for
from tests.schemas import assert_trust


def test_devices_use_the_firmware_record_code() -> None:
    assert CT_RECORD is not None, "firmware/lib/ct_record.py should be importable"


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_records_flow_to_anchored_checkpoints_and_every_proof_verifies(
    make_broker, make_gateway, tmp_path: Path, capsys, engine: str, request
) -> None:
    devs = [SimDevice(f"tl-e2e{i}") for i in range(4)]
    broker = make_broker([d.id for d in devs])
    sections = {}
    if engine == "postgresql":
        sections["store"] = {"url": request.getfixturevalue("pg_url"), "schema": "gw_e2e"}
    env = make_gateway(broker, sections=sections)
    env.register(*devs)
    gw = env.start_gateway()
    try:
        env.connect(*devs)
        for k in range(60):
            for d in devs:
                d.publish(d.reading(temp=300 + k))
        wait_for(lambda: all(d.acked == 59 and not d.unacked for d in devs), 30, "device acks")
        assert all(d.bad_acks == 0 for d in devs)
        total = len(devs) + 60 * len(devs)  # registrations are leaves too
        wait_for(lambda: gw.log.last is not None and gw.log.last.size == total, 10, "checkpoint")
        wait_for(lambda: len(gw.store.presence()) == len(devs), 10, "presence")
        assert {s for s, _ in gw.store.presence().values()} == {"online"}
    finally:
        gw.stop()

    cfg = env.cfg
    assert cfg.db_path.exists() == (engine == "sqlite")  # PostgreSQL: no SQLite file at all
    trust = trust_document(cfg)
    assert_trust(trust)  # the gateway's trust file follows the published schema
    (tmp_path / "trust.json").write_text(json.dumps(trust))
    verifier = NoteVerifier.from_vkey(trust["logs"][0]["vkey"])
    store = open_store(cfg)
    cps = store.checkpoints()
    last = open_checkpoint(cps[-1].note, [verifier])
    assert last.size == total and store.reject_counts() == {}

    # Every record's inclusion proof verifies against the signed root.
    reader = TreeReader(cfg.tree_dir, last.size)
    for leaf in range(last.size):
        rec = store.record(leaf)
        assert rec is not None
        path = reader.inclusion_proof(leaf, last.size)
        verify_inclusion(leaf, last.size, hash_leaf(rec.raw), path, last.root_hash)
    # Each checkpoint is consistent with the one before it.
    for old, new in itertools.pairwise(cps):
        a = open_checkpoint(old.note, [verifier])
        b = open_checkpoint(new.note, [verifier])
        verify_consistency(
            a.size, b.size, reader.consistency_proof(a.size, b.size), a.root_hash, b.root_hash
        )
    # Every checkpoint is anchored on the local ledger; receipts verify and link.
    ledger = LocalLedger(
        cfg.ledger_path, cfg.ledger.id, load_ed25519_private_key(cfg.ledger.key_file)
    )
    assert ledger.verify() == len(cps)
    receipts = [LocalReceipt.from_json(a.receipt) for a in store.anchors()]
    assert [r.index for r in receipts] == list(range(len(cps)))
    for cp, receipt in zip(cps, receipts, strict=True):
        verify_local_receipt(
            receipt, ledger.public_key, checkpoint_hash(open_checkpoint(cp.note, [verifier]))
        )
    verify_local_chain(receipts)
    ledger.close()

    # One multiproof covers every device's records (docs/protocol.md §9).
    for d in devs:
        recs = store.records_of(d.id, 0, 59)
        mp = multiproof(reader, cfg.log.origin, cps[-1], recs)
        assert mp.tree_size == last.size and len(mp.leaves) == 60
        verify_multiproof(
            mp.tree_size,
            list(mp.leaves),
            [hash_leaf(r.raw) for r in recs],
            list(mp.nodes),
            last.root_hash,
        )
    reader.close()
    store.close()

    # The operator's view.
    capsys.readouterr()
    assert coldtrace(["gateway", "status", "-c", str(env.config_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["records"] == total and status["rejects"] == {}
    assert status["last_checkpoint"]["size"] == total
    assert status["last_anchor"]["size"] == total
    assert sorted(status["devices"]["online"]) == sorted(d.id for d in devs)
    assert coldtrace(["gateway", "status", "-c", str(env.config_path)]) == 0
    assert "checkpoint    size" in capsys.readouterr().out
    capsys.readouterr()
    assert (
        coldtrace(
            ["gateway", "proof", "-c", str(env.config_path), "--device", devs[1].id, "--seq", "7"]
        )
        == 0
    )
    proof = json.loads(capsys.readouterr().out)
    verify_inclusion(
        proof["index"],
        proof["tree_size"],
        hash_leaf(b64d(proof["record"])),
        [b64d(h) for h in proof["path"]],
        last.root_hash,
    )


def test_offline_will_shows_in_presence(make_broker, make_gateway) -> None:
    dev = SimDevice("tl-will")
    broker = make_broker([dev.id])
    env = make_gateway(broker)
    env.register(dev)
    gw = env.start_gateway()
    try:
        env.connect(dev)
        wait_for(lambda: gw.store.presence().get(dev.id, ("",))[0] == "online", 15, "online")
        dev.drop()
        wait_for(lambda: gw.store.presence().get(dev.id, ("",))[0] == "offline", 30, "offline")
    finally:
        gw.stop()


def test_excursion_alerts_and_metrics_endpoint(make_broker, make_gateway) -> None:
    import urllib.request

    from gateway.config import load_config
    from gateway.transport.broker import free_port

    dev = SimDevice("tl-hot")
    broker = make_broker([dev.id])
    env = make_gateway(broker)
    port = free_port()
    with env.config_path.open("a") as f:
        f.write(
            f"\n[metrics]\nport = {port}\n\n[alerts.profiles.quick]\nlow = 0\nhigh = 400\n"
            'delay = 60\n\n[alerts.places]\n"cold-room-1" = "quick"\n'
        )
    env.cfg = load_config(env.config_path)
    env.register(dev, place="cold-room-1")
    gw = env.start_gateway()
    try:
        env.connect(dev)
        t0 = int(time.time()) - 1000
        for dt, temp in ((0, 300), (30, 500), (100, 520), (200, 300)):
            dev.publish(dev.reading(temp=temp, time_=t0 + dt))
        wait_for(lambda: dev.acked == 3, 15, "acks")
        wait_for(lambda: gw.alerts.events >= 2, 15, "excursion start and end")
        # The place whose profile applies comes from the registry's binding.
        assert gw.registry.place_of(dev.id) == "cold-room-1"
        assert {st[2]["place"] for st in gw.alerts.engine.snapshot()["streams"]} == {"cold-room-1"}
        wait_for(lambda: gw.mqtt.stats["published"] >= 2, 15, "alerts published")
        wait_for(lambda: gw.last_status.get("tree_size") == 6, 15, "status refresh")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert "coldtrace_log_size_leaves 6" in text  # registration, binding, 4 readings
        assert 'coldtrace_records_total{outcome="accepted"}' in text
    finally:
        gw.stop()
