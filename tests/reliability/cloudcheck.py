"""End-of-scenario checks for the fault suite's cloud, ledger and disk scenarios.

Built on the gateway's own checks (tests/gateway/test_crash.py, logcheck.py):

- :func:`check_devices`: every record a device published is stored once, with
  its exact bytes, in seq order, and acked (the ack covers the last one);
- :func:`check_cloud`: the cloud's copy of the log is the gateway's, leaf for
  leaf (no index twice, no record twice), every checkpoint the cloud holds
  verifies under the log key and is consistent with the one before (proofs
  from the cloud's own mirror of the records), and the cloud holds the
  gateway's receipts;
- :func:`cloud_verdict`: the trace bundle the cloud assembles for the item,
  verified with :func:`protocol.verify.verify_bundle` against the cloud's
  trust file - reduced by :func:`verdict_shape` to what does not depend on
  the wall clock of the run;
- :func:`reference_verdict`: the same scenario run once undisturbed (cached
  per process), the verdict every disturbed run must equal;
- :func:`write_counts`: the figures as JSON in test-artifacts/reliability/.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from cloud import db, orgs
from gateway.evidence.store import open_store
from gateway.service import load_log_signer
from protocol.bundle import loads_bundle
from protocol.checkpoint import open_checkpoint
from protocol.cli import main as coldtrace
from protocol.merkle import MerkleTree, verify_consistency
from protocol.rpc import json_rpc
from protocol.trust import loads_trust
from protocol.verify import verify_bundle
from tests.gateway.cloudenv import CloudServer
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.env import ORIGIN, GatewayDir
from tests.gateway.test_push import caught_up, with_cloud
from tests.gateway.test_trace import UID, Scenario

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"

__all__ = [
    "ARTIFACTS",
    "check_cloud",
    "check_devices",
    "cloud_verdict",
    "finish_trace",
    "reference_verdict",
    "scenario_devices",
    "verdict_shape",
    "write_counts",
]


def scenario_devices(s: Scenario) -> list[SimDevice]:
    return [s.rd_a, s.rd_b, *s.loggers.values()]


def write_counts(scenario: str, **counts: Any) -> dict[str, Any]:
    """Write ``counts`` to test-artifacts/reliability/<scenario>.json; return them."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    doc = {"scenario": scenario, **counts}
    (ARTIFACTS / f"{scenario}.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return doc


def check_devices(env: GatewayDir, devs: Iterable[SimDevice]) -> dict[str, int]:
    """Every record each device published stored once (exact bytes, seq order) and
    acked; the gateway refused nothing. Counts: published and stored (device
    records), leaves (the log's size: device records and the registry's)."""
    devs = list(devs)
    store = open_store(env.cfg)
    try:
        published = stored = 0
        for d in devs:
            got = store.records_of(d.id, 0, 2**32)
            assert [r.seq for r in got] == list(range(d.seq)), f"{d.id}: seqs"
            assert len({r.raw for r in got}) == len(got) == d.seq, f"{d.id}: duplicates"
            assert d.acked == d.seq - 1 and not d.unacked and d.bad_acks == 0, d.id
            published += d.seq
            stored += len(got)
        assert store.reject_counts() == {}
        return {"published": published, "stored": stored, "leaves": store.leaf_count()}
    finally:
        store.close()


def _cloud_rows(cloud: CloudServer, table: Any, order: Any) -> list[Any]:
    with cloud.engine.connect() as conn:
        return conn.execute(
            table.select().where(table.c.log_id == cloud.log_row(ORIGIN).id).order_by(order)
        ).all()


def check_cloud(env: GatewayDir, cloud: CloudServer) -> dict[str, int]:
    """The cloud's copy of the log equals the gateway's; see the module docstring.
    Counts: in_cloud, cloud_checkpoints, cloud_receipts, cloud_duplicates."""
    verifier = load_log_signer(env.cfg).verifier()
    rows = _cloud_rows(cloud, db.records, db.records.c.idx)
    raws = [bytes(r.raw) for r in rows]
    store = open_store(env.cfg)
    try:
        leaves = store.leaf_count()
        assert [r.idx for r in rows] == list(range(len(rows))), "cloud indexes"
        assert raws == list(store.raw_between(0, leaves)), "the cloud's records differ"
        ours = {a.size: a.receipt for a in store.anchors()}
    finally:
        store.close()
    duplicates = len(raws) - len(set(raws))
    assert duplicates == 0
    assert cloud.size(ORIGIN) == leaves
    tree = MerkleTree()
    tree.extend(raws)
    cps = [
        open_checkpoint(r.note, [verifier])
        for r in _cloud_rows(cloud, db.checkpoints, db.checkpoints.c.size)
    ]
    assert cps and cps[-1].size == leaves
    for cp in cps:
        assert tree.root(cp.size) == cp.root_hash, f"cloud checkpoint {cp.size}"
    for old, new in itertools.pairwise(cps):
        proof = tree.consistency_proof(old.size, new.size)
        verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
    anchors = _cloud_rows(cloud, db.anchors, db.anchors.c.size)
    theirs = {r.size: json.loads(r.receipt) for r in anchors}
    assert theirs == ours, "the cloud's receipts are not the gateway's"
    return {
        "in_cloud": len(raws),
        "cloud_checkpoints": len(cps),
        "cloud_receipts": len(theirs),
        "cloud_duplicates": duplicates,
    }


def verdict_shape(doc: dict[str, Any], t0: int) -> Any:
    """A verdict document with its times made relative to the scenario's start ``t0``
    (a run an hour later gives the same shape): integers within a day of ``t0`` and
    UTC times in texts become ``t0+N``."""

    def rel(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: rel(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rel(x) for x in v]
        if isinstance(v, int) and not isinstance(v, bool) and abs(v - t0) < 86400:
            return f"t0{v - t0:+d}"
        if isinstance(v, str):
            return _ISO.sub(lambda m: f"t0{_epoch(m.group(0)) - t0:+d}", v)
        return v

    return rel(doc)


_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _epoch(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def cloud_verdict(
    cloud: CloudServer, uid: bytes = UID, *, evm_rpc: str | None = None, out: Path | None = None
) -> dict[str, Any]:
    """The item's bundle as the cloud assembles it, verified against the cloud's trust
    file: the verdict document (§13.1). ``evm_rpc``: the node EVM receipts are checked
    on, by :func:`verify_bundle` and by ``coldtrace verify --evm-rpc`` (the bundle and
    trust file written to ``out``)."""
    with cloud.engine.begin() as conn:
        _, token = orgs.new_token(conn, None, "acme", ["read"])
    r = httpx.get(
        f"{cloud.url}/v1/traces/{uid.hex()}/bundle",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    trust_text = httpx.get(f"{cloud.url}/v1/trust", timeout=30).content
    rpc = None if evm_rpc is None else json_rpc(evm_rpc)
    report = verify_bundle(loads_bundle(r.content), loads_trust(trust_text), rpc=rpc)
    assert report.verified, [(f.code, f.message) for f in report.failures]
    if evm_rpc is not None:
        assert out is not None
        out.mkdir(parents=True, exist_ok=True)
        (out / "cloud-bundle.json").write_bytes(r.content)
        (out / "cloud-trust.json").write_bytes(trust_text)
        args = ["verify", str(out / "cloud-bundle.json"), "--trust", str(out / "cloud-trust.json")]
        assert coldtrace([*args, "--evm-rpc", evm_rpc]) == 0
    return report.verdict_document()


def finish_trace(
    s: Scenario, cloud: CloudServer, tmp: Path, *, evm_rpc: str | None = None
) -> dict[str, Any]:
    """Restate the open chains (``coldtrace gateway trace``, §4.2), wait until the cloud
    holds them, return the cloud's verdict."""
    assert s.trace(tmp / "gateway-bundle.json", UID.hex()) == 0
    wait_for(lambda: caught_up(s.env, cloud), 60, "the restatements pushed")
    return cloud_verdict(cloud, evm_rpc=evm_rpc, out=tmp)


_reference: dict[str, Any] = {}


def reference_verdict(
    make_broker: Callable[..., Any], make_gateway: Callable[..., Any], tmp: Path
) -> dict[str, Any]:
    """The verdict of the scenario run undisturbed through a gateway and a cloud (once
    per process)."""
    if "doc" not in _reference:
        s = Scenario(make_broker, make_gateway)
        cloud = CloudServer(tmp / "reference-cloud")
        cloud.join("acme", s.env.cfg)
        with_cloud(s.env, cloud.url)
        cloud.start()
        gw = s.env.start_gateway()
        try:
            s.env.connect(*scenario_devices(s))
            s.run_day()
            wait_for(lambda: caught_up(s.env, cloud), 60, "the reference pushed")
            doc = finish_trace(s, cloud, tmp)
        finally:
            gw.stop()
            cloud.stop()
        _reference["doc"] = verdict_shape(doc, s.t0)
    return _reference["doc"]  # type: ignore[no-any-return]
