"""Fault suite, disks: the gateway's disk fills, then the cloud's.

Both fill for real as far as SQLite can tell (``PRAGMA max_page_count`` set by the
test hook ``COLDTRACE_TEST_SQLITE_GROWTH``: gateway/evidence/diskfull.py for the
gateway, cloud/db.py for the cloud): a genuine SQLITE_FULL without filling a
file system.

- The gateway (``coldtrace gateway run``, a process) meets a full disk while
  devices publish the day: it stops with exit status 75 and one sentence, no
  traceback; its database passes ``PRAGMA integrity_check``; every acked record
  is in it; the cloud holds a prefix of its log. Started again with room, it
  takes the devices' resends, pushes the rest, and the end-of-scenario checks
  hold.
- The cloud's disk fills between two pushes: each push is answered
  ``507 disk_full`` with a sentence (no 500, no traceback), refused whole (the
  cloud's size and records do not move; no partial batch), the database passes
  ``integrity_check``; the gateway keeps retrying, and once there is room again
  (the hook gone, no restart) its next push is stored.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from cloud import db
from cloud.app import DISK_FULL
from gateway.evidence.diskfull import EXIT_DISK_FULL
from gateway.evidence.store import open_store
from tests.gateway.cloudenv import CloudServer
from tests.gateway.conftest import make_broker, make_gateway  # noqa: F401 (fixtures)
from tests.gateway.devices import wait_for
from tests.gateway.env import ORIGIN
from tests.gateway.logcheck import check_log_and_ledger
from tests.gateway.test_crash import resend_until_acked
from tests.gateway.test_diskfull import HOOK, SENTENCE, log_of, start
from tests.gateway.test_push import caught_up, gateway_state, more_readings, with_cloud
from tests.gateway.test_trace import Scenario
from tests.reliability.cloudcheck import (
    check_cloud,
    check_devices,
    cloud_verdict,
    finish_trace,
    reference_verdict,
    scenario_devices,
    verdict_shape,
    write_counts,
)
from tests.soak import scale

MORE = scale(60, 2000)  # readings pushed against the cloud's full disk


def integrity(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


def cloud_raws(cloud: CloudServer) -> list[bytes]:
    with cloud.engine.connect() as conn:
        rows = conn.execute(
            db.records.select()
            .where(db.records.c.log_id == cloud.log_row(ORIGIN).id)
            .order_by(db.records.c.idx)
        ).all()
    return [bytes(r.raw) for r in rows]


def end_checks(s: Scenario, cloud: CloudServer) -> dict:
    devices = check_devices(s.env, scenario_devices(s))
    store = open_store(s.env.cfg)
    try:
        check_log_and_ledger(s.env.cfg, store, 100)
    finally:
        store.close()
    in_cloud = check_cloud(s.env, cloud)
    return {
        **devices,
        **in_cloud,
        "lost": devices["published"] - devices["stored"],
        "duplicates": in_cloud["cloud_duplicates"],
    }


def test_a_full_gateway_disk_stops_it_cleanly_and_it_resumes_with_room(
    make_broker,  # noqa: F811
    make_gateway,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    reference = reference_verdict(make_broker, make_gateway, tmp_path / "reference")
    s = Scenario(make_broker, make_gateway, batch_size=10)  # the day in several batches
    env = s.env
    cloud = CloudServer(tmp_path / "cloud")
    cloud.join("acme", env.cfg)
    with_cloud(env, cloud.url)
    cloud.start()
    devs = scenario_devices(s)
    proc = start(env, monkeypatch, "gateway.db=4")  # 16 KB to grow: about half the day
    try:
        wait_for(lambda: "subscribed to" in log_of(env), 30, "gateway subscribed")
        env.connect(*devs)
        s.publish_day()
        assert proc.wait(60) == EXIT_DISK_FULL
        acked = {d.id: d.acked for d in devs}
        text = log_of(env)
        assert text.count(SENTENCE) == 1 and "Traceback" not in text
        assert integrity(env.cfg.db_path) == "ok"
        store = open_store(env.cfg)
        try:
            for d in devs:  # everything acked is stored, in one piece
                seqs = [r.seq for r in store.records_of(d.id, 0, 2**32)]
                assert seqs[: acked[d.id] + 1] == list(range(acked[d.id] + 1)), d.id
            at_full = store.leaf_count()
            gw_raws = list(store.raw_between(0, at_full))
        finally:
            store.close()
        unacked = sum(len(d.unacked) for d in devs)
        assert unacked > 0, "the disk filled after the whole day was acked"
        in_cloud_at_full = cloud_raws(cloud)
        assert in_cloud_at_full == gw_raws[: len(in_cloud_at_full)]  # a prefix, no more

        proc = start(env, monkeypatch, None)  # room again
        wait_for(lambda: log_of(env).count("subscribed to") == 2, 30, "the second start")
        resend_until_acked(devs, timeout=90)
        wait_for(lambda: caught_up(env, cloud), 60, "the cloud caught up")
        verdict = finish_trace(s, cloud, tmp_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        cloud.stop()
    assert integrity(env.cfg.db_path) == "ok"
    counts = end_checks(s, cloud)
    assert verdict_shape(verdict, s.t0) == reference and verdict["verdict"] == "PASS"
    write_counts(
        "gateway_disk_full",
        **counts,
        exit_status=EXIT_DISK_FULL,
        stored_when_full=at_full,
        unacked_when_full=unacked,
        in_cloud_when_full=len(in_cloud_at_full),
        verdict=verdict["verdict"],
    )


def test_a_full_cloud_disk_refuses_pushes_whole_with_507_and_takes_them_with_room(
    make_broker,  # noqa: F811
    make_gateway,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="coldtrace.cloud")
    reference = reference_verdict(make_broker, make_gateway, tmp_path / "reference")
    s = Scenario(make_broker, make_gateway)
    env = s.env
    cloud = CloudServer(tmp_path / "cloud")
    cloud.join("acme", env.cfg)
    with_cloud(env, cloud.url)
    cloud.recorded = []
    cloud.start()
    gw = env.start_gateway()
    try:
        env.connect(*scenario_devices(s))
        s.run_day()
        wait_for(lambda: caught_up(env, cloud), 60, "the day pushed")
        day = cloud.size(ORIGIN)
        assert cloud.count(db.records, ORIGIN) == day > 0

        monkeypatch.setenv(HOOK, "cloud.db=0")  # the cloud's disk is full from now on
        more_readings(s, 0, MORE)  # the gateway stores and acks them: its disk is fine
        failures = gw.pusher.stats.failures
        wait_for(lambda: failures.get("http_507", 0) >= 2, 60, "pushes refused for space")
        # (A push small enough to fit the database's free pages may still have gone in,
        # as on a real disk; the rest waits in the gateway.)
        held = cloud.size(ORIGIN)
        assert day <= held < gateway_state(env)[0]
        # The answer, as the gateway got it: the last push sent again.
        path, body, auth = cloud.recorded[-1]
        r = httpx.post(cloud.url + path, content=body, headers={"Authorization": auth}, timeout=30)
        assert r.status_code == 507, r.text
        assert r.json() == {"error": "disk_full", "message": DISK_FULL}
        # Refused whole: not a record, checkpoint or receipt of it was kept.
        assert cloud.size(ORIGIN) == cloud.count(db.records, ORIGIN) == held
        with cloud.engine.connect() as conn:
            top = conn.execute(
                db.checkpoints.select()
                .where(db.checkpoints.c.log_id == cloud.log_row(ORIGIN).id)
                .order_by(db.checkpoints.c.size.desc())
            ).first()
        assert top.size == held
        assert integrity(cloud.dir / "cloud.db") == "ok"
        refused = failures["http_507"]

        monkeypatch.delenv(HOOK)  # space freed: no restart
        wait_for(lambda: caught_up(env, cloud), 60, "the backlog pushed once there is room")
        assert cloud.size(ORIGIN) > held
        verdict = finish_trace(s, cloud, tmp_path)
        again = cloud_verdict(cloud)
    finally:
        monkeypatch.delenv(HOOK, raising=False)
        gw.stop()
        cloud.stop()
    assert integrity(cloud.dir / "cloud.db") == "ok"
    cloud_logs = [r for r in caplog.records if r.name == "coldtrace.cloud"]
    assert any('"event": "disk_full"' in r.getMessage() for r in cloud_logs)
    assert not [r for r in cloud_logs if r.exc_info], "a traceback in the cloud's log"
    assert '"status": 500' not in caplog.text
    counts = end_checks(s, cloud)
    assert verdict_shape(verdict, s.t0) == reference == verdict_shape(again, s.t0)
    write_counts(
        "cloud_disk_full",
        **counts,
        in_cloud_before_full=day,
        held_when_full=held,
        pushes_refused_507=refused,
        verdict=verdict["verdict"],
    )
