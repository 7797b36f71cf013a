"""Fault suite, the ledger: the EVM node down for ten minutes, then a deep reorg.

A gateway anchoring on a real Anvil node (a block every 0.25 s, ``confirmations
= 2``, at most one anchor per ``interval = 60`` s) pushes to a real cloud that
checks EVM receipts on the same node (``[[evm]]``).

Ten minutes pass in simulated time, not in real time: the backend's clock is
injectable (``EvmLedger(clock=...)``, the only clock its anchoring cadence reads)
and the test advances it by 30 s per step for 20 steps while devices keep
publishing; the node's own clock jumps 600 s when it comes back
(``evm_increaseTime``). The node is a real outage: the Anvil process stopped
(its chain saved with ``--state``) and started again on the same port.

Then a reorganisation deeper than the confirmation depth: the chain reverted
(``evm_snapshot``/``evm_revert``) to before the block holding a final, pushed
anchor, five or more blocks deep. The gateway notices, sends the anchor again,
replaces its receipt and pushes the new one; the cloud, checking it on its node,
replaces the one it held. A push recorded before the reorg, replayed, cannot
bring the dead receipt back: ``422 unverified_records`` (``bad_anchor``: the
transaction is in another block).

At the end every checkpoint is anchored - itself or by a later checkpoint
consistent with it (one transaction per interval covers the checkpoints made
meanwhile), the last one itself - with receipts that verify on the node; the
cloud holds the gateway's receipts; the cloud's bundle verifies with
``coldtrace verify --evm-rpc``, and its verdict equals an undisturbed run's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cloud import db
from cloud.config import load_config as load_cloud_config
from gateway.config import load_config, set_toml_keys
from gateway.evidence.store import open_store
from gateway.service import load_log_signer
from protocol.anchor import EvmReceipt, verify_evm_receipt
from protocol.checkpoint import open_checkpoint
from protocol.cli import main as coldtrace
from protocol.rpc import json_rpc
from tests.anvil import Anvil, funded_key, write_key
from tests.gateway.cloudenv import CloudServer
from tests.gateway.conftest import make_broker, make_gateway  # noqa: F401 (fixtures)
from tests.gateway.devices import wait_for
from tests.gateway.env import ORIGIN, GatewayDir
from tests.gateway.logcheck import check_log
from tests.gateway.test_push import caught_up, more_readings, with_cloud
from tests.gateway.test_trace import UID, Scenario
from tests.reliability.cloudcheck import (
    check_cloud,
    check_devices,
    cloud_verdict,
    reference_verdict,
    scenario_devices,
    verdict_shape,
    write_counts,
)
from tests.soak import scale

INTERVAL = 60.0  # s of the backend's clock between two anchors
CONFIRMATIONS = 2
OUTAGE_STEPS = scale(20, 20 * 6)  # × 30 s: ten minutes (an hour under soak)


class SimClock:
    """The wall clock plus whatever the test advanced it by."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds

    @contextmanager
    def running(self, speed: float = 25.0) -> Iterator[None]:
        """Simulated time at ``speed`` × real time while a command waits on its own."""
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(0.02):
                self.advance(0.02 * (speed - 1))

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Anvil]:
    n = Anvil(block_time=0.25, state=tmp_path / "anvil-state.json")
    try:
        n.start()
    except Exception as exc:
        pytest.fail(f"Anvil test node: {exc}", pytrace=False)
    yield n
    n.stop()


def on_evm(env: GatewayDir, node: Anvil) -> None:
    """``[ledger.evm]`` written and the contract deployed, as docs/evm.md says."""
    key, _ = funded_key(node)
    write_key(env.dir / "keys" / "anchor.hex", key)
    conf = env.config_path
    text = set_toml_keys(conf.read_text(), "ledger", {"backend": "evm"})
    evm = {"rpc_url": node.url, "chain_id": 31337, "key_file": "keys/anchor.hex"}
    evm |= {"confirmations": CONFIRMATIONS, "interval": INTERVAL, "poll": 0.1, "timeout": 5}
    conf.write_text(set_toml_keys(text, "ledger.evm", evm))
    assert coldtrace(["gateway", "ledger", "deploy", "-c", str(conf)]) == 0
    env.cfg = load_config(conf)


def cloud_on_evm(cloud: CloudServer, env: GatewayDir, node: Anvil) -> None:
    with open(cloud.dir / "cloud.toml", "a") as f:
        f.write(f'\n[[evm]]\nchain_id = 31337\nrpc_url = "{node.url}"\n')
    cloud.cfg = load_cloud_config(cloud.dir)
    cloud.join("acme", env.cfg)
    contract = env.cfg.ledger.evm.contract
    assert (
        cloud.cli("ledger", "add-evm", "acme", "--chain-id", "31337", "--contract", contract) == 0
    )


def anchors_of(env: GatewayDir) -> dict[int, dict]:
    store = open_store(env.cfg, readonly=True)
    try:
        return {a.size: a.receipt for a in store.anchors()}
    finally:
        store.close()


def cloud_receipts(cloud: CloudServer) -> dict[int, dict]:
    with cloud.engine.connect() as conn:
        rows = conn.execute(
            db.anchors.select().where(db.anchors.c.log_id == cloud.log_row(ORIGIN).id)
        ).all()
    return {r.size: json.loads(r.receipt) for r in rows}


def all_anchored(env: GatewayDir, cloud: CloudServer, clock: SimClock) -> bool:
    """The latest checkpoint anchored and everything (receipts too) in the cloud. Each
    look lets 0.5 s of simulated time pass, so the interval elapses while waiting."""
    clock.advance(0.5)
    store = open_store(env.cfg, readonly=True)
    try:
        cp, a = store.latest_checkpoint(), store.latest_anchor()
        if cp is None or a is None or a.size != cp.size or cp.size != store.leaf_count():
            return False
    finally:
        store.close()
    return caught_up(env, cloud) and cloud_receipts(cloud) == anchors_of(env)


def test_evm_node_down_ten_simulated_minutes_then_a_deep_reorg(
    make_broker,  # noqa: F811
    make_gateway,  # noqa: F811
    node: Anvil,
    tmp_path: Path,
) -> None:
    reference = reference_verdict(make_broker, make_gateway, tmp_path / "reference")
    s = Scenario(make_broker, make_gateway)
    env = s.env
    on_evm(env, node)
    cloud = CloudServer(tmp_path / "cloud")
    cloud_on_evm(cloud, env, node)
    with_cloud(env, cloud.url)
    cloud.recorded = []
    cloud.start()
    clock = SimClock()
    gw = env.start_gateway()
    gw.ledger.clock = clock  # the backend's clock: simulated time from here on
    rpc = json_rpc(node.url)
    try:
        env.connect(*scenario_devices(s))
        s.run_day()
        wait_for(lambda: all_anchored(env, cloud, clock), 60, "the day anchored and pushed")
        before = anchors_of(env)

        # 1. The node goes away for ten minutes of simulated time; devices keep publishing.
        node.stop()
        k = 0
        for _ in range(OUTAGE_STEPS):
            clock.advance(30)
            more_readings(s, k, 2)
            k += 2
        wait_for(lambda: gw.ledger.status()["status"] == "unreachable", 30, "outage noticed")
        status = gw.ledger.status()
        assert status["queued"] >= 1 and "is unreachable" in status["last_error"]
        assert anchors_of(env) == before  # nothing anchored while the node is away
        node.start()  # the same port, the same chain (--state)
        node.rpc("evm_increaseTime", 600)
        node.mine(1)
        wait_for(lambda: all_anchored(env, cloud, clock), 90, "caught up after the outage")
        caught = anchors_of(env)
        assert len(caught) == len(before) + 1  # one anchor covers the outage's checkpoints
        assert gw.ledger.status()["status"] == "ok"

        # 2. A reorganisation deeper than the confirmations drops a final, pushed anchor.
        snap = node.snapshot()
        more_readings(s, k, 5)
        k += 5
        wait_for(lambda: all_anchored(env, cloud, clock), 60, "a new anchor, final, pushed")
        size = max(anchors_of(env))
        old = anchors_of(env)[size]
        assert cloud_receipts(cloud)[size] == old
        wait_for(
            lambda: node.block_number() >= old["block_number"] + CONFIRMATIONS + 3,
            30,
            "the anchor buried deeper than the confirmations",
        )
        depth = node.block_number() - old["block_number"] + 1
        stale_pushes = [p for p in cloud.recorded if old["tx_hash"].encode() in p[1]]
        node.revert(snap)  # every block since the snapshot is gone
        wait_for(lambda: anchors_of(env)[size] != old, 60, "the receipt replaced")
        new = anchors_of(env)[size]
        assert new["block_hash"] != old["block_hash"]
        wait_for(lambda: all_anchored(env, cloud, clock), 60, "the new receipt in the cloud")
        assert cloud_receipts(cloud)[size] == new

        # A push recorded before the reorg, replayed: the dead receipt stays out.
        assert stale_pushes
        replays: dict[str, int] = {}
        for path, body, auth in stale_pushes:
            r = httpx.post(
                cloud.url + path, content=body, headers={"Authorization": auth}, timeout=30
            )
            doc = r.json()
            what = doc.get("error") or ("duplicate" if doc["duplicate"] else "stored")
            codes = sorted({f["code"] for f in doc.get("failures", [])})
            key = " ".join([str(r.status_code), what, *codes])
            replays[key] = replays.get(key, 0) + 1
        # Refused whole, with the reason: the receipt's transaction is in another block.
        assert replays == {"422 unverified_records bad_anchor": len(stale_pushes)}
        assert cloud_receipts(cloud)[size] == new

        # 3. The restated chains, anchored and pushed; the cloud's bundle verifies.
        with clock.running():  # `gateway trace` waits for its restatements' anchor
            assert s.trace(tmp_path / "gateway-bundle.json", UID.hex()) == 0
        wait_for(lambda: all_anchored(env, cloud, clock), 60, "the restatements anchored")
        verdict = cloud_verdict(cloud, evm_rpc=node.url, out=tmp_path / "verify")
    finally:
        gw.stop()
        cloud.stop()

    devices = check_devices(env, scenario_devices(s))
    verifier = load_log_signer(env.cfg).verifier()
    store = open_store(env.cfg)
    try:
        cps = check_log(env.cfg, store, 100)
        anchors = {a.size: a for a in store.anchors()}
        notes = {c.size: c.note for c in store.checkpoints()}
    finally:
        store.close()
    # Every checkpoint anchored, itself or by a later one (check_log proved them
    # consistent one to the next); the last one itself; every receipt verifies.
    assert cps[-1].size in anchors
    assert all(any(a >= cp.size for a in anchors) for cp in cps)
    for a in anchors.values():
        assert a.backend == "evm" and a.receipt["confirmations"] == CONFIRMATIONS
        cp = open_checkpoint(notes[a.size], [verifier])
        verify_evm_receipt(EvmReceipt.from_json(a.receipt), cp, rpc)
    in_cloud = check_cloud(env, cloud)
    assert verdict_shape(verdict, s.t0) == reference and verdict["verdict"] == "PASS"
    write_counts(
        "evm_node_down_and_deep_reorg",
        **devices,
        **in_cloud,
        lost=devices["published"] - devices["stored"],
        duplicates=in_cloud["cloud_duplicates"],
        checkpoints=len(cps),
        anchors=len(anchors),
        simulated_outage_s=30 * OUTAGE_STEPS,
        simulated_s_total=round(clock.offset),
        reorg_depth_blocks=depth,
        stale_replays=replays,
        verdict=verdict["verdict"],
    )
