"""A gateway pushes its log to a real cloud (gateway/push.py): devices -> Mosquitto ->
``coldtrace gateway run`` (a process) -> uvicorn serving cloud/app.py on loopback.

Nothing is lost or stored twice through a cloud that is down at first, a cloud
restart and a kill -9 of the gateway while it pushes; a replayed push is stored
once; the stored checkpoint notes gain the cloud's cosignature, so a trace
bundle verifies against a trust file that requires the cloud witness (quorum 1).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import httpx

from cloud import db
from gateway.config import load_config
from gateway.evidence.store import open_store
from gateway.push import META_SIZE, Pusher
from gateway.service import load_log_signer, trust_document
from protocol.bundle import load_bundle
from protocol.checkpoint import open_cosigned_checkpoint
from protocol.cli import main as coldtrace
from protocol.push import PushBatch, auth_header
from tests.gateway.cloudenv import CloudServer
from tests.gateway.devices import wait_for
from tests.gateway.env import ORIGIN, GatewayDir
from tests.gateway.test_trace import MIN, TRUCK, UID, Scenario


def with_cloud(env: GatewayDir, url: str, **extra: str) -> None:
    """A ``[cloud]`` section pushing to ``url``; ``extra`` adds or overrides keys
    (values as TOML text)."""
    settings = {"url": f'"{url}"', "interval": "0.2", "timeout": "5", "retry_max": "1", **extra}
    lines = [f"{k} = {v}" for k, v in settings.items()]
    with open(env.config_path, "a", encoding="utf-8") as f:
        f.write("\n[cloud]\n" + "\n".join(lines) + "\n")
    env.cfg = load_config(env.config_path)


def gateway_state(env: GatewayDir) -> tuple[int, int, str, int]:
    """(leaves, latest checkpoint size, its note, the cloud size the gateway recorded)."""
    store = open_store(env.cfg)
    try:
        cp = store.latest_checkpoint()
        return (
            store.leaf_count(),
            0 if cp is None else cp.size,
            "" if cp is None else cp.note,
            int(store.get_meta(META_SIZE) or 0),
        )
    finally:
        store.close()


def caught_up(env: GatewayDir, cloud: CloudServer) -> bool:
    leaves, size, _, confirmed = gateway_state(env)
    return leaves == size == cloud.size(ORIGIN) == confirmed


def more_readings(s: Scenario, k0: int, n: int) -> None:
    dev = s.loggers[TRUCK]
    for k in range(k0, k0 + n):
        dev.publish(dev.reading(temp=300, time_=s.t0 + 166 * MIN + k * 10))
    wait_for(lambda: not dev.unacked, 30, "readings acked")


def test_everything_reaches_the_cloud_through_outages_restarts_and_a_kill(
    make_broker, make_gateway, tmp_path: Path
) -> None:
    s = Scenario(make_broker, make_gateway)
    env = s.env
    cloud = CloudServer(tmp_path / "cloud")
    cloud.join("acme", env.cfg)
    with_cloud(env, cloud.url)  # the cloud is down at first
    proc = env.start_process()
    log_path = env.dir / "gateway.log"
    try:
        wait_for(lambda: "subscribed to" in log_path.read_text(), 30, "gateway subscribed")
        env.connect(s.rd_a, s.rd_b, *s.loggers.values())
        s.run_day()
        wait_for(lambda: gateway_state(env)[0] == gateway_state(env)[1], 15, "a checkpoint")
        wait_for(lambda: "push to the cloud failed" in log_path.read_text(), 15, "retries")
        assert cloud.log_row(ORIGIN).size == 0

        # 1. The cloud comes up: the backlog (the gateway's own store) is pushed.
        cloud.start()
        wait_for(lambda: caught_up(env, cloud), 30, "the cloud caught up")

        # 2. The cloud restarts while records arrive.
        cloud.stop()
        more_readings(s, 0, 10)
        cloud.start()
        wait_for(lambda: caught_up(env, cloud), 30, "caught up after the cloud restart")

        # 3. kill -9 while pushing a backlog of several checkpoints (each push takes the
        # slowed cloud 0.4 s), restart: it resumes from the cloud's size.
        cloud.stop()
        for k in (10, 20, 30):
            more_readings(s, k, 10)
            wait_for(lambda: gateway_state(env)[0] == gateway_state(env)[1], 15, "a checkpoint")
        before = cloud.size(ORIGIN)
        cloud.push_delay = 0.4
        cloud.start()
        wait_for(lambda: cloud.size(ORIGIN) > before, 15, "the first batch of the backlog")
        time.sleep(random.Random(7).uniform(0.0, 0.3))  # the next request is in flight
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert cloud.size(ORIGIN) < gateway_state(env)[1], "killed after the backlog was pushed"
        cloud.push_delay = 0.0
        proc = env.start_process()
        wait_for(lambda: caught_up(env, cloud), 30, "caught up after kill -9")

        # Every record once, in order, under the cloud's own mirror of the tree.
        leaves = gateway_state(env)[0]
        assert cloud.count(db.records, ORIGIN) == leaves == cloud.size(ORIGIN)
        store = open_store(env.cfg)
        try:
            with cloud.engine.connect() as conn:
                rows = conn.execute(
                    db.records.select()
                    .where(db.records.c.log_id == cloud.log_row(ORIGIN).id)
                    .order_by(db.records.c.idx)
                ).all()
            assert [bytes(r.raw) for r in rows] == list(store.raw_between(0, leaves))
            assert {a.size for a in store.anchors()} <= {r.size for r in cloud_anchor_rows(cloud)}
            # The stored notes carry the cloud's cosignature (same body as signed).
            witness = cloud.witness()
            signer = load_log_signer(env.cfg)
            cp = store.latest_checkpoint()
            _, cosigs = open_cosigned_checkpoint(cp.note, [signer.verifier()], [witness])
            assert len(cosigs) == 1
            first = store.checkpoints()[0]
            replay = PushBatch(0, list(store.raw_between(0, first.size)), first.note)
        finally:
            store.close()

        # 4. A push replayed is stored once.
        body = json.dumps(replay.to_json()).encode()
        path = f"/v1/logs/{ORIGIN}/push"
        r = httpx.post(
            cloud.url + path,
            content=body,
            headers={"Authorization": auth_header(signer, "POST", path, body)},
        )
        assert r.status_code == 200, r.text
        assert r.json()["duplicate"] and r.json()["stored"] == 0
        assert cloud.count(db.records, ORIGIN) == leaves

        # 5. A trace bundle carries the cloud's cosignature and verifies with quorum 1.
        bundle = tmp_path / "bundle.json"
        assert s.trace(bundle, UID.hex()) == 0  # restates open chains: a new checkpoint
        wait_for(lambda: caught_up(env, cloud), 30, "the restatements pushed")
        wait_for(lambda: cosigned(env, cloud), 15, "the cosigned note stored")
        assert s.trace(bundle, UID.hex()) == 0
        trust = trust_document(env.cfg)
        trust["witnesses"] = [{"vkey": witness.vkey}]
        trust["quorum"] = 1
        trust_path = tmp_path / "trust.json"
        trust_path.write_text(json.dumps(trust))
        assert coldtrace(["verify", str(bundle), "--trust", str(trust_path)]) == 0
        (note,) = load_bundle(bundle).checkpoints
        assert len(open_cosigned_checkpoint(note, [signer.verifier()], [witness])[1]) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        cloud.stop()


def cloud_anchor_rows(cloud: CloudServer) -> list:
    with cloud.engine.connect() as conn:
        return conn.execute(
            db.anchors.select().where(db.anchors.c.log_id == cloud.log_row(ORIGIN).id)
        ).all()


def cosigned(env: GatewayDir, cloud: CloudServer) -> bool:
    note = gateway_state(env)[2]
    signer = load_log_signer(env.cfg)
    return len(open_cosigned_checkpoint(note, [signer.verifier()], [cloud.witness()])[1]) == 1


def test_push_command_waits_for_the_cloud_and_stops_on_a_frozen_log(
    make_broker, make_gateway, tmp_path: Path, capsys
) -> None:
    s = Scenario(make_broker, make_gateway)
    env = s.env
    cloud = CloudServer(tmp_path / "cloud")
    cloud.join("acme", env.cfg)
    with_cloud(env, cloud.url)
    gw = env.start_gateway()  # in-process, to log the registrations and sign a checkpoint
    try:
        wait_for(lambda: gw.log.last_anchor is not None, 15, "an anchor")
    finally:
        gw.stop()
    args = ["gateway", "push", "-c", str(env.config_path)]
    assert coldtrace([*args, "--wait", "1"]) == 1  # the cloud is down
    assert "not everything was pushed" in capsys.readouterr().err
    # A receipt that comes after its checkpoint was pushed goes up on its own (no records).
    con = sqlite3.connect(env.cfg.db_path)
    receipts = con.execute("SELECT size, backend, receipt, time FROM anchors").fetchall()
    con.execute("DELETE FROM anchors")
    con.commit()
    cloud.start()
    try:
        assert coldtrace([*args, "--wait", "20"]) == 0
        assert caught_up(env, cloud) and cloud.count(db.anchors, ORIGIN) == 0
        con.executemany(
            "INSERT INTO anchors (size, backend, receipt, time) VALUES (?,?,?,?)", receipts
        )
        con.commit()
        con.close()
        assert coldtrace([*args, "--wait", "20"]) == 0
        assert cloud.count(db.anchors, ORIGIN) == len(receipts) > 0
        assert coldtrace([*args, "--wait", "5"]) == 0  # nothing left: at once
        # The cloud froze the log (a fork elsewhere): pushing stops with an alarm.
        with cloud.engine.begin() as conn:
            conn.execute(
                db.logs.update()
                .where(db.logs.c.origin == ORIGIN)
                .values(frozen=True, frozen_reason="test")
            )
        store = open_store(env.cfg)
        alarms: list[tuple[str, str]] = []
        try:
            pusher = Pusher(
                env.cfg, store, load_log_signer(env.cfg), alert=lambda k, m: alarms.append((k, m))
            )
            pusher.synced = False
            from gateway.push import PushStopped

            try:
                pusher.push_all(time.monotonic() + 5)
                raise AssertionError("a frozen log was pushed to")
            except PushStopped:
                pass
            pusher.stop()
        finally:
            store.close()
        assert alarms and alarms[0][0] == "log_frozen"
        assert coldtrace([*args, "--wait", "5"]) == 3
        assert "ALARM" in capsys.readouterr().err
    finally:
        cloud.stop()
