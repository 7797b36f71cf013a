"""Bundle verification: the algorithm of docs/protocol.md §11.

:func:`verify_bundle` checks everything a bundle claims, against the pinned
keys of a :class:`~protocol.trust.Trust`, and returns a :class:`Report`: every
check made, with what failed and why. It never stops at the first failure, so a
report says everything that is wrong; it is ``ok`` only when no check failed
and at least one record was verified.

The order follows the chain of evidence, from the top down:

1. checkpoints: each signed note opens under a pinned log key;
2. consistency: checkpoints of one log, in size order, are linked by proofs;
3. anchors: receipts verify under pinned ledger keys and match a checkpoint;
   a checkpoint is covered when it, or a later one it is consistent with, is
   anchored;
4. records: envelope and payload follow the profile;
5. keys: each device key comes from a pinned key or from a registration record
   signed by a pinned registry key and itself in the log; a record logged after
   its device's revocation is refused;
6. signatures;
7. inclusion: each record's leaf is in a verified checkpoint;
8. chains: per signer, seq numbers are contiguous and each ``prev`` matches
   the previous record's hash.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from protocol import anchor as anchors_mod
from protocol.bundle import Bundle
from protocol.checkpoint import Checkpoint, checkpoint_hash, open_checkpoint
from protocol.errors import (
    AnchorError,
    AnchorUnverifiableError,
    ChainError,
    InconsistentCheckpointsError,
    MissingProofError,
    ProofError,
    RevokedKeyError,
    SequenceGapError,
    UnanchoredCheckpointError,
    UnknownKeyError,
    VerificationError,
)
from protocol.keys import p256_public_from_sec1
from protocol.merkle import hash_leaf, verify_consistency, verify_inclusion
from protocol.record import (
    KIND_READING,
    KIND_REGISTRATION,
    Reading,
    Record,
    Registration,
    Status,
    chain_hash,
    open_record,
    verify_record,
)
from protocol.trust import Trust

RpcCall = Callable[[str, list[object]], object]


@dataclass
class Check:
    """One check: what was checked, on what, and the outcome."""

    check: str
    subject: str
    ok: bool
    code: str | None = None
    message: str | None = None
    expected: str | None = None
    found: str | None = None


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.failures and self.summary.get("records_verified", 0) > 0

    def passed(self, check: str, subject: str) -> None:
        self.checks.append(Check(check, subject, True))

    def failed(self, check: str, subject: str, err: VerificationError) -> None:
        self.checks.append(
            Check(
                check,
                subject,
                False,
                err.code,
                err.message,
                None if err.expected is None else str(err.expected),
                None if err.found is None else str(err.found),
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "summary": self.summary,
            "failures": [asdict(c) for c in self.failures],
            "checks": [asdict(c) for c in self.checks],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"


@dataclass
class _Entry:
    """A bundle record that opened cleanly, with where the bundle says it is."""

    log: str
    index: int
    record: Record

    @property
    def subject(self) -> str:
        return f"{self.record.signer}#{self.record.payload.seq}"


class _Verifier:
    def __init__(self, bundle: Bundle, trust: Trust, rpc: RpcCall | None) -> None:
        self.bundle = bundle
        self.trust = trust
        self.rpc = rpc
        self.report = Report()
        # origin -> size -> checkpoint (verified only)
        self.checkpoints: dict[str, dict[int, Checkpoint]] = defaultdict(dict)
        self.covered: dict[str, set[int]] = defaultdict(set)

    # 1. checkpoints ---------------------------------------------------------
    def open_checkpoints(self) -> None:
        for i, text in enumerate(self.bundle.checkpoints):
            subject = f"checkpoint[{i}]"
            try:
                cp = open_checkpoint(text, self.trust.logs)
            except VerificationError as err:
                self.report.failed("checkpoint.signature", subject, err)
                continue
            subject = f"{cp.origin}@{cp.size}"
            known = self.checkpoints[cp.origin].get(cp.size)
            if known is not None and known.root_hash != cp.root_hash:
                self.report.failed(
                    "checkpoint.consistency",
                    subject,
                    InconsistentCheckpointsError(
                        "two signed checkpoints of one size with different roots (a fork)",
                        expected=known.root_hash.hex(),
                        found=cp.root_hash.hex(),
                    ),
                )
                continue
            self.checkpoints[cp.origin][cp.size] = cp
            self.report.passed("checkpoint.signature", subject)

    # 2. consistency -----------------------------------------------------------
    def check_consistency(self) -> dict[str, set[tuple[int, int]]]:
        linked: dict[str, set[tuple[int, int]]] = defaultdict(set)
        proofs = defaultdict(list)
        for p in self.bundle.consistency:
            proofs[(p.log, p.old_size, p.new_size)].append(p)
        for origin, by_size in self.checkpoints.items():
            sizes = sorted(by_size)
            for old, new in pairwise(sizes):
                subject = f"{origin}@{old}->{new}"
                candidates = proofs.get((origin, old, new), [])
                if not candidates:
                    self.report.failed(
                        "checkpoint.consistency",
                        subject,
                        InconsistentCheckpointsError("no consistency proof between checkpoints"),
                    )
                    continue
                last: VerificationError | None = None
                for p in candidates:
                    try:
                        verify_consistency(
                            old, new, list(p.path), by_size[old].root_hash, by_size[new].root_hash
                        )
                    except ProofError as err:
                        last = err
                        continue
                    last = None
                    break
                if last is None:
                    linked[origin].add((old, new))
                    self.report.passed("checkpoint.consistency", subject)
                else:
                    self.report.failed(
                        "checkpoint.consistency",
                        subject,
                        InconsistentCheckpointsError(
                            f"consistency proof does not verify: {last}",
                            expected=last.expected,
                            found=last.found,
                        ),
                    )
        return linked

    # 3. anchors -------------------------------------------------------------------
    def check_anchors(self, linked: dict[str, set[tuple[int, int]]]) -> None:
        anchored: dict[str, set[int]] = defaultdict(set)
        local_receipts: dict[str, list[anchors_mod.LocalReceipt]] = defaultdict(list)
        for i, ref in enumerate(self.bundle.anchors):
            subject = f"anchor[{i}] {ref.log}@{ref.tree_size}"
            cp = self.checkpoints.get(ref.log, {}).get(ref.tree_size)
            if cp is None:
                self.report.failed(
                    "anchor",
                    subject,
                    AnchorError("anchor refers to no verified checkpoint in the bundle"),
                )
                continue
            try:
                self._verify_receipt(ref.receipt, cp, local_receipts)
            except VerificationError as err:
                self.report.failed("anchor", subject, err)
                continue
            anchored[ref.log].add(ref.tree_size)
            self.report.passed("anchor", subject)
        for ledger, receipts in local_receipts.items():
            try:
                anchors_mod.verify_local_chain(sorted(receipts, key=lambda r: r.index))
            except VerificationError as err:
                self.report.failed("anchor.chain", ledger, err)
            else:
                self.report.passed("anchor.chain", ledger)
        # Coverage: walk each log's checkpoints from the largest down.
        for origin, by_size in self.checkpoints.items():
            covered = False
            sizes = sorted(by_size, reverse=True)
            for j, size in enumerate(sizes):
                if size in anchored[origin]:
                    covered = True
                elif j > 0 and (size, sizes[j - 1]) not in linked[origin]:
                    covered = False
                if covered:
                    self.covered[origin].add(size)
                    self.report.passed("checkpoint.anchored", f"{origin}@{size}")
                else:
                    self.report.failed(
                        "checkpoint.anchored",
                        f"{origin}@{size}",
                        UnanchoredCheckpointError(
                            "checkpoint is not anchored, nor consistent with an anchored one"
                        ),
                    )

    def _verify_receipt(
        self,
        receipt: dict[str, Any],
        cp: Checkpoint,
        local_receipts: dict[str, list[anchors_mod.LocalReceipt]],
    ) -> None:
        if receipt.get("type") == "local":
            local = anchors_mod.LocalReceipt.from_json(receipt)
            key = self.trust.ledgers.get(local.ledger)
            if key is None:
                raise UnknownKeyError("local ledger key is not pinned", found=local.ledger)
            anchors_mod.verify_local_receipt(local, key, checkpoint_hash(cp))
            local_receipts[local.ledger].append(local)
            return
        evm = anchors_mod.EvmReceipt.from_json(receipt)
        if not any(
            e.chain_id == evm.chain_id and e.contract == evm.contract.lower()
            for e in self.trust.evm
        ):
            raise UnknownKeyError(
                "EVM anchor contract is not pinned", found=f"{evm.chain_id}:{evm.contract}"
            )
        if self.rpc is None:
            raise AnchorUnverifiableError("EVM anchor needs an RPC endpoint (--evm-rpc)")
        anchors_mod.verify_evm_receipt(evm, cp, self.rpc)

    # 4. records -------------------------------------------------------------------
    def open_records(self) -> list[_Entry]:
        entries = []
        for i, item in enumerate(self.bundle.records):
            try:
                rec = open_record(item.raw)
            except VerificationError as err:
                self.report.failed("record.format", f"records[{i}]", err)
                continue
            entries.append(_Entry(item.log, item.index, rec))
            self.report.passed("record.format", f"{rec.signer}#{rec.payload.seq}")
        return entries

    # 7. inclusion -------------------------------------------------------------------
    def check_inclusion(self, entries: Sequence[_Entry]) -> set[int]:
        """Return ids of entries whose inclusion was proven."""
        proofs = defaultdict(list)
        for p in self.bundle.inclusion:
            proofs[(p.log, p.index)].append(p)
        included: set[int] = set()
        for e in entries:
            leaf = hash_leaf(e.record.raw)
            last: VerificationError | None = None
            for p in proofs.get((e.log, e.index), []):
                cp = self.checkpoints.get(e.log, {}).get(p.tree_size)
                if cp is None:
                    continue
                try:
                    verify_inclusion(e.index, p.tree_size, leaf, list(p.path), cp.root_hash)
                except ProofError as err:
                    last = err
                    continue
                included.add(id(e))
                self.report.passed("record.inclusion", f"{e.subject} in {e.log}@{p.tree_size}")
                break
            else:
                if last is not None:
                    self.report.failed("record.inclusion", e.subject, last)
                else:
                    self.report.failed(
                        "record.inclusion",
                        e.subject,
                        MissingProofError("no inclusion proof to a verified checkpoint"),
                    )
        return included

    # 5. keys + 6. signatures ------------------------------------------------------------
    def registered_keys(
        self, entries: Sequence[_Entry], included: set[int]
    ) -> dict[str, list[tuple[_Entry, Registration]]]:
        regs: dict[str, list[tuple[_Entry, Registration]]] = defaultdict(list)
        for e in entries:
            payload = e.record.payload
            if not isinstance(payload, Registration):
                continue
            key = self.trust.registries.get(e.record.signer)
            if key is None:
                self.report.failed(
                    "registration.key",
                    e.subject,
                    UnknownKeyError("registry key is not pinned", found=e.record.signer),
                )
                continue
            try:
                verify_record(e.record.raw, key)
            except VerificationError as err:
                self.report.failed("registration.signature", e.subject, err)
                continue
            if id(e) not in included:
                continue  # reported by the inclusion check; not usable as a key source
            self.report.passed("registration.signature", e.subject)
            regs[payload.device].append((e, payload))
        return regs

    def device_key(
        self,
        e: _Entry,
        regs: dict[str, list[tuple[_Entry, Registration]]],
    ) -> ec.EllipticCurvePublicKey:
        signer = e.record.signer
        pinned = self.trust.devices.get(signer)
        if pinned is not None:
            return pinned
        history = sorted(
            (r for r in regs.get(signer, []) if r[0].log == e.log), key=lambda r: r[0].index
        )
        if not history:
            raise UnknownKeyError(
                "no pinned key and no registration of this device in the same log",
                found=signer,
            )
        first_key = history[0][1].key
        for reg_entry, reg in history:
            if reg.key != first_key:
                raise UnknownKeyError("device registered with two different keys", found=signer)
            if reg.state == 2 and reg_entry.index < e.index:
                raise RevokedKeyError(
                    "record logged after its device was revoked",
                    expected=f"index < {reg_entry.index}",
                    found=e.index,
                )
        if history[0][0].index > e.index:
            raise UnknownKeyError(
                "record logged before its device was registered",
                expected=f"index > {history[0][0].index}",
                found=e.index,
            )
        return p256_public_from_sec1(first_key)

    def check_signatures(
        self, entries: Sequence[_Entry], regs: dict[str, list[tuple[_Entry, Registration]]]
    ) -> set[int]:
        signed: set[int] = set()
        for e in entries:
            if e.record.payload.kind == KIND_REGISTRATION:
                continue
            try:
                key = self.device_key(e, regs)
            except VerificationError as err:
                self.report.failed("record.key", e.subject, err)
                continue
            try:
                verify_record(e.record.raw, key)
            except VerificationError as err:
                self.report.failed("record.signature", e.subject, err)
                continue
            signed.add(id(e))
            self.report.passed("record.signature", e.subject)
        return signed

    # 8. chains -----------------------------------------------------------------------
    def check_chains(self, entries: Sequence[_Entry]) -> None:
        by_signer: dict[str, list[_Entry]] = defaultdict(list)
        for e in entries:
            by_signer[e.record.signer].append(e)
        for signer, items in sorted(by_signer.items()):
            items.sort(key=lambda x: x.record.payload.seq)
            ok = True
            for a, b in pairwise(items):
                pa, pb = a.record.payload, b.record.payload
                if pb.seq == pa.seq:
                    if a.record.raw != b.record.raw:
                        ok = False
                        self.report.failed(
                            "chain.link",
                            b.subject,
                            ChainError("two different records under one seq (a fork)"),
                        )
                    continue
                if pb.seq != pa.seq + 1:
                    ok = False
                    gap = SequenceGapError(
                        f"records {pa.seq + 1}..{pb.seq - 1} missing"
                        + _declared(items, pa.seq + 1, pb.seq - 1),
                        expected=pa.seq + 1,
                        found=pb.seq,
                    )
                    self.report.failed("chain.sequence", f"{signer}#{pa.seq}->{pb.seq}", gap)
                    continue
                want = chain_hash(a.record.raw)
                if pb.prev != want:
                    ok = False
                    self.report.failed(
                        "chain.link",
                        b.subject,
                        ChainError(
                            "prev does not match the previous record's hash",
                            expected=want.hex(),
                            found=pb.prev.hex(),
                        ),
                    )
                if pb.boot < pa.boot:
                    ok = False
                    self.report.failed(
                        "chain.boot",
                        b.subject,
                        ChainError(
                            "boot counter went down", expected=f">= {pa.boot}", found=pb.boot
                        ),
                    )
            if ok:
                first, last = items[0].record.payload.seq, items[-1].record.payload.seq
                self.report.passed("chain", f"{signer}#{first}..{last}")

    def summarise(self, entries: Sequence[_Entry], good: set[int]) -> None:
        readings = [
            e.record.payload
            for e in entries
            if id(e) in good and e.record.payload.kind == KIND_READING
        ]
        temps = [r.temp for r in readings if isinstance(r, Reading) and r.temp is not None]
        times = [e.record.payload.time for e in entries if id(e) in good]
        self.report.summary = {
            "records": len(self.bundle.records),
            "records_verified": len(good),
            "devices": sorted({e.record.signer for e in entries if id(e) in good}),
            "readings": len(readings),
            "scans": sum(1 for e in entries if id(e) in good and e.record.payload.kind == 2),
            "temp_min_centi": min(temps) if temps else None,
            "temp_max_centi": max(temps) if temps else None,
            "time_first": min(times) if times else None,
            "time_last": max(times) if times else None,
            "checkpoints": sum(len(v) for v in self.checkpoints.values()),
            "anchored_checkpoints": sum(len(v) for v in self.covered.values()),
            "failures": len(self.report.failures),
        }

    def run(self) -> Report:
        self.open_checkpoints()
        linked = self.check_consistency()
        self.check_anchors(linked)
        entries = self.open_records()
        included = self.check_inclusion(entries)
        regs = self.registered_keys(entries, included)
        signed = self.check_signatures(entries, regs)
        self.check_chains(entries)
        anchored = {
            id(e)
            for e in entries
            for p in self.bundle.inclusion
            if p.log == e.log and p.index == e.index and p.tree_size in self.covered[e.log]
        }
        good = {
            id(e)
            for e in entries
            if id(e) in included
            and id(e) in anchored
            and (id(e) in signed or e.record.payload.kind == KIND_REGISTRATION)
        }
        self.summarise(entries, good)
        return self.report


def _declared(items: Sequence[_Entry], first: int, last: int) -> str:
    """Say which of the signer's status records declared seqs first..last lost
    (protocol.md §5.2). A declaration explains a gap; it does not fill it."""
    notes = []
    for e in items:
        p = e.record.payload
        if isinstance(p, Status) and p.event == 11 and p.lost is not None and p.detail:
            lo, hi = p.lost, p.lost + p.detail - 1
            if lo <= last and hi >= first and hi < p.seq:
                notes.append(f"{lo}..{hi} declared lost by status record #{p.seq}")
    return f" ({'; '.join(notes)})" if notes else " (no declaration of loss)"


def verify_bundle(bundle: Bundle, trust: Trust, *, rpc: RpcCall | None = None) -> Report:
    """Verify every claim of ``bundle`` against ``trust``; see the module docstring."""
    return _Verifier(bundle, trust, rpc).run()
