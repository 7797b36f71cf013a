"""The optional InfluxDB 2.x sink (gateway/influx.py): line protocol, the bounded queue,
batching and retries, the [influx] configuration, metrics, and the gateway wiring.

No InfluxDB 2 server can be installed on these machines. The HTTP tests run against a
local endpoint (``http.server`` on 127.0.0.1) that only records what it receives and
answers with scripted statuses (204, or 503/400 for the retry tests): they test our
client side - what we send, how we batch, retry and give up - not InfluxDB. Only
``test_real_influxdb`` talks to a real server, when ``COLDTRACE_INFLUX_URL`` (and
``COLDTRACE_INFLUX_TOKEN``, ``_ORG``, ``_BUCKET``) are set; it is skipped otherwise.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("influxdb_client")

from gateway.alerts import AlertEvent
from gateway.config import ConfigError, load_config
from gateway.influx import InfluxSink, _centi, alert_point, reading_point
from gateway.metrics import render
from protocol.record import Binding, Reading
from tests.gateway.devices import SimDevice, wait_for

TOKEN = "s3cr3t-t0ken-value"
T0 = 1_765_000_000


def reading(seq: int = 7, *, tq: int = 2, **kw: object) -> Reading:
    values: dict[str, object] = {"temp": 250, "ch": 0} | kw
    return Reading(boot=1, seq=seq, time=T0 + seq, tq=tq, prev=b"\0" * 32, **values)  # type: ignore[arg-type]


def outcome(*payloads: Reading, device: str = "tl-1") -> SimpleNamespace:
    stored = SimpleNamespace(kind=1, signer=device)
    return SimpleNamespace(accepted=[(stored, p) for p in payloads], presence={})


# --- line protocol --------------------------------------------------------------------------


def test_reading_line_exact_with_escaped_tags() -> None:
    r = reading(rh=4501, batt=3300, ch=1)
    line = reading_point("tl-1", r, place="cold room,1=a", gateway="wh-7").to_line_protocol()
    assert line == (
        "coldtrace_reading,channel=1,device=tl-1,gateway=wh-7,place=cold\\ room\\,1\\=a "
        f"batt_mv=3300i,rh_pct=45.01,seq=7i,temp_c=2.5,tq=2i {T0 + 7}"
    )


def test_fault_reading_and_no_place() -> None:
    r = reading(3, temp=None, fault=2, tq=1)
    line = reading_point("tl-1", r, gateway="wh-7").to_line_protocol()
    assert (
        line
        == f"coldtrace_reading,channel=0,device=tl-1,gateway=wh-7 fault=2i,seq=3i,tq=1i {T0 + 3}"
    )


def test_temperature_is_the_exact_decimal() -> None:
    for centi in range(-20000, 20001):
        assert Decimal(repr(_centi(centi))) == Decimal(centi).scaleb(-2), centi
    for centi, text in ((-1, "-0.01"), (249, "2.49"), (1000, "10"), (-4005, "-40.05")):
        line = reading_point("d", reading(temp=centi)).to_line_protocol()
        assert f"temp_c={text}," in line


def test_tq0_reading_has_no_point() -> None:
    assert reading_point("d", reading(tq=0)) is None


def test_alert_line_exact() -> None:
    event = AlertEvent(
        kind="excursion",
        phase="end",
        id="excursion/tl-1/0/high/100",
        device="tl-1",
        time=T0 + 600,
        start=T0,
        raised=T0 + 601,
        channel=0,
        place="dock 2",
        profile="chilled",
        side="high",
        limit_centi=800,
        end=T0 + 600,
        duration=600,
        peak_centi=1050,
        degree_minutes=2500,
        readings=3,
        cause="in_range",
    )
    assert alert_point(event, gateway="wh-7").to_line_protocol() == (
        "coldtrace_alert,channel=0,device=tl-1,gateway=wh-7,kind=excursion,phase=end,"
        "place=dock\\ 2,profile=chilled,side=high "
        'cause="in_range",degree_minutes=2500i,duration=600i,end=1765000600i,'
        'id="excursion/tl-1/0/high/100",limit_c=8,peak_c=10.5,readings=3i,start=1765000000i '
        f"{T0 + 600}"
    )


# --- a recording HTTP endpoint -------------------------------------------------------------


@dataclass
class Endpoint:
    """Records each POST; answers the scripted statuses first, then 204. Not InfluxDB."""

    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lines(self) -> list[str]:
        return [ln for _, _, body in self.requests for ln in body.splitlines()]


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    state = Endpoint()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                state.requests.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()}, body.decode())
                )
                status = state.statuses.pop(0) if state.statuses else 204
            self.send_response(status)
            if status == 503:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def sink(endpoint: Endpoint, **kw: object) -> InfluxSink:
    options: dict[str, object] = {
        "org": "acme",
        "bucket": "cold chain",
        "token": TOKEN,
        "gateway": "wh-7",
        "batch_size": 100,
        "flush_interval": 0.05,
        "backoff": 0.01,
    } | kw
    return InfluxSink(endpoint.url, **options)  # type: ignore[arg-type]


def test_batch_posted_with_token_org_bucket_precision(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s = sink(endpoint, place_of=lambda d: "room 1")
    s(outcome(reading(1), reading(2, tq=0), reading(3, temp=None, fault=4)))
    s(SimpleNamespace(accepted=[(SimpleNamespace(kind=5, signer="reg"), object())]))
    s.close()
    assert s.stats() | {"queued": 0} == {
        "written": 2,
        "dropped": 0,
        "failed": 0,
        "skipped": 1,
        "invalid": 0,
        "retries": 0,
        "queued": 0,
    }
    assert len(endpoint.requests) == 1
    path, headers, _ = endpoint.requests[0]
    url = urllib.parse.urlsplit(path)
    assert url.path == "/api/v2/write"
    assert urllib.parse.parse_qs(url.query) == {
        "org": ["acme"],
        "bucket": ["cold chain"],
        "precision": ["s"],
    }
    assert headers["authorization"] == f"Token {TOKEN}"
    assert endpoint.lines() == [
        f"coldtrace_reading,channel=0,device=tl-1,gateway=wh-7,place=room\\ 1 "
        f"seq=1i,temp_c=2.5,tq=2i {T0 + 1}",
        f"coldtrace_reading,channel=0,device=tl-1,gateway=wh-7,place=room\\ 1 "
        f"fault=4i,seq=3i,tq=2i {T0 + 3}",
    ]
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(s)


def test_batches_split_by_size(endpoint: Endpoint) -> None:
    s = sink(endpoint, batch_size=3, flush_interval=30)
    s(outcome(*(reading(i) for i in range(7))))
    wait_for(lambda: len(endpoint.requests) == 2, 10, "two full batches")
    s.close()  # the remaining one on shutdown, without waiting for the interval
    assert [len(body.splitlines()) for _, _, body in endpoint.requests] == [3, 3, 1]
    assert s.written == 7


def test_queue_bound_drops_oldest(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    s = sink(endpoint, batch_size=100, queue_size=5, flush_interval=30)
    t = time.monotonic()
    s(outcome(*(reading(i) for i in range(8))))
    assert time.monotonic() - t < 0.5  # appending never waits for the network
    assert s.dropped == 3 and s.pending == 5
    assert "influx queue full" in caplog.text
    s.close()
    assert [ln.split(" ")[1].split(",")[0] for ln in endpoint.lines()] == [
        f"seq={i}i" for i in range(3, 8)
    ]


def test_retry_on_503_then_written(endpoint: Endpoint) -> None:
    endpoint.statuses = [503, 503]
    s = sink(endpoint)
    s(outcome(reading(1), reading(2)))
    wait_for(lambda: s.written == 2, 10, "written after retries")
    s.close()
    assert s.retries == 2 and s.failed == 0
    bodies = [body for _, _, body in endpoint.requests]
    assert len(bodies) == 3 and len(set(bodies)) == 1  # the same batch, three times


def test_gives_up_after_max_attempts_and_on_400(endpoint: Endpoint) -> None:
    endpoint.statuses = [503] * 3
    s = sink(endpoint, max_attempts=3)
    s(outcome(reading(1)))
    wait_for(lambda: s.failed == 1, 10, "given up")
    endpoint.statuses = [400]
    s(outcome(reading(2)))
    wait_for(lambda: s.failed == 2, 10, "refused")
    s.close()
    assert len(endpoint.requests) == 4 and s.retries == 2 and s.written == 0


def test_unreachable_server_never_blocks_or_raises() -> None:
    from gateway.transport.broker import free_port

    s = InfluxSink(
        f"http://127.0.0.1:{free_port()}",
        org="o",
        bucket="b",
        token=TOKEN,
        flush_interval=0.01,
        backoff=0.01,
        max_attempts=2,
    )
    s(outcome(reading(1)))
    s(SimpleNamespace(accepted=[(SimpleNamespace(kind=1, signer="x"), object())]))  # garbage
    wait_for(lambda: s.failed == 1, 10, "given up")
    s.close()
    assert s.invalid == 1 and s.written == 0


def test_alert_events_written(endpoint: Endpoint) -> None:
    s = sink(endpoint)
    s.alert(
        AlertEvent(
            kind="offline",
            phase="start",
            id="offline/tl-1/5",
            device="tl-1",
            time=T0,
            start=T0,
            raised=T0,
        )
    )
    s.close()
    assert endpoint.lines() == [
        "coldtrace_alert,device=tl-1,gateway=wh-7,kind=offline,phase=start "
        f'id="offline/tl-1/5",start={T0}i {T0}'
    ]


# --- configuration and metrics --------------------------------------------------------------


def write_cfg(tmp_path: Path, influx: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\nid = "wh-7"\n' + influx, encoding="utf-8")
    return path


def test_config_influx_section(tmp_path: Path) -> None:
    assert load_config(write_cfg(tmp_path, "")).influx is None
    (tmp_path / "influx.token").write_text(TOKEN + "\n")
    cfg = load_config(
        write_cfg(
            tmp_path,
            '[influx]\nurl = "http://127.0.0.1:8086"\norg = "acme"\nbucket = "ct"\n'
            'token_file = "influx.token"\nbatch_size = 50\nflush_interval = 2\n'
            "queue_size = 500\n",
        )
    )
    assert cfg.influx is not None and cfg.influx.secret() == TOKEN
    assert cfg.influx.token_file == tmp_path / "influx.token"
    assert (cfg.influx.batch_size, cfg.influx.queue_size) == (50, 500)
    cfg = load_config(
        write_cfg(
            tmp_path, f'[influx]\nurl = "https://x"\norg = "a"\nbucket = "b"\ntoken = "{TOKEN}"\n'
        )
    )
    assert TOKEN not in repr(cfg)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('url = "http://x"\norg = "a"\nbucket = "b"\ntoken = "t"\ntokn = "t"\n', "unknown key"),
        ('url = "http://x"\norg = "a"\nbucket = "b"\n', "exactly one of token"),
        (
            'url = "http://x"\norg = "a"\nbucket = "b"\ntoken = "t"\ntoken_file = "f"\n',
            "exactly one",
        ),
        ('url = "x:8086"\norg = "a"\nbucket = "b"\ntoken = "t"\n', "url must be"),
        ('url = "http://x"\nbucket = "b"\ntoken = "t"\n', "org is required"),
        ('url = "http://x"\norg = "a"\nbucket = "b"\ntoken = "t"\nqueue_size = 0\n', "queue_size"),
        ('url = "http://x"\norg = "a"\nbucket = "b"\ntoken = "t"\nbatch_size = "9"\n', "integer"),
    ],
)
def test_config_influx_refused(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_cfg(tmp_path, "[influx]\n" + body))


def test_metrics_render_influx_counters() -> None:
    text = render(
        {
            "influx": {
                "written": 5,
                "dropped": 1,
                "failed": 0,
                "skipped": 2,
                "invalid": 0,
                "retries": 3,
                "queued": 4,
            }
        }
    )
    assert 'coldtrace_influx_points_total{outcome="written"} 5' in text
    assert 'coldtrace_influx_points_total{outcome="dropped"} 1' in text
    assert "coldtrace_influx_retries_total 3" in text
    assert "coldtrace_influx_queued_points 4" in text


# --- the gateway wiring --------------------------------------------------------------------------


def test_gateway_writes_readings_and_alerts(make_broker, make_gateway, endpoint: Endpoint) -> None:
    dev = SimDevice("tl-influx")
    broker = make_broker([dev.id])
    env = make_gateway(broker)
    with env.config_path.open("a") as f:
        f.write(
            "\n[alerts.profiles.quick]\nlow = 0\nhigh = 400\ndelay = 60\n\n"
            '[alerts.places]\n"cold-room-1" = "quick"\n\n'
            f'[influx]\nurl = "{endpoint.url}"\norg = "acme"\nbucket = "ct"\n'
            f'token = "{TOKEN}"\nflush_interval = 0.1\n'
        )
    env.cfg = load_config(env.config_path)
    env.register(dev, place="cold-room-1")
    gw = env.start_gateway()
    try:
        env.connect(dev)
        t0 = int(time.time()) - 1000
        for dt, temp in ((0, 300), (30, 500), (100, 520), (200, 300)):
            dev.publish(dev.reading(temp=temp, time_=t0 + dt))
        wait_for(lambda: gw.alerts.events >= 2, 15, "excursion start and end")
        wait_for(lambda: gw.influx.written >= 6, 15, "points written")
    finally:
        gw.stop()
    readings = [ln for ln in endpoint.lines() if ln.startswith("coldtrace_reading,")]
    alerts = [ln for ln in endpoint.lines() if ln.startswith("coldtrace_alert,")]
    assert len(readings) == 4 and len(alerts) == 2
    assert all(",place=cold-room-1" in ln and ",gateway=" in ln for ln in readings)
    assert readings[1].endswith(f" {t0 + 30}") and "temp_c=5," in readings[1]
    assert {"phase=start" in alerts[0], "phase=end" in alerts[1]} == {True}


# --- a real InfluxDB 2, only where one is configured ------------------------------------------


INFLUX_ENV = (
    "COLDTRACE_INFLUX_URL",
    "COLDTRACE_INFLUX_TOKEN",
    "COLDTRACE_INFLUX_ORG",
    "COLDTRACE_INFLUX_BUCKET",
)


@pytest.mark.skipif(
    not all(os.environ.get(k) for k in INFLUX_ENV),
    reason="no InfluxDB 2 server: set COLDTRACE_INFLUX_URL, _TOKEN, _ORG and _BUCKET "
    "(none can be installed on the CI machines)",
)
def test_real_influxdb() -> None:
    from influxdb_client import InfluxDBClient

    url, token, org, bucket = (os.environ[k] for k in INFLUX_ENV)
    device = f"it-{os.getpid()}-{int(time.time())}"
    now = int(time.time())
    s = InfluxSink(url, org=org, bucket=bucket, token=token, gateway="it", flush_interval=0.1)
    r = Reading(boot=1, seq=1, time=now, tq=2, prev=b"\0" * 32, temp=-1805, rh=5000, ch=0)
    s(outcome(r, device=device))
    s.close()
    assert (s.written, s.failed) == (1, 0)
    query = (
        f'from(bucket: "{bucket}") |> range(start: -1h) '
        f'|> filter(fn: (r) => r._measurement == "coldtrace_reading" and r.device == "{device}")'
        ' |> filter(fn: (r) => r._field == "temp_c")'
    )
    with InfluxDBClient(url=url, token=token, org=org) as client:
        tables = client.query_api().query(query)
    values = [rec.get_value() for t in tables for rec in t.records]
    assert values == [-18.05]


def test_binding_payload_ignored_by_sink(endpoint: Endpoint) -> None:
    s = sink(endpoint)
    b = SimpleNamespace(kind=5, signer="registry")
    s(SimpleNamespace(accepted=[(b, Binding)], presence={}))
    s.close()
    assert endpoint.requests == [] and s.stats()["written"] == 0
