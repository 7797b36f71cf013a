"""Prometheus metrics for the gateway: the text exposition format and a tiny HTTP endpoint.

Interface::

    render(stats, *, now=None) -> str            # text format 0.0.4
    serve_metrics(port, stats_fn, *, host="127.0.0.1") -> MetricsServer
    MetricsServer: .port .url .close()           (context manager)
    CONTENT_TYPE                                 # "text/plain; version=0.0.4; charset=utf-8"

``stats_fn()`` is called once per scrape, on the HTTP server's thread, and
returns a plain dict. Every key is optional: a missing key leaves its metric
out (never a made-up zero). The keys are those of the core's
``Gateway.status()`` plus the store's reject counts and device presence::

    gateway        str    -> coldtrace_gateway_info{gateway=...} 1
    uptime         s      -> coldtrace_uptime_seconds
    connected      bool   -> coldtrace_broker_connected (1/0)
    ingest_rate    rec/s  -> coldtrace_ingest_rate_records_per_second
    backlog        int    -> coldtrace_ingest_backlog_records
    tree_size      int    -> coldtrace_log_size_leaves
    session        {"accepted": n, "duplicates": n, <reject reason>: n, ...}
                          -> coldtrace_records_total{outcome="accepted"|"duplicate"}
    rejects        {reason: n}   -> coldtrace_rejects_total{reason=...}
                          (if absent: the session keys other than accepted/duplicates)
    devices        {"online": n | [ids], "offline": ..., "registered": ..., "revoked": ...,
                    "bound": n (devices a binding says monitor a place now)}
                          -> coldtrace_devices{state=...}
    last_checkpoint {"size": n, "time": unix s}
                          -> coldtrace_checkpoint_size_leaves, _timestamp_seconds, _age_seconds
    last_anchor    {"size": n, "time": unix s, "backend": "local"}
                          -> coldtrace_anchor_size_leaves, _timestamp_seconds,
                             _age_seconds{backend=...}
    acks_sent      int    -> coldtrace_acks_sent_total
    mqtt           {event: n}    -> coldtrace_mqtt_events_total{event=...}
    alerts_active  int    -> coldtrace_alerts_active
    influx         {"written": n, "dropped": n, "failed": n, "skipped": n, "invalid": n,
                    "retries": n, "queued": n}  (gateway/influx.py, when [influx] is on)
                          -> coldtrace_influx_points_total{outcome=...},
                             coldtrace_influx_retries_total, coldtrace_influx_queued_points
    cloud          {"pushed_records": n, "pushed_batches": n, "failures": {reason: n},
                    "backlog": n, "cloud_size": n}  (gateway/push.py, with [cloud])
                          -> coldtrace_cloud_pushed_records_total,
                             coldtrace_cloud_pushed_batches_total,
                             coldtrace_cloud_push_failures_total{reason=...},
                             coldtrace_cloud_backlog_records, coldtrace_cloud_size_leaves
    witness        {"cosigned": n, "inconsistent": n, "failures": {reason: n}}
                          (gateway/witness.py) -> coldtrace_witness_cosigned_total,
                             coldtrace_witness_inconsistent_total,
                             coldtrace_witness_failures_total{reason=...}
    quarantine     {"rows": n, "bytes": n, "max_rows": n, "max_bytes": n, "full": bool,
                    "dropped": {"full": n, "rate": n}, "rate_limited": {device: n}}
                          (gateway/evidence/quarantine.py) -> coldtrace_quarantine_rows,
                             coldtrace_quarantine_bytes, coldtrace_quarantine_limit_rows,
                             coldtrace_quarantine_limit_bytes, coldtrace_quarantine_full,
                             coldtrace_quarantine_dropped_total{cause=...}
    verify_restarts int   -> coldtrace_verify_worker_restarts_total
    store_outages  int    -> coldtrace_store_outages_total (lost connections to the
                             store's PostgreSQL server the process waited out, D38)
    store_outage_seconds s -> coldtrace_store_outage_seconds_total
    broker_dropped int    -> coldtrace_broker_dropped_messages_total (the broker's
                             $SYS/broker/publish/messages/dropped, readable by the
                             gateway user)

Counters count since the gateway process started (Prometheus handles the
reset at a restart). Ages are computed at scrape time from ``now``
(default: the wall clock), so a stalled gateway shows a growing age.

For the gateway core: ``render(gw.status())`` already gives most of the
table; add ``rejects`` and ``devices`` from the store and ``alerts_active``
from the alert engine, and start ``serve_metrics(port, stats_fn)`` from
``coldtrace gateway run`` (e.g. a ``[metrics] port`` setting). ``stats_fn``
runs on the HTTP thread: it must only read.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeGuard

__all__ = ["CONTENT_TYPE", "MetricsServer", "render", "serve_metrics"]

log = logging.getLogger("coldtrace.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], float | int]


@dataclass(frozen=True)
class _Family:
    name: str
    type: str  # "gauge" | "counter"
    help: str
    samples: list[Sample]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(value: object) -> int | None:
    """A count given as a number or as a collection (e.g. a list of device ids)."""
    if _is_number(value):
        return int(value)
    if isinstance(value, list | tuple | set | frozenset | dict):
        return len(value)
    return None


def _families(stats: Mapping[str, Any], now: float) -> Iterable[_Family]:
    def gauge(name: str, help: str, key: str) -> Iterable[_Family]:
        value = stats.get(key)
        if isinstance(value, bool):
            yield _Family(name, "gauge", help, [({}, int(value))])
        elif _is_number(value):
            yield _Family(name, "gauge", help, [({}, value)])

    gateway = stats.get("gateway")
    if isinstance(gateway, str):
        yield _Family(
            "coldtrace_gateway_info",
            "gauge",
            "The gateway id (always 1).",
            [({"gateway": gateway}, 1)],
        )
    yield from gauge("coldtrace_uptime_seconds", "Seconds since the gateway started.", "uptime")
    yield from gauge(
        "coldtrace_broker_connected",
        "1 while the gateway is connected to the MQTT broker.",
        "connected",
    )
    yield from gauge(
        "coldtrace_ingest_rate_records_per_second",
        "Records accepted and stored per second, recent average.",
        "ingest_rate",
    )
    yield from gauge(
        "coldtrace_ingest_backlog_records",
        "Records received from the broker and not yet durably stored.",
        "backlog",
    )
    yield from gauge(
        "coldtrace_log_size_leaves", "Leaves in the gateway's Merkle log.", "tree_size"
    )

    session = stats.get("session")
    session = session if isinstance(session, Mapping) else {}
    outcomes = [
        ({"outcome": label}, session[key])
        for key, label in (("accepted", "accepted"), ("duplicates", "duplicate"))
        if _is_number(session.get(key))
    ]
    if outcomes:
        yield _Family(
            "coldtrace_records_total",
            "counter",
            "Records stored (accepted) or re-acknowledged (duplicate).",
            outcomes,
        )
    rejects = stats.get("rejects")
    if not isinstance(rejects, Mapping):
        rejects = {k: v for k, v in session.items() if k not in ("accepted", "duplicates")}
    reject_samples = [({"reason": str(r)}, n) for r, n in sorted(rejects.items()) if _is_number(n)]
    if reject_samples or isinstance(stats.get("rejects"), Mapping):
        yield _Family(
            "coldtrace_rejects_total",
            "counter",
            "Records refused and quarantined, by reason.",
            reject_samples,
        )

    devices = stats.get("devices")
    if isinstance(devices, Mapping):
        samples: list[Sample] = []
        for state, value in sorted(devices.items()):
            n = _count(value)
            if n is not None:
                samples.append(({"state": str(state)}, n))
        if samples:
            yield _Family(
                "coldtrace_devices",
                "gauge",
                "Devices by state (online/offline from their last will; "
                "registered/revoked from the registry).",
                samples,
            )

    for key, what in (("last_checkpoint", "checkpoint"), ("last_anchor", "anchor")):
        entry = stats.get(key)
        if not isinstance(entry, Mapping):
            continue
        labels = (
            {"backend": str(entry["backend"])} if what == "anchor" and entry.get("backend") else {}
        )
        noun = "signed checkpoint" if what == "checkpoint" else "anchored checkpoint"
        if _is_number(entry.get("size")):
            yield _Family(
                f"coldtrace_{what}_size_leaves",
                "gauge",
                f"Tree size of the last {noun}.",
                [(labels, entry["size"])],
            )
        if _is_number(entry.get("time")):
            yield _Family(
                f"coldtrace_{what}_timestamp_seconds",
                "gauge",
                f"Unix time of the last {noun}.",
                [(labels, entry["time"])],
            )
            age = round(now - float(entry["time"]), 3)
            yield _Family(
                f"coldtrace_{what}_age_seconds",
                "gauge",
                f"Seconds since the last {noun}.",
                [(labels, age)],
            )

    acks = stats.get("acks_sent")
    if _is_number(acks):
        yield _Family(
            "coldtrace_acks_sent_total",
            "counter",
            "Application-level acks published to devices.",
            [({}, acks)],
        )
    mqtt = stats.get("mqtt")
    if isinstance(mqtt, Mapping):
        events = _by(mqtt, "event")
        if events:
            yield _Family(
                "coldtrace_mqtt_events_total",
                "counter",
                "MQTT client events (messages received, acked, published; connects, disconnects).",
                events,
            )
    dropped = stats.get("broker_dropped")
    if _is_number(dropped):
        yield _Family(
            "coldtrace_broker_dropped_messages_total",
            "counter",
            "Messages the broker dropped for lack of queue space, all clients "
            "($SYS/broker/publish/messages/dropped); must stay 0.",
            [({}, dropped)],
        )
    yield from gauge(
        "coldtrace_alerts_active",
        "Alarms open now (excursions, sensor faults, offline devices).",
        "alerts_active",
    )
    yield from _cloud_families(stats)
    yield from _quarantine_families(stats)
    yield from _evm_families(stats)
    influx = stats.get("influx")
    if isinstance(influx, Mapping):
        outcomes = [
            ({"outcome": k}, influx[k])
            for k in ("written", "dropped", "failed", "skipped", "invalid")
            if _is_number(influx.get(k))
        ]
        if outcomes:
            yield _Family(
                "coldtrace_influx_points_total",
                "counter",
                "Points for the optional InfluxDB sink by outcome (written, dropped: queue "
                "full, failed: given up, skipped: tq 0 readings, invalid).",
                outcomes,
            )
        if _is_number(influx.get("retries")):
            yield _Family(
                "coldtrace_influx_retries_total",
                "counter",
                "InfluxDB write attempts retried.",
                [({}, influx["retries"])],
            )
        if _is_number(influx.get("queued")):
            yield _Family(
                "coldtrace_influx_queued_points",
                "gauge",
                "Points waiting for InfluxDB.",
                [({}, influx["queued"])],
            )


def _cloud_families(stats: Mapping[str, Any]) -> Iterable[_Family]:
    """The pusher's and the witness's counters (gateway/push.py, gateway/witness.py)."""
    cloud = stats.get("cloud")
    if isinstance(cloud, Mapping):
        for key, name, kind, help in (
            (
                "pushed_records",
                "coldtrace_cloud_pushed_records_total",
                "counter",
                "Records the cloud stored from this gateway's pushes.",
            ),
            (
                "pushed_batches",
                "coldtrace_cloud_pushed_batches_total",
                "counter",
                "Push batches the cloud accepted (duplicates included).",
            ),
            (
                "backlog",
                "coldtrace_cloud_backlog_records",
                "gauge",
                "Records under a signed checkpoint that the cloud does not hold yet.",
            ),
            (
                "cloud_size",
                "coldtrace_cloud_size_leaves",
                "gauge",
                "The log size the cloud confirmed.",
            ),
        ):
            if _is_number(cloud.get(key)):
                yield _Family(name, kind, help, [({}, cloud[key])])
        failures = cloud.get("failures")
        if isinstance(failures, Mapping):
            yield _Family(
                "coldtrace_cloud_push_failures_total",
                "counter",
                "Push attempts that failed, by reason (network, timeout, http_5xx, conflict, "
                "the cloud's refusal code; log_forked/log_frozen stop pushing).",
                _by(failures, "reason"),
            )
    witness = stats.get("witness")
    if isinstance(witness, Mapping):
        for key, help in (
            ("cosigned", "Peer checkpoints checked and cosigned."),
            ("inconsistent", "Peer checkpoints refused as inconsistent (a fork: not cosigned)."),
        ):
            if _is_number(witness.get(key)):
                yield _Family(
                    f"coldtrace_witness_{key}_total", "counter", help, [({}, witness[key])]
                )
        failures = witness.get("failures")
        if isinstance(failures, Mapping):
            yield _Family(
                "coldtrace_witness_failures_total",
                "counter",
                "Witness rounds of a peer that failed (network, the cloud's answers).",
                _by(failures, "reason"),
            )


def _by(counts: Mapping[str, Any], label: str) -> list[tuple[dict[str, str], Any]]:
    """One sample per numeric entry of ``counts``, labelled ``{label: key}``, in key order."""
    return [({label: str(k)}, v) for k, v in sorted(counts.items()) if _is_number(v)]


def _quarantine_families(stats: Mapping[str, Any]) -> Iterable[_Family]:
    """The quarantine's usage and caps, what it counted without storing, worker restarts."""
    q = stats.get("quarantine")
    if isinstance(q, Mapping):
        for key, name, help in (
            ("rows", "coldtrace_quarantine_rows", "Refused messages stored in quarantine."),
            (
                "bytes",
                "coldtrace_quarantine_bytes",
                "Bytes the quarantine holds (raw, detail, topic).",
            ),
            ("max_rows", "coldtrace_quarantine_limit_rows", "[quarantine] max_rows."),
            ("max_bytes", "coldtrace_quarantine_limit_bytes", "[quarantine] max_bytes."),
            ("full", "coldtrace_quarantine_full", "1 while new refusals are counted, not stored."),
        ):
            value = q.get(key)
            if isinstance(value, bool) or _is_number(value):
                yield _Family(name, "gauge", help, [({}, int(value))])
        dropped = q.get("dropped")
        if isinstance(dropped, Mapping):
            yield _Family(
                "coldtrace_quarantine_dropped_total",
                "counter",
                "Refused messages counted with a digest, not stored: cause rate (over the "
                "device's rate limit) or full (the quarantine was at its cap).",
                _by(dropped, "cause"),
            )
    restarts = stats.get("verify_restarts")
    if _is_number(restarts):
        yield _Family(
            "coldtrace_verify_worker_restarts_total",
            "counter",
            "Verification worker processes that died and were restarted.",
            [({}, restarts)],
        )
    for key, name, help in (
        (
            "store_outages",
            "coldtrace_store_outages_total",
            "Connections to the store's PostgreSQL server lost and waited out.",
        ),
        (
            "store_outage_seconds",
            "coldtrace_store_outage_seconds_total",
            "Seconds spent waiting for the store's PostgreSQL server to answer again.",
        ),
    ):
        value = stats.get(key)
        if _is_number(value):
            yield _Family(name, "counter", help, [({}, value)])


def _evm_families(stats: Mapping[str, Any]) -> Iterable[_Family]:
    """The EVM ledger's queue and health (gateway/evidence/evm.py, docs/evm.md)."""
    evm = stats.get("evm")
    if not isinstance(evm, Mapping):
        return
    yield _Family(
        "coldtrace_evm_anchors",
        "gauge",
        "EVM anchors by state: queued, pending (sent, not final), confirmed, superseded.",
        [
            ({"state": k}, evm[k])
            for k in ("queued", "pending", "confirmed", "superseded")
            if _is_number(evm.get(k))
        ],
    )
    status = evm.get("status")
    if isinstance(status, str):
        yield _Family(
            "coldtrace_evm_ok",
            "gauge",
            "1 while EVM anchoring works; 0 with a problem (label: unreachable, "
            "out_of_funds, wrong_chain, fee_cap, ...).",
            [({"status": status}, int(status == "ok"))],
        )


def render(stats: Mapping[str, Any], *, now: float | None = None) -> str:
    """The Prometheus text exposition (format 0.0.4) of ``stats``."""
    now = time.time() if now is None else now
    lines: list[str] = []
    for family in _families(stats, now):
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in family.samples:
            if labels:
                inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
                lines.append(f"{family.name}{{{inner}}} {_number(value)}")
            else:
                lines.append(f"{family.name} {_number(value)}")
    return "\n".join(lines) + "\n" if lines else ""


# --- HTTP ----------------------------------------------------------------------------------


class MetricsServer:
    """A threaded HTTP server answering ``GET /metrics``; ``close()`` stops it."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_metrics(
    port: int,
    stats_fn: Callable[[], Mapping[str, Any]],
    *,
    host: str = "127.0.0.1",
    clock: Callable[[], float] = time.time,
) -> MetricsServer:
    """Serve ``render(stats_fn())`` at ``http://host:port/metrics`` from a daemon thread.

    ``port=0`` picks a free port (see ``MetricsServer.port``). Bound to
    loopback by default; give ``host="0.0.0.0"`` for a Prometheus elsewhere.
    A failing ``stats_fn`` answers 500 and is logged; the server keeps going.
    """

    class Handler(BaseHTTPRequestHandler):
        server_version = "coldtrace-metrics"

        def _answer(self, with_body: bool) -> None:
            path = self.path.split("?", 1)[0]
            if path != "/metrics":
                self._send(
                    404, b"not found: try /metrics\n", "text/plain; charset=utf-8", with_body
                )
                return
            try:
                body = render(stats_fn(), now=clock()).encode("utf-8")
            except Exception:
                log.exception("metrics: stats_fn failed")
                self._send(500, b"stats unavailable\n", "text/plain; charset=utf-8", with_body)
                return
            self._send(200, body, CONTENT_TYPE, with_body)

        def _send(self, status: int, body: bytes, ctype: str, with_body: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics %s " + format, self.client_address[0], *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="coldtrace-metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
