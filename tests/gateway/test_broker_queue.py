"""Queue limits against a real Mosquitto (docs/operations.md, "Queue limits").

The gateway reads records through a persistent QoS 1 session. Whatever the
broker queues for that session while the gateway is down or lagging must not
be dropped up to the documented bound; a default Mosquitto drops silently
after 1000 while the devices still get their PUBACKs - which is why the
shipped configuration sets every limit explicitly.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.transport.broker import (
    BrokerProcess,
    BrokerUser,
    QueueLimits,
    free_port,
    start_broker,
    write_config,
)
from tests.gateway.rawmqtt import RawClient

RECORD_SIZE = 130  # a signed reading with temperature and humidity (§3)
GW, DEV = "gw@local", "tl-a"
PASSWORDS = {GW: "gw-secret", DEV: "a-secret"}


@pytest.fixture(autouse=True)
def _needs_mosquitto() -> None:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed: run `make system` (scripts/ensure-system.sh)")


def records(n: int, start: int = 0) -> Iterator[bytes]:
    """n record-sized payloads numbered from ``start`` (first 4 bytes)."""
    pad = b"\xa5" * (RECORD_SIZE - 4)
    return (i.to_bytes(4, "big") + pad for i in range(start, start + n))


def numbers(messages: list) -> list[int]:  # type: ignore[type-arg]
    return [int.from_bytes(m.payload[:4], "big") for m in messages]


def shipped_broker(tmp: Path, queue: QueueLimits | None = None) -> BrokerProcess:
    conf = write_config(
        tmp,
        port=free_port(),
        users=[BrokerUser(GW, "gateway", PASSWORDS[GW]), BrokerUser(DEV, "device", PASSWORDS[DEV])],
        queue=queue,
    )
    return start_broker(conf)


def default_broker(tmp: Path) -> BrokerProcess:
    """Mosquitto 2.0 with nothing but a listener: every queue setting at its default."""
    conf = tmp / "default.conf"
    conf.write_text(f"listener {free_port()} 127.0.0.1\nallow_anonymous true\n")
    return start_broker(conf)


def connect(
    broker: BrokerProcess, user: str | None, *, client_id: str, clean: bool = True
) -> RawClient:
    """A connection; ``user=None`` for the anonymous default broker."""
    assert broker.port is not None
    c = RawClient(
        broker.port, client_id, username=user, password=PASSWORDS.get(user or ""), clean=clean
    )
    try:
        assert c.connect() == 0
    except BaseException:
        c.close()
        raise
    return c


def gateway(broker: BrokerProcess, user: str | None = GW) -> RawClient:
    return connect(broker, user, client_id="gateway", clean=False)


def register_gateway_session(broker: BrokerProcess, user: str | None) -> None:
    """The gateway subscribes with a persistent session, then goes away."""
    with gateway(broker, user) as gw:
        assert gw.subscribe("ct/v1/+/rec") == [1]
        gw.disconnect()


def publish(broker: BrokerProcess, user: str | None, n: int, start: int = 0) -> int:
    with connect(broker, user, client_id="device") as dev:
        acked = dev.publish_many(f"ct/v1/{DEV}/rec", records(n, start))
        dev.disconnect()
    return acked


def test_default_mosquitto_silently_drops_for_a_lagging_subscriber(tmp_path: Path) -> None:
    """The field-notes finding, reproduced: why the limits are set explicitly."""
    with default_broker(tmp_path) as broker:
        with gateway(broker, None) as gw:
            gw.subscribe("ct/v1/+/rec")
            acked = publish(broker, None, 5000)
            lagging = gw.receive(ack=False, idle=0.5)  # reads, but does not PUBACK yet
            gw.ack(lagging)
            rest = gw.receive(idle=1.0)
            gw.disconnect()
        log = broker.log_text()
    assert acked == 5000  # the publisher was told every message was accepted
    assert len(lagging) == 20  # default max_inflight_messages
    assert len(lagging) + len(rest) == 20 + 1000  # + default max_queued_messages
    assert numbers(lagging + rest) == list(range(1020))  # the newest 3980 are gone
    assert "Outgoing messages are being dropped" in log


def test_shipped_config_keeps_a_lagging_gateway_lossless(tmp_path: Path) -> None:
    """Same load as above with the shipped configuration: nothing is lost."""
    limits = QueueLimits()
    with shipped_broker(tmp_path) as broker:
        with gateway(broker) as gw:
            gw.subscribe("ct/v1/+/rec")
            acked = publish(broker, DEV, 5000)
            lagging = gw.receive(ack=False, idle=0.5)
            gw.ack(lagging)
            rest = gw.receive(idle=1.0)
            gw.disconnect()
        log = broker.log_text()
    assert acked == 5000
    # The broker sends at most max_inflight_messages before the gateway's PUBACKs:
    # that is the gateway's largest possible commit batch.
    assert len(lagging) == limits.max_inflight_messages
    assert numbers(lagging + rest) == list(range(5000))
    assert "dropped" not in log


@pytest.mark.slow
def test_shipped_config_holds_the_documented_bound_while_the_gateway_is_down(
    tmp_path: Path,
) -> None:
    """A full queue at the documented bound (100,000 records) survives the outage."""
    bound = QueueLimits().max_queued_messages
    assert bound == 100_000  # the number docs/operations.md and the config explain
    with shipped_broker(tmp_path) as broker:
        register_gateway_session(broker, GW)
        assert publish(broker, DEV, bound) == bound
        with gateway(broker) as gw:
            got = gw.receive(limit=bound + 1, idle=2.0)
            gw.disconnect()
        log = broker.log_text()
    assert len(got) == bound
    assert numbers(got) == list(range(bound))  # all of them, in order, once
    assert "dropped" not in log


def test_beyond_the_bound_the_newest_are_dropped_and_the_publisher_cannot_tell(
    tmp_path: Path,
) -> None:
    """The documented consequence of an overflow, on a small bound."""
    with shipped_broker(tmp_path, QueueLimits(max_queued_messages=500)) as broker:
        register_gateway_session(broker, GW)
        assert publish(broker, DEV, 600) == 600
        with gateway(broker) as gw:
            got = gw.receive(idle=1.0)
            gw.disconnect()
        log = broker.log_text()
    assert numbers(got) == list(range(500))
    assert f"Outgoing messages are being dropped for client {GW}" in log


def test_byte_bound_applies_before_the_message_bound(tmp_path: Path) -> None:
    limits = QueueLimits(max_queued_messages=10_000, max_queued_bytes=100 * RECORD_SIZE)
    with shipped_broker(tmp_path, limits) as broker:
        register_gateway_session(broker, GW)
        assert publish(broker, DEV, 300) == 300
        with gateway(broker) as gw:
            got = gw.receive(idle=1.0)
            gw.disconnect()
    # Mosquitto queues while the queued payload bytes are below the limit.
    assert numbers(got) == list(range(100))


def test_queued_records_survive_a_broker_restart(tmp_path: Path) -> None:
    with shipped_broker(tmp_path) as broker:
        register_gateway_session(broker, GW)
        assert publish(broker, DEV, 1000) == 1000
        broker.restart()  # SIGTERM: Mosquitto saves its persistence database
        with gateway(broker) as gw:
            got = gw.receive(idle=1.0)
            gw.disconnect()
    assert numbers(got) == list(range(1000))
