"""Properties of the alert engine over arbitrary reading streams (hypothesis).

A stream is one device channel at one place, readings at strictly increasing
times, each a temperature (0.01 °C) or a sensor fault. The profile is drawn
too. The properties are what an operator relies on: no alert while always
inside the range, one start and at most one end per excursion, end after
start, peak/min/max are the extremes of the readings in the excursion
window, MKT and mean lie between min and max, alarms are never early, and a
delay-only profile alarms exactly where a plain model says it must.
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alerts import AlertEngine, AlertEvent
from gateway.profiles import Profile

PLACE = "wh-7/room"
LOW, HIGH = 200, 800

Reading = tuple[int, int | None, int | None]  # (time, temp, fault)


@st.composite
def streams(draw: st.DrawFn, *, inside_only: bool = False) -> list[Reading]:
    n = draw(st.integers(1, 60))
    gaps = draw(st.lists(st.integers(1, 1500), min_size=n, max_size=n))
    temps = st.integers(LOW, HIGH) if inside_only else st.integers(-500, 1500)
    out: list[Reading] = []
    t = draw(st.integers(0, 10**9))
    for i, gap in enumerate(gaps):
        t += gap
        if i > 0 and draw(st.integers(0, 9)) == 0:
            out.append((t, None, draw(st.integers(1, 7))))
        else:
            out.append((t, draw(temps), None))
    return out


@st.composite
def profiles(draw: st.DrawFn, *, cumulative: bool = True) -> Profile:
    return Profile(
        "p",
        LOW,
        HIGH,
        delay=draw(st.sampled_from([0, 300, 600, 1800, 3600])),
        cumulative=draw(st.sampled_from([None, 600, 1800, 5400])) if cumulative else None,
        window=draw(st.sampled_from([3600, 86400])),
        ignore=draw(st.sampled_from([0, 0, 1200])),
        fault_delay=draw(st.sampled_from([0, 1200, 10**6])),
    )


def run(profile: Profile, stream: list[Reading]) -> list[AlertEvent]:
    engine = AlertEngine({PLACE: profile}, lambda: 0.0)
    events: list[AlertEvent] = []
    for t, temp, fault in stream:
        events += engine.observe("tl-1", PLACE, t, temp, fault)
    return events


def excursions(events: list[AlertEvent]) -> list[AlertEvent]:
    return [e for e in events if e.kind == "excursion"]


def judged(profile: Profile, stream: list[Reading]) -> list[tuple[int, int]]:
    """(time, temp) of the valid readings outside the ignore period."""
    t0 = stream[0][0]
    return [(t, temp) for t, temp, _ in stream if temp is not None and t >= t0 + profile.ignore]


@settings(max_examples=150, deadline=None)
@given(profiles(), streams(inside_only=True))
def test_no_excursion_alert_while_always_inside(profile: Profile, stream: list[Reading]) -> None:
    assert excursions(run(profile, stream)) == []


@settings(max_examples=200, deadline=None)
@given(profiles(), streams())
def test_one_start_at_most_one_end_and_end_after_start(
    profile: Profile, stream: list[Reading]
) -> None:
    events = run(profile, stream)
    phases: dict[str, list[str]] = defaultdict(list)
    for e in events:
        phases[e.id].append(e.phase)
    for id_, seen in phases.items():
        assert seen in (["start"], ["start", "end"]), (id_, seen)
    by_id = {(e.id, e.phase): e for e in events}
    for (id_, phase), e in by_id.items():
        if phase == "end":
            start = by_id[(id_, "start")]
            assert start.start == e.start <= start.time <= e.time == e.end
            assert e.duration == e.end - e.start
    # At most one excursion alarm is open at any moment on one stream.
    open_ = 0
    for e in excursions(events):
        open_ += 1 if e.phase == "start" else -1
        assert open_ in (0, 1)


@settings(max_examples=200, deadline=None)
@given(profiles(), streams())
def test_figures_are_the_extremes_of_the_excursion_window(
    profile: Profile, stream: list[Reading]
) -> None:
    readings = judged(profile, stream)
    for e in excursions(run(profile, stream)):
        until = e.end if e.end is not None else e.time + 1
        window = [temp for t, temp in readings if e.start <= t < until]
        assert window, e
        assert len(window) == e.readings
        side = [profile.side(temp) for temp in window]
        assert set(side) == {e.side}  # every reading of the excursion is on its side
        assert e.min_centi == min(window) and e.max_centi == max(window)
        assert e.peak_centi == (max(window) if e.side == "high" else min(window))
        assert e.limit_centi == (HIGH if e.side == "high" else LOW)
        if e.phase == "end":
            assert e.mean_centi is not None and e.mkt_centi is not None
            assert e.min_centi <= e.mean_centi <= e.max_centi
            assert e.min_centi <= e.mkt_centi <= e.max_centi
            assert e.mkt_centi >= e.mean_centi - 1  # MKT weighs warm periods more (Jensen)


@settings(max_examples=200, deadline=None)
@given(profiles(), streams())
def test_alarms_are_never_early(profile: Profile, stream: list[Reading]) -> None:
    for e in excursions(run(profile, stream)):
        if e.phase != "start":
            continue
        assert e.reason in ("delay", "cumulative")
        if e.reason == "delay":
            assert e.time - e.start >= profile.delay
        else:
            assert profile.cumulative is not None
            assert e.time - e.start < profile.delay
            assert e.outside_seconds is not None and e.outside_seconds >= profile.cumulative


@settings(max_examples=200, deadline=None)
@given(profiles(cumulative=False), streams())
def test_delay_only_profile_matches_a_plain_model(profile: Profile, stream: list[Reading]) -> None:
    """Runs of readings on one side; alarm at the first one `delay` after the run began."""
    want: list[tuple[str, str, int, int]] = []  # (phase, side, start, time)
    run_side: str | None = None
    run_start = 0
    alarmed = False
    for t, temp in judged(profile, stream):
        side = profile.side(temp)
        if side != run_side:
            if run_side is not None and alarmed:
                want.append(("end", run_side, run_start, t))
            run_side, run_start, alarmed = side, t, False
        if side is not None and not alarmed and t - run_start >= profile.delay:
            want.append(("start", side, run_start, t))
            alarmed = True
    got = [(e.phase, e.side, e.start, e.time) for e in excursions(run(profile, stream))]
    assert got == want


@settings(max_examples=200, deadline=None)
@given(profiles(), streams())
def test_faults_change_no_excursion(profile: Profile, stream: list[Reading]) -> None:
    """Removing the faulted readings leaves the excursion alerts exactly as they were."""
    without = [r for r in stream if r[1] is not None]
    with_faults = [e for e in run(profile, stream) if e.kind == "excursion"]
    assert with_faults == excursions(run(profile, without))


@settings(max_examples=200, deadline=None)
@given(profiles(), streams())
def test_sensor_fault_alarm_only_after_its_delay(profile: Profile, stream: list[Reading]) -> None:
    for e in run(profile, stream):
        if e.kind == "sensor_fault" and e.phase == "start":
            assert e.time - e.start >= profile.fault_delay
            faults = [t for t, temp, _ in stream if temp is None and e.start <= t <= e.time]
            assert faults and faults[0] == e.start and faults[-1] == e.time
