"""The EVM ledger backend against a real Anvil node (docs/evm.md).

The gateway's store, log and ingest are wired without MQTT (tests/gateway/core.py)
with :class:`gateway.evidence.evm.EvmLedger` as the ledger; Anvil automines each
transaction in its own block and the tests mine the blocks that confirm it. Covered:
anchoring then ``coldtrace verify --evm-rpc`` (and the confirmation depth), the
anchoring cadence, a reorganisation that drops an anchor before and after it is
final, the node down then caught up with nothing lost, a wrong chain id, and an
account out of funds. The account key never appears in the logs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import ConfigError, EvmLedgerConfig
from gateway.evidence.evm import EvmLedger, deploy_contract, load_account
from gateway.evidence.ledger import LedgerError
from gateway.evidence.proofs import TreeReader, prove
from protocol.anchor import EvmReceipt, verify_evm_receipt
from protocol.bundle import Subject
from protocol.checkpoint import open_checkpoint
from protocol.cli import main as coldtrace
from protocol.errors import AnchorConfirmationsError, AnchorMismatchError
from protocol.keys import p256_public_to_sec1
from protocol.rpc import json_rpc
from protocol.trust import EvmLedger as EvmPin
from protocol.trust import Scopes, trust_document
from tests.anvil import Anvil, funded_key, write_key
from tests.gateway.core import REGISTRY, Core, rec
from tests.gateway.devices import SimDevice

CHAIN = 31337


@dataclass
class Chain:
    node: Anvil
    key: str
    address: str
    cfg: EvmLedgerConfig


@pytest.fixture
def chain(anvil: Anvil, tmp_path: Path) -> Chain:
    key, address = funded_key(anvil)
    cfg = EvmLedgerConfig(
        rpc_url=anvil.url,
        chain_id=CHAIN,
        key_file=write_key(tmp_path / "keys" / "anchor.hex", key),
        confirmations=3,
        interval=0,
        poll=0.05,
        timeout=5,
    )
    cfg.contract, _, _ = deploy_contract(anvil.url, load_account(cfg), confirmations=0)
    return Chain(anvil, key, address, cfg)


class EvmCore(Core):
    """tests/gateway/core.py's parts with the EVM ledger."""

    def __init__(self, d: Path, cfg: EvmLedgerConfig, **kw) -> None:
        self.cfg = cfg
        self.alerts: list[tuple[str, str]] = []
        super().__init__(d, **kw)

    def open_ledger(self) -> EvmLedger:
        return EvmLedger(
            self.cfg, self.dir / "evm-ledger.db", alert=lambda k, m: self.alerts.append((k, m))
        )


@pytest.fixture
def core(chain: Chain, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[EvmCore]:
    caplog.set_level(logging.DEBUG)
    c = EvmCore(tmp_path / "gw", chain.cfg)
    yield c
    c.close()
    # The account key is never logged, whatever happened in the test.
    assert chain.key[2:] not in caplog.text and chain.key not in caplog.text


def settle(node: Anvil, cond: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Mine a block at a time until ``cond()`` holds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        node.mine()
        time.sleep(0.05)


def wait(cond: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def checkpoint(core: EvmCore, dev: SimDevice, n: int = 5):
    core.send(*(rec(dev, dev.reading()) for _ in range(n)))
    return core.log.checkpoint()


def anchored(core: EvmCore, size: int) -> dict | None:
    rows = [a.receipt for a in core.store.anchors() if a.size == size]
    assert len(rows) <= 1
    return rows[0] if rows else None


def trust_for(core: EvmCore, cfg: EvmLedgerConfig) -> dict:
    return trust_document(
        logs=[(core.log.origin, core.signer.vkey)],
        registries={
            REGISTRY: (
                p256_public_to_sec1(core.registry_key.public_key()),
                Scopes(("*",), ("*",), ("*",)),
            )
        },
        evm=[EvmPin(CHAIN, cfg.contract.lower())],
    )


def txs(chain: Chain) -> int:
    """Anchor transactions the account made (its nonce, less the deployment)."""
    return int(chain.node.rpc("eth_getTransactionCount", chain.address, "latest"), 16) - 1


def started(core: EvmCore, dev: SimDevice) -> None:
    core.register(dev)


# --- anchoring, then verification -------------------------------------------------------


def test_checkpoints_anchor_and_coldtrace_verify_checks_them_on_the_node(
    chain: Chain, core: EvmCore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dev = SimDevice("tl-evm-1")
    started(core, dev)
    cp = checkpoint(core, dev, 10)
    # Asynchronous: nothing is stored before the anchor has its confirmations.
    wait(lambda: core.ledger.status()["pending"] == 1, "the anchor sent")
    assert anchored(core, cp.size) is None and core.ledger.receipts() == []
    settle(chain.node, lambda: anchored(core, cp.size), "the anchor final")
    receipt = anchored(core, cp.size)
    assert receipt["confirmations"] == 3 and receipt["chain_id"] == CHAIN
    assert core.ledger.receipts() == [receipt]
    assert core.log.last_anchor.size == cp.size
    ev = EvmReceipt.from_json(receipt)
    checkpoint_obj = open_checkpoint(cp.note, [core.signer.verifier()])
    verify_evm_receipt(ev, checkpoint_obj, json_rpc(chain.node.url))
    # Anchoring the same checkpoint again is the same receipt, no new transaction.
    nonce = chain.node.rpc("eth_getTransactionCount", chain.address, "latest")
    assert core.ledger.anchor(cp.note) == receipt
    assert chain.node.rpc("eth_getTransactionCount", chain.address, "latest") == nonce

    reader = TreeReader(core.dir / "tree", cp.size)
    bundle = prove(core.store, reader, core.log.origin, [0, 3, 4], Subject(bytes(7)))
    reader.close()
    bundle_path = tmp_path / "bundle.json"
    bundle_path.write_text(bundle.dumps())
    trust_path = tmp_path / "trust.json"
    trust_path.write_text(json.dumps(trust_for(core, chain.cfg)))

    def verify(path: Path, *rpc: str) -> dict:
        capsys.readouterr()
        coldtrace(["verify", str(path), "--trust", str(trust_path), "--json", *rpc])
        return json.loads(capsys.readouterr().out)

    def anchor_failures(doc: dict) -> list[str]:
        return [f["code"] for f in doc.get("failures", []) if "anchor" in f["code"]]

    ok = verify(bundle_path, "--evm-rpc", chain.node.url)
    assert ok["verified"] is True and anchor_failures(ok) == []
    without = verify(bundle_path)  # no node to ask: never verified
    assert without["verified"] is False and "anchor_unverifiable" in anchor_failures(without)
    # A receipt claiming more confirmations than the chain has is refused.
    doc = json.loads(bundle_path.read_text())
    text = json.dumps(doc).replace('"confirmations": 3', '"confirmations": 1000')
    deep = tmp_path / "deep.json"
    deep.write_text(text)
    bad = verify(deep, "--evm-rpc", chain.node.url)
    assert bad["verified"] is False and "bad_anchor" in anchor_failures(bad)
    with pytest.raises(AnchorConfirmationsError):
        verify_evm_receipt(
            EvmReceipt.from_json({**receipt, "confirmations": 1000}),
            checkpoint_obj,
            json_rpc(chain.node.url),
        )


def test_one_transaction_per_interval_for_the_newest_checkpoint(
    chain: Chain, core: EvmCore
) -> None:
    core.ledger.cfg.interval = 3600
    dev = SimDevice("tl-evm-2")
    started(core, dev)
    first = checkpoint(core, dev)
    settle(chain.node, lambda: anchored(core, first.size), "the first anchor")
    later = [checkpoint(core, dev) for _ in range(4)]
    time.sleep(0.5)
    assert core.ledger.status()["queued"] == 4  # the interval has not passed: they wait
    core.ledger.cfg.interval = 0
    settle(chain.node, lambda: anchored(core, later[-1].size), "the newest anchor")
    # Two transactions in all: the newest checkpoint covers the three before it.
    assert txs(chain) == 2
    assert {a.size for a in core.store.anchors()} == {first.size, later[-1].size}
    status = core.ledger.status()
    assert (status["confirmed"], status["superseded"], status["queued"]) == (2, 3, 0)


# --- reorganisations ------------------------------------------------------------------


def test_a_reorg_drops_the_anchor_before_it_is_final_and_it_is_sent_again(
    chain: Chain, core: EvmCore
) -> None:
    dev = SimDevice("tl-evm-3")
    started(core, dev)
    snap = chain.node.snapshot()
    cp = checkpoint(core, dev)
    wait(lambda: (core.ledger.status()["in_flight"] or {}).get("block_number"), "mined")
    first_block = chain.node.rpc("eth_getBlockByNumber", "latest", False)["hash"]
    chain.node.revert(snap)  # the block holding the anchor is gone, with its transaction
    chain.node.mine(2)
    settle(chain.node, lambda: anchored(core, cp.size), "the anchor final again")
    receipt = anchored(core, cp.size)
    assert receipt["block_hash"] != first_block
    verify_evm_receipt(
        EvmReceipt.from_json(receipt),
        open_checkpoint(cp.note, [core.signer.verifier()]),
        json_rpc(chain.node.url),
    )


def test_a_reorg_deeper_than_the_confirmations_replaces_the_stored_receipt(
    chain: Chain, core: EvmCore
) -> None:
    core.ledger.cfg.confirmations = 1
    dev = SimDevice("tl-evm-4")
    started(core, dev)
    snap = chain.node.snapshot()
    cp = checkpoint(core, dev)
    settle(chain.node, lambda: anchored(core, cp.size), "the anchor final")
    old = anchored(core, cp.size)
    core.store.set_meta("cloud.receipt", str(cp.size))  # as if pushed to the cloud
    cpo = open_checkpoint(cp.note, [core.signer.verifier()])
    chain.node.revert(snap)
    chain.node.mine(3)
    with pytest.raises(AnchorMismatchError):  # the stored receipt is wrong now
        verify_evm_receipt(EvmReceipt.from_json(old), cpo, json_rpc(chain.node.url))
    settle(chain.node, lambda: anchored(core, cp.size) != old, "the receipt replaced")
    new = anchored(core, cp.size)
    assert new["block_hash"] != old["block_hash"]
    verify_evm_receipt(EvmReceipt.from_json(new), cpo, json_rpc(chain.node.url))
    assert core.ledger.receipts() == [new]
    # The cloud gets the new receipt: the push mark went back below it.
    assert int(core.store.get_meta("cloud.receipt")) < cp.size


# --- the node away, the wrong chain, no funds ------------------------------------------


def test_node_down_then_caught_up_with_nothing_lost(
    chain: Chain, core: EvmCore, caplog: pytest.LogCaptureFixture
) -> None:
    node = chain.node
    dev = SimDevice("tl-evm-5")
    started(core, dev)
    first = checkpoint(core, dev)
    settle(node, lambda: anchored(core, first.size), "the first anchor")
    node.stop()  # --state: the chain is saved
    during = [checkpoint(core, dev) for _ in range(3)]
    wait(lambda: core.ledger.status()["status"] == "unreachable", "the outage noticed")
    time.sleep(1.0)  # several failed looks at the node...
    lines = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len([r for r in lines if r.levelno >= logging.ERROR]) == 1  # ...one error line
    status = core.ledger.status()
    assert status["queued"] == 3 and "is unreachable" in status["last_error"]
    assert anchored(core, during[-1].size) is None
    node.start()  # the same port, the same chain
    settle(node, lambda: anchored(core, during[-1].size), "the catch-up anchor")
    assert core.ledger.status()["status"] == "ok"
    rpc = json_rpc(node.url)
    for cp in (first, during[-1]):  # every receipt kept, each verifies on the chain
        verify_evm_receipt(
            EvmReceipt.from_json(anchored(core, cp.size)),
            open_checkpoint(cp.note, [core.signer.verifier()]),
            rpc,
        )
    assert txs(chain) == 2  # the first, then one for the three checkpoints made meanwhile


def test_a_wrong_chain_id_is_refused_at_start(chain: Chain, tmp_path: Path) -> None:
    from gateway.service import open_evm_ledger

    cfg = EvmLedgerConfig(**{**chain.cfg.__dict__, "chain_id": 5})
    with pytest.raises(LedgerError, match="serves chain 31337, not chain_id 5"):
        EvmLedger(cfg, tmp_path / "x.db")

    class Cfg:  # open_evm_ledger turns it into a ConfigError: a message, no traceback
        class ledger:
            evm = cfg
            path = tmp_path / "y.db"

        data_dir = tmp_path

    with pytest.raises(ConfigError, match="serves chain 31337"):
        open_evm_ledger(Cfg)  # type: ignore[arg-type]


def test_out_of_funds_is_reported_then_anchored_when_funded(chain: Chain, core: EvmCore) -> None:
    node = chain.node
    node.set_balance(chain.address, 0)
    dev = SimDevice("tl-evm-6")
    started(core, dev)
    cp = checkpoint(core, dev)
    wait(lambda: core.ledger.status()["status"] == "out_of_funds", "out of funds reported")
    status = core.ledger.status()
    assert chain.address in status["last_error"] and "fund the account" in status["last_error"]
    assert status["queued"] == 1  # nothing lost
    wait(lambda: core.alerts, "the alert")
    assert [k for k, _ in core.alerts] == ["ledger_out_of_funds"]
    node.set_balance(chain.address, 10**18)
    settle(node, lambda: anchored(core, cp.size), "anchored once funded")
    assert core.ledger.status()["status"] == "ok"


def test_key_file_readable_by_others_is_refused(chain: Chain) -> None:
    chain.cfg.key_file.chmod(0o644)
    with pytest.raises(LedgerError, match="readable by others") as err:
        load_account(chain.cfg)
    assert chain.key[2:] not in str(err.value)


# --- restarts -------------------------------------------------------------------------


def test_a_restart_with_an_anchor_in_flight_follows_it_and_sends_nothing_twice(
    chain: Chain, core: EvmCore
) -> None:
    dev = SimDevice("tl-evm-7")
    core.register(dev)
    cp = checkpoint(core, dev)
    wait(lambda: (core.ledger.status()["in_flight"] or {}).get("block_number"), "mined")
    core.reopen()  # the gateway stops (or is killed) before the anchor is final
    assert core.ledger.status()["pending"] == 1
    settle(chain.node, lambda: anchored(core, cp.size), "the anchor final after the restart")
    assert txs(chain) == 1


def test_a_final_receipt_the_store_missed_is_stored_at_the_next_start(
    chain: Chain, core: EvmCore
) -> None:
    dev = SimDevice("tl-evm-8")
    core.register(dev)
    core.ledger.on_receipt = None  # as if the process died between the two commits
    cp = checkpoint(core, dev)
    settle(chain.node, lambda: core.ledger.receipts(), "final in the ledger")
    assert anchored(core, cp.size) is None
    receipt = core.ledger.receipts()[0]
    core.reopen()
    assert anchored(core, cp.size) == receipt
    assert core.log.last_anchor.size == cp.size


def test_above_the_fee_cap_nothing_is_sent_until_the_cap_allows(
    chain: Chain, core: EvmCore
) -> None:
    base = int(chain.node.rpc("eth_getBlockByNumber", "latest", False)["baseFeePerGas"], 16)
    core.ledger.cfg.max_fee_gwei = base / 1e9 / 4  # below the next base fee
    core.ledger.cfg.priority_fee_gwei = 0
    dev = SimDevice("tl-evm-9")
    core.register(dev)
    cp = checkpoint(core, dev)
    wait(lambda: core.ledger.status()["status"] == "fee_cap", "the cap reported")
    assert "above max_fee_gwei" in core.ledger.status()["last_error"]
    assert txs(chain) == 0 and core.ledger.status()["queued"] == 1
    core.ledger.cfg.max_fee_gwei = 100.0
    settle(chain.node, lambda: anchored(core, cp.size), "anchored under the new cap")
    tx = chain.node.rpc("eth_getTransactionByHash", anchored(core, cp.size)["tx_hash"])
    assert int(tx["maxFeePerGas"], 16) <= 100 * 10**9


def test_a_transaction_outgrown_by_the_base_fee_is_replaced_with_the_same_nonce(
    chain: Chain, core: EvmCore
) -> None:
    node = chain.node
    node.rpc("evm_setAutomine", False)  # blocks only when the test mines them
    dev = SimDevice("tl-evm-10")
    core.register(dev)
    cp = checkpoint(core, dev)
    wait(lambda: core.ledger.status()["pending"] == 1, "the anchor sent")
    first = core.ledger.status()["in_flight"]["tx_hash"]
    sent = node.rpc("eth_getTransactionByHash", first)
    # The next block's base fee rises above the transaction's max fee: it cannot be mined.
    node.rpc("anvil_setNextBlockBaseFeePerGas", hex(int(sent["maxFeePerGas"], 16) * 3))
    wait(lambda: core.ledger.status()["in_flight"]["tx_hash"] != first, "the replacement")
    second = node.rpc("eth_getTransactionByHash", core.ledger.status()["in_flight"]["tx_hash"])
    assert second["nonce"] == sent["nonce"]
    assert int(second["maxFeePerGas"], 16) > int(sent["maxFeePerGas"], 16) * 3
    settle(node, lambda: anchored(core, cp.size), "the replacement final")
    assert anchored(core, cp.size)["tx_hash"] == second["hash"]
    assert txs(chain) == 1


def test_the_key_from_the_environment_and_its_errors_name_the_variable_not_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = "0x" + "ab" * 32
    cfg = EvmLedgerConfig(rpc_url="http://127.0.0.1:1", chain_id=1, key_env="CT_ANCHOR_KEY")
    monkeypatch.setenv("CT_ANCHOR_KEY", key)
    assert load_account(cfg).key.hex().removeprefix("0x") == "ab" * 32
    monkeypatch.setenv("CT_ANCHOR_KEY", "not-a-key-" + "cd" * 20)
    with pytest.raises(LedgerError, match="CT_ANCHOR_KEY does not hold") as err:
        load_account(cfg)
    assert "cd" * 20 not in str(err.value)
    monkeypatch.delenv("CT_ANCHOR_KEY")
    with pytest.raises(LedgerError, match="CT_ANCHOR_KEY holds no account key"):
        load_account(cfg)


def test_a_reverted_anchor_is_reported_and_sent_again(chain: Chain, core: EvmCore) -> None:
    core.ledger.cfg.gas_limit = 40_000  # above the intrinsic gas, below what anchor() uses
    dev = SimDevice("tl-evm-11")
    core.register(dev)
    cp = checkpoint(core, dev)
    wait(lambda: core.ledger.status()["status"] == "reverted", "the revert reported")
    assert "was reverted on chain" in core.ledger.status()["last_error"]
    core.ledger.cfg.gas_limit = 0
    settle(chain.node, lambda: anchored(core, cp.size), "anchored on the second try")
    receipt = anchored(core, cp.size)
    assert chain.node.rpc("eth_getTransactionReceipt", receipt["tx_hash"])["status"] == "0x1"
    assert txs(chain) >= 2  # the reverted one, then the one that counts
