"""Anchor receipts: proof that a checkpoint was put on a ledger (docs/protocol.md §8).

A ledger holds ``checkpoint_hash = SHA-256(checkpoint body)``
(:func:`protocol.checkpoint.checkpoint_hash`). Two kinds of ledger:

- **local** (§8.1): an append-only list of text entries, each naming the hash
  of the one before and signed by the ledger's Ed25519 key. A
  :class:`LocalReceipt` carries one entry's fields and signature; it verifies
  offline under the pinned ledger key, and consecutive receipts must link;
- **evm** (§8.2): an ``Anchored`` event emitted by an anchor contract. An
  :class:`EvmReceipt` says where the event is (chain, contract, transaction,
  block, log index); it can only be checked against the chain, through a
  JSON-RPC endpoint. Without one it is *unverifiable*, never verified.

Receipts are parsed strictly (exact fields, canonical hex and base64) and
checked shape first, then hashes, then signatures or RPC lookups.

The verifier pins which ledgers it trusts (the trust file, §10): the caller
passes the pinned key of a local ledger, and must itself check that an EVM
receipt's ``(chain_id, contract)`` is pinned before calling
:func:`verify_evm_receipt` — anyone can deploy a contract that emits
``Anchored``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import ClassVar, overload

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.checkpoint import MAX_TREE_SIZE, Checkpoint, checkpoint_hash
from protocol.errors import (
    AnchorChainError,
    AnchorConfirmationsError,
    AnchorError,
    AnchorMismatchError,
    AnchorSignatureError,
    AnchorUnverifiableError,
    MalformedReceiptError,
)
from protocol.keccak import keccak256

__all__ = [
    "ANCHORED_EVENT_SIGNATURE",
    "LEDGER_ENTRY_MAGIC",
    "EvmReceipt",
    "LocalEntry",
    "LocalReceipt",
    "RpcCall",
    "anchored_topic0",
    "entry_hash",
    "local_entry_bytes",
    "origin_hash",
    "sign_local_entry",
    "verify_evm_receipt",
    "verify_local_chain",
    "verify_local_receipt",
]

RpcCall = Callable[[str, list[object]], object]

LEDGER_ENTRY_MAGIC = "coldtrace-ledger/v1"
ANCHORED_EVENT_SIGNATURE = "Anchored(bytes32,uint64,bytes32,bytes32)"

_ZERO_HASH = bytes(32)
_MAX_TIME = 2**32 - 1  # §1: Unix seconds below 2^32
_MAX_INDEX = 2**63 - 1
_MAX_UINT64 = 2**64 - 1

_LEDGER_ID = re.compile(r"[\x21-\x2a\x2c-\x7e]{1,128}")  # as a log origin (§1)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX_HASH = re.compile(r"0x[0-9a-f]{64}")
_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_QUANTITY = re.compile(r"0x(0|[1-9a-f][0-9a-f]*)")
_DATA = re.compile(r"0x(?:[0-9a-f]{2})*")


# --- field checks --------------------------------------------------------------------


def _uint(value: object, field: str, maximum: int, *, minimum: int = 0) -> int:
    """An integer (not a bool: JSON ``true`` is not 1) in ``minimum..maximum``."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise MalformedReceiptError(
            f"{field} must be an integer in {minimum}..{maximum}", found=value
        )
    return value


def _hash_bytes(value: object, field: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise MalformedReceiptError(
            f"{field} must be 32 bytes",
            expected=32,
            found=len(value) if isinstance(value, bytes) else type(value).__name__,
        )
    return value


def _hex64(value: object, field: str) -> bytes:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise MalformedReceiptError(f"{field} must be 64 lowercase hex digits", found=value)
    return bytes.fromhex(value)


def _ledger_id(value: object) -> str:
    if not isinstance(value, str) or not _LEDGER_ID.fullmatch(value):
        raise MalformedReceiptError(
            "ledger id must be 1 to 128 bytes of printable ASCII without space or '+'",
            found=value,
        )
    return value


def _json_object(
    data: Mapping[str, object] | str, kind: str, fields: frozenset[str]
) -> dict[str, object]:
    if isinstance(data, str):
        try:
            data = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
        except ValueError as exc:
            raise MalformedReceiptError(f"receipt is not JSON: {exc}") from exc
    if not isinstance(data, Mapping):
        raise MalformedReceiptError("receipt must be a JSON object", found=type(data).__name__)
    obj = dict(data)
    if obj.get("type") != kind:
        raise MalformedReceiptError("wrong receipt type", expected=kind, found=obj.get("type"))
    if set(obj) != fields:
        raise MalformedReceiptError(
            "receipt fields", expected=sorted(fields), found=sorted(str(k) for k in obj)
        )
    return obj


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


# --- local ledger (§8.1) ---------------------------------------------------------------


@dataclass(frozen=True)
class LocalEntry:
    """Entry ``index`` of local ledger ``ledger``; :meth:`to_bytes` is what is signed."""

    ledger: str
    index: int
    prev: bytes
    time: int
    checkpoint_hash: bytes

    def __post_init__(self) -> None:
        _ledger_id(self.ledger)
        _uint(self.index, "index", _MAX_INDEX)
        _hash_bytes(self.prev, "prev")
        _uint(self.time, "time", _MAX_TIME)
        _hash_bytes(self.checkpoint_hash, "checkpoint_hash")
        if self.index == 0 and self.prev != _ZERO_HASH:
            raise MalformedReceiptError(
                "entry 0 has no predecessor: prev must be 64 zeros", found=self.prev.hex()
            )
        if self.index > 0 and self.prev == _ZERO_HASH:
            raise MalformedReceiptError(
                "prev of an entry after the first is the hash of its predecessor, not zeros",
                found=self.index,
            )

    def to_bytes(self) -> bytes:
        """The UTF-8 entry text of §8.1, six lines each ending in a newline."""
        lines = (
            LEDGER_ENTRY_MAGIC,
            self.ledger,
            str(self.index),
            self.prev.hex(),
            str(self.time),
            self.checkpoint_hash.hex(),
        )
        return "".join(f"{line}\n" for line in lines).encode("utf-8")

    def hash(self) -> bytes:
        """SHA-256 of the entry: the ``prev`` of the next entry."""
        return hashlib.sha256(self.to_bytes()).digest()


def local_entry_bytes(
    ledger_id: str, index: int, prev: bytes, time: int, checkpoint_hash: bytes
) -> bytes:
    """The bytes of local ledger entry ``index`` (§8.1), the message its key signs."""
    return LocalEntry(ledger_id, index, prev, time, checkpoint_hash).to_bytes()


@overload
def entry_hash(entry: LocalEntry | LocalReceipt, /) -> bytes: ...


@overload
def entry_hash(
    ledger_id: str, index: int, prev: bytes, time: int, checkpoint_hash: bytes, /
) -> bytes: ...


def entry_hash(
    entry: LocalEntry | LocalReceipt | str,
    index: int | None = None,
    prev: bytes | None = None,
    time: int | None = None,
    checkpoint_hash: bytes | None = None,
    /,
) -> bytes:
    """SHA-256 of an entry's bytes: what entry ``index + 1`` puts in ``prev``.

    Takes an entry or a receipt, or the five fields of :func:`local_entry_bytes`.
    """
    if isinstance(entry, LocalEntry | LocalReceipt):
        return entry.entry_hash() if isinstance(entry, LocalReceipt) else entry.hash()
    if index is None or prev is None or time is None or checkpoint_hash is None:
        raise TypeError("entry_hash takes an entry, a receipt, or all five entry fields")
    return LocalEntry(entry, index, prev, time, checkpoint_hash).hash()


_LOCAL_FIELDS = frozenset(
    {"type", "ledger", "index", "prev", "time", "checkpoint_hash", "signature"}
)


@dataclass(frozen=True)
class LocalReceipt:
    """A local ledger entry with the ledger's Ed25519 signature over it (§8.1)."""

    type: ClassVar[str] = "local"

    ledger: str
    index: int
    prev: bytes
    time: int
    checkpoint_hash: bytes
    signature: bytes

    def __post_init__(self) -> None:
        self.entry()  # checks every entry field
        if not isinstance(self.signature, bytes) or len(self.signature) != 64:
            raise MalformedReceiptError(
                "an Ed25519 signature is 64 bytes",
                expected=64,
                found=len(self.signature) if isinstance(self.signature, bytes) else None,
            )

    def entry(self) -> LocalEntry:
        return LocalEntry(self.ledger, self.index, self.prev, self.time, self.checkpoint_hash)

    def entry_hash(self) -> bytes:
        return self.entry().hash()

    def to_json(self) -> dict[str, object]:
        """The receipt as a JSON object (a dict, ready for ``json.dumps`` or a bundle)."""
        return {
            "type": self.type,
            "ledger": self.ledger,
            "index": self.index,
            "prev": self.prev.hex(),
            "time": self.time,
            "checkpoint_hash": self.checkpoint_hash.hex(),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object] | str) -> LocalReceipt:
        """Parse a receipt from a JSON object (or its text). Exactly the fields of
        §8.1, integers that are not booleans, lowercase hex, canonical base64;
        anything else is :class:`MalformedReceiptError`."""
        obj = _json_object(data, cls.type, _LOCAL_FIELDS)
        signature_text = obj["signature"]
        signature = None
        if isinstance(signature_text, str):
            try:
                signature = base64.b64decode(signature_text, validate=True)
            except (binascii.Error, ValueError):
                signature = None
            if signature is not None and base64.b64encode(signature).decode() != signature_text:
                signature = None
        if signature is None:
            raise MalformedReceiptError(
                "signature must be canonical standard base64", found=signature_text
            )
        return cls(
            ledger=_ledger_id(obj["ledger"]),
            index=_uint(obj["index"], "index", _MAX_INDEX),
            prev=_hex64(obj["prev"], "prev"),
            time=_uint(obj["time"], "time", _MAX_TIME),
            checkpoint_hash=_hex64(obj["checkpoint_hash"], "checkpoint_hash"),
            signature=signature,
        )


def sign_local_entry(
    private_key: Ed25519PrivateKey,
    ledger_id: str,
    index: int,
    prev: bytes,
    time: int,
    checkpoint_hash: bytes,
) -> LocalReceipt:
    """Sign local ledger entry ``index`` and return its receipt (ledger side)."""
    entry = LocalEntry(ledger_id, index, prev, time, checkpoint_hash)
    signature = private_key.sign(entry.to_bytes())
    return LocalReceipt(ledger_id, index, prev, time, checkpoint_hash, signature)


def verify_local_receipt(
    receipt: LocalReceipt,
    ledger_public_key: Ed25519PublicKey | bytes,
    checkpoint_body_hash: bytes,
) -> None:
    """Check a local receipt anchors the checkpoint whose body hashes to
    ``checkpoint_body_hash``, under the pinned ``ledger_public_key`` (§8.1).

    Raises :class:`AnchorMismatchError` if the receipt anchors another
    checkpoint, :class:`AnchorSignatureError` if the signature fails. The caller
    chose the key by ``receipt.ledger`` from its trust file.
    """
    if not isinstance(receipt, LocalReceipt):
        raise MalformedReceiptError("not a local receipt", found=type(receipt).__name__)
    if isinstance(ledger_public_key, bytes):
        if len(ledger_public_key) != 32:
            raise AnchorSignatureError(
                "a ledger key is 32 bytes of Ed25519", expected=32, found=len(ledger_public_key)
            )
        ledger_public_key = Ed25519PublicKey.from_public_bytes(ledger_public_key)
    if receipt.checkpoint_hash != checkpoint_body_hash:
        raise AnchorMismatchError(
            "receipt anchors another checkpoint",
            expected=checkpoint_body_hash.hex(),
            found=receipt.checkpoint_hash.hex(),
        )
    try:
        ledger_public_key.verify(receipt.signature, receipt.entry().to_bytes())
    except InvalidSignature:
        raise AnchorSignatureError(
            f"ledger {receipt.ledger} entry {receipt.index}: signature does not verify "
            "under the pinned ledger key"
        ) from None


def verify_local_chain(receipts: Sequence[LocalReceipt]) -> None:
    """Check receipts of local ledgers against each other (§8.1).

    Per ledger, in any order: two receipts at one index must hold the same entry
    (else the ledger forked), and receipts at ``i`` and ``i + 1`` must link (the
    ``prev`` of the second is the hash of the first entry). Gaps are allowed.
    Signatures are not checked here: see :func:`verify_local_receipt`.
    Raises :class:`AnchorChainError`.
    """
    by_ledger: dict[str, dict[int, LocalEntry]] = {}
    for receipt in receipts:
        entry = receipt.entry()
        entries = by_ledger.setdefault(entry.ledger, {})
        seen = entries.setdefault(entry.index, entry)
        if seen != entry:
            raise AnchorChainError(
                f"ledger {entry.ledger} has two different entries at index {entry.index}",
                expected=seen.hash().hex(),
                found=entry.hash().hex(),
            )
    for ledger, entries in by_ledger.items():
        for index in sorted(entries):
            after = entries.get(index + 1)
            if after is None:
                continue
            want = entries[index].hash()
            if after.prev != want:
                raise AnchorChainError(
                    f"ledger {ledger} entry {index + 1} does not link to entry {index}",
                    expected=want.hex(),
                    found=after.prev.hex(),
                )


# --- EVM ledger (§8.2) ------------------------------------------------------------------


@cache
def anchored_topic0() -> bytes:
    """keccak256 of the event signature: topic 0 of every ``Anchored`` log."""
    return keccak256(ANCHORED_EVENT_SIGNATURE.encode("ascii"))


def origin_hash(origin: str) -> bytes:
    """keccak256 of the UTF-8 origin: the event's indexed ``originHash`` (topic 1)."""
    return keccak256(origin.encode("utf-8"))


def _is_eip55(address: str) -> bool:
    """Whether a mixed-case address carries a valid EIP-55 checksum."""
    digits = address[2:]
    nibbles = keccak256(digits.lower().encode("ascii")).hex()
    return all(
        c == (c.upper() if int(n, 16) >= 8 else c.lower())
        for c, n in zip(digits, nibbles, strict=False)
    )


def _address(value: object) -> str:
    if not isinstance(value, str) or not _HEX_ADDRESS.fullmatch(value):
        raise MalformedReceiptError("contract must be 0x and 40 hex digits", found=value)
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and not _is_eip55(value):
        raise MalformedReceiptError("contract address has a bad EIP-55 checksum", found=value)
    return value.lower()


def _tx_or_block_hash(value: object, field: str) -> str:
    if not isinstance(value, str) or not _HEX_HASH.fullmatch(value):
        raise MalformedReceiptError(f"{field} must be 0x and 64 lowercase hex digits", found=value)
    return value


_EVM_FIELDS = frozenset(
    {
        "type",
        "chain_id",
        "contract",
        "tx_hash",
        "block_number",
        "block_hash",
        "log_index",
        "checkpoint_hash",
        "confirmations",
    }
)


@dataclass(frozen=True)
class EvmReceipt:
    """Where an ``Anchored`` event is on an EVM chain (§8.2).

    ``contract`` is stored in lowercase; ``tx_hash`` and ``block_hash`` are
    ``0x``-prefixed lowercase hex as JSON-RPC writes them; ``log_index`` is the
    log's ``logIndex`` (its position in the block); ``confirmations`` is how many
    blocks must be on top of the block for the anchor to count.
    """

    type: ClassVar[str] = "evm"

    chain_id: int
    contract: str
    tx_hash: str
    block_number: int
    block_hash: str
    log_index: int
    checkpoint_hash: bytes
    confirmations: int

    def __post_init__(self) -> None:
        _uint(self.chain_id, "chain_id", _MAX_UINT64, minimum=1)
        object.__setattr__(self, "contract", _address(self.contract))
        _tx_or_block_hash(self.tx_hash, "tx_hash")
        _uint(self.block_number, "block_number", _MAX_UINT64)
        _tx_or_block_hash(self.block_hash, "block_hash")
        _uint(self.log_index, "log_index", _MAX_UINT64)
        _hash_bytes(self.checkpoint_hash, "checkpoint_hash")
        _uint(self.confirmations, "confirmations", _MAX_UINT64)

    def to_json(self) -> dict[str, object]:
        """The receipt as a JSON object (a dict)."""
        return {
            "type": self.type,
            "chain_id": self.chain_id,
            "contract": self.contract,
            "tx_hash": self.tx_hash,
            "block_number": self.block_number,
            "block_hash": self.block_hash,
            "log_index": self.log_index,
            "checkpoint_hash": self.checkpoint_hash.hex(),
            "confirmations": self.confirmations,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object] | str) -> EvmReceipt:
        """Parse a receipt from a JSON object (or its text): exactly the fields of
        §8.2; :class:`MalformedReceiptError` otherwise. ``contract`` may be
        lowercase, uppercase or EIP-55 mixed case (checked)."""
        obj = _json_object(data, cls.type, _EVM_FIELDS)
        return cls(
            chain_id=_uint(obj["chain_id"], "chain_id", _MAX_UINT64, minimum=1),
            contract=_address(obj["contract"]),
            tx_hash=_tx_or_block_hash(obj["tx_hash"], "tx_hash"),
            block_number=_uint(obj["block_number"], "block_number", _MAX_UINT64),
            block_hash=_tx_or_block_hash(obj["block_hash"], "block_hash"),
            log_index=_uint(obj["log_index"], "log_index", _MAX_UINT64),
            checkpoint_hash=_hex64(obj["checkpoint_hash"], "checkpoint_hash"),
            confirmations=_uint(obj["confirmations"], "confirmations", _MAX_UINT64),
        )


# JSON-RPC answers. A malformed answer is the endpoint's fault, not the
# receipt's: it makes the anchor unverifiable, not bad.


def _call(rpc: RpcCall, method: str, params: list[object]) -> object:
    try:
        return rpc(method, params)
    except AnchorError:
        raise
    except Exception as exc:  # the transport is the caller's; any failure is "could not check"
        raise AnchorUnverifiableError(f"RPC {method} failed: {exc}") from exc


def _rpc_quantity(value: object, what: str) -> int:
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise AnchorUnverifiableError(f"RPC answer: {what} is not a hex quantity", found=value)
    return int(value, 16)


def _rpc_data(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not _DATA.fullmatch(value.lower()):
        raise AnchorUnverifiableError(f"RPC answer: {what} is not hex data", found=value)
    return bytes.fromhex(value[2:])


def _rpc_object(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise AnchorUnverifiableError(f"RPC answer: {what} is not an object", found=value)
    return value


def _same_hex(value: object, want: str, what: str) -> None:
    """Compare an RPC hex string (any case) with a lowercase one."""
    if not isinstance(value, str):
        raise AnchorUnverifiableError(f"RPC answer: {what} is not a string", found=value)
    if value.lower() != want:
        raise AnchorMismatchError(f"{what} differs from the receipt", expected=want, found=value)


def _find_log(tx: Mapping[str, object], log_index: int) -> Mapping[str, object]:
    logs = tx.get("logs")
    if not isinstance(logs, list):
        raise AnchorUnverifiableError("RPC answer: transaction receipt has no logs list")
    for item in logs:
        log = _rpc_object(item, "log")
        if _rpc_quantity(log.get("logIndex"), "logIndex") == log_index:
            return log
    raise AnchorMismatchError(
        "transaction has no log at the receipt's log_index",
        expected=log_index,
        found=[_rpc_object(item, "log").get("logIndex") for item in logs],
    )


def _check_event(log: Mapping[str, object], receipt: EvmReceipt, cp: Checkpoint) -> None:
    """The log is ``Anchored(originHash, treeSize, rootHash, checkpointHash)`` from
    the receipt's contract, with the checkpoint's values."""
    _same_hex(log.get("address"), receipt.contract, "log address (emitting contract)")
    if log.get("removed") is True:
        raise AnchorMismatchError("the log was removed by a chain reorganisation")
    topics = log.get("topics")
    if not isinstance(topics, list):
        raise AnchorUnverifiableError("RPC answer: log topics is not a list", found=topics)
    got_topics = [_rpc_data(t, "topic") for t in topics]
    want_topics = [anchored_topic0(), origin_hash(cp.origin)]
    if len(got_topics) != 2 or got_topics[0] != want_topics[0]:
        raise AnchorMismatchError(
            f"log is not an {ANCHORED_EVENT_SIGNATURE} event",
            expected=["0x" + want_topics[0].hex(), "(origin hash)"],
            found=topics,
        )
    if got_topics[1] != want_topics[1]:
        raise AnchorMismatchError(
            "event originHash is not keccak256 of the checkpoint origin",
            expected="0x" + want_topics[1].hex(),
            found=topics[1],
        )
    data = _rpc_data(log.get("data"), "log data")
    if len(data) != 96:
        raise AnchorMismatchError(
            "event data must be three 32-byte words (treeSize, rootHash, checkpointHash)",
            expected=96,
            found=len(data),
        )
    tree_size = int.from_bytes(data[:32], "big")
    if tree_size != cp.size:
        raise AnchorMismatchError("event treeSize differs", expected=cp.size, found=tree_size)
    if data[32:64] != cp.root_hash:
        raise AnchorMismatchError(
            "event rootHash differs", expected=cp.root_hash.hex(), found=data[32:64].hex()
        )
    if data[64:96] != receipt.checkpoint_hash:
        raise AnchorMismatchError(
            "event checkpointHash differs",
            expected=receipt.checkpoint_hash.hex(),
            found=data[64:96].hex(),
        )
    # A log repeats where it is; if the node says so, it must agree.
    for key, want in (("transactionHash", receipt.tx_hash), ("blockHash", receipt.block_hash)):
        if key in log:
            _same_hex(log[key], want, f"log {key}")
    if "blockNumber" in log:
        number = _rpc_quantity(log["blockNumber"], "log blockNumber")
        if number != receipt.block_number:
            raise AnchorMismatchError(
                "log blockNumber differs", expected=receipt.block_number, found=number
            )


def verify_evm_receipt(receipt: EvmReceipt, checkpoint: Checkpoint, rpc: RpcCall | None) -> None:
    """Check an EVM receipt anchors ``checkpoint`` (§8.2), through ``rpc``.

    ``rpc(method, params)`` makes one JSON-RPC call to an endpoint of the
    receipt's chain and returns its ``result`` (raising on failure). With
    ``rpc=None`` this raises :class:`AnchorUnverifiableError`: an EVM receipt
    is never reported verified unless the chain was asked.

    Checks, in order: the receipt's checkpoint hash is the checkpoint's; the
    endpoint serves ``chain_id`` (``eth_chainId``, else unverifiable); the
    transaction (``eth_getTransactionReceipt``) succeeded (status 1) in
    ``block_number`` / ``block_hash`` and has at ``log_index`` an ``Anchored``
    event from ``contract`` with keccak256(origin), tree size, root hash and
    checkpoint hash of the checkpoint; the canonical block at ``block_number``
    (``eth_getBlockByNumber``) has ``block_hash``; and ``eth_blockNumber`` −
    ``block_number`` ≥ ``confirmations``. Mismatches raise
    :class:`AnchorMismatchError` or :class:`AnchorConfirmationsError`; an
    unreachable or garbled endpoint :class:`AnchorUnverifiableError`.

    The caller must have checked that ``(receipt.chain_id, receipt.contract)``
    is pinned in its trust file (§10).
    """
    if rpc is None:
        raise AnchorUnverifiableError(
            f"EVM anchor on chain {receipt.chain_id} needs a JSON-RPC endpoint; not verified"
        )
    want_hash = checkpoint_hash(checkpoint)
    if receipt.checkpoint_hash != want_hash:
        raise AnchorMismatchError(
            "receipt anchors another checkpoint",
            expected=want_hash.hex(),
            found=receipt.checkpoint_hash.hex(),
        )
    if checkpoint.size > MAX_TREE_SIZE:
        raise AnchorMismatchError(
            "tree size does not fit the event's uint64", found=checkpoint.size
        )

    chain_id = _rpc_quantity(_call(rpc, "eth_chainId", []), "eth_chainId")
    if chain_id != receipt.chain_id:
        raise AnchorUnverifiableError(
            "the RPC endpoint serves another chain", expected=receipt.chain_id, found=chain_id
        )

    answer = _call(rpc, "eth_getTransactionReceipt", [receipt.tx_hash])
    if answer is None:
        raise AnchorMismatchError(
            "transaction not found on the chain (never mined, dropped by a reorganisation, "
            "or the node is not synced)",
            found=receipt.tx_hash,
        )
    tx = _rpc_object(answer, "transaction receipt")
    _same_hex(tx.get("transactionHash"), receipt.tx_hash, "transaction hash")
    status = _rpc_quantity(tx.get("status"), "status")
    if status != 1:
        raise AnchorMismatchError("anchor transaction failed (reverted)", expected=1, found=status)
    number = _rpc_quantity(tx.get("blockNumber"), "blockNumber")
    if number != receipt.block_number:
        raise AnchorMismatchError(
            "transaction is in another block", expected=receipt.block_number, found=number
        )
    _same_hex(tx.get("blockHash"), receipt.block_hash, "transaction block hash")
    _check_event(_find_log(tx, receipt.log_index), receipt, checkpoint)

    answer = _call(rpc, "eth_getBlockByNumber", [hex(receipt.block_number), False])
    if answer is None:
        raise AnchorMismatchError(
            "no block at the receipt's block_number on the canonical chain",
            found=receipt.block_number,
        )
    block = _rpc_object(answer, "block")
    if _rpc_quantity(block.get("number"), "block number") != receipt.block_number:
        raise AnchorUnverifiableError(
            "RPC answer: block has another number", found=block.get("number")
        )
    _same_hex(block.get("hash"), receipt.block_hash, "canonical block hash")

    head = _rpc_quantity(_call(rpc, "eth_blockNumber", []), "eth_blockNumber")
    depth = head - receipt.block_number
    if depth < receipt.confirmations:
        raise AnchorConfirmationsError(
            "anchor block is not buried under enough blocks",
            expected=f">= {receipt.confirmations}",
            found=depth,
        )
