"""The local ledger (docs/protocol.md §8.1): append-only, hash-chained, signed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.evidence.ledger import LedgerError, LocalLedger
from protocol.anchor import LocalReceipt, verify_local_chain, verify_local_receipt
from protocol.checkpoint import Checkpoint, checkpoint_hash, sign_checkpoint
from protocol.keys import generate_ed25519
from protocol.note import NoteSigner

ORIGIN = "coldtrace.test/ledger"


def notes(n: int) -> list[str]:
    signer = NoteSigner.generate(ORIGIN)
    return [sign_checkpoint(Checkpoint(ORIGIN, i + 1, bytes([i]) * 32), signer) for i in range(n)]


def test_receipts_chain_and_verify(tmp_path: Path) -> None:
    key = generate_ed25519()
    ledger = LocalLedger(tmp_path / "l.db", f"{ORIGIN}/ledger", key)
    ns = notes(5)
    receipts = [LocalReceipt.from_json(ledger.anchor(n)) for n in ns]
    assert [r.index for r in receipts] == list(range(5))
    assert receipts[0].prev == bytes(32)
    for r, n in zip(receipts, ns, strict=True):
        body = n.split("\n\n")[0] + "\n"
        verify_local_receipt(r, key.public_key(), checkpoint_hash(body))
    verify_local_chain(receipts)
    assert ledger.verify() == 5
    # Anchoring the same checkpoint again returns the first receipt.
    assert ledger.anchor(ns[2]) == receipts[2].to_json()
    assert len(ledger) == 5
    assert ledger.receipts() == [r.to_json() for r in receipts]
    assert ledger.trust_entry()["type"] == "local"
    ledger.close()


def test_entries_cannot_be_changed_or_deleted(tmp_path: Path) -> None:
    ledger = LocalLedger(tmp_path / "l.db", f"{ORIGIN}/ledger", generate_ed25519())
    for n in notes(2):
        ledger.anchor(n)
    ledger.close()
    db = sqlite3.connect(tmp_path / "l.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE entries SET time = 0 WHERE idx = 0")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM entries WHERE idx = 1")
    db.close()


def test_verify_finds_a_tampered_entry(tmp_path: Path) -> None:
    key = generate_ed25519()
    ledger = LocalLedger(tmp_path / "l.db", f"{ORIGIN}/ledger", key)
    for n in notes(3):
        ledger.anchor(n)
    ledger.close()
    db = sqlite3.connect(tmp_path / "l.db")
    db.execute("DROP TRIGGER entries_no_update")  # someone with the file, not the key
    db.execute("UPDATE entries SET time = time + 1 WHERE idx = 1")
    db.commit()
    db.close()
    ledger = LocalLedger(tmp_path / "l.db", f"{ORIGIN}/ledger", key)
    with pytest.raises(Exception, match=r"signature|link"):
        ledger.verify()
    ledger.close()


def test_a_ledger_file_keeps_its_id_and_key(tmp_path: Path) -> None:
    key = generate_ed25519()
    LocalLedger(tmp_path / "l.db", f"{ORIGIN}/ledger", key).close()
    with pytest.raises(LedgerError, match="is ledger"):
        LocalLedger(tmp_path / "l.db", f"{ORIGIN}/other", key)
    with pytest.raises(LedgerError, match="another key"):
        LocalLedger(tmp_path / "l.db", f"{ORIGIN}/ledger", generate_ed25519())
