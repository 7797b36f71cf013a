"""The alert engine's state survives a restart (gateway/alerts.py, meta ``alerts.state``).

In process against a real store: a listener saves its engine after each event;
the next ``listener_from_config`` on the same store restores it, so an alarm
open at the restart gets its end event under its own id, and is not raised
twice. The kill -9 case with a real gateway process is in test_alerts_restart.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.alerts import STATE_META, AlertConfigError, AlertEvent, listener_from_config
from gateway.evidence.store import open_store
from protocol.record import Reading

PLACE = "wh-7/room"
ALERTS = {"default": "p", "profiles": {"p": {"low": 200, "high": 800, "delay": 600}}}
T0 = 1_790_000_000


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return float(self.now)


def batch(device: str, *readings: tuple[int, int], tq: int = 2, received: int = T0) -> Any:
    rec = SimpleNamespace(signer=device, received=received)
    return SimpleNamespace(
        accepted=[
            (rec, Reading(boot=1, seq=i, time=t, tq=tq, prev=bytes(16), temp=temp))
            for i, (t, temp) in enumerate(readings)
        ],
        presence={},
    )


def gateway(store: Any, clock: Clock, sent: list[AlertEvent]) -> Any:
    cfg = SimpleNamespace(id="gw", alerts=ALERTS)
    listener = listener_from_config(cfg, store=store, clock=clock)
    listener.publish = _also(listener.publish, sent.append)
    return listener


def _also(first: Any, second: Any) -> Any:
    def both(event: AlertEvent) -> None:
        first(event)
        second(event)

    return both


def test_an_alarm_open_at_a_restart_gets_its_end_event(tmp_path: Path) -> None:
    store = open_store(tmp_path / "gw.db")
    clock = Clock()
    sent: list[AlertEvent] = []
    first = gateway(store, clock, sent)
    first(batch("tl-1", (T0, 900), (T0 + 300, 950), (T0 + 600, 990)))
    (start,) = sent
    assert (start.phase, start.reason) == ("start", "delay")
    assert json.loads(store.get_meta(STATE_META) or "{}")["engine"]["streams"]
    # The process dies here: no close(), no shutdown. A new one starts on the same store.
    clock.now += 900
    second = gateway(store, clock, sent)
    assert [e.id for e in second.engine.active()] == [start.id]
    assert store.alert(start.id)["ended"] is None  # still open, not ended by the restart
    second(batch("tl-1", (T0 + 900, 1000), (T0 + 1200, 500)))
    assert [(e.phase, e.id) for e in sent[1:]] == [("end", start.id)]  # no second start
    end = sent[1]
    assert (end.start, end.end, end.peak_centi, end.cause) == (T0, T0 + 1200, 1000, "in_range")
    row = store.alert(start.id)
    assert (row["ended"], row["event"]["phase"]) == (T0 + 1200, "end")
    assert not [a for a in store.audit_log() if a["action"] == "close"]
    store.close()


def test_without_a_saved_state_open_alarms_end_as_gateway_restarted(tmp_path: Path) -> None:
    store = open_store(tmp_path / "gw.db")
    clock = Clock()
    sent: list[AlertEvent] = []
    first = gateway(store, clock, sent)
    first(batch("tl-1", (T0, 900), (T0 + 600, 950)))
    store.set_meta(STATE_META, "{not json")  # unusable: as good as lost
    second = gateway(store, clock, sent)
    assert second.engine.active() == []
    row = store.alert(sent[0].id)
    assert row["ended"] == T0 and row["event"]["cause"] == "gateway_restarted"
    assert [a["target"] for a in store.audit_log() if a["action"] == "close"] == [sent[0].id]
    store.close()


def test_an_alarm_the_saved_state_does_not_hold_is_ended_the_others_kept(tmp_path: Path) -> None:
    store = open_store(tmp_path / "gw.db")
    clock = Clock()
    sent: list[AlertEvent] = []
    first = gateway(store, clock, sent)
    first(batch("tl-1", (T0, 900), (T0 + 600, 950)))
    saved = store.get_meta(STATE_META)
    assert saved is not None
    first(batch("tl-2", (T0, 100), (T0 + 600, 50)))  # raised after the state we keep
    store.set_meta(STATE_META, saved)
    gateway(store, clock, sent)
    tl1, tl2 = (store.alert(e.id) for e in sent)
    assert tl1["ended"] is None
    assert (tl2["ended"], tl2["event"]["cause"]) == (T0, "gateway_restarted")
    store.close()


def test_state_is_saved_at_shutdown_and_on_demand(tmp_path: Path) -> None:
    store = open_store(tmp_path / "gw.db")
    clock = Clock()
    listener = gateway(store, clock, [])
    listener(batch("tl-1", (T0, 500)))  # no event: nothing saved yet
    assert store.get_meta(STATE_META) is None
    listener.save()  # what the gateway does at each checkpoint
    saved = json.loads(store.get_meta(STATE_META) or "{}")
    assert saved["saved"] == T0 and saved["engine"]["cadence"]["tl-1"]["last"] == T0
    clock.now += 5
    listener(batch("tl-1", (T0 + 5, 510), received=T0 + 5))
    listener.close()
    assert json.loads(store.get_meta(STATE_META) or "{}")["engine"]["cadence"]["tl-1"]["last"] == (
        T0 + 5
    )
    store.close()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"offline_delay": 900}, "offline_delay is no longer used"),
        ({"offline_missed": 0}, "offline_missed must be a whole number >= 1"),
        ({"offline_grace": -1}, "offline_grace must be a whole number >= 0"),
        ({"offline_grace": "5 min"}, "offline_grace must be a whole number"),
    ],
)
def test_offline_settings_are_checked(table: dict[str, Any], message: str) -> None:
    with pytest.raises(AlertConfigError, match=message):
        listener_from_config(SimpleNamespace(id="gw", alerts=table))


def test_dashboard_intervals_and_ingest_min_time_reach_the_engine() -> None:
    cfg = SimpleNamespace(
        id="gw",
        alerts={"offline_missed": 3, "offline_grace": 60},
        dashboard=SimpleNamespace(upload_interval=1800, upload_intervals={"tl-9": 300}),
        ingest=SimpleNamespace(min_time=1_600_000_000),
    )
    engine = listener_from_config(cfg).engine
    assert (engine.cadence.missed, engine.cadence.grace) == (3, 60)
    assert engine.cadence.interval("tl-9") == (300, "configured")
    assert engine.cadence.interval("tl-1") == (1800, "default")
    assert engine.min_time == 1_600_000_000


def test_the_listener_dates_unset_clock_readings_at_their_receive_time(tmp_path: Path) -> None:
    """Readings with tq 0 (device seconds since power-on), as ingest stores them: the
    alert starts when the gateway received them, never at 1970, and says why."""
    store = open_store(tmp_path / "gw.db")
    clock = Clock(T0 + 2000)
    sent: list[AlertEvent] = []
    listener = gateway(store, clock, sent)
    listener(batch("tl-0", (0, 900), (300, 950), tq=0, received=T0))
    listener(batch("tl-0", (600, 990), tq=0, received=T0 + 900))
    (start,) = sent
    assert (start.start, start.time, start.reason, start.clock_unset) == (
        T0,
        T0 + 900,
        "delay",
        True,
    )
    row = store.alert(start.id)
    assert row["start"] == T0 and row["event"]["clock_unset"] is True
    store.close()
