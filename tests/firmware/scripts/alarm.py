"""Alarm logic: thresholds, delay, cumulative, ignore period, latch, state."""

import ct_alarm
from ct_alarm import EV_END, EV_START, HIGH, LATCHED, LOW, Alarm
from fwrun import main, raises

MIN = 60


def feed(a, series, t0=0, step=10 * MIN):
    out = []
    for i, temp in enumerate(series):
        for ev in a.update(t0 + i * step, temp):
            out.append((i,) + ev)  # noqa: RUF005 - MicroPython has no (a, *b)
    return out


def test_single_alarm_after_delay_and_end_with_peak():
    a = Alarm(800, 200, delay=30 * MIN)
    ev = feed(a, [500, 900, 950, 1020, 990, 700, 500])
    # beyond from i=1 (t=10 min); 30 min later is i=4
    assert ev == [(4, EV_START, HIGH, 1020), (5, EV_END, HIGH, 1020)]
    assert a.bits == LATCHED


def test_short_excursion_below_delay_raises_nothing():
    a = Alarm(800, 200, delay=30 * MIN)
    assert feed(a, [500, 900, 950, 500, 900, 500]) == []
    assert a.bits == 0


def test_zero_delay_is_immediate_and_low_side_peak_is_minimum():
    a = Alarm(800, 200)
    ev = feed(a, [500, 150, 90, 120, 300])
    assert ev == [(1, EV_START, LOW, 150), (4, EV_END, LOW, 90)]


def test_cumulative_alarm_adds_up_separate_excursions():
    a = Alarm(800, 200, delay=60 * MIN, cum=40 * MIN)
    # three 20-minute excursions (3 readings beyond each), none reaches 60 min
    series = [500, 900, 900, 900, 500, 900, 900, 900, 500]
    ev = feed(a, series)
    assert ev == [(7, EV_START, HIGH, 900), (8, EV_END, HIGH, 900)]
    assert a.hi.cum >= 40 * MIN


def test_ignore_period_after_start():
    a = Alarm(800, 200, ignore=30 * MIN, start=0)
    ev = feed(a, [2500, 2000, 1500, 900, 500])
    # readings at 0, 10, 20 min are ignored; 30 min is beyond -> alarm
    assert ev == [(3, EV_START, HIGH, 900), (4, EV_END, HIGH, 900)]


def test_fault_readings_stop_the_clock():
    a = Alarm(800, 200, delay=20 * MIN)
    ev = feed(a, [900, None, 900, 900, 900])
    # the fault at i=1 restarts the single delay: beyond again from i=2
    assert ev == [(4, EV_START, HIGH, 900)]


def test_latch_survives_end_until_cleared():
    a = Alarm(800, 200)
    feed(a, [900, 500])
    assert a.bits == LATCHED
    a.clear_latch()
    assert a.bits == 0


def test_bits_while_active():
    a = Alarm(800, 200)
    a.update(0, 900)
    assert a.bits == HIGH | LATCHED


def test_pending_tells_when_to_wake():
    a = Alarm(800, 200, delay=30 * MIN)
    a.update(0, 900)
    assert a.pending(5 * MIN) == 25 * MIN
    assert a.excursion()
    a.update(10 * MIN, 500)
    assert a.pending(10 * MIN) is None and not a.excursion()


def test_state_survives_pack_unpack():
    a = Alarm(800, 200, delay=30 * MIN, cum=60 * MIN)
    feed(a, [900, 950, 500, 100, 50])
    b = Alarm(800, 200, delay=30 * MIN, cum=60 * MIN)
    raw = a.pack()
    assert len(raw) == ct_alarm.SIZE
    b.unpack(raw)
    assert b.pack() == raw
    assert (b.hi.cum, b.lo.cum, b.lo.since, b.lo.peak, b.bits) == (
        a.hi.cum, a.lo.cum, a.lo.since, a.lo.peak, a.bits)
    # and it continues identically
    assert a.update(60 * MIN, 40) == b.update(60 * MIN, 40)


def test_bad_configuration_refused():
    raises(ct_alarm.AlarmError, Alarm, 200, 800)
    raises(ct_alarm.AlarmError, Alarm, 800, 200, -1)
    raises(ct_alarm.AlarmError, Alarm, 8.0, 2)


def test_from_config_defaults():
    a = ct_alarm.from_config({"alarm": {"high": 500, "low": 0, "delay": 600}})
    assert (a.high, a.low, a.delay, a.cum, a.ignore) == (500, 0, 600, 0, 0)


main(globals())
