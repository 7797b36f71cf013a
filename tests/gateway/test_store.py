"""The SQLite store: one transaction per batch, append-only records, the quarantine."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.evidence.store import (
    SCHEMA_VERSION,
    CheckpointRow,
    RejectRow,
    SignerState,
    SQLiteStore,
    StatementRow,
    StoredRecord,
    WriteBatch,
)


def record(leaf: int, seq: int, signer: str = "tl-1") -> StoredRecord:
    return StoredRecord(
        leaf, signer, seq, 1, 1, 1790000000, 2, 1790000001, bytes([leaf % 256]) * 100
    )


def test_a_batch_commits_all_or_nothing(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "g.db")
    s.commit(
        WriteBatch(
            records=[record(0, 0), record(1, 1)], states=[SignerState("tl-1", 1, b"h", 1, b"h")]
        )
    )
    with pytest.raises(sqlite3.IntegrityError):
        s.commit(
            WriteBatch(
                records=[record(2, 2), record(3, 1)],  # seq 1 again
                counters={"accepted": 2},
            )
        )
    assert s.leaf_count() == 2 and s.counters() == {}
    assert s.signer_states()["tl-1"].contig == 1
    s.close()


def test_records_are_append_only(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "g.db")
    s.commit(WriteBatch(records=[record(0, 0)]))
    s.add_checkpoint(CheckpointRow(1, bytes(32), "note", 1))
    s.close()
    db = sqlite3.connect(tmp_path / "g.db")
    for sql in (
        "UPDATE records SET raw = x'00'",
        "DELETE FROM records",
        "UPDATE checkpoints SET root = x'00'",
        "DELETE FROM checkpoints",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)
    db.close()


def test_identical_rejects_are_counted_not_stored_twice(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "g.db")
    junk = RejectRow(1790000000, "ct/v1/tl-1/rec", "bad_cose", "not tagged", b"junk")
    s.commit(WriteBatch(rejects=[junk, junk]))
    s.commit(
        WriteBatch(rejects=[RejectRow(1790000005, "ct/v1/tl-1/rec", "bad_cose", "x", b"junk")])
    )
    s.commit(WriteBatch(rejects=[RejectRow(1790000006, "t", "oversized", "x", b"big")]))
    rows = s.rejects()
    assert [(r.reason, r.count) for r in rows] == [("oversized", 1), ("bad_cose", 3)]
    assert rows[1].last_seen == 1790000005 and rows[1].raw == b"junk"
    assert s.reject_counts() == {"bad_cose": 3, "oversized": 1}
    assert [r.reason for r in s.rejects(reason="oversized")] == ["oversized"]
    s.close()


def test_signer_state_knows_what_is_stored_above_a_gap(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "g.db")
    s.commit(
        WriteBatch(
            records=[record(0, 0), record(1, 1), record(2, 4), record(3, 6)],
            states=[SignerState("tl-1", contig=1, contig_hash=b"a", max_seq=6, max_hash=b"b")],
        )
    )
    st = s.signer_states()["tl-1"]
    assert st.above == {4, 6} and st.contig == 1
    assert [r.seq for r in s.records_of("tl-1", 0, 10)] == [0, 1, 4, 6]
    assert list(s.raw_between(1, 3)) == [record(1, 1).raw, record(2, 4).raw]
    s.close()


def test_statement_heads_are_the_highest_cseq_of_each_chain(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "g.db")
    rows = [
        StatementRow(0, "reg", 5, "room", 0, 10, b"a" * 16, "tl-1"),
        StatementRow(1, "reg", 6, "09506000134352", 0, 10, b"b" * 16),
        StatementRow(2, "reg", 5, "room", 1, 20, b"c" * 16, None),
    ]
    s.commit(WriteBatch(statements=rows))
    assert [(h.chain, h.cseq, h.devices) for h in s.statement_heads()] == [
        ("09506000134352", 0, None),
        ("room", 1, None),
    ]
    assert [r.leaf for r in s.statements(kind=5, chain="room")] == [0, 2]
    with pytest.raises(sqlite3.IntegrityError):  # one statement per chain position
        s.commit(WriteBatch(statements=[StatementRow(3, "reg", 5, "room", 1, 30, b"d" * 16)]))
    s.close()


def test_a_version_1_database_is_migrated_and_its_scans_indexed(tmp_path: Path) -> None:
    from protocol.keys import generate_p256
    from protocol.record import Scan, make_record

    raw = make_record(
        Scan(
            boot=1,
            seq=0,
            time=1790000000,
            tq=2,
            prev=bytes(16),
            uid=bytes(7),
            action=1,
            place="dock",
            item="/01/09506000134352",
        ),
        "rd-1",
        generate_p256(),
    )
    s = SQLiteStore(tmp_path / "g.db")
    s.commit(WriteBatch(records=[StoredRecord(0, "rd-1", 0, 1, 2, 1790000000, 2, 0, raw)]))
    s.set_meta("schema", "1")  # as version 1 left it: no scans index
    s.close()
    s = SQLiteStore(tmp_path / "g.db")
    assert s.get_meta("schema") == SCHEMA_VERSION == "5"
    assert [r.leaf for r in s.scans_of(uid=bytes(7))] == [0]
    assert [r.leaf for r in s.scans_of(item="/01/09506000134352")] == [0]
    s.set_meta("schema", "6")
    s.close()
    with pytest.raises(RuntimeError, match="newer than this gateway's"):
        SQLiteStore(tmp_path / "g.db")


def test_a_checkpoint_note_may_only_gain_cosignatures(tmp_path: Path) -> None:
    from gateway.evidence.store import CheckpointRow
    from protocol.checkpoint import Checkpoint, cosign_checkpoint, sign_checkpoint
    from protocol.note import NoteSigner, WitnessSigner

    log = NoteSigner.generate("coldtrace.test/gw")
    note = sign_checkpoint(Checkpoint("coldtrace.test/gw", 3, bytes(32)), log)
    s = SQLiteStore(tmp_path / "g.db")
    s.add_checkpoint(CheckpointRow(3, bytes(32), note, 1790000000))
    cosigned = cosign_checkpoint(note, WitnessSigner.generate("w.test/witness"), 1790000001)
    assert s.replace_checkpoint_note(3, cosigned)
    assert s.checkpoint_at(3).note == cosigned and not s.replace_checkpoint_note(3, cosigned)
    other = sign_checkpoint(Checkpoint("coldtrace.test/gw", 3, bytes([1]) * 32), log)
    with pytest.raises(ValueError, match="body differs"):
        s.replace_checkpoint_note(3, other)
    s.close()
    db = sqlite3.connect(tmp_path / "g.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE checkpoints SET note = ?", (other,))
    db.execute("UPDATE checkpoints SET note = ?", (note,))  # lines may come and go
    db.close()
