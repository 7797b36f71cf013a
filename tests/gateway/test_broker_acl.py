"""Per-device ACLs against a real Mosquitto (gateway/mosquitto/acl, docs/protocol.md §5).

Every "never arrives" claim is proved with a marker: the device publishes the
forbidden message first and then a permitted one on the same connection. MQTT
keeps the order of one publisher's messages to a subscriber, so once the marker
has arrived the forbidden message would have arrived before it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from gateway.transport.broker import (
    BrokerProcess,
    BrokerUser,
    free_port,
    start_broker,
    write_config,
)
from tests.gateway.rawmqtt import MQTTError, RawClient

PASSWORDS = {"gw@local": "gw-secret", "tl-a": "a-secret", "tl-b": "b-secret", "ops@local": "o"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed: run `make system` (scripts/ensure-system.sh)")
    conf = write_config(
        tmp_path_factory.mktemp("broker-acl"),
        port=free_port(),
        users=[
            BrokerUser("gw@local", "gateway", PASSWORDS["gw@local"]),
            BrokerUser("ops@local", "monitor", PASSWORDS["ops@local"]),
            BrokerUser("tl-a", "device", PASSWORDS["tl-a"]),
            BrokerUser("tl-b", "device", PASSWORDS["tl-b"]),
        ],
        gateway_id="wh-7",
    )
    with start_broker(conf) as b:
        yield b


def client(broker: BrokerProcess, user: str, **kw: object) -> RawClient:
    assert broker.port is not None
    c = RawClient(broker.port, f"cid-{user}", username=user, password=PASSWORDS[user], **kw)  # type: ignore[arg-type]
    assert c.connect() == 0
    return c


def topics(messages: list) -> list[tuple[str, bytes]]:  # type: ignore[type-arg]
    return [(m.topic, m.payload) for m in messages]


def until_marker(sub: RawClient, marker: bytes) -> list[tuple[str, bytes]]:
    """Everything ``sub`` receives up to and including ``marker``."""
    got: list[tuple[str, bytes]] = []
    while not any(p == marker for _, p in got):
        more = topics(sub.receive(limit=1, idle=3.0))
        assert more, f"marker {marker!r} never arrived; got {got}"
        got += more
    return got


def test_device_cannot_publish_under_another_devices_topic(broker: BrokerProcess) -> None:
    with client(broker, "gw@local") as gw, client(broker, "tl-a") as a:
        assert gw.subscribe("ct/v1/+/rec", "ct/v1/+/state") == [1, 1]
        # Mosquitto acknowledges the forbidden publish (MQTT 3.1.1 cannot refuse it)...
        assert a.publish("ct/v1/tl-b/rec", b"forged-rec") == 1
        assert a.publish("ct/v1/tl-b/state", b"offline", retain=True) == 1
        assert a.publish("ct/v1/gw/wh-7/alerts", b"forged-alert") == 1
        assert a.publish("ct/v1/tl-a/rec", b"marker") == 1
        got = gw.receive(limit=1, idle=3.0)
    # ...but drops it: only the device's own record reached the gateway.
    assert topics(got) == [("ct/v1/tl-a/rec", b"marker")]


def test_device_cannot_forge_acks_or_commands(broker: BrokerProcess) -> None:
    with client(broker, "tl-b") as b, client(broker, "tl-a") as a:
        assert b.subscribe("ct/v1/tl-b/ack", "ct/v1/tl-b/cmd") == [1, 1]
        a.publish("ct/v1/tl-b/ack", b"forged-ack", retain=True)
        a.publish("ct/v1/tl-b/cmd", b"forged-cmd")
        with client(broker, "gw@local") as gw:
            gw.publish("ct/v1/tl-b/cmd", b"real-cmd")
        got = topics(b.receive(limit=1, idle=3.0))
    assert got == [("ct/v1/tl-b/cmd", b"real-cmd")]


def test_device_cannot_read_another_devices_ack(broker: BrokerProcess) -> None:
    with client(broker, "gw@local") as gw:
        # Retained, as the gateway publishes acks (§5.2).
        gw.publish("ct/v1/tl-b/ack", b"ack-for-b", retain=True)
        gw.publish("ct/v1/tl-a/ack", b"ack-for-a", retain=True)
    with client(broker, "tl-a") as a:
        # Granted or not in the SUBACK, nothing of tl-b's may be delivered.
        a.subscribe("ct/v1/tl-b/ack", "ct/v1/+/ack", "ct/v1/tl-b/#", "#", "ct/v1/+/rec")
        retained = topics(a.receive(idle=1.0))
        with client(broker, "gw@local") as gw:
            gw.publish("ct/v1/tl-b/ack", b"live-ack-for-b")
            gw.publish("ct/v1/tl-b/cmd", b"cmd-for-b")
            gw.publish("ct/v1/tl-a/cmd", b"marker")
        live = until_marker(a, b"marker")
    # Its own retained ack arrives (positive control); nothing of tl-b's does.
    assert ("ct/v1/tl-a/ack", b"ack-for-a") in retained
    assert all("/tl-b/" not in t for t, _ in retained + live), retained + live
    assert all(not t.endswith("/rec") for t, _ in retained + live)


def test_device_will_under_another_devices_state_is_dropped(broker: BrokerProcess) -> None:
    assert broker.port is not None
    with client(broker, "gw@local") as gw:
        gw.subscribe("ct/v1/+/state")
        gw.receive(idle=0.5)  # retained states from earlier tests
        for topic in ("ct/v1/tl-b/state", "ct/v1/tl-a/state"):
            dev = RawClient(
                broker.port,
                "x",
                username="tl-a",
                password=PASSWORDS["tl-a"],
                will=(topic, b"offline", 1, True),
            )
            assert dev.connect() == 0
            dev.close()  # no DISCONNECT: the broker publishes the will
        got = topics(gw.receive(limit=1, idle=3.0))
    assert got == [("ct/v1/tl-a/state", b"offline")]


def test_gateway_reads_records_by_shared_subscription(broker: BrokerProcess) -> None:
    with client(broker, "gw@local") as gw, client(broker, "tl-b") as b:
        assert gw.subscribe("$share/ingest/ct/v1/+/rec") == [1]
        b.publish("ct/v1/tl-b/rec", b"rec-b")
        assert topics(gw.receive(limit=1, idle=3.0)) == [("ct/v1/tl-b/rec", b"rec-b")]


def test_gateway_cannot_publish_records_or_foreign_alerts(broker: BrokerProcess) -> None:
    with client(broker, "ops@local") as ops, client(broker, "gw@local") as gw:
        ops.subscribe("ct/v1/gw/+/alerts", "ct/v1/+/rec")
        gw.publish("ct/v1/tl-a/rec", b"gateway-forged-rec")
        gw.publish("ct/v1/gw/other/alerts", b"wrong-gateway")
        gw.publish("ct/v1/gw/wh-7/alerts", b"alert")
        got = topics(ops.receive(limit=1, idle=3.0))
    assert got == [("ct/v1/gw/wh-7/alerts", b"alert")]


def test_monitor_reads_alerts_and_state_only(broker: BrokerProcess) -> None:
    with client(broker, "ops@local") as ops, client(broker, "tl-a") as a:
        ops.subscribe("#")
        ops.receive(idle=0.5)
        a.publish("ct/v1/tl-a/rec", b"secret-record")
        a.publish("ct/v1/tl-a/state", b"online", retain=True)
        got = topics(ops.receive(limit=1, idle=3.0))
        assert ops.publish("ct/v1/gw/wh-7/alerts", b"monitor-forged") == 1
    assert got == [("ct/v1/tl-a/state", b"online")]


def test_wrong_password_and_anonymous_are_refused(broker: BrokerProcess) -> None:
    assert broker.port is not None
    bad = RawClient(broker.port, "x", username="tl-a", password="wrong")
    anon = RawClient(broker.port, "y")
    # CONNACK 5: not authorised (MQTT 3.1.1 §3.2.2.3).
    assert bad.connect() == 5
    assert anon.connect() == 5
    bad.close()
    anon.close()


def test_device_cannot_take_over_the_gateways_session(broker: BrokerProcess) -> None:
    # use_username_as_clientid: the client id a device sends is replaced by its
    # user name, so reusing the gateway's client id disconnects nobody.
    with client(broker, "gw@local") as gw:
        gw.subscribe("ct/v1/+/rec")
        gw.receive(idle=0.3)
        intruder = RawClient(
            broker.port or 0, "cid-gw@local", username="tl-a", password=PASSWORDS["tl-a"]
        )
        assert intruder.connect() == 0
        with client(broker, "tl-b") as b:
            b.publish("ct/v1/tl-b/rec", b"still-connected")
        assert topics(gw.receive(limit=1, idle=3.0)) == [("ct/v1/tl-b/rec", b"still-connected")]
        intruder.close()


def test_device_added_to_running_broker_connects_after_reload(broker: BrokerProcess) -> None:
    assert broker.port is not None
    conf_dir = broker.conf.parent
    users = [
        BrokerUser(n, r, PASSWORDS[n])
        for n, r in (
            ("gw@local", "gateway"),
            ("ops@local", "monitor"),
            ("tl-a", "device"),
            ("tl-b", "device"),
        )
    ]
    users.append(BrokerUser("tl-c", "device", "c-secret"))
    write_config(conf_dir, port=broker.port, users=users, gateway_id="wh-7")
    broker.reload()
    codes = []
    for _ in range(100):  # SIGHUP is asynchronous: wait for the reload
        dev = RawClient(broker.port, "c", username="tl-c", password="c-secret")
        codes.append(dev.connect())
        dev.close()
        if codes[-1] == 0:
            break
        time.sleep(0.05)
    assert codes[-1] == 0, broker.log_text()[-1000:]
    assert broker.running


def test_oversized_records_reach_the_gateway_but_floods_are_cut(broker: BrokerProcess) -> None:
    """max_packet_size 16 KiB: the gateway sees (and quarantines) an oversized record,
    while a packet beyond the limit costs the sender its connection."""
    with client(broker, "gw@local") as gw, client(broker, "tl-a") as a:
        gw.subscribe("ct/v1/+/rec")
        a.publish(
            "ct/v1/tl-a/rec", b"\x00" * 2000
        )  # > 1024: the gateway refuses it, not the broker
        assert [len(m.payload) for m in gw.receive(limit=1, idle=3.0)] == [2000]
        a.sock.sendall(b"\x32" + bytes([0x80, 0x80, 0x02]) + b"\x00" * 64)  # claims 32 KiB
        with pytest.raises((MQTTError, OSError)):
            a.receive(idle=3.0)  # the broker closes the connection


def test_monitor_reads_the_brokers_drop_counter_and_devices_do_not(broker: BrokerProcess) -> None:
    topic = "$SYS/broker/publish/messages/dropped"  # retained by the broker
    with client(broker, "ops@local") as ops, client(broker, "tl-a") as a:
        ops.subscribe(topic)
        a.subscribe(topic, "$SYS/#")
        got = ops.receive(limit=1, idle=12.0)  # $SYS is published every 10 s
        assert [m.topic for m in got] == [topic] and got[0].payload.isdigit()
        assert a.receive(idle=0.5) == []
