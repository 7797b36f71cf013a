"""The gateway's Merkle log: leaves in storage order, checkpoints, recovery.

Order of truth (docs/protocol.md §6, §7):

1. ingest commits a batch of records to the store, each with its leaf index;
2. then the leaves are appended to the tree (a ``FileNodeStore``: one file
   of hashes per level). The tree is a cache of the store: it is not flushed
   per batch, only before a checkpoint is signed;
3. every ``checkpoint_interval`` seconds or ``checkpoint_leaves`` leaves the
   tree is flushed, the new root is proven consistent with the previous
   checkpoint (RFC 9162 §2.1.4, proof built *and verified* before signing),
   the C2SP checkpoint is signed, stored, and anchored on the ledger.

Crash recovery (:meth:`GatewayLog.recover`, at every start): the store says
how many leaves were committed. A tree that is shorter is rolled forward from
the stored records; a tree that is longer, or whose last leaf differs from
the stored one, is rolled back - never below the last signed checkpoint,
which would be a split view (that raises instead; so does a store older than
the checkpoint size recorded next to the tree, or than the ledger's last
anchor: a database restored from an old copy). Then the root at the last
checkpoint's size must equal the signed root, and a checkpoint that was
signed but not yet anchored is anchored.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from gateway.evidence.ledger import Ledger
from gateway.evidence.store import Anchor, CheckpointRow, Store
from protocol.checkpoint import Checkpoint, checkpoint_hash, sign_checkpoint
from protocol.merkle import FileNodeStore, MerkleTree, hash_leaf, verify_consistency
from protocol.note import NoteSigner, parse_note

__all__ = ["GatewayLog", "LogError"]


class LogError(Exception):
    """The log cannot be made consistent with the store or its own checkpoints."""


class GatewayLog:
    """The tree, its checkpoints and their anchoring, kept in step with ``store``."""

    def __init__(
        self,
        store: Store,
        tree_dir: str | Path,
        signer: NoteSigner,
        *,
        ledger: Ledger | None = None,
        checkpoint_interval: float = 10.0,
        checkpoint_leaves: int = 10000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.signer = signer
        self.origin = signer.name
        self.ledger = ledger
        self.interval = checkpoint_interval
        self.leaves = checkpoint_leaves
        self.clock = clock
        self._marker = Path(tree_dir) / "checkpoint.json"
        self._nodes = FileNodeStore(tree_dir)
        self.tree = MerkleTree(self._nodes)
        self.last = store.latest_checkpoint()
        self.last_anchor = store.latest_anchor()
        if getattr(ledger, "asynchronous", False):
            ledger.on_receipt = self._receipt_final  # type: ignore[union-attr]
        self._last_time = clock()
        self.recovered = self.recover()

    @property
    def size(self) -> int:
        return self.tree.size

    # --- recovery -----------------------------------------------------------------

    def recover(self) -> dict[str, int]:
        """Bring the tree to exactly the committed leaves; see the module docstring."""
        tree, store, last = self.tree, self.store, self.last
        committed = store.leaf_count()
        floor = last.size if last is not None else 0
        signed = self._read_marker()
        if signed > floor:
            raise LogError(
                f"checkpoint {signed} was signed but the store's last checkpoint is {floor}: "
                "the database lost committed records (restored from an old copy?)"
            )
        if committed < floor:
            raise LogError(
                f"the store holds {committed} leaves but checkpoint {floor} was signed: "
                "the database lost committed records"
            )
        self._check_ledger()
        self._sync_receipts()
        rolled_back = 0
        if tree.size > committed:
            rolled_back = tree.size - committed
            tree.rollback(committed)
        # The last leaf the tree holds must be the stored one; walk back to agreement.
        size = tree.size
        while size > floor:
            rec = store.record(size - 1)
            if rec is not None and tree.leaf_hash(size - 1) == hash_leaf(rec.raw):
                break
            size -= 1
        if size < tree.size:
            rolled_back += tree.size - size
            tree.rollback(size)
        forward = committed - tree.size
        if forward:
            tree.extend(store.raw_between(tree.size, committed))
            tree.flush()
        if last is not None:
            if tree.root(last.size) != last.root:
                raise LogError(
                    f"the tree's root at size {last.size} is not the signed checkpoint's root"
                )
            self.anchor_pending()
        return {"rolled_back": rolled_back, "rolled_forward": forward, "size": tree.size}

    # --- appending ------------------------------------------------------------------

    def append(self, first_leaf: int, raws: Iterable[bytes]) -> None:
        """Append committed records whose leaf indexes start at ``first_leaf``."""
        if first_leaf != self.tree.size:
            raise LogError(f"leaf {first_leaf} appended to a tree of {self.tree.size} leaves")
        self.tree.extend(raws)

    # --- checkpoints --------------------------------------------------------------------

    def due(self, now: float | None = None) -> bool:
        """Whether a checkpoint is due: new leaves, and the interval or leaf count reached."""
        last_size = self.last.size if self.last is not None else 0
        if self.tree.size <= last_size:
            return False
        now = self.clock() if now is None else now
        return now - self._last_time >= self.interval or self.tree.size - last_size >= self.leaves

    def checkpoint(self) -> CheckpointRow | None:
        """Sign (and anchor) a checkpoint of the current tree; None if nothing is new."""
        tree = self.tree
        size = tree.size
        self._last_time = self.clock()
        last = self.last
        if size == 0 or (last is not None and size == last.size):
            return None
        tree.flush()
        root = tree.root(size)
        if last is not None:
            proof = tree.consistency_proof(last.size, size)
            verify_consistency(last.size, size, proof, last.root, root)
        note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
        row = CheckpointRow(size, root, note, int(self.clock()))
        self.store.add_checkpoint(row)
        self._write_marker(size)
        self.last = row
        self.anchor_pending()
        return row

    def anchor_pending(self) -> None:
        """Anchor the last checkpoint if the ledger has no receipt for it yet."""
        last = self.last
        if self.ledger is None or last is None:
            return
        if self.last_anchor is not None and self.last_anchor.size >= last.size:
            return
        cph = checkpoint_hash(Checkpoint(self.origin, last.size, last.root))
        receipt = self.ledger.receipt_for(cph) or self.ledger.anchor(last.note)
        if receipt is None:  # an asynchronous ledger (EVM): the receipt comes when final
            return
        anchor = Anchor(last.size, self.ledger.backend, receipt, int(self.clock()))
        self.store.add_anchor(anchor)
        self.last_anchor = anchor

    # --- what the tree directory and the ledger remember -----------------------------------

    def _read_marker(self) -> int:
        try:
            return int(json.loads(self._marker.read_text())["size"])
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError):
            raise LogError(f"{self._marker} is corrupt") from None

    def _write_marker(self, size: int) -> None:
        tmp = self._marker.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"size": size}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._marker)

    def _check_ledger(self) -> None:
        """Every checkpoint the ledger anchored must be one the store knows."""
        if self.ledger is None:
            return
        receipts = self.ledger.receipts()
        if not receipts:
            return
        known = {checkpoint_hash(parse_note(c.note).body).hex() for c in self.store.checkpoints()}
        for r in receipts:
            if r["checkpoint_hash"] not in known:
                raise LogError(
                    f"the ledger anchored checkpoint {r['checkpoint_hash'][:16]}… that the store "
                    "does not hold: the database is older than the ledger"
                )

    def close(self) -> None:
        self._nodes.close()

    # --- asynchronous ledgers (EVM, gateway/evidence/evm.py) --------------------------

    def _receipt_final(self, size: int, receipt: dict, replaced: bool) -> None:
        """A receipt became final (on the ledger's worker thread): store it, or replace
        the one a chain reorganisation made wrong."""
        assert self.ledger is not None
        anchor = Anchor(size, self.ledger.backend, receipt, int(self.clock()))
        replace = getattr(self.store, "replace_anchor", None)
        if replaced and replace is not None:
            replace(anchor)
        else:
            self.store.add_anchor(anchor)
        last = self.last_anchor
        if last is None or size >= last.size:
            self.last_anchor = anchor

    def _sync_receipts(self) -> None:
        """Final receipts the store missed (a crash between the ledger's commit and
        the store's) are stored at start."""
        receipts_after = getattr(self.ledger, "receipts_after", None)
        if receipts_after is None:
            return
        have: dict[int, list[dict]] = {}
        for a in self.store.anchors():
            have.setdefault(a.size, []).append(a.receipt)
        for size, receipt in receipts_after(0):
            if receipt not in have.get(size, []):
                self._receipt_final(size, receipt, size in have)
