"""The end-of-scenario check of the fault suite (issue 12): what a disturbed run must still hold.

:func:`check_invariants` takes what was published (per device: seq -> the
exact record bytes), the acks the devices received, and the gateway
instances whose stores and logs hold the result (one, or a fleet's several;
SQLite or PostgreSQL, as each configuration says), and asserts:

- **exactly once**: every published record is stored, with its exact bytes,
  in exactly one instance (no (device, seq) twice, across instances too), and
  nothing else of those devices is stored; nothing is quarantined;
- **in the logs**: each instance's last checkpoint is the Merkle root
  (RFC 9162) of exactly its stored records, recomputed here from their bytes,
  and every published record is a leaf of one of those logs;
- **checkpoints**: every checkpoint an instance ever issued - those stored,
  the ledger's anchors, and those its processes logged (``gateway_logs``),
  across restarts - verifies under the log key and is consistent with the one
  before (tests/gateway/logcheck.py);
- **acks**: every record an ack covered is stored (a device deletes it);
  with ``all_acked`` every device was acked up to its last record;
- **verdicts**: for each tag of ``traces``, the verdict (docs/protocol.md §12)
  equals the verdict of an undisturbed run of the same workload. An
  undisturbed run logs exactly the published records and the registry's
  records, so the reference is :func:`protocol.verdict.judge` over those; it is
  compared with the verdict over the records the instances' logs hold and,
  with one instance, with the verifier's verdict on the bundle that
  ``coldtrace gateway trace`` builds from the store (proofs, anchor and all).

It returns the counts (published, stored, in_logs, duplicates, lost,
checkpoints, ...) and, given a scenario name, writes them as JSON to
``test-artifacts/reliability/<scenario>.json`` for the suite's summary.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig
from gateway.evidence.store import open_store
from gateway.service import registry_scopes, trust_document
from gateway.trace import build, plan
from protocol.merkle import MerkleTree
from protocol.record import open_record
from protocol.trust import Trust, parse_trust
from protocol.verdict import judge
from protocol.verify import verify_bundle
from tests.gateway.logcheck import check_log_and_ledger

__all__ = ["ARTIFACTS", "check_invariants", "logged_checkpoints", "reference_verdicts"]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"
_CHECKPOINT_LINE = re.compile(r"checkpoint (\d+) signed and anchored")


def logged_checkpoints(log_path: Path) -> list[int]:
    """Sizes of the checkpoints a gateway process said it signed and anchored."""
    return [int(m) for m in _CHECKPOINT_LINE.findall(log_path.read_text(errors="replace"))]


def reference_verdicts(
    records: Sequence[bytes], trust: Trust, uids: Sequence[bytes]
) -> dict[bytes, dict[str, Any]]:
    """The verdict documents (§13.1 members the verdict owns) over ``records``."""
    opened = [open_record(raw) for raw in set(records)]
    return {uid: judge(opened, trust, uid).to_json() for uid in uids}


def check_invariants(
    scenario: str | None,
    instances: Sequence[GatewayConfig],
    published: Mapping[str, Mapping[int, bytes]],
    acked: Mapping[str, int],
    *,
    all_acked: bool = True,
    registry_records: Sequence[bytes] = (),
    traces: Sequence[bytes] = (),
    gateway_logs: Sequence[Sequence[Path]] = (),
    samples: int = 200,
) -> dict[str, Any]:
    """Assert the invariants above; return (and write, with ``scenario``) the counts.

    ``gateway_logs[i]``: the log files of instance ``i``'s processes (their
    ``checkpoint ... signed and anchored`` lines). ``traces``: tag UIDs whose
    verdicts are compared (``registry_records``: the registry's records as
    signed, part of the reference run's input)."""
    assert instances, "no gateway instance to check"
    want = {(dev, seq): raw for dev, seqs in published.items() for seq, raw in seqs.items()}
    raw_of = {raw: key for key, raw in want.items()}
    copies: Counter[tuple[str, int]] = Counter()
    wrong: list[tuple[str, int]] = []
    rejected: dict[str, int] = {}
    in_logs = 0
    leaf_dups = 0
    checkpoints = 0
    logged: set[bytes] = set()
    for i, cfg in enumerate(instances):
        store = open_store(cfg)
        try:
            for dev in published:
                for r in store.records_of(dev, 0, 2**62):
                    copies[(dev, r.seq)] += 1
                    if want.get((dev, r.seq)) != r.raw:
                        wrong.append((dev, r.seq))
            for reason, n in store.reject_counts().items():
                rejected[reason] = rejected.get(reason, 0) + n
            cps = check_log_and_ledger(cfg, store, samples)
            assert all(c.origin == cfg.log.origin for c in cps)
            stored_sizes = {c.size for c in cps}
            for path in gateway_logs[i] if i < len(gateway_logs) else ():
                said = logged_checkpoints(path)
                missing = sorted(set(said) - stored_sizes)
                assert not missing, f"{cfg.log.origin}: checkpoints issued, not kept: {missing}"
            checkpoints += len(cps)
            tree = MerkleTree()
            leaves: Counter[bytes] = Counter()
            for raw in store.raw_between(0, cps[-1].size):
                tree.append(raw)
                leaves[raw] += 1
            assert tree.root() == cps[-1].root_hash, f"{cfg.log.origin}: root of the records"
            in_logs += sum(n for raw, n in leaves.items() if raw in raw_of)
            leaf_dups += sum(n - 1 for n in leaves.values() if n > 1)
            logged |= set(leaves)
        finally:
            store.close()

    lost = sorted(k for k in want if copies[k] == 0)
    extra = sorted(k for k in copies if k not in want)
    duplicates = sum(n - 1 for n in copies.values() if n > 1) + leaf_dups
    acked_missing = sorted(
        (dev, seq)
        for dev, top in acked.items()
        for seq in range(top + 1)
        if copies[(dev, seq)] == 0
    )
    counts: dict[str, Any] = {
        "published": len(want),
        "stored": sum(copies[k] for k in want),
        "in_logs": in_logs,
        "duplicates": duplicates,
        "lost": len(lost),
        "acked_lost": len(acked_missing),
        "checkpoints": checkpoints,
        "instances": len(instances),
        "devices": len(published),
    }
    trust = parse_trust(trust_document(instances[0]))
    if traces:
        reference = reference_verdicts([*want.values(), *registry_records], trust, traces)
        from_logs = reference_verdicts(sorted(logged), trust, traces)
        counts["verdicts"] = {uid.hex(): reference[uid]["verdict"] for uid in traces}
    if scenario is not None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{scenario}.json").write_text(json.dumps(counts, indent=1) + "\n")

    assert not lost, f"{len(lost)} published records not stored, e.g. {lost[:5]}"
    assert not acked_missing, f"acked and not stored: {acked_missing[:5]}"
    assert not wrong, f"stored bytes differ from those published: {wrong[:5]}"
    assert not extra, f"stored records nobody published: {extra[:5]}"
    assert duplicates == 0, [k for k, n in copies.items() if n > 1][:5]
    assert counts["stored"] == counts["published"] == in_logs
    assert rejected == {}, rejected
    if all_acked:
        behind = {d: a for d, a in acked.items() if a != max(published[d], default=-1)}
        assert not behind, f"devices not acked up to their last record: {behind}"
    for uid in traces:
        assert from_logs[uid] == reference[uid], f"{uid.hex()}: verdict of the logged records"
    if traces and len(instances) == 1:
        for uid in traces:
            doc = bundle_verdict(instances[0], uid, trust)
            assert doc == {"verified": True, **reference[uid]}, f"{uid.hex()}: bundle verdict"
    return counts


def bundle_verdict(cfg: GatewayConfig, uid: bytes, trust: Trust) -> dict[str, Any]:
    """The verifier's verdict document on the bundle of tag ``uid`` that ``coldtrace
    gateway trace`` builds from ``cfg``'s store at its latest anchored checkpoint."""
    store = open_store(cfg)
    try:
        anchors = store.anchors()
        assert anchors, "no anchored checkpoint"
        upto = anchors[-1].size
        p = plan(
            store,
            uid,
            registry=cfg.registry.id,
            scopes=registry_scopes(cfg),
            upto=upto,
            origin=cfg.log.origin,
        )
        bundle = build(store, cfg.tree_dir, cfg.log.origin, p, upto)
    finally:
        store.close()
    report = verify_bundle(bundle, trust)
    assert report.verified, [(f.code, f.message) for f in report.failures]
    return report.verdict_document()
