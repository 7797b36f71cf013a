"""Excursion, sensor-fault and offline alerts (gateway/alerts.py, gateway/profiles.py)."""

from __future__ import annotations

import json
from decimal import Decimal, getcontext

import pytest

from gateway.alerts import AlertEngine, AlertEvent, mkt_centi
from gateway.profiles import (
    CHILLED,
    FROZEN,
    PHARMA,
    Profile,
    ProfileBook,
    ProfileError,
)
from protocol import analytics

ROOM = "wh-7/cold-room-1"
STEP = 600  # a reading every 10 minutes


class Clock:
    def __init__(self, now: int = 1_790_000_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return float(self.now)


def feed(
    engine: AlertEngine,
    temps: list[int | None],
    *,
    t0: int = 0,
    step: int = STEP,
    device: str = "tl-1",
    place: str | None = ROOM,
    fault: int = 2,
) -> list[AlertEvent]:
    """Readings every ``step`` s from ``t0``; None is a faulted reading."""
    events: list[AlertEvent] = []
    for i, temp in enumerate(temps):
        events += engine.observe(
            device, place, t0 + i * step, temp, fault if temp is None else None
        )
    return events


def engine_for(profile: Profile, **kw: int) -> AlertEngine:
    return AlertEngine({ROOM: profile}, Clock(), **kw)


# --- profiles ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "inside", "outside"),
    [
        (FROZEN, [-1800, -2500, -10000], [(-1799, "high"), (0, "high")]),
        (CHILLED, [0, 200, 400], [(-1, "low"), (401, "high")]),
        (PHARMA, [200, 500, 800], [(199, "low"), (801, "high")]),
    ],
)
def test_builtin_profile_bounds_are_inclusive(
    profile: Profile, inside: list[int], outside: list[tuple[int, str]]
) -> None:
    assert [profile.side(t) for t in inside] == [None] * len(inside)
    assert [profile.side(t) for t, _ in outside] == [side for _, side in outside]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"low": None, "high": None},
        {"low": 500, "high": 400},
        {"low": 0, "high": 20000},
        {"low": 0.5, "high": 4},
        {"low": 0, "high": 400, "delay": -1},
        {"low": 0, "high": 400, "cumulative": 0},
    ],
)
def test_unusable_profiles_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ProfileError):
        Profile("x", **kwargs)  # type: ignore[arg-type]


def test_profile_book_from_config() -> None:
    book = ProfileBook.from_config(
        {
            "default": "chilled",
            "profiles": {
                "vaccines": {"low": 200, "high": 800, "delay": 300, "cumulative": 1200},
                "frozen": {"delay": 600},  # override a built-in setting
            },
            "places": {
                "wh-7/freezer-*": "frozen",
                "wh-7/freezer-9": "vaccines",
                "wh-7/fridge": "vaccines",
            },
        }
    )
    assert book.for_place("wh-7/freezer-1") == Profile(
        "frozen", None, -1800, delay=600, cumulative=7200
    )
    assert book.for_place("wh-7/freezer-9").name == "vaccines"  # exact beats glob
    assert book.for_place("wh-7/fridge").delay == 300
    assert book.for_place("elsewhere") == CHILLED  # default
    assert ProfileBook().for_place("elsewhere") is None
    with pytest.raises(ProfileError, match="unknown profile"):
        ProfileBook.from_config({"places": {"x": "nope"}})
    with pytest.raises(ProfileError, match="unknown settings"):
        ProfileBook.from_config({"profiles": {"x": {"low": 0, "hgih": 5}}})


# --- excursions ------------------------------------------------------------------------------


def test_readings_inside_the_range_raise_nothing() -> None:
    assert feed(engine_for(CHILLED), [0, 400, 250, 399, 1, 400] * 20) == []


def test_short_excursion_under_the_delay_raises_nothing() -> None:
    # 2 readings out = 1200 s outside < 1800 s delay
    assert feed(engine_for(CHILLED), [300, 500, 520, 300, 300]) == []


def test_excursion_alarms_after_the_delay_and_ends_with_its_figures() -> None:
    clock = Clock()
    engine = AlertEngine({ROOM: CHILLED}, clock)
    temps = [300, 450, 500, 700, 650, 300, 310]
    events = feed(engine, temps, t0=1000)
    start, end = events
    assert (start.kind, start.phase, start.reason) == ("excursion", "start", "delay")
    assert start.start == 1000 + 1 * STEP  # the first reading outside
    assert start.time == 1000 + 4 * STEP  # 1800 s later: the delay reached
    assert (start.peak_centi, start.min_centi, start.max_centi) == (700, 450, 700)
    assert (start.side, start.limit_centi, start.profile, start.place) == (
        "high",
        400,
        "chilled",
        ROOM,
    )
    assert (end.phase, end.cause) == ("end", "in_range")
    assert end.id == start.id
    assert end.end == 1000 + 5 * STEP  # the first reading back inside
    assert end.duration == 4 * STEP
    assert (end.peak_centi, end.min_centi, end.max_centi, end.readings) == (700, 450, 700, 4)
    # Sample-and-hold, 600 s each: mean = (450 + 500 + 700 + 650) / 4 = 575
    assert end.mean_centi == 575
    assert end.mkt_centi == mkt_centi([(450, 1), (500, 1), (700, 1), (650, 1)])
    assert start.raised == end.raised == clock.now


def test_excursion_figures_are_the_protocols_analytics() -> None:
    # Readings hold until the next: 500 over [600, 1200), 700 over [1200, 1800).
    events = feed(engine_for(Profile("p", 0, 400, delay=0)), [300, 500, 700, 300])
    start, end = events
    assert (end.start, end.end, end.duration, end.peak_centi) == (600, 1800, 1200, 700)
    want = analytics.Excursion("high", 400)
    want.extend(600, 1200, 500)
    want.extend(1200, 1800, 700)
    assert end.degree_minutes == want.degree_minutes == (100 * 600 + 300 * 600) // 60
    assert end.mean_centi == analytics.mean_centi([(500, 600), (700, 600)]) == 600
    assert end.mkt_centi == analytics.mkt_centi([(500, 600), (700, 600)])
    assert start.degree_minutes == 0  # nothing held yet at the first reading outside


def test_peak_is_the_extreme_on_the_side_of_the_excursion() -> None:
    # frozen has only an upper limit: warming is the excursion, peak = the warmest
    events = feed(engine_for(FROZEN), [-2000, -1700, -1500, -1600, -1650, -1900])
    assert [(e.phase, e.side, e.peak_centi) for e in events] == [
        ("start", "high", -1500),
        ("end", "high", -1500),
    ]
    # too cold: peak = the coldest
    events = feed(engine_for(PHARMA), [500, 150, 100, 120, 190, 500])
    assert [(e.phase, e.side, e.peak_centi) for e in events] == [
        ("start", "low", 100),
        ("end", "low", 100),
    ]


def test_zero_delay_alarms_at_the_first_reading_outside() -> None:
    engine = engine_for(Profile("strict", 200, 800, delay=0))
    events = feed(engine, [500, 900, 500])
    assert [(e.phase, e.time, e.duration) for e in events] == [
        ("start", 600, None),
        ("end", 1200, 600),
    ]


def test_cumulative_limit_catches_repeated_short_excursions() -> None:
    profile = Profile("p", 200, 800, delay=3600, cumulative=1800, window=86400)
    engine = engine_for(profile)
    # Three 600 s excursions, each far below the 3600 s delay.
    assert feed(engine, [500, 900, 500], t0=0) == []
    assert feed(engine, [900, 500], t0=3000) == []
    events = feed(engine, [900, 900, 500], t0=6000)
    start, end = events
    assert (start.reason, start.time, start.outside_seconds) == ("cumulative", 6600, 1800)
    assert (end.duration, end.outside_seconds) == (1200, 2400)


def test_cumulative_limit_uses_a_rolling_window_and_each_side_separately() -> None:
    profile = Profile("p", 200, 800, delay=3600, cumulative=1800, window=7200)
    engine = engine_for(profile)
    assert feed(engine, [900, 900, 500], t0=0) == []  # 1200 s high
    assert feed(engine, [100, 100, 500], t0=3000) == []  # 1200 s low: another side
    # 1200 s high again, but the first high excursion has left the 2 h window.
    assert feed(engine, [900, 900, 500], t0=9000) == []
    events = feed(engine, [900, 900], t0=12000)
    assert [(e.phase, e.reason, e.outside_seconds) for e in events] == [
        ("start", "cumulative", 1800)
    ]


def test_ignore_period_after_a_device_starts_at_a_place() -> None:
    profile = Profile("p", 200, 800, delay=0, ignore=3600)
    engine = engine_for(profile)
    assert feed(engine, [2000] * 6) == []  # 0 ... 3000 s: ignored
    events = feed(engine, [2000], t0=3600)
    assert [(e.phase, e.start) for e in events] == [("start", 3600)]


def test_moving_to_another_place_ends_the_excursion_and_restarts_the_ignore_period() -> None:
    book = ProfileBook(places={"a": "chilled", "b": "frozen"})
    engine = AlertEngine(book, Clock())
    events = feed(engine, [900] * 5, place="a")
    assert [e.phase for e in events] == ["start"]
    events = engine.observe("tl-1", "b", 3000, -2500, None)
    assert [(e.phase, e.cause, e.place, e.end) for e in events] == [
        ("end", "place_changed", "a", 3000)
    ]
    assert feed(engine, [-2500, -2600], t0=3600, place="b") == []


def test_side_change_ends_one_excursion_and_starts_another() -> None:
    engine = engine_for(Profile("p", 200, 800, delay=0))
    events = feed(engine, [900, 100, 500])
    assert [(e.side, e.phase, e.cause) for e in events] == [
        ("high", "start", None),
        ("high", "end", "side_changed"),
        ("low", "start", None),
        ("low", "end", "in_range"),
    ]


def test_late_readings_are_not_judged() -> None:
    engine = engine_for(Profile("p", 200, 800, delay=0))
    feed(engine, [500, 500], t0=6000)
    assert engine.observe("tl-1", ROOM, 100, 2000, None) == []
    assert engine.late == 1


def test_channels_are_separate_streams() -> None:
    engine = engine_for(Profile("p", 200, 800, delay=0))
    assert len(engine.observe("tl-1", ROOM, 0, 900, None, channel=0)) == 1
    assert len(engine.observe("tl-1", ROOM, 0, 900, None, channel=1)) == 1
    assert engine.observe("tl-1", ROOM, 600, 500, None, channel=1)[0].phase == "end"
    assert [e.channel for e in engine.active()] == [0]


def test_unmonitored_place_raises_no_excursions() -> None:
    engine = AlertEngine(ProfileBook(), Clock())
    assert feed(engine, [5000] * 10, place="unbound") == []
    assert feed(engine, [5000] * 10, place=None, device="tl-2") == []


def test_a_reading_needs_exactly_one_of_temperature_and_fault() -> None:
    engine = engine_for(CHILLED)
    with pytest.raises(ValueError):
        engine.observe("tl-1", ROOM, 0, None, None)
    with pytest.raises(ValueError):
        engine.observe("tl-1", ROOM, 0, 300, 3)


# --- sensor faults -------------------------------------------------------------------------------


def test_sensor_fault_alarms_after_its_delay_and_ends_on_a_valid_reading() -> None:
    engine = engine_for(Profile("p", 200, 800, fault_delay=1200))
    assert feed(engine, [500, None, None, 500]) == []  # 600 s of faults < 1200 s
    events = feed(engine, [None, None, None, 500], t0=6000, fault=3)
    start, end = events
    assert (start.kind, start.phase, start.start, start.time, start.fault) == (
        "sensor_fault",
        "start",
        6000,
        7200,
        3,
    )
    assert (end.phase, end.cause, end.end, end.duration, end.faults) == (
        "end",
        "recovered",
        7800,
        1800,
        3,
    )
    assert start.id == end.id
    assert start.peak_centi is None and start.side is None


def test_faults_are_never_temperatures() -> None:
    # DS18B20's 85 °C power-on value arrives as fault 3, never as temp 8500.
    engine = engine_for(Profile("p", 200, 800, delay=0, fault_delay=10**6))
    assert feed(engine, [500, None, None, None, 500], fault=3) == []


def test_faults_neither_end_nor_extend_an_excursion() -> None:
    engine = engine_for(Profile("p", 200, 800, delay=1800, fault_delay=10**6))
    events = feed(engine, [900, None, None, 950, 500])
    start, end = events
    assert start.time == 1800 and start.readings == 2  # the faults are not readings
    assert (end.end, end.duration, end.peak_centi, end.readings) == (2400, 2400, 950, 2)
    # 900 held from 0 to 1800 (through the faults), 950 from 1800 to 2400:
    # (900 * 1800 + 950 * 600) / 2400 = 912.5, rounded half away from zero
    assert end.mean_centi == 913


def test_faults_on_an_unmonitored_place_still_alarm() -> None:
    engine = AlertEngine(ProfileBook(), Clock(), fault_delay=0)
    events = engine.observe("tl-9", "unbound", 50, None, 1)
    assert [(e.kind, e.phase, e.fault) for e in events] == [("sensor_fault", "start", 1)]


# --- readings taken before the device's clock was set (tq 0) ---------------------------------

MIN_TIME = 1_577_836_800  # ingest's min_time: 2020-01-01


def test_an_unset_clock_never_dates_an_alert_1970() -> None:
    """Readings with tq 0 count seconds from the device's start: the alert is dated at
    the gateway's receive time and says the clock was unset."""
    clock = Clock(1_790_000_000)
    engine = AlertEngine({ROOM: Profile("p", 200, 800, delay=0)}, clock, min_time=MIN_TIME)
    (start,) = engine.observe("tl-1", ROOM, 0, 900, None, tq=0, received=1_790_000_005)
    assert (start.start, start.time, start.clock_unset) == (1_790_000_005, 1_790_000_005, True)
    clock.now = 1_790_000_400
    (end,) = engine.observe("tl-1", ROOM, 1_790_000_390, 500, None, tq=3)
    assert (end.start, end.end, end.duration) == (1_790_000_005, 1_790_000_390, 385)
    assert end.clock_unset is True
    doc = json.loads(end.to_json())
    assert doc["clock_unset"] is True and doc["start"] >= MIN_TIME


def test_a_set_clock_before_min_time_is_not_believed_either() -> None:
    clock = Clock(1_790_000_000)
    engine = AlertEngine({ROOM: Profile("p", 200, 800, delay=0)}, clock, min_time=MIN_TIME)
    (start,) = engine.observe("tl-1", ROOM, 12, 900, None, tq=2)
    assert (start.start, start.clock_unset) == (1_790_000_000, True)


def test_a_20_second_excursion_across_the_clock_set_is_no_delay_alarm() -> None:
    """The operator's case: a logger switched on warm reads out of range for 20 s, its
    clock is set at the first upload, and it is cold from then on. The excursion lasted
    20 s, under the profile's 30 min delay: no alarm (the verdict makes it a note), not
    a "delay" alarm from second 0 of the device's clock to 2026."""
    clock = Clock(1_790_000_000)
    engine = AlertEngine({ROOM: CHILLED}, clock, min_time=MIN_TIME)
    received = 1_790_000_000
    events = []
    for t in (0, 10):  # warm, before the clock was set: device seconds since power-on
        events += engine.observe("tl-1", ROOM, t, 2100, None, tq=0, received=received)
    events += engine.observe("tl-1", ROOM, received + 10, 900, None, tq=3)
    events += engine.observe("tl-1", ROOM, received + 20, 300, None, tq=3)
    assert events == []
    # The same warm start lasting the profile's delay is an excursion alarm, dated right.
    engine = AlertEngine({ROOM: CHILLED}, clock, min_time=MIN_TIME)
    engine.observe("tl-1", ROOM, 0, 2100, None, tq=0, received=received)
    (start,) = engine.observe("tl-1", ROOM, received + CHILLED.delay, 900, None, tq=3)
    assert (start.reason, start.start, start.clock_unset) == ("delay", received, True)


# --- offline -------------------------------------------------------------------------------------


def uploads(engine: AlertEngine, clock: Clock, device: str, every: int, n: int) -> None:
    """``n`` uploads of a sleeping logger, ``every`` s apart: online, a few records, sleep."""
    for _ in range(n):
        engine.state(device, online=True)
        engine.observe(device, None, clock.now - 60, 400, None)  # its readings
        for k in range(3):  # a batch of records over a few seconds is one upload
            engine.seen(device, clock.now + k)
        engine.state(device, online=False)  # the firmware says offline as it sleeps
        clock.now += every


def test_a_logger_uploading_every_15_min_is_not_offline_at_20_min() -> None:
    clock = Clock(1_790_000_000)
    engine = AlertEngine(ProfileBook(), clock, offline_missed=2, offline_grace=300)
    uploads(engine, clock, "tl-1", 900, 5)
    last = engine.cadence.last("tl-1")
    assert last is not None
    assert engine.cadence.interval("tl-1") == (900, "observed")
    clock.now = last + 20 * 60  # 20 min of silence: one upload missed, no more
    assert engine.tick() == []
    clock.now = last + 2 * 900 + 300 - 1
    assert engine.tick() == []
    clock.now = last + 2 * 900 + 300  # two uploads missed, and the grace
    (start,) = engine.tick()
    assert (start.kind, start.phase, start.start, start.time) == (
        "offline",
        "start",
        last,
        clock.now,
    )
    assert (start.interval, start.reason) == (900, "missed_uploads")
    assert engine.tick() == []  # one alarm per outage
    clock.now += 600
    (end,) = engine.seen("tl-1")
    assert (end.phase, end.id, end.cause, end.duration) == ("end", start.id, "seen", 2 * 900 + 900)


def test_the_state_topic_alone_raises_no_offline_alarm() -> None:
    """The last will (or the firmware's offline before sleep) is not an outage."""
    clock = Clock(1000)
    engine = AlertEngine(ProfileBook(), clock, upload_interval=3600)
    assert engine.state("tl-1", online=False) == []
    clock.now = 10**6
    assert engine.tick() == []  # never heard from: nothing to miss


def test_before_its_cadence_is_seen_a_device_gets_the_configured_interval() -> None:
    clock = Clock(1000)
    engine = AlertEngine(ProfileBook(), clock, upload_interval=3600, upload_intervals={"tl-2": 600})
    engine.observe("tl-1", None, 900, 400, None)
    engine.seen("tl-1")
    engine.seen("tl-2")  # a reader: judged only because it has a configured interval
    assert engine.cadence.interval("tl-1") == (3600, "default")
    assert engine.cadence.interval("tl-2") == (600, "configured")
    clock.now = 1000 + 2 * 600 + 300
    assert [e.device for e in engine.tick()] == ["tl-2"]
    clock.now = 1000 + 2 * 3600 + 300
    assert [e.device for e in engine.tick()] == ["tl-1"]


def test_a_reader_uploads_when_it_scans_and_is_not_judged_offline() -> None:
    clock = Clock(1000)
    engine = AlertEngine(ProfileBook(), clock)
    for gap in (40, 40, 40, 40):  # a burst of scans, then the night
        engine.seen("rd-1")
        clock.now += gap
    clock.now += 12 * 3600
    assert engine.tick() == []


def test_the_observed_interval_has_a_floor_and_ignores_one_odd_gap() -> None:
    clock = Clock(1000)
    engine = AlertEngine(ProfileBook(), clock)
    uploads(engine, clock, "tl-fast", 35, 6)  # an alarm made it upload at once, often
    assert engine.cadence.interval("tl-fast") == (60, "observed")
    for gap in (600, 600, 45, 600, 600):  # one urgent upload among regular ones
        uploads(engine, clock, "tl-2", gap, 1)
    assert engine.cadence.interval("tl-2") == (600, "observed")


def test_after_a_restart_nobody_is_offline_for_what_the_gateway_missed() -> None:
    clock = Clock(1_790_000_000)
    engine = AlertEngine(ProfileBook(), clock)
    uploads(engine, clock, "tl-1", 900, 5)
    snap = json.loads(json.dumps(engine.snapshot()))
    clock.now += 3 * 3600  # the gateway was down for three hours
    restored = AlertEngine.restore(snap, ProfileBook(), clock)
    assert restored.tick() == []
    assert restored.cadence.interval("tl-1") == (900, "observed")
    clock.now += 2 * 900 + 300
    assert [e.kind for e in restored.tick()] == ["offline"]


# --- MKT -----------------------------------------------------------------------------------------


def mkt_reference(samples: list[tuple[int, int]]) -> Decimal:
    """USP <1079> formula, 50 significant digits, straight from the definition."""
    getcontext().prec = 50
    dh_r = Decimal(83144) / Decimal("8.3144")  # ΔH/R = 10,000 K
    total = sum(Decimal(w) for _, w in samples)
    acc = sum(Decimal(w) * (-dh_r / ((Decimal(t) + 27315) / 100)).exp() for t, w in samples)
    kelvin = dh_r / -(acc / total).ln()
    return kelvin * 100 - 27315


@pytest.mark.parametrize(
    "samples",
    [
        [(2000, 1), (2500, 1), (3000, 1)],
        [(250, 600), (800, 600), (1200, 1200), (-300, 60)],
        [(-2500, 1), (-1800, 3), (-500, 1)],
        [(4000, 1), (200, 50)],
        [(t, 1) for t in range(-1000, 4000, 7)],
    ],
)
def test_mkt_matches_the_usp_formula(samples: list[tuple[int, int]]) -> None:
    want = mkt_reference(samples)
    assert abs(mkt_centi(samples) - want) <= Decimal("0.5") + Decimal("1e-9")


def test_mkt_of_a_constant_is_that_constant_exactly() -> None:
    for t in (-10000, -1800, 0, 1, 400, 2500, 15000):
        assert mkt_centi([(t, 600)] * 10_000) == t


def test_mkt_weighs_warm_periods_more_than_the_mean() -> None:
    # 20 °C and 30 °C half the time each: the mean is 25 °C, the MKT is higher.
    assert mkt_centi([(2000, 1), (3000, 1)]) > 2500


def test_mkt_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        mkt_centi([])


# --- events, inspection, persistence --------------------------------------------------------------


def test_event_json_is_stable_and_complete() -> None:
    engine = engine_for(Profile("p", 200, 800, delay=0))
    (start,) = feed(engine, [900])
    doc = json.loads(start.to_json())
    assert doc["format"] == "coldtrace-alert" and doc["version"] == 1
    assert set(doc) == {"format", "version", *AlertEvent.__dataclass_fields__}
    assert doc["end"] is None and doc["peak_centi"] == 900
    assert start.to_json() == json.dumps(doc, sort_keys=True, separators=(",", ":"))


def test_active_lists_open_alarms() -> None:
    clock = Clock(0)
    engine = AlertEngine({ROOM: Profile("p", 200, 800, delay=0, fault_delay=0)}, clock)
    feed(engine, [900, 950], device="tl-1")
    feed(engine, [None], device="tl-2")
    engine.observe("tl-3", None, 0, 400, None)
    engine.seen("tl-3", 0)
    clock.now = 10_000
    engine.tick()
    active = {(e.kind, e.device): e for e in engine.active()}
    assert set(active) == {("excursion", "tl-1"), ("sensor_fault", "tl-2"), ("offline", "tl-3")}
    assert active[("excursion", "tl-1")].peak_centi == 950
    assert all(e.phase == "active" for e in active.values())


def test_snapshot_and_restore_continue_without_repeating_a_start() -> None:
    profile = Profile("p", 200, 800, delay=600, cumulative=3000)
    engine = engine_for(profile)
    first = feed(engine, [900, 1000, 950])
    assert [e.phase for e in first] == ["start"]
    snap = json.loads(json.dumps(engine.snapshot()))  # survives JSON
    restored = AlertEngine.restore(snap, {ROOM: profile}, Clock())
    later = feed(restored, [980, 500], t0=3 * STEP)
    assert [(e.phase, e.id) for e in later] == [("end", first[0].id)]
    assert (later[0].duration, later[0].peak_centi, later[0].readings) == (4 * STEP, 1000, 4)
    # Same figures as an engine that never stopped.
    whole = feed(engine_for(profile), [900, 1000, 950, 980, 500])
    assert whole[-1].mkt_centi == later[0].mkt_centi and whole[-1].mean_centi == later[0].mean_centi
