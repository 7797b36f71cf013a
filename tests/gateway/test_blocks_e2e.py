"""Reading blocks end to end: a logger running the firmware (demo/sim.py: ct_app with
ct_block, the real core, queue and uplink under CPython) signs blocks of 12 readings,
a real Mosquitto carries them to a real gateway, and the item's trace has the verdict
the logger's own measurements call for: its readings counted one by one at their
derived times, the excursion (signed at once as kind-1 readings) exactly as measured;
the gateway's dashboard lists each reading of a block at its own time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from demo import sim
from demo.world import ReplayClock
from gateway.dashboard import DashboardData
from gateway.evidence.registry import RegistrySigner
from gateway.evidence.store import open_store
from gateway.service import trust_document
from protocol.bundle import load_bundle
from protocol.cli import main as coldtrace
from protocol.keys import load_p256_private_key
from protocol.record import Reading, ReadingBlock, open_record
from protocol.trust import parse_trust
from protocol.verify import verify_bundle
from tests.gateway.devices import SimDevice, wait_for

GTIN = "09506000134352"
ITEM = f"/01/{GTIN}/10/LB1/21/0001"
UID = bytes.fromhex("04b10c5a1b6f80")
ROOM = "acme:room-blocks"
MIN = 60
LOGGER = "tl-blk-1"


def test_block_logger_trace_verdict_matches_its_readings(
    make_broker, make_gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rd = SimDevice("rd-blk-1")
    broker = make_broker([LOGGER, rd.id])
    env = make_gateway(broker)
    t0 = (int(time.time()) - 3 * 3600) // 300 * 300
    hot = (t0 + 60 * MIN, t0 + 100 * MIN)  # 40 minutes at 9.00 °C, above the 2-8 °C profile

    # the logger: the firmware with blocks of 12, provisioned by ct_provision
    root = tmp_path / LOGGER
    cfg = sim.logger_config(LOGGER, "acme", "127.0.0.1", broker.port, 300, 3600, root, block=12)
    del cfg["place"]  # bound below from t0, not from now
    entry = sim.provision_sim_device(root, cfg)
    store = open_store(env.cfg.db_path)
    try:
        signer = RegistrySigner(
            store, env.cfg.registry.id, load_p256_private_key(env.cfg.registry.key_file)
        )
        signer.import_entries([entry], at=t0 - 60)
    finally:
        store.close()
    env.register(rd)
    store = open_store(env.cfg.db_path)
    try:
        signer = RegistrySigner(
            store, env.cfg.registry.id, load_p256_private_key(env.cfg.registry.key_file)
        )
        signer.bind(ROOM, [LOGGER], at=t0)
        signer.set_profile(
            GTIN, low=200, high=800, delay=30 * MIN, gap=30 * MIN, cumul=120 * MIN,
            name="chilled 2-8 °C", at=t0,
        )
    finally:
        store.close()

    clock = ReplayClock(t0)
    wifi = sim.SimWifi(in_range=False)  # a truck without coverage until the present
    lg = sim.SimLogger(
        cfg,
        root,
        sim.client_factory(LOGGER, "127.0.0.1", broker.port, broker.password(LOGGER)),
        clock=clock,
        wifi=wifi,
    )
    measured: list[tuple[int, int]] = []

    def probe() -> tuple[int, None]:
        t = int(clock())
        temp = 900 if hot[0] <= t < hot[1] else 450 + (t // 300) % 7  # 4.50-4.56 °C
        measured.append((t, temp))
        return temp, None

    lg._channels = lambda: [(0, None, probe)]  # type: ignore[method-assign]
    lg.set_clock(t0, 3)

    gw = env.start_gateway()
    try:
        t = float(t0)
        while t < t0 + 3 * 3600:
            clock.t = t
            t += lg.wake()
        clock.go_live()
        wifi.in_range = True
        for _ in range(8):  # a loaded machine may need a few uploads
            lg.wake()  # a reading now, then the upload of everything on its flash
            lg.flush()  # the open block signed, and sent
            if lg.queued == 0:
                break
        assert lg.queued == 0
        env.connect(rd)
        rd.publish(rd.scan(UID, 1, ROOM, time_=t0 + 10 * MIN, item=ITEM))
        rd.publish(rd.scan(UID, 6, ROOM, time_=t0 + 150 * MIN))
        wait_for(lambda: not rd.unacked, 30, "the reader's scans acked")

        # what the gateway stored: blocks of 12, the excursion as kind-1 readings
        store = open_store(env.cfg.db_path)
        try:
            recs = [r for r in store.records_of(LOGGER, 0, 1 << 32) if r.kind in (1, 7)]
            payloads = [open_record(bytes(r.raw)).payload for r in recs]
            blocks = [p for p in payloads if isinstance(p, ReadingBlock)]
            singles = [p for p in payloads if isinstance(p, Reading)]
            # the 8 readings out of the band, and the one that ended the alarm
            assert [(p.time, p.temp) for p in singles] == [
                (t, v) for t, v in measured if hot[0] <= t <= hot[1]
            ]
            assert len(blocks) >= 3 and max(b.n for b in blocks) == 12
            got = sorted(
                (r.time, r.temp) for p in payloads
                for r in (p.readings() if isinstance(p, ReadingBlock) else (p,))
            )
            # every reading once, at its derived time (the live wakes after the replay
            # may take the next slot of the open block: up to 3 s earlier than measured)
            end = t0 + 3 * 3600
            assert [x for x in got if x[0] < end - 3] == sorted(
                x for x in measured if x[0] < end - 3
            )
            assert sorted(v for _, v in got) == sorted(v for _, v in measured)
            # the dashboard lists each reading of a block at its own time
            dash = DashboardData(env.cfg, store)
            rows = dash.readings(limit=1000)
            assert sorted((r["time"], r["temp"]) for r in rows if r["device"] == LOGGER) == got
        finally:
            store.close()
        path = tmp_path / "trace.json"
        capsys.readouterr()
        assert coldtrace(
            ["gateway", "trace", "-c", str(env.config_path), UID.hex(), "--wait", "30",
             "-o", str(path)]
        ) == 4  # FAIL
        trust = trust_document(env.cfg)
        report = verify_bundle(load_bundle(path), parse_trust(trust))
        assert report.verified, [(f.code, f.message) for f in report.failures]
        doc = report.verdict_document()
    finally:
        gw.stop()

    assert doc["verdict"] == "FAIL", doc["reasons"]
    a, b = t0 + 10 * MIN, t0 + 150 * MIN
    inside = [(t, v) for t, v in measured if a <= t < b]
    leg = doc["legs"][0]
    assert (leg["from"], leg["to"]) == (a, b)
    assert leg["readings"] == len(inside)
    assert leg["covered"] == b - a  # no gap: the blocks' readings cover the leg
    assert (leg["min"], leg["max"], leg["tq_min"]) == (
        min(v for _, v in inside), 900, 3,
    )
    (exc,) = doc["excursions"]
    assert (exc["side"], exc["from"], exc["to"], exc["peak"], exc["devices"]) == (
        "high", hot[0], hot[1], 900, [LOGGER],
    )
    codes = {r["code"] for r in doc["reasons"]}
    assert "excursion" in codes
    assert not codes & {"records_missing", "no_readings", "block_overlap"}
    json.dumps(doc)
