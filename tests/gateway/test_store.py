"""The gateway store on SQLite and PostgreSQL: one transaction per batch, append-only
records, the quarantine, migrations (every test runs on both engines)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import IntegrityError

from gateway.evidence.store import (
    SCHEMA_VERSION,
    CheckpointRow,
    RejectRow,
    SignerState,
    SqlStore,
    StatementRow,
    StoredRecord,
    StoreError,
    WriteBatch,
    sqlite_url,
)

Opener = Callable[[], SqlStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the same database again on each call: a SQLite file, or a schema of a
    fresh PostgreSQL database (real server, tests/pgserver.py)."""
    opened: list[SqlStore] = []
    if request.param == "sqlite":
        url = str(sqlite_url(tmp_path / "g.db"))
        schema = None
    else:
        url = request.getfixturevalue("pg_url")
        schema = "gw_a"

    def open_() -> SqlStore:
        s = SqlStore(url, schema=schema)
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()


def raw_sql(store: SqlStore, *statements: str) -> None:
    """Run ``statements`` outside the store (as an operator's SQL client would)."""
    opts = {"options": f"-c search_path={store.schema}"} if store.schema else {}
    engine = create_engine(store.url, connect_args=opts)
    try:
        with engine.begin() as c:
            for sql in statements:
                c.exec_driver_sql(sql)
    finally:
        engine.dispose()


def record(leaf: int, seq: int, signer: str = "tl-1") -> StoredRecord:
    return StoredRecord(
        leaf, signer, seq, 1, 1, 1790000000, 2, 1790000001, bytes([leaf % 256]) * 100
    )


def test_a_batch_commits_all_or_nothing(open_db: Opener) -> None:
    s = open_db()
    s.commit(
        WriteBatch(
            records=[record(0, 0), record(1, 1)], states=[SignerState("tl-1", 1, b"h", 1, b"h")]
        )
    )
    with pytest.raises(IntegrityError):
        s.commit(
            WriteBatch(
                records=[record(2, 2), record(3, 1)],  # seq 1 again
                counters={"accepted": 2},
            )
        )
    assert s.leaf_count() == 2 and s.counters() == {}
    assert s.signer_states()["tl-1"].contig == 1
    s.close()
    s = open_db()  # and nothing accepted is lost on reopening
    assert s.leaf_count() == 2 and [r.seq for r in s.records_of("tl-1", 0, 9)] == [0, 1]


def test_records_checkpoints_and_audit_are_append_only(open_db: Opener) -> None:
    s = open_db()
    s.commit(WriteBatch(records=[record(0, 0)]))
    s.add_checkpoint(CheckpointRow(1, bytes(32), "note", 1))
    s.add_audit("op", "acknowledge", "alert-1")
    for sql in (
        "UPDATE records SET raw = raw || raw",
        "DELETE FROM records",
        "UPDATE checkpoints SET time = 2",
        "DELETE FROM checkpoints",
        "UPDATE audit SET actor = 'someone else'",
        "DELETE FROM audit",
    ):
        with pytest.raises(IntegrityError, match="append-only"):
            raw_sql(s, sql)
    if s.dialect == "postgresql":
        for table in ("records", "checkpoints", "audit"):
            with pytest.raises(IntegrityError, match="append-only"):
                raw_sql(s, f"TRUNCATE {table}")
    assert s.leaf_count() == 1 and s.record(0) == record(0, 0)
    assert s.checkpoint_at(1) == CheckpointRow(1, bytes(32), "note", 1)
    assert [a["actor"] for a in s.audit_log()] == ["op"]


def test_identical_rejects_are_counted_not_stored_twice(open_db: Opener) -> None:
    s = open_db()
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


def test_signer_state_knows_what_is_stored_above_a_gap(open_db: Opener) -> None:
    s = open_db()
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


def test_statement_heads_are_the_highest_cseq_of_each_chain(open_db: Opener) -> None:
    s = open_db()
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
    with pytest.raises(IntegrityError):  # one statement per chain position
        s.commit(WriteBatch(statements=[StatementRow(3, "reg", 5, "room", 1, 30, b"d" * 16)]))
    s.close()


LEGACY_DB = Path(__file__).parent / "data" / "gateway-v4.db"  # made by the pre-Alembic store


@pytest.mark.parametrize("version", ["5", "4", "1"])
def test_a_database_made_before_alembic_opens_with_its_data(tmp_path: Path, version: str) -> None:
    db_file = tmp_path / "g.db"
    db_file.write_bytes(LEGACY_DB.read_bytes())
    if version == "1":  # as version 1 left it: no scans index, no alerts, no audit
        db = sqlite3.connect(db_file)
        db.executescript(
            "DELETE FROM scans; DROP TABLE alerts; DROP TRIGGER audit_no_delete;"
            " DROP TRIGGER audit_no_update; DROP TABLE audit;"
            " UPDATE meta SET value = '1' WHERE key = 'schema';"
        )
        db.close()
    if version == "5":  # as the quarantine caps' code (before Alembic) left it
        db = sqlite3.connect(db_file)
        db.executescript(
            "ALTER TABLE quarantine ADD COLUMN size INTEGER;"
            " CREATE TABLE quarantine_dropped (cause TEXT NOT NULL, reason TEXT NOT NULL,"
            " device TEXT NOT NULL, count INTEGER NOT NULL, bytes INTEGER NOT NULL,"
            " first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, digest BLOB NOT NULL,"
            " PRIMARY KEY (cause, reason, device));"
            " CREATE TABLE released (id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
            " raw BLOB NOT NULL, reason TEXT NOT NULL, created INTEGER NOT NULL,"
            " done INTEGER NOT NULL DEFAULT 0);"
            " UPDATE meta SET value = '5' WHERE key = 'schema';"
        )
        db.close()
    s = SqlStore(sqlite_url(db_file))
    assert s.get_meta("schema") == SCHEMA_VERSION == "5"
    assert s._one("SELECT version_num FROM alembic_version")[0] == "0002"
    assert s.quarantine_usage()[0] == 1 and s.rejects()[0].size is None
    assert s.leaf_count() == 1 and s.record(0).signer == "rd-1"
    assert [r.leaf for r in s.scans_of(uid=bytes(7))] == [0]
    assert [r.leaf for r in s.scans_of(item="/01/09506000134352")] == [0]
    assert s.signer_states()["rd-1"].contig_hash == b"h" * 16
    assert s.reject_counts() == {"bad_cose": 1} and s.counters() == {"accepted": 1}
    assert s.latest_checkpoint().note == "origin\n1\nroot\n"
    if version != "1":
        assert s.alert("a1")["event"]["kind"] == "temp_high"
        assert [a["action"] for a in s.audit_log()] == ["acknowledge"]
    s.commit(WriteBatch(records=[record(1, 5, "rd-1")]))  # the old tables take new rows
    s.add_audit("op", "escalate", "a1")
    with pytest.raises(IntegrityError, match="append-only"):
        raw_sql(s, "DELETE FROM records")
    with pytest.raises(IntegrityError, match="append-only"):
        raw_sql(s, "UPDATE audit SET actor = 'x'")
    s.close()
    s = SqlStore(sqlite_url(db_file))  # opening again changes nothing
    assert s.leaf_count() == 2 and s.get_meta("schema") == "5"
    s.close()


def test_a_database_newer_than_the_gateway_is_refused(tmp_path: Path) -> None:
    db_file = tmp_path / "g.db"
    db_file.write_bytes(LEGACY_DB.read_bytes())
    db = sqlite3.connect(db_file)
    db.execute("UPDATE meta SET value = '6' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this gateway's"):
        SqlStore(sqlite_url(db_file))
    SqlStore(sqlite_url(tmp_path / "new.db")).close()
    db = sqlite3.connect(tmp_path / "new.db")
    db.execute("UPDATE alembic_version SET version_num = '0999'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer gateway"):
        SqlStore(sqlite_url(tmp_path / "new.db"))


def test_two_gateways_share_one_postgresql_database_in_their_own_schemas(pg_url: str) -> None:
    a, b = SqlStore(pg_url, schema="gw_a"), SqlStore(pg_url, schema="gw_b")
    a.commit(WriteBatch(records=[record(0, 0, "tl-a")]))
    b.commit(WriteBatch(records=[record(0, 0, "tl-b"), record(1, 1, "tl-b")]))
    assert (a.leaf_count(), b.leaf_count()) == (1, 2)
    assert a.record(0).signer == "tl-a" and b.record(0).signer == "tl-b"
    a.close()
    b.close()


def test_an_unreachable_postgresql_is_a_sentence_without_the_password(tmp_path: Path) -> None:
    from gateway.evidence.store import postgres_url
    from gateway.transport.broker import free_port

    pw = tmp_path / "pw"
    pw.write_text("s3cret-word\n")
    url = postgres_url(f"postgresql://gw@127.0.0.1:{free_port()}/coldtrace", pw)
    with pytest.raises(StoreError) as info:
        SqlStore(url, schema="gw")
    msg = str(info.value)
    assert msg.startswith("cannot open the gateway database postgresql+psycopg://gw:***@")
    assert "s3cret-word" not in msg and "\n" not in msg


def test_a_checkpoint_note_may_only_gain_cosignatures(open_db: Opener) -> None:
    from gateway.evidence.store import CheckpointRow
    from protocol.checkpoint import Checkpoint, cosign_checkpoint, sign_checkpoint
    from protocol.note import NoteSigner, WitnessSigner

    log = NoteSigner.generate("coldtrace.test/gw")
    note = sign_checkpoint(Checkpoint("coldtrace.test/gw", 3, bytes(32)), log)
    s = open_db()
    s.add_checkpoint(CheckpointRow(3, bytes(32), note, 1790000000))
    cosigned = cosign_checkpoint(note, WitnessSigner.generate("w.test/witness"), 1790000001)
    assert s.replace_checkpoint_note(3, cosigned)
    assert s.checkpoint_at(3).note == cosigned and not s.replace_checkpoint_note(3, cosigned)
    other = sign_checkpoint(Checkpoint("coldtrace.test/gw", 3, bytes([1]) * 32), log)
    with pytest.raises(ValueError, match="body differs"):
        s.replace_checkpoint_note(3, other)
    quoted = other.replace("'", "''")
    with pytest.raises(IntegrityError, match="append-only"):
        raw_sql(s, f"UPDATE checkpoints SET note = '{quoted}'")
    raw_sql(s, "UPDATE checkpoints SET note = '" + note.replace("'", "''") + "'")  # lines may go
    assert s.checkpoint_at(3).note == note


def test_quarantine_caps_purge_release_and_anchor_replacement(open_db: Opener) -> None:
    from gateway.evidence.store import Anchor, DroppedRow

    s = open_db()
    junk = [
        RejectRow(1790000000 + i, f"ct/v1/tl-{i % 2}/rec", "bad_cose", "x", b"j%d" % i)
        for i in range(4)
    ]
    dropped = DroppedRow("full", "bad_cose", "tl-9", 2, 20, 5, 9, digests=[bytes(32), bytes(32)])
    s.commit(WriteBatch(rejects=junk, dropped=[dropped]))
    s.commit(WriteBatch(dropped=[DroppedRow("full", "bad_cose", "tl-9", 1, 10, 3, 12)]))
    (d,) = s.quarantine_dropped()
    assert (d.count, d.bytes, d.first_seen, d.last_seen) == (3, 30, 3, 12)
    assert s.quarantine_usage()[0] == 4
    assert s.release_rejects(device="tl-1") == (2, 0)
    assert sorted(raw for _i, _t, raw in s.released_pending()) == [b"j1", b"j3"]
    out = s.purge_rejects(actor="op")
    assert (out["rows"], out["messages"]) == (2, 2) and s.rejects() == []
    assert [a["action"] for a in s.audit_log()] == ["purge", "release"]
    s.add_checkpoint(CheckpointRow(5, bytes(32), "n", 1))
    s.add_anchor(Anchor(5, "evm", {"tx": "a"}, 1))
    s.replace_anchor(Anchor(5, "evm", {"tx": "b"}, 2))
    assert [(a.size, a.receipt) for a in s.anchors()] == [(5, {"tx": "b"})]


def test_gateways_opening_a_new_database_together_migrate_it_once(open_db: Opener) -> None:
    """A fleet starting at once, or the CLI beside the gateway: one migration, no error."""
    import threading

    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            open_db().commit(WriteBatch(counters={"opened": 1}))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    s = open_db()
    assert s.counters() == {"opened": 4} and s.get_meta("schema") == SCHEMA_VERSION
    assert s._all("SELECT version_num FROM alembic_version") == [("0002",)]


def test_the_dashboard_views_answer_on_both_engines(open_db: Opener) -> None:
    from gateway.evidence.store import Anchor

    s = open_db()
    s.commit(
        WriteBatch(
            records=[record(0, 0), record(1, 1), record(2, 0, "rd-1")],
            scans=[(2, bytes(7), 1, "/01/09506000134352")],
            presence=[("tl-1", "online", 5), ("rd-1", "offline", 6)],
        )
    )
    s.add_checkpoint(CheckpointRow(3, bytes(32), "n", 1))
    s.add_anchor(Anchor(3, "local", {"i": 0}, 2))
    before = s.changes()
    assert [r.seq for r in s.newest_of("tl-1", (1,), 5)] == [1, 0]
    assert [r.leaf for r in s.recent_records(1, after=0)] == [1, 2]
    assert s.scan_mark() == (2, 1)
    ((uid, action, scan, item),) = s.last_scans()
    assert (uid, action, scan.leaf, item) == (bytes(7), 1, 2, "/01/09506000134352")
    assert [c.size for c in s.recent_checkpoints()] == [3]
    assert [a.receipt for a in s.recent_anchors()] == [{"i": 0}]
    s.commit(WriteBatch(presence=[("rd-1", "online", 7)]))
    assert s.changes() != before


def test_a_lost_postgresql_connection_fails_one_call_and_the_next_reconnects(
    pg_url: str,
) -> None:
    from sqlalchemy.exc import DBAPIError

    s = SqlStore(pg_url, schema="gw_a")
    s.commit(WriteBatch(records=[record(0, 0)]))
    pid = s._one("SELECT pg_backend_pid()")[0]
    engine = create_engine(pg_url)
    with engine.begin() as c:  # as a server restart or a network cut would
        c.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
    engine.dispose()
    with pytest.raises(DBAPIError):
        s.commit(WriteBatch(records=[record(1, 1)]))
    s.commit(WriteBatch(records=[record(1, 1)]))  # a new connection; nothing half-written
    assert s.leaf_count() == 2 and [r.seq for r in s.records_of("tl-1", 0, 9)] == [0, 1]
    assert s._one("SELECT pg_backend_pid()")[0] != pid
    s.close()
