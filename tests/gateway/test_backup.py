"""`coldtrace gateway backup` while the gateway runs, and `restore`: the restored gateway
starts (its own start-up checks pass) with every record, checkpoint and anchor of the
backup, and goes on logging consistently; bad input changes nothing."""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.evidence.ledger import LocalLedger
from gateway.evidence.proofs import TreeReader
from gateway.evidence.store import open_store
from gateway.service import trust_document
from protocol.checkpoint import open_checkpoint
from protocol.cli import main as coldtrace
from protocol.keys import load_ed25519_private_key
from protocol.merkle import verify_consistency
from protocol.note import NoteVerifier
from tests.gateway.devices import SimDevice, wait_for


def _checkpoints(cfg, store):  # type: ignore[no-untyped-def]
    verifier = NoteVerifier.from_vkey(trust_document(cfg)["logs"][0]["vkey"])
    return [open_checkpoint(c.note, [verifier]) for c in store.checkpoints()]


def test_online_backup_restores_to_a_gateway_that_starts_with_nothing_lost(
    make_broker, make_gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = make_broker(["tl-1", "tl-2"])
    gw = make_gateway(broker)
    one, two = SimDevice("tl-1"), SimDevice("tl-2")
    gw.register(one, two)
    proc = gw.start_process()
    log_path = gw.dir / "gateway.log"
    wait_for(lambda: "subscribed to" in log_path.read_text(), 30, "gateway subscribed")
    gw.connect(one)
    sent = [one.reading(temp=300 + k) for k in range(40)]
    for raw in sent:
        one.publish(raw)
    wait_for(lambda: one.acked == 39, 30, "the first 40 records acked")
    stop = threading.Event()

    def stream() -> None:  # the gateway keeps writing while the backup is taken
        for k in itertools.count():
            if stop.is_set():
                return
            raw = one.reading(temp=500 + k % 100)
            sent.append(raw)
            one.publish(raw)
            time.sleep(0.01)

    writer = threading.Thread(target=stream)
    writer.start()
    time.sleep(1.0)
    dest = tmp_path / "backup"
    try:
        assert coldtrace(["gateway", "backup", "-c", str(gw.config_path), str(dest)]) == 0
    finally:
        stop.set()
        writer.join()
    out = capsys.readouterr().out
    assert "backed up gateway gw-test" in out
    manifest = json.loads((dest / "backup.json").read_text())
    assert manifest["leaves"] >= 40 and manifest["checkpoint"] >= 1
    assert {"gateway.db", "ledger.db", "gateway.toml", "keys/log.skey"} <= set(manifest["files"])
    assert oct((dest / "keys" / "log.skey").stat().st_mode & 0o777) == "0o600"

    # A running gateway is never restored over.
    assert coldtrace(["gateway", "restore", "-c", str(gw.config_path), str(dest)]) == 2
    assert "stop it before restoring" in capsys.readouterr().err
    wait_for(lambda: one.acked == len(sent) - 1, 30, "every record acked before the stop")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    one.disconnect()

    assert coldtrace(["gateway", "restore", "-c", str(gw.config_path), str(dest)]) == 0
    out = capsys.readouterr().out
    assert "start-up checks passed" in out
    aside = [p for p in gw.cfg.data_dir.iterdir() if p.name.startswith("replaced-")]
    assert len(aside) == 1 and (aside[0] / "gateway.db").exists()  # nothing deleted

    cfg = load_config(gw.config_path)
    store = open_store(cfg)
    try:
        n = store.leaf_count()
        assert n == manifest["leaves"]
        mine = [r.raw for r in store.records_of("tl-1", 0, 2**32)]
        assert len(mine) >= 40 and mine == sent[: len(mine)]  # a prefix, byte for byte
        assert _checkpoints(cfg, store)[-1].size == manifest["checkpoint"]
        before = _checkpoints(cfg, store)[-1]
    finally:
        store.close()

    # The restored gateway starts and keeps logging: a device it has not heard from
    # yet is acked, and the next checkpoint is consistent with the restored one.
    gateway = gw.start_gateway()
    try:
        gw.connect(two)
        raws = [two.reading(temp=410 + k) for k in range(10)]
        for raw in raws:
            two.publish(raw)
        wait_for(lambda: two.acked == 9, 30, "the new device's records acked")
        wait_for(
            lambda: gateway.log.last is not None and gateway.log.last.size == n + 10,
            30,
            "a checkpoint of the new records",
        )
    finally:
        gateway.stop()
        two.disconnect()
    store = open_store(cfg)
    try:
        cps = _checkpoints(cfg, store)
        after = cps[-1]
        reader = TreeReader(cfg.tree_dir, after.size)
        try:
            proof = reader.consistency_proof(before.size, after.size)
        finally:
            reader.close()
        verify_consistency(before.size, after.size, proof, before.root_hash, after.root_hash)
        ledger = LocalLedger(
            cfg.ledger_path, cfg.ledger.id, load_ed25519_private_key(cfg.ledger.key_file)
        )
        try:
            assert ledger.verify() == len(cps)  # every checkpoint anchored once, chain intact
        finally:
            ledger.close()
        assert sorted({a.size for a in store.anchors()}) == [c.size for c in cps]
    finally:
        store.close()


def test_restore_refuses_a_damaged_backup_and_changes_nothing(
    make_broker, make_gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = make_broker(["tl-1"])
    gw = make_gateway(broker)
    dev = SimDevice("tl-1")
    gw.register(dev)
    gateway = gw.start_gateway()
    try:
        gw.connect(dev)
        for k in range(5):
            dev.publish(dev.reading(temp=400 + k))
        wait_for(lambda: dev.acked == 4, 30, "records acked")
        wait_for(lambda: gateway.log.last is not None, 30, "a checkpoint")
    finally:
        gateway.stop()
        dev.disconnect()
    conf = str(gw.config_path)
    dest = tmp_path / "b"
    assert coldtrace(["gateway", "backup", "-c", conf, str(dest), "--no-keys"]) == 0
    assert not (dest / "keys").exists()
    assert coldtrace(["gateway", "backup", "-c", conf, str(dest)]) == 2  # not over a backup
    assert "not an empty directory" in capsys.readouterr().err

    db = gw.cfg.db_path.read_bytes()
    raw = bytearray((dest / "gateway.db").read_bytes())
    raw[-100] ^= 1
    (dest / "gateway.db").write_bytes(bytes(raw))
    assert coldtrace(["gateway", "restore", "-c", conf, str(dest)]) == 2
    err = capsys.readouterr().err
    assert "changed since the backup was made" in err and "Traceback" not in err
    assert gw.cfg.db_path.read_bytes() == db
    assert not [p for p in gw.cfg.data_dir.iterdir() if p.name.startswith("replaced-")]
    assert coldtrace(["gateway", "restore", "-c", conf, str(tmp_path / "nothing")]) == 2
    assert "is not a gateway backup" in capsys.readouterr().err


def test_a_store_older_than_the_ledger_stops_the_start_with_a_sentence(
    make_broker, make_gateway, tmp_path: Path
) -> None:
    """A database copied back by hand from an old copy, beside a newer ledger."""
    broker = make_broker(["tl-1"])
    gw = make_gateway(broker)
    dev = SimDevice("tl-1")
    gw.register(dev)
    gateway = gw.start_gateway()
    try:
        gw.connect(dev)
        dev.publish(dev.reading())
        wait_for(lambda: gateway.log.last_anchor is not None, 30, "an anchored checkpoint")
        assert coldtrace(["gateway", "backup", "-c", str(gw.config_path), str(tmp_path / "b")]) == 0
        for k in range(3):
            dev.publish(dev.reading(temp=500 + k))
        wait_for(lambda: dev.acked == 3, 30, "records acked")
        size = gateway.store.leaf_count()
        wait_for(
            lambda: gateway.log.last_anchor is not None and gateway.log.last_anchor.size == size,
            30,
            "the newer checkpoint anchored",
        )
    finally:
        gateway.stop()
        dev.disconnect()
    (tmp_path / "b" / "gateway.db").replace(gw.cfg.db_path)  # by hand: the store only
    proc = gw.start_process()
    assert proc.wait(60) == 2
    log = (gw.dir / "gateway.log").read_text()
    assert "the database lost committed records (restored from an old copy?)" in log
    shutil.rmtree(gw.cfg.tree_dir)  # without the tree's record, the ledger tells
    proc = gw.start_process()
    assert proc.wait(60) == 2
    log = (gw.dir / "gateway.log").read_text()
    assert "the database is older than the ledger" in log and "Traceback" not in log


def test_an_anchor_the_ledger_copy_lacks_is_redone_at_restore(
    make_broker, make_gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The race the copy order is for: an anchor recorded in the store after the ledger
    was copied. Made deterministic by putting an older ledger under the backup."""
    broker = make_broker(["tl-1"])
    gw = make_gateway(broker)
    dev = SimDevice("tl-1")
    gw.register(dev)
    gateway = gw.start_gateway()
    older = tmp_path / "older-ledger.db"
    try:
        gw.connect(dev)
        dev.publish(dev.reading())
        wait_for(lambda: dev.acked == 0, 30, "the record acked")
        wait_for(
            lambda: (
                gateway.log.last_anchor is not None
                and gateway.log.last_anchor.size == gateway.store.leaf_count()
            ),
            30,
            "every record in an anchored checkpoint",
        )
        source = sqlite3.connect(gw.cfg.ledger_path)
        target = sqlite3.connect(older)
        source.backup(target)
        target.close()
        source.close()
        dev.publish(dev.reading(temp=520))
        size = gateway.store.leaf_count() + 1
        wait_for(
            lambda: gateway.log.last_anchor is not None and gateway.log.last_anchor.size >= size,
            30,
            "the next checkpoint anchored",
        )
    finally:
        gateway.stop()
        dev.disconnect()
    newest = gw.cfg.ledger_path.with_name("newest-ledger.db")
    gw.cfg.ledger_path.replace(newest)
    older.replace(gw.cfg.ledger_path)  # as if the ledger had been copied before that anchor
    dest = tmp_path / "b"
    assert coldtrace(["gateway", "backup", "-c", str(gw.config_path), str(dest)]) == 0
    assert "1 anchor(s) redone at restore" in capsys.readouterr().out
    manifest = json.loads((dest / "backup.json").read_text())
    assert manifest["anchors_to_redo"] == 1
    assert coldtrace(["gateway", "restore", "-c", str(gw.config_path), str(dest)]) == 0
    out = capsys.readouterr().out
    assert f"last anchored checkpoint {manifest['checkpoint']}" in out
    cfg = load_config(gw.config_path)
    store = open_store(cfg.db_path)
    ledger = LocalLedger(
        cfg.ledger_path, cfg.ledger.id, load_ed25519_private_key(cfg.ledger.key_file)
    )
    try:
        entries = ledger.verify()  # the lost entry anchored again, the chain intact
        assert store.latest_anchor().size == manifest["checkpoint"]  # type: ignore[union-attr]
        assert [a.receipt["index"] for a in store.anchors()] == list(range(entries))
    finally:
        ledger.close()
        store.close()
