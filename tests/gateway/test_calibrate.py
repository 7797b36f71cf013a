"""``coldtrace gateway calibrate``: the registry records the calibration, the
running gateway sends it to the device as a §5.3 command through a real
Mosquitto, the device (the firmware code, demo/sim.py) applies it, and its
next readings carry the calibration id and the corrected value."""

from __future__ import annotations

import argparse
import base64
import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from demo.sim import SimLogger, client_factory, logger_config, provision_sim_device
from gateway.calibrate import (
    CAL_DOC_KEY,
    CalibrationError,
    _div_round,
    _point,
    calibration_fields,
    check_points,
    digest,
    document,
    offset_gain_points,
)
from gateway.commands import CommandError, CommandSpool, command_payload
from gateway.evidence.registry import RegistrySigner
from gateway.evidence.store import open_store
from protocol import cbor
from protocol.cli import main as coldtrace
from protocol.cose import verify_mac0
from protocol.keys import load_p256_private_key
from protocol.record import Reading, Registration, Status, open_record
from tests.gateway.devices import wait_for

DEV = "sim-tl-1"


# --- the pieces --------------------------------------------------------------------------


def test_points_are_checked_as_the_firmware_checks_them() -> None:
    check_points([[-1987, -2000], [2511, 2500]])
    with pytest.raises(CalibrationError, match=r"over 5\.00"):
        check_points([[0, 600]])
    with pytest.raises(CalibrationError, match="slope"):
        check_points([[0, 0], [1000, 1500]])
    with pytest.raises(CalibrationError, match="same raw"):
        check_points([[10, 10], [10, 20]])
    with pytest.raises(CalibrationError, match="channel"):
        document("d", 1, 16, [[0, 1]], None)
    with pytest.raises(CalibrationError, match="uint32"):
        document("d", 1 << 32, 0, [[0, 1]], None)


def test_points_parse_in_hundredths_exactly() -> None:
    assert _point("-19.87:-20.00") == [-1987, -2000]
    assert _point("25.1:25") == [2510, 2500]
    for bad in ("25.11", "25.111:25", "a:b"):
        with pytest.raises(argparse.ArgumentTypeError):
            _point(bad)


def test_offset_and_gain_become_ct_cal_points() -> None:
    assert offset_gain_points(25, 1000) == [[0, 25]]
    assert offset_gain_points(-10, 1002) == [[0, -10], [1000, 992]]


def test_command_fields_pack_the_points_as_int32_pairs() -> None:
    doc = document("d", 1042, 1, [[-1987, -2000], [2511, 2500]], [[7500, 7530]])
    f = calibration_fields(doc)
    assert f[16] == 1 and f[17] == 1042
    t, rh = f[18], f[19]
    assert isinstance(t, bytes) and isinstance(rh, bytes)
    assert struct.unpack(">4i", t) == (-1987, -2000, 2511, 2500)
    assert struct.unpack(">2i", rh) == (7500, 7530)


def test_spool_counters_increase_and_macs_verify(tmp_path: Path) -> None:
    spool = CommandSpool(tmp_path)
    key = bytes(range(32))
    a = spool.queue("tl-1", key, "gw-test", {10: 600}, now=1_800_000_000)
    b = spool.queue("tl-1", key, "gw-test", {10: 300}, now=1_800_000_000)  # same second
    c = CommandSpool(tmp_path).queue("tl-1", key, "gw-test", {10: 60}, now=1_700_000_000)
    assert a.counter < b.counter < c.counter  # never down, even with an older clock
    m = verify_mac0(b.raw, key)
    assert cbor.decode(m.payload, max_size=1024) == {1: b.counter, 2: 1_800_000_000, 10: 300}
    sent: list[tuple[str, bytes]] = []
    assert spool.drain(lambda t, raw: sent.append((t, raw))) == 3
    assert [t for t, _ in sent] == ["ct/v1/tl-1/cmd"] * 3 and spool.pending() == []
    with pytest.raises(CommandError):
        command_payload(1, 0, {1: 5})


# --- end to end ----------------------------------------------------------------------------


def _records(store: Any, dev: str) -> list[Any]:
    return [open_record(r.raw).payload for r in store.records_of(dev, 0, 10_000)]


def test_calibrate_registers_sends_and_the_device_reports_it(
    make_broker: Any, make_gateway: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = make_broker([DEV])
    env = make_gateway(broker)
    root = tmp_path / "device"
    cfg = logger_config(DEV, "acme", "127.0.0.1", broker.port, 60, 0, root)
    entry = provision_sim_device(root, cfg)
    store = open_store(env.cfg.db_path)
    try:
        RegistrySigner(
            store, env.cfg.registry.id, load_p256_private_key(env.cfg.registry.key_file)
        ).add(
            DEV,
            base64.b64decode(entry["key"]),
            role=1,
            org="acme",
            ack_key=base64.b64decode(entry["ack_key"]),
        )
    finally:
        store.close()
    gw = env.start_gateway()
    try:
        dev = SimLogger(
            cfg, root, client_factory(DEV, "127.0.0.1", broker.port, broker.password(DEV))
        )
        raws: list[int] = []
        measure = dev.ds.measure

        def recording_measure() -> int:
            raws.append(measure())
            return raws[-1]

        dev.ds.measure = recording_measure
        dev.wake()  # connects once: the broker keeps its session and its cmd subscription
        wait_for(
            lambda: any(isinstance(p, Reading) for p in _records(gw.store, DEV)),
            20,
            "the first reading",
        )

        capsys.readouterr()
        args = [
            "gateway",
            "calibrate",
            DEV,
            "-c",
            str(env.config_path),
            "--cal-id",
            "1042",
            "--point=-0.00:0.20",
            "--point",
            "10.00:10.15",
            "--reference",
            "PT100 SN 4711",
            "--certificate",
            "DAkkS D-K-0001 2026-123",
            "--operator",
            "QA",
        ]
        assert coldtrace(args) == 0
        out = capsys.readouterr().out
        assert "queued on ct/v1/sim-tl-1/cmd" in out
        spool = CommandSpool(env.cfg.data_dir)
        wait_for(lambda: not spool.pending(), 10, "the gateway publishing the command")
        # the registry: cal 1042, and the document's hash in the log
        doc = json.loads((env.cfg.data_dir / "calibrations" / "1042.json").read_text())
        assert doc["t"] == [[0, 20], [1000, 1015]] and doc["reference"] == "PT100 SN 4711"

        def registered() -> Registration | None:
            regs = [
                p
                for p in _records(gw.store, env.cfg.registry.id)
                if isinstance(p, Registration) and p.cal == 1042
            ]
            return regs[-1] if regs else None

        wait_for(lambda: registered() is not None, 10, "the registration logged")
        assert registered().extensions[CAL_DOC_KEY] == digest(doc)  # type: ignore[union-attr]
        assert gw.store.devices()[DEV].cal == 1042
        # the same id for another document is refused
        assert coldtrace([*args[:-2], "--operator", "someone else"]) == 1
        assert "already used" in capsys.readouterr().err

        time.sleep(0.5)  # the broker has queued it for the sleeping device
        dev.wake()  # receives the command in its upload, applies it, saves the setting
        assert dev.settings["cal"]["0"]["id"] == 1042
        dev.wake()  # measures with it
        dev.flush()

        def calibrated() -> list[Reading]:
            return [p for p in _records(gw.store, DEV) if isinstance(p, Reading) and p.cal == 1042]

        wait_for(lambda: calibrated(), 20, "a reading with cal 1042")
        r = calibrated()[-1]
        assert (r.ch or 0) == 0
        raw = raws[-1]  # what the probe gave in that wake, before correction
        assert r.temp == 20 + _div_round(raw * 995, 1000) != raw
        # the status record that says the device applied the command
        ev = [p for p in _records(gw.store, DEV) if isinstance(p, Status) and p.event == 10]
        assert ev and ev[-1].detail and ev[-1].detail > 0
        # channel 1 (the SHT45) is not calibrated
        assert all(
            p.cal is None for p in _records(gw.store, DEV) if isinstance(p, Reading) and p.ch == 1
        )
    finally:
        gw.stop()


def test_calibrate_records_without_sending_then_resends_the_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.config import load_config
    from protocol.keys import b64e
    from tests.gateway.devices import SimDevice

    gw = tmp_path / "gw"
    assert coldtrace(["gateway", "init", "--dir", str(gw), "--id", "gw-cal"]) == 0
    conf = str(gw / "gateway.toml")
    cfg = load_config(gw / "gateway.toml")
    devs = [SimDevice("tl-a"), SimDevice("tl-b")]
    capsys.readouterr()
    for d in devs:
        add = ["gateway", "registry", "add", d.id, "-c", conf, "--key", b64e(d.public_sec1)]
        assert coldtrace([*add, "--org", "acme"]) == 0
    ack_a = bytes.fromhex(json.loads(capsys.readouterr().out.splitlines()[0])["ack_key"])

    base = ["gateway", "calibrate", "-c", conf]
    assert coldtrace([*base, "tl-a", "--cal-id", "7", "--offset=-0.12", "--no-send"]) == 0
    assert "not sent" in capsys.readouterr().out
    spool = CommandSpool(cfg.data_dir)
    assert spool.pending() == []
    doc_path = cfg.data_dir / "calibrations" / "7.json"
    doc = json.loads(doc_path.read_text())
    assert doc["t"] == [[0, -12]] and doc["device"] == "tl-a" and doc["ch"] == 0
    store = open_store(cfg.db_path)
    try:
        regs = [open_record(raw).payload for _, raw in store.outbox_pending()]
    finally:
        store.close()
    last = regs[-1]
    assert isinstance(last, Registration) and last.device == "tl-a" and last.cal == 7
    assert last.extensions == {CAL_DOC_KEY: digest(doc)}

    # the same document again, now sent: allowed (same id, same content)
    assert coldtrace([*base, "--from", str(doc_path)]) == 0
    (c,) = spool.pending()
    fields = cbor.decode(verify_mac0(c.raw, ack_a).payload, max_size=1024)
    assert fields[16] == 0 and fields[17] == 7 and fields[18] == struct.pack(">2i", 0, -12)
    assert c.topic == "ct/v1/tl-a/cmd"

    capsys.readouterr()
    # id 7 is tl-a's: not for tl-b, even with the same points
    assert coldtrace([*base, "tl-b", "--cal-id", "7", "--offset=-0.12"]) == 1
    assert "already" in capsys.readouterr().err
    # a correction the device would refuse is refused here
    assert coldtrace([*base, "tl-b", "--cal-id", "8", "--offset", "6"]) == 1
    assert "over 5.00" in capsys.readouterr().err
    # an unknown device: nothing kept under its id
    assert coldtrace([*base, "tl-x", "--cal-id", "9", "--offset", "0.1", "--no-send"]) == 1
    assert "not registered" in capsys.readouterr().err
    assert not (cfg.data_dir / "calibrations" / "9.json").exists()
