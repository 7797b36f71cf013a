"""One device's records as evidence (docs/protocol.md §12.6 steps 2-3), called directly."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from protocol.completeness import DeviceRecords, Loss, subtract, union
from protocol.custody import date_records
from protocol.record import Reading, Status
from tests.protocol.traces import T0, Signer

intervals = st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), max_size=12)


@given(intervals, st.integers(0, 100), st.integers(0, 100))
def test_union_and_subtract_agree_with_sets_of_seconds(parts, x, y):
    merged = union(parts)
    seconds = {t for s, e in parts for t in range(s, e)}
    assert {t for s, e in merged for t in range(s, e)} == seconds
    assert all(a[1] < b[0] for a, b in pairwise(merged))  # not touching
    rest = subtract(x, y, merged)
    assert {t for s, e in rest for t in range(s, e)} == set(range(x, y)) - seconds
    assert all(a[1] < b[0] for a, b in pairwise(rest))  # maximal parts


def device(*steps: tuple[str, int, dict[str, int]]) -> DeviceRecords:
    """Records of one device: ("r", t, fields) a reading, ("s", t, fields) a status,
    ("skip", n, {}) n seqs never sent."""
    dev = Signer("tl-x")
    records = []
    for what, t, kw in steps:
        if what == "skip":
            dev.seq += t
        elif what == "r":
            records.append(dev.sign(Reading, t, **({"temp": 300} | kw)))
        else:
            records.append(dev.sign(Status, t, **kw))
    return DeviceRecords(records, date_records(records))


def test_runs_join_across_declared_losses_only():
    dev = device(
        ("r", T0, {}),
        ("r", T0 + 60, {}),
        ("skip", 2, {}),  # seqs 2, 3
        ("s", T0 + 200, {"event": 11, "detail": 2, "lost": 2}),
        ("r", T0 + 300, {}),
        ("skip", 1, {}),  # seq 6: not declared
        ("r", T0 + 500, {}),
        ("r", T0 + 600, {}),
    )
    assert [len(run) for run in dev.runs] == [2, 2, 2]
    assert dev.spans == [(T0, T0 + 300), (T0 + 500, T0 + 600)]
    assert dev.missing(T0 - 10, T0 + 700) == [
        (T0 - 10, T0),
        (T0 + 300, T0 + 500),
        (T0 + 600, T0 + 700),
    ]
    assert dev.losses == [Loss(2, 3, T0 + 60, T0 + 200)]
    assert dev.losses_in(T0 + 100, T0 + 150) == dev.losses
    assert dev.losses_in(T0 + 200, T0 + 900) == []  # the loss ends where [x, y) starts
    assert dev.losses_in(T0, T0 + 61) == dev.losses


def test_a_declaration_must_cover_the_whole_gap():
    dev = device(
        ("r", T0, {}),
        ("skip", 3, {}),  # seqs 1..3
        ("s", T0 + 100, {"event": 11, "detail": 2, "lost": 1}),
        ("s", T0 + 110, {"event": 11, "detail": 1, "lost": 3}),
    )
    # two declarations do not add up: the runs stay apart
    assert dev.losses == [] and dev.missing(T0, T0 + 110) == [(T0, T0 + 100)]


def test_readings_stand_until_the_next_reading_of_their_channel_in_the_run():
    dev = device(
        ("r", T0, {"ch": 0}),
        ("r", T0 + 10, {"ch": 1, "temp": 500}),
        ("r", T0 + 60, {"ch": 0}),
        ("s", T0 + 100, {"event": 2}),
        ("skip", 1, {}),
        ("r", T0 + 200, {}),
    )
    held = [(h.start, h.end, h.channel, h.temp) for h in dev.readings(gap=3600)]
    assert sorted(held) == [
        (T0, T0 + 60, 0, 300),
        (T0 + 10, T0 + 100, 1, 500),  # no next ch-1 reading: the run's last dated record
        (T0 + 60, T0 + 100, 0, 300),
    ]  # the reading after the gap is alone in its run: it stands for nothing
    assert [(h.start, h.end) for h in dev.readings(gap=30) if h.channel == 0] == [
        (T0 + 60, T0 + 90),
        (T0, T0 + 30),
    ]
