"""`coldtrace export`: EPCIS 2.0 and FSMA 204 exports of verified bundles (cloud/exports/)."""

from __future__ import annotations

import base64
import copy
import csv
import hashlib
import io
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from cloud.exports import epcis, fsma
from cloud.exports.evidence import (
    NotVerifiedError,
    item_uri,
    load_evidence,
    place_id,
    place_uri,
)
from protocol.bundle import load_bundle
from protocol.cli import main

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "protocol" / "vectors" / "verdict"
EPCIS_DIR = ROOT.parent / "shared" / "standards" / "epcis-2.0"
SCHEMA_BASE = "https://gs1.github.io/EPCIS/JSON-Schema/"
CASES = ["pass", "fail_excursion"]
CREATED = 1790100000
ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+")
UTC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


# The installed jsonschema checks "uri" and "date-time" only with optional packages
# (rfc3987, rfc3339-validator) that the project does not install: these two checks
# stand in for them. A URI here is RFC 3986's absolute form (scheme ":" and no
# character that must be escaped); a date-time is RFC 3339's.
RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")
FORMATS = FormatChecker()


@FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or ABSOLUTE_URI.fullmatch(value) is not None


@FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or RFC3339.fullmatch(value) is not None


def _inputs(case: str) -> tuple[Path, Path]:
    return VECTORS / case / "bundle.json", VECTORS / case / "trust.json"


def _document(case: str) -> dict[str, Any]:
    ev = load_evidence(*_inputs(case))
    # Through the text, as a consumer reads it; decimals kept exact.
    return json.loads(epcis.dumps(epcis.epcis_document(ev, created=CREATED)), parse_float=Decimal)


def make_validator() -> Draft7Validator:
    """The GS1 EPCIS 2.0 document schema, with every file of the folder as a resource."""
    if not EPCIS_DIR.is_dir():
        pytest.fail(f"the GS1 EPCIS 2.0 schema folder is missing: {EPCIS_DIR}")
    resources = []
    for path in sorted(EPCIS_DIR.rglob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resource = Resource.from_contents(schema, default_specification=DRAFT7)
        rel = path.relative_to(EPCIS_DIR).as_posix()
        resources.append((SCHEMA_BASE + rel, resource))
        if "$id" in schema:
            resources.append((schema["$id"], resource))
    registry = Registry().with_resources(resources)
    root = json.loads((EPCIS_DIR / "EPCIS-Document-JSON-Schema.json").read_text(encoding="utf-8"))
    Draft7Validator.check_schema(root)
    return Draft7Validator(root, registry=registry, format_checker=FORMATS)


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    return make_validator()


def _uris(doc: dict[str, Any]) -> list[str]:
    out = []
    for event in doc["epcisBody"]["eventList"]:
        out += [*event.get("epcList", []), event["readPoint"]["id"], event["eventID"]]
        out += [event["bizLocation"]["id"]] if "bizLocation" in event else []
        out += [t["bizTransaction"] for t in event.get("bizTransactionList", [])]
        out += [x["source"] for x in event.get("sourceList", [])]
        out += [x["destination"] for x in event.get("destinationList", [])]
        out += [event["parentID"], *event["childEPCs"]] if "parentID" in event else []
        for element in event.get("sensorElementList", []):
            meta = element["sensorMetadata"]
            out += [meta["rawData"], *meta["ct:devices"]]
            out += [meta["deviceID"]] if "deviceID" in meta else []
    return out


@pytest.mark.parametrize("case", CASES)
def test_epcis_validates_against_gs1_schema(validator: Draft7Validator, case: str) -> None:
    doc = _document(case)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    # The formats the installed checker may skip (no rfc3987 / rfc3339 validator): checked here.
    for uri in _uris(doc):
        assert ABSOLUTE_URI.fullmatch(uri), uri
    assert UTC_TIME.fullmatch(doc["creationDate"])
    for event in doc["epcisBody"]["eventList"]:
        assert UTC_TIME.fullmatch(event["eventTime"])
    assert doc["@context"][0] == epcis.EPCIS_CONTEXT
    assert doc["@context"][1] == {"ct": epcis.CT_NAMESPACE}
    assert doc["schemaVersion"] == "2.0" and doc["type"] == "EPCISDocument"


def test_schema_refuses_broken_documents(validator: Draft7Validator) -> None:
    doc = _document("fail_excursion")
    assert validator.is_valid(doc)
    broken = []
    b = copy.deepcopy(doc)
    del b["epcisBody"]["eventList"][0]["eventTimeZoneOffset"]
    broken.append(b)
    b = copy.deepcopy(doc)
    b["epcisBody"]["eventList"][1]["action"] = "MOVE"
    broken.append(b)
    b = copy.deepcopy(doc)
    b["epcisBody"]["eventList"][0]["sensorElementList"][0]["sensorReport"][0]["minValue"] = "2.5"
    broken.append(b)
    b = copy.deepcopy(doc)
    b["epcisBody"]["eventList"][0]["bizStep"] = "https://ns.gs1.org/cbv/BizStep-made_up"
    broken.append(b)
    b = copy.deepcopy(doc)
    b["epcisBody"]["eventList"][0]["sensorElementList"][0]["sensorReport"][0]["type"] = "Warmth"
    broken.append(b)
    b = copy.deepcopy(doc)
    del b["schemaVersion"]
    broken.append(b)
    b = copy.deepcopy(doc)
    b["epcisBody"]["eventList"][0]["colour"] = "red"  # an extension member must be a URI
    broken.append(b)
    b = copy.deepcopy(doc)
    b["epcisBody"]["eventList"][0]["eventTime"] = "21/09/2026 14:13"
    broken.append(b)
    b = copy.deepcopy(doc)
    b["epcisBody"]["eventList"][0]["readPoint"]["id"] = "pack dock 1"
    broken.append(b)
    for i, b in enumerate(broken):
        assert not validator.is_valid(b), i


@pytest.mark.parametrize("case", CASES)
def test_epcis_events_follow_custody(case: str) -> None:
    doc = _document(case)
    expected = json.loads((VECTORS / case / "expected.json").read_text(encoding="utf-8"))
    events = doc["epcisBody"]["eventList"]
    legs = expected["legs"]
    assert len(events) == len(legs)
    item = expected["subject"]["item"]
    for event, leg in zip(events, legs, strict=True):
        scan = leg["scan"]
        if scan["action"] in ("ship", "receive") and scan["ref"] is not None:
            # A handover under a business reference; the vectors' refs are all new: ADD.
            assert event["type"] == "TransactionEvent" and event["action"] == "ADD"
            assert event["sourceList"][0] == {
                "type": "owning_party",
                "source": "urn:coldtrace:org:Acme",
            }
        else:
            assert event["type"] == "ObjectEvent"
            assert event["action"] == ("ADD" if scan["action"] == "commission" else "OBSERVE")
        assert event["ct:scan"]["device"] == scan["device"]
        assert event["ct:scan"]["seq"] == scan["seq"]
        assert event["bizStep"] == epcis.BIZ_STEPS[scan["action"]]
        assert event["epcList"] == ["https://id.gs1.org" + item]
        assert place_id(event["readPoint"]["id"]) == scan["place"]
        assert event["eventTimeZoneOffset"] == "+00:00"
        if scan["action"] == "load":
            assert "bizTransactionList" not in event
            assert place_id(event["ct:vehicle"]) == scan["ref"]
        elif scan["ref"] is not None:
            assert event["bizTransactionList"] == [
                {"bizTransaction": epcis.REF_PREFIX + scan["ref"]}
            ]
    times = [e["eventTime"] for e in events]
    assert times == sorted(times)
    assert doc["ct:verdict"]["verdict"] == expected["verdict"]


@pytest.mark.parametrize("case", CASES)
def test_epcis_sensor_figures_are_the_verdicts(case: str) -> None:
    doc = _document(case)
    expected = json.loads((VECTORS / case / "expected.json").read_text(encoding="utf-8"))
    text = epcis.dumps(epcis.epcis_document(load_evidence(*_inputs(case)), created=CREATED))
    assert "00000000" not in text and "99999999" not in text  # no binary-float noise
    with_readings = 0
    for event, leg in zip(doc["epcisBody"]["eventList"], expected["legs"], strict=True):
        if leg["readings"] == 0:
            assert "sensorElementList" not in event
            continue
        with_readings += 1
        (element,) = event["sensorElementList"]
        summary = element["sensorReport"][0]
        for key, member in (("minValue", "min"), ("maxValue", "max"), ("meanValue", "mean")):
            assert isinstance(summary[key], Decimal)
            assert summary[key] == Decimal(leg[member]) / 100, (key, leg)
        assert summary["type"] == "Temperature" and summary["uom"] == "CEL"
        meta = element["sensorMetadata"]
        devices = sorted({m["device"] for m in leg["monitors"]})
        assert meta["ct:devices"] == [f"urn:coldtrace:device:{d}" for d in devices]
        fragment = meta["rawData"].split("#", 1)[1]
        parts = fragment.split(";")
        assert parts[0] == f"leg={leg['index']}"
        assert parts[1::2] == [f"device={d}" for d in devices]
        assert all(re.fullmatch(r"seq=\d+(-\d+)?(,\d+(-\d+)?)*", p) for p in parts[2::2])
    assert with_readings > 0
    excursions = [
        r
        for e in doc["epcisBody"]["eventList"]
        for el in e.get("sensorElementList", [])
        for r in el["sensorReport"][1:]
    ]
    assert len(excursions) == len(expected["excursions"])
    for report, x in zip(excursions, expected["excursions"], strict=True):
        assert report["ct:excursion"]["from"] == x["from"]
        assert report.get("exception") == ("ALARM_CONDITION" if x["alarm"] else None)
        key = "maxValue" if x["side"] == "high" else "minValue"
        assert report[key] == Decimal(x["peak"]) / 100


def _records(bundle: Path) -> dict[tuple[str, int], bytes]:
    return {(r.log, r.index): r.raw for r in load_bundle(bundle).records}


@pytest.mark.parametrize("case", CASES)
def test_epcis_proofs_resolve(case: str) -> None:
    bundle, _ = _inputs(case)
    records = _records(bundle)
    doc = _document(case)
    assert doc["ct:bundle"]["sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    for event in doc["epcisBody"]["eventList"]:
        proof = event["ct:proof"]
        raw = records[(proof["log"], proof["index"])]
        assert hashlib.sha256(raw).hexdigest() == proof["sha256"]
        assert event["eventID"].endswith(proof["sha256"])


def _rows(case: str) -> list[dict[str, str]]:
    text = fsma.csv_text(load_evidence(*_inputs(case)))
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("case", CASES)
def test_fsma_one_row_per_cte_with_resolvable_proofs(case: str) -> None:
    bundle, _ = _inputs(case)
    records = _records(bundle)
    expected = json.loads((VECTORS / case / "expected.json").read_text(encoding="utf-8"))
    rows = _rows(case)
    ctes = [leg for leg in expected["legs"] if leg["scan"]["action"] in fsma.CTES]
    assert len(rows) == len(ctes)
    subject = expected["subject"]
    for row, leg in zip(rows, ctes, strict=True):
        scan = leg["scan"]
        assert list(row) == list(fsma.COLUMNS)
        assert row["cte"] == fsma.CTES[scan["action"]]
        assert row["coldtrace_action"] == scan["action"]
        assert row["traceability_lot_code"] == f"(01){subject['gtin']}(10){subject['lot']}"
        assert row["location_id"] == scan["place"]
        assert row["reader"] == scan["device"] and row["reader_seq"] == str(scan["seq"])
        assert row["verdict"] == expected["verdict"]
        assert row["quantity"] == row["unit_of_measure"] == row["tlc_source"] == ""
        assert row["event_datetime_utc"].startswith(row["event_date_utc"] + "T")
        raw = records[(row["proof_log"], int(row["proof_index"]))]
        assert hashlib.sha256(raw).hexdigest() == row["record_sha256"]
        if scan["action"] == "load":
            assert row["vehicle_id"] == scan["ref"] and row["reference_document"] == ""
        else:
            assert row["reference_document"] == (scan["ref"] or "")
    assert [r["event_datetime_utc"] for r in rows] == sorted(r["event_datetime_utc"] for r in rows)
    assert rows[0]["cte"] == "Initial Packing"


def test_fsma_formula_injection_is_escaped() -> None:
    for bad in ('=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert fsma.escape_cell(bad) == "'" + bad
    for good in ("pack:dock-1", "SH-42", "", "2.5", "a=b"):
        assert fsma.escape_cell(good) == good
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([fsma.escape_cell('=cmd|" /C calc"!A0'), fsma.escape_cell("a,b\nc")])
    assert list(csv.reader(io.StringIO(out.getvalue(), newline=""))) == [
        ['\'=cmd|" /C calc"!A0', "a,b\nc"]
    ]


def test_identifiers_are_reversible() -> None:
    for place in ("pack:dock-1", "dc/dock 3", "é%#?", "urn:epc:id:sgln:0614141.00777.0"):
        assert place_id(place_uri(place)) == place
        assert ABSOLUTE_URI.fullmatch(place_uri(place))
    assert place_uri("urn:epc:id:sgln:0614141.00777.0") == "urn:epc:id:sgln:0614141.00777.0"
    assert place_uri("dc/dock 3") == "urn:coldtrace:place:dc%2Fdock%203"
    assert item_uri("/01/09506000134352/10/L42/21/7") == (
        "https://id.gs1.org/01/09506000134352/10/L42/21/7"
    )


def _tampered(tmp_path: Path) -> Path:
    doc = json.loads((VECTORS / "pass" / "bundle.json").read_text(encoding="utf-8"))
    raw = bytearray(base64.b64decode(doc["records"][5]["record"]))
    raw[-1] ^= 1  # the signature's last byte
    doc["records"][5]["record"] = base64.b64encode(bytes(raw)).decode()
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_unverified_bundle_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _tampered(tmp_path)
    trust = VECTORS / "pass" / "trust.json"
    with pytest.raises(NotVerifiedError):
        load_evidence(bundle, trust)
    for fmt in ("epcis", "fsma"):
        out = tmp_path / f"out.{fmt}"
        assert main(["export", fmt, str(bundle), "--trust", str(trust), "-o", str(out)]) == 3
        assert not out.exists()
        captured = capsys.readouterr()
        assert "not verified" in captured.err and captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tampered.json"]


def test_unreadable_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    trust = VECTORS / "pass" / "trust.json"
    out = tmp_path / "out.json"
    assert main(["export", "epcis", str(bad), "--trust", str(trust), "-o", str(out)]) == 2
    assert main(["export", "epcis", str(tmp_path / "none"), "--trust", str(trust)]) == 2
    assert not out.exists()
    assert "coldtrace export:" in capsys.readouterr().err


def test_cli_end_to_end(
    tmp_path: Path, validator: Draft7Validator, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, trust = _inputs("fail_excursion")
    out = tmp_path / "trace.jsonld"
    assert main(["export", "epcis", str(bundle), "--trust", str(trust), "-o", str(out)]) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert validator.is_valid(doc)
    assert doc["ct:verdict"]["verdict"] == "FAIL"
    assert main(["export", "fsma", str(bundle), "--trust", str(trust)]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(printed, newline="")))
    assert len(rows) == 5 and {r["verdict"] for r in rows} == {"FAIL"}
    csv_out = tmp_path / "trace.csv"
    assert main(["export", "fsma", str(bundle), "--trust", str(trust), "-o", str(csv_out)]) == 0
    assert csv_out.read_bytes().decode("utf-8") == printed
