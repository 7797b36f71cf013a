"""`coldtrace gateway rotate log|ledger`: a new log key under a new origin and a new local
ledger key under a new id. The tree goes on; checkpoints before and after verify under
the trust file the command writes (the old keys and the new), consistently; anchors
before are on the old ledger, after on the new one; bad input changes nothing."""

from __future__ import annotations

import json

import pytest

from gateway.config import load_config, set_toml_keys
from gateway.evidence.proofs import TreeReader
from gateway.evidence.store import open_store
from gateway.rotate import own_trust
from protocol.anchor import LocalReceipt, verify_local_receipt
from protocol.checkpoint import checkpoint_hash, open_checkpoint
from protocol.cli import main as coldtrace
from protocol.merkle import verify_consistency
from protocol.note import parse_note
from protocol.trust import load_trust
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.env import GatewayDir


def _run(gw: GatewayDir, dev: SimDevice, n: int) -> None:
    """Start the gateway on its current configuration, log ``n`` records, stop."""
    gw.cfg = load_config(gw.config_path)
    gateway = gw.start_gateway()
    try:
        dev.connect(gw.broker.port, gw.broker.password(dev.id))
        first = dev.acked
        for k in range(n):
            dev.publish(dev.reading(temp=400 + k))
        wait_for(lambda: dev.acked == first + n, 30, "records acked")
        size = gateway.store.leaf_count()
        wait_for(
            lambda: gateway.log.last_anchor is not None and gateway.log.last_anchor.size == size,
            30,
            "a checkpoint of every record, anchored",
        )
    finally:
        gateway.stop()
        dev.disconnect()


def test_rotated_log_and_ledger_keys_keep_old_and_new_evidence_verifiable(
    make_broker, make_gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = make_broker(["tl-1"])
    gw = make_gateway(broker)
    dev = SimDevice("tl-1")
    gw.register(dev)
    _run(gw, dev, 5)
    conf = str(gw.config_path)
    old_key = gw.cfg.log.key_file.read_text()
    handed_out = gw.dir / "trust-2026.json"  # the trust file verifiers have so far
    assert coldtrace(["gateway", "trust", "-c", conf, "-o", str(handed_out)]) == 0

    assert coldtrace(["gateway", "rotate", "-c", conf, "log", "coldtrace.test/gw/2027"]) == 0
    assert coldtrace(["gateway", "rotate", "-c", conf, "ledger", "coldtrace.test/ledger-2"]) == 0
    out = capsys.readouterr().out
    assert "pins the new key and the old one" in out
    cfg = load_config(conf)
    assert cfg.log.origin == "coldtrace.test/gw/2027" and cfg.log.key_file.name == "log-2.skey"
    assert cfg.ledger.id == "coldtrace.test/ledger-2" and cfg.ledger_path.name == "ledger-2.db"
    assert cfg.witness.name == "coldtrace.test/gw/witness"  # the witness key keeps its name
    assert (gw.dir / "keys" / "log.skey").read_text() == old_key  # the old key is kept
    assert oct(cfg.log.key_file.stat().st_mode & 0o777) == "0o600"
    assert list(gw.dir.glob("gateway.toml.before-log-rotation-*"))

    _run(gw, dev, 5)

    trust = load_trust(gw.dir / "trust.json")
    assert sorted(v.name for v in trust.logs) == ["coldtrace.test/gw", "coldtrace.test/gw/2027"]
    assert set(trust.ledgers) == {"coldtrace.test/gw/ledger", "coldtrace.test/ledger-2"}
    store = open_store(cfg.db_path)
    try:
        cps = [open_checkpoint(c.note, trust.logs) for c in store.checkpoints()]
        assert {c.origin for c in cps} == {"coldtrace.test/gw", "coldtrace.test/gw/2027"}
        before = max((c for c in cps if c.origin == "coldtrace.test/gw"), key=lambda c: c.size)
        after = cps[-1]
        assert after.origin == "coldtrace.test/gw/2027" and after.size == before.size + 5
        reader = TreeReader(cfg.tree_dir, after.size)
        try:
            proof = reader.consistency_proof(before.size, after.size)
        finally:
            reader.close()
        verify_consistency(before.size, after.size, proof, before.root_hash, after.root_hash)
        notes = {c.size: c.note for c in store.checkpoints()}
        for anchor in store.anchors():
            receipt = LocalReceipt.from_json(anchor.receipt)
            body_hash = checkpoint_hash(parse_note(notes[anchor.size]).body)
            verify_local_receipt(receipt, trust.ledgers[receipt.ledger], body_hash)
        last = LocalReceipt.from_json(store.latest_anchor().receipt)  # type: ignore[union-attr]
        assert last.ledger == "coldtrace.test/ledger-2" and last.index == 0
    finally:
        store.close()

    # A backup keeps the receipts of the ledger rotated out (none is "redone").
    assert coldtrace(["gateway", "backup", "-c", conf, str(gw.dir / "backup")]) == 0
    assert json.loads((gw.dir / "backup" / "backup.json").read_text())["anchors_to_redo"] == 0

    # `gateway trace` checks its bundles with the keys before the rotation too.
    assert {e["origin"] for e in own_trust(cfg)["logs"]} == {
        "coldtrace.test/gw",
        "coldtrace.test/gw/2027",
    }
    (gw.dir / "trust.json").write_text("{not json")
    assert [e["origin"] for e in own_trust(cfg)["logs"]] == ["coldtrace.test/gw/2027"]

    # `trust --keep` gives the same merged file from the current configuration.
    kept = gw.dir / "trust.json.kept"
    assert (
        coldtrace(["gateway", "trust", "-c", conf, "--keep", str(handed_out), "-o", str(kept)]) == 0
    )
    assert {e["origin"] for e in json.loads(kept.read_text())["logs"]} == {
        "coldtrace.test/gw",
        "coldtrace.test/gw/2027",
    }


def test_rotation_refuses_bad_names_and_changes_nothing(
    make_broker, make_gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = make_gateway(make_broker([]))
    conf = str(gw.config_path)
    text = gw.config_path.read_text()
    keys = sorted(p.name for p in (gw.dir / "keys").iterdir())
    for args, why in (
        (["log", "coldtrace.test/gw"], "is the current origin"),
        (["log", "has space"], "not a name of the origin syntax"),
        (["ledger", "coldtrace.test/gw/ledger"], "is the current ledger id"),
    ):
        assert coldtrace(["gateway", "rotate", "-c", conf, *args]) == 2
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err
    assert gw.config_path.read_text() == text
    assert sorted(p.name for p in (gw.dir / "keys").iterdir()) == keys
    with open(gw.config_path, "a", encoding="utf-8") as f:
        f.write('\n[cloud]\nurl = "https://cloud.example.com"\n')
    assert coldtrace(["gateway", "rotate", "-c", conf, "log", "coldtrace.test/gw/2"]) == 2
    assert "pushes its log to [cloud]" in capsys.readouterr().err
    assert sorted(p.name for p in (gw.dir / "keys").iterdir()) == keys


def test_set_keys_edits_one_table_and_keeps_the_rest() -> None:
    text = '# site\n[log]\norigin = "a/b"  # old\nkey_file = "k"\n\n[ledger]\nid = "x"\n'
    out = set_toml_keys(text, "log", {"origin": "a/c", "retired": 1})
    assert out == (
        '# site\n[log]\norigin = "a/c"\nkey_file = "k"\nretired = 1\n\n[ledger]\nid = "x"\n'
    )
    assert set_toml_keys(out, "witness", {"name": "a/b/witness"}).endswith(
        '[ledger]\nid = "x"\n\n[witness]\nname = "a/b/witness"\n'
    )
