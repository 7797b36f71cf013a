"""Reading blocks (kind 7) in the verdict (docs/protocol.md §12.2, §12.6): each reading of a
block counts as a kind-1 reading at its derived time; the later-signed reading stands."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.bundle import load_bundle
from protocol.completeness import DeviceRecords, Held
from protocol.custody import date_records
from protocol.errors import RecordError
from protocol.record import Reading, ReadingBlock, Record, Status, open_record, pack_block
from protocol.trust import load_trust
from protocol.verify import verify_bundle
from tests.protocol.traces import T0, Signer

VECTORS = Path(__file__).resolve().parent / "vectors" / "verdict"
BLOCK_VECTORS = {
    "pass_blocks",
    "fail_excursion_in_block",
    "fail_alarm_closes_block",
    "incomplete_gap_between_blocks",
    "incomplete_block_cut",
    "pass_block_alarm_overlap",
    "pass_block_contradicts_alarm",
    "pass_block_overruns_reading",
    "unverified_block_zero_interval",
    "unverified_block_unequal_arrays",
}


def expected(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / name / "expected.json").read_text("utf-8"))
    return doc


def report(name: str) -> Any:
    return verify_bundle(
        load_bundle(VECTORS / name / "bundle.json"), load_trust(VECTORS / name / "trust.json")
    )


def test_the_block_vectors_are_published() -> None:
    assert {p.name for p in VECTORS.iterdir()} >= BLOCK_VECTORS
    for name in BLOCK_VECTORS:
        assert any(isinstance(p, ReadingBlock) for p in _payloads(name)) or name.startswith(
            "unverified"
        ), name


def _payloads(name: str) -> list[Any]:
    out = []
    for r in load_bundle(VECTORS / name / "bundle.json").records:
        with contextlib.suppress(RecordError):  # the malformed block of an unverified_ vector
            out.append(open_record(r.raw).payload)
    return out


@pytest.mark.parametrize(
    ("blocks", "kind_1"),
    [
        ("pass_blocks", "pass"),
        ("fail_excursion_in_block", "fail_excursion"),
        ("fail_alarm_closes_block", "fail_excursion"),
    ],
)
def test_a_block_counts_exactly_as_its_kind_1_readings(blocks: str, kind_1: str) -> None:
    """The same readings, signed in blocks, give the very same verdict document."""
    assert expected(blocks) == expected(kind_1)
    payloads = _payloads(blocks)
    assert sum(isinstance(p, ReadingBlock) for p in payloads) >= 40
    assert not any(isinstance(p, ReadingBlock) for p in _payloads(kind_1))


def test_summary_counts_every_reading_of_a_block() -> None:
    a, b = report("pass").summary, report("pass_blocks").summary
    for key in ("readings", "temp_min_centi", "temp_max_centi", "time_first", "time_last"):
        assert a[key] == b[key], key
    assert b["records_verified"] < a["records_verified"] - 200  # far fewer records


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("unverified_block_zero_interval", "ivl (key 17) out of range"),
        ("unverified_block_unequal_arrays", "rhs (key 19) must have one slot per reading"),
    ],
)
def test_a_malformed_block_is_refused(name: str, rule: str) -> None:
    rep = report(name)
    assert not rep.verified and expected(name)["verdict"] is None
    bad = [f for f in rep.failures if f.code == "malformed_record"]
    assert len(bad) == 1 and bad[0].message.startswith(rule)
    # the record cannot be opened, so the proof that lists it fails too; nothing else does
    assert {f.code for f in rep.failures} == {"malformed_record", "proof_mismatch"}


def test_a_cut_block_leaves_its_time_missing() -> None:
    doc = expected("incomplete_block_cut")
    missing = [r for r in doc["reasons"] if r["code"] == "records_missing"]
    assert len(missing) == 1
    # from the last reading of the block before to the first reading of the block after
    assert missing[0]["to"] - missing[0]["from"] == 7 * 600


def test_overlap_vectors_say_so_and_count_the_instant_once() -> None:
    for name in ("pass_block_alarm_overlap", "pass_block_contradicts_alarm"):
        doc = expected(name)
        notes = [r for r in doc["reasons"] if r["code"] == "block_overlap"]
        assert [(r["device"], r["to"] - r["from"]) for r in notes] == [("tl-truck-1", 3000)]
        assert doc["totals"]["readings"] == expected("pass")["totals"]["readings"]
    # the block repeats 6 °C: a 10-minute excursion; it contradicts the alarm: none
    assert expected("pass_block_alarm_overlap")["totals"]["max"] == 600
    assert [e["to"] - e["from"] for e in expected("pass_block_alarm_overlap")["excursions"]] == [
        600
    ]
    assert expected("pass_block_contradicts_alarm")["excursions"] == []
    assert (
        expected("pass_block_overruns_reading")["totals"]["covered"]
        == expected("pass")["totals"]["covered"]
    )


# --- DeviceRecords on blocks, directly ---------------------------------------------------------


def block(dev: Signer, t: int, temps: list[int | None], ivl: int = 600, **kw: Any) -> Record:
    packed, _ = pack_block(temps, [1 if v is None else None for v in temps])
    return dev.sign(ReadingBlock, t, ivl=ivl, temps=packed, **kw)


def held(records: list[Record], gap: int = 1800) -> list[tuple[int, int, int, int]]:
    dev = DeviceRecords(records, date_records(records))
    return sorted((h.start, h.end, h.temp, h.index) for h in dev.readings(gap))


def test_block_readings_stand_like_kind_1_readings() -> None:
    temps = [300, 310, None, 330]
    a, b = Signer("tl-a"), Signer("tl-b")
    singles = [
        a.sign(Reading, T0 + 600 * i, **({"temp": v} if v is not None else {"fault": 1}))
        for i, v in enumerate(temps)
    ] + [a.sign(Reading, T0 + 2400, temp=300)]
    blocks = [block(b, T0, temps), b.sign(Reading, T0 + 2400, temp=300)]
    want = [(T0, T0 + 600, 300), (T0 + 600, T0 + 1200, 310), (T0 + 1800, T0 + 2400, 330)]
    assert [h[:3] for h in held(singles)] == [h[:3] for h in held(blocks)] == want
    assert [h[3] for h in held(blocks)] == [0, 1, 3]  # the index names the reading


def test_the_last_reading_of_a_run_stands_until_its_last_record() -> None:
    dev = Signer("tl-x")
    recs = [block(dev, T0, [300, 310]), dev.sign(Status, T0 + 900, event=2)]
    assert held(recs) == [(T0, T0 + 600, 300, 0), (T0 + 600, T0 + 900, 310, 1)]
    # without a record after it, the block's last reading stands for nothing (as kind 1)
    assert held(recs[:1]) == [(T0, T0 + 600, 300, 0)]


def test_a_later_signed_reading_cuts_a_block_short() -> None:
    dev = Signer("tl-x")
    b = block(dev, T0, [300, 310, 320, 330])  # T0 .. T0 + 1800
    k = dev.sign(Reading, T0 + 900, temp=900)  # signed after the block, dated inside it
    after = dev.sign(Reading, T0 + 2400, temp=300)
    records = [b, k, after]
    assert held(records) == [
        (T0, T0 + 600, 300, 0),
        (T0 + 600, T0 + 900, 310, 1),  # ends at the later-signed reading
        (T0 + 900, T0 + 2400, 900, 0),  # 320 and 330 stand for nothing
    ]
    d = DeviceRecords(records, date_records(records))
    assert [(o.seq, o.start, o.end) for o in d.overlaps()] == [(0, T0, T0 + 1800)]


def test_a_reading_signed_before_a_block_at_its_instant_stands_for_nothing() -> None:
    dev = Signer("tl-x")
    k = dev.sign(Reading, T0 + 600, temp=900)  # the alarm, signed first
    b = block(dev, T0, [300, 310, 320])  # then the block, holding the same instant
    nxt = dev.sign(Reading, T0 + 1800, temp=300)
    assert held([k, b, nxt]) == [
        (T0, T0 + 600, 300, 0),
        (T0 + 600, T0 + 1200, 310, 1),  # the block's 3.10 °C stands, once
        (T0 + 1200, T0 + 1800, 320, 2),
    ]
    d = DeviceRecords([k, b, nxt], date_records([k, b, nxt]))
    assert [o.seq for o in d.overlaps()] == [1]


def test_no_overlap_for_an_honest_device() -> None:
    """A block closed before the alarm reading; another channel's block and a heartbeat
    signed while a block was open carry times inside its span: no contradiction."""
    dev = Signer("tl-x")
    records = [
        dev.sign(Status, T0 + 700, event=2),  # heartbeat while the blocks are open
        block(dev, T0, [300, 310]),  # channel 0, T0 .. T0 + 600, cut short
        dev.sign(Reading, T0 + 1200, temp=900, alarm=1),  # the alarm, at once
        block(dev, T0, [500, 510, 520], ch=1),  # channel 1, signed later, dated earlier
        block(dev, T0 + 1800, [300, 300]),
    ]
    d = DeviceRecords(records, date_records(records))
    assert d.overlaps() == []
    assert d.spans == [(T0, T0 + 2400)]  # the last block reaches its end date


def test_a_declared_loss_after_a_block_is_dated_from_its_end() -> None:
    dev = Signer("tl-x")
    records = [block(dev, T0, [300, 300, 300])]
    dev.seq += 1  # seq 1 lost
    records += [
        dev.sign(Status, T0 + 3000, event=11, detail=1, lost=1),
        dev.sign(Reading, T0 + 3600, temp=300),
    ]
    d = DeviceRecords(records, date_records(records))
    assert [(x.start, x.end) for x in d.losses] == [(T0 + 1200, T0 + 3000)]
    assert d.spans == [(T0, T0 + 3600)]


def test_a_block_with_an_unset_clock_is_dated_whole() -> None:
    dev = Signer("tl-x")
    early = block(dev, 100, [300, 300, 300], tq=0)  # readings at 100, 700, 1300
    clock = dev.sign(Status, T0, event=6, detail=1400)
    dates = date_records([early, clock])
    assert dates[early.raw] == T0 - 1300  # 100 + T0 - 1400
    # a block whose last reading is after the clock's old value is not dated at all
    dev2 = Signer("tl-y")
    late = block(dev2, 100, [300, 300, 300], tq=0)
    clock2 = dev2.sign(Status, T0, event=6, detail=1299)
    assert date_records([late, clock2])[late.raw] is None


def test_held_index_default_keeps_kind_1_callers() -> None:
    assert Held(0, 1, 0, 300, 2, 5).index == 0


def test_readings_signed_before_a_block_that_covers_them_stand_for_nothing() -> None:
    """Not only the reading just before: every reading of the channel signed before a block
    stands no later than the block's first reading (the later-signed reading stands)."""
    dev = Signer("tl-x")
    k1 = dev.sign(Reading, T0 + 1200, temp=900)
    k2 = dev.sign(Reading, T0 + 1800, temp=900)
    b = block(dev, T0, [300, 310, 320, 330, 340])  # T0 .. T0 + 2400
    nxt = dev.sign(Reading, T0 + 3000, temp=300)
    got = held([k1, k2, b, nxt])
    assert [h[2] for h in got] == [300, 310, 320, 330, 340]  # 9 °C stands for nothing
    # among kind-1 readings alone, only the next one bounds a reading (as before blocks)
    dev2 = Signer("tl-y")
    alone = [
        dev2.sign(Reading, T0 + 1200, temp=900),
        dev2.sign(Reading, T0 + 1800, temp=900),
        dev2.sign(Reading, T0, temp=300),
        dev2.sign(Reading, T0 + 3000, temp=300),
    ]
    assert held(alone) == [(T0, T0 + 1800, 300, 0), (T0 + 1200, T0 + 1800, 900, 0)]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(-500, 1500)), min_size=1, max_size=40),
    st.lists(st.integers(1, 12), min_size=1, max_size=40),
    st.sampled_from([60, 300, 600]),
    st.integers(600, 3600),
)
def test_any_honest_grouping_into_blocks_stands_as_the_kind_1_readings(
    temps: list[int | None], sizes: list[int], ivl: int, gap: int
) -> None:
    """Readings at a fixed interval, signed one by one or in blocks of any sizes (in time
    order, as §2.8 makes a device do), stand for the same intervals and temperatures."""
    a, b = Signer("tl-a", fast=True), Signer("tl-b", fast=True)
    singles = [
        a.sign(Reading, T0 + ivl * i, **({"temp": v} if v is not None else {"fault": 2}))
        for i, v in enumerate(temps)
    ]
    blocks, i, k = [], 0, 0
    while i < len(temps):
        n = sizes[k % len(sizes)]
        blocks.append(block(b, T0 + ivl * i, temps[i : i + n], ivl=ivl))
        i, k = i + n, k + 1
    tail_a = a.sign(Status, T0 + ivl * len(temps), event=2)
    tail_b = b.sign(Status, T0 + ivl * len(temps), event=2)
    want = [h[:3] for h in held([*singles, tail_a], gap)]
    assert [h[:3] for h in held([*blocks, tail_b], gap)] == want
    d = DeviceRecords([*blocks, tail_b], date_records([*blocks, tail_b]))
    assert d.overlaps() == []
    assert d.spans == DeviceRecords([*singles, tail_a], date_records([*singles, tail_a])).spans
