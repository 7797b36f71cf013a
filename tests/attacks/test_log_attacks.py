"""Attacks on the log and its checkpoints (docs/protocol.md §6-§8, §11 steps 2-5; docs/cloud.md
§3): forged checkpoints, a gateway that rewrites its log, and a split view shown to two
parties. A rewrite must be caught three ways - by the consistency check of whoever holds an
earlier checkpoint, by the witnesses (the cloud, and a peer gateway's gateway/witness.py),
and by the anchor - and a split view by the verifier, the cloud and a peer witness.

The log is the verdict vectors' day (tests/protocol/vectors/make_verdict_vectors.py); the
cloud is the real service on SQLite (tests/cloud/cloudkit.py); the peer witness is the
gateway's own :class:`gateway.witness.Witness` on a real gateway store.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.config import GatewayConfig, Peer, PushConfig, WitnessConfig
from gateway.evidence.store import open_store
from gateway.witness import Witness
from protocol import errors
from protocol.anchor import EvmReceipt, verify_evm_receipt
from protocol.bundle import ConsistencyProof
from protocol.checkpoint import (
    Checkpoint,
    checkpoint_hash,
    cosign_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from protocol.keys import b64e
from protocol.merkle import MerkleTree
from protocol.note import NoteSigner, parse_note
from protocol.record import Reading, open_record
from tests.attacks.outcome import outcome, outcomes
from tests.attacks.registry import attack
from tests.cloud import cloudkit
from tests.cloud.cloudkit import Kit, LogPusher, make_kit
from tests.protocol import test_anchor
from tests.protocol.scenario import ITEM, LEDGER, Scenario
from tests.protocol.vectors.make_verdict_vectors import TRUCK, Day, build_day

GROUP = "log and ledger"


def day() -> Day:
    return build_day(deterministic=False)


def tree(records: list[bytes]) -> MerkleTree:
    t = MerkleTree()
    for raw in records:
        t.append(raw)
    return t


def note(s: Scenario, records: list[bytes], size: int, signer: NoteSigner | None = None) -> str:
    """The checkpoint of the first ``size`` of ``records``, signed by the log key."""
    cp = Checkpoint(s.origin, size, tree(records).root(size))
    return sign_checkpoint(cp, signer or s.log)


def body_of(text: str) -> str:
    return parse_note(text).body


def truck_reading(d: Day, below: int) -> int:
    """The index of a truck logger's reading in the log, below ``below``."""
    dev = d.loggers[TRUCK].id
    return max(
        i
        for i, raw in enumerate(d.s.records[:below])
        if open_record(raw).signer == dev and isinstance(open_record(raw).payload, Reading)
    )


def removed(records: list[bytes], k: int) -> list[bytes]:
    """The log rewritten: record ``k`` taken out (say, a warm reading)."""
    return records[:k] + records[k + 1 :]


def swapped(records: list[bytes], k: int) -> list[bytes]:
    """Another history of the same size: records ``k`` and ``k + 1`` in the other order."""
    out = list(records)
    out[k], out[k + 1] = out[k + 1], out[k]
    return out


_STORES: list[Any] = []  # the peer witnesses' stores, closed after the test


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    yield make_kit(tmp_path)
    while _STORES:
        _STORES.pop().close()
    while cloudkit.OPEN:
        cloudkit.OPEN.pop().dispose()


# --- forged checkpoints -------------------------------------------------------------------------


@attack(
    "checkpoint-wrong-key",
    group=GROUP,
    attacker="anyone (a gateway impostor)",
    tries="signs a checkpoint of the log's origin with a key of its own",
    refused_by="`unknown_log_key`: not verified",
    recorded="the report's failures (check `checkpoint.signature`)",
)
def test_a_checkpoint_under_another_key_is_unknown_log_key():
    d = day()
    b = d.s.bundle(item=ITEM)
    impostor = NoteSigner(d.s.origin, ed25519.Ed25519PrivateKey.generate())
    b.checkpoints = [sign_checkpoint(parse_checkpoint(body_of(b.checkpoints[0])), impostor)]
    out = outcome(b, d.s.trust_doc())
    # without the checkpoint its anchor and the records' proofs have nothing to stand on
    assert "unknown_log_key" in out.failures and out.verdict is None
    assert out.failures == {"unknown_log_key", "bad_anchor", "missing_proof"}
    assert out.checks["unknown_log_key"] == {"checkpoint.signature"}


@attack(
    "checkpoint-altered",
    group=GROUP,
    attacker="bundle holder, or anyone relaying a checkpoint",
    tries="changes a signed checkpoint's root or size; or puts its own signature on the "
    "line of the pinned log key (its name and key id)",
    refused_by="`bad_checkpoint`: not verified",
    recorded="the report's failures (check `checkpoint.signature`)",
)
@pytest.mark.parametrize("edit", ["root", "size", "signature"])
def test_an_altered_checkpoint_is_bad_checkpoint(edit):
    d = day()
    b = d.s.bundle(item=ITEM)
    text = b.checkpoints[0]
    cp = parse_checkpoint(body_of(text))
    if edit == "root":
        root = base64.b64encode(cp.root_hash).decode()
        other = base64.b64encode(hashlib.sha256(b"another root").digest()).decode()
        text = text.replace(root, other)
    elif edit == "size":
        text = text.replace(f"\n{cp.size}\n", f"\n{cp.size - 1}\n", 1)
    else:
        line = parse_note(text).signatures[0]
        forged = ed25519.Ed25519PrivateKey.generate().sign(body_of(text).encode())
        sig = base64.b64encode(line.key_id.to_bytes(4, "big") + forged).decode()
        text = text.replace(
            base64.b64encode(line.key_id.to_bytes(4, "big") + line.sig).decode(), sig
        )
    assert text != b.checkpoints[0]
    b.checkpoints = [text]
    out = outcome(b, d.s.trust_doc())
    assert "bad_checkpoint" in out.failures and out.verdict is None
    assert out.failures == {"bad_checkpoint", "bad_anchor", "missing_proof"}
    assert out.checks["bad_checkpoint"] == {"checkpoint.signature"}


@attack(
    "cosignature-unknown-witness",
    group=GROUP,
    attacker="gateway operator (with a witness of its own)",
    tries="meets the trust file's witness quorum with a cosignature from a witness the "
    "trust file does not pin, or forges the pinned witness's line with another key",
    refused_by="`insufficient_cosignatures`; the forged line `bad_checkpoint`",
    recorded="the report's failures (check `checkpoint.cosignatures`), with the count",
)
def test_a_cosignature_from_an_unknown_witness_does_not_count():
    d = day()
    pinned = d.s.witness("cloud.example/witness")
    own = d.s.witness("gateway.example/witness")
    trust = d.s.trust_doc(witnesses=[pinned], quorum=1)
    assert outcome(d.s.bundle(item=ITEM, witnesses=[pinned]), trust).verdict == "PASS"
    unknown = d.s.bundle(item=ITEM, witnesses=[own])
    # the pinned witness's name and key id, the attacker's key
    impostor = d.s.witness("gateway.example/witness")
    impostor.name, impostor.key_id = pinned.name, pinned.key_id
    forged = d.s.bundle(item=ITEM, witnesses=[impostor])
    out_unknown, out_forged = outcomes([(unknown, trust), (forged, trust)])
    assert "insufficient_cosignatures" in out_unknown.failures
    assert out_unknown.failures <= {"insufficient_cosignatures", "missing_proof", "bad_anchor"}
    assert any("0 cosignature(s)" in m for m in out_unknown.messages["insufficient_cosignatures"])
    assert out_unknown.checks["insufficient_cosignatures"] == {"checkpoint.cosignatures"}
    assert "bad_checkpoint" in out_forged.failures and out_forged.verdict is None


# --- a gateway rewrites its log -------------------------------------------------------------------


@attack(
    "log-rewrite-consistency",
    group=GROUP,
    attacker="gateway operator",
    tries="rewrites its log (takes a logged reading out) and shows a later checkpoint to a "
    "party that holds an earlier one; with or without re-signing the earlier size",
    refused_by="`inconsistent_checkpoints` (no consistency proof verifies; two roots for one "
    "size are a fork)",
    recorded="the report's failures (check `checkpoint.consistency`)",
)
def test_a_rewritten_log_is_inconsistent_with_a_checkpoint_held_before():
    d = day()
    honest = list(d.s.records)
    m = len(honest) // 2
    held = note(d.s, honest, m)  # what the verifier kept from an earlier bundle
    k = truck_reading(d, m)
    other = removed(honest, k)
    n = len(other)
    cases = []
    # 1. the new checkpoint, with the best proof the rewritten tree gives from size m
    b = d.s.bundle(item=ITEM, records=other)
    b.checkpoints.append(held)
    path = tuple(tree(other).consistency_proof(m, n))
    b.consistency.append(ConsistencyProof(d.s.origin, m, n, path))
    cases.append((b, d.s.trust_doc()))
    # 2. the gateway re-signs size m of the rewritten log as well, with a proof that verifies
    b2 = d.s.bundle(item=ITEM, records=other, sizes=[m])
    b2.checkpoints.append(held)
    cases.append((b2, d.s.trust_doc()))
    for out in outcomes(cases):
        assert "inconsistent_checkpoints" in out.failures and out.verdict is None
        # the held checkpoint is then covered by no anchor either
        assert out.failures <= {"inconsistent_checkpoints", "unanchored_checkpoint"}
        assert out.checks["inconsistent_checkpoints"] == {"checkpoint.consistency"}


@attack(
    "log-rewrite-anchor",
    group=GROUP,
    attacker="gateway operator",
    tries="rewrites its log (same size, two records reordered) after the checkpoint was "
    "anchored: shows the new checkpoint with the ledger's receipt, or re-signs its local "
    "ledger's entry for it",
    refused_by="`bad_anchor`: the ledger's receipt holds the first checkpoint's hash; a "
    "re-signed local ledger entry does not unmake the first receipt whoever kept it shows",
    recorded="the report's failures (check `anchor`)",
)
def test_a_rewritten_log_does_not_match_its_anchor():
    d = day()
    honest_b = d.s.bundle(item=ITEM)
    other = swapped(list(d.s.records), truck_reading(d, len(d.s.records) // 2))
    # 1. the receipt on the ledger, for the honest checkpoint of the same size
    shown = d.s.bundle(item=ITEM, records=other)
    assert shown.anchors[0].receipt != honest_b.anchors[0].receipt
    with_ledgers = d.s.bundle(item=ITEM, records=other)
    shown.anchors = list(honest_b.anchors)
    # 2. the gateway re-signs entry 0 of its local ledger for the new checkpoint; whoever
    # kept the first receipt of that entry shows both
    with_ledgers.anchors = [*with_ledgers.anchors, *honest_b.anchors]
    first, both = outcomes([(shown, d.s.trust_doc()), (with_ledgers, d.s.trust_doc())])
    for out in (first, both):
        assert "bad_anchor" in out.failures and out.verdict is None
        assert out.failures <= {"bad_anchor", "unanchored_checkpoint", "missing_proof"}
    assert first.checks["bad_anchor"] == {"anchor"}
    assert both.checks["bad_anchor"] == {"anchor"}  # the first receipt, against the new root


@attack(
    "log-rewrite-evm-anchor",
    group=GROUP,
    attacker="gateway operator",
    tries="after a rewrite, claims its EVM anchor transaction for the new checkpoint",
    refused_by="`bad_anchor`: the `Anchored` event holds the first root and checkpoint hash",
    recorded="the report's failures (check `anchor`)",
)
def test_a_rewritten_checkpoint_does_not_match_the_evm_event():
    """The same on an EVM ledger (the event's fields against a JSON-RPC node, faked as in
    tests/protocol/test_anchor.py): the chain's event holds the first root."""
    cp = test_anchor.CP
    rewritten = Checkpoint(cp.origin, cp.size, hashlib.sha256(b"the rewritten root").digest())
    receipt = EvmReceipt.from_json(
        {
            "type": "evm",
            "chain_id": 31337,
            "contract": test_anchor.CONTRACT,
            "tx_hash": test_anchor.TX,
            "block_number": 42,
            "block_hash": test_anchor.BLOCK,
            "log_index": 0,
            "checkpoint_hash": checkpoint_hash(rewritten).hex(),
            "confirmations": 12,
        }
    )
    with pytest.raises(errors.AnchorError) as caught:
        verify_evm_receipt(receipt, rewritten, test_anchor.FakeNode())
    assert caught.value.code == "bad_anchor"


def _witness(tmp: Path, s: Scenario, client: Any) -> Witness:
    """A peer gateway's witness of ``s``'s log, on a real gateway store, talking to
    ``client`` (an httpx client: the cloud kit's) as its cloud."""
    cfg = GatewayConfig(
        data_dir=tmp / "peer",
        cloud=PushConfig(url="http://testserver"),
        witness=WitnessConfig(
            name="peer.example/witness",
            key_file=tmp / "peer" / "witness.key",
            peers=[Peer(s.origin, s.log.vkey)],
        ),
    )
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    alerts: list[tuple[str, str]] = []
    store = open_store(cfg)
    _STORES.append(store)
    w = Witness(cfg, store, alert=lambda kind, msg: alerts.append((kind, msg)), client=client)
    w.alerts = alerts  # type: ignore[attr-defined]
    return w


def _fake_cloud(s: Scenario, records: list[bytes], size: int) -> httpx.MockTransport:
    """What a gateway that controls the witness's view of the cloud serves: its own
    checkpoint of ``records`` at ``size`` and consistency proofs from its own tree."""
    t = tree(records)
    text = note(s, records, size)

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/checkpoint"):
            return httpx.Response(200, text=text)
        if path.endswith("/consistency"):
            old, new = int(request.url.params["old"]), int(request.url.params["new"])
            return httpx.Response(
                200, json={"path": [b64e(h) for h in t.consistency_proof(old, new)]}
            )
        return httpx.Response(200, json={"stored": []})

    return httpx.MockTransport(handle)


@attack(
    "log-rewrite-witnesses",
    group=GROUP,
    attacker="gateway operator",
    tries="gets a rewritten log (a logged reading taken out) witnessed: pushes it to the "
    "cloud, and shows it to a peer gateway's witness that cosigned the first history",
    refused_by="cloud: HTTP 409 `log_forked` (the log is frozen); peer: not cosigned "
    "(`inconsistent`); a verifier's quorum then: `insufficient_cosignatures`",
    recorded="cloud: `alarms` (`log_forked`) and `rejected`; peer: alert "
    "`witness_inconsistent`, the state it witnessed kept",
)
def test_witnesses_refuse_to_cosign_a_rewritten_log(kit, tmp_path):
    d = day()
    s = d.s
    kit.join("acme", s)
    honest = list(s.records)
    m = len(honest) // 2
    pusher = LogPusher(kit, s)
    assert pusher.push(upto=m, anchor_it=True).status_code == 200
    # a peer gateway witnesses the first history through the cloud
    peer = _witness(tmp_path, s, kit.client)
    kit.admin("POST", "/v1/orgs/acme/witnesses", json={"vkey": peer.signer.vkey})
    assert peer.round() == {s.origin: "cosigned"}
    seen = peer.state(s.origin)
    # the rewrite: a reading before size m taken out, the rest pushed again from index 0
    other = removed(honest, truck_reading(d, m))
    s.records = other
    pusher.pushed, pusher.tree = 0, MerkleTree()  # the gateway's whole log, again
    r = pusher.send(pusher.batch())
    assert r.status_code == 409 and r.json()["error"] == "log_forked"
    assert kit.client.get(f"/v1/logs/{s.origin}").json()["frozen"]
    alarms = kit.admin("GET", "/v1/alarms")
    assert [a["kind"] for a in alarms] == ["log_forked"]
    # the peer, shown the rewritten log by an endpoint the gateway controls
    peer.http = httpx.Client(transport=_fake_cloud(s, other, len(other)))
    (outcome_,) = peer.round().values()
    assert outcome_.startswith("inconsistent"), outcome_
    assert peer.state(s.origin) == seen and peer.stats.cosigned == 1
    assert [k for k, _ in peer.alerts] == ["witness_inconsistent"]  # type: ignore[attr-defined]
    # without those cosignatures, the rewritten log falls short of the cloud's quorum
    trust = kit.client.get("/v1/trust").json()
    trust["ledgers"].append(
        {"type": "local", "id": LEDGER, "key": b64e(s.ledger.public_key().public_bytes_raw())}
    )
    assert trust["quorum"] >= 1
    out = outcome(s.bundle(item=ITEM, records=other), trust)
    assert "insufficient_cosignatures" in out.failures and out.verdict is None


# --- a split view ---------------------------------------------------------------------------------


@attack(
    "log-split-view",
    group=GROUP,
    attacker="gateway operator",
    tries="shows two parties two histories of one size (two records in another order), "
    "both signed by the log key",
    refused_by="verifier: `inconsistent_checkpoints` (a fork) when both meet, else "
    "`insufficient_cosignatures` for the view the cloud never held; cloud: HTTP 409 "
    "`log_forked`; peer witness: not cosigned (`different roots`)",
    recorded="the report's failures; cloud `alarms` (`log_forked`), the log frozen; the "
    "peer's alert `witness_inconsistent`",
)
def test_a_split_view_is_reported_by_verifier_cloud_and_witness(kit, tmp_path):
    d = day()
    s = d.s
    honest = list(s.records)
    n = len(honest)
    view_b = swapped(honest, truck_reading(d, n // 2))
    # the verifier, shown both (two bundles' checkpoints meet in one)
    both = s.bundle(item=ITEM)
    both.checkpoints.append(note(s, view_b, n))
    out = outcome(both, s.trust_doc())
    assert "inconsistent_checkpoints" in out.failures and out.verdict is None
    assert any("fork" in msg for msg in out.messages["inconsistent_checkpoints"])
    # the cloud holds view A and cosigns it; view B is pushed as the same log
    kit.join("acme", s)
    pusher = LogPusher(kit, s)
    assert pusher.push(anchor_it=True).status_code == 200
    peer = _witness(tmp_path, s, kit.client)
    kit.admin("POST", "/v1/orgs/acme/witnesses", json={"vkey": peer.signer.vkey})
    assert peer.round() == {s.origin: "cosigned"}
    s.records = view_b
    pusher.pushed, pusher.tree = 0, MerkleTree()  # the gateway's whole log, again
    r = pusher.send(pusher.batch())
    assert r.status_code == 409 and r.json()["error"] == "log_forked"
    assert [a["kind"] for a in kit.admin("GET", "/v1/alarms")] == ["log_forked"]
    # the cloud does not take a cosignature of view B either
    r = kit.client.post(
        f"/v1/logs/{s.origin}/cosignatures",
        json={"note": cosign_checkpoint(note(s, view_b, n), peer.signer, 1_790_000_000)},
    )
    assert r.status_code == 409
    # the peer witness, served view B: two roots for one size
    peer.http = httpx.Client(transport=_fake_cloud(s, view_b, n))
    (said,) = peer.round().values()
    assert said.startswith("inconsistent") and "different roots" in said
    assert [k for k, _ in peer.alerts] == ["witness_inconsistent"]  # type: ignore[attr-defined]
    # the party shown view B alone, with the cloud's trust file: no quorum
    trust = kit.client.get("/v1/trust").json()
    trust["ledgers"].append(
        {"type": "local", "id": LEDGER, "key": b64e(s.ledger.public_key().public_bytes_raw())}
    )
    out = outcome(s.bundle(item=ITEM, records=view_b), trust)
    assert "insufficient_cosignatures" in out.failures and out.verdict is None
