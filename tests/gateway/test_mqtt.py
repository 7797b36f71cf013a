"""The paho adapter: the buffered fast PUBLISH reader, acks after commit, reconnects."""

from __future__ import annotations

import random
import struct
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gateway.transport.mqtt import Inbound, MqttAdapter, MqttSettings, _BufferedClient, parse_topic
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.env import GW_USER


def publish_packet(topic: str, payload: bytes, mid: int, qos: int = 1) -> bytes:
    body = struct.pack("!H", len(topic)) + topic.encode()
    if qos:
        body += struct.pack("!H", mid)
    body += payload
    out = bytearray([0x30 | qos << 1])
    n = len(body)
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + body


class ChunkedSocket:
    """A socket that returns the stream in the chunk sizes it is given."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.chunks = []
        pos = 0
        for size in sizes:
            if pos >= len(data):
                break
            self.chunks.append(data[pos : pos + size])
            pos += size
        if pos < len(data):
            self.chunks.append(data[pos:])

        self.chunks.reverse()

    def recv(self, n: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        return self.chunks.pop()

    def close(self) -> None:
        pass


def test_fast_reader_splits_packets_at_any_boundary() -> None:
    rng = random.Random(7)
    expected = []
    stream = b""
    for i in range(300):
        payload = rng.randbytes(rng.choice([0, 1, 120, 127, 128, 1000, 20000]))
        qos = rng.choice([0, 1, 1, 1])
        topic = f"ct/v1/tl-{i % 7}/rec"
        stream += publish_packet(topic, payload, i + 1, qos)
        expected.append((topic, payload, (i + 1) if qos else 0))
        if i % 50 == 0:
            stream += b"\xd0\x00"  # PINGRESP, handled by paho
        if i == 19:
            head = len(stream)
    for trial in range(5):
        data = stream if trial else stream[:head]  # byte by byte: the first 20 packets
        want = expected if trial else expected[:20]
        c = _BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id="t",
            clean_session=False,
            protocol=paho.MQTTv311,
            manual_ack=True,
        )
        got = []
        c.on_publish_fast = lambda t, p, m, q, got=got: got.append((t.decode(), p, m if q else 0))
        sizes = (
            [rng.randint(1, 3000) for _ in range(len(data) // 1500 + 10)]
            if trial
            else [1] * len(data)
        )
        c._sock = ChunkedSocket(data, sizes)  # type: ignore[assignment]
        while c._sock.chunks or c.buffered():  # type: ignore[union-attr]
            assert c._packet_read() in (
                MQTTErrorCode.MQTT_ERR_SUCCESS,
                MQTTErrorCode.MQTT_ERR_AGAIN,
            )
        assert got == want


def recs_of(msgs: list[Inbound]) -> list[Inbound]:
    return [m for m in msgs if m.topic.endswith("/rec")]


def test_parse_topic() -> None:
    assert parse_topic("ct/v1/tl-1/rec") == ("tl-1", "rec")
    assert parse_topic("ct/v1/tl-1/state") == ("tl-1", "state")
    assert parse_topic("ct/v1/tl-1/rec/x") is None
    assert parse_topic("ct/v2/tl-1/rec") is None


def test_adapter_delivers_in_order_and_acks_only_when_told(make_broker) -> None:
    dev = SimDevice("tl-mq")
    broker = make_broker([dev.id])
    for fast in (True, False):
        got: list[Inbound] = []
        settings = MqttSettings(
            port=broker.port,
            client_id=GW_USER,
            username=GW_USER,
            password=broker.password(GW_USER),
            keepalive=5,
        )
        adapter = MqttAdapter(settings, got.extend)
        adapter._client.fast_publish = fast
        adapter.start()
        wait_for(adapter.connected.is_set, 10, "connected")
        time.sleep(0.2)  # the SUBACK
        got.clear()
        dev.connect(broker.port, broker.password(dev.id))
        payloads = [bytes([i]) * (i * 37 % 1000) for i in range(200)]
        for p in payloads:
            dev.publish(p)
        wait_for(lambda got=got: len(recs_of(got)) == 200, 15, "messages")
        recs = [m for m in got if m.topic.endswith("/rec")]
        assert [m.payload for m in recs] == payloads
        # Nothing was acked: a new connection of the same session gets them all again.
        adapter.stop()
        got2: list[Inbound] = []
        adapter = MqttAdapter(settings, got2.extend)
        adapter.start()
        wait_for(lambda got2=got2: len(recs_of(got2)) == 200, 15, "redelivery")
        recs2 = [m for m in got2 if m.topic.endswith("/rec")]
        assert [m.payload for m in recs2] == payloads
        adapter.ack(recs2[0].gen, [m.mid for m in recs2])
        adapter.ack(recs2[0].gen, [m.mid for m in got2 if m.mid and not m.topic.endswith("/rec")])
        time.sleep(0.3)
        adapter.stop()
        # Acked: a third connection gets nothing more.
        got3: list[Inbound] = []
        adapter = MqttAdapter(settings, got3.extend)
        adapter.start()
        wait_for(adapter.connected.is_set, 10, "connected")
        time.sleep(0.5)
        assert not [m for m in got3 if m.topic.endswith("/rec")]
        adapter.stop()
        dev.disconnect()


def test_acks_for_an_old_connection_are_not_sent_on_a_new_one(make_broker) -> None:
    broker = make_broker([])
    settings = MqttSettings(
        port=broker.port, client_id=GW_USER, username=GW_USER, password=broker.password(GW_USER)
    )
    adapter = MqttAdapter(settings, lambda msgs: None)
    adapter.start()
    wait_for(adapter.connected.is_set, 10, "connected")
    gen = adapter.gen
    adapter.ack(gen - 1, [1, 2, 3])
    adapter.publish("ct/v1/tl-x/ack", b"retained", retain=True)
    wait_for(lambda: adapter.stats["published"] == 1, 10, "publish")
    assert adapter.stats["acked"] == 0
    adapter.stop()


def test_ready_means_a_complete_packet_is_buffered() -> None:
    c = _BufferedClient(
        CallbackAPIVersion.VERSION2,
        client_id="t",
        clean_session=False,
        protocol=paho.MQTTv311,
        manual_ack=True,
    )
    packet = publish_packet("ct/v1/tl-1/rec", bytes(300), 7)
    for cut in (0, 1, 2, 3, len(packet) - 1):
        c._rbuf, c._rpos = bytearray(packet[:cut]), 0
        assert not c.ready(), cut  # a partial packet: wait for the socket, do not spin
    c._rbuf = bytearray(packet + packet[:5])
    assert c.ready()
