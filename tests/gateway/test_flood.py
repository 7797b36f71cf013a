"""A flood of distinct garbage through the real broker: the disk stays bounded, devices served.

What an operator hit (issue 10): any broker account, registered or not,
could fill the gateway's disk with distinct messages (800 of 16 KB: 20 MB in
4 s). Here one unregistered account floods thousands of distinct 16 KB
messages while registered devices publish as usual, one of them catching
up on a backlog at full speed (far faster than the firmware's window of 16
records per ack). Every message of the flood is accounted for - stored
(cut to keep_bytes), or counted with a digest as over the rate or over the
cap - and the store grows by less than the cap.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from gateway.config import load_config
from gateway.evidence.store import open_store
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.env import GatewayDir
from tests.gateway.rawmqtt import RawClient
from tests.gateway.test_crash import publish_stream, resend_until_acked

FLOOD = 3000
SIZE = 16_000  # the broker refuses packets over 16 KiB (max_packet_size)
CAP = 1 << 20


def db_bytes(d: GatewayDir) -> int:
    return sum(p.stat().st_size for p in Path(d.cfg.db_path).parent.glob("gateway.db*"))


def quarantine_disk(env: GatewayDir) -> int:
    """Bytes of disk the quarantine table and its indexes take (SQLite's dbstat)."""
    db = sqlite3.connect(env.cfg.db_path)
    try:
        (n,) = db.execute(
            "SELECT sum(pgsize) FROM dbstat"
            " WHERE name IN (SELECT name FROM sqlite_schema WHERE tbl_name = 'quarantine')"
        ).fetchone()
    finally:
        db.close()
    return int(n)


def with_quarantine(env: GatewayDir, **caps: int) -> None:
    text = env.config_path.read_text() + "\n[quarantine]\n"
    text += "".join(f"{k} = {v}\n" for k, v in caps.items())
    env.config_path.write_text(text)
    env.cfg = load_config(env.config_path)


def check_stored_and_acked(env: GatewayDir, sent: dict[str, list[bytes]], devs) -> None:
    store = open_store(env.cfg)
    try:
        for dev in devs:
            stored = store.records_of(dev.id, 0, 2**32)
            assert [r.raw for r in stored] == sent[dev.id], dev.id
            assert dev.acked == len(sent[dev.id]) - 1 and not dev.unacked and not dev.bad_acks
    finally:
        store.close()


def accounted(env_store, who: str) -> int:
    rows = sum(r.count for r in env_store.rejects(limit=10**6) if r.topic == f"ct/v1/{who}/rec")
    return rows + sum(d.count for d in env_store.quarantine_dropped() if d.device == who)


def test_registered_devices_are_served_during_a_flood(make_broker, make_gateway) -> None:
    devs = [SimDevice("tl-f1"), SimDevice("tl-f2")]
    late = SimDevice("tl-backlog")  # catches up on 1000 records at once
    broker = make_broker([d.id for d in (*devs, late)] + ["tl-flood"])
    env = make_gateway(broker)  # the default rate limits: 200 messages/s, burst 1000
    env.register(*devs, late)
    with_quarantine(env, max_bytes=CAP, keep_bytes=1024)
    gw = env.start_gateway()
    try:
        wait_for(lambda: gw.log.size == 3, 20, "registrations logged")
        before = db_bytes(env)
        env.connect(*devs, late)
        backlog = [late.reading() for _ in range(1000)]
        flooder = RawClient(
            broker.port, "tl-flood", username="tl-flood", password=broker.password("tl-flood")
        )
        assert flooder.connect() == 0
        payloads = (i.to_bytes(4, "big") + bytes([i % 256]) * (SIZE - 4) for i in range(FLOOD))
        pubacks: dict[str, float] = {}

        def flood() -> None:
            t0 = time.monotonic()
            pubacks["n"] = flooder.publish_many("ct/v1/tl-flood/rec", payloads, window=200)
            pubacks["s"] = time.monotonic() - t0

        stop = threading.Event()
        result: dict = {}
        threads = [
            threading.Thread(target=flood),
            threading.Thread(
                target=lambda: result.setdefault("sent", publish_stream(devs, 200, 0.01, stop))
            ),
        ]
        for t in threads:
            t.start()
        time.sleep(0.3)
        for raw in backlog:  # mid-flood, all at once
            late.publish(raw)
        for t in threads:
            t.join(180)
        flooder.disconnect()
        assert pubacks["n"] == FLOOD
        resend_until_acked([*devs, late], timeout=90)
        wait_for(lambda: accounted(gw.store, "tl-flood") == FLOOD, 60, "the flood accounted for")
        t_flood = pubacks["s"]
        status = gw.status()
        assert gw.pipeline.error is None and gw.mqtt.connected.is_set()
        q = status["quarantine"]
        assert q["bytes"] <= CAP and q["full"]
        dropped = {(d.cause, d.device): d for d in gw.store.quarantine_dropped()}
        assert dropped[("rate", "tl-flood")].count > 0 and dropped[("full", "tl-flood")].count > 0
        assert not any(d.device in (late.id, *[x.id for x in devs]) for d in dropped.values())
        assert status["quarantine"]["rate_limited"].keys() == {"*"}  # the shared bucket only
        stored = gw.store.rejects(limit=10**6)
        assert {r.reason for r in stored} == {"oversized"}
        assert all(len(r.raw) == 1024 and r.size == SIZE for r in stored)
    finally:
        gw.stop()
    sent = result["sent"]
    sent[late.id] = backlog
    check_stored_and_acked(env, sent, [*devs, late])
    good = sum(len(v) for v in sent.values())
    on_disk = quarantine_disk(env)
    grown = db_bytes(env) - before
    assert on_disk <= CAP, f"the quarantine takes {on_disk} bytes of disk"
    # Beside the quarantine the store grew by the good records (< 400 bytes each).
    assert grown < CAP + 400 * good, f"the store grew by {grown} bytes"
    print(
        f"\nflood: {FLOOD} x {SIZE} B in {t_flood:.1f} s ({FLOOD / t_flood:.0f} msg/s); "
        f"stored {len(stored)} rows, {q['bytes']} B; rate-limited "
        f"{dropped[('rate', 'tl-flood')].count}, over the cap "
        f"{dropped[('full', 'tl-flood')].count}; quarantine on disk {on_disk} B, store grew "
        f"{grown} B; good records {good} all stored and acked"
    )


def test_a_device_over_its_rate_is_not_acked_and_resends(make_broker, make_gateway) -> None:
    dev = SimDevice("tl-fast")
    broker = make_broker([dev.id])
    env = make_gateway(broker, device_rate=20.0, device_burst=10)
    env.register(dev)
    gw = env.start_gateway()
    try:
        wait_for(lambda: gw.log.size == 1, 20, "registration logged")
        env.connect(dev)
        raws = [dev.reading() for _ in range(100)]
        for raw in raws:
            dev.publish(raw)

        def limited() -> int:
            return sum(d.count for d in gw.store.quarantine_dropped() if d.cause == "rate")

        def done() -> bool:
            return len(gw.store.records_of(dev.id, 0, 999)) + limited() == 100

        wait_for(done, 20, "the burst processed")
        stored = {r.seq for r in gw.store.records_of(dev.id, 0, 999)}
        first_missing = min(set(range(100)) - stored)
        assert limited() > 0 and first_missing < 100
        time.sleep(0.5)  # acks would have come by now
        assert dev.acked == first_missing - 1  # never past a record it must resend
        assert gw.store.rejects() == []  # counted, never stored one by one
        resend_until_acked([dev], timeout=60)
        assert [r.raw for r in gw.store.records_of(dev.id, 0, 999)] == raws
        (d,) = [d for d in gw.store.quarantine_dropped() if d.cause == "rate"]
        assert d.device == dev.id and d.reason == "rate_limited"
    finally:
        gw.stop()
