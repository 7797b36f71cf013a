"""Reasons, their formatters T, C, D and their order (docs/protocol.md §12.9)."""

from __future__ import annotations

import pytest

from protocol import reasons as why
from protocol.reasons import (
    STAGES,
    Reason,
    fmt_centi,
    fmt_duration,
    fmt_time,
    verdict_of,
)


@pytest.mark.parametrize(
    ("t", "want"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_790_000_000, "2026-09-21T14:13:20Z"),
        (951_782_400, "2000-02-29T00:00:00Z"),
        (2**32 - 1, "2106-02-07T06:28:15Z"),
        (2**32 + 86400, "2106-02-08T06:28:16Z"),  # a reading's end may pass 2^32
    ],
)
def test_fmt_time_is_utc_iso_8601(t, want):
    assert fmt_time(t) == want


@pytest.mark.parametrize(
    ("c", "want"),
    [
        (0, "0.00 °C"),
        (5, "0.05 °C"),
        (-5, "-0.05 °C"),
        (912, "9.12 °C"),
        (-1234, "-12.34 °C"),
        (15000, "150.00 °C"),
        (-10000, "-100.00 °C"),
    ],
)
def test_fmt_centi(c, want):
    assert fmt_centi(c) == want


@pytest.mark.parametrize(
    ("s", "want"),
    [
        (0, "0 min"),
        (30, "0 min 30 s"),
        (60, "1 min"),
        (2700, "45 min"),
        (3600, "1 h 0 min"),
        (3900, "1 h 5 min"),
        (3661, "1 h 1 min 1 s"),
        (2 * 86400, "48 h 0 min"),
    ],
)
def test_fmt_duration(s, want):
    assert fmt_duration(s) == want


def test_every_code_has_a_stage_and_the_stages_follow_the_table():
    assert [STAGES[c] for c in ("no_commission", "no_profile", "unmonitored", "lost")] == [
        1,
        2,
        3,
        4,
    ]
    assert [STAGES[c] for c in ("no_readings", "undated", "excursion", "mkt")] == [5, 6, 7, 8]


def test_sort_key_puts_nulls_first_and_compares_bytes():
    a = why.records_missing(1, "tl-b", 100, 200)
    b = why.records_missing(1, "tl-a", 100, 200)
    c = why.no_readings(1, 50, 60)
    d = why.unmonitored(0, 10, 20, "no_devices", "x")
    e = why.excursion("high", 0, 10, 500, 5)
    f = why.no_profile("unproven")
    order = sorted([a, b, c, d, e, f], key=Reason.sort_key)
    assert order == [f, d, b, a, c, e]
    # a null leg sorts before leg 0: stage 4 notes without a leg cannot exist, so use stage 1
    undated = why.undated_scan("rd-1", 7)
    conflict = why.custody_conflict("rd-1", 7, 0, "after_sale")
    assert sorted([conflict, undated], key=Reason.sort_key) == [undated, conflict]
    # strings compare as UTF-8 bytes, not as Python str (é > z in both, but Ā > ÿ too)
    x = why.records_missing(1, "\u0100", 0, 1)
    y = why.records_missing(1, "\u00ff", 0, 1)
    assert x.sort_key() > y.sort_key()


def test_verdict_of_fail_wins_over_incomplete():
    note = why.clock_dated("tl-1", 3)
    incomplete = why.no_custody()
    fail = why.mkt(900, 800)
    assert verdict_of([]) == "PASS"
    assert verdict_of([note]) == "PASS"
    assert verdict_of([note, incomplete]) == "INCOMPLETE"
    assert verdict_of([incomplete, fail, note]) == "FAIL"


def test_reason_document_members_and_texts():
    r = why.lost(2, "tl-truck", 1_790_007_200, 1_790_008_700, 8, 9)
    assert r.to_json() == {
        "code": "lost",
        "severity": "note",
        "leg": 2,
        "device": "tl-truck",
        "from": 1_790_007_200,
        "to": 1_790_008_700,
        "value": 2,
        "detail": "8..9",
        "text": "leg 2: tl-truck lost 2 records (seqs 8..9) between 2026-09-21T16:13:20Z "
        "and 2026-09-21T16:38:20Z, as it declared",
    }
    assert why.excursion("low", 0, 1800, -250, 1800).text == (
        "Low excursion from 1970-01-01T00:00:00Z to 1970-01-01T00:30:00Z (30 min), "
        "peak -2.50 °C, reaching the alarm delay of 30 min"
    )
    assert why.excursion("high", 0, 1799, 401, 1800).severity == "note"
    assert why.cumulative(7230, 7200).text == (
        "2 h 0 min 30 s out of range in all, reaching the limit of 2 h 0 min"
    )
    assert why.unmonitored(3, 0, 60, "no_authority", "dc:x").text == (
        "leg 3: no pinned registry speaks for dc:x from 1970-01-01T00:00:00Z "
        "to 1970-01-01T00:01:00Z"
    )
    assert why.no_profile("lot_required", "09506000134352", "L1").text == (
        "GTIN 09506000134352 has lot-specific profiles, but the one for lot L1 is not in the bundle"
    )
