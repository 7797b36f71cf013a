"""The shipment release report (docs/cloud.md, "Shipment release report"): the PDF of the
three organisations' trace (tests/cloud/test_traces.py) for a PASS and a FAIL, read back
with poppler's pdftotext and drawn to PNG with pdftoppm (kept in the test's tmp path and
in test-artifacts/report/ at the repository root, to look at); the refusal of an
unverified bundle; the API (report, decisions in the audit log, isolation) and the CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cloud import chart
from cloud.report import NotVerified, ReportError, render_report
from protocol.anchor import LocalReceipt
from protocol.bundle import loads_bundle
from protocol.checkpoint import parse_checkpoint
from protocol.note import WitnessSigner, parse_note
from protocol.trust import loads_trust
from tests.cloud.cloudkit import Kit, make_kit
from tests.cloud.test_traces import H, _get, _push, kit, three_orgs
from tests.protocol.scenario import GTIN, ITEM, T0, UID, Scenario

_ = kit  # the fixture (SQLite and PostgreSQL), for the API tests

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "report"
URL = "https://cloud.example/v1/public/trace?dl=" + ITEM
CREATED = 1_790_100_000
WARM_TRUCK = lambda t: 900 if T0 + 3 * H <= t <= T0 + 5 * H else 300  # noqa: E731

needs_poppler = pytest.mark.skipif(
    shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None,
    reason="poppler-utils (pdftotext, pdftoppm) not installed",
)


def _trace(tmp: Path, truck_temp=lambda t: 300) -> tuple[Kit, bytes, bytes, dict[str, str]]:
    """The three organisations' trace, pushed: (kit, bundle bytes, trust bytes, tokens)."""
    tmp.mkdir(parents=True, exist_ok=True)
    k = make_kit(tmp)
    c = three_orgs(k, truck_temp=truck_temp)
    _push(k, c.packhouse, c.carrier, c.dc)
    b = _get(k, f"/v1/traces/{UID.hex()}/bundle", c.tokens["dc"])
    assert b.status_code == 200, b.text
    return k, b.content, k.client.get("/v1/trust").content, c.tokens


def _text(pdf: bytes, tmp: Path) -> str:
    path = tmp / "report.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], check=True, capture_output=True
    )
    pages = out.stdout.decode().split("\f")
    return "\f".join(" ".join(page.split()) for page in pages)  # lines joined by spaces


def _pages(pdf: bytes, tmp: Path, name: str) -> list[Path]:
    """The pages as PNG at 60 dpi, in ``tmp`` and copied to test-artifacts/report/."""
    path = tmp / f"{name}.pdf"
    path.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "60", "-png", str(path), str(tmp / name)], check=True)
    pngs = sorted(tmp.glob(f"{name}-*.png"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob(f"{name}*"):
        old.unlink()
    shutil.copy(path, ARTIFACTS / path.name)
    for png in pngs:
        shutil.copy(png, ARTIFACTS / png.name)
    return pngs


def _flat(text: str) -> str:
    """The text without white space: what a table cell wrapped is found in whole."""
    return "".join(text.split())


def _fingerprints_in(flat: str, bundle: bytes) -> None:
    b = loads_bundle(bundle)
    assert len(b.checkpoints) == 3
    for note_text in b.checkpoints:
        note = parse_note(note_text)
        cp = parse_checkpoint(note.body)
        assert cp.origin in flat
        assert f"size{cp.size}" in flat
        assert "root" + cp.root_hash.hex()[:32] in flat
        for sig in note.signatures:
            if sig.name != cp.origin:
                assert f"{sig.name}{sig.key_id:08x}" in flat
    for a in b.anchors:
        r = LocalReceipt.from_json(a.receipt)
        assert r.ledger in flat
        assert r.entry_hash().hex()[:32] in flat
    assert hashlib.sha256(bundle).hexdigest() in flat


@needs_poppler
def test_the_release_report_of_a_passing_trace(tmp_path: Path) -> None:
    _, bundle, trust, _ = _trace(tmp_path / "cloud")
    pdf = render_report(bundle, trust, verification_url=URL, created=CREATED)
    assert pdf.startswith(b"%PDF-")
    # the same evidence at the same time gives the same bytes
    assert render_report(bundle, trust, verification_url=URL, created=CREATED) == pdf
    text = _text(pdf, tmp_path)
    flat = _flat(text)
    assert "Shipment release report" in text
    assert "PASS" in text and "FAIL" not in text
    assert "The signed evidence covers the whole trace" in text
    for want in (GTIN, "L42", ITEM, UID.hex()):
        assert want in flat, want
    assert "fill in" in text  # no quantity known: a blank
    # the custody chain: every leg's place and handover scan
    for want in ("packhouse:cold", "fleet:truck-1", "dc:dock"):
        assert want in flat
    for want in ("commissionbyph-rd", "loadbycr-rd", "unloadbydc-rd", "receivebydc-rd"):
        assert want in flat, want
    assert "endoftrace" in flat
    # statistics from the verdict document, charts' legends
    assert "Statistics" in text and "MKT" in text and "2.00 °C" in text
    for device in ("ph-cold", "cr-truck", "dc-cold"):
        assert device in text
    _fingerprints_in(flat, bundle)
    assert URL in flat
    for want in ("Release", "Reject", "Name", "Role", "Date", "Signature"):
        assert want in text
    pages = text.count("\f")
    assert f"Page 1 of {pages}" in text and f"Page {pages} of {pages}" in text
    assert "Generated 2026-09-22 18:00:00 UTC" in text
    pngs = _pages(pdf, tmp_path, "pass")
    assert len(pngs) == pages >= 2 and all(p.stat().st_size > 5000 for p in pngs)


@needs_poppler
def test_the_release_report_of_a_failing_trace(tmp_path: Path) -> None:
    _, bundle, trust, _ = _trace(tmp_path / "cloud", truck_temp=WARM_TRUCK)
    pdf = render_report(bundle, trust, verification_url=URL, quantity="48 cases", created=CREATED)
    text = _text(pdf, tmp_path)
    flat = _flat(text)
    assert "FAIL" in text and "PASS" not in text
    assert "temperature profile was broken" in text
    assert "High excursion" in text  # the verdict's reason, in its words
    assert "Excursions" in text and "9.00 °C" in text  # the peak
    assert "2 h 5 min" in text  # time out of range, from the verdict document
    assert "48 cases" in text and "fill in" not in text
    assert "L42" in flat and "fleet:truck-1" in flat
    _fingerprints_in(flat, bundle)
    assert "documented deviation" in text
    pngs = _pages(pdf, tmp_path, "fail")
    assert pngs


def test_an_unverified_bundle_gets_no_report(tmp_path: Path) -> None:
    _, bundle, trust, _ = _trace(tmp_path / "cloud")
    other = dataclasses.replace(loads_trust(trust), witnesses=[])  # the quorum cannot be met
    with pytest.raises(NotVerified, match="insufficient_cosignatures") as err:
        render_report(bundle, other, verification_url=URL)
    assert "do not release" in str(err.value)
    with pytest.raises(ReportError) as bad:
        render_report(b'{"format": "nope"}', trust, verification_url=URL)
    assert bad.value.code != "not_verified"


def test_the_envelope_keeps_every_peak() -> None:
    points = [(T0 + 60 * i, 300) for i in range(20_000)]
    points[12_345] = (points[12_345][0], 1_250)  # one reading out of 20,000
    points[777] = (points[777][0], -40)
    env = chart.envelope(points, points[0][0], points[-1][0], 400)
    assert len(env) <= 800
    assert (points[12_345]) in env and points[777] in env
    assert env == sorted(env)
    assert chart.envelope(points[:10], T0, T0 + 600, 400) == points[:10]
    held = [(0, 60, 1), (60, 120, 2), (500, 560, 3)]
    assert chart.runs(held) == [[(0, 1), (60, 2)], [(500, 3)]]
    ticks = chart.time_ticks(T0, T0 + 5 * H)
    assert 3 <= len(ticks) <= 7 and ticks[0][1].startswith("21 Sep")


@needs_poppler
def test_the_report_and_decisions_through_the_api(kit: Kit, tmp_path: Path) -> None:
    c = three_orgs(kit, truck_temp=WARM_TRUCK)
    _push(kit, c.packhouse, c.carrier, c.dc)
    path = f"/v1/traces/{UID.hex()}"
    r = _get(kit, path + "/report.pdf", c.tokens["dc"], params={"quantity": 24})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    text = _text(r.content, tmp_path)
    flat = _flat(text)
    assert "FAIL" in text and "24" in text
    assert "carrier" in text and "packhouse" in text  # the cloud's organisations per leg
    # the item's page on the cloud (its Digital Link), or its public trace
    assert "http://testserver" + ITEM in flat or "testserver/v1/public/trace?dl=" + ITEM in flat
    assert hashlib.sha256(_get(kit, path + "/bundle", c.tokens["dc"]).content).hexdigest() in flat

    # another organisation cannot read the report nor decide
    other = Scenario(registry_id="reg-other", origin="other.example/gw")
    stranger = kit.join("other", other, devices=["xx-*"], places=["xx:*"], gtins=[])
    decision = {"decision": "reject", "comment": "excursion on the truck", "name": "A. Quality"}
    assert _get(kit, path + "/report.pdf", stranger).status_code == 404
    assert _get(kit, path + "/decisions", stranger).status_code == 404
    h = {"Authorization": f"Bearer {stranger}"}
    assert kit.client.post(path + "/decision", headers=h, json=decision).status_code == 404

    # the retailer's quality manager rejects it: recorded in the audit log, with the evidence
    dc = {"Authorization": f"Bearer {c.tokens['dc']}"}
    made = kit.client.post(path + "/decision", headers=dc, json=decision)
    assert made.status_code == 201, made.text
    d = made.json()
    assert d["decision"] == "reject" and d["name"] == "A. Quality" and d["organisation"] == "dc"
    assert d["verdict"] == "FAIL" and d["uid"] == UID.hex() and d["item"] == ITEM
    assert d["bundle_sha256"] in flat  # the report it was made on
    listed = _get(kit, path + "/decisions", c.tokens["dc"]).json()
    assert [x["id"] for x in listed] == [d["id"]] and listed[0]["comment"] == decision["comment"]
    admin = kit.token("dc", ["admin"])
    audit = _get(kit, "/v1/audit", admin).json()
    row = next(a for a in audit if a["action"] == "trace.decision")
    assert row["target"] == UID.hex() and row["detail"]["decision"] == "reject"
    # the carrier sees the trace but not the retailer's decision; the operator sees it
    assert _get(kit, path + "/decisions", c.tokens["carrier"]).json() == []
    assert len(_get(kit, path + "/decisions", kit.operator).json()) == 1
    bad = kit.client.post(path + "/decision", headers=dc, json={**decision, "decision": "maybe"})
    assert bad.status_code == 422
    nameless = kit.client.post(path + "/decision", headers=dc, json={**decision, "name": ""})
    assert nameless.status_code == 422


def test_the_command_line(tmp_path: Path) -> None:
    from protocol.cli import main

    _, bundle, trust, _ = _trace(tmp_path / "cloud")
    (tmp_path / "bundle.json").write_bytes(bundle)
    (tmp_path / "trust.json").write_bytes(trust)
    out = tmp_path / "report.pdf"
    args = ["report", str(tmp_path / "bundle.json"), "--trust", str(tmp_path / "trust.json")]
    assert main([*args, "-o", str(out), "--url", URL, "--quantity", "12"]) == 0
    assert out.read_bytes().startswith(b"%PDF-")
    # no URL: the QR code holds the bundle's SHA-256; still a report
    assert main([*args, "-o", str(tmp_path / "plain.pdf")]) == 0
    # a trust file pinning another witness: not verified, exit 3, nothing written
    doc = json.loads(trust)
    doc["witnesses"] = [{"vkey": WitnessSigner.generate("witness.test").vkey}]
    (tmp_path / "other.json").write_text(json.dumps(doc))
    refused = tmp_path / "refused.pdf"
    bad = ["report", str(tmp_path / "bundle.json"), "--trust", str(tmp_path / "other.json")]
    assert main([*bad, "-o", str(refused)]) == 3
    assert not refused.exists()
    assert main([*args, "-o", str(tmp_path / "x.pdf"), "--quantity", " "]) == 2
