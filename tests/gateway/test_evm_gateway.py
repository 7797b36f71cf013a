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

import httpx
import pytest

from cloud.config import load_config as load_cloud_config
from gateway.config import load_config, set_toml_keys
from gateway.evidence.proofs import TreeReader, prove
from gateway.evidence.store import open_store
from gateway.metrics import render as render_metrics
from protocol.bundle import Subject
from protocol.cli import main as coldtrace
from protocol.push import PushBatch, auth_header
from tests.anvil import Anvil, funded_key, write_key
from tests.gateway.cloudenv import CloudServer
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.env import ORIGIN
from tests.gateway.test_push import caught_up, cloud_anchor_rows, with_cloud


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
    # Deploying again would orphan the receipts of the first contract: refused.
    assert coldtrace(["gateway", "ledger", "deploy", "-c", str(conf)]) == 2
    assert "already names contract" in capsys.readouterr().err
    assert load_config(conf).ledger.evm.contract == contract

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
        # The queue and health go to the metrics (Prometheus text).
        wait_for(lambda: (gw.last_status.get("evm") or {}).get("confirmed", 0) >= 1, 10, "metrics")
        text = render_metrics(gw.last_status)
        assert 'coldtrace_evm_ok{status="ok"} 1' in text
        assert 'coldtrace_evm_anchors{state="confirmed"}' in text
    finally:
        gw.stop()

    store = open_store(cfg)
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
    assert coldtrace(["gateway", "status", "-c", str(conf)]) == 0
    assert f"size {anchors[-1].size} on evm block {anchors[-1].receipt['block_number']}" in (
        capsys.readouterr().out
    )
    assert coldtrace(["gateway", "checkpoints", "-c", str(conf)]) == 0
    assert "anchored (evm block " in capsys.readouterr().out

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


def anchor_again(node: Anvil, receipt: dict, cp) -> dict:
    """The checkpoint ``cp`` anchored by a fresh account in the receipt's contract, with
    its confirmations mined: a valid receipt for it in another block."""
    from web3 import Web3

    from gateway.evidence.contracts import artifact
    from protocol.anchor import EvmReceipt
    from protocol.checkpoint import checkpoint_hash
    from protocol.note import parse_note

    w3 = Web3(Web3.HTTPProvider(node.url))
    key, addr = funded_key(node)
    acct = w3.eth.account.from_key(key)
    c = w3.eth.contract(
        address=Web3.to_checksum_address(receipt["contract"]), abi=artifact()["abi"]
    )
    origin = parse_note(cp.note).body.splitlines()[0]
    cph = checkpoint_hash(parse_note(cp.note).body)
    tx = c.functions.anchor(origin, cp.size, cp.root, cph).build_transaction(
        {"from": addr, "nonce": w3.eth.get_transaction_count(addr)}
    )
    rec = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    )
    node.mine(receipt["confirmations"])
    (log,) = rec["logs"]
    return EvmReceipt(
        chain_id=31337,
        contract=receipt["contract"],
        tx_hash="0x" + bytes(rec["transactionHash"]).hex(),
        block_number=rec["blockNumber"],
        block_hash="0x" + bytes(rec["blockHash"]).hex(),
        log_index=log["logIndex"],
        checkpoint_hash=cph,
        confirmations=receipt["confirmations"],
    ).to_json()


@pytest.mark.parametrize("has_node", [True, False], ids=["cloud-with-evm-rpc", "cloud-without"])
def test_the_cloud_takes_evm_receipts_and_checks_them_when_it_has_a_node(
    make_broker, make_gateway, node: Anvil, tmp_path: Path, has_node: bool
) -> None:
    """Pushed batches carrying EVM receipts are accepted; with ``[[evm]]`` in cloud.toml
    the cloud checks them on the node (a receipt claiming more confirmations than the
    chain has is refused), without it they are kept, unverified, and the batch is not
    refused for lack of a node."""
    dev = SimDevice("tl-evmcloud")
    broker = make_broker([dev.id])
    env = make_gateway(broker)
    key, _ = funded_key(node)
    write_key(env.dir / "keys" / "anchor.hex", key)
    conf = env.config_path
    text = set_toml_keys(conf.read_text(), "ledger", {"backend": "evm"})
    evm = {"rpc_url": node.url, "chain_id": 31337, "key_file": "keys/anchor.hex"}
    evm |= {"confirmations": 2, "interval": 0.5, "poll": 0.1}
    conf.write_text(set_toml_keys(text, "ledger.evm", evm))
    assert coldtrace(["gateway", "ledger", "deploy", "-c", str(conf)]) == 0

    cloud = CloudServer(tmp_path / "cloud")
    if has_node:
        with open(cloud.dir / "cloud.toml", "a") as f:
            f.write(f'\n[[evm]]\nchain_id = 31337\nrpc_url = "{node.url}"\n')
        cloud.cfg = load_cloud_config(cloud.dir)
        assert cloud.cfg.evm == {31337: node.url}
    with_cloud(env, cloud.url)
    cfg = env.cfg
    cloud.join("acme", cfg)
    contract = cfg.ledger.evm.contract
    assert (
        cloud.cli("ledger", "add-evm", "acme", "--chain-id", "31337", "--contract", contract) == 0
    )
    cloud.start()
    env.register(dev)
    gw = env.start_gateway()
    try:
        env.connect(dev)
        for k in range(10):
            dev.publish(dev.reading(temp=300 + k))
        wait_for(lambda: dev.acked == 9 and not dev.unacked, 30, "acks")
        wait_for(
            lambda: (a := gw.store.latest_anchor()) is not None and a.size == 11, 60, "anchored"
        )
        wait_for(lambda: caught_up(env, cloud) and len(cloud_anchor_rows(cloud)) > 0, 30, "pushed")
        wait_for(
            lambda: (
                {json.loads(r.receipt)["tx_hash"] for r in cloud_anchor_rows(cloud)}
                == {a.receipt["tx_hash"] for a in gw.store.anchors()}
            ),
            30,
            "every receipt in the cloud",
        )
        cp = gw.store.latest_checkpoint()
        receipt = gw.store.latest_anchor().receipt
        signer = gw.log.signer
    finally:
        gw.stop()
    try:
        # A receipt claiming 1000 confirmations: refused with a node, kept without.
        forged = {**receipt, "confirmations": 1000}
        body = json.dumps(PushBatch(cp.size, [], cp.note, None, [(cp.size, forged)]).to_json())
        path = f"/v1/logs/{ORIGIN}/push"
        r = httpx.post(
            cloud.url + path,
            content=body.encode(),
            headers={"Authorization": auth_header(signer, "POST", path, body.encode())},
        )
        if has_node:
            assert r.status_code == 422, r.text
            assert "bad_anchor" in r.text and "anchor block is not buried" in r.text, r.text
        else:
            assert r.status_code == 200, r.text
        # Either way the cloud keeps the receipt it holds: an unchecked one never replaces it.
        stored = {r.size: json.loads(r.receipt) for r in cloud_anchor_rows(cloud)}
        assert stored[cp.size] == receipt
        if has_node:
            # A valid receipt in another block (as after a reorganisation) replaces it:
            # here the same checkpoint anchored again by another account.
            moved = anchor_again(node, receipt, cp)
            body = json.dumps(PushBatch(cp.size, [], cp.note, None, [(cp.size, moved)]).to_json())
            r = httpx.post(
                cloud.url + path,
                content=body.encode(),
                headers={"Authorization": auth_header(signer, "POST", path, body.encode())},
            )
            assert r.status_code == 200, r.text
            stored = {r.size: json.loads(r.receipt) for r in cloud_anchor_rows(cloud)}
            assert stored[cp.size] == moved != receipt
        doc = httpx.get(cloud.url + "/v1/trust").json()
        assert {"type": "evm", "chain_id": 31337, "contract": contract.lower()} in doc["ledgers"]
    finally:
        cloud.stop()


def test_gateway_run_refuses_a_node_of_another_chain_in_one_sentence(
    make_broker, make_gateway, node: Anvil
) -> None:
    import subprocess
    import sys

    env = make_gateway(make_broker([]))
    key, _ = funded_key(node)
    write_key(env.dir / "keys" / "anchor.hex", key)
    conf = env.config_path
    text = set_toml_keys(conf.read_text(), "ledger", {"backend": "evm"})
    evm = {"rpc_url": node.url, "chain_id": 31337, "key_file": "keys/anchor.hex"}
    conf.write_text(set_toml_keys(text, "ledger.evm", evm))
    assert coldtrace(["gateway", "ledger", "deploy", "-c", str(conf), "--confirmations", "0"]) == 0
    conf.write_text(set_toml_keys(conf.read_text(), "ledger.evm", {"chain_id": 5}))
    run = subprocess.run(
        [sys.executable, "-m", "protocol.cli", "gateway", "run", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert "serves chain 31337, not chain_id 5" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout and key[2:] not in run.stderr + run.stdout


def test_kill_9_with_an_anchor_in_flight_loses_nothing_and_sends_nothing_twice(
    make_broker, make_gateway, node: Anvil
) -> None:
    """``coldtrace gateway run`` killed with SIGKILL while an anchor waits for its
    confirmations, then started again: the transaction written before it was sent is
    followed to its receipt, no checkpoint is anchored twice, and the last checkpoint
    ends anchored."""
    import sqlite3

    from protocol.anchor import EvmReceipt, verify_evm_receipt
    from protocol.checkpoint import open_checkpoint
    from protocol.note import NoteSigner
    from protocol.rpc import json_rpc

    dev = SimDevice("tl-evmkill")
    env = make_gateway(make_broker([dev.id]))
    key, address = funded_key(node)
    write_key(env.dir / "keys" / "anchor.hex", key)
    conf = env.config_path
    text = set_toml_keys(conf.read_text(), "ledger", {"backend": "evm"})
    evm = {"rpc_url": node.url, "chain_id": 31337, "key_file": "keys/anchor.hex"}
    evm |= {"confirmations": 12, "interval": 0.5, "poll": 0.1}  # 3 s to final
    conf.write_text(set_toml_keys(text, "ledger.evm", evm))
    assert coldtrace(["gateway", "ledger", "deploy", "-c", str(conf), "--confirmations", "0"]) == 0
    env.cfg = load_config(conf)
    state = env.cfg.data_dir / "evm-ledger.db"

    def rows(sql: str) -> list:
        db = sqlite3.connect(state, timeout=10)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    env.register(dev)
    log_path = env.dir / "gateway.log"
    proc = env.start_process()
    wait_for(lambda: "subscribed to" in log_path.read_text(), 30, "gateway subscribed")
    env.connect(dev)
    for k in range(10):
        dev.publish(dev.reading(temp=300 + k))
    wait_for(lambda: dev.acked == 9 and not dev.unacked, 30, "acks")
    in_flight = "SELECT count(*) FROM evm_anchors WHERE state = 'sent'"
    wait_for(lambda: state.exists() and rows(in_flight)[0][0], 30, "an anchor in flight")
    proc.kill()  # SIGKILL
    proc.wait(10)
    assert rows("SELECT count(*) FROM evm_anchors WHERE state = 'final'")[0][0] == 0
    proc = env.start_process()
    try:
        wait_for(lambda: log_path.read_text().count("subscribed to") == 2, 30, "subscribed")
        for k in range(5):
            dev.publish(dev.reading(temp=310 + k))
        wait_for(lambda: dev.acked == 14 and not dev.unacked, 30, "acks after the restart")

        def done() -> bool:
            store = open_store(env.cfg, readonly=True)
            try:
                a, cp = store.latest_anchor(), store.latest_checkpoint()
                return a is not None and cp is not None and a.size == cp.size == 16
            finally:
                store.close()

        wait_for(done, 60, "the last checkpoint anchored after the restart")
    finally:
        proc.terminate()
        proc.wait(30)
    # One transaction per anchored checkpoint: the one in flight at the kill was followed.
    per_size = rows("SELECT size, count(*) FROM evm_txs GROUP BY size")
    assert all(n == 1 for _, n in per_size), per_size
    assert int(node.rpc("eth_getTransactionCount", address, "latest"), 16) == len(per_size) + 1
    store = open_store(env.cfg, readonly=True)
    verifier = NoteSigner.from_skey(env.cfg.log.key_file.read_text().strip()).verifier()
    try:
        for a in store.anchors():
            cp = open_checkpoint(store.checkpoint_at(a.size).note, [verifier])
            verify_evm_receipt(EvmReceipt.from_json(a.receipt), cp, json_rpc(node.url))
    finally:
        store.close()
