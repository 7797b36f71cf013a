"""Anchor receipts (protocol/anchor.py): local ledger entries and EVM events.

EVM receipts are checked here against a fake JSON-RPC endpoint that answers
with dicts shaped like an Anvil/geth node's (eth_chainId,
eth_getTransactionReceipt, eth_getBlockByNumber, eth_blockNumber); the real
node is exercised elsewhere.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import errors
from protocol.anchor import (
    ANCHORED_EVENT_SIGNATURE,
    EvmReceipt,
    LocalEntry,
    LocalReceipt,
    anchored_topic0,
    entry_hash,
    local_entry_bytes,
    origin_hash,
    sign_local_entry,
    verify_evm_receipt,
    verify_local_chain,
    verify_local_receipt,
)
from protocol.checkpoint import Checkpoint, checkpoint_hash
from protocol.keccak import keccak256

ORIGIN = "coldtrace.example/acme/warehouse-7"
LEDGER = "coldtrace.example/acme/ledger"
ZERO = bytes(32)
CP = Checkpoint(ORIGIN, 40, hashlib.sha256(b"root of 40 leaves").digest())
CP_HASH = checkpoint_hash(CP)
KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"coldtrace test ledger key").digest())
PUBLIC = KEY.public_key()


# --- local ledger: entry format ------------------------------------------------------------


def test_local_entry_bytes_are_the_six_lines_of_section_8_1() -> None:
    prev = bytes(range(32))
    want = (
        "coldtrace-ledger/v1\n"
        "coldtrace.example/acme/ledger\n"
        "12\n"
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
        "1790000000\n"
        f"{CP_HASH.hex()}\n"
    ).encode()
    assert local_entry_bytes(LEDGER, 12, prev, 1790000000, CP_HASH) == want
    assert entry_hash(LEDGER, 12, prev, 1790000000, CP_HASH) == hashlib.sha256(want).digest()
    entry = LocalEntry(LEDGER, 12, prev, 1790000000, CP_HASH)
    assert entry.hash() == entry_hash(entry) == hashlib.sha256(want).digest()
    receipt = sign_local_entry(KEY, LEDGER, 12, prev, 1790000000, CP_HASH)
    assert entry_hash(receipt) == receipt.entry_hash() == entry.hash()
    assert receipt.entry() == entry


@pytest.mark.parametrize(
    ("ledger", "index", "prev", "time"),
    [
        ("", 0, ZERO, 0),
        ("has space", 0, ZERO, 0),
        ("a+b", 0, ZERO, 0),
        ("x" * 129, 0, ZERO, 0),
        (LEDGER, -1, ZERO, 0),
        (LEDGER, True, ZERO, 0),
        (LEDGER, 0, b"\x01" * 32, 0),  # entry 0 has no predecessor
        (LEDGER, 1, ZERO, 0),  # later entries name their predecessor's hash
        (LEDGER, 1, b"\x01" * 31, 0),
        (LEDGER, 0, ZERO, 2**32),  # §1: time below 2^32
        (LEDGER, 0, ZERO, -1),
    ],
)
def test_local_entry_refuses_bad_fields(ledger: str, index: int, prev: bytes, time: int) -> None:
    with pytest.raises(errors.MalformedReceiptError):
        local_entry_bytes(ledger, index, prev, time, CP_HASH)


# --- local ledger: receipts ----------------------------------------------------------------


def _chain(count: int, *, ledger: str = LEDGER) -> list[LocalReceipt]:
    receipts: list[LocalReceipt] = []
    prev = ZERO
    for i in range(count):
        cp_hash = hashlib.sha256(f"checkpoint {i}".encode()).digest()
        receipt = sign_local_entry(KEY, ledger, i, prev, 1790000000 + 60 * i, cp_hash)
        receipts.append(receipt)
        prev = receipt.entry_hash()
    return receipts


def test_signed_local_receipt_verifies() -> None:
    receipt = sign_local_entry(KEY, LEDGER, 0, ZERO, 1790000000, CP_HASH)
    verify_local_receipt(receipt, PUBLIC, CP_HASH)
    verify_local_receipt(receipt, PUBLIC.public_bytes_raw(), CP_HASH)


def test_local_receipt_for_another_checkpoint_is_a_mismatch() -> None:
    receipt = sign_local_entry(KEY, LEDGER, 0, ZERO, 1790000000, CP_HASH)
    other = checkpoint_hash(Checkpoint(ORIGIN, 41, CP.root_hash))
    with pytest.raises(errors.AnchorMismatchError) as caught:
        verify_local_receipt(receipt, PUBLIC, other)
    assert (caught.value.expected, caught.value.found) == (other.hex(), CP_HASH.hex())


def test_local_receipt_under_another_key_fails() -> None:
    receipt = sign_local_entry(KEY, LEDGER, 0, ZERO, 1790000000, CP_HASH)
    with pytest.raises(errors.AnchorSignatureError):
        verify_local_receipt(receipt, Ed25519PrivateKey.generate().public_key(), CP_HASH)
    with pytest.raises(errors.AnchorSignatureError):
        verify_local_receipt(receipt, b"\x00" * 31, CP_HASH)


def test_local_receipt_json_round_trip() -> None:
    receipt = sign_local_entry(KEY, LEDGER, 3, b"\x07" * 32, 1790000000, CP_HASH)
    obj = receipt.to_json()
    assert obj == {
        "type": "local",
        "ledger": LEDGER,
        "index": 3,
        "prev": "07" * 32,
        "time": 1790000000,
        "checkpoint_hash": CP_HASH.hex(),
        "signature": base64.b64encode(receipt.signature).decode(),
    }
    assert LocalReceipt.from_json(obj) == receipt
    assert LocalReceipt.from_json(json.dumps(obj)) == receipt


def _local_json() -> dict[str, object]:
    return sign_local_entry(KEY, LEDGER, 3, b"\x07" * 32, 1790000000, CP_HASH).to_json()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.update(type="evm"),
        lambda o: o.pop("time"),
        lambda o: o.update(extra=1),
        lambda o: o.update(index=True),
        lambda o: o.update(index=3.0),
        lambda o: o.update(index="3"),
        lambda o: o.update(time=2**32),
        lambda o: o.update(prev="07" * 31),
        lambda o: o.update(prev="0x" + "07" * 31),
        lambda o: o.update(prev="0A" * 32),
        lambda o: o.update(checkpoint_hash=str(o["checkpoint_hash"]).upper()),
        lambda o: o.update(signature=str(o["signature"]).rstrip("=")),
        lambda o: o.update(signature=base64.b64encode(b"\x01" * 63).decode()),
        lambda o: o.update(signature=base64.urlsafe_b64encode(b"\xfb" * 64).decode()),
        lambda o: o.update(ledger=None),
    ],
)
def test_local_receipt_from_json_is_strict(mutate: Callable[[dict[str, object]], object]) -> None:
    obj = _local_json()
    mutate(obj)
    with pytest.raises(errors.MalformedReceiptError):
        LocalReceipt.from_json(obj)


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "not json",
        '{"type": "local", "type": "local"}',  # duplicate key
        '{"type": "local", "index": NaN}',
    ],
)
def test_local_receipt_from_json_text_is_strict(text: str) -> None:
    with pytest.raises(errors.MalformedReceiptError):
        LocalReceipt.from_json(text)


_CHANGES: dict[str, Any] = {
    "type": st.sampled_from(["evm", "Local", "", "local "]),
    "ledger": st.text(min_size=1, max_size=40),
    "index": st.one_of(st.integers(min_value=-5, max_value=2**64), st.booleans(), st.none()),
    "prev": st.one_of(st.binary(min_size=32, max_size=32).map(bytes.hex), st.text(max_size=70)),
    "time": st.one_of(st.integers(min_value=-5, max_value=2**33), st.floats()),
    "checkpoint_hash": st.binary(min_size=32, max_size=32).map(bytes.hex),
    "signature": st.one_of(
        st.binary(min_size=64, max_size=64).map(lambda b: base64.b64encode(b).decode()),
        st.text(max_size=90),
    ),
}


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=1000),
    time=st.integers(min_value=0, max_value=2**32 - 1),
    field=st.sampled_from(sorted(_CHANGES)),
    data=st.data(),
)
def test_any_single_field_change_to_a_local_receipt_fails(
    index: int, time: int, field: str, data: st.DataObject
) -> None:
    prev = ZERO if index == 0 else hashlib.sha256(b"entry %d" % (index - 1)).digest()
    obj = sign_local_entry(KEY, LEDGER, index, prev, time, CP_HASH).to_json()
    new = data.draw(
        _CHANGES[field].filter(lambda v: v != obj[field] or type(v) is not type(obj[field]))
    )
    obj[field] = new
    with pytest.raises(errors.AnchorError):
        verify_local_receipt(LocalReceipt.from_json(obj), PUBLIC, CP_HASH)


# --- local ledger: chains ----------------------------------------------------------------


def test_consecutive_local_receipts_link_in_any_order() -> None:
    receipts = _chain(5)
    verify_local_chain(receipts)
    verify_local_chain(list(reversed(receipts)))
    verify_local_chain([receipts[0], receipts[2], receipts[4]])  # gaps are allowed
    verify_local_chain([*receipts, receipts[1]])  # so is the same receipt twice
    verify_local_chain([])


def test_local_receipts_that_do_not_link_fail() -> None:
    receipts = _chain(3)
    forged = sign_local_entry(KEY, LEDGER, 2, b"\x05" * 32, 1790000120, receipts[2].checkpoint_hash)
    with pytest.raises(errors.AnchorChainError) as caught:
        verify_local_chain([receipts[0], receipts[1], forged])
    assert caught.value.expected == receipts[1].entry_hash().hex()


def test_two_different_local_receipts_at_one_index_are_a_fork() -> None:
    receipts = _chain(2)
    other = sign_local_entry(KEY, LEDGER, 1, receipts[1].prev, 1790000061, CP_HASH)
    with pytest.raises(errors.AnchorChainError):
        verify_local_chain([receipts[0], receipts[1], other])


def test_local_ledgers_are_chained_separately() -> None:
    verify_local_chain(_chain(3) + _chain(3, ledger="coldtrace.example/other-ledger"))


# --- EVM ------------------------------------------------------------------------------------


def test_anchored_topic0_is_keccak256_of_the_event_signature() -> None:
    assert ANCHORED_EVENT_SIGNATURE == "Anchored(bytes32,uint64,bytes32,bytes32)"
    assert anchored_topic0() == keccak256(ANCHORED_EVENT_SIGNATURE.encode())
    # Regression pin (this implementation; keccak256 itself is checked against
    # published vectors and FIPS 202 in test_keccak.py).
    assert anchored_topic0().hex() == (
        "e0fefe2c385c268b407afff2ad80d6521edf6409537f95b897f228a08e900205"
    )
    assert origin_hash(ORIGIN) == keccak256(ORIGIN.encode())


CONTRACT = "0x5fbdb2315678afecb367f032d93f642f64180aa3"  # Anvil's first deployment
SENDER = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"  # Anvil's first account
TX = "0x" + hashlib.sha256(b"tx").hexdigest()
BLOCK = "0x" + hashlib.sha256(b"block 42").hexdigest()
PARENT = "0x" + hashlib.sha256(b"block 41").hexdigest()


def _word(value: int | bytes) -> str:
    raw = value.to_bytes(32, "big") if isinstance(value, int) else value
    return raw.hex()


def _log(**changes: object) -> dict[str, object]:
    log: dict[str, object] = {
        "address": CONTRACT,
        "topics": ["0x" + anchored_topic0().hex(), "0x" + origin_hash(ORIGIN).hex()],
        "data": "0x" + _word(CP.size) + _word(CP.root_hash) + _word(CP_HASH),
        "blockHash": BLOCK,
        "blockNumber": "0x2a",
        "blockTimestamp": "0x6a9c4d80",
        "transactionHash": TX,
        "transactionIndex": "0x0",
        "logIndex": "0x0",
        "removed": False,
    }
    log.update(changes)
    return log


def _tx_receipt() -> dict[str, Any]:
    return {
        "type": "0x2",
        "status": "0x1",
        "cumulativeGasUsed": "0x9a2c",
        "logs": [_log()],
        "logsBloom": "0x" + "00" * 256,
        "transactionHash": TX,
        "transactionIndex": "0x0",
        "blockHash": BLOCK,
        "blockNumber": "0x2a",
        "gasUsed": "0x9a2c",
        "effectiveGasPrice": "0x3b9aca00",
        "from": SENDER,
        "to": CONTRACT,
        "contractAddress": None,
    }


def _block() -> dict[str, Any]:
    return {
        "hash": BLOCK,
        "parentHash": PARENT,
        "number": "0x2a",
        "timestamp": "0x6a9c4d80",
        "gasLimit": "0x1c9c380",
        "gasUsed": "0x9a2c",
        "miner": "0x0000000000000000000000000000000000000000",
        "baseFeePerGas": "0x3b9aca00",
        "transactions": [TX],
    }


class FakeNode:
    """Answers JSON-RPC calls from dicts; records the calls it got."""

    def __init__(self) -> None:
        self.chain_id: object = "0x7a69"  # 31337, Anvil's default
        self.head: object = "0x36"  # 54: block 42 is under 12 blocks
        self.receipts: dict[str, object] = {TX: _tx_receipt()}
        self.blocks: dict[str, object] = {"0x2a": _block()}
        self.calls: list[tuple[str, list[object]]] = []

    def __call__(self, method: str, params: list[object]) -> object:
        self.calls.append((method, params))
        if method == "eth_chainId":
            return self.chain_id
        if method == "eth_blockNumber":
            return self.head
        if method == "eth_getTransactionReceipt":
            return copy.deepcopy(self.receipts.get(str(params[0])))
        if method == "eth_getBlockByNumber":
            assert params[1] is False
            return copy.deepcopy(self.blocks.get(str(params[0])))
        raise AssertionError(f"unexpected RPC method {method}")


def _evm_receipt(**changes: object) -> EvmReceipt:
    obj: dict[str, object] = {
        "type": "evm",
        "chain_id": 31337,
        "contract": CONTRACT,
        "tx_hash": TX,
        "block_number": 42,
        "block_hash": BLOCK,
        "log_index": 0,
        "checkpoint_hash": CP_HASH.hex(),
        "confirmations": 12,
    }
    obj.update(changes)
    return EvmReceipt.from_json(obj)


def test_evm_receipt_verifies_against_the_chain() -> None:
    node = FakeNode()
    verify_evm_receipt(_evm_receipt(), CP, node)
    assert [m for m, _ in node.calls] == [
        "eth_chainId",
        "eth_getTransactionReceipt",
        "eth_getBlockByNumber",
        "eth_blockNumber",
    ]
    assert node.calls[1][1] == [TX]
    assert node.calls[2][1] == ["0x2a", False]


def test_evm_receipt_without_rpc_is_unverifiable_never_verified() -> None:
    with pytest.raises(errors.AnchorUnverifiableError) as caught:
        verify_evm_receipt(_evm_receipt(), CP, None)
    assert caught.value.code == "anchor_unverifiable"


def test_evm_receipt_for_another_checkpoint_fails_before_any_rpc_call() -> None:
    node = FakeNode()
    other = Checkpoint(ORIGIN, 41, CP.root_hash)
    with pytest.raises(errors.AnchorMismatchError):
        verify_evm_receipt(_evm_receipt(), other, node)
    assert node.calls == []


def test_evm_receipt_json_round_trip_and_checksummed_contract() -> None:
    receipt = _evm_receipt(contract="0x5FbDB2315678afecb367f032d93F642f64180aa3")
    assert receipt.contract == CONTRACT
    assert EvmReceipt.from_json(json.dumps(receipt.to_json())) == receipt
    assert receipt.to_json()["checkpoint_hash"] == CP_HASH.hex()


@pytest.mark.parametrize(
    "address",
    [
        # EIP-55's own examples
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ],
)
def test_eip55_checksummed_addresses_are_accepted_and_a_wrong_case_is_not(address: str) -> None:
    assert _evm_receipt(contract=address).contract == address.lower()
    i = next(i for i, c in enumerate(address) if i > 1 and c.isalpha())
    wrong = address[:i] + address[i].swapcase() + address[i + 1 :]
    with pytest.raises(errors.MalformedReceiptError):
        _evm_receipt(contract=wrong)


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "local"},
        {"chain_id": 0},
        {"chain_id": True},
        {"contract": CONTRACT[2:]},
        {"contract": CONTRACT + "00"},
        {"tx_hash": TX.upper()},
        {"tx_hash": TX[2:]},
        {"block_hash": BLOCK[:-2]},
        {"block_number": -1},
        {"block_number": "0x2a"},
        {"log_index": 0.0},
        {"checkpoint_hash": "0x" + CP_HASH.hex()},
        {"confirmations": None},
        {"extra": 1},
    ],
)
def test_evm_receipt_from_json_is_strict(changes: dict[str, object]) -> None:
    with pytest.raises(errors.MalformedReceiptError):
        _evm_receipt(**changes)


def _fails(
    error: type[errors.AnchorError], node: FakeNode, receipt: EvmReceipt | None = None
) -> None:
    with pytest.raises(errors.AnchorError) as caught:
        verify_evm_receipt(receipt or _evm_receipt(), CP, node)
    assert type(caught.value) is error, caught.value


def _edit_log(node: FakeNode, **changes: object) -> None:
    receipt = node.receipts[TX]
    assert isinstance(receipt, dict)
    receipt["logs"] = [_log(**changes)]


def test_endpoint_of_another_chain_makes_the_anchor_unverifiable() -> None:
    node = FakeNode()
    node.chain_id = "0x1"
    _fails(errors.AnchorUnverifiableError, node)


def test_failing_rpc_makes_the_anchor_unverifiable() -> None:
    def down(method: str, params: list[object]) -> object:
        raise OSError("connection refused")

    with pytest.raises(errors.AnchorUnverifiableError) as caught:
        verify_evm_receipt(_evm_receipt(), CP, down)
    assert isinstance(caught.value.__cause__, OSError)


@pytest.mark.parametrize("bad", ["42", "0x02a", "0X2A", 42, None, "0x"])
def test_garbled_rpc_quantity_makes_the_anchor_unverifiable(bad: object) -> None:
    node = FakeNode()
    node.head = bad
    _fails(errors.AnchorUnverifiableError, node)


def test_unknown_transaction_fails() -> None:
    node = FakeNode()
    node.receipts = {}
    _fails(errors.AnchorMismatchError, node)


def test_reverted_transaction_fails() -> None:
    node = FakeNode()
    receipt = node.receipts[TX]
    assert isinstance(receipt, dict)
    receipt["status"] = "0x0"
    receipt["logs"] = []
    _fails(errors.AnchorMismatchError, node)


@pytest.mark.parametrize(
    "changes",
    [
        {"blockNumber": "0x2b"},
        {"blockHash": "0x" + hashlib.sha256(b"block 42 on a fork").hexdigest()},
        {"transactionHash": "0x" + hashlib.sha256(b"other tx").hexdigest()},
    ],
)
def test_transaction_elsewhere_than_the_receipt_says_fails(changes: dict[str, object]) -> None:
    node = FakeNode()
    receipt = node.receipts[TX]
    assert isinstance(receipt, dict)
    receipt.update(changes)
    _fails(errors.AnchorMismatchError, node)


@pytest.mark.parametrize(
    "changes",
    [
        {"logIndex": "0x1"},
        {"address": "0x" + "11" * 20},  # an Anchored event, but from another contract
        {"removed": True},
        {
            "topics": [
                "0x" + keccak256(b"Transfer(address,address,uint256)").hex(),
                "0x" + origin_hash(ORIGIN).hex(),
            ]
        },
        {"topics": ["0x" + anchored_topic0().hex(), "0x" + origin_hash(ORIGIN + "x").hex()]},
        {"topics": ["0x" + anchored_topic0().hex()]},
        {"data": "0x" + _word(CP.size + 1) + _word(CP.root_hash) + _word(CP_HASH)},
        {"data": "0x" + _word(CP.size + 2**64) + _word(CP.root_hash) + _word(CP_HASH)},
        {"data": "0x" + _word(CP.size) + _word(bytes(32)) + _word(CP_HASH)},
        {"data": "0x" + _word(CP.size) + _word(CP.root_hash) + _word(bytes(32))},
        {"data": "0x" + _word(CP.size) + _word(CP.root_hash)},
        {"blockNumber": "0x29"},
    ],
)
def test_event_that_does_not_match_the_checkpoint_fails(changes: dict[str, object]) -> None:
    node = FakeNode()
    _edit_log(node, **changes)
    _fails(errors.AnchorMismatchError, node)


def test_event_found_by_its_log_index_among_others() -> None:
    node = FakeNode()
    receipt = node.receipts[TX]
    assert isinstance(receipt, dict)
    transfer = _log(
        logIndex="0x3", topics=["0x" + keccak256(b"Transfer(address,address,uint256)").hex()]
    )
    receipt["logs"] = [transfer, _log(logIndex="0x4")]
    verify_evm_receipt(_evm_receipt(log_index=4), CP, node)
    _fails(errors.AnchorMismatchError, node, _evm_receipt(log_index=3))


def test_block_reorganised_away_fails() -> None:
    node = FakeNode()
    block = node.blocks["0x2a"]
    assert isinstance(block, dict)
    block["hash"] = "0x" + hashlib.sha256(b"the new block 42").hexdigest()
    _fails(errors.AnchorMismatchError, node)
    node.blocks = {}
    _fails(errors.AnchorMismatchError, node)


def test_anchor_needs_the_claimed_confirmations() -> None:
    node = FakeNode()
    node.head = "0x35"  # 53: 11 blocks on top of block 42
    with pytest.raises(errors.AnchorConfirmationsError) as caught:
        verify_evm_receipt(_evm_receipt(), CP, node)
    assert (caught.value.expected, caught.value.found) == (">= 12", 11)
    verify_evm_receipt(_evm_receipt(confirmations=11), CP, node)
