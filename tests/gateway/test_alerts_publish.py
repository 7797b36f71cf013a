"""Alert publishers: the webhook (against a real HTTP server on loopback), MQTT, and the
glue the gateway core calls after each commit."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest

from gateway.alerts import (
    AlertEngine,
    AlertEvent,
    AlertListener,
    WebhookPublisher,
    fan_out,
    listener_from_config,
    mqtt_publisher,
)
from gateway.profiles import Profile
from gateway.transport.broker import BrokerUser, free_port, start_broker, write_config
from protocol.record import Binding, Reading
from tests.gateway.rawmqtt import RawClient


def event(n: int, phase: str = "start") -> AlertEvent:
    return AlertEvent(
        kind="excursion",
        phase=phase,
        id=f"excursion/tl-1/0/high/{n}",
        device="tl-1",
        time=n,
        start=n,
        raised=n,
        peak_centi=900,
    )


@dataclass
class Hook:
    """A webhook receiver that answers with scripted statuses (then 200)."""

    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/coldtrace"

    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(body) for _, _, body in self.requests]


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()
    state.gate.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(
                (time.monotonic(), {k.lower(): v for k, v in self.headers.items()}, body)
            )
            state.arrived.set()
            state.gate.wait(30)
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.gate.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_webhook_posts_each_alert_in_order_with_an_hmac_signature(hook: Hook) -> None:
    secret = b"shared-webhook-secret"
    pub = WebhookPublisher(hook.url, secret=secret, proxies={})
    events = [event(1), event(1, "end"), event(2)]
    for e in events:
        pub(e)
    pub.close()
    assert [body for _, _, body in hook.requests] == [e.to_json().encode() for e in events]
    for (_, headers, body), e in zip(hook.requests, events, strict=True):
        assert headers["content-type"] == "application/json"
        assert headers["x-coldtrace-alert"] == f"{e.id} {e.phase}"
        want = hmac.new(secret, body, hashlib.sha256).hexdigest()
        assert headers["x-coldtrace-signature"] == f"sha256={want}"
    assert (pub.sent, pub.failed, pub.dropped, pub.retries) == (3, 0, 0, 0)


def test_webhook_retries_server_errors_with_growing_backoff(hook: Hook) -> None:
    hook.statuses = [503, 500, 503]
    pub = WebhookPublisher(hook.url, backoff=0.1, proxies={})
    pub(event(1))
    pub.close()
    times = [t for t, _, _ in hook.requests]
    assert len(times) == 4  # three failures, then delivered
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for k, gap in enumerate(gaps):
        assert gap >= 0.5 * 0.1 * 2**k - 0.01, gaps  # jitter draws from [0.5, 1] x backoff
    assert hook.bodies() == [json.loads(event(1).to_json())] * 4
    assert (pub.sent, pub.retries, pub.failed) == (1, 3, 0)


def test_webhook_retries_429_after_the_servers_retry_after(hook: Hook) -> None:
    hook.statuses = [429]  # with Retry-After: 0
    pub = WebhookPublisher(hook.url, backoff=30.0, proxies={})
    began = time.monotonic()
    pub(event(1))
    pub.close()
    assert time.monotonic() - began < 5.0  # not the 15-30 s of its own backoff
    assert len(hook.requests) == 2 and (pub.sent, pub.retries) == (1, 1)


def test_webhook_does_not_retry_client_errors(hook: Hook) -> None:
    hook.statuses = [400]
    pub = WebhookPublisher(hook.url, backoff=0.01, proxies={})
    pub(event(1))
    pub(event(2))
    pub.close()
    assert [b["start"] for b in hook.bodies()] == [1, 2]
    assert (pub.sent, pub.failed, pub.retries) == (1, 1, 0)


def test_webhook_gives_up_after_max_attempts(hook: Hook) -> None:
    hook.statuses = [503] * 10
    pub = WebhookPublisher(hook.url, backoff=0.01, max_attempts=3, proxies={})
    pub(event(1))
    pub.close()
    assert len(hook.requests) == 3
    assert (pub.sent, pub.failed, pub.retries) == (0, 1, 2)


def test_webhook_never_blocks_ingest_and_keeps_the_newest_when_full(hook: Hook) -> None:
    hook.gate.clear()  # the receiver hangs
    pub = WebhookPublisher(hook.url, queue_size=10, timeout=30.0, proxies={})
    pub(event(0))
    assert hook.arrived.wait(5)  # event 0 is in flight, stuck
    began = time.monotonic()
    for n in range(1, 1001):
        pub(event(n))
    elapsed = time.monotonic() - began
    # never blocks: one blocked call would take the 30 s timeout
    assert elapsed < 5, f"publishing 1000 alerts took {elapsed:.3f} s"
    assert pub.dropped == 990 and pub.pending == 11
    hook.gate.set()
    pub.close()
    assert [b["start"] for b in hook.bodies()] == [0, *range(991, 1001)]
    assert pub.sent == 11


def test_webhook_unreachable_is_retried_then_given_up_without_blocking() -> None:
    pub = WebhookPublisher(
        f"http://127.0.0.1:{free_port()}/", backoff=0.01, max_attempts=2, proxies={}
    )
    began = time.monotonic()
    pub(event(1))
    assert time.monotonic() - began < 0.1
    pub.close()
    assert (pub.sent, pub.failed, pub.retries) == (0, 1, 1)


def test_webhook_close_gives_up_on_a_hung_receiver(hook: Hook) -> None:
    hook.gate.clear()
    pub = WebhookPublisher(hook.url, timeout=0.5, backoff=60.0, proxies={})
    pub(event(1))
    pub(event(2))
    assert hook.arrived.wait(5)
    began = time.monotonic()
    pub.close(timeout=0.2)
    assert time.monotonic() - began < 3.0
    assert pub.sent == 0 and pub.dropped + pub.failed == 2


def test_webhook_refuses_a_non_http_url() -> None:
    with pytest.raises(ValueError):
        WebhookPublisher("file:///etc/passwd")


# --- MQTT ------------------------------------------------------------------------------------


def test_mqtt_publisher_uses_the_gateway_alerts_topic() -> None:
    sent: list[tuple[str, bytes]] = []
    publish = mqtt_publisher(lambda topic, payload: sent.append((topic, payload)), "wh-7")
    publish(event(5))
    assert sent == [("ct/v1/gw/wh-7/alerts", event(5).to_json().encode())]


def test_alerts_reach_a_monitor_through_the_shipped_broker(tmp_path: Path) -> None:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed: run `make system` (scripts/ensure-system.sh)")
    conf = write_config(
        tmp_path,
        port=free_port(),
        gateway_id="wh-7",
        users=[BrokerUser("gw@wh-7", "gateway", "g"), BrokerUser("ops@wh-7", "monitor", "o")],
    )
    with start_broker(conf) as broker:
        assert broker.port is not None
        with RawClient(broker.port, "ops", username="ops@wh-7", password="o") as ops:
            assert ops.connect() == 0
            ops.subscribe("ct/v1/gw/+/alerts")
            gw = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id="gw@wh-7", protocol=mqtt.MQTTv311
            )
            gw.username_pw_set("gw@wh-7", "g")
            gw.connect("127.0.0.1", broker.port)
            gw.loop_start()
            try:
                send = mqtt_publisher(
                    lambda topic, payload: gw.publish(topic, payload, qos=1), "wh-7"
                )
                engine = AlertEngine({"room": Profile("p", 200, 800, delay=0)}, lambda: 0.0)
                for e in engine.observe("tl-1", "room", 100, 950, None):
                    send(e)
                got = ops.receive(limit=1, idle=5.0)
            finally:
                gw.disconnect()
                gw.loop_stop()
    assert [m.topic for m in got] == ["ct/v1/gw/wh-7/alerts"]
    doc = json.loads(got[0].payload)
    assert (doc["kind"], doc["phase"], doc["device"], doc["peak_centi"]) == (
        "excursion",
        "start",
        "tl-1",
        950,
    )


def test_fan_out_survives_a_failing_publisher(caplog: pytest.LogCaptureFixture) -> None:
    got: list[AlertEvent] = []

    def broken(_: AlertEvent) -> None:
        raise RuntimeError("sink down")

    send = fan_out(broken, got.append)
    with caplog.at_level(logging.ERROR, logger="coldtrace.alerts"):
        send(event(1))
    assert got == [event(1)]
    assert "sink down" in caplog.text


# --- glue for the core -------------------------------------------------------------------------


def reading(
    t: int,
    *,
    temp: int | None = None,
    fault: int | None = None,
    ch: int | None = None,
    seq: int = 0,
) -> Reading:
    return Reading(boot=1, seq=seq, time=t, tq=2, prev=bytes(16), temp=temp, fault=fault, ch=ch)


def test_listener_feeds_committed_batches_to_the_engine() -> None:
    clock = SimpleNamespace(now=10_000)
    published: list[AlertEvent] = []
    engine = AlertEngine(
        {"wh-7/room": Profile("p", 200, 800, delay=0)},
        lambda: clock.now,
        offline_missed=1,
        offline_grace=0,
        upload_intervals={"tl-2": 60},
    )
    listener = AlertListener(engine, published.append)
    binding = Binding(
        boot=0,
        seq=0,
        time=1,
        tq=2,
        prev=bytes(16),
        cseq=0,
        cprev=bytes(16),
        target="wh-7/room",
        devices="tl-1 tl-3",
    )
    reg_row = SimpleNamespace(signer="registry-1")
    rec = SimpleNamespace(signer="tl-1")
    listener(SimpleNamespace(accepted=[(reg_row, binding)], presence={}))
    assert listener.places == {"tl-1": "wh-7/room", "tl-3": "wh-7/room"}
    listener(
        SimpleNamespace(
            accepted=[
                (rec, reading(100, temp=500)),
                (rec, reading(700, temp=950)),
                (rec, reading(800, fault=3, ch=1)),
            ],
            presence={"tl-2": "online"},  # tl-2 connects: it uploads every 60 s
        )
    )
    assert [(e.kind, e.phase, e.place) for e in published] == [("excursion", "start", "wh-7/room")]
    clock.now += 60
    listener.tick()
    assert [(e.kind, e.device, e.interval) for e in published[1:]] == [("offline", "tl-2", 60)]
    listener(
        SimpleNamespace(accepted=[(rec, reading(1300, temp=500))], presence={"tl-2": "online"})
    )
    assert [(e.kind, e.phase) for e in published[2:]] == [("excursion", "end"), ("offline", "end")]


def test_listener_from_config_reads_the_alerts_table(hook: Hook) -> None:
    sent: list[tuple[str, bytes]] = []
    cfg = SimpleNamespace(
        id="wh-7",
        alerts={
            "offline_grace": 0,
            "webhook": hook.url,
            "webhook_secret": "s",
            "places": {"wh-7/*": "pharma"},
            "profiles": {"pharma": {"delay": 0}},
        },
    )
    listener = listener_from_config(
        cfg, publish=lambda t, p: sent.append((t, p)), place_of=lambda device: "wh-7/fridge-2"
    )
    rec = SimpleNamespace(signer="tl-1")
    listener(SimpleNamespace(accepted=[(rec, reading(100, temp=1000))], presence={}))
    assert [t for t, _ in sent] == ["ct/v1/gw/wh-7/alerts"]
    assert json.loads(sent[0][1])["profile"] == "pharma"
    listener.close()
    assert hook.bodies()[0]["place"] == "wh-7/fridge-2"
