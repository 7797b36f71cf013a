"""Gateways push, the cloud trusts nothing: every batch re-verified, stored whole or refused
whole with its reason, idempotent, and a forked log frozen (docs/cloud.md §2-§3).

Each test runs on SQLite and on a real PostgreSQL server (tests/pgserver.py)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from cloud import db
from protocol.checkpoint import Checkpoint, open_cosigned_checkpoint, sign_checkpoint
from protocol.note import NoteSigner, WitnessVerifier
from protocol.push import PushBatch
from tests.cloud.cloudkit import Kit, LogPusher, make_kit
from tests.protocol.scenario import COMMISSION, ITEM, T0, Scenario


@pytest.fixture(params=["sqlite", "postgresql"])
def kit(request: pytest.FixtureRequest, tmp_path) -> Kit:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    return make_kit(tmp_path, url)


def _day(s: Scenario) -> None:
    s.profile("09506000134352", T0, low=0, high=400, delay=1800, gap=1800)
    truck = s.logger("tl-truck")
    s.bind("fleet:truck-1", ["tl-truck"], T0)
    dock = s.reader("rd-dock", "dc:dock")
    s.scan(dock, COMMISSION, T0 + 60, item=ITEM)
    s.readings(truck, T0, T0 + 3600, 300, lambda t: 250)


def _count(kit: Kit, table) -> int:
    with kit.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_push_is_verified_stored_and_cosigned(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    _day(s)
    p = LogPusher(kit, s)
    r = p.push(10, anchor_it=True)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 10 and r.json()["size"] == 10
    r = p.push(anchor_it=True)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["size"] == len(s.records) and body["stored"] == len(s.records) - 10
    assert _count(kit, db.records) == len(s.records)
    # the cloud's cosignature verifies under its witness key
    witness = WitnessVerifier.from_vkey(kit.client.get("/healthz").json()["witness"])
    cp, cosigs = open_cosigned_checkpoint(body["checkpoint"], [s.log.verifier()], [witness])
    assert cp.size == len(s.records) and len(cosigs) == 1
    status = kit.client.get(f"/v1/logs/{s.origin}").json()
    assert status["size"] == len(s.records) and not status["frozen"]


def test_a_batch_sent_twice_is_stored_once(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    _day(s)
    p = LogPusher(kit, s)
    b = p.batch()
    first = p.send(b)
    assert first.status_code == 200 and not first.json()["duplicate"]
    again = p.send(b)
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] and again.json()["stored"] == 0
    assert _count(kit, db.records) == len(s.records)
    assert _count(kit, db.checkpoints) == 1


def test_a_batch_past_the_cloud_size_is_refused_with_the_size_to_push_from(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    _day(s)
    p = LogPusher(kit, s)
    p.push(5)
    p.pushed = 8  # a gateway that lost track
    r = p.push()
    assert r.status_code == 409 and r.json()["error"] == "out_of_order"
    assert r.json()["expected_first"] == 5


def test_a_request_not_signed_by_the_log_key_is_refused_and_kept(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    _day(s)
    p = LogPusher(kit, s)
    r = p.send(p.batch(), signer=NoteSigner.generate(s.origin))
    assert r.status_code == 401 and r.json()["error"] == "bad_signature"
    assert _count(kit, db.records) == 0
    with kit.engine.connect() as conn:
        reasons = [row.reason for row in conn.execute(select(db.rejected.c.reason))]
    assert reasons == ["bad_signature"]


def test_an_edited_record_refuses_the_whole_batch(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    _day(s)
    raw = bytearray(s.records[-1])
    raw[-70] ^= 1  # inside the payload: the device's signature no longer holds
    s.records[-1] = bytes(raw)
    r = LogPusher(kit, s).push()
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "unverified_records"
    assert _count(kit, db.records) == 0
    assert kit.client.get(f"/v1/logs/{s.origin}").json()["size"] == 0


def test_records_of_an_unregistered_device_are_refused(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    _day(s)
    other = Scenario(registry_id="reg-other", origin="other.example/gw")
    stranger = other.logger("tl-stranger")
    s.add(other.records[-1])  # its registration is in another log the cloud never saw
    s.reading(stranger, T0 + 99, 300)
    s.records.pop(-2)
    r = LogPusher(kit, s).push()
    assert r.status_code == 422
    codes = {f["code"] for f in r.json()["failures"]}
    assert "unknown_key" in codes or "unknown_device" in codes, codes


def test_a_registry_outside_its_scope_is_refused(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s, places=["packhouse:*"])
    _day(s)  # binds fleet:truck-1: not the packhouse registry's place
    r = LogPusher(kit, s).push()
    assert r.status_code == 422
    assert "out_of_scope" in {f["code"] for f in r.json()["failures"]}


def test_a_log_that_signs_another_history_is_frozen_and_raises_an_alarm(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    _day(s)
    p = LogPusher(kit, s)
    assert p.push().status_code == 200
    n = len(s.records)
    # the gateway rewrites its log: record 3 replaced, everything re-signed
    fork = Scenario()
    _day(fork)
    fork.records[3], fork.records[4] = fork.records[4], fork.records[3]
    q = LogPusher(kit, fork)
    r = q.send(q.batch())
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "log_forked"
    status = kit.client.get(f"/v1/logs/{s.origin}").json()
    assert status["frozen"] and "index 3" in status["frozen_reason"]
    alarms = kit.client.get(
        "/v1/alarms", headers={"Authorization": f"Bearer {kit.operator}"}
    ).json()
    assert alarms and alarms[0]["kind"] == "log_forked"
    assert alarms[0]["detail"]["pushed"].startswith(s.origin)
    # nothing merged; the next honest push is refused while frozen
    assert _count(kit, db.records) == n
    s.reading(s.devices["tl-truck"], T0 + 7200, 250)
    r = p.push()
    assert r.status_code == 423 and r.json()["error"] == "log_frozen"


def test_two_checkpoints_of_one_size_with_different_roots_freeze_the_log(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    _day(s)
    p = LogPusher(kit, s)
    assert p.push().status_code == 200
    n = len(s.records)
    bad = sign_checkpoint(Checkpoint(s.origin, n, bytes(32)), s.log)
    r = p.send(PushBatch(n, [], bad))
    assert r.status_code == 409 and r.json()["error"] == "log_forked"
    assert kit.client.get(f"/v1/logs/{s.origin}").json()["frozen"]


def test_a_failing_consistency_proof_freezes_the_log(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    _day(s)
    p = LogPusher(kit, s)
    assert p.push(6).status_code == 200
    b = p.batch()
    b.consistency = (6, [bytes(32)] * 3)
    r = p.send(b)
    assert r.status_code == 409 and r.json()["error"] == "log_forked"


def test_garbage_is_a_clear_400_and_kept(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    p = LogPusher(kit, s)
    from protocol.push import auth_header

    for body in (b"{", b"[]", json.dumps({"format": "coldtrace-push", "version": 1}).encode()):
        path = f"/v1/logs/{s.origin}/push"
        r = kit.client.post(
            path, content=body, headers={"Authorization": auth_header(s.log, "POST", path, body)}
        )
        assert r.status_code == 400 and r.json()["error"] == "malformed_push", r.text
    assert _count(kit, db.rejected) == 3
    assert p.kit is kit


def test_peer_witness_cosignatures_are_stored_and_served(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    carrier = Scenario(registry_id="reg-carrier", origin="carrier.example/gw")
    kit.join("carrier", carrier, devices=["carrier-*"], places=["carrier:*"], gtins=[])
    peer = carrier.witness("carrier.example/witness")
    kit.admin("POST", "/v1/orgs/carrier/witnesses", json={"vkey": peer.vkey})
    _day(s)
    assert LogPusher(kit, s).push().status_code == 200
    note = kit.client.get(f"/v1/logs/{s.origin}/checkpoint").text
    from protocol.checkpoint import cosign_checkpoint

    mine = cosign_checkpoint(note, peer, T0)
    r = kit.client.post(f"/v1/logs/{s.origin}/cosignatures", json={"note": mine})
    assert r.status_code == 200, r.text
    served = kit.client.get(f"/v1/logs/{s.origin}/checkpoint").text
    trust = kit.client.get("/v1/trust").json()
    assert peer.vkey not in [w["vkey"] for w in trust["witnesses"]]  # D23: the cloud alone
    listed = kit.client.get("/v1/witnesses").json()
    assert [w["organisation"] for w in listed] == [None, "carrier"]
    witnesses = [WitnessVerifier.from_vkey(w["vkey"]) for w in listed]
    _, cosigs = open_cosigned_checkpoint(served, [s.log.verifier()], witnesses)
    assert len(cosigs) == 2
    # a cosignature by an unregistered key is refused
    stranger = carrier.witness("stranger.example/witness")
    r = kit.client.post(
        f"/v1/logs/{s.origin}/cosignatures", json={"note": cosign_checkpoint(note, stranger, T0)}
    )
    assert r.status_code == 422


def test_a_checkpoint_the_cloud_does_not_hold_is_a_404(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    r = kit.client.get(f"/v1/logs/{s.origin}/checkpoint")
    assert r.status_code == 404 and r.json()["error"] == "no_checkpoint"
    _day(s)
    assert LogPusher(kit, s).push().status_code == 200
    assert kit.client.get(f"/v1/logs/{s.origin}/checkpoint", params={"size": 3}).status_code == 404
    assert kit.client.get(f"/v1/logs/{s.origin}/checkpoint").status_code == 200
