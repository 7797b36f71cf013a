"""Ledgers that anchor checkpoints (docs/protocol.md §8), and the local backend.

The interface every backend implements (the EVM backend will too)::

    ledger.backend                      "local" | "evm"
    ledger.anchor(note_text) -> dict    anchor a signed checkpoint; the receipt JSON
    ledger.receipt_for(cp_hash) -> dict | None
    ledger.receipts() -> list[dict]     every receipt, oldest first
    ledger.trust_entry() -> dict        what a verifier pins (§10 "ledgers")
    ledger.close()

Anchoring hashes the checkpoint **body** (``checkpoint_hash``, §8), so a
checkpoint with more co-signatures anchors the same way. Anchoring the same
checkpoint twice returns the first receipt.

:class:`LocalLedger` is the embedded default (§8.1): an append-only,
hash-chained list of entries in its own SQLite file, each entry signed by the
ledger's Ed25519 key. SQLite triggers refuse updates and deletes;
:meth:`LocalLedger.verify` re-checks every link and signature.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.evidence.diskfull import limit_growth
from protocol.anchor import LocalReceipt, sign_local_entry, verify_local_receipt
from protocol.checkpoint import checkpoint_hash
from protocol.keys import b64e, ed25519_public_to_raw
from protocol.note import parse_note

__all__ = ["Ledger", "LedgerError", "LocalLedger"]


class LedgerError(Exception):
    """The ledger refused an operation or failed its own consistency check."""


class Ledger(Protocol):
    backend: str

    def anchor(self, note_text: str) -> dict[str, Any]: ...
    def receipt_for(self, cp_hash: bytes) -> dict[str, Any] | None: ...
    def receipts(self) -> list[dict[str, Any]]: ...
    def trust_entry(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    prev BLOB NOT NULL,
    time INTEGER NOT NULL,
    checkpoint_hash BLOB NOT NULL UNIQUE,
    signature BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class LocalLedger:
    """The local ledger of §8.1 in one SQLite file."""

    backend = "local"

    def __init__(self, path: str | Path, ledger_id: str, private_key: Ed25519PrivateKey) -> None:
        self.path = Path(path)
        self.id = ledger_id
        self._key = private_key
        self.public_key = private_key.public_key()
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        limit_growth(self._db, self.path)  # a test hook (gateway/evidence/diskfull.py)
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM ledger_meta WHERE key = 'id'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO ledger_meta VALUES ('id', ?)", (ledger_id,))
        elif row[0] != ledger_id:
            raise LedgerError(f"{self.path} is ledger {row[0]!r}, not {ledger_id!r}")
        pub = b64e(ed25519_public_to_raw(self.public_key))
        row = self._db.execute("SELECT value FROM ledger_meta WHERE key = 'key'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO ledger_meta VALUES ('key', ?)", (pub,))
        elif row[0] != pub:
            raise LedgerError(f"{self.path} was signed by another key than the configured one")

    def _receipt(self, row: tuple[Any, ...]) -> LocalReceipt:
        idx, prev, t, cph, sig = row
        return LocalReceipt(self.id, idx, bytes(prev), t, bytes(cph), bytes(sig))

    def anchor(self, note_text: str) -> dict[str, Any]:
        """Append an entry for the checkpoint in ``note_text``; return its receipt."""
        body = parse_note(note_text).body
        cph = checkpoint_hash(body)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT * FROM entries WHERE checkpoint_hash = ?", (cph,)
                ).fetchone()
                if row is not None:
                    db.execute("ROLLBACK")
                    return self._receipt(row).to_json()
                last = db.execute("SELECT * FROM entries ORDER BY idx DESC LIMIT 1").fetchone()
                if last is None:
                    index, prev = 0, bytes(32)
                else:
                    index, prev = last[0] + 1, self._receipt(last).entry_hash()
                receipt = sign_local_entry(self._key, self.id, index, prev, int(time.time()), cph)
                db.execute(
                    "INSERT INTO entries VALUES (?,?,?,?,?)",
                    (index, prev, receipt.time, cph, receipt.signature),
                )
            except BaseException:
                if db.in_transaction:  # SQLITE_FULL may have rolled it back already
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return receipt.to_json()

    def receipt_for(self, cp_hash: bytes) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM entries WHERE checkpoint_hash = ?", (cp_hash,)
            ).fetchone()
        return None if row is None else self._receipt(row).to_json()

    def receipts(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM entries ORDER BY idx").fetchall()
        return [self._receipt(r).to_json() for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM entries").fetchone()[0])

    def verify(self) -> int:
        """Re-check the whole ledger: indexes, links and signatures. Return its length."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM entries ORDER BY idx").fetchall()
        prev = bytes(32)
        for i, row in enumerate(rows):
            receipt = self._receipt(row)
            if receipt.index != i:
                raise LedgerError(f"ledger entry {i} is missing (found {receipt.index})")
            if receipt.prev != prev:
                raise LedgerError(f"ledger entry {i} does not link to entry {i - 1}")
            verify_local_receipt(receipt, self.public_key, receipt.checkpoint_hash)
            prev = receipt.entry_hash()
        return len(rows)

    def trust_entry(self) -> dict[str, Any]:
        return {"type": "local", "id": self.id, "key": b64e(ed25519_public_to_raw(self.public_key))}

    def close(self) -> None:
        with self._lock:
            self._db.close()
