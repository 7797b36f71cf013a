"""A whole gateway on the EVM ledger: real Mosquitto, real Anvil (a block every 0.25 s).

The operator's path of docs/evm.md: ``[ledger.evm]`` written, ``coldtrace gateway
ledger deploy`` puts the contract on the chain and into the configuration and the
trust file, the gateway ingests device records and its checkpoints end anchored
with their confirmations; ``ledger status`` reports them; a bundle of the
records verifies with ``coldtrace verify --evm-rpc``. The key never shows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.evidence.proofs import TreeReader, prove
from gateway.evidence.store import open_store
from gateway.ledger_cli import set_toml_keys
from protocol.bundle import Subject
from protocol.cli import main as coldtrace
from tests.anvil import Anvil, funded_key, write_key
from tests.gateway.devices import SimDevice, wait_for


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Anvil]:
    n = Anvil(block_time=0.25)
    try:
        n.start()
    except Exception as exc:
        pytest.fail(f"Anvil test node: {exc}", pytrace=False)
    yield n
    n.stop()


def test_a_gateway_on_the_evm_ledger_anchors_and_its_bundles_verify(
    make_broker, make_gateway, node: Anvil, tmp_path: Path, capsys, caplog
) -> None:
    caplog.set_level(logging.INFO)
    devs = [SimDevice(f"tl-evmgw{i}") for i in range(2)]
    broker = make_broker([d.id for d in devs])
    env = make_gateway(broker)
    key, address = funded_key(node)
    write_key(env.dir / "keys" / "anchor.hex", key)
    conf = env.config_path
    text = set_toml_keys(conf.read_text(), "ledger", {"backend": "evm"})
    text = set_toml_keys(
        text,
        "ledger.evm",
        {
            "rpc_url": node.url,
            "chain_id": 31337,
            "key_file": "keys/anchor.hex",
            "confirmations": 2,
            "interval": 1.0,
            "poll": 0.1,
        },
    )
    conf.write_text(text)
    (env.dir / "trust.json").write_text("{}")  # as `gateway init` leaves one

    capsys.readouterr()
    assert coldtrace(["gateway", "ledger", "deploy", "-c", str(conf)]) == 0
    out = capsys.readouterr().out
    cfg = load_config(conf)
    contract = cfg.ledger.evm.contract
    assert contract.startswith("0x") and contract in out and cfg.ledger.evm.chain_id == 31337
    assert int(node.rpc("eth_getCode", contract, "latest"), 16) != 0
    pin = {"type": "evm", "chain_id": 31337, "contract": contract.lower()}
    assert json.loads((env.dir / "trust.json").read_text())["ledgers"] == [pin]
    assert coldtrace(["gateway", "trust", "-c", str(conf)]) == 0
    trust = json.loads(capsys.readouterr().out)
    assert trust["ledgers"] == [pin]

    env.cfg = cfg
    env.register(*devs)
    gw = env.start_gateway()
    try:
        env.connect(*devs)
        for k in range(20):
            for d in devs:
                d.publish(d.reading(temp=400 + k))
        wait_for(lambda: all(d.acked == 19 and not d.unacked for d in devs), 30, "acks")
        total = len(devs) * 21
        wait_for(lambda: gw.log.last is not None and gw.log.last.size == total, 10, "checkpoint")
        wait_for(
            lambda: (a := gw.store.latest_anchor()) is not None and a.size == total,
            60,
            "the last checkpoint anchored",
        )
    finally:
        gw.stop()

    store = open_store(cfg.db_path)
    anchors = store.anchors()
    assert all(a.backend == "evm" and a.receipt["confirmations"] == 2 for a in anchors)
    # Fewer transactions than checkpoints: at most one per interval.
    assert len(anchors) <= len(store.checkpoints())
    assert int(node.rpc("eth_getTransactionCount", address, "latest"), 16) == len(anchors) + 1

    capsys.readouterr()
    assert coldtrace(["gateway", "ledger", "status", "-c", str(conf), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["confirmed"] == len(anchors) and status["queued"] == status["pending"] == 0
    assert status["status"] == "ok" and status["balance_wei"] > 0
    assert coldtrace(["gateway", "ledger", "status", "-c", str(conf)]) == 0
    human = capsys.readouterr().out
    assert f"{len(anchors)} confirmed" in human and "status: ok" in human

    size = anchors[-1].size
    reader = TreeReader(cfg.tree_dir, size)
    bundle = prove(store, reader, cfg.log.origin, range(size), Subject(bytes(7)))
    reader.close()
    store.close()
    (tmp_path / "b.json").write_text(bundle.dumps())
    (tmp_path / "t.json").write_text(json.dumps(trust))
    capsys.readouterr()
    coldtrace(
        [
            *("verify", str(tmp_path / "b.json"), "--trust", str(tmp_path / "t.json")),
            *("--json", "--evm-rpc", node.url),
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert report["verified"] is True, report.get("failures")
    assert report["summary"]["anchored_checkpoints"] == 1

    assert key[2:] not in caplog.text and key[2:] not in out + human
