"""Alerts by e-mail (``[alerts.email]``, SMTP) against a local aiosmtpd server, and
escalation: an alert nobody acknowledged within ``escalate_after`` seconds is sent once
more to ``escalate_to`` (e-mail and webhook) and the escalation is recorded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from gateway.alerts import (
    AlertConfigError,
    AlertEvent,
    EmailPublisher,
    email_settings,
)
from gateway.config import ConfigError, load_config
from gateway.evidence.store import open_store
from gateway.transport.broker import free_port
from tests.gateway.devices import SimDevice, wait_for

ROOM = "acme:room-1"


class Inbox:
    """aiosmtpd's handler: every message it accepts, with its envelope."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(
                (
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    message_from_bytes(envelope.content, policy=policy.default),
                )
            )
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for _, rcpt, m in self.messages if address in rcpt]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


class Hook:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append(json.loads(body))
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/escalations"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    try:
        yield h
    finally:
        h.close()


def event(n: int = 1) -> AlertEvent:
    return AlertEvent(
        kind="excursion",
        phase="start",
        id=f"excursion/tl-1/0/high/{n}",
        device="tl-1",
        time=n,
        start=n,
        raised=n,
        place=ROOM,
        side="high",
        limit_centi=800,
        peak_centi=950,
        reason="delay",
    )


def test_an_alert_is_mailed(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    settings = email_settings(
        {"host": "127.0.0.1", "port": port, "from": "gw@acme.test", "to": ["ops@acme.test"]}
    )
    mailer = EmailPublisher(settings)
    mailer(event())
    mailer.close()
    assert (mailer.sent, mailer.failed, mailer.dropped) == (1, 0, 0)
    [(sender, rcpt, msg)] = inbox.messages
    assert (sender, rcpt) == ("gw@acme.test", ["ops@acme.test"])
    assert msg["Subject"] == (
        "[ColdTrace] excursion start (high, peak 9.50 °C): tl-1 at acme:room-1"
    )
    assert msg["X-ColdTrace-Alert"] == "excursion/tl-1/0/high/1 start"
    body = msg.get_content()
    assert "Peak:     9.50 °C" in body
    assert json.loads(body.strip().splitlines()[-1]) == event().to_dict()


def test_an_unreachable_server_is_retried_then_given_up() -> None:
    settings = email_settings(
        {"host": "127.0.0.1", "port": free_port(), "from": "gw@acme.test", "to": "ops@acme.test"}
    )
    mailer = EmailPublisher(settings, max_attempts=2, backoff=0.01)
    mailer(event())
    mailer.close()
    assert (mailer.sent, mailer.retries, mailer.failed) == (0, 1, 1)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"from": "a@b"}, "host"),
        ({"host": "h", "from": "nobody"}, "from"),
        ({"host": "h", "from": "a@b", "to": ["x"]}, "to"),
        ({"host": "h", "from": "a@b", "user": "u", "password_file": "p"}, "starttls"),
        ({"host": "h", "from": "a@b", "user": "u"}, "together"),
        ({"host": "h", "from": "a@b", "tls": True}, "unknown"),
    ],
)
def test_email_settings_are_checked(raw: dict[str, Any], match: str) -> None:
    with pytest.raises(AlertConfigError, match=match):
        email_settings(raw)


def test_a_bad_email_section_is_a_config_error(make_broker: Any, make_gateway: Any) -> None:
    env = make_gateway(make_broker([]))
    with env.config_path.open("a") as f:
        f.write('\n[alerts.email]\nhost = "127.0.0.1"\nfrom = "not-an-address"\n')
    with pytest.raises(ConfigError, match="from"):
        load_config(env.config_path)


def configure(env: Any, smtp_port: int, hook_url: str, *, after: int) -> None:
    with env.config_path.open("a", encoding="utf-8") as f:
        f.write(
            f"""
[alerts]
escalate_after = {after}
escalate_to = ["mailto:duty@acme.test", "{hook_url}"]

[alerts.email]
host = "127.0.0.1"
port = {smtp_port}
from = "gw@acme.test"
to = ["ops@acme.test"]

[alerts.profiles.room]
low = 200
high = 800
delay = 0

[alerts.places]
"{ROOM}" = "room"
"""
        )
    env.cfg = load_config(env.config_path)


def test_an_unacknowledged_alert_is_escalated_once_and_recorded(
    make_broker: Any, make_gateway: Any, smtp: tuple[Inbox, int], hook: Hook, tmp_path: Path
) -> None:
    inbox, port = smtp
    late, quick = SimDevice("tl-late"), SimDevice("tl-quick")
    env = make_gateway(make_broker([late.id, quick.id]))
    after = 3
    configure(env, port, hook.url, after=after)
    env.register(late, quick, place=ROOM)
    gw = env.start_gateway()
    try:
        env.connect(late, quick)
        for dev in (late, quick):
            dev.publish(dev.reading(temp=950))  # 9.5 °C in a 2-8 °C room: alarms at once
        wait_for(lambda: len(inbox.to("ops@acme.test")) == 2, 15, "two alert e-mails")
        subjects = sorted(m["Subject"] for m in inbox.to("ops@acme.test"))
        assert all(
            s.startswith("[ColdTrace] excursion start (high, peak 9.50 °C)") for s in subjects
        )
        store = open_store(env.cfg)
        try:
            [quick_alert] = [a for a in store.alerts() if a["device"] == "tl-quick"]
            [late_alert] = [a for a in store.alerts() if a["device"] == "tl-late"]
            # the operator acknowledges one in time; the other nobody acknowledges
            assert store.acknowledge_alert(quick_alert["id"], "Dana", "seen, on it")
            t_raised = late_alert["raised"]
            wait_for(lambda: inbox.to("duty@acme.test"), after + 10, "the escalation e-mail")
            wait_for(lambda: hook.bodies, 10, "the escalation webhook")
            [mail] = inbox.to("duty@acme.test")
            assert mail["Subject"].startswith(
                f"[ColdTrace] ESCALATED, not acknowledged in {after} s: excursion start"
            )
            assert "tl-late" in mail["Subject"]
            assert mail["X-ColdTrace-Alert"] == f"{late_alert['id']} start escalated"
            [body] = hook.bodies
            assert (body["id"], body["phase"]) == (late_alert["id"], "escalation")
            assert hook.headers[0]["x-coldtrace-alert"] == f"{late_alert['id']} escalation"
            row = store.alert(late_alert["id"])
            assert row["escalated"] is not None and row["escalated"] >= t_raised + after
            assert row["acked"] is None
            audit = store.audit_log()
            assert [(a["action"], a["target"]) for a in audit] == [
                ("escalate", late_alert["id"]),
                ("acknowledge", quick_alert["id"]),
            ]
            assert audit[0]["detail"] == {"to": ["mailto:duty@acme.test", hook.url]}
            # once: a few more ticks send nothing more, and the acknowledged one never
            time.sleep(after + 2)
            assert len(inbox.to("duty@acme.test")) == 1 and len(hook.bodies) == 1
            assert store.alert(quick_alert["id"])["escalated"] is None
        finally:
            store.close()
    finally:
        gw.stop()
