"""A minimal MQTT 3.1.1 client for broker tests (OASIS MQTT 3.1.1 §2-3).

paho's threaded client manages about 2-5k QoS 1 messages per second on this
machine; filling a 100,000-message broker queue with it would take most of a
minute. This client writes pipelined packets straight to the socket and lets
a test decide exactly when (and whether) to PUBACK, which is what a "lagging
subscriber" is. Only what the broker tests need: CONNECT with will and
credentials, PUBLISH/PUBACK at QoS 0/1, SUBSCRIBE, DISCONNECT.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass


class MQTTError(Exception):
    pass


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None


class RawClient:
    def __init__(
        self,
        port: int,
        client_id: str = "",
        *,
        username: str | None = None,
        password: str | None = None,
        clean: bool = True,
        will: tuple[str, bytes, int, bool] | None = None,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        keepalive: int = 60,
        timeout: float = 10.0,
    ) -> None:
        self.port, self.host = port, host
        self.client_id, self.username, self.password = client_id, username, password
        self.clean, self.will, self.keepalive = clean, will, keepalive
        self.ssl_context, self.server_hostname = ssl_context, server_hostname
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = bytearray()
        self._next_id = 0
        self._pending: list[Message] = []

    # -- connection ---------------------------------------------------------------

    def connect(self) -> int:
        """Open the connection; return the CONNACK return code (0 = accepted)."""
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(
                sock, server_hostname=self.server_hostname or self.host
            )
        self.sock = sock
        flags = 0x02 if self.clean else 0
        payload = _str(self.client_id)
        if self.will is not None:
            topic, message, qos, retain = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _str(topic) + _str(message)
        if self.username is not None:
            flags |= 0x80
            payload += _str(self.username)
        if self.password is not None:
            flags |= 0x40
            payload += _str(self.password)
        body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive) + payload
        self.sock.sendall(_packet(0x10, body))
        first, body = self._read_packet()
        if first >> 4 != 2 or len(body) != 2:
            raise MQTTError(f"want CONNACK, got packet type {first >> 4}")
        return body[1]

    def disconnect(self) -> None:
        if self.sock is not None:
            try:
                self.sock.sendall(b"\xe0\x00")
            finally:
                self.close()

    def close(self) -> None:
        """Drop the TCP connection without DISCONNECT (the broker sends the will)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- packets --------------------------------------------------------------------

    def _fill(self, n: int, deadline: float | None) -> bool:
        assert self.sock is not None
        while len(self._buf) < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 18)
            except TimeoutError:
                return False
            finally:
                self.sock.settimeout(self.timeout)
            if not chunk:
                raise MQTTError("connection closed by the broker")
            self._buf += chunk
        return True

    def _read_packet(self, deadline: float | None = None) -> tuple[int, bytes]:
        """The next packet, or (-1, b"") if ``deadline`` passes first."""
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        if not self._fill(2, deadline):
            return -1, b""
        length, mult, i = 0, 1, 1
        while True:
            if not self._fill(i + 1, deadline):
                return -1, b""
            byte = self._buf[i]
            length += (byte & 0x7F) * mult
            mult *= 128
            i += 1
            if not byte & 0x80:
                break
        if not self._fill(i + length, deadline):
            return -1, b""
        first = self._buf[0]
        body = bytes(self._buf[i : i + length])
        del self._buf[: i + length]
        return first, body

    def _id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    # -- publish --------------------------------------------------------------------

    def publish_many(
        self,
        topic: str,
        payloads: Iterable[bytes],
        *,
        qos: int = 1,
        retain: bool = False,
        window: int = 20_000,
    ) -> int:
        """Publish pipelined; return how many PUBACKs came back (QoS 1)."""
        assert self.sock is not None
        tbytes = _str(topic)
        first = 0x30 | (qos << 1) | (1 if retain else 0)
        acked = 0
        batch: list[bytes] = []

        def flush() -> int:
            assert self.sock is not None
            self.sock.sendall(b"".join(batch))
            n = len(batch)
            batch.clear()
            if qos == 0:
                return 0
            got = 0
            while got < n:
                ptype, _ = self._read_packet()
                if ptype == -1:
                    raise MQTTError(f"only {got} of {n} PUBACKs before timeout")
                if ptype >> 4 == 4:
                    got += 1
            return got

        for payload in payloads:
            if qos:
                batch.append(_packet(first, tbytes + struct.pack("!H", self._id()) + payload))
            else:
                batch.append(_packet(first, tbytes + payload))
            if len(batch) >= window:
                acked += flush()
        if batch:
            acked += flush()
        return acked

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        return self.publish_many(topic, [payload], qos=qos, retain=retain)

    # -- subscribe / receive ------------------------------------------------------------

    def subscribe(self, *filters: str, qos: int = 1) -> list[int]:
        """Subscribe; return the SUBACK return codes (0x80 = refused)."""
        assert self.sock is not None
        pid = self._id()
        body = struct.pack("!H", pid) + b"".join(_str(f) + bytes([qos]) for f in filters)
        self.sock.sendall(_packet(0x82, body))
        while True:
            first, body = self._read_packet()
            if first == -1:
                raise MQTTError("no SUBACK")
            if first >> 4 == 9:
                return list(body[2:])
            if first >> 4 == 3:  # a message raced the SUBACK: keep it
                self._pending.append(self._parse_publish(first, body))

    def _parse_publish(self, first: int, body: bytes) -> Message:
        qos = (first >> 1) & 3
        tlen = struct.unpack_from("!H", body)[0]
        topic = body[2 : 2 + tlen].decode()
        pos = 2 + tlen
        pid = None
        if qos:
            pid = struct.unpack_from("!H", body, pos)[0]
            pos += 2
        return Message(topic, body[pos:], qos, bool(first & 1), bool(first & 8), pid)

    def ack(self, messages: Iterable[Message]) -> None:
        assert self.sock is not None
        out = b"".join(b"\x40\x02" + struct.pack("!H", m.packet_id) for m in messages if m.qos == 1)
        if out:
            self.sock.sendall(out)

    def receive(
        self, *, limit: int | None = None, idle: float = 1.0, ack: bool = True
    ) -> list[Message]:
        """Read messages until ``limit`` arrived or none came for ``idle`` seconds.

        With ``ack`` each QoS 1 message is PUBACKed (in batches); without it the
        client lags: the broker keeps them in flight and queues the rest.
        """
        got, self._pending = self._pending, []
        unacked: list[Message] = []
        while limit is None or len(got) < limit:
            first, body = self._read_packet(time.monotonic() + idle)
            if first == -1:
                break
            if first >> 4 != 3:
                continue
            msg = self._parse_publish(first, body)
            got.append(msg)
            if ack:
                unacked.append(msg)
                if len(unacked) >= 256 or not self._buf:
                    self.ack(unacked)
                    unacked.clear()
        if ack:
            self.ack(unacked)
        return got
