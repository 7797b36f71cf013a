"""EPCIS events beyond one organisation's ObjectEvents: packing into a container
(AggregationEvent), handovers under a business reference between two organisations
(TransactionEvent with source and destination), SGLN places, humidity summaries."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from jsonschema import Draft7Validator

from cloud.exports import render
from cloud.exports.evidence import evidence_from_bytes
from protocol.bundle import loads_bundle
from protocol.keys import p256_private_from_scalar
from protocol.record import Reading, Registration, open_record
from tests.cloud.test_exports import ABSOLUTE_URI, _uris, make_validator
from tests.protocol.scenario import (
    COMMISSION,
    GTIN,
    ITEM,
    LOAD,
    RECEIVE,
    SHIP,
    T0,
    UNLOAD,
    Scenario,
    Signer,
    _scalar,
    without,
)

PACK, TRUCK = "pack:dock-1", "fleet:truck-1"
DC = "urn:epc:id:sgln:0614141.00777.0"  # an SGLN place id
PALLET = bytes.fromhex("04ffee0000000a")
SSCC = "urn:epc:id:sscc:0614141.1234567890"
DESADV = "DESADV 981/A"
ITEM_URI = "https://id.gs1.org" + ITEM
FARM, DCCO = "Acme Farms", "urn:epc:id:pgln:0614141.00001"


def _device(s: Scenario, device_id: str, role: int, org: str, place: str | None = None) -> Signer:
    dev = Signer(
        device_id,
        p256_private_from_scalar(_scalar(device_id)),
        place=place,
        deterministic=False,
    )
    s.devices[device_id] = dev
    s.add(
        s.registry.sign(
            Registration, T0 - 86400, device=device_id, key=dev.sec1, role=role, org=org, state=1
        )
    )
    return dev


class World:
    def __init__(self) -> None:
        s = self.s = Scenario(deterministic=False)
        s.profile(GTIN, T0 - 86400, low=0, high=400, delay=1800, cumul=7200, gap=1800)
        self.loggers = {
            PACK: _device(s, "tl-pack", 1, FARM),
            TRUCK: _device(s, "tl-truck", 1, FARM),
            DC: _device(s, "tl-dc", 1, DCCO),
        }
        rd_pack = _device(s, "rd-pack", 2, FARM, PACK)
        rd_dc = _device(s, "rd-dc", 2, DCCO, DC)
        rd_pallet = _device(s, "rd-pallet", 2, FARM, PACK)
        for place, dev in self.loggers.items():
            s.bind(place, [dev.id], T0 - 3600)
        self.pallet = s.scan(rd_pallet, COMMISSION, T0 - 60, uid=PALLET, item=SSCC)
        s.scan(rd_pack, COMMISSION, T0, item=ITEM, parent=PALLET)
        s.scan(rd_pack, SHIP, T0 + 1800, ref=DESADV)
        s.scan(rd_pack, LOAD, T0 + 1900, ref=TRUCK)
        s.scan(rd_dc, UNLOAD, T0 + 3 * 3600)
        s.scan(rd_dc, RECEIVE, T0 + 3 * 3600 + 600, ref=DESADV, parent=PALLET)
        for t in range(T0 - 600, T0 + 4 * 3600 + 1, 300):
            s.reading(
                self.loggers[PACK], t, 250 + (t // 300) % 3 * 10, rh=8000 + (t // 300) % 2 * 500
            )
            s.reading(self.loggers[TRUCK], t, 300)
            s.reading(self.loggers[DC], t, 320)
        s.profile(GTIN, T0 + 5 * 3600, low=0, high=400, delay=1800, cumul=7200, gap=1800)
        for place, dev in self.loggers.items():
            s.bind(place, [dev.id], T0 + 5 * 3600)
        self.trust = json.dumps(s.trust_doc()).encode()

    def bundle(self, keep: Any = None) -> bytes:
        return self.s.bundle(keep, item=ITEM).dumps().encode()

    def doc(self, keep: Any = None) -> dict[str, Any]:
        content = render("epcis", self.bundle(keep), self.trust, created=T0).content
        return json.loads(content, parse_float=Decimal)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def doc(world: World) -> dict[str, Any]:
    return world.doc()


def _org(name: str) -> str:
    return (
        name
        if name.startswith("urn:epc:id:pgln:")
        else "urn:coldtrace:org:" + name.replace(" ", "%20")
    )


def test_validates_against_gs1_schema(doc: dict[str, Any]) -> None:
    validator: Draft7Validator = make_validator()
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    for uri in _uris(doc):
        assert ABSOLUTE_URI.fullmatch(uri), uri
    assert doc["ct:verdict"]["verdict"] == "PASS", doc["ct:verdict"]["reasons"]


def test_event_types_and_actions(doc: dict[str, Any]) -> None:
    events = doc["epcisBody"]["eventList"]
    assert [(e["type"], e["action"], e["bizStep"]) for e in events] == [
        ("ObjectEvent", "ADD", "commissioning"),
        ("AggregationEvent", "ADD", "packing"),
        ("TransactionEvent", "ADD", "shipping"),
        ("ObjectEvent", "OBSERVE", "loading"),
        ("ObjectEvent", "OBSERVE", "unloading"),
        ("TransactionEvent", "OBSERVE", "receiving"),  # confirms the shipment's reference
        ("AggregationEvent", "DELETE", "unpacking"),
    ]
    ids = [e["eventID"] for e in events]
    assert len(set(ids)) == len(ids)
    assert ids[1] == ids[0] + "#aggregation" and ids[6] == ids[5] + "#aggregation"


def test_aggregation_names_the_container(world: World, doc: dict[str, Any]) -> None:
    events = doc["epcisBody"]["eventList"]
    pack, unpack = events[1], events[6]
    for e in (pack, unpack):
        assert e["parentID"] == SSCC  # the container tag's commission is in the bundle
        assert e["childEPCs"] == [ITEM_URI]
        assert e["ct:parent"] == PALLET.hex()
    assert pack["readPoint"] == pack["bizLocation"] == {"id": "urn:coldtrace:place:pack:dock-1"}
    assert unpack["readPoint"] == unpack["bizLocation"] == {"id": DC}
    # Without the container's commission scan, the container is named by its tag.
    other = world.doc(without(world.pallet))
    agg = [e for e in other["epcisBody"]["eventList"] if e["type"] == "AggregationEvent"]
    assert [e["parentID"] for e in agg] == ["urn:coldtrace:tag:" + PALLET.hex()] * 2
    assert make_validator().is_valid(other)


def test_handover_between_organisations(doc: dict[str, Any]) -> None:
    events = doc["epcisBody"]["eventList"]
    ship, load, unload, receive = events[2], events[3], events[4], events[5]
    ref = [{"bizTransaction": "urn:coldtrace:ref:DESADV%20981%2FA"}]
    farm = [
        {"type": "owning_party", "source": _org(FARM)},
        {"type": "location", "source": "urn:coldtrace:place:pack:dock-1"},
    ]
    dc = [
        {"type": "owning_party", "destination": _org(DCCO)},
        {"type": "location", "destination": DC},
    ]
    assert ship["bizTransactionList"] == receive["bizTransactionList"] == ref
    assert ship["sourceList"] == farm and ship["destinationList"] == dc
    assert receive["sourceList"] == farm and receive["destinationList"] == dc
    assert ship["epcList"] == receive["epcList"] == [ITEM_URI]
    assert "bizLocation" not in ship and receive["bizLocation"] == {"id": DC}
    assert receive["readPoint"] == {"id": DC}  # an SGLN place stays one
    assert load["ct:vehicle"] == "urn:coldtrace:place:fleet:truck-1"
    for e in (load, unload):
        assert "sourceList" not in e and "bizTransactionList" not in e


def test_sensor_summaries_per_leg(world: World, doc: dict[str, Any]) -> None:
    events = doc["epcisBody"]["eventList"]
    expected = evidence_from_bytes(world.bundle(), world.trust).document
    primaries = [e for e in events if e["type"] != "AggregationEvent"]
    raws = loads_bundle(world.bundle()).records
    readings = {}
    for r in raws:
        rec = open_record(r.raw)
        if isinstance(rec.payload, Reading):
            readings[(rec.signer, rec.payload.seq)] = rec.payload
    for event, leg in zip(primaries, expected["legs"], strict=True):
        if leg["readings"] == 0:
            assert "sensorElementList" not in event
            continue
        (element,) = event["sensorElementList"]
        reports = {r["type"]: r for r in element["sensorReport"]}
        temp = reports["Temperature"]
        assert temp["uom"] == "CEL" and temp["ct:readings"] == leg["readings"]
        assert temp["minValue"] == Decimal(leg["min"]) / 100
        assert temp["meanValue"] == Decimal(leg["mean"]) / 100
        meta = element["sensorMetadata"]
        m = re.fullmatch(
            r"urn:coldtrace:bundle:sha256:([0-9a-f]{64})#leg=(\d+);device=([a-z0-9.-]+);seq=(.+)",
            meta["rawData"],
        )
        assert m is not None, meta["rawData"]
        assert m.group(1) == doc["ct:bundle"]["sha256"] and int(m.group(2)) == leg["index"]
        device = m.group(3)
        seqs = []
        for part in m.group(4).split(","):
            lo, _, hi = part.partition("-")
            seqs += range(int(lo), int(hi or lo) + 1)
        assert len(seqs) == leg["readings"]
        named = [readings[(device, q)] for q in seqs]
        assert min(p.temp for p in named) == leg["min"]
        assert max(p.temp for p in named) == leg["max"]
        if device == "tl-pack":
            rh = reports["RelativeHumidity"]
            assert rh["uom"] == "P1"
            assert rh["minValue"] == Decimal(min(p.rh for p in named)) / 100
            assert rh["maxValue"] == Decimal(max(p.rh for p in named)) / 100
            assert rh["minValue"] <= rh["meanValue"] <= rh["maxValue"]
            if leg["index"] == 0:  # readings alternate 80.00 and 85.00 %RH
                assert (rh["minValue"], rh["maxValue"]) == (80, 85)
                assert Decimal(80) < rh["meanValue"] < Decimal(85)
        else:
            assert "RelativeHumidity" not in reports
    assert sum(1 for e in primaries if "sensorElementList" in e) == 4
