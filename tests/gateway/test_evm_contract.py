"""The anchor contract: reproducible artifact, the §8.2 event, and its rules on a real Anvil."""

from __future__ import annotations

import hashlib

import pytest
from web3 import Web3
from web3.exceptions import ContractCustomError

from gateway.evidence.contracts import ARTIFACT, SOURCE, artifact
from gateway.evidence.contracts.build import compile_artifact, render
from protocol.anchor import ANCHORED_EVENT_SIGNATURE, anchored_topic0, origin_hash
from protocol.keccak import keccak256
from tests.anvil import Anvil, funded_key

ORIGIN = "example.org/gw-1"


def test_artifact_is_reproduced_byte_for_byte() -> None:
    art = artifact()
    assert art["source_sha256"] == hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    assert art["compiler"].startswith("solcjs 0.8.37")
    assert render(compile_artifact()) == ARTIFACT.read_text(encoding="utf-8")


def test_event_matches_the_spec() -> None:
    (event,) = [e for e in artifact()["abi"] if e["type"] == "event"]
    signature = f"{event['name']}({','.join(i['type'] for i in event['inputs'])})"
    assert signature == ANCHORED_EVENT_SIGNATURE
    assert [i["indexed"] for i in event["inputs"]] == [True, False, False, False]
    assert keccak256(signature.encode()) == anchored_topic0()


def _deploy(w3: Web3, key: str):
    art = artifact()
    acct = w3.eth.account.from_key(key)
    c = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx = c.constructor().build_transaction({"from": acct.address, "nonce": 0})
    h = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    addr = w3.eth.wait_for_transaction_receipt(h)["contractAddress"]
    return w3.eth.contract(address=addr, abi=art["abi"]), acct


def _send(w3: Web3, acct, fn) -> dict:
    tx = fn.build_transaction(
        {"from": acct.address, "nonce": w3.eth.get_transaction_count(acct.address)}
    )
    h = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    return w3.eth.wait_for_transaction_receipt(h)


def test_anchor_event_view_and_no_backwards(anvil: Anvil) -> None:
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    key, _ = funded_key(anvil)
    other, _ = funded_key(anvil)
    c, acct = _deploy(w3, key)
    root, cph = b"\x11" * 32, b"\x22" * 32
    r = _send(w3, acct, c.functions.anchor(ORIGIN, 10, root, cph))
    assert r["status"] == 1
    (log,) = r["logs"]
    assert log["topics"][0] == anchored_topic0()
    assert log["topics"][1] == origin_hash(ORIGIN)
    assert log["data"] == (10).to_bytes(32, "big") + root + cph
    assert c.functions.anchorOf(acct.address, ORIGIN, 10).call() == [root, cph, r["blockNumber"]]
    assert c.functions.latest(acct.address, ORIGIN).call() == [10, root, cph, r["blockNumber"]]
    assert c.functions.anchorOf(acct.address, ORIGIN, 9).call() == [bytes(32), bytes(32), 0]

    # Backwards, or the same size again: the contract refuses (custom error NotGrowing).
    for size in (10, 9):
        with pytest.raises(ContractCustomError):
            c.functions.anchor(ORIGIN, size, root, cph).call({"from": acct.address})
    tx = c.functions.anchor(ORIGIN, 5, root, cph).build_transaction(
        {"from": acct.address, "nonce": w3.eth.get_transaction_count(acct.address), "gas": 100000}
    )
    h = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(h)["status"] == 0  # mined, reverted
    assert c.functions.latest(acct.address, ORIGIN).call()[0] == 10

    # Another account's anchors of the same origin are its own: no interference.
    acct2 = w3.eth.account.from_key(other)
    assert _send(w3, acct2, c.functions.anchor(ORIGIN, 3, root, cph))["status"] == 1
    assert c.functions.latest(acct.address, ORIGIN).call()[0] == 10
    assert c.functions.latest(acct2.address, ORIGIN).call()[0] == 3
    with pytest.raises(ContractCustomError):
        c.functions.anchor(ORIGIN, 11, bytes(32), cph).call({"from": acct.address})


def test_every_ledger_evm_key_is_documented() -> None:
    """docs/evm.md §3 and docs/operations.md list every [ledger.evm] key (and no other)."""
    import dataclasses
    import re
    from pathlib import Path

    from gateway.config import EvmLedgerConfig

    keys = {f.name for f in dataclasses.fields(EvmLedgerConfig)}
    root = Path(__file__).resolve().parents[2]
    for doc in ("docs/evm.md", "docs/operations.md"):
        text = (root / doc).read_text(encoding="utf-8")
        block = text[text.index("[ledger.evm]\n") :]
        block = block[: block.index("```")]
        found = set(re.findall(r"^#? ?([a-z_]+) = ", block, re.M))
        found |= set(re.findall(r"(?:; or |; )([a-z_]+) = ", block))
        assert found == keys, (doc, sorted(keys - found), sorted(found - keys))
