"""`coldtrace sim --gateway-config`: the simulated devices are registered and the
loggers bound to their places (binding statements), so their items' traces are judged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.evidence.store import open_store
from protocol.cli import main as coldtrace
from protocol.record import Binding, Registration, open_record


def test_sim_registers_its_devices_and_binds_the_loggers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = tmp_path / "gw"
    assert coldtrace(["gateway", "init", "--dir", str(gw), "--registry-id", "acme-reg"]) == 0
    conf = gw / "gateway.toml"
    args = [
        "sim",
        "--dir",
        str(tmp_path / "sim"),
        "--loggers",
        "2",
        "--readers",
        "1",
        "--provision-only",
        "--gateway-config",
        str(conf),
    ]
    capsys.readouterr()
    assert coldtrace(args) == 0
    assert "registered 3 devices with gateway gateway; loggers bound to" in capsys.readouterr().out
    store = open_store(load_config(conf))
    try:
        payloads = [open_record(raw).payload for _, raw in store.outbox_pending()]
    finally:
        store.close()
    regs = sorted(p.device for p in payloads if isinstance(p, Registration))
    assert regs == ["sim-rd-1", "sim-tl-1", "sim-tl-2"]
    bindings = [p for p in payloads if isinstance(p, Binding)]
    assert bindings[-1].devices == "sim-tl-1 sim-tl-2"  # readers are not bound
    assert {b.target for b in bindings} == {"urn:epc:id:sgln:9506000.13435.coldroom-1"}
    assert coldtrace([*args[:-1], str(tmp_path / "missing.toml")]) == 1


def test_sim_place_binds_the_loggers_where_the_readers_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = tmp_path / "gw"
    assert coldtrace(["gateway", "init", "--dir", str(gw), "--profile", "none"]) == 0
    conf = gw / "gateway.toml"
    sim = tmp_path / "sim"
    base = ["sim", "--dir", str(sim), "--provision-only", "--gateway-config", str(conf)]
    capsys.readouterr()
    assert coldtrace([*base, "--place", "wh-1:cold-room-1", "--journey", "commission,ship"]) == 0
    assert "loggers bound to wh-1:cold-room-1" in capsys.readouterr().out
    store = open_store(load_config(conf).db_path)
    try:
        payloads = [open_record(raw).payload for _, raw in store.outbox_pending()]
    finally:
        store.close()
    assert {p.target for p in payloads if isinstance(p, Binding)} == {"wh-1:cold-room-1"}
    reader = json.loads((sim / "provisioned.json").read_text())["devices"][-1]
    assert reader["device"] == "sim-rd-1" and reader["place"] == "wh-1:cold-room-1"
    # Bad input: a clear sentence, exit 1, no traceback.
    for extra, why in (
        (["--journey", "commission,fly"], "fly is not a scan action"),
        (["--place", "cold\nroom"], "a place id is 1-64 bytes"),
    ):
        assert coldtrace(["sim", "--dir", str(tmp_path / "x"), "--provision-only", *extra]) == 1
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err
