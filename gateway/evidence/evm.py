"""The EVM ledger backend (docs/protocol.md §8.2, docs/evm.md): checkpoints anchored
in the ColdTraceAnchor contract on any EVM chain, through web3.py.

Anchoring on a chain is asynchronous, so this backend is too (D25):

- :meth:`EvmLedger.anchor` only *queues* the checkpoint, in the backend's own
  SQLite file (``<data_dir>/evm-ledger.db``, D26), and returns None (or the
  final receipt when there is one already);
- a worker thread sends at most one transaction per ``interval`` seconds, for
  the **newest** queued checkpoint (a later checkpoint covers the earlier ones:
  they are marked superseded), never one per reading or per checkpoint; it
  waits for ``confirmations`` blocks, then the receipt is *final*: kept here,
  and handed to ``on_receipt(size, receipt, replaced)`` (GatewayLog stores it
  in the gateway's store, from where gateway/push.py sends it to the cloud);
- :meth:`receipt_for` and :meth:`receipts` return only final receipts.

Every transaction is written here (raw signed bytes, nonce, fees) *before* it
is sent, so a restart or ``kill -9`` loses nothing: a sent transaction is
followed after the restart, a dropped one is broadcast again while its nonce
is free, and signed anew otherwise. Nonces come from the node (``pending``
count); one anchor is in flight at a time.

Fees are EIP-1559: ``maxFeePerGas = min(2 × next base fee + tip, max_fee_gwei)``;
when the base fee plus the tip is above the cap nothing is sent and the status
says so. An account that cannot pay is reported (status, one log line, an
alert) and retried; nothing queued is lost.

Reorganisations: every look at the chain re-reads the receipt of the anchor in
flight and of final anchors still within :data:`WATCH_BLOCKS` of the head. A
transaction that moved to another block gets its receipt updated; one that
disappeared is broadcast again (or re-signed) and, once final again, its new
receipt replaces the old one (``replaced=True``).

The node unreachable: checkpoints queue; the error is logged once (one line,
and again only when it changes) and kept in the status; the worker retries
with backoff up to a minute, and catches up with the newest checkpoint when
the node answers. A node serving another chain than ``chain_id`` is refused
at start (:class:`LedgerError`), or as soon as it is reached. The account key
is never logged or printed.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import EvmLedgerConfig
from gateway.evidence.contracts import artifact
from gateway.evidence.diskfull import DiskFull, is_disk_full, limit_growth
from gateway.evidence.ledger import LedgerError
from protocol.anchor import EvmReceipt, anchored_topic0
from protocol.checkpoint import checkpoint_hash
from protocol.note import parse_note

__all__ = [
    "WATCH_BLOCKS",
    "EvmLedger",
    "deploy_contract",
    "load_account",
    "open_state",
    "status_report",
]

log = logging.getLogger("coldtrace.gateway.evm")

GWEI = 10**9
WATCH_BLOCKS = 64  # final anchors this close to the head are re-checked for reorgs
_BACKOFF_MAX = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evm_anchors (
    size INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    root BLOB NOT NULL,
    checkpoint_hash BLOB NOT NULL UNIQUE,
    state TEXT NOT NULL,          -- queued | sent | final | superseded
    queued REAL NOT NULL,
    tx_hash TEXT,                 -- the last transaction sent for it
    sent REAL,
    block_number INTEGER,
    block_hash TEXT,
    log_index INTEGER,
    receipt TEXT                  -- the final receipt (JSON), docs/protocol.md §8.2
);
CREATE TABLE IF NOT EXISTS evm_txs (
    tx_hash TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    nonce INTEGER NOT NULL,
    max_fee INTEGER NOT NULL,
    tip INTEGER NOT NULL,
    raw BLOB NOT NULL,
    sent REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS evm_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def open_state(path: Path) -> sqlite3.Connection:
    """The backend's SQLite file (WAL, synchronous FULL: a commit survives a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    limit_growth(db, path)  # a test hook (gateway/evidence/diskfull.py)
    db.executescript(_SCHEMA)
    return db


def load_account(cfg: EvmLedgerConfig) -> Any:
    """The anchoring account (an eth_account ``LocalAccount``) from ``key_file`` or
    ``key_env``. Errors name the file or variable, never the key."""
    from eth_account import Account

    if cfg.key_file is not None:
        try:
            mode = cfg.key_file.stat().st_mode
            text = cfg.key_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise LedgerError(f"no account key file {cfg.key_file}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise LedgerError(
                f"the account key file {cfg.key_file} is readable by others: chmod 600 it"
            )
        where = f"the key file {cfg.key_file}"
    else:
        text = os.environ.get(cfg.key_env or "", "").strip()
        if not text:
            raise LedgerError(f"the environment variable {cfg.key_env} holds no account key")
        where = f"the environment variable {cfg.key_env}"
    try:
        return Account.from_key(text)
    except Exception:
        raise LedgerError(f"{where} does not hold a hex secp256k1 account key") from None


def _hex(value: Any) -> str:
    """A hash from web3 (HexBytes or str) as 0x-prefixed lowercase hex."""
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else "0x" + value.lower()
    return "0x" + bytes(value).hex()


class _Problem(Exception):
    """Why anchoring cannot go on now: a status code and a sentence for the operator."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Row:
    size: int
    origin: str
    root: bytes
    checkpoint_hash: bytes
    state: str
    tx_hash: str | None
    block_number: int | None
    block_hash: str | None
    receipt: dict[str, Any] | None


class EvmLedger:
    """Anchors checkpoints on an EVM chain; see the module docstring."""

    backend = "evm"
    asynchronous = True

    def __init__(
        self,
        cfg: EvmLedgerConfig,
        path: str | Path,
        *,
        start: bool = True,
        on_receipt: Callable[[int, dict[str, Any], bool], None] | None = None,
        alert: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from web3 import Web3

        if not cfg.contract:
            raise LedgerError(
                "[ledger.evm] has no contract: run `coldtrace gateway ledger deploy -c <config>`"
            )
        self.cfg = cfg
        self.path = Path(path)
        self.on_receipt = on_receipt
        self.alert = alert
        self.clock = clock
        self.account = load_account(cfg)
        self.address: str = self.account.address
        self.w3 = Web3(
            Web3.HTTPProvider(
                cfg.rpc_url,
                request_kwargs={"timeout": cfg.timeout},
                exception_retry_configuration=None,
            )
        )
        self.contract_address = Web3.to_checksum_address(cfg.contract)
        self.contract = self.w3.eth.contract(address=self.contract_address, abi=artifact()["abi"])
        # Two connections to the state file (WAL): the log's calls (anchor, receipts,
        # status) never wait behind the worker, which holds no lock during RPC calls.
        self._lock = threading.RLock()
        self._r = open_state(self.path)
        self._w = open_state(self.path)
        self._checked = False
        self._watched = -1  # the head at the last re-check of final anchors
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error_code = ""
        self._set_meta("account", self.address)
        self._set_meta("chain_id", str(cfg.chain_id))
        self._set_meta("contract", self.contract_address)
        if start:
            try:
                self._check_chain()
            except _Problem as p:
                if p.code != "unreachable":
                    raise LedgerError(p.message) from None
                self._problem(p)
            self.start()

    # --- the Ledger interface ------------------------------------------------------

    def anchor(self, note_text: str) -> dict[str, Any] | None:
        """Queue the checkpoint of ``note_text``; its final receipt if there is one."""
        body = parse_note(note_text).body
        cph = checkpoint_hash(body)
        lines = body.splitlines()
        origin, size, root = lines[0], int(lines[1]), _b64(lines[2])
        with self._lock:
            row = self._r.execute(
                "SELECT receipt FROM evm_anchors WHERE checkpoint_hash = ?", (cph,)
            ).fetchone()
            if row is not None:
                return None if row[0] is None else json.loads(row[0])
            self._r.execute(
                "INSERT INTO evm_anchors (size, origin, root, checkpoint_hash, state, queued)"
                " VALUES (?,?,?,?,'queued',?)",
                (size, origin, root, cph, self.clock()),
            )
        return None

    def receipt_for(self, cp_hash: bytes) -> dict[str, Any] | None:
        with self._lock:
            row = self._r.execute(
                "SELECT receipt FROM evm_anchors WHERE checkpoint_hash = ? AND state = 'final'",
                (cp_hash,),
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def receipts(self) -> list[dict[str, Any]]:
        """Every final receipt, oldest first."""
        return [r for _, r in self.receipts_after(0)]

    def receipts_after(self, size: int) -> list[tuple[int, dict[str, Any]]]:
        """(size, receipt) of final anchors of more than ``size`` leaves, by size."""
        with self._lock:
            rows = self._r.execute(
                "SELECT size, receipt FROM evm_anchors WHERE state = 'final' AND size > ?"
                " ORDER BY size",
                (size,),
            ).fetchall()
        return [(s, json.loads(r)) for s, r in rows]

    def trust_entry(self) -> dict[str, Any]:
        return {"type": "evm", "chain_id": self.cfg.chain_id, "contract": self.contract_address}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.cfg.timeout + 5)
        with self._lock:
            self._r.close()
            self._w.close()

    # --- the worker ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="evm-ledger", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                self.step()
            except _Problem as p:
                self._problem(p)
                delay = min(max(delay * 2, self.cfg.poll), _BACKOFF_MAX)
                continue
            except Exception as exc:  # keep the worker alive; the status says what failed
                if is_disk_full(exc):
                    self._problem(_Problem("disk_full", str(DiskFull(self.path))))
                else:
                    self._problem(_Problem("error", f"EVM anchoring failed: {_short(exc)}"))
                delay = min(max(delay * 2, self.cfg.poll), _BACKOFF_MAX)
                continue
            self._clear_problem()
            delay = self.cfg.poll

    def step(self) -> None:
        """One look at the chain: follow what is in flight, re-check recent final
        anchors, send the newest queued checkpoint when the interval allows."""
        head = self._rpc(lambda: self.w3.eth.block_number)
        if not self._checked:
            self._check_chain()
        self._follow(head)
        self._watch(head)
        self._send()

    def _rpc(self, call: Callable[[], Any]) -> Any:
        """One node call; an unreachable node is the ``unreachable`` problem."""
        import requests

        try:
            return call()
        except (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError) as e:
            raise _Problem(
                "unreachable",
                f"the EVM node at {self.cfg.rpc_url} is unreachable ({type(e).__name__}); "
                "checkpoints wait in the queue",
            ) from None

    def _check_chain(self) -> None:
        chain_id = self._rpc(lambda: self.w3.eth.chain_id)
        if chain_id != self.cfg.chain_id:
            raise _Problem(
                "wrong_chain",
                f"the EVM node at {self.cfg.rpc_url} serves chain {chain_id}, not chain_id "
                f"{self.cfg.chain_id} of [ledger.evm]: refusing to anchor there",
            )
        code = self._rpc(lambda: self.w3.eth.get_code(self.contract_address))
        if not code:
            raise _Problem(
                "no_contract",
                f"there is no contract at {self.contract_address} on chain {chain_id}: "
                "check [ledger.evm] contract, or run `coldtrace gateway ledger deploy`",
            )
        self._checked = True

    # following transactions -----------------------------------------------------------

    def _rows(self, where: str, args: tuple[Any, ...] = ()) -> list[_Row]:
        rows = self._w.execute(
            "SELECT size, origin, root, checkpoint_hash, state, tx_hash, block_number,"
            f" block_hash, receipt FROM evm_anchors WHERE {where} ORDER BY size",
            args,
        ).fetchall()
        return [
            _Row(s, o, bytes(r), bytes(c), st, tx, bn, bh, None if rc is None else json.loads(rc))
            for s, o, r, c, st, tx, bn, bh, rc in rows
        ]

    def _find_receipt(self, size: int) -> Any:
        """The mined receipt of a transaction sent for anchor ``size``: a successful one
        first (a replacement, a re-send or the original may be the one mined), else the
        newest; None when none is mined."""
        from web3.exceptions import TransactionNotFound

        hashes = [
            h
            for (h,) in self._w.execute(
                "SELECT tx_hash FROM evm_txs WHERE size = ? ORDER BY sent DESC", (size,)
            )
        ]
        found = []
        for h in hashes:
            try:
                found.append(self._rpc(lambda h=h: self.w3.eth.get_transaction_receipt(h)))
            except TransactionNotFound:
                continue
        ok = [r for r in found if r["status"] == 1]
        return ok[0] if ok else (found[0] if found else None)

    def _follow(self, head: int) -> None:
        for row in self._rows("state = 'sent'"):
            rec = self._find_receipt(row.size)
            if rec is None:
                self._not_mined(row)
                continue
            tx_hash = _hex(rec["transactionHash"])
            if rec["status"] != 1:
                self._w.execute("DELETE FROM evm_txs WHERE tx_hash = ?", (tx_hash,))
                self._update(row.size, state="queued", tx_hash=None, block_number=None)
                raise _Problem(
                    "reverted",
                    f"the anchor of checkpoint {row.size} was reverted on chain (tx {tx_hash}); "
                    "it will be tried again",
                )
            block_hash = _hex(rec["blockHash"])
            number = int(rec["blockNumber"])
            if row.block_hash is not None and row.block_hash != block_hash:
                log.warning(
                    "anchor of checkpoint %d moved from block %d to block %d (reorganisation)",
                    row.size,
                    row.block_number,
                    number,
                )
            log_index = self._log_index(rec, row)
            self._update(
                row.size,
                tx_hash=tx_hash,
                block_number=number,
                block_hash=block_hash,
                log_index=log_index,
            )
            if head - number >= self.cfg.confirmations:
                self._finalise(row, tx_hash, number, block_hash, log_index)

    def _not_mined(self, row: _Row) -> None:
        """The transaction of ``row`` has no receipt: pending, dropped or reorged away."""
        if row.block_number is not None:
            log.warning(
                "a chain reorganisation dropped the anchor of checkpoint %d from block %d; "
                "sending it again",
                row.size,
                row.block_number,
            )
            self._update(row.size, block_number=None, block_hash=None, log_index=None)
        tx = self._w.execute(
            "SELECT tx_hash, nonce, raw, max_fee, tip FROM evm_txs WHERE size = ?"
            " ORDER BY sent DESC LIMIT 1",
            (row.size,),
        ).fetchone()
        if tx is None:
            self._update(row.size, state="queued", tx_hash=None)
            return
        tx_hash, nonce, raw, max_fee, tip = tx
        known = self._rpc(lambda: self._transaction(tx_hash))
        if known is not None:  # pending in the node's pool: wait, or outbid a risen base fee
            self._bump_if_stuck(row, int(known["gas"]), nonce, max_fee, tip)
            return
        used = self._rpc(lambda: self.w3.eth.get_transaction_count(self.address, "latest"))
        if nonce >= used:
            log.info(
                "anchor tx %s of checkpoint %d is not on the node: broadcasting it again",
                tx_hash,
                row.size,
            )
            self._broadcast(row.size, bytes(raw))
        else:
            log.info(
                "nonce %d was used by another transaction: checkpoint %d is signed again",
                nonce,
                row.size,
            )
            self._update(row.size, state="queued", tx_hash=None)

    def _bump_if_stuck(self, row: _Row, gas: int, nonce: int, max_fee: int, tip: int) -> None:
        """A pending anchor whose max fee the next base fee has outgrown is replaced:
        the same nonce, fees raised by at least 12.5 % (what nodes require of a
        replacement), within ``max_fee_gwei``."""
        base = self._next_base_fee()
        if base + tip <= max_fee:
            return
        cap = int(self.cfg.max_fee_gwei * GWEI)
        new_tip = max(tip * 9 // 8 + 1, min(int(self.cfg.priority_fee_gwei * GWEI), cap))
        new_max = min(max(max_fee * 9 // 8 + 1, 2 * base + new_tip), cap)
        if new_max < max_fee * 9 // 8 + 1 or base + new_tip > new_max:
            raise _Problem(
                "fee_cap",
                f"the anchor of checkpoint {row.size} is stuck: the base fee is "
                f"{base / GWEI:.3f} gwei, above its max fee of {max_fee / GWEI:.3f}, and "
                f"max_fee_gwei {self.cfg.max_fee_gwei} leaves no room to replace it; it waits",
            )
        log.info(
            "the anchor of checkpoint %d is stuck under a base fee of %.3f gwei: replacing "
            "its tx (nonce %d) with a max fee of %.3f gwei",
            row.size,
            base / GWEI,
            nonce,
            new_max / GWEI,
        )
        self._sign_and_send(row, nonce, gas, new_tip, new_max, replacing=True)

    def _transaction(self, tx_hash: str) -> Any:
        from web3.exceptions import TransactionNotFound

        try:
            return self.w3.eth.get_transaction(tx_hash)
        except TransactionNotFound:
            return None

    def _log_index(self, rec: Any, row: _Row) -> int:
        topic0 = anchored_topic0()
        for item in rec["logs"]:
            if (
                _hex(item["address"]) == self.contract_address.lower()
                and bytes(item["topics"][0]) == topic0
                and bytes(item["data"])[64:96] == row.checkpoint_hash
            ):
                return int(item["logIndex"])
        raise _Problem(
            "no_event",
            f"the anchor tx of checkpoint {row.size} emitted no Anchored event from "
            f"{self.contract_address}: is [ledger.evm] contract a ColdTraceAnchor?",
        )

    def _finalise(
        self, row: _Row, tx_hash: str, number: int, block_hash: str, log_index: int
    ) -> None:
        receipt = EvmReceipt(
            chain_id=self.cfg.chain_id,
            contract=self.contract_address,
            tx_hash=tx_hash,
            block_number=number,
            block_hash=block_hash,
            log_index=log_index,
            checkpoint_hash=row.checkpoint_hash,
            confirmations=self.cfg.confirmations,
        ).to_json()
        replaced = row.receipt is not None
        if replaced and row.receipt == receipt:
            self._update(row.size, state="final")
            return
        self._update(row.size, state="final", receipt=json.dumps(receipt))
        log.info(
            "checkpoint %d anchored in block %d (%d confirmations), tx %s",
            row.size,
            number,
            self.cfg.confirmations,
            tx_hash,
        )
        if self.on_receipt is not None:
            self.on_receipt(row.size, receipt, replaced)

    def _watch(self, head: int) -> None:
        """Final anchors near the head whose transaction left its block go back in flight."""
        if head == self._watched:
            return  # no new block: nothing can have moved since the last look
        self._watched = head
        low = head - max(WATCH_BLOCKS, 4 * self.cfg.confirmations)
        for row in self._rows("state = 'final' AND block_number >= ?", (low,)):
            rec = self._find_receipt(row.size)
            if rec is not None and _hex(rec["blockHash"]) == row.block_hash:
                continue
            log.warning(
                "the final anchor of checkpoint %d left block %d (a reorganisation deeper "
                "than %d confirmations); following it again",
                row.size,
                row.block_number,
                self.cfg.confirmations,
            )
            self._update(row.size, state="sent")
            self._problem(
                _Problem("reorg", f"a reorganisation removed the anchor of checkpoint {row.size}")
            )

    # sending ----------------------------------------------------------------------

    def _send(self) -> None:
        if self._rows("state = 'sent'"):
            return  # one anchor in flight at a time
        queued = self._rows("state = 'queued'")
        if not queued:
            return
        row = queued[-1]
        last = float(self._meta("last_sent") or 0)
        if self.clock() - last < self.cfg.interval:
            return
        older = [r.size for r in queued[:-1]]
        if older:
            self._w.execute(
                f"UPDATE evm_anchors SET state = 'superseded' WHERE size IN "
                f"({','.join('?' * len(older))})",
                older,
            )
        data = self.contract.encode_abi(
            "anchor", args=[row.origin, row.size, row.root, row.checkpoint_hash]
        )
        gas = self.cfg.gas_limit or self._estimate(row, data)
        tip, max_fee = self._fees()
        balance = self._rpc(lambda: self.w3.eth.get_balance(self.address))
        need = gas * max_fee
        if balance < need:
            raise _Problem(
                "out_of_funds",
                f"the anchoring account {self.address} holds {balance / 1e18:.6f} of the chain's "
                f"gas token, an anchor may cost up to {need / 1e18:.6f}: fund the account; "
                f"checkpoint {row.size} waits in the queue",
            )
        nonce = self._rpc(lambda: self.w3.eth.get_transaction_count(self.address, "pending"))
        self._sign_and_send(row, nonce, gas, tip, max_fee)

    def _sign_and_send(
        self, row: _Row, nonce: int, gas: int, tip: int, max_fee: int, *, replacing: bool = False
    ) -> None:
        """Sign the anchor of ``row``, write it to the state file, then broadcast it."""
        data = self.contract.encode_abi(
            "anchor", args=[row.origin, row.size, row.root, row.checkpoint_hash]
        )
        tx = {
            "type": 2,
            "chainId": self.cfg.chain_id,
            "to": self.contract_address,
            "value": 0,
            "data": data,
            "nonce": nonce,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
        }
        signed = self.account.sign_transaction(tx)
        tx_hash = _hex(signed.hash)
        now = self.clock()
        # Written before it is sent: after a crash the transaction is followed, not lost.
        self._w.execute("BEGIN IMMEDIATE")
        try:
            self._w.execute(
                "INSERT OR REPLACE INTO evm_txs VALUES (?,?,?,?,?,?,?)",
                (tx_hash, row.size, nonce, max_fee, tip, bytes(signed.raw_transaction), now),
            )
            self._update(row.size, state="sent", tx_hash=tx_hash, sent=now)
            if not replacing:
                self._set_meta("last_sent", repr(now))
        except BaseException:
            if self._w.in_transaction:  # SQLITE_FULL may have rolled it back already
                self._w.execute("ROLLBACK")
            raise
        self._w.execute("COMMIT")
        log.info(
            "anchoring checkpoint %d: tx %s (nonce %d, gas %d, max fee %.3f gwei)",
            row.size,
            tx_hash,
            nonce,
            gas,
            max_fee / GWEI,
        )
        self._broadcast(row.size, bytes(signed.raw_transaction), requeue=not replacing)

    def _broadcast(self, size: int, raw: bytes, *, requeue: bool = True) -> None:
        """Send signed bytes. A refusal puts the checkpoint back in the queue, unless the
        bytes replace a pending transaction (which stays in flight and is followed)."""
        from web3.exceptions import Web3RPCError

        try:
            self._rpc(lambda: self.w3.eth.send_raw_transaction(raw))
        except Web3RPCError as exc:
            text = _short(exc).lower()
            if "already known" in text or "already imported" in text:
                return
            if requeue:
                self._update(size, state="queued", tx_hash=None)
            if "insufficient funds" in text:
                raise _Problem(
                    "out_of_funds",
                    f"the anchoring account {self.address} cannot pay for the anchor of "
                    f"checkpoint {size}: fund it; the checkpoint waits in the queue",
                ) from None
            raise _Problem("send", f"the node refused the anchor tx: {_short(exc)}") from None

    def _estimate(self, row: _Row, data: str) -> int:
        from web3.exceptions import ContractCustomError, ContractLogicError

        try:
            gas = self._rpc(
                lambda: self.w3.eth.estimate_gas(
                    {"from": self.address, "to": self.contract_address, "data": data}
                )
            )
        except (ContractCustomError, ContractLogicError) as exc:
            latest = self._rpc(
                lambda: self.contract.functions.latest(self.address, row.origin).call()
            )[0]
            if latest >= row.size:
                self._update(row.size, state="superseded")
                raise _Problem(
                    "backwards",
                    f"the contract already holds size {latest} of {row.origin} for "
                    f"{self.address}: checkpoint {row.size} cannot be anchored backwards",
                ) from None
            raise _Problem("revert", f"the anchor call would fail: {_short(exc)}") from None
        return int(gas * 5 // 4)

    def _next_base_fee(self) -> int:
        """The next block's base fee (wei), from ``eth_feeHistory``."""
        hist = self._rpc(lambda: self.w3.eth.fee_history(1, "latest", []))
        return int(hist["baseFeePerGas"][-1])

    def _fees(self) -> tuple[int, int]:
        """(tip, max fee per gas) in wei from the next block's base fee, capped."""
        base = self._next_base_fee()
        cap = int(self.cfg.max_fee_gwei * GWEI)
        tip = min(int(self.cfg.priority_fee_gwei * GWEI), cap)
        if base + tip > cap:
            raise _Problem(
                "fee_cap",
                f"the base fee is {base / GWEI:.3f} gwei: with the {tip / GWEI:.3f} gwei tip it "
                f"is above max_fee_gwei {self.cfg.max_fee_gwei}; not anchoring until it falls",
            )
        return tip, min(2 * base + tip, cap)

    # state --------------------------------------------------------------------------

    def _update(self, size: int, **values: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        self._w.execute(f"UPDATE evm_anchors SET {sets} WHERE size = ?", (*values.values(), size))

    def _meta(self, key: str) -> str | None:
        row = self._w.execute("SELECT value FROM evm_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._w.execute("INSERT OR REPLACE INTO evm_meta VALUES (?, ?)", (key, value))

    def _problem(self, p: _Problem) -> None:
        """Keep the problem in the status; log it (one line) and alert when it is new."""
        try:
            self._set_meta("last_error", p.message)
            self._set_meta("last_error_code", p.code)
            self._set_meta("last_error_at", str(int(self.clock())))
            self._set_meta("status", p.code)
        except sqlite3.ProgrammingError:  # closed
            return
        if p.code == self._error_code:
            log.debug("%s", p.message)
            return
        self._error_code = p.code
        log.error("%s", p.message)
        if self.alert is not None and p.code in ("out_of_funds", "wrong_chain", "no_contract"):
            try:
                self.alert(f"ledger_{p.code}", p.message)
            except Exception:
                log.exception("raising the ledger alert failed")

    def _clear_problem(self) -> None:
        if self._error_code:
            log.info("EVM anchoring works again (after: %s)", self._error_code)
            self._error_code = ""
        if self._meta("status") != "ok":
            self._set_meta("status", "ok")

    def status(self) -> dict[str, Any]:
        with self._lock:
            return status_report(self._r)


def status_report(db: sqlite3.Connection) -> dict[str, Any]:
    """Counts by state, the anchor in flight, the last final anchor and the last error,
    read from the backend's SQLite file (for ``coldtrace gateway ledger status``)."""
    counts = dict(db.execute("SELECT state, count(*) FROM evm_anchors GROUP BY state"))
    meta = dict(db.execute("SELECT key, value FROM evm_meta"))
    flight = db.execute(
        "SELECT size, tx_hash, block_number FROM evm_anchors WHERE state = 'sent'"
    ).fetchone()
    final = db.execute(
        "SELECT size, block_number, tx_hash FROM evm_anchors WHERE state = 'final'"
        " ORDER BY size DESC LIMIT 1"
    ).fetchone()
    queued = db.execute(
        "SELECT max(size), min(queued) FROM evm_anchors WHERE state = 'queued'"
    ).fetchone()
    return {
        "queued": counts.get("queued", 0),
        "pending": counts.get("sent", 0),
        "confirmed": counts.get("final", 0),
        "superseded": counts.get("superseded", 0),
        "newest_queued": queued[0],
        "in_flight": None
        if flight is None
        else {"size": flight[0], "tx_hash": flight[1], "block_number": flight[2]},
        "last_final": None
        if final is None
        else {"size": final[0], "block_number": final[1], "tx_hash": final[2]},
        "account": meta.get("account"),
        "chain_id": int(meta["chain_id"]) if "chain_id" in meta else None,
        "contract": meta.get("contract"),
        "status": meta.get("status", "ok"),
        "last_error": meta.get("last_error"),
        "last_error_at": int(meta["last_error_at"]) if "last_error_at" in meta else None,
    }


def deploy_contract(
    rpc_url: str,
    account: Any,
    *,
    chain_id: int | None = None,
    confirmations: int = 1,
    max_fee_gwei: float = 100.0,
    priority_fee_gwei: float = 1.0,
    timeout: float = 300.0,
    mine: Callable[[], None] | None = None,
) -> tuple[str, int, int]:
    """Deploy the ColdTraceAnchor artifact from ``account``; wait for the receipt and
    ``confirmations`` blocks on top. Return (contract address, chain id, gas used).
    Raises LedgerError with a sentence for the operator."""
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    try:
        actual = w3.eth.chain_id
    except Exception as exc:
        raise LedgerError(f"the EVM node at {rpc_url} is unreachable: {_short(exc)}") from None
    if chain_id is not None and actual != chain_id:
        raise LedgerError(f"the EVM node at {rpc_url} serves chain {actual}, not {chain_id}")
    art = artifact()
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    data = factory.constructor().data_in_transaction
    gas = int(w3.eth.estimate_gas({"from": account.address, "data": data}) * 5 // 4)
    base = int(w3.eth.fee_history(1, "latest", [])["baseFeePerGas"][-1])
    cap = int(max_fee_gwei * GWEI)
    tip = min(int(priority_fee_gwei * GWEI), cap)
    if base + tip > cap:
        raise LedgerError(
            f"the base fee {base / GWEI:.3f} gwei is above max_fee_gwei {max_fee_gwei}"
        )
    max_fee = min(2 * base + tip, cap)
    balance = w3.eth.get_balance(account.address)
    if balance < gas * max_fee:
        raise LedgerError(
            f"the account {account.address} holds {balance / 1e18:.6f} of the chain's gas token; "
            f"deploying may cost up to {gas * max_fee / 1e18:.6f}: fund it first"
        )
    tx = {
        "type": 2,
        "chainId": actual,
        "data": data,
        "value": 0,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "gas": gas,
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": tip,
    }
    signed = account.sign_transaction(tx)
    w3.eth.send_raw_transaction(signed.raw_transaction)
    rec = w3.eth.wait_for_transaction_receipt(signed.hash, timeout=timeout, poll_latency=0.2)
    if rec["status"] != 1:
        raise LedgerError(f"the deployment transaction {_hex(signed.hash)} failed")
    deadline = time.monotonic() + timeout
    while w3.eth.block_number - rec["blockNumber"] < confirmations:
        if time.monotonic() > deadline:
            raise LedgerError(f"the deployment did not get {confirmations} confirmations in time")
        if mine is not None:
            mine()
        time.sleep(0.2)
    return str(rec["contractAddress"]), actual, int(rec["gasUsed"])


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text, validate=True)


def _short(exc: BaseException) -> str:
    """An exception as one line, without the long payloads web3 may attach."""
    text = " ".join(str(exc).split())
    return text[:300]
