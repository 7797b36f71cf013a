"""Bundle verification: the algorithm of docs/protocol.md §11, then the verdict of §12.

:func:`verify_bundle` checks everything a bundle claims, against the pinned
keys of a :class:`~protocol.trust.Trust`, and returns a :class:`Report`: every
failure with its code and subject, counts of the checks that passed, and -
when the bundle verified - the verdict (:mod:`protocol.verdict`) computed from
the verified records alone. It never stops at the first failure.

The order follows the chain of evidence, from the top down:

1. checkpoints: each signed note opens under a pinned log key;
2. consistency: checkpoints of one log, in size order, are linked by proofs;
3. anchors and coverage: receipts verify under pinned ledger keys; a
   checkpoint is covered when it, or a later one it is consistent with, is
   anchored;
4. records: envelope and payload follow the profile; one (log, index) once;
5. inclusion: each multiproof is computed once against its checkpoint;
6. registry records: signed by a pinned registry that is the authority for
   what they are about (the trust file's scopes);
7. device keys and signatures (in parallel threads: pyca releases the GIL);
8. signer chains and statement chains;
9. the subject the bundle claims against the signed commission scan.

Every step is linear or n·log n in the bundle: proofs are indexed by
(log, tree size), records by (log, index).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from protocol import anchor as anchors_mod
from protocol import verdict as verdict_mod
from protocol.bundle import Bundle
from protocol.checkpoint import Checkpoint, checkpoint_hash, open_cosigned_checkpoint
from protocol.errors import (
    AnchorError,
    AnchorUnverifiableError,
    ChainError,
    DuplicateEntryError,
    InconsistentCheckpointsError,
    InsufficientCosignaturesError,
    MissingProofError,
    NoteError,
    OutOfScopeError,
    ProofError,
    RevokedKeyError,
    SubjectMismatchError,
    UnanchoredCheckpointError,
    UnknownKeyError,
    VerificationError,
)
from protocol.keys import p256_public_from_sec1
from protocol.merkle import hash_leaf, verify_consistency, verify_multiproof
from protocol.record import (
    KIND_BINDING,
    KIND_PROFILE,
    KIND_REGISTRATION,
    KIND_SCAN,
    STATE_REVOKED,
    ZERO_PREV,
    Binding,
    Reading,
    ReadingBlock,
    Record,
    Registration,
    Scan,
    chain_hash,
    open_record,
    statement_chain_key,
    verify_record,
)
from protocol.trust import Trust

__all__ = ["Check", "Report", "RpcCall", "verify_bundle"]

RpcCall = Callable[[str, list[object]], object]

_REGISTRY_KINDS = frozenset({KIND_REGISTRATION, KIND_BINDING, KIND_PROFILE})
_STATEMENT_KINDS = frozenset({KIND_BINDING, KIND_PROFILE})


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
    """What :func:`verify_bundle` found.

    ``failures`` lists every failed check; passed checks are counted in
    ``passed_counts`` and, when the report was made with ``detail=True``,
    listed in ``checks`` too. ``verdict`` is the §12 verdict, or None when the
    bundle did not verify.
    """

    detail: bool = False
    checks: list[Check] = field(default_factory=list)
    failures: list[Check] = field(default_factory=list)
    passed_counts: Counter[str] = field(default_factory=Counter)
    summary: dict[str, Any] = field(default_factory=dict)
    verdict: verdict_mod.Verdict | None = None

    @property
    def verified(self) -> bool:
        return not self.failures and self.summary.get("records_verified", 0) > 0

    # Kept for callers of version 1.
    @property
    def ok(self) -> bool:
        return self.verified

    def passed(self, check: str, subject: str, message: str | None = None) -> None:
        self.passed_counts[check] += 1
        if self.detail:
            self.checks.append(Check(check, subject, True, message=message))

    def failed(self, check: str, subject: str, err: VerificationError) -> None:
        c = Check(
            check,
            subject,
            False,
            err.code,
            err.message,
            None if err.expected is None else str(err.expected),
            None if err.found is None else str(err.found),
        )
        self.failures.append(c)
        if self.detail:
            self.checks.append(c)

    def verdict_document(self) -> dict[str, Any]:
        """The members of docs/protocol.md §13.1, exactly (what the vectors compare)."""
        doc: dict[str, Any] = {"verified": self.verified}
        if self.verified and self.verdict is not None:
            doc.update(self.verdict.to_json())
        else:
            doc.update(
                verdict=None,
                reasons=[],
                subject=None,
                profile=None,
                legs=[],
                excursions=[],
                totals=None,
            )
        return doc

    def to_json(self) -> dict[str, Any]:
        doc = self.verdict_document()
        doc["summary"] = self.summary
        doc["failures"] = [asdict(c) for c in self.failures]
        if self.detail:
            doc["checks"] = [asdict(c) for c in self.checks]
        return doc

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"


@dataclass(slots=True)
class _Entry:
    """A bundle record that opened cleanly, with where the bundle says it is."""

    log: str
    index: int
    record: Record
    included: int | None = None  # tree size of a verifying proof (a covered one if any)

    @property
    def subject(self) -> str:
        return f"{self.record.signer}#{self.record.payload.seq}"


@dataclass(frozen=True, slots=True)
class _KeySource:
    """A device's key from its registrations in one log (§11 step 9)."""

    key: bytes
    indexes: list[int]  # log indexes of its registrations, ascending
    revoked: int | None  # index of the first revocation
    problem: str | None  # why the registrations give no key
    included: bool  # every registration is proven in the log


def _parallel(func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[func(i) for i in items]`` on a few threads (the crypto releases the GIL)."""
    workers = min(8, os.cpu_count() or 1)
    if workers < 2 or len(items) < 256:
        return [func(i) for i in items]
    chunk = max(64, len(items) // (workers * 4))
    parts = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(lambda part: [func(i) for i in part], parts)
        return [r for part in done for r in part]


def _check_signature(job: tuple[bytes, ec.EllipticCurvePublicKey]) -> VerificationError | None:
    raw, key = job
    try:
        verify_record(raw, key)
    except VerificationError as err:
        return err
    return None


class _Verifier:
    def __init__(
        self,
        bundle: Bundle,
        trust: Trust,
        rpc: RpcCall | None,
        detail: bool,
        *,
        require_anchor: bool = True,
        judge: bool = True,
        tag: str = "unknown",
    ) -> None:
        self.bundle = bundle
        self.trust = trust
        self.rpc = rpc
        self.require_anchor = require_anchor
        self.judge = judge
        self.tag = tag
        self.report = Report(detail=detail)
        # origin -> size -> checkpoint (verified only)
        self.checkpoints: dict[str, dict[int, Checkpoint]] = defaultdict(dict)
        self.covered: dict[str, set[int]] = defaultdict(set)

    # 1. checkpoints ---------------------------------------------------------------
    def open_checkpoints(self) -> None:
        for i, text in enumerate(self.bundle.checkpoints):
            subject = f"checkpoint[{i}]"
            try:
                cp, cosigs = open_cosigned_checkpoint(text, self.trust.logs, self.trust.witnesses)
                if cp.size == 0:
                    raise NoteError("a checkpoint of the empty log proves nothing", found=0)
            except VerificationError as err:
                self.report.failed("checkpoint.signature", subject, err)
                continue
            subject = f"{cp.origin}@{cp.size}"
            message = None
            if self.trust.witnesses:
                # One line per (name, key id) (§7), so these are distinct witnesses.
                message = (
                    f"{len(cosigs)} cosignature(s) from pinned witnesses, "
                    f"quorum {self.trust.quorum}"
                )
            if len(cosigs) < self.trust.quorum:
                self.report.failed(
                    "checkpoint.cosignatures",
                    subject,
                    InsufficientCosignaturesError(
                        f"{message}: too few witnesses cosigned the checkpoint",
                        expected=f">= {self.trust.quorum}",
                        found=[f"{c.witness.name}+{c.witness.key_id:08x}" for c in cosigs],
                    ),
                )
                continue
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
            self.report.passed("checkpoint.signature", subject, message)

    # 2. consistency -----------------------------------------------------------------
    def check_consistency(self) -> dict[str, set[tuple[int, int]]]:
        linked: dict[str, set[tuple[int, int]]] = defaultdict(set)
        proofs = defaultdict(list)
        for p in self.bundle.consistency:
            proofs[(p.log, p.old_size, p.new_size)].append(p)
        for origin, by_size in self.checkpoints.items():
            for old, new in pairwise(sorted(by_size)):
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
                for p in candidates:  # each proof belongs to one pair: checked once
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

    # 3. anchors and coverage ----------------------------------------------------------
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
                if size in anchored[origin] or not self.require_anchor:
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

    # 4. records ------------------------------------------------------------------------
    def open_records(self) -> dict[tuple[str, int], _Entry]:
        entries: dict[tuple[str, int], _Entry] = {}
        for i, item in enumerate(self.bundle.records):
            where = (item.log, item.index)
            if where in entries:
                self.report.failed(
                    "record.entry",
                    f"records[{i}]",
                    DuplicateEntryError(
                        "one (log, index) appears twice among the records",
                        found=f"{item.log}#{item.index}",
                    ),
                )
                continue
            try:
                rec = open_record(item.raw)
            except VerificationError as err:
                self.report.failed("record.format", f"records[{i}]", err)
                continue
            entries[where] = _Entry(item.log, item.index, rec)
            self.report.passed("record.format", f"{rec.signer}#{rec.payload.seq}")
        return entries

    # 5. inclusion ----------------------------------------------------------------------
    def check_inclusion(self, entries: dict[tuple[str, int], _Entry]) -> None:
        failed_listed: set[tuple[str, int]] = set()
        for i, proof in enumerate(self.bundle.proofs):
            subject = f"proof[{i}] {proof.log}@{proof.tree_size}"
            cp = self.checkpoints.get(proof.log, {}).get(proof.tree_size)
            if cp is None:
                continue  # not a verified checkpoint: ignored (§11 step 7)
            listed = [entries.get((proof.log, leaf)) for leaf in proof.leaves]
            try:
                missing = [leaf for leaf, e in zip(proof.leaves, listed, strict=True) if e is None]
                if missing:
                    raise ProofError(
                        "the proof lists a leaf that is not a record of the bundle",
                        found=f"{proof.log}#{missing[0]}",
                    )
                hashes = [hash_leaf(e.record.raw) for e in listed if e is not None]
                verify_multiproof(
                    proof.tree_size, list(proof.leaves), hashes, list(proof.nodes), cp.root_hash
                )
            except ProofError as err:
                self.report.failed("record.inclusion", subject, err)
                failed_listed.update((proof.log, leaf) for leaf in proof.leaves)
                continue
            self.report.passed("record.inclusion", subject)
            covered = proof.tree_size in self.covered[proof.log]
            for e in listed:
                assert e is not None
                if e.included is None or (covered and e.included not in self.covered[e.log]):
                    e.included = proof.tree_size
        for where, e in entries.items():
            if e.included is not None:
                continue
            if where in failed_listed:
                self.report.failed(
                    "record.inclusion",
                    e.subject,
                    ProofError("the only proofs listing this record do not verify"),
                )
            else:
                self.report.failed(
                    "record.inclusion",
                    e.subject,
                    MissingProofError("no inclusion proof to a verified checkpoint"),
                )

    # 6. registry records ----------------------------------------------------------------
    def check_registry_records(self, entries: Iterable[_Entry]) -> set[int]:
        """Registry records (kinds 4-6) that passed §11 step 8; ids of their entries."""
        good: set[int] = set()
        for e in entries:
            p = e.record.payload
            if p.kind not in _REGISTRY_KINDS:
                continue
            signer = e.record.signer
            key = self.trust.registries.get(signer)
            if key is None:
                self.report.failed(
                    "registry.key",
                    e.subject,
                    UnknownKeyError("registry key is not pinned", found=signer),
                )
                continue
            try:
                verify_record(e.record.raw, key)
            except VerificationError as err:
                self.report.failed("registry.signature", e.subject, err)
                continue
            if isinstance(p, Registration):
                what, authority = f"device {p.device}", self.trust.device_authority(p.device)
            elif isinstance(p, Binding):
                what, authority = f"place {p.target}", self.trust.place_authority(p.target)
            else:
                gtin = p.gtin  # type: ignore[union-attr]
                what, authority = f"GTIN {gtin}", self.trust.gtin_authority(gtin)
            if authority != signer:
                self.report.failed(
                    "registry.scope",
                    e.subject,
                    OutOfScopeError(
                        f"registry {signer} is not the authority for {what}",
                        expected=authority or "no authority",
                        found=signer,
                    ),
                )
                continue
            self.report.passed("registry.signature", e.subject)
            good.add(id(e))
        return good

    # 7. device keys and signatures -------------------------------------------------------
    def device_keys(
        self, entries: Iterable[_Entry], registry_ok: set[int]
    ) -> dict[Any, _KeySource]:
        """Per (log, device): the key its registrations give, and whether they hold.

        Registrations that failed their inclusion proof still give a key to
        check signatures with, so that an edited record is reported as such;
        the records they vouch for are then not verified (the failed proof is
        already reported: no second failure per record)."""
        regs: dict[tuple[str, str], list[tuple[_Entry, Registration]]] = defaultdict(list)
        for e in entries:
            p = e.record.payload
            if isinstance(p, Registration) and id(e) in registry_ok:
                regs[(e.log, p.device)].append((e, p))
        out: dict[Any, _KeySource] = {}
        for where, history in regs.items():
            history.sort(key=lambda r: r[0].index)
            key = history[0][1].key
            problem = None
            if any(r.key != key for _, r in history):
                problem = "device registered with two different keys"
            revoked = next((e.index for e, r in history if r.state == STATE_REVOKED), None)
            out[where] = _KeySource(
                key,
                [e.index for e, _ in history],
                revoked,
                problem,
                all(e.included is not None for e, _ in history),
            )
        return out

    def check_signatures(self, entries: Sequence[_Entry], keys: dict[Any, _KeySource]) -> set[int]:
        jobs: list[tuple[_Entry, ec.EllipticCurvePublicKey]] = []
        unproven: set[int] = set()
        cache: dict[bytes, ec.EllipticCurvePublicKey] = {}
        for e in entries:
            if e.record.payload.kind in _REGISTRY_KINDS:
                continue
            signer = e.record.signer
            pinned = self.trust.devices.get(signer)
            if pinned is not None:
                jobs.append((e, pinned))
                continue
            source = keys.get((e.log, signer))
            try:
                jobs.append((e, self._registered_key(e, source, cache)))
            except VerificationError as err:
                self.report.failed("record.key", e.subject, err)
                continue
            if source is not None and not source.included:
                unproven.add(id(e))
        results = _parallel(_check_signature, [(e.record.raw, k) for e, k in jobs])
        signed: set[int] = set()
        for (e, _), problem in zip(jobs, results, strict=True):
            if problem is not None:
                self.report.failed("record.signature", e.subject, problem)
            elif id(e) not in unproven:
                signed.add(id(e))
                self.report.passed("record.signature", e.subject)
        return signed

    @staticmethod
    def _registered_key(
        e: _Entry, source: _KeySource | None, cache: dict[bytes, ec.EllipticCurvePublicKey]
    ) -> ec.EllipticCurvePublicKey:
        signer = e.record.signer
        if source is None:
            raise UnknownKeyError(
                "no pinned key and no registration of this device in the same log",
                found=signer,
            )
        if source.problem is not None:
            raise UnknownKeyError(source.problem, found=signer)
        if source.indexes[0] > e.index:
            raise UnknownKeyError(
                "record logged before its device was registered",
                expected=f"index > {source.indexes[0]}",
                found=e.index,
            )
        if source.revoked is not None and source.revoked < e.index:
            raise RevokedKeyError(
                "record logged after its device was revoked",
                expected=f"index < {source.revoked}",
                found=e.index,
            )
        public = cache.get(source.key)
        if public is None:
            public = cache[source.key] = p256_public_from_sec1(source.key)
        return public

    # 8. chains -----------------------------------------------------------------------------
    def check_signer_chains(self, entries: Iterable[_Entry]) -> None:
        by_signer: dict[str, dict[int, Record]] = defaultdict(dict)
        for e in entries:
            rec = e.record
            seen = by_signer[rec.signer].get(rec.payload.seq)
            if seen is not None:
                if seen.raw != rec.raw:
                    self.report.failed(
                        "chain.link",
                        e.subject,
                        ChainError("two different records under one seq (a fork)"),
                    )
                continue
            by_signer[rec.signer][rec.payload.seq] = rec
        for signer in sorted(by_signer):
            records = by_signer[signer]
            seqs = sorted(records)
            ok = True
            first = records[seqs[0]]
            if seqs[0] == 0 and first.payload.prev != ZERO_PREV:
                ok = False
                self.report.failed(
                    "chain.link",
                    f"{signer}#0",
                    ChainError(
                        "the first record (seq 0) must carry a zero prev",
                        expected=ZERO_PREV.hex(),
                        found=first.payload.prev.hex(),
                    ),
                )
            for sa, sb in pairwise(seqs):
                a, b = records[sa].payload, records[sb].payload
                if b.boot < a.boot:
                    ok = False
                    self.report.failed(
                        "chain.boot",
                        f"{signer}#{sb}",
                        ChainError("boot counter went down", expected=f">= {a.boot}", found=b.boot),
                    )
                if sb != sa + 1:
                    continue  # a gap: judged by the verdict where it matters (§12.6)
                want = chain_hash(records[sa].raw)
                if b.prev != want:
                    ok = False
                    self.report.failed(
                        "chain.link",
                        f"{signer}#{sb}",
                        ChainError(
                            "prev does not match the previous record's hash",
                            expected=want.hex(),
                            found=b.prev.hex(),
                        ),
                    )
            if ok:
                self.report.passed("chain", f"{signer}#{seqs[0]}..{seqs[-1]}")

    def check_statement_chains(self, entries: Iterable[_Entry], registry_ok: set[int]) -> None:
        chains: dict[tuple[Any, ...], dict[int, Record]] = defaultdict(dict)
        for e in entries:
            rec = e.record
            if rec.payload.kind not in _STATEMENT_KINDS or id(e) not in registry_ok:
                continue
            key = statement_chain_key(rec.signer, rec.payload)
            cseq: int = rec.payload.cseq  # type: ignore[union-attr]
            seen = chains[key].get(cseq)
            if seen is not None:
                if seen.raw != rec.raw:
                    self.report.failed(
                        "statement.link",
                        e.subject,
                        ChainError("two different statements under one cseq (a fork)"),
                    )
                continue
            chains[key][cseq] = rec
        for key in sorted(chains, key=repr):
            statements = chains[key]
            cseqs = sorted(statements)
            name = "/".join(str(k) for k in key if k is not None)
            ok = True
            for ca, cb in pairwise(cseqs):
                a, b = statements[ca], statements[cb]
                if b.payload.time < a.payload.time:
                    ok = False
                    self.report.failed(
                        "statement.time",
                        f"{name}#{cb}",
                        ChainError(
                            "a statement's time goes back along its chain",
                            expected=f">= {a.payload.time}",
                            found=b.payload.time,
                        ),
                    )
                if cb != ca + 1:
                    continue
                want = chain_hash(a.raw)
                if b.payload.cprev != want:  # type: ignore[union-attr]
                    ok = False
                    self.report.failed(
                        "statement.link",
                        f"{name}#{cb}",
                        ChainError(
                            "cprev does not match the chain's previous statement",
                            expected=want.hex(),
                            found=b.payload.cprev.hex(),  # type: ignore[union-attr]
                        ),
                    )
            if ok:
                self.report.passed("statement.chain", f"{name}#{cseqs[0]}..{cseqs[-1]}")

    # 9. subject ---------------------------------------------------------------------------
    def check_subject(self, good: Sequence[Record]) -> None:
        claimed = self.bundle.subject.item
        if claimed is None:
            return
        uid = self.bundle.subject.uid
        scans = [r for r in good if isinstance(r.payload, Scan) and r.payload.uid == uid]
        if not scans:
            return
        dates = verdict_mod.date_records(r for r in good if r.signer in {s.signer for s in scans})
        # the registrations give the scans' roles: a scan not signed as a reader is no
        # commission (§12.1)
        regs = [r for r in good if isinstance(r.payload, Registration)]
        commission = verdict_mod.custody(scans + regs, dates, uid).commission
        if commission is None:
            return
        item = commission.payload.item  # type: ignore[union-attr]
        if item != claimed:
            self.report.failed(
                "subject",
                uid.hex(),
                SubjectMismatchError(
                    "the bundle claims another item than its signed commission scan",
                    expected=item,
                    found=claimed,
                ),
            )
        else:
            self.report.passed("subject", uid.hex())

    def summarise(self, entries: Sequence[_Entry], good: list[Record]) -> None:
        readings: list[Reading] = []
        times = []
        for r in good:
            p = r.payload
            if isinstance(p, ReadingBlock):  # N readings; its end time is among the times
                readings.extend(p.readings())
                if p.tq > 0:
                    times.append(p.end_time)
            elif isinstance(p, Reading):
                readings.append(p)
            if p.tq > 0:
                times.append(p.time)
        temps = [p.temp for p in readings if p.temp is not None]
        self.report.summary = {
            "records": len(self.bundle.records),
            "records_verified": len(good),
            "devices": sorted({r.signer for r in good if r.payload.kind not in _REGISTRY_KINDS}),
            "readings": len(readings),
            "scans": sum(1 for r in good if r.payload.kind == KIND_SCAN),
            "statements": sum(1 for r in good if r.payload.kind in _STATEMENT_KINDS),
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
        by_where = self.open_records()
        entries = list(by_where.values())
        self.check_inclusion(by_where)
        registry_ok = self.check_registry_records(entries)
        keys = self.device_keys(entries, registry_ok)
        signed = self.check_signatures(entries, keys)
        self.check_signer_chains(entries)
        self.check_statement_chains(entries, registry_ok)
        good: list[Record] = []
        seen: set[bytes] = set()
        for e in entries:
            if e.included is None or e.included not in self.covered[e.log]:
                continue
            ok = (
                id(e) in registry_ok
                if e.record.payload.kind in _REGISTRY_KINDS
                else id(e) in signed
            )
            if ok and e.record.raw not in seen:
                seen.add(e.record.raw)
                good.append(e.record)
        self.check_subject(good)
        self.summarise(entries, good)
        if self.report.verified and self.judge:
            self.report.verdict = verdict_mod.judge(
                good, self.trust, self.bundle.subject.uid, self.tag
            )
        return self.report


def verify_bundle(
    bundle: Bundle,
    trust: Trust,
    *,
    rpc: RpcCall | None = None,
    detail: bool = False,
    require_anchor: bool = True,
    judge: bool = True,
    tag: str = "unknown",
) -> Report:
    """Verify every claim of ``bundle`` against ``trust`` and judge it; see the module docstring.

    ``detail=True`` keeps every passed check in the report (``-v``), not only counts.
    Two options serve a party that checks evidence *before* it is anchored, as
    the cloud does with a gateway's push (docs/cloud.md): ``require_anchor=False``
    counts every verified checkpoint as covered (step 3), and ``judge=False``
    skips the verdict. A bundle for a verdict is always verified with both on.
    ``tag`` is the tag's authentication at the tap, for the provenance verdict
    of a product without a profile (§12.10): ``genuine``, ``replayed``,
    ``unauthenticated`` or ``unknown`` (not checked).
    """
    return _Verifier(
        bundle, trust, rpc, detail, require_anchor=require_anchor, judge=judge, tag=tag
    ).run()
