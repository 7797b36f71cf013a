"""cloud.exports.render: the one export function (CLI and API), FSMA selection and XLSX."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from cloud.exports import (
    MEDIA_TYPES,
    ExportError,
    ExportOptionError,
    NotVerifiedError,
    Rendered,
    UnreadableInputError,
    fsma,
    render,
)
from cloud.exports.api import parse_when
from cloud.exports.evidence import load_evidence
from cloud.exports.series import leg_series, seq_ranges
from protocol.bundle import load_bundle
from protocol.cli import main
from protocol.record import Reading, ReadingBlock, open_record
from protocol.trust import load_trust
from tests.cloud.test_exports import VECTORS, _tampered, make_validator

CASE = VECTORS / "fail_excursion"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _bytes(case: Path = CASE) -> tuple[bytes, bytes]:
    return (case / "bundle.json").read_bytes(), (case / "trust.json").read_bytes()


def _csv_rows(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))


def _cell_text(column: str, value: Any) -> str:
    """An XLSX cell back as the CSV's text (a date cell reads back as a datetime)."""
    if value is None:
        return ""
    if column == "event_date_utc" and isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M:%S")
    return str(value)


def test_render_kinds_media_types_and_filenames() -> None:
    bundle, trust = _bytes()
    e = render("epcis", bundle, trust, created=1790100000)
    assert isinstance(e, Rendered)
    content, media_type, filename = e
    assert media_type == "application/ld+json"
    assert filename == "coldtrace-04a23c5a1b6f80-epcis.jsonld"
    doc = json.loads(content)
    assert doc["creationDate"] == "2026-09-22T18:00:00Z"
    assert doc["ct:bundle"]["name"] == "bundle.json"
    c = render("fsma", bundle, trust)
    assert c.media_type == "text/csv; charset=utf-8" and c.filename.endswith("-fsma204.csv")
    x = render("fsma", bundle, trust, format="xlsx")
    assert x.media_type == XLSX == MEDIA_TYPES["xlsx"] and x.filename.endswith("-fsma204.xlsx")
    assert x.content[:2] == b"PK"
    # The same from verified evidence, and with a Trust object.
    ev = load_evidence(CASE / "bundle.json", CASE / "trust.json")
    assert render("fsma", ev).content == c.content
    assert render("fsma", bundle, load_trust(CASE / "trust.json")).content == c.content
    named = render("epcis", bundle, trust, name="/x/y/trace-7.json", created=1)
    assert json.loads(named.content)["ct:bundle"]["name"] == "trace-7.json"


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("gs1", {}, "unknown export"),
        ("epcis", {"format": "csv"}, "no format"),
        ("fsma", {"format": "pdf"}, "no format"),
        ("fsma", {"colour": "red"}, "unknown option: colour"),
        ("epcis", {"lot": "L42"}, "fsma only"),
        ("fsma", {"date_from": "21/09/2026"}, "not an ISO 8601"),
        ("fsma", {"date_to": 5}, "ISO 8601"),
        ("fsma", {"date_from": "2026-09-22", "date_to": "2026-09-21"}, "empty"),
        ("fsma", {"lot": ""}, "non-empty"),
        ("fsma", {"created": "now"}, "Unix seconds"),
    ],
)
def test_bad_options_are_refused_before_verifying(
    kind: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ExportOptionError, match=message) as info:
        render(kind, b"not even json", b"{}", **options)  # options first: no verification
    assert isinstance(info.value, ExportError) and isinstance(info.value, ValueError)


def test_lot_the_item_is_not_of_is_refused() -> None:
    bundle, trust = _bytes()
    with pytest.raises(ExportOptionError, match="has lot 'L42', not lot 'L43'"):
        render("fsma", bundle, trust, lot="L43")
    assert _csv_rows(render("fsma", bundle, trust, lot="L42").content)[1:]


def test_unverified_and_unreadable_inputs(tmp_path: Path) -> None:
    bundle, trust = _bytes()
    tampered = _tampered(tmp_path).read_bytes()
    pass_trust = (VECTORS / "pass" / "trust.json").read_bytes()
    for kind, fmt in (("epcis", None), ("fsma", "csv"), ("fsma", "xlsx")):
        with pytest.raises(NotVerifiedError, match="not verified"):
            render(kind, tampered, pass_trust, format=fmt)
    with pytest.raises(UnreadableInputError) as info:
        render("epcis", b"{", trust)
    assert info.value.code == "malformed_bundle"
    with pytest.raises(UnreadableInputError) as info:
        render("epcis", bundle, b'{"logs": 5}')
    assert info.value.code == "malformed_trust"
    with pytest.raises(ExportOptionError, match="trust"):
        render("epcis", bundle)
    with pytest.raises(ExportOptionError, match="bundle"):
        render("epcis", "a path as text", trust)  # type: ignore[arg-type]


def test_parse_when() -> None:
    day = int(datetime(2026, 9, 21, tzinfo=UTC).timestamp())
    assert parse_when("2026-09-21", end=False) == day
    assert parse_when("2026-09-21", end=True) == day + 86400
    assert parse_when("20260921", end=False) == day
    assert parse_when(date(2026, 9, 21), end=True) == day + 86400
    assert parse_when("2026-09-21T01:02:03Z", end=False) == day + 3723
    assert parse_when("2026-09-21T01:02:03", end=True) == day + 3724  # naive: UTC, inclusive
    assert parse_when("2026-09-21T03:02:03+02:00", end=False) == day + 3723
    assert parse_when("2026-09-21T01:02:03.5Z", end=False) == day + 3724
    assert parse_when(datetime(2026, 9, 21, 1, 2, 3, tzinfo=UTC), end=False) == day + 3723


def test_fsma_date_range_selects_rows() -> None:
    bundle, trust = _bytes()
    everything = _csv_rows(render("fsma", bundle, trust).content)
    header, rows = everything[0], everything[1:]
    when = header.index("event_datetime_utc")
    assert [r[when] for r in rows] == [
        "2026-09-21T14:13:20Z",
        "2026-09-21T14:43:20Z",
        "2026-09-21T18:43:20Z",
        "2026-09-21T19:03:20Z",
        "2026-09-22T00:13:20Z",
    ]

    def picked(**options: Any) -> list[list[str]]:
        got = _csv_rows(render("fsma", bundle, trust, **options).content)
        assert got[0] == header
        return got[1:]

    assert picked(date_to="2026-09-21") == rows[:4]
    assert picked(date_from="2026-09-22") == rows[4:]
    assert picked(date_from="2026-09-21T18:43:20Z", date_to="2026-09-21T19:03:20Z") == rows[2:4]
    assert picked(date_from="2026-09-21T18:43:21Z", date_to="2026-09-21T19:03:19Z") == []
    assert picked(date_from="2026-09-21T20:43:20+02:00", date_to="2026-09-22") == rows[2:]
    assert picked(lot="L42", date_from="2026-09-20", date_to="2026-09-23") == rows


@pytest.mark.parametrize("options", [{}, {"date_from": "2026-09-21T15:00Z", "lot": "L42"}])
def test_xlsx_rows_equal_csv_rows(options: dict[str, Any]) -> None:
    bundle, trust = _bytes()
    csv_rows = _csv_rows(render("fsma", bundle, trust, **options).content)
    content = render("fsma", bundle, trust, format="xlsx", created=1790100000, **options).content
    wb = load_workbook(io.BytesIO(content))
    ws = wb["FSMA 204"]
    assert wb.sheetnames[0] == "FSMA 204"
    values = [list(r) for r in ws.iter_rows(values_only=True)]
    assert values[0] == list(fsma.COLUMNS) == csv_rows[0]
    texts = [[_cell_text(c, v) for c, v in zip(fsma.COLUMNS, r, strict=True)] for r in values]
    assert texts == csv_rows
    assert len(csv_rows) > 1
    # Typed cells: real datetimes (naive, UTC), dates, times and integers.
    columns = list(fsma.COLUMNS)
    for r in values[1:]:
        assert isinstance(r[columns.index("event_datetime_utc")], datetime)
        assert r[columns.index("event_datetime_utc")].tzinfo is None
        assert isinstance(r[columns.index("event_date_utc")], date)
        assert isinstance(r[columns.index("event_time_utc")], time)
        assert isinstance(r[columns.index("reader_seq")], int)
        assert isinstance(r[columns.index("proof_index")], int)
        assert isinstance(r[columns.index("record_sha256")], str)
    c = columns.index("event_datetime_utc") + 1
    assert ws.cell(row=2, column=c).number_format == "yyyy-mm-dd hh:mm:ss"
    # Header bold and frozen, autofilter over the table, widths set.
    assert all(cell.font.bold for cell in ws[1])
    assert not ws.cell(row=2, column=1).font.bold
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:W{len(csv_rows)}"
    assert len(columns) == 23
    widths = [ws.column_dimensions[chr(ord("A") + i)].width for i in range(len(columns))]
    assert all(w >= len(name) for w, name in zip(widths, columns, strict=True))
    assert widths[columns.index("record_sha256")] >= 64
    about = {r[0]: r[1] for r in wb["export"].iter_rows(values_only=True)}
    assert about["bundle"] == "bundle.json" and about["verdict"] == "FAIL"
    assert about["rows"] == len(csv_rows) - 1
    assert wb.properties.created == datetime(2026, 9, 22, 18, 0)


def test_xlsx_never_holds_a_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    ev = load_evidence(CASE / "bundle.json", CASE / "trust.json")
    real = fsma.rows

    def evil(ev: Any, selection: Any = None) -> Any:
        for row in real(ev, selection):
            yield {**row, "location_id": '=HYPERLINK("http://x")', "reference_document": "+1"}

    monkeypatch.setattr(fsma, "rows", evil)
    wb = load_workbook(io.BytesIO(fsma.xlsx_bytes(ev)))
    ws = wb["FSMA 204"]
    col = list(fsma.COLUMNS).index("location_id") + 1
    cell = ws.cell(row=2, column=col)
    assert cell.data_type == "s" and cell.value == '\'=HYPERLINK("http://x")'
    assert ws.cell(row=2, column=col + 2).value == "'+1"
    csv_text = fsma.csv_text(ev)
    assert '\'=HYPERLINK(""http://x"")' in csv_text


def test_cli_xlsx_and_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle, trust = CASE / "bundle.json", CASE / "trust.json"
    base = ["export", "fsma", str(bundle), "--trust", str(trust)]
    out = tmp_path / "sheet.xlsx"
    assert main([*base, "-o", str(out), "--lot", "L42", "--to", "2026-09-21"]) == 0
    rows = list(load_workbook(out)["FSMA 204"].iter_rows(values_only=True))
    assert len(rows) == 5  # header + the four CTEs of 21 September
    same = render("fsma", bundle.read_bytes(), trust.read_bytes(), format="xlsx")
    assert [list(r) for r in load_workbook(io.BytesIO(same.content))["FSMA 204"].values][:5] == [
        list(r) for r in rows
    ]
    explicit = tmp_path / "sheet.bin"
    assert main([*base, "-o", str(explicit), "--format", "xlsx"]) == 0
    assert explicit.read_bytes()[:2] == b"PK"
    capsys.readouterr()
    assert main([*base, "--lot", "L43", "-o", str(tmp_path / "no.csv")]) == 2
    assert "not lot 'L43'" in capsys.readouterr().err
    assert main([*base, "--from", "yesterday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err
    assert main(["export", "epcis", str(bundle), "--trust", str(trust), "--lot", "L42"]) == 2
    assert main(["export", "epcis", str(bundle), "--trust", str(trust), "--format", "csv"]) == 2
    assert not (tmp_path / "no.csv").exists()
    assert main([*base, "--from", "2026-09-22"]) == 0
    printed = capsys.readouterr().out
    assert (
        printed.encode()
        == render("fsma", bundle.read_bytes(), trust.read_bytes(), date_from="2026-09-22").content
    )
    assert len(_csv_rows(printed.encode())) == 2


def test_seq_ranges() -> None:
    assert seq_ranges({3, 4, 5, 9, 11, 12}) == "3-5,9,11-12"
    assert seq_ranges({0}) == "0"


@pytest.mark.parametrize(
    "case",
    sorted(
        p.name
        for p in VECTORS.iterdir()
        if p.is_dir() and not p.name.startswith("unverified")  # refused: nothing to export
    ),
)
def test_leg_series_are_the_verdicts_readings(case: str) -> None:
    """The readings rawData names are those the verdict's figures count, in every vector
    (a reading block is one record, one seq, with many readings)."""
    ev = load_evidence(VECTORS / case / "bundle.json", VECTORS / case / "trust.json")
    series = leg_series(ev)
    raws = {(r.log, r.index): r.raw for r in load_bundle(VECTORS / case / "bundle.json").records}
    readings = {}
    for raw in raws.values():
        rec = open_record(raw)
        if isinstance(rec.payload, Reading):
            readings[(rec.signer, rec.payload.seq)] = [rec.payload]
        elif isinstance(rec.payload, ReadingBlock):
            readings[(rec.signer, rec.payload.seq)] = list(rec.payload.readings())
    for leg in ev.verdict.legs:
        s = series.get(leg.leg.index)
        assert (s.readings if s else 0) == leg.figures.readings, leg.leg.index
        for device, seqs in (s.seqs if s else {}).items():
            assert device in {m.device for m in leg.monitors}
            for seq in seqs:
                assert any(p.temp is not None for p in readings[(device, seq)])


def test_an_installed_part_exports_its_custody_with_an_installing_event() -> None:
    """A provenance verdict (§12.10) exports its custody scans as events; scan action 7
    (install, §2.3) is the bizStep installing at the scan's place. Schema-valid."""
    d = Path(__file__).parents[1] / "protocol" / "vectors" / "provenance" / "genuine_installed"
    out = render("epcis", (d / "bundle.json").read_bytes(), load_trust(d / "trust.json"))
    doc = json.loads(out.content)
    events = doc["epcisBody"]["eventList"]
    assert events[0]["bizStep"] == "commissioning"
    installs = [e for e in events if e.get("bizStep") == "installing"]
    assert len(installs) == 1 and installs[0]["bizLocation"]["id"]
    assert not list(make_validator().iter_errors(doc))
