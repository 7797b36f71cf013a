"""Live alerts: temperature excursions, sensor faults and offline devices.

The engine watches the stream of accepted readings (record kind 1,
docs/protocol.md §2.2) against the temperature profile of the place each
device monitors (gateway/profiles.py) and turns it into de-duplicated alert
events: one ``start`` when an excursion becomes an alarm and one ``end`` when
it is over, carrying start, peak, end, duration, degree-minutes, min/max,
time-weighted mean and mean kinetic temperature (MKT) of the excursion
window. Those figures are computed by protocol/analytics.py - the same
arithmetic (rounding, MKT in fixed binary64 steps, docs/protocol.md §12.7,
§12.8) as the verdict's - over the excursion's readings, each held until the
next; the streaming rules (delay, cumulative window, ignore, fault delay,
offline) are this engine's. Alerts are
published on ``ct/v1/gw/{gateway}/alerts`` (§5) and optionally POSTed to a
webhook and e-mailed (``[alerts.email]``, SMTP). With a store, every event is
kept in its ``alerts`` table, where the dashboard (gateway/dashboard.py)
shows it and an operator acknowledges it; an alert nobody acknowledged
within ``escalate_after`` seconds is sent once more to ``escalate_to``
(e-mail addresses and/or webhook URLs), and the escalation is recorded.

Interface::

    engine = AlertEngine(profiles, clock=time.time, offline_missed=2, offline_grace=300,
                         upload_interval=3600, upload_intervals={}, min_time=0)
    engine.observe(device, place, time, temp_centi | None, fault | None, *, channel=0,
                   tq=None, received=None) -> list[AlertEvent]   # one accepted reading
    engine.seen(device, now=None) -> list[AlertEvent]   # any record (or "online") arrived
    engine.state(device, online, time=None) -> list[AlertEvent]   # ct/v1/{dev}/state
    engine.tick(now=None) -> list[AlertEvent]   # offline deadlines; call every few seconds
    engine.active() -> list[AlertEvent]         # alarms still open (phase "active")
    engine.snapshot() -> dict; AlertEngine.restore(snapshot, profiles, clock)
    AlertEvent.to_json() -> str                 # the MQTT / webhook payload
    mqtt_publisher(publish, gateway_id)         # publish(topic, payload_bytes), QoS 1
    WebhookPublisher(url, secret=..., queue_size=1000)   # bounded, retrying, never blocks
    EmailPublisher(EmailSettings(...), to=[...])         # SMTP, same queue discipline
    Escalator(store, after, publishers)                  # re-sends unacknowledged alerts once
    fan_out(*publishers)                        # one callable; a failing publisher is logged
    mkt_centi([(temp_centi, weight), ...]) -> int   # protocol.analytics' MKT
    AlertListener / listener_from_config(cfg, publish=..., place_of=...)  # glue for the core

Rules (cold-chain logger practice: single and cumulative alarms with a delay
and an ignore period):

- Time is the readings' own time (devices upload in batches), never the
  arrival time - when it can be trusted: a reading taken before the device's
  clock was set (``tq`` 0) or dated before ``min_time`` is judged at the
  gateway's receive time instead, and its events say ``clock_unset`` (never
  1970, and never an excursion "lasting" from 1970 to the clock set). A
  reading's value holds until the next reading of the same device channel
  ("sample and hold"): an excursion starts at the first reading outside the
  range and ends at the first reading back inside (or on the other side), so
  its duration is ``end - start``.
- An excursion alarms (``start`` event) at the first reading where it has
  lasted ``delay`` seconds (reason ``delay``), or where the time spent on that
  side within the profile's rolling ``window`` reaches ``cumulative`` seconds
  (reason ``cumulative``). Short excursions that never alarm produce no event
  but count towards the cumulative limit. Each excursion alarms at most once.
- Readings within ``ignore`` seconds of a device's first reading at a place
  are not judged. Moving to another place ends an open excursion (cause
  ``place_changed``) and starts a new ignore period.
- A sensor fault (field 12) is never a temperature: it neither starts, extends
  nor ends an excursion. Faults persisting ``fault_delay`` seconds raise a
  ``sensor_fault`` alarm, ended by the next valid reading.
- ``offline`` alarms come from silence, not from the state topic (a logger
  says ``offline`` each time it goes to sleep): a logger alarms when nothing
  came from it for ``offline_missed`` of its expected upload intervals plus
  ``offline_grace`` (gateway/cadence.py); its next record or ``online`` ends it.
  A reader uploads when it scans, not on a schedule: it is judged only when
  the operator gave it an interval.
- Readings older than the last one seen for their device channel (a gap
  being filled by resends) are not judged live; the log still has them.

Every event has a stable ``id``; consumers de-duplicate on (id, phase).

Notes for the gateway core (gateway/cli.py, gateway/service.py):

- ``listener_from_config(cfg, publish=..., place_of=...)`` returns the
  ``on_records`` hook. Pass ``publish=lambda topic, payload: <paho publish,
  QoS 1, not retained>`` or alerts only reach the log and the webhook, and
  ``place_of=<device id -> the target it is bound to>`` (the registry's
  current bindings, ``Registry.place_of``); without it the listener learns
  places only from the binding statements (kind 5) it sees in batches.
- Call ``listener.tick()`` from the periodic work (offline alarms must fire
  without traffic) and ``listener.close()`` at shutdown (flushes the webhook).
- ``engine.snapshot()`` is JSON. With a store, the listener keeps it in the
  store's meta (``alerts.state``) whenever an event is raised, at each
  checkpoint (``listener.save()``, gateway/service.py) and at shutdown, and
  ``listener_from_config`` restores it at start: an alarm open at a restart
  (or a kill -9) gets its end event, and is not raised a second time.
  ``len(engine.active())`` is the ``alerts_active`` figure of gateway/metrics.py.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import http.client
import json
import logging
import random
import smtplib
import ssl
import threading
import time as _time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from gateway.cadence import UploadCadence
from gateway.profiles import Profile, ProfileBook
from protocol import analytics

__all__ = [
    "AlertEngine",
    "AlertEvent",
    "AlertListener",
    "EmailPublisher",
    "EmailSettings",
    "Escalator",
    "WebhookPublisher",
    "email_settings",
    "fan_out",
    "listener_from_config",
    "mkt_centi",
    "mqtt_publisher",
]

log = logging.getLogger("coldtrace.alerts")

ALERT_FORMAT = "coldtrace-alert"
ENGINE_KINDS = ("excursion", "sensor_fault", "offline")  # the AlertEngine's own alarms
DEVICE_KINDS = (1, 2, 3, 7)  # records a device signs (readings, scans, status, blocks)
ALERT_VERSION = 1
SNAPSHOT_VERSION = 3
STATE_META = "alerts.state"  # the store's meta key holding the saved engine state

# --- Mean kinetic temperature ---------------------------------------------------------


def mkt_centi(samples: Iterable[tuple[int, int]]) -> int:
    """MKT in 0.01 °C of (temp_centi, weight) samples (protocol/analytics.py, §12.8);
    equal weights for a regular series. ValueError when there is no weight."""
    value = analytics.mkt_centi((int(t), int(w)) for t, w in samples)
    if value is None:
        raise ValueError("MKT of no samples (or only zero weights)")
    return value


# --- Events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertEvent:
    """One alert event. Temperatures in 0.01 °C, times in Unix seconds.

    ``time`` is when the event happened in reading time (the alarming
    reading for a start, the reading that ended it for an end); ``raised`` is
    the gateway clock when the engine produced it.
    """

    kind: str  # "excursion" | "sensor_fault" | "offline"
    phase: str  # "start" | "end" | "active"
    id: str
    device: str
    time: int
    start: int
    raised: int
    channel: int | None = None
    place: str | None = None
    profile: str | None = None
    side: str | None = None  # "high" | "low"
    limit_centi: int | None = None
    end: int | None = None
    duration: int | None = None
    peak_centi: int | None = None
    min_centi: int | None = None
    max_centi: int | None = None
    mean_centi: int | None = None
    mkt_centi: int | None = None
    degree_minutes: int | None = None  # Σ |temp - limit|·time, 0.01 °C·min (§12.7)
    readings: int | None = None
    reason: str | None = None  # start: "delay" | "cumulative"
    outside_seconds: int | None = None  # on this side within the profile window
    cause: str | None = None  # end: in_range | side_changed | place_changed | unmonitored | ...
    fault: int | None = None  # latest fault code (§2.2)
    faults: int | None = None  # faulted readings in the run
    clock_unset: bool = False  # device clock unset (tq 0): times are the gateway's receive times
    interval: int | None = None  # offline: the device's expected upload interval, s

    def to_dict(self) -> dict[str, Any]:
        return {"format": ALERT_FORMAT, "version": ALERT_VERSION, **asdict(self)}

    def to_json(self) -> str:
        """Compact JSON with sorted keys; every field present (null when not applicable)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


# --- Engine state ----------------------------------------------------------------------------


@dataclass
class _Excursion:
    """An open excursion of one device channel.

    ``pieces`` are the readings of the excursion as (start, end, temp): each
    reading holds its value until the next reading, and the last one is still
    open (end = start). The figures - start, end, peak, duration,
    degree-minutes, mean and MKT - are protocol/analytics.py's over these
    pieces (:meth:`figures`), the same arithmetic as the verdict's.
    """

    side: str
    limit: int
    pieces: list[tuple[int, int, int]]
    lo: int
    hi: int
    alarm_at: int | None = None
    reason: str | None = None
    clock_unset: bool = False  # a reading of it was dated at its receive time (tq 0)

    @classmethod
    def open(cls, side: str, limit: int, time: int, temp: int) -> _Excursion:
        return cls(side, limit, [(time, time, temp)], temp, temp)

    @property
    def start(self) -> int:
        return self.pieces[0][0]

    @property
    def n(self) -> int:
        return len(self.pieces)

    def extend(self, time: int, temp: int) -> None:
        """The next reading, on the same side: the previous one held until ``time``."""
        start, _, held = self.pieces[-1]
        self.pieces[-1] = (start, time, held)
        self.pieces.append((time, time, temp))
        self.lo, self.hi = min(self.lo, temp), max(self.hi, temp)

    def close(self, end: int) -> None:
        """The excursion ended at ``end`` (the reading back in range, or another cause)."""
        start, _, held = self.pieces[-1]
        self.pieces[-1] = (start, max(start, end), held)

    def figures(self) -> analytics.Excursion:
        exc = analytics.Excursion(self.side, self.limit)
        for start, end, temp in self.pieces:
            exc.extend(start, end, temp)
        return exc

    def summary(self) -> tuple[int | None, int | None]:
        """(mean, MKT) over the window: time-weighted, or per reading if it had no duration."""
        samples = [(t, e - s) for s, e, t in self.pieces if e > s]
        if not samples:
            samples = [(t, 1) for _, _, t in self.pieces]
        return analytics.mean_centi(samples), analytics.mkt_centi(samples)


@dataclass
class _Stream:
    place: str | None
    since: int  # first reading at this place: the ignore period starts here
    last: int  # latest reading time
    exc: _Excursion | None = None
    history: list[tuple[str, int, int]] = field(default_factory=list)  # closed (side, start, end)


@dataclass
class _Fault:
    place: str | None
    start: int
    last: int
    code: int
    n: int
    alarm_at: int | None = None
    clock_unset: bool = False


@dataclass
class _Offline:
    since: int  # the device's latest activity (gateway clock)
    alarm_at: int | None = None
    interval: int | None = None  # the expected upload interval when it alarmed


class AlertEngine:
    """Excursion, sensor-fault and offline detection. Thread-safe."""

    def __init__(
        self,
        profiles: ProfileBook | Mapping[str, Profile] | Iterable[Profile] | None = None,
        clock: Callable[[], float] = _time.time,
        *,
        offline_missed: int = 2,
        offline_grace: int = 300,
        upload_interval: int = 3600,
        upload_intervals: Mapping[str, int] | None = None,
        fault_delay: int = 900,
        min_time: int = 0,
    ) -> None:
        """``fault_delay`` applies to places without a profile (a profile has its own).
        ``upload_interval`` (per device: ``upload_intervals``) is the expected upload
        interval until a device's own cadence is seen (gateway/cadence.py); ``min_time``
        is the earliest reading time believed (ingest's: a set clock before it is wrong)."""
        self.book = ProfileBook.of(profiles) if profiles is not None else ProfileBook()
        self.clock = clock
        self.cadence = UploadCadence(
            upload_interval, upload_intervals, missed=offline_missed, grace=offline_grace
        )
        self.fault_delay = fault_delay
        self.min_time = int(min_time)
        self.started = int(clock())  # nobody is overdue for what came while it was down
        self.late = 0  # readings older than their stream's latest, not judged
        self.unset = 0  # readings judged at their receive time (device clock unset)
        self._lock = threading.RLock()
        self._streams: dict[tuple[str, int], _Stream] = {}
        self._faults: dict[tuple[str, int], _Fault] = {}
        self._offline: dict[str, _Offline] = {}
        self._loggers: set[str] = set()  # devices that sent readings: they upload on a schedule

    # -- readings -------------------------------------------------------------------------

    def observe(
        self,
        device: str,
        place: str | None,
        time: int,
        temp_centi: int | None,
        fault: int | None,
        *,
        channel: int = 0,
        tq: int | None = None,
        received: int | None = None,
    ) -> list[AlertEvent]:
        """Judge one accepted reading; return the alert events it causes (often none).

        ``tq`` is the reading's time quality (§2.1): with ``tq`` 0 (the device's clock
        was never set) or a time before ``min_time``, the reading is judged at
        ``received`` (the gateway's receive time; default: now) and its events carry
        ``clock_unset``."""
        if (temp_centi is None) == (fault is None):
            raise ValueError("a reading has exactly one of temp_centi and fault (§2.2)")
        time = int(time)
        unset = tq == 0 or time < self.min_time
        if unset:
            time = int(self.clock()) if received is None else int(received)
        key = (device, channel)
        events: list[AlertEvent] = []
        with self._lock:
            self._loggers.add(device)
            if unset:
                self.unset += 1
            st = self._streams.get(key)
            if st is not None and time < st.last:
                self.late += 1
                return events
            if st is None or st.place != place:
                if st is not None and st.exc is not None:
                    events += self._close(device, channel, st, time, "place_changed")
                st = self._streams[key] = _Stream(place, since=time, last=time)
            st.last = time
            profile = self.book.for_place(place)

            if fault is not None:
                events += self._on_fault(device, channel, place, time, fault, profile, unset)
                return events
            assert temp_centi is not None
            temp = int(temp_centi)
            f = self._faults.pop(key, None)
            if f is not None and f.alarm_at is not None:
                events.append(self._fault_event(device, channel, f, "end", time, "recovered"))

            if profile is None:
                if st.exc is not None:
                    events += self._close(device, channel, st, time, "unmonitored")
                return events
            if time < st.since + profile.ignore:
                return events
            side = profile.side(temp)
            exc = st.exc
            if exc is not None and exc.side == side:
                exc.extend(time, temp)
            elif exc is not None:
                events += self._close(
                    device, channel, st, time, "in_range" if side is None else "side_changed"
                )
                exc = None
            if exc is None and side is not None:
                exc = st.exc = _Excursion.open(side, profile.limit(side), time, temp)
            if exc is not None and unset:
                exc.clock_unset = True
            if exc is not None and exc.alarm_at is None:
                events += self._maybe_alarm(device, channel, st, profile, time)
            cutoff = time - profile.window
            st.history = [h for h in st.history if h[2] > cutoff]
        return events

    def _outside(self, st: _Stream, side: str, now: int, window: int) -> int:
        """Seconds on ``side`` within [now - window, now], the open excursion included."""
        lo = now - window
        total = sum(max(0, min(e, now) - max(s, lo)) for sd, s, e in st.history if sd == side)
        if st.exc is not None and st.exc.side == side:
            total += max(0, now - max(st.exc.start, lo))
        return total

    def _maybe_alarm(
        self, device: str, channel: int, st: _Stream, profile: Profile, time: int
    ) -> list[AlertEvent]:
        exc = st.exc
        assert exc is not None
        outside = self._outside(st, exc.side, time, profile.window)
        if time - exc.start >= profile.delay:
            exc.reason = "delay"
        elif profile.cumulative is not None and outside >= profile.cumulative:
            exc.reason = "cumulative"
        else:
            return []
        exc.alarm_at = time
        return [
            self._excursion_event(
                device, channel, st.place, exc, profile.name, "start", time, outside
            )
        ]

    def _close(
        self, device: str, channel: int, st: _Stream, end: int, cause: str
    ) -> list[AlertEvent]:
        exc = st.exc
        assert exc is not None
        exc.close(end)
        st.history.append((exc.side, exc.start, end))
        st.exc = None
        if exc.alarm_at is None:
            return []
        profile = self.book.for_place(st.place)
        window = profile.window if profile is not None else 86400
        outside = self._outside(st, exc.side, end, window)
        return [
            self._excursion_event(
                device,
                channel,
                st.place,
                exc,
                profile.name if profile else None,
                "end",
                end,
                outside,
                cause=cause,
            )
        ]

    def _excursion_event(
        self,
        device: str,
        channel: int,
        place: str | None,
        exc: _Excursion,
        profile: str | None,
        phase: str,
        time: int,
        outside: int,
        *,
        cause: str | None = None,
    ) -> AlertEvent:
        ended = phase == "end"
        mean, mkt = exc.summary() if ended else (None, None)
        fig = exc.figures()
        return AlertEvent(
            kind="excursion",
            phase=phase,
            id=f"excursion/{device}/{channel}/{exc.side}/{exc.start}",
            device=device,
            channel=channel,
            place=place,
            profile=profile,
            side=exc.side,
            limit_centi=exc.limit,
            time=time,
            start=exc.start,
            end=fig.end if ended else None,
            duration=fig.duration if ended else None,
            peak_centi=fig.peak,
            min_centi=exc.lo,
            max_centi=exc.hi,
            mean_centi=mean,
            mkt_centi=mkt,
            degree_minutes=fig.degree_minutes,
            readings=exc.n,
            reason=exc.reason,
            outside_seconds=outside,
            cause=cause,
            clock_unset=exc.clock_unset,
            raised=int(self.clock()),
        )

    # -- sensor faults ----------------------------------------------------------------------------

    def _on_fault(
        self,
        device: str,
        channel: int,
        place: str | None,
        time: int,
        code: int,
        profile: Profile | None,
        unset: bool = False,
    ) -> list[AlertEvent]:
        key = (device, channel)
        f = self._faults.get(key)
        if f is None:
            f = self._faults[key] = _Fault(place, time, time, int(code), 1)
        else:
            f.last, f.code, f.n = time, int(code), f.n + 1
        f.clock_unset = f.clock_unset or unset
        delay = profile.fault_delay if profile is not None else self.fault_delay
        if f.alarm_at is None and time - f.start >= delay:
            f.alarm_at = time
            return [self._fault_event(device, channel, f, "start", time)]
        return []

    def _fault_event(
        self, device: str, channel: int, f: _Fault, phase: str, time: int, cause: str | None = None
    ) -> AlertEvent:
        ended = phase == "end"
        return AlertEvent(
            kind="sensor_fault",
            phase=phase,
            id=f"sensor_fault/{device}/{channel}/{f.start}",
            device=device,
            channel=channel,
            place=f.place,
            time=time,
            start=f.start,
            end=time if ended else None,
            duration=time - f.start if ended else None,
            fault=f.code,
            faults=f.n,
            cause=cause,
            clock_unset=f.clock_unset,
            raised=int(self.clock()),
        )

    # -- online / offline --------------------------------------------------------------------------

    def seen(self, device: str, now: int | None = None) -> list[AlertEvent]:
        """Something came from ``device`` (a record, or ``online``) at ``now`` (gateway
        clock): it counts towards its upload cadence and ends its offline alarm."""
        now = int(self.clock()) if now is None else int(now)
        with self._lock:
            self.cadence.seen(device, now)
            o = self._offline.pop(device, None)
            if o is not None and o.alarm_at is not None:
                return [self._offline_event(device, o, "end", now, "seen")]
            return []

    def state(self, device: str, online: bool, time: int | None = None) -> list[AlertEvent]:
        """The device's ``ct/v1/{dev}/state``. ``online`` is activity (:meth:`seen`);
        ``offline`` decides nothing: a logger says it each time it goes to sleep."""
        return self.seen(device, time) if online else []

    def tick(self, now: int | None = None) -> list[AlertEvent]:
        """Raise the offline alarms that are due (call every few seconds)."""
        with self._lock:
            return self._check_offline(int(self.clock()) if now is None else int(now))

    def _check_offline(self, now: int) -> list[AlertEvent]:
        """Loggers (devices that sent readings) upload on a schedule; a reader uploads
        when it scans, so it is judged only when the operator gave it an interval."""
        events = []
        for device in self.cadence:
            if device in self._offline:
                continue
            if device not in self._loggers and device not in self.cadence.intervals:
                continue
            due = self.cadence.deadline(device, self.started)
            if due is not None and now >= due:
                last = self.cadence.last(device)
                assert last is not None
                o = self._offline[device] = _Offline(
                    last, alarm_at=now, interval=self.cadence.interval(device)[0]
                )
                events.append(self._offline_event(device, o, "start", now))
        return events

    def _offline_event(
        self, device: str, o: _Offline, phase: str, time: int, cause: str | None = None
    ) -> AlertEvent:
        ended = phase == "end"
        places = [s.place for (d, _), s in self._streams.items() if d == device]
        return AlertEvent(
            kind="offline",
            phase=phase,
            id=f"offline/{device}/{o.since}",
            device=device,
            place=places[0] if places else None,
            time=time,
            start=o.since,
            end=time if ended else None,
            duration=time - o.since if ended else None,
            reason="missed_uploads",
            interval=o.interval,
            cause=cause,
            raised=int(self.clock()),
        )

    # -- inspection and persistence -------------------------------------------------------------

    def active(self) -> list[AlertEvent]:
        """The open alarms, with their figures so far (phase ``active``)."""
        out: list[AlertEvent] = []
        with self._lock:
            for (device, channel), st in self._streams.items():
                if st.exc is not None and st.exc.alarm_at is not None:
                    profile = self.book.for_place(st.place)
                    window = profile.window if profile is not None else 86400
                    out.append(
                        self._excursion_event(
                            device,
                            channel,
                            st.place,
                            st.exc,
                            profile.name if profile else None,
                            "active",
                            st.last,
                            self._outside(st, st.exc.side, st.last, window),
                        )
                    )
            for (device, channel), f in self._faults.items():
                if f.alarm_at is not None:
                    out.append(self._fault_event(device, channel, f, "active", f.last))
            for device, o in self._offline.items():
                if o.alarm_at is not None:
                    out.append(self._offline_event(device, o, "active", o.alarm_at))
        return out

    def snapshot(self) -> dict[str, Any]:
        """The engine's state as JSON-able data, so a restart does not repeat alarms."""
        with self._lock:
            return {
                "version": SNAPSHOT_VERSION,
                "late": self.late,
                "streams": [[d, c, asdict(s)] for (d, c), s in self._streams.items()],
                "faults": [[d, c, asdict(f)] for (d, c), f in self._faults.items()],
                "offline": [[d, asdict(o)] for d, o in self._offline.items()],
                "cadence": self.cadence.snapshot(),
                "loggers": sorted(self._loggers),
            }

    @classmethod
    def restore(
        cls,
        snapshot: Mapping[str, Any],
        profiles: ProfileBook | Mapping[str, Profile] | Iterable[Profile] | None = None,
        clock: Callable[[], float] = _time.time,
        **kw: Any,
    ) -> AlertEngine:
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(
                f"alert snapshot version {snapshot.get('version')!r} is not {SNAPSHOT_VERSION} "
                "(start without the snapshot)"
            )
        engine = cls(profiles, clock, **kw)
        engine.late = int(snapshot.get("late", 0))
        for device, channel, s in snapshot["streams"]:
            exc = s["exc"]
            if exc is not None:
                pieces = [(int(a), int(b), int(t)) for a, b, t in exc.pop("pieces")]
                exc = _Excursion(**exc, pieces=pieces)
            history = [tuple(h) for h in s["history"]]
            engine._streams[(device, int(channel))] = _Stream(
                s["place"],
                s["since"],
                s["last"],
                exc,
                history,
            )
        for device, channel, f in snapshot["faults"]:
            engine._faults[(device, int(channel))] = _Fault(**f)
        for device, o in snapshot["offline"]:
            engine._offline[device] = _Offline(**o)
        engine.cadence.restore(snapshot.get("cadence", {}))
        engine._loggers = {str(d) for d in snapshot.get("loggers", [])}
        return engine


# --- Publishers --------------------------------------------------------------------------------

Publisher = Callable[[AlertEvent], object]


def alerts_topic(gateway_id: str) -> str:
    """``ct/v1/gw/{gateway}/alerts`` (docs/protocol.md §5)."""
    return f"ct/v1/gw/{gateway_id}/alerts"


def mqtt_publisher(
    publish: Callable[[str, bytes], object], gateway_id: str
) -> Callable[[AlertEvent], None]:
    """Alerts to ``ct/v1/gw/{gateway}/alerts`` through the core's MQTT client.

    ``publish(topic, payload)`` must publish at QoS 1, not retained, and must
    not block on the network (paho's ``publish`` queues; that is enough).
    """
    topic = alerts_topic(gateway_id)

    def send(event: AlertEvent) -> None:
        publish(topic, event.to_json().encode("utf-8"))

    return send


def fan_out(*publishers: Publisher) -> Callable[[AlertEvent], None]:
    """One publisher calling several; a failure is logged, never raised into ingest."""

    def send(event: AlertEvent) -> None:
        for publisher in publishers:
            try:
                publisher(event)
            except Exception:
                log.exception(
                    "alert publisher %r failed for %s %s", publisher, event.id, event.phase
                )

    return send


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured; urllib would turn the POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Queued:
    """A bounded queue drained by one worker thread that retries with backoff, for the
    webhook and e-mail publishers. ``_send(item)`` returns ("ok" | "retry" | "fail",
    the seconds the receiver asked to wait before a retry, or None); ``item[0]`` is the
    label logged when a delivery is given up."""

    thread_name = "coldtrace-queue"

    def __init__(
        self,
        *,
        queue_size: int = 1000,
        max_attempts: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        join_timeout: float = 30.0,
    ) -> None:
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._join_timeout = join_timeout
        self.sent = self.retries = self.failed = self.dropped = 0
        self._queue: collections.deque[Any] = collections.deque()
        self._queue_size = queue_size
        self._cond = threading.Condition()
        self._closing = False
        self._busy = 0
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        with self._cond:
            if self._closing:
                self.dropped += 1
                return
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(item)
            self._cond.notify()

    @property
    def pending(self) -> int:
        """Items waiting or being delivered."""
        with self._cond:
            return len(self._queue) + self._busy

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(self._join_timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or self._abort.is_set():
                    self.dropped += len(self._queue)
                    self._queue.clear()
                    return
                item = self._queue.popleft()
                self._busy = 1
            ok = self._deliver(item)
            with self._cond:
                self._busy = 0
                if ok:
                    self.sent += 1
                else:
                    self.failed += 1

    def _deliver(self, item: Any) -> bool:
        delay = self.backoff
        for attempt in range(1, self.max_attempts + 1):
            outcome, retry_after = self._send(item)
            if outcome == "ok":
                return True
            if outcome == "fail" or attempt == self.max_attempts:
                break
            with self._cond:
                self.retries += 1
            wait = retry_after if retry_after is not None else delay * random.uniform(0.5, 1.0)
            if self._abort.wait(min(wait, self.max_backoff)):
                break
            delay = min(delay * 2, self.max_backoff)
        log.warning("%s gave up on %s", self.thread_name, item[0] if item else item)
        return False

    def _send(self, item: Any) -> tuple[str, float | None]:  # pragma: no cover - overridden
        raise NotImplementedError


class WebhookPublisher(_Queued):
    """POST each alert as JSON to a URL, from a background thread.

    Calling the publisher only appends to a bounded in-memory queue, so ingest
    never waits for the network. The worker sends in order; a connection error,
    timeout, HTTP 408/425/429 or 5xx is retried with exponential backoff
    (``backoff`` doubling up to ``max_backoff``, with jitter, honouring
    ``Retry-After``) up to ``max_attempts`` attempts; any other status gives up
    on that event. When the queue is full the oldest waiting event is dropped.
    Counters: ``sent``, ``retries``, ``failed``, ``dropped``.

    Headers: ``Content-Type: application/json``, ``X-ColdTrace-Alert: <id> <phase>``
    and, with a ``secret``, ``X-ColdTrace-Signature: sha256=<hex HMAC-SHA256 of the body>``.
    """

    RETRY_STATUS = frozenset({408, 425, 429})
    thread_name = "coldtrace-webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: bytes | None = None,
        queue_size: int = 1000,
        timeout: float = 5.0,
        max_attempts: int = 8,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        headers: Mapping[str, str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"webhook URL must be http(s)://host/...: {url!r}")
        if queue_size < 1 or max_attempts < 1:
            raise ValueError("queue_size and max_attempts must be >= 1")
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.headers = dict(headers or {})
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if proxies is not None:  # None: the environment's proxy settings
            handlers.append(urllib.request.ProxyHandler(dict(proxies)))
        self._opener = urllib.request.build_opener(*handlers)
        super().__init__(
            queue_size=queue_size,
            max_attempts=max_attempts,
            backoff=backoff,
            max_backoff=max_backoff,
            join_timeout=timeout + 1.0,
        )

    def __call__(self, event: AlertEvent) -> None:
        self._put((f"{event.id} {event.phase}", event.to_json().encode("utf-8")))

    def _send(self, item: tuple[str, bytes]) -> tuple[str, float | None]:
        return self._post(*item)

    def _post(self, label: str, body: bytes) -> tuple[str, float | None]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "coldtrace-gateway",
            "X-ColdTrace-Alert": label,
            **self.headers,
        }
        if self.secret is not None:
            mac = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            headers["X-ColdTrace-Signature"] = f"sha256={mac}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
            return "ok", None
        except urllib.error.HTTPError as e:
            try:
                status, retry_after = e.code, e.headers.get("Retry-After")
            finally:
                e.close()
            if status in self.RETRY_STATUS or status >= 500:
                log.info("webhook %s: HTTP %d, will retry", label, status)
                return "retry", _seconds(retry_after)
            log.warning("webhook %s: HTTP %d, not retried", label, status)
            return "fail", None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            log.info("webhook %s: %s, will retry", label, e)
            return "retry", None


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: use our own backoff


# --- E-mail (SMTP) ---------------------------------------------------------------------------


class AlertConfigError(ValueError):
    """``[alerts]`` e-mail or escalation settings are unusable."""


@dataclass(frozen=True)
class EmailSettings:
    """``[alerts.email]``: the SMTP server and the envelope.

    ``starttls`` upgrades the connection before logging in (port 587); ``user``
    with ``password_file`` (first line) logs in. Without TLS the password is
    never sent: a ``user`` needs ``starttls``."""

    host: str
    port: int = 25
    sender: str = ""
    to: tuple[str, ...] = ()
    starttls: bool = False
    user: str | None = None
    password_file: Path | None = field(default=None, repr=False)
    timeout: float = 10.0

    def password(self) -> str | None:
        if self.password_file is None:
            return None
        lines = self.password_file.read_text(encoding="utf-8").splitlines()
        return lines[0].strip() if lines else ""


_EMAIL_KEYS = {"host", "port", "from", "to", "starttls", "user", "password_file", "timeout"}


def email_settings(raw: Any, base: Path | None = None) -> EmailSettings:
    """Check ``[alerts.email]`` and read it (relative ``password_file``: from ``base``)."""
    if not isinstance(raw, Mapping):
        raise AlertConfigError("[alerts.email] must be a table")
    unknown = set(raw) - _EMAIL_KEYS
    if unknown:
        raise AlertConfigError(f"[alerts.email] has unknown keys {sorted(unknown)}")
    host, sender = raw.get("host"), raw.get("from")
    if not isinstance(host, str) or not host:
        raise AlertConfigError("[alerts.email] host is required")
    if not isinstance(sender, str) or "@" not in sender:
        raise AlertConfigError("[alerts.email] from must be an e-mail address")
    to = raw.get("to", [])
    to = [to] if isinstance(to, str) else to
    if not isinstance(to, list) or not all(isinstance(a, str) and "@" in a for a in to):
        raise AlertConfigError("[alerts.email] to must be an address or a list of addresses")
    starttls = raw.get("starttls", False)
    port = raw.get("port", 587 if starttls else 25)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise AlertConfigError(f"[alerts.email] port must be 1 … 65535, got {port!r}")
    if not isinstance(starttls, bool):
        raise AlertConfigError("[alerts.email] starttls must be true or false")
    user, pw = raw.get("user"), raw.get("password_file")
    if (user is None) != (pw is None):
        raise AlertConfigError("[alerts.email] user and password_file go together")
    if user is not None and not starttls:
        raise AlertConfigError("[alerts.email] a user needs starttls = true (no password in clear)")
    pw_path = None
    if pw is not None:
        if not isinstance(pw, str) or not pw:
            raise AlertConfigError("[alerts.email] password_file must be a path")
        pw_path = Path(pw).expanduser()
        if not pw_path.is_absolute() and base is not None:
            pw_path = base / pw_path
    timeout = raw.get("timeout", 10.0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise AlertConfigError("[alerts.email] timeout must be a positive number")
    return EmailSettings(host, port, sender, tuple(to), starttls, user, pw_path, float(timeout))


def _centi(v: Any) -> str:
    return "-" if v is None else f"{int(v) / 100:.2f} °C"


def _utc(t: Any) -> str:
    return "-" if t is None else _time.strftime("%Y-%m-%d %H:%M:%S UTC", _time.gmtime(int(t)))


def alert_subject(event: AlertEvent, *, escalated: int | None = None) -> str:
    where = f" at {event.place}" if event.place else ""
    what = f"{event.kind} {event.phase}"
    if event.side:
        what += f" ({event.side}, peak {_centi(event.peak_centi)})"
    head = "[ColdTrace] "
    if escalated is not None:
        head += f"ESCALATED, not acknowledged in {escalated} s: "
    return f"{head}{what}: {event.device}{where}"


def alert_text(event: AlertEvent, *, escalated: int | None = None) -> str:
    """The plain-text body: the figures an operator reads, then the event's JSON."""
    lines = []
    if escalated is not None:
        lines += [f"Nobody acknowledged this alert within {escalated} seconds.", ""]
    lines += [
        f"Alert:    {event.kind} ({event.phase})",
        f"Id:       {event.id}",
        f"Device:   {event.device}" + (f" channel {event.channel}" if event.channel else ""),
        f"Place:    {event.place or '-'}"
        + (f" (profile {event.profile})" if event.profile else ""),
        f"Started:  {_utc(event.start)}",
    ]
    if event.end is not None:
        lines.append(f"Ended:    {_utc(event.end)} after {event.duration} s")
    if event.kind == "excursion":
        lines += [
            f"Side:     {event.side} of {_centi(event.limit_centi)}",
            f"Peak:     {_centi(event.peak_centi)}",
        ]
    if event.reason:
        lines.append(f"Reason:   {event.reason}")
    if event.cause:
        lines.append(f"Cause:    {event.cause}")
    lines += ["", "Acknowledge it on the gateway's dashboard.", "", event.to_json(), ""]
    return "\n".join(lines)


class EmailPublisher(_Queued):
    """E-mail each alert through an SMTP server, from a background thread.

    Calling it only queues (ingest never waits for the mail server). A
    connection error, a 4xx reply or a timeout is retried with backoff; a 5xx
    reply gives up on that message. ``to`` overrides the settings' recipients
    (escalation sends to other addresses through the same server); with
    ``escalated`` the subject and body say the alert was not acknowledged in
    time. Headers: ``X-ColdTrace-Alert: <id> <phase>``."""

    thread_name = "coldtrace-email"

    def __init__(
        self,
        settings: EmailSettings,
        *,
        to: Iterable[str] | None = None,
        queue_size: int = 1000,
        max_attempts: int = 6,
        backoff: float = 1.0,
    ) -> None:
        self.settings = settings
        self.to = tuple(settings.to if to is None else to)
        if not self.to:
            raise AlertConfigError("[alerts.email] has no recipient (to)")
        super().__init__(queue_size=queue_size, max_attempts=max_attempts, backoff=backoff)

    def __call__(self, event: AlertEvent, *, escalated: int | None = None) -> None:
        self._put((f"{event.id} {event.phase}", self.message(event, escalated=escalated)))

    def message(self, event: AlertEvent, *, escalated: int | None = None) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = alert_subject(event, escalated=escalated)
        msg["From"] = self.settings.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain="coldtrace.gateway")
        msg["X-ColdTrace-Alert"] = f"{event.id} {event.phase}" + (
            " escalated" if escalated is not None else ""
        )
        msg.set_content(alert_text(event, escalated=escalated))
        return msg

    def _send(self, item: tuple[str, EmailMessage]) -> tuple[str, float | None]:
        label, msg = item
        st = self.settings
        try:
            with smtplib.SMTP(st.host, st.port, timeout=st.timeout) as smtp:
                if st.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if st.user is not None:
                    smtp.login(st.user, st.password() or "")
                smtp.send_message(msg, from_addr=st.sender, to_addrs=list(self.to))
            return "ok", None
        except smtplib.SMTPResponseException as e:
            if 400 <= e.smtp_code < 500:
                log.info("e-mail %s: SMTP %d, will retry", label, e.smtp_code)
                return "retry", None
            log.warning("e-mail %s: SMTP %d %r, not retried", label, e.smtp_code, e.smtp_error)
            return "fail", None
        except smtplib.SMTPRecipientsRefused as e:
            log.warning("e-mail %s: recipients refused %s", label, e.recipients)
            return "fail", None
        except (smtplib.SMTPException, OSError) as e:
            log.info("e-mail %s: %s, will retry", label, e)
            return "retry", None


# --- Escalation and the store ----------------------------------------------------------------


def event_from_dict(d: Mapping[str, Any]) -> AlertEvent:
    """An AlertEvent from its ``to_dict()`` (extra keys such as format/version ignored)."""
    names = {f.name for f in fields(AlertEvent)}
    return AlertEvent(**{k: v for k, v in d.items() if k in names})


def store_recorder(store: Any) -> Callable[[AlertEvent], None]:
    """A publisher keeping every event in the store's ``alerts`` table (the dashboard's).
    The gateway's own alarms (a frozen log, a peer's fork) have no end event: they are
    kept as ended when raised, open to acknowledgement all the same."""

    def record(event: AlertEvent) -> None:
        own = event.kind not in ENGINE_KINDS
        store.record_alert(event.to_dict(), ended=event.time if own else None)

    return record


class Escalator:
    """Sends an alert nobody acknowledged within ``after`` seconds once more, to the
    escalation publishers, and records that it did (``alerts.escalated`` and an
    ``escalate`` line in the audit log). ``check()`` runs from the listener's tick."""

    def __init__(
        self,
        store: Any,
        after: int,
        publishers: Iterable[Callable[..., object]],
        *,
        targets: Iterable[str] = (),
        clock: Callable[[], float] = _time.time,
    ) -> None:
        self.store = store
        self.after = int(after)
        self.publishers = list(publishers)
        self.targets = list(targets)
        self.clock = clock
        self.escalated = 0

    def check(self) -> list[str]:
        """Escalate what is due; the ids escalated."""
        now = int(self.clock())
        done = []
        for row in self.store.alerts_to_escalate(now - self.after):
            if not self.store.mark_escalated(row["id"], self.targets, now=now):
                continue  # another process got there first
            event = event_from_dict(row["event"])
            log.warning("alert %s not acknowledged in %d s: escalating", row["id"], self.after)
            for publish in self.publishers:
                try:
                    publish(event, escalated=self.after)
                except Exception:
                    log.exception("escalating %s through %r failed", row["id"], publish)
            done.append(row["id"])
            self.escalated += 1
        return done


class _EscalationWebhook:
    """A WebhookPublisher for escalations: the event with phase ``escalation``."""

    def __init__(self, hook: WebhookPublisher) -> None:
        self.hook = hook

    def __call__(self, event: AlertEvent, *, escalated: int | None = None) -> None:
        from dataclasses import replace

        self.hook(replace(event, phase="escalation", reason=event.reason))

    def close(self) -> None:
        self.hook.close()


# --- Glue for the gateway core --------------------------------------------------------------------


class AlertListener:
    """Feeds committed batches to an engine and publishes the resulting events.

    Called by the core after each commit with its ``BatchOutcome``: it reads
    ``outcome.accepted`` (pairs of stored record and decoded payload; readings
    are payloads with ``temp``/``fault``/``ch``, a reading block (kind 7) gives
    each of its readings at its own time, bindings carry ``target`` and
    ``device_list``) and ``outcome.presence`` ({device: "online" |
    "offline"}). The place of a device is ``place_of(device)`` if given, else
    the target of the latest binding seen that names it. Call ``tick()`` from
    the core's periodic work so offline alarms fire without traffic.
    """

    def __init__(
        self,
        engine: AlertEngine,
        publish: Callable[[AlertEvent], object],
        *,
        place_of: Callable[[str], str | None] | None = None,
        closers: Iterable[Callable[[], object]] = (),
        escalator: Escalator | None = None,
        store: Any = None,
    ) -> None:
        self.engine = engine
        self.publish = publish
        self.place_of = place_of
        self.closers = list(closers)
        self.escalator = escalator
        self.store = store  # where save() keeps the engine's state (meta STATE_META)
        self.places: dict[str, str | None] = {}
        self.events = 0

    def __call__(self, outcome: Any) -> None:
        events: list[AlertEvent] = []
        for stored, payload in getattr(outcome, "accepted", ()):
            if getattr(payload, "kind", None) in DEVICE_KINDS:
                device = getattr(stored, "signer", None)
                if device is not None:
                    events += self.engine.seen(device, getattr(stored, "received", None))
            if hasattr(payload, "target") and hasattr(payload, "device_list"):
                for device, place in list(self.places.items()):
                    if place == payload.target and device not in payload.device_list:
                        del self.places[device]
                for device in payload.device_list:
                    self.places[device] = payload.target
                continue
            if getattr(payload, "kind", None) == 7 and hasattr(payload, "readings"):
                readings = payload.readings()  # a block: each reading at its own time (§2.8)
            elif hasattr(payload, "temp") and hasattr(payload, "fault"):
                readings = (payload,)
            else:
                continue
            device = getattr(stored, "signer", None)
            if device is None:
                continue
            place = self.place_of(device) if self.place_of is not None else self.places.get(device)
            for r in readings:
                if r.temp is None and r.fault is None:
                    continue
                events += self.engine.observe(
                    device,
                    place,
                    r.time,
                    r.temp,
                    None if r.temp is not None else r.fault,
                    channel=r.ch or 0,
                    tq=getattr(r, "tq", None),
                    received=getattr(stored, "received", None),
                )
        for device, state in getattr(outcome, "presence", {}).items():
            events += self.engine.state(device, state == "online")
        events += self.engine.tick()
        self._emit(events)

    def tick(self) -> None:
        self._emit(self.engine.tick())
        if self.escalator is not None:
            try:
                self.escalator.check()
            except Exception:
                log.exception("alert escalation failed")

    def close(self) -> None:
        """Save the engine's state, then flush and stop the publishers that need it
        (the webhook); call at shutdown."""
        self.save()
        for close in self.closers:
            close()

    def save(self) -> None:
        """Keep the engine's state in the store (meta ``alerts.state``), so the next
        start continues the open alarms. Called after every event, at each checkpoint
        and at shutdown; a failure is logged (the alarms themselves are stored)."""
        if self.store is None:
            return
        state = {"saved": int(self.engine.clock()), "engine": self.engine.snapshot()}
        try:
            self.store.set_meta(STATE_META, json.dumps(state, separators=(",", ":")))
        except Exception as exc:
            from gateway.evidence.diskfull import is_disk_full
            from gateway.evidence.store import connection_lost

            # a full disk, a database gone away (D38): the gateway says so, once
            if not (is_disk_full(exc) or connection_lost(exc)):
                log.exception("saving the alert state failed")

    def _emit(self, events: list[AlertEvent]) -> None:
        for event in events:
            self.events += 1
            log.warning("alert %s %s %s", event.kind, event.phase, event.id)
            try:
                self.publish(event)
            except Exception:
                log.exception("publishing alert %s failed", event.id)
        if events:
            self.save()


def listener_from_config(
    cfg: Any,
    *,
    publish: Callable[[str, bytes], object] | None = None,
    place_of: Callable[[str], str | None] | None = None,
    clock: Callable[[], float] = _time.time,
    store: Any = None,
) -> AlertListener:
    """An ``AlertListener`` from the gateway configuration.

    ``cfg.alerts`` (optional) is the raw ``[alerts]`` table: ``default``,
    ``offline_missed`` (uploads, default 2), ``offline_grace`` (s, default 300),
    ``fault_delay``, ``webhook`` (URL), ``webhook_secret``,
    ``profiles`` and ``places`` (see ``ProfileBook.from_config``), ``email``
    (``[alerts.email]``: host, port, from, to, starttls, user, password_file,
    timeout), ``escalate_after`` (s; 0 or absent: no escalation) and
    ``escalate_to`` (a list of e-mail addresses, sent through the
    ``[alerts.email]`` server, and http(s) webhook URLs). ``publish`` is the
    core's ``(topic, payload) -> None`` QoS 1 publish; alerts go to
    ``ct/v1/gw/{cfg.id}/alerts`` through it and to the webhook and e-mail if
    configured. With ``store``, every event is kept in the store's alerts
    table (the dashboard's), and escalation needs it; the engine's state saved
    there by the last run is restored. The expected upload intervals are
    ``cfg.dashboard``'s (``upload_interval``, ``upload_intervals``) when it has
    them, and ingest's ``min_time`` bounds the reading times believed.
    """
    table = getattr(cfg, "alerts", None) or {}
    if not isinstance(table, Mapping):
        table = vars(table)
    base = Path(cfg.path).resolve().parent if getattr(cfg, "path", None) else None
    book = ProfileBook.from_config(table)
    options = engine_options(cfg, table)
    engine = None
    if store is not None:
        engine = restore_engine(store, book, clock, options)
    if engine is None:
        engine = AlertEngine(book, clock, **options)
    sinks: list[Publisher] = []
    closers: list[Callable[[], object]] = []
    if store is not None:
        end_orphans(store, engine, clock)
        sinks.append(store_recorder(store))
    if publish is not None:
        sinks.append(mqtt_publisher(publish, getattr(cfg, "id", "local")))
    secret = table.get("webhook_secret")
    secret_bytes = secret.encode() if isinstance(secret, str) else secret
    if table.get("webhook"):
        webhook = WebhookPublisher(str(table["webhook"]), secret=secret_bytes)
        sinks.append(webhook)
        closers.append(webhook.close)
    email = None
    if table.get("email") is not None:
        email = email_settings(table["email"], base)
        if email.to:
            mailer = EmailPublisher(email)
            sinks.append(mailer)
            closers.append(mailer.close)
    escalator = None
    after = table.get("escalate_after", 0)
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise AlertConfigError("[alerts] escalate_after must be a whole number of seconds >= 0")
    targets = table.get("escalate_to", [])
    targets = [targets] if isinstance(targets, str) else targets
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise AlertConfigError("[alerts] escalate_to must be a list of addresses and URLs")
    if after and not targets:
        raise AlertConfigError("[alerts] escalate_after needs escalate_to")
    if after:
        if store is None:
            raise AlertConfigError("[alerts] escalation needs the gateway's store")
        addresses = [t.removeprefix("mailto:") for t in targets if "://" not in t]
        urls = [t for t in targets if "://" in t]
        if any("@" not in a for a in addresses):
            raise AlertConfigError(
                f"[alerts] escalate_to: {addresses} are not all e-mail addresses or URLs"
            )
        chans: list[Callable[..., object]] = []
        if addresses:
            if email is None:
                raise AlertConfigError("[alerts] escalate_to e-mail addresses need [alerts.email]")
            escalation_mail = EmailPublisher(email, to=addresses)
            chans.append(escalation_mail)
            closers.append(escalation_mail.close)
        for url in urls:
            hook = _EscalationWebhook(WebhookPublisher(url, secret=secret_bytes))
            chans.append(hook)
            closers.append(hook.close)
        escalator = Escalator(store, after, chans, targets=targets, clock=clock)
    return AlertListener(
        engine,
        fan_out(*sinks),
        place_of=place_of,
        closers=closers,
        escalator=escalator,
        store=store,
    )


def _whole(table: Mapping[str, Any], key: str, default: int, least: int) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise AlertConfigError(f"[alerts] {key} must be a whole number >= {least}")
    return value


def engine_options(cfg: Any, table: Mapping[str, Any]) -> dict[str, Any]:
    """The AlertEngine's settings from ``[alerts]``, ``[dashboard]`` and ``[ingest]``."""
    if "offline_delay" in table:
        raise AlertConfigError(
            "[alerts] offline_delay is no longer used: a device is offline when it missed "
            "offline_missed uploads (default 2) plus offline_grace seconds (default 300); "
            "remove offline_delay (docs/operations.md §2.2)"
        )
    dash = getattr(cfg, "dashboard", None)
    ingest = getattr(cfg, "ingest", None)
    return {
        "offline_missed": _whole(table, "offline_missed", 2, 1),
        "offline_grace": _whole(table, "offline_grace", 300, 0),
        "fault_delay": _whole(table, "fault_delay", 900, 0),
        "upload_interval": int(getattr(dash, "upload_interval", 3600)),
        "upload_intervals": dict(getattr(dash, "upload_intervals", {}) or {}),
        "min_time": int(getattr(ingest, "min_time", 1577836800)),
    }


def restore_engine(
    store: Any, book: ProfileBook, clock: Callable[[], float], options: Mapping[str, Any]
) -> AlertEngine | None:
    """The engine saved by the last run (meta ``alerts.state``), or None when there is
    none or it cannot be used (logged: the open alarms then end as gateway_restarted)."""
    raw = store.get_meta(STATE_META)
    if raw is None:
        return None
    try:
        state = json.loads(raw)
        engine = AlertEngine.restore(state["engine"], book, clock, **options)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("the saved alert state is unusable (%s): starting without it", exc)
        return None
    log.info(
        "alert state of %s restored: %d alarm(s) open",
        _utc(int(state.get("saved", 0))),
        len(engine.active()),
    )
    return engine


def end_orphans(store: Any, engine: AlertEngine, clock: Callable[[], float]) -> int:
    """End the alarms the store holds open but the engine does not (its state was lost
    or older): their end event would never come. Cause ``gateway_restarted``."""
    active = {e.id for e in engine.active()}
    now = int(clock())
    if not active:
        ended = int(store.end_open_alerts("gateway_restarted", ENGINE_KINDS, now=now))
    else:
        ended = 0
        for row in store.alerts(limit=100_000, open_only=True):
            if row["ended"] is not None or row["kind"] not in ENGINE_KINDS or row["id"] in active:
                continue
            event = {**row["event"], "phase": "end", "cause": "gateway_restarted"}
            store.record_alert(event, ended=now)
            store.add_audit("gateway", "close", row["id"], "gateway_restarted")
            ended += 1
    if ended:
        log.info("%d alert(s) left open by the previous run ended (state not saved)", ended)
    return ended


def register_alert_commands(sub: Any) -> None:
    """``coldtrace gateway alerts`` (gateway/alerts_cli.py), through gateway/cli.py's hook."""
    from gateway.alerts_cli import register

    register(sub)
