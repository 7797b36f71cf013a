"""The split-view defence (docs/cloud.md §3): a gateway that shows one log to the cloud
and another to a party cannot get the second witnessed, and a verifier that requires the
cloud's cosignature refuses it."""

from __future__ import annotations

import json

from protocol.bundle import loads_bundle
from protocol.checkpoint import cosign_checkpoint
from protocol.keys import b64e
from protocol.trust import loads_trust
from protocol.verify import verify_bundle
from tests.cloud.cloudkit import LogPusher, make_kit
from tests.cloud.test_traces import three_orgs
from tests.protocol.scenario import LEDGER, T0, UID, Scenario


def _trust_with_gateway_ledger(kit, s: Scenario, extra_witnesses=(), quorum=None) -> bytes:
    """The cloud's trust file, plus the gateway's own ledger (the party pins it too: it
    proves nothing the gateway could not make up) and any other witnesses."""
    doc = kit.client.get("/v1/trust").json()
    doc["ledgers"].append(
        {"type": "local", "id": LEDGER, "key": b64e(s.ledger.public_key().public_bytes_raw())}
    )
    doc["witnesses"] += [{"vkey": w.vkey} for w in extra_witnesses]
    if quorum is not None:
        doc["quorum"] = quorum
    return json.dumps(doc).encode()


def test_a_second_history_is_refused_for_want_of_the_witness(tmp_path) -> None:
    kit = make_kit(tmp_path)
    c = three_orgs(kit)
    for s in (c.packhouse, c.carrier, c.dc):
        assert LogPusher(kit, s).push(anchor_it=True).status_code == 200

    # the honest view: the cloud's bundle verifies with the cloud witness required
    honest = kit.client.get(
        f"/v1/traces/{UID.hex()}/bundle", headers={"Authorization": f"Bearer {c.tokens['dc']}"}
    )
    trust = loads_trust(_trust_with_gateway_ledger(kit, c.carrier))
    assert trust.quorum == 1
    assert verify_bundle(loads_bundle(honest.content), trust).verified

    # the carrier shows a party another log: the warm hours of its truck left out and
    # the log re-signed - a consistent-looking log of its own, under its own key
    warm = Scenario(registry_id="reg-carrier", origin="carrier.example/gw")
    warm.tags = c.carrier.tags
    other = [r for i, r in enumerate(c.carrier.records) if i % 7 != 5]
    split = warm.bundle(records=other, uid=UID)
    report = verify_bundle(split, trust)
    assert not report.verified
    assert "insufficient_cosignatures" in {f.code for f in report.failures}

    # the carrier's own witness key, registered with the cloud as a peer witness, cosigns
    # its second history: the trust file the cloud serves does not count it (D23)
    own = c.carrier.witness("carrier.example/witness")
    kit.admin("POST", "/v1/orgs/carrier/witnesses", json={"vkey": own.vkey})
    self_vouched = loads_bundle(split.dumps())
    self_vouched.checkpoints = [cosign_checkpoint(n, own, T0) for n in split.checkpoints]
    served_trust = loads_trust(_trust_with_gateway_ledger(kit, c.carrier))
    assert own.vkey not in [w.vkey for w in served_trust.witnesses]
    report = verify_bundle(self_vouched, served_trust)
    assert "insufficient_cosignatures" in {f.code for f in report.failures}

    # without the quorum the same bundle verifies: the witness is what catches it
    lax = loads_trust(_trust_with_gateway_ledger(kit, c.carrier, quorum=0))
    assert verify_bundle(split, lax).verified

    # the carrier tries to get the other log witnessed: the cloud sees a fork
    p = LogPusher(kit, warm)
    warm.records = other
    r = p.send(p.batch())
    assert r.status_code == 409 and r.json()["error"] == "log_forked"
    status = kit.client.get(f"/v1/logs/{warm.origin}").json()
    assert status["frozen"]
    # a peer witness that fetches what the cloud serves cosigns the cloud's view only
    peer = c.dc.witness("dc.example/witness")
    kit.admin("POST", "/v1/orgs/dc/witnesses", json={"vkey": peer.vkey})
    served = kit.client.get(f"/v1/logs/{warm.origin}/checkpoint").text
    assert (
        kit.client.post(
            f"/v1/logs/{warm.origin}/cosignatures",
            json={"note": cosign_checkpoint(served, peer, T0)},
        ).status_code
        == 200
    )
    forked_note = split.checkpoints[-1]
    r = kit.client.post(
        f"/v1/logs/{warm.origin}/cosignatures",
        json={"note": cosign_checkpoint(forked_note, peer, T0)},
    )
    assert r.status_code == 409  # the cloud holds no such checkpoint: nothing stored
    both = loads_trust(_trust_with_gateway_ledger(kit, c.carrier, [peer], quorum=2))
    assert len(both.witnesses) == 2
    assert not verify_bundle(split, both).verified
