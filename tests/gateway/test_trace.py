"""`coldtrace gateway trace` end to end: devices -> Mosquitto -> gateway -> the item's
bundle (docs/protocol.md §9 "What an honest bundle holds", §13.3) -> the verifier's
verdict; restating chains whose interval is not closed (§4.2)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.evidence.registry import RegistrySigner
from gateway.evidence.store import open_store
from gateway.service import trust_document
from protocol.bundle import load_bundle
from protocol.cli import main as coldtrace
from protocol.keys import load_p256_private_key
from protocol.record import Binding, ProductProfile, Reading, Scan, open_record
from protocol.trust import parse_trust
from protocol.verify import verify_bundle
from tests.gateway.devices import SimDevice, wait_for
from tests.schemas import assert_bundle, assert_trust

GTIN = "09506000134352"
ITEM = f"/01/{GTIN}/10/L1/21/0001"
UID = bytes.fromhex("04a23c5a1b6f80")
DOCK, TRUCK, ROOM = "acme:dock-1", "acme:truck-1", "acme:room-2"
MIN = 60


class Scenario:
    """Readers rd-a (dock) and rd-b (room), loggers at the dock, on the truck and in
    the room, all bound from t0; the item: commission t0+10m at the dock, load onto
    the truck t0+20m, unload into the room t0+100m, sold there t0+150m."""

    def __init__(self, make_broker, make_gateway, *, hot: bool = False, **ingest) -> None:
        self.rd_a, self.rd_b = SimDevice("rd-a"), SimDevice("rd-b")
        self.loggers = {
            DOCK: SimDevice("tl-dock"),
            TRUCK: SimDevice("tl-truck"),
            ROOM: SimDevice("tl-room"),
        }
        devs = [self.rd_a, self.rd_b, *self.loggers.values()]
        self.env = make_gateway(make_broker([d.id for d in devs]), **ingest)
        self.env.register(*devs)
        self.t0 = int(time.time()) - 3 * 3600
        self.hot = hot
        store = open_store(self.env.cfg)
        try:
            signer = RegistrySigner(
                store,
                self.env.cfg.registry.id,
                load_p256_private_key(self.env.cfg.registry.key_file),
            )
            for place, dev in self.loggers.items():
                signer.bind(place, [dev.id], at=self.t0)
            signer.set_profile(
                GTIN,
                low=0,
                high=400,
                delay=30 * MIN,
                gap=30 * MIN,
                cumul=120 * MIN,
                name="chilled 0-4 °C",
                at=self.t0,
            )
        finally:
            store.close()

    def run_day(self) -> None:
        self.publish_day()
        devs = [self.rd_a, self.rd_b, *self.loggers.values()]
        wait_for(lambda: all(not d.unacked for d in devs), 30, "every record acked")

    def publish_day(self) -> None:
        """Publish the day's records (the devices keep each until it is acked)."""
        t0 = self.t0
        for place, dev in self.loggers.items():
            for k in range(33):
                t = t0 + k * 5 * MIN
                hot = self.hot and place == TRUCK and t0 + 40 * MIN <= t < t0 + 80 * MIN
                dev.publish(dev.reading(temp=620 if hot else 280, time_=t))
        a, b = self.rd_a, self.rd_b
        a.publish(a.scan(UID, 1, DOCK, time_=t0 + 10 * MIN, item=ITEM))
        a.publish(a.scan(UID, 2, DOCK, time_=t0 + 20 * MIN, ref=TRUCK))
        b.publish(b.scan(UID, 3, ROOM, time_=t0 + 100 * MIN))
        b.publish(b.scan(UID, 6, ROOM, time_=t0 + 150 * MIN))

    def trace(self, out: Path, *extra: str) -> int:
        args = ["gateway", "trace", "-c", str(self.env.config_path), *extra, "-o", str(out)]
        return coldtrace(args)


def verdict(env, path: Path) -> dict:
    trust = trust_document(env.cfg)
    assert_trust(trust)
    assert_bundle(json.loads(path.read_text()))
    report = verify_bundle(load_bundle(path), parse_trust(trust))
    assert report.verified, [(f.code, f.message) for f in report.failures]
    return report.verdict_document()


@pytest.fixture
def clean(make_broker, make_gateway):
    return Scenario(make_broker, make_gateway)


def test_a_clean_trace_passes_after_restating_its_open_chains(
    clean: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = clean
    gw = s.env.start_gateway()
    try:
        s.env.connect(s.rd_a, s.rd_b, *s.loggers.values())
        s.run_day()
        # Without restating, the bindings and the profile end before the legs: INCOMPLETE.
        open_path = tmp_path / "open.json"
        wait_for(
            lambda: gw.log.last_anchor is not None and gw.log.last_anchor.size == gw.log.size,
            15,
            "an anchor",
        )
        capsys.readouterr()
        assert s.trace(open_path, UID.hex(), "--no-restate") == 5
        text = capsys.readouterr().out
        assert "not closed" in text and "--no-restate" in text
        doc = verdict(s.env, open_path)
        codes = {r["code"] for r in doc["reasons"]}
        assert doc["verdict"] == "INCOMPLETE" and {"binding_unproven", "no_profile"} <= codes

        # By Digital Link, restating: the gateway logs the restatements, anchors, PASS.
        path = tmp_path / "bundle.json"
        t = time.monotonic()
        assert s.trace(path, f"https://id.example.com{ITEM}?picc_data=00&cmac=00") == 0
        took = time.monotonic() - t
        text = capsys.readouterr().out
        assert "restated binding of acme:truck-1" in text
        assert "restated profile of 09506000134352" in text
        assert "the restated chains are closed" in text and took < 30
        doc = verdict(s.env, path)
        assert doc["verdict"] == "PASS", doc["reasons"]
        assert doc["subject"]["item"] == ITEM and doc["profile"]["high"] == 400
        assert [leg["location"] for leg in doc["legs"]] == [DOCK, TRUCK, ROOM, ROOM]
        assert [[m["device"] for m in leg["monitors"]] for leg in doc["legs"]] == [
            ["tl-dock"],
            ["tl-truck"],
            ["tl-room"],
            [],
        ]
        assert "PASS" in text

        # What the bundle holds, and nothing else (§9).
        bundle = load_bundle(path)
        recs = [open_record(r.raw) for r in bundle.records]
        scans = [r for r in recs if isinstance(r.payload, Scan)]
        assert len(scans) == 4
        readings = {}
        for r in recs:
            if isinstance(r.payload, Reading):
                readings.setdefault(r.signer, []).append(r.payload.time)
        t0 = s.t0
        assert (min(readings["tl-dock"]), max(readings["tl-dock"])) == (t0 + 600, t0 + 1200)
        assert (min(readings["tl-truck"]), max(readings["tl-truck"])) == (t0 + 1200, t0 + 6000)
        assert (min(readings["tl-room"]), max(readings["tl-room"])) == (t0 + 6000, t0 + 9000)
        bindings = [r.payload for r in recs if isinstance(r.payload, Binding)]
        assert sorted((b.target, b.cseq) for b in bindings) == [
            (DOCK, 0),
            (DOCK, 1),
            (ROOM, 0),
            (ROOM, 1),
            (TRUCK, 0),
            (TRUCK, 1),
        ]
        profiles = [r.payload for r in recs if isinstance(r.payload, ProductProfile)]
        assert [p.cseq for p in profiles] == [0, 1]
        regs = {r.payload.device for r in recs if r.payload.kind == 4}
        assert regs == {"rd-a", "rd-b", "tl-dock", "tl-truck", "tl-room"}
        assert len(bundle.proofs) == 1 and len(bundle.anchors) == 1

        # Nothing left open: a second trace restates nothing and waits for nothing.
        assert s.trace(tmp_path / "again.json", UID.hex()) == 0
        assert "restated" not in capsys.readouterr().out
    finally:
        gw.stop()


def test_an_excursion_beyond_the_delay_fails(
    make_broker, make_gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Scenario(make_broker, make_gateway, hot=True)
    gw = s.env.start_gateway()
    try:
        s.env.connect(s.rd_a, s.rd_b, *s.loggers.values())
        s.run_day()
        path = tmp_path / "hot.json"
        capsys.readouterr()
        assert s.trace(path, UID.hex(), "--wait", "30") == 4
        assert "FAIL" in capsys.readouterr().out
        doc = verdict(s.env, path)
        assert doc["verdict"] == "FAIL"
        (exc,) = doc["excursions"]
        assert (exc["side"], exc["peak"], exc["duration"], exc["devices"]) == (
            "high",
            620,
            40 * MIN,
            ["tl-truck"],
        )
    finally:
        gw.stop()


def test_without_a_running_gateway_the_bundle_is_written_and_says_so(
    clean: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = clean
    gw = s.env.start_gateway()
    try:
        s.env.connect(s.rd_a, s.rd_b, *s.loggers.values())
        s.run_day()
        wait_for(
            lambda: gw.log.last_anchor is not None and gw.log.last_anchor.size == gw.log.size,
            15,
            "an anchor",
        )
    finally:
        gw.stop()
    for dev in (s.rd_a, s.rd_b, *s.loggers.values()):
        dev.disconnect()
    capsys.readouterr()
    path = tmp_path / "down.json"
    assert s.trace(path, UID.hex()) == 5
    text = capsys.readouterr().out
    assert "the gateway is not running" in text and "INCOMPLETE" in text
    doc = verdict(s.env, path)
    assert "binding_unproven" in {r["code"] for r in doc["reasons"]}
    # The restatements waited in the outbox; the gateway logs them when it starts.
    gw = s.env.start_gateway()
    try:
        assert s.trace(tmp_path / "up.json", UID.hex()) == 0
        assert "restated" not in capsys.readouterr().out  # queued already
    finally:
        gw.stop()


def test_unknown_items_are_a_clear_error(
    clean: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = clean.env.start_gateway()
    try:
        wait_for(lambda: gw.log.last_anchor is not None, 15, "an anchor")
        capsys.readouterr()
        assert clean.trace(tmp_path / "x.json", "04000000000000") == 1
        assert "no scans of tag 04000000000000" in capsys.readouterr().err
        assert clean.trace(tmp_path / "x.json", "not-a-tag") == 1
        assert "neither a tag UID" in capsys.readouterr().err
        assert clean.trace(tmp_path / "x.json", f"/01/{GTIN}/21/9") == 1
        assert "no commission scan" in capsys.readouterr().err
    finally:
        gw.stop()


def test_the_gateway_restates_chains_older_than_the_interval(make_broker, make_gateway) -> None:
    from gateway.config import load_config

    dev = SimDevice("tl-old")
    env = make_gateway(make_broker([dev.id]))
    text = env.config_path.read_text().replace(
        "[registry]\n", "[registry]\nrestate_interval = 3600\n"
    )
    env.config_path.write_text(text)
    env.cfg = load_config(env.config_path)
    env.register(dev)
    store = open_store(env.cfg)
    try:
        signer = RegistrySigner(
            store, env.cfg.registry.id, load_p256_private_key(env.cfg.registry.key_file)
        )
        signer.bind("acme:old", [dev.id], at=int(time.time()) - 7200)  # older than an hour
        signer.bind("acme:new", [dev.id])  # fresh
    finally:
        store.close()
    gw = env.start_gateway()
    try:
        wait_for(lambda: len(gw.store.statements()) == 3, 15, "the old chain restated")
        rows = {(r.chain, r.cseq) for r in gw.store.statements()}
        assert rows == {("acme:old", 0), ("acme:old", 1), ("acme:new", 0)}
        assert gw.registry.place_of(dev.id) == "acme:old"  # restated last, still both bound
    finally:
        gw.stop()
