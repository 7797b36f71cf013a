"""A full disk: one sentence, exit status 75, the store and ledger closed, nothing acked lost.

The disk fills for real as far as SQLite can tell: ``PRAGMA max_page_count``
(set through the test hook ``COLDTRACE_TEST_SQLITE_GROWTH``,
gateway/evidence/diskfull.py) makes the database refuse to grow with a
genuine SQLITE_FULL ("database or disk is full"), as a full file system
would, without mounting anything. ``coldtrace gateway run`` runs as its own
process, as an operator runs it; its log must hold the sentence once and no
traceback, and once there is room again (the hook gone) it must start and
end up with every record stored exactly once, acked, checkpointed and
anchored.
"""

from __future__ import annotations

import signal
import sqlite3
import threading

import pytest

from gateway.config import load_config
from gateway.evidence.diskfull import EXIT_DISK_FULL, DiskFull, is_disk_full
from gateway.evidence.ledger import LocalLedger
from gateway.evidence.store import open_store
from protocol.keys import load_ed25519_private_key
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.env import GatewayDir
from tests.gateway.test_crash import check_exactly_once, publish_stream, resend_until_acked

HOOK = "COLDTRACE_TEST_SQLITE_GROWTH"
SENTENCE = "is full: free space and start again"


def start(env: GatewayDir, monkeypatch: pytest.MonkeyPatch, hook: str | None):
    if hook is not None:
        monkeypatch.setenv(HOOK, hook)
    try:
        return env.start_process()
    finally:
        monkeypatch.delenv(HOOK, raising=False)


def log_of(env: GatewayDir) -> str:
    return (env.dir / "gateway.log").read_text()


def stored_seqs(env: GatewayDir, dev: SimDevice) -> list[int]:
    store = open_store(env.cfg)
    try:
        return [r.seq for r in store.records_of(dev.id, 0, 2**32)]
    finally:
        store.close()


def finish(env: GatewayDir, monkeypatch, devs, sent, runs: int) -> None:
    """Start without the hook: everything gets in; stop cleanly; check exactly once."""
    proc = start(env, monkeypatch, None)
    wait_for(lambda: log_of(env).count("subscribed to") == runs, 30, "the last start")
    resend_until_acked(devs, timeout=90)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    check_exactly_once(env.cfg, sent, devs)


def test_a_full_disk_during_ingest_stops_with_one_sentence(make_broker, make_gateway, monkeypatch):
    devs = [SimDevice("tl-full1"), SimDevice("tl-full2")]
    broker = make_broker([d.id for d in devs])
    env = make_gateway(broker, batch_size=100)
    env.register(*devs)
    proc = start(env, monkeypatch, "gateway.db=40")  # 160 KB to grow: about 500 records
    wait_for(lambda: "subscribed to" in log_of(env), 30, "gateway subscribed")
    env.connect(*devs)
    stop = threading.Event()
    result: dict = {}
    publisher = threading.Thread(
        target=lambda: result.setdefault("sent", publish_stream(devs, 1500, 0.002, stop))
    )
    publisher.start()
    assert proc.wait(60) == EXIT_DISK_FULL
    acked = {d.id: d.acked for d in devs}
    publisher.join(60)
    text = log_of(env)
    assert text.count(SENTENCE) == 1 and f"the disk holding {env.cfg.data_dir} {SENTENCE}" in text
    assert "Traceback" not in text
    for d in devs:  # everything acked is stored, in one piece
        seqs = stored_seqs(env, d)
        assert seqs[: acked[d.id] + 1] == list(range(acked[d.id] + 1))
    assert 0 < sum(len(stored_seqs(env, d)) for d in devs) < 3000
    finish(env, monkeypatch, devs, result["sent"], 2)


def test_a_full_ledger_is_reported_at_run_and_at_recovery(make_broker, make_gateway, monkeypatch):
    dev = SimDevice("tl-ledger")
    broker = make_broker([dev.id])
    env = make_gateway(broker, batch_size=20)
    text = env.config_path.read_text().replace(
        "checkpoint_interval = 0.5", "checkpoint_interval = 0.1"
    )
    env.config_path.write_text(text)
    env.register(dev)
    cfg = env.cfg
    LocalLedger(
        cfg.ledger_path, cfg.ledger.id, load_ed25519_private_key(cfg.ledger.key_file)
    ).close()
    proc = start(env, monkeypatch, "ledger.db=0")  # the ledger cannot grow by a page
    wait_for(lambda: "subscribed to" in log_of(env), 30, "gateway subscribed")
    env.connect(dev)
    stop = threading.Event()
    result: dict = {}
    publisher = threading.Thread(
        target=lambda: result.setdefault("sent", publish_stream([dev], 3000, 0.01, stop))
    )
    publisher.start()
    try:
        assert proc.wait(90) == EXIT_DISK_FULL  # anchoring a checkpoint filled the ledger
    finally:
        stop.set()
        publisher.join(60)
    assert log_of(env).count(SENTENCE) == 1 and "Traceback" not in log_of(env)
    store = open_store(cfg)
    try:  # the checkpoint was signed and stored; its anchor is what could not be written
        assert store.latest_checkpoint().size > store.latest_anchor().size
    finally:
        store.close()
    # At start, recover() must anchor that checkpoint: the ledger is still full.
    proc = start(env, monkeypatch, "ledger.db=0")
    assert proc.wait(60) == EXIT_DISK_FULL
    text = log_of(env)
    assert text.count(SENTENCE) == 2 and "Traceback" not in text
    assert f"coldtrace gateway: the disk holding {cfg.data_dir} {SENTENCE}" in text
    # Both files were closed cleanly: no WAL left behind, nothing locked.
    assert not cfg.ledger_path.with_name("ledger.db-wal").exists()
    assert not cfg.db_path.with_name("gateway.db-wal").exists()
    finish(env, monkeypatch, [dev], result["sent"], 2)


def test_a_full_disk_is_recognised_through_every_layer(tmp_path) -> None:
    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    db.execute("CREATE TABLE t (x BLOB)")
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(sqlite3.OperationalError) as full:
        for _ in range(100):
            db.execute("INSERT INTO t VALUES (?)", (bytes(3000),))
    db.close()
    assert is_disk_full(full.value)
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'y.db'}")
    with engine.connect() as c:
        c.exec_driver_sql("CREATE TABLE t (x BLOB)")
        pages = c.exec_driver_sql("PRAGMA page_count").scalar()
        c.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(sqlalchemy.exc.OperationalError) as wrapped:
            for _ in range(100):
                c.exec_driver_sql("INSERT INTO t VALUES (?)", (bytes(3000),))
    engine.dispose()
    assert is_disk_full(wrapped.value)
    try:
        raise RuntimeError("while writing the tree") from OSError(28, "No space left on device")
    except RuntimeError as exc:
        assert is_disk_full(exc)
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert not is_disk_full(OSError(13, "Permission denied"))
    assert str(DiskFull("/data")) == "the disk holding /data is full: free space and start again"


def test_a_full_ledger_at_shutdown_is_one_sentence_and_files_close(
    make_broker, make_gateway, monkeypatch, caplog
) -> None:
    """The final checkpoint at shutdown cannot be anchored: stop() says so and closes all.

    The ledger may not grow (the hook); checkpoints are signed and anchored by
    hand until an anchor needs a new page, so the next one - the final
    checkpoint of ``stop()`` - needs it too.
    """
    dev = SimDevice("tl-stop")
    broker = make_broker([dev.id])
    env = make_gateway(broker)
    text = env.config_path.read_text().replace(
        "checkpoint_interval = 0.5", "checkpoint_interval = 3600"
    )
    env.config_path.write_text(text)
    env.cfg = load_config(env.config_path)
    env.register(dev)
    cfg = env.cfg
    LocalLedger(
        cfg.ledger_path, cfg.ledger.id, load_ed25519_private_key(cfg.ledger.key_file)
    ).close()
    monkeypatch.setenv(HOOK, "ledger.db=0")
    gw = env.start_gateway()
    monkeypatch.delenv(HOOK)
    env.connect(dev)

    def one_more() -> None:
        size = gw.log.size
        dev.publish(dev.reading())
        wait_for(lambda: gw.log.size == size + 1, 20, "a record logged")

    try:
        for _ in range(200):
            one_more()
            try:
                gw.log.checkpoint()
            except sqlite3.OperationalError as exc:
                assert is_disk_full(exc)
                break
        else:
            raise AssertionError("the ledger never filled")
        one_more()
        caplog.clear()
    finally:
        gw.stop()
    assert gw.exit_code == EXIT_DISK_FULL
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == [f"the disk holding {cfg.data_dir} {SENTENCE}"]
    assert all(r.exc_info is None for r in caplog.records)
    assert not cfg.ledger_path.with_name("ledger.db-wal").exists()
    assert not cfg.db_path.with_name("gateway.db-wal").exists()
    store = open_store(cfg)
    try:  # the final checkpoint is stored, its anchor is what is missing
        assert store.latest_checkpoint().size == store.leaf_count()
        assert store.latest_anchor().size < store.leaf_count()
    finally:
        store.close()
    gw = env.start_gateway()  # room again: the start anchors what is pending
    try:
        assert gw.log.last_anchor.size == gw.log.size
    finally:
        gw.stop()
    assert gw.exit_code == 0
