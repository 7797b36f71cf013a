"""Dates, the item and the custody (docs/protocol.md §1 "Item", §12.2, §12.3), called
directly; how the verdict reports them is in test_verdict.py."""

from __future__ import annotations

import pytest

from protocol.custody import Item, by_signer, custody, date_records, parse_item
from protocol.record import Reading, Scan, Status
from tests.protocol.traces import (
    COMMISSION,
    DOCK,
    GTIN,
    ITEM,
    LOAD,
    STORE,
    T0,
    TRUCK,
    UID,
    UNLOAD,
    Signer,
    Tag,
)

# --- dates (§12.2) -------------------------------------------------------------------------------


def test_date_records_follows_section_12_2():
    dev = Signer("tl-x")
    a = dev.sign(Reading, 100, tq=0, temp=1)
    b = dev.sign(Status, 150, tq=0, event=2)
    c = dev.sign(Status, T0, tq=2, event=6, detail=200)  # the clock read 200 when set to T0
    d = dev.sign(Reading, T0 + 60, tq=2, temp=1)
    e = dev.sign(Reading, 300, tq=0, temp=1)  # after the clock was set: no clock set after it
    dates = date_records([e, d, c, b, a])
    assert [dates[r.raw] for r in (a, b, c, d, e)] == [T0 - 100, T0 - 50, T0, T0 + 60, None]
    # a missing seq between R and C: undated
    assert date_records([a, c])[a.raw] is None
    # C with another boot: undated
    dev2 = Signer("tl-y")
    r = dev2.sign(Reading, 100, tq=0, temp=1)
    dev2.boot = 2
    c2 = dev2.sign(Status, T0, tq=2, event=6, detail=200)
    assert date_records([r, c2])[r.raw] is None
    # R.time above C.detail (the clock was set back before the set): undated
    dev3 = Signer("tl-z")
    r3 = dev3.sign(Reading, 300, tq=0, temp=1)
    c3 = dev3.sign(Status, T0, tq=2, event=6, detail=200)
    assert date_records([r3, c3])[r3.raw] is None
    # a tq ≥ 1 record that is not a clock set in between: undated
    dev4 = Signer("tl-w")
    r4 = dev4.sign(Reading, 100, tq=0, temp=1)
    dev4.sign(Reading, T0 - 10, tq=1, temp=1)
    c4 = dev4.sign(Status, T0, tq=2, event=6, detail=200)
    records4 = [r4, c4]
    assert date_records(records4)[r4.raw] is None
    # a date before 1970 (detail far above time + C.time): undated, never near 1970
    dev5 = Signer("tl-v")
    r5 = dev5.sign(Reading, 0, tq=0, temp=1)
    c5 = dev5.sign(Status, 100, tq=1, event=6, detail=500)
    assert date_records([r5, c5])[r5.raw] is None


def test_date_records_ignores_order_and_repeats():
    dev = Signer("tl-x")
    records = [dev.sign(Reading, 100 + i, tq=0, temp=1) for i in range(5)]
    records.append(dev.sign(Status, T0, tq=2, event=6, detail=200))
    assert date_records(records) == date_records(list(reversed(records)) * 2)


def test_by_signer_orders_by_seq_and_keeps_one_record_per_seq():
    a, b = Signer("tl-a"), Signer("tl-b")
    ra = [a.sign(Reading, T0 + i, temp=i) for i in range(3)]
    rb = b.sign(Reading, T0, temp=1)
    fork = Signer("tl-a").sign(Reading, T0 + 99, temp=9)  # another record under seq 0
    groups = by_signer([ra[2], rb, fork, ra[0], ra[1], ra[0]])
    assert list(groups) == ["tl-a", "tl-b"]
    assert [r.payload.seq for r in groups["tl-a"]] == [0, 1, 2]
    assert groups["tl-a"][0].raw == min(ra[0].raw, fork.raw)


# --- custody (§12.3) ------------------------------------------------------------------------------


def test_custody_orders_scans_by_date_signer_and_seq():
    tag, rd1, rd2 = Tag(), Signer("rd-1"), Signer("rd-2")
    scans = [tag.scan(rd1, T0, COMMISSION, DOCK, item=ITEM)]
    scans.append(tag.scan(rd2, T0 + 60, LOAD, DOCK, ref=TRUCK))
    scans.append(tag.scan(rd1, T0 + 60, UNLOAD, DOCK))
    c = custody(scans[::-1], date_records(scans), UID)
    assert [(g.scan.signer, g.payload.seq) for g in c.legs] == [
        ("rd-1", 0),
        ("rd-1", 1),
        ("rd-2", 0),
    ]
    assert [(g.start, g.end) for g in c.legs] == [
        (T0, T0 + 60),
        (T0 + 60, T0 + 60),
        (T0 + 60, T0 + 60),
    ]
    assert [(g.location, g.vehicle) for g in c.legs] == [
        (DOCK, False),
        (DOCK, False),
        (TRUCK, True),
    ]


def test_custody_keeps_unlinked_scans_for_the_profile_to_judge():
    tag, reader = Tag(), Signer("rd-1")
    scans = [
        tag.scan(reader, T0, COMMISSION, DOCK, item=ITEM),
        tag.scan(reader, T0 + 60, LOAD, DOCK, ref=TRUCK, link=None),
        tag.scan(reader, T0 + 120, UNLOAD, STORE, link=None),
    ]
    c = custody(scans, date_records(scans), UID)
    assert c.reasons == []
    assert [g.index for g in c.unlinked] == [1, 2]
    assert [(r.code, r.severity, r.value) for r in c.unlinked_reasons(False)] == [
        ("custody_unlinked", "note", 1)
    ]
    assert [(r.severity, r.value) for r in c.unlinked_reasons(True)] == [
        ("incomplete", 1),
        ("incomplete", 2),
    ]


def test_custody_ignores_other_tags_and_kinds():
    tag, other, reader = Tag(), Tag(uid=bytes(7)), Signer("rd-1")
    records = [
        other.scan(reader, T0 - 60, COMMISSION, DOCK, item=ITEM),
        tag.scan(reader, T0, COMMISSION, DOCK, item=ITEM),
        Signer("tl-1").sign(Reading, T0, temp=1),
    ]
    c = custody(records, date_records(records), UID)
    assert c.commission is not None and c.commission.payload.uid == UID
    assert [g.start for g in c.legs] == [T0]
    assert [r.code for r in c.reasons] == ["no_custody"]
    assert c.legs[0].scan_json() == {
        "device": "rd-1",
        "seq": 1,
        "action": "commission",
        "place": DOCK,
        "ref": None,
    }
    assert isinstance(c.legs[0].payload, Scan)


# --- the item (§1) --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "want"),
    [
        (f"/01/{GTIN}", Item(GTIN, None, None)),
        (f"/01/{GTIN}/10/L1", Item(GTIN, "L1", None)),
        (f"/01/{GTIN}/21/S%2F1", Item(GTIN, None, "S/1")),
        (f"/01/{GTIN}/10/A%25B/21/7", Item(GTIN, "A%B", "7")),
        (f"/01/{GTIN}/10/{'x' * 20}", Item(GTIN, "x" * 20, None)),
        (f"/01/{GTIN}/10/{'x' * 21}", None),
        (f"/01/{GTIN}/21/7/10/L1", None),  # order
        (f"/01/{GTIN}/10/", None),
        ("/01/0950600013435", None),  # 13 digits
        (f"/01/{GTIN}/10/L 1", None),
        (f"/01/{GTIN}/10/L%201", None),  # a space is not a GS1 AI (10) character
        (f"/01/{GTIN}/10/L%2", None),
        (f"/01/{GTIN}/10/%C3%A9", None),
        (f"https://id.gs1.org/01/{GTIN}", None),
        (f"/01/{GTIN}?17=270101", None),
        ("urn:epc:id:sgtin:9506000.013435.731", None),
        ("/01/٠٩٥٠٦٠٠٠١٣٤٣٥٢", None),  # Arabic-Indic digits are not [0-9]
    ],
)
def test_parse_item(item, want):
    assert parse_item(item) == want
