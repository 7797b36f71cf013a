"""Optional InfluxDB 2.x sink: accepted readings and alert events for Grafana.

This is a convenience copy for dashboards. The signed log is the evidence;
nothing in the store or the log depends on this sink, and a slow, absent or
failing InfluxDB never blocks or fails ingest.

Interface::

    sink = InfluxSink(url, org=..., bucket=..., token=..., gateway="wh-7",
                      batch_size=500, flush_interval=5.0, queue_size=10000,
                      place_of=registry.place_of)
    sink(outcome)              # the core's on_records hook (a BatchOutcome)
    sink.alert(event)          # an AlertEvent (gateway/alerts.py), e.g. through fan_out
    sink.close(timeout=10.0)   # flush what is queued, then stop (call at shutdown)
    sink.stats() -> {"written", "dropped", "failed", "skipped", "invalid", "retries", "queued"}
    reading_point(device, payload, place=..., gateway=...) -> Point | None
    alert_point(event, gateway=...) -> Point
    sink_from_config(cfg, place_of=...) -> InfluxSink | None   # None: no [influx] section

What is written (line protocol, seconds precision, the record's own time):

- ``coldtrace_reading`` for each accepted reading (kind 1, and each reading of
  a block, kind 7, at its own time ``time + i x ivl``, docs/protocol.md §2.8;
  the block's ``batt`` goes with its last reading), tags ``device``,
  ``place`` (the device's current binding target, when it has one),
  ``channel``, ``gateway``; fields ``temp_c`` and ``rh_pct`` (floats, the
  exact decimal of the record's 0.01 units), ``batt_mv``, ``fault``, ``seq``,
  ``tq`` (integers). A field the record does not carry is left out. Readings
  with ``tq`` 0 are skipped (their time is not Unix time) and counted.
- ``coldtrace_alert`` for each alert event, tags ``kind``, ``phase``,
  ``device``, ``channel``, ``place``, ``profile``, ``side``, ``gateway``;
  fields ``id``, ``cause``, ``reason`` (strings), ``start``, ``end``,
  ``duration``, ``readings``, ``degree_minutes``, ``fault``, ``faults``
  (integers) and ``peak_c``, ``min_c``, ``max_c``, ``mean_c``, ``mkt_c``,
  ``limit_c`` (floats, °C).

How: the official ``influxdb-client`` builds each line (``Point``: escaping,
field types, precision) and sends each batch (its synchronous write API, one
HTTP POST to ``/api/v2/write``). Batching, the bounded queue and retries are
this module's, in one background thread, because the client's own batching
mode buffers without a bound and has no drop counter. The hook only appends
small tuples to a bounded deque (the oldest is dropped when it is full, with a
counter and a warning); points are built on the worker thread.

Retries: a connection error, timeout, HTTP 408/429 or 5xx is retried with
exponential backoff (jittered, doubling up to ``max_backoff``, honouring
``Retry-After``) up to ``max_attempts``; another 4xx (bad token, unknown
bucket, rejected lines) gives the batch up at once. Given-up points count as
``failed``. The token is only ever put in the client's Authorization header;
it is never logged and not in ``repr``.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time as _time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["InfluxSink", "alert_point", "reading_point", "sink_from_config"]

log = logging.getLogger("coldtrace.influx")

READING = "coldtrace_reading"
ALERT = "coldtrace_alert"
KIND_READING = 1
KIND_BLOCK = 7


def _import_client() -> Any:
    try:
        import influxdb_client
    except ImportError as exc:  # an optional extra
        raise ImportError(
            "[influx] needs the influxdb-client package: pip install 'coldtrace[influx]'"
        ) from exc
    return influxdb_client


def _centi(value: int) -> float:
    """0.01 units as a float whose shortest repr is the exact decimal (250 -> 2.5).

    ``value / 100`` is the double nearest to the decimal (IEEE division is
    correctly rounded), and Python prints the shortest string that reads back
    as that double: the decimal itself (tests check a wide range)."""
    return int(value) / 100


def reading_point(
    device: str, payload: Any, *, place: str | None = None, gateway: str | None = None
) -> Any:
    """The ``coldtrace_reading`` point of one reading, or None when its tq is 0."""
    from influxdb_client import Point, WritePrecision

    if int(payload.tq) == 0:
        return None
    p = Point(READING).tag("device", device).tag("channel", str(int(payload.ch or 0)))
    if place:
        p.tag("place", place)
    if gateway:
        p.tag("gateway", gateway)
    if payload.temp is not None:
        p.field("temp_c", _centi(payload.temp))
    if getattr(payload, "rh", None) is not None:
        p.field("rh_pct", _centi(payload.rh))
    if getattr(payload, "batt", None) is not None:
        p.field("batt_mv", int(payload.batt))
    if payload.fault is not None:
        p.field("fault", int(payload.fault))
    p.field("seq", int(payload.seq)).field("tq", int(payload.tq))
    return p.time(int(payload.time), WritePrecision.S)


def block_readings(block: Any) -> tuple[Any, ...]:
    """The readings of a kind-7 block (§2.8), the last one carrying the block's
    ``batt`` (the voltage when it was signed)."""
    import dataclasses

    out = tuple(block.readings())
    if out and getattr(block, "batt", None) is not None:
        out = (*out[:-1], dataclasses.replace(out[-1], batt=block.batt))
    return out


_ALERT_TAGS = ("kind", "phase", "device", "place", "profile", "side")
_ALERT_INTS = ("start", "end", "duration", "readings", "degree_minutes", "fault", "faults")
_ALERT_CENTI = ("peak", "min", "max", "mean", "mkt", "limit")


def alert_point(event: Any, *, gateway: str | None = None) -> Any:
    """The ``coldtrace_alert`` point of one AlertEvent (gateway/alerts.py)."""
    from influxdb_client import Point, WritePrecision

    p = Point(ALERT)
    for tag in _ALERT_TAGS:
        value = getattr(event, tag, None)
        if value:
            p.tag(tag, str(value))
    if getattr(event, "channel", None) is not None:
        p.tag("channel", str(int(event.channel)))
    if gateway:
        p.tag("gateway", gateway)
    p.field("id", str(event.id))
    for name in ("cause", "reason"):
        value = getattr(event, name, None)
        if value is not None:
            p.field(name, str(value))
    for name in _ALERT_INTS:
        value = getattr(event, name, None)
        if value is not None:
            p.field(name, int(value))
    for name in _ALERT_CENTI:
        value = getattr(event, f"{name}_centi", None)
        if value is not None:
            p.field(f"{name}_c", _centi(value))
    return p.time(int(event.time), WritePrecision.S)


class _WriteError(Exception):
    def __init__(self, retry: bool, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry = retry
        self.retry_after = retry_after


class InfluxSink:
    """Accepted readings and alert events to InfluxDB 2.x, batched, from a background thread.

    Counters: ``written``, ``dropped`` (queue full, or still queued when
    ``close`` timed out), ``failed`` (given up after retries or refused),
    ``skipped`` (tq 0 readings), ``invalid`` (records that made no point),
    ``retries``.
    """

    RETRY_STATUS = frozenset({408, 429})

    def __init__(
        self,
        url: str,
        *,
        org: str,
        bucket: str,
        token: str,
        gateway: str | None = None,
        batch_size: int = 500,
        flush_interval: float = 5.0,
        queue_size: int = 10000,
        place_of: Callable[[str], str | None] | None = None,
        timeout: float = 10.0,
        max_attempts: int = 8,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        if batch_size < 1 or queue_size < 1 or max_attempts < 1 or flush_interval <= 0:
            raise ValueError("batch_size, queue_size, max_attempts >= 1; flush_interval > 0")
        client_mod = _import_client()
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url = url
        self.org = org
        self.bucket = bucket
        self.gateway = gateway
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.queue_size = queue_size
        self.place_of = place_of
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._client = client_mod.InfluxDBClient(
            url=url, token=token, org=org, timeout=int(timeout * 1000), retries=False
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self.written = self.dropped = self.failed = self.skipped = self.invalid = 0
        self.retries = 0
        self._queue: collections.deque[tuple[str, Any, Any]] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._busy = 0
        self._abort = threading.Event()
        self._warned_drop = 0.0
        self._thread = threading.Thread(target=self._run, name="coldtrace-influx", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:  # never the token
        return f"InfluxSink(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r})"

    # --- on the ingest thread: append only ---------------------------------------------

    def __call__(self, outcome: Any) -> None:
        """The on_records hook: queue the accepted readings of a committed batch."""
        items: list[tuple[str, Any, Any]] = []
        skipped = 0
        for stored, payload in getattr(outcome, "accepted", ()):
            kind = getattr(stored, "kind", None)
            if kind != KIND_READING and kind != KIND_BLOCK:
                continue
            try:
                readings = block_readings(payload) if kind == KIND_BLOCK else (payload,)
                if int(payload.tq) == 0:
                    skipped += len(readings)
                    continue
                device = stored.signer
                place = self.place_of(device) if self.place_of is not None else None
            except Exception:
                with self._cond:
                    self.invalid += 1
                continue
            items.extend(("r", (device, place), r) for r in readings)
        with self._cond:
            self.skipped += skipped
        if items:
            self._put(items)

    def alert(self, event: Any) -> None:
        """An alert event (an AlertListener publisher)."""
        self._put([("a", None, event)])

    def _put(self, items: list[tuple[str, Any, Any]]) -> None:
        with self._cond:
            if self._closing:
                self.dropped += len(items)
                return
            self._queue.extend(items)
            over = len(self._queue) - self.queue_size
            if over > 0:
                for _ in range(over):
                    self._queue.popleft()
                self.dropped += over
                now = _time.monotonic()
                if now - self._warned_drop >= 60.0:  # at most one warning a minute
                    self._warned_drop = now
                    log.warning(
                        "influx queue full (%d points): dropped the oldest, %d so far",
                        self.queue_size,
                        self.dropped,
                    )
            if len(self._queue) >= self.batch_size:
                self._cond.notify()

    # --- counters ---------------------------------------------------------------------

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._busy

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "written": self.written,
                "dropped": self.dropped,
                "failed": self.failed,
                "skipped": self.skipped,
                "invalid": self.invalid,
                "retries": self.retries,
                "queued": len(self._queue) + self._busy,
            }

    # --- shutdown ---------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued for up to ``timeout`` seconds, then stop."""
        with self._cond:
            if self._closing and not self._thread.is_alive():
                return
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(5.0)
        try:
            self._write_api.close()
            self._client.close()
        except Exception:
            log.debug("closing the influx client failed", exc_info=True)

    # --- the worker ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                deadline = _time.monotonic() + self.flush_interval
                while len(self._queue) < self.batch_size and not self._closing:
                    left = deadline - _time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._abort.is_set() or (self._closing and not self._queue):
                    self.dropped += len(self._queue)
                    self._queue.clear()
                    return
                if not self._queue:
                    continue
                n = min(self.batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(n)]
                self._busy = n
            lines = self._lines(batch)
            ok = self._deliver(lines) if lines else True
            with self._cond:
                self._busy = 0
                if ok:
                    self.written += len(lines)
                else:
                    self.failed += len(lines)

    def _lines(self, batch: list[tuple[str, Any, Any]]) -> list[str]:
        lines: list[str] = []
        bad = 0
        for what, extra, obj in batch:
            try:
                if what == "r":
                    device, place = extra
                    point = reading_point(device, obj, place=place, gateway=self.gateway)
                else:
                    point = alert_point(obj, gateway=self.gateway)
                line = point.to_line_protocol() if point is not None else ""
            except Exception:
                bad += 1
                continue
            if line:
                lines.append(line)
        if bad:
            with self._cond:
                self.invalid += bad
            log.warning("influx: %d record(s) could not be turned into points", bad)
        return lines

    def _deliver(self, lines: list[str]) -> bool:
        delay = self.backoff
        for attempt in range(1, self.max_attempts + 1):
            try:
                self._post(lines)
                return True
            except _WriteError as exc:
                error = exc
            if not error.retry or attempt == self.max_attempts:
                break
            with self._cond:
                self.retries += 1
            log.info("influx write: %s, will retry", error)
            wait = error.retry_after
            if wait is None:
                wait = delay * random.uniform(0.5, 1.0)
            if self._abort.wait(min(wait, self.max_backoff)):
                break
            delay = min(delay * 2, self.max_backoff)
        log.warning("influx write gave up on %d point(s): %s", len(lines), error)
        return False

    def _post(self, lines: list[str]) -> None:
        from influxdb_client.rest import ApiException

        try:
            self._write_api.write(
                bucket=self.bucket, org=self.org, record="\n".join(lines), write_precision="s"
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            retry = status in self.RETRY_STATUS or status >= 500 or status == 0
            headers = exc.headers or {}
            raise _WriteError(
                retry, f"HTTP {status} {exc.reason or ''}".strip(), _seconds(headers)
            ) from None
        except Exception as exc:  # connection refused, timeout, ...: the network
            raise _WriteError(True, type(exc).__name__) from None


def _seconds(headers: Any) -> float | None:
    try:
        value = headers.get("Retry-After")
    except Exception:
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def sink_from_config(
    cfg: Any, *, place_of: Callable[[str], str | None] | None = None
) -> InfluxSink | None:
    """An InfluxSink from ``cfg.influx`` (gateway/config.py InfluxConfig), None when absent."""
    ic = getattr(cfg, "influx", None)
    if ic is None:
        return None
    if isinstance(ic, Mapping):
        raise TypeError("cfg.influx must be an InfluxConfig (gateway/config.py)")
    return InfluxSink(
        ic.url,
        org=ic.org,
        bucket=ic.bucket,
        token=ic.secret(),
        gateway=getattr(cfg, "id", None),
        batch_size=ic.batch_size,
        flush_interval=float(ic.flush_interval),
        queue_size=ic.queue_size,
        place_of=place_of,
    )
