"""One item's trace across three organisations' logs, assembled by the cloud from what
the gateways pushed (docs/cloud.md §4), on SQLite and a real PostgreSQL.

The packhouse commissions the pallet in its cold room; the carrier loads it onto its
truck; the distribution centre unloads and receives it. Each organisation has its own
registry (scoped), its own log and its own loggers; the tag carries custody links
across all three."""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import pytest

from protocol.bundle import loads_bundle
from protocol.trust import loads_trust
from protocol.verify import verify_bundle
from tests.cloud.cloudkit import Kit, LogPusher, make_kit
from tests.protocol.scenario import COMMISSION, GTIN, ITEM, LOAD, RECEIVE, T0, UID, UNLOAD, Scenario

H = 3600


@pytest.fixture(params=["sqlite", "postgresql"])
def kit(request: pytest.FixtureRequest, tmp_path) -> Kit:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    return make_kit(tmp_path, url)


@dataclass
class Chain:
    packhouse: Scenario
    carrier: Scenario
    dc: Scenario
    tokens: dict[str, str]


def three_orgs(kit: Kit, truck_temp=lambda t: 300) -> Chain:
    ph = Scenario(registry_id="reg-packhouse", origin="packhouse.example/gw")
    cr = Scenario(registry_id="reg-carrier", origin="carrier.example/gw")
    dc = Scenario(registry_id="reg-dc", origin="dc.example/gw")
    cr.tags = dc.tags = ph.tags  # one physical tag, read by every organisation's readers
    tokens = {
        "packhouse": kit.join(
            "packhouse", ph, devices=["ph-*"], places=["packhouse:*"], gtins=[GTIN[:13] + "*"]
        ),
        "carrier": kit.join("carrier", cr, devices=["cr-*"], places=["fleet:*"], gtins=[]),
        "dc": kit.join("dc", dc, devices=["dc-*"], places=["dc:*"], gtins=[]),
    }
    ph.profile(GTIN, T0, low=0, high=500, delay=1800, gap=1800)
    cold = ph.logger("ph-cold")
    ph.bind("packhouse:cold", ["ph-cold"], T0)
    ph_rd = ph.reader("ph-rd", "packhouse:cold")
    truck = cr.logger("cr-truck")
    cr.bind("fleet:truck-1", ["cr-truck"], T0)
    cr_rd = cr.reader("cr-rd", "packhouse:dock")
    room = dc.logger("dc-cold")
    dc.bind("dc:dock", ["dc-cold"], T0)
    dc_rd = dc.reader("dc-rd", "dc:dock")

    ph.scan(ph_rd, COMMISSION, T0 + 60, item=ITEM)
    ph.readings(cold, T0, T0 + 3 * H, 300, lambda t: 200)
    cr.scan(cr_rd, LOAD, T0 + 2 * H, ref="fleet:truck-1")
    cr.readings(truck, T0, T0 + 8 * H, 300, truck_temp)
    dc.scan(dc_rd, UNLOAD, T0 + 7 * H)
    dc.readings(room, T0, T0 + 10 * H, 300, lambda t: 250)
    dc.scan(dc_rd, RECEIVE, T0 + 7 * H + 60)
    # the registries restate their chains after the journey (§4.2)
    ph.profile(GTIN, T0 + 10 * H, low=0, high=500, delay=1800, gap=1800)
    ph.bind("packhouse:cold", ["ph-cold"], T0 + 10 * H)
    cr.bind("fleet:truck-1", ["cr-truck"], T0 + 10 * H)
    dc.bind("dc:dock", ["dc-cold"], T0 + 10 * H)
    return Chain(ph, cr, dc, tokens)


def _push(kit: Kit, *scenarios: Scenario) -> None:
    for s in scenarios:
        r = LogPusher(kit, s).push(anchor_it=True)
        assert r.status_code == 200, r.text


def _get(kit: Kit, path: str, token: str, headers: dict[str, str] | None = None, **kw):
    return kit.client.get(
        path, headers={"Authorization": f"Bearer {token}", **(headers or {})}, **kw
    )


def test_custody_across_three_logs_and_the_verdict(kit: Kit) -> None:
    c = three_orgs(kit)
    _push(kit, c.packhouse, c.carrier, c.dc)
    r = _get(kit, f"/v1/traces/{UID.hex()}", c.tokens["dc"])
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["verified"], t["failures"]
    assert t["verdict"]["verdict"] == "PASS", t["verdict"]
    assert [leg["organisation"] for leg in t["legs"]] == ["packhouse", "carrier", "dc", "dc"]
    assert [m["device"] for m in t["legs"][1]["monitors"]] == ["cr-truck"]
    assert {lg["log"] for lg in t["logs"]} == {
        "packhouse.example/gw",
        "carrier.example/gw",
        "dc.example/gw",
    }
    assert t["awaiting"] == []
    assert t["bundle"]["ratio"] <= 1.5, t["bundle"]

    # the bundle verifies offline against the cloud's trust file with a witness quorum of 1
    b = _get(kit, t["bundle_url"], c.tokens["dc"])
    assert b.status_code == 200 and b.headers["etag"]
    trust = loads_trust(kit.client.get("/v1/trust").content)
    assert trust.quorum == 1 and len(trust.witnesses) == 1
    report = verify_bundle(loads_bundle(b.content), trust)
    assert report.verified and report.verdict_document()["verdict"] == "PASS"
    # conditional request and gzip
    again = _get(kit, t["bundle_url"], c.tokens["dc"], headers={"If-None-Match": b.headers["etag"]})
    assert again.status_code == 304
    raw = kit.client.get(
        t["bundle_url"],
        headers={"Authorization": f"Bearer {c.tokens['dc']}", "Accept-Encoding": "gzip"},
    )
    assert raw.headers.get("content-encoding") == "gzip"
    assert loads_bundle(raw.content).subject.uid == UID  # compressed once, not twice
    # the same evidence gives the same bytes: the ETag survives a rebuild
    kit.client.app.state.traces._cache.clear()  # type: ignore[attr-defined]
    rebuilt = _get(kit, t["bundle_url"], c.tokens["dc"])
    assert rebuilt.headers["etag"] == b.headers["etag"] and rebuilt.content == b.content
    assert len(gzip.compress(b.content)) < len(b.content)


def test_a_warm_truck_fails_across_organisations(kit: Kit) -> None:
    c = three_orgs(kit, truck_temp=lambda t: 900 if T0 + 3 * H <= t <= T0 + 5 * H else 300)
    _push(kit, c.packhouse, c.carrier, c.dc)
    t = _get(kit, f"/v1/traces/{UID.hex()}", c.tokens["packhouse"]).json()
    assert t["verdict"]["verdict"] == "FAIL"
    assert "excursion" in {x["code"] for x in t["verdict"]["reasons"]}


def test_a_log_not_yet_received_makes_the_trace_incomplete_and_is_named(kit: Kit) -> None:
    c = three_orgs(kit)
    _push(kit, c.packhouse, c.dc)  # the carrier's gateway has not pushed
    t = _get(kit, f"/v1/traces/{UID.hex()}", c.tokens["dc"]).json()
    assert t["verdict"]["verdict"] == "INCOMPLETE"
    assert "carrier.example/gw" in {a["log"] for a in t["awaiting"]}
    _push(kit, c.carrier)
    t = _get(kit, f"/v1/traces/{UID.hex()}", c.tokens["dc"]).json()
    assert t["verdict"]["verdict"] == "PASS" and t["awaiting"] == []


def test_find_by_digital_link_lot_and_serial(kit: Kit) -> None:
    c = three_orgs(kit)
    _push(kit, c.packhouse, c.carrier, c.dc)
    tok = c.tokens["carrier"]
    by_dl = _get(kit, "/v1/traces", tok, params={"dl": "https://id.example" + ITEM}).json()
    assert by_dl[0]["uid"] == UID.hex()
    assert _get(kit, "/v1/traces", tok, params={"lot": "L42"}).json()[0]["uid"] == UID.hex()
    assert _get(kit, "/v1/traces", tok, params={"serial": "7"}).json()[0]["item"] == ITEM
    assert _get(kit, "/v1/traces", tok, params={"lot": "nope"}).json() == []


def test_another_organisation_cannot_read_the_trace(kit: Kit) -> None:
    c = three_orgs(kit)
    _push(kit, c.packhouse, c.carrier, c.dc)
    other = Scenario(registry_id="reg-other", origin="other.example/gw")
    stranger = kit.join("other", other, devices=["xx-*"], places=["xx:*"], gtins=[])
    for path in (
        f"/v1/traces/{UID.hex()}",
        f"/v1/traces/{UID.hex()}/bundle",
        f"/v1/traces/{UID.hex()}/export/epcis",
    ):
        r = _get(kit, path, stranger)
        assert r.status_code == 404, (path, r.text)
    assert _get(kit, "/v1/traces", stranger, params={"lot": "L42"}).json() == []
    assert _get(kit, f"/v1/logs/{c.packhouse.origin}/records", stranger).status_code == 404


def test_exports_through_the_api(kit: Kit) -> None:
    c = three_orgs(kit)
    _push(kit, c.packhouse, c.carrier, c.dc)
    tok = c.tokens["dc"]
    e = _get(kit, f"/v1/traces/{UID.hex()}/export/epcis", tok)
    assert e.status_code == 200 and e.headers["content-type"].startswith("application/ld+json")
    assert "TransactionEvent" in e.text or "ObjectEvent" in e.text
    f = _get(kit, f"/v1/traces/{UID.hex()}/export/fsma", tok, params={"format": "xlsx"})
    assert f.status_code == 200 and f.content[:2] == b"PK"
    bad = _get(kit, f"/v1/traces/{UID.hex()}/export/fsma", tok, params={"from": "yesterday"})
    assert bad.status_code == 422


def test_the_public_trace_by_digital_link(kit: Kit) -> None:
    c = three_orgs(kit)
    _push(kit, c.packhouse, c.carrier, c.dc)
    r = kit.client.get("/v1/public/trace", params={"dl": ITEM})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"]["verdict"] == "PASS"
    assert set(body) == {"item", "verified", "verdict", "legs", "awaiting", "bundle_url"}
    b = kit.client.get("/v1/public/bundle", params={"dl": ITEM})
    assert b.status_code == 200 and loads_bundle(b.content).subject.uid == UID
    assert (
        kit.client.get("/v1/public/trace", params={"dl": "/01/00000000000000"}).status_code == 404
    )


def test_a_push_rebuilds_the_traces_people_look_at(kit: Kit) -> None:
    import time as _time

    c = three_orgs(kit)
    _push(kit, c.packhouse, c.dc)
    first = _get(kit, f"/v1/traces/{UID.hex()}", c.tokens["dc"]).json()
    assert first["verdict"]["verdict"] == "INCOMPLETE"
    svc = kit.client.app.state.traces  # type: ignore[attr-defined]
    _push(kit, c.carrier)  # the awaited log arrives: the trace is rebuilt in the background
    deadline = _time.monotonic() + 30
    while svc.refreshed < 1:
        assert _time.monotonic() < deadline, "no background rebuild"
        _time.sleep(0.05)
    before = len(svc._cache)
    t = _get(kit, f"/v1/traces/{UID.hex()}", c.tokens["dc"]).json()
    assert t["verdict"]["verdict"] == "PASS"
    assert len(svc._cache) == before  # served from what the rebuild made
