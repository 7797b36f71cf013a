"""An MQTT 3.1.1 client with micropython-lib ``umqtt.simple``'s API over real
CPython sockets (OASIS MQTT 3.1.1 §3: CONNECT, PUBLISH/PUBACK at QoS 0/1,
SUBSCRIBE, PINGREQ, DISCONNECT), written from the specification for the TLS
tests: the firmware's own ``ct_core.mqtt_factory``, ``ct_tls`` and
``ct_uplink`` run on it against a real Mosquitto.

It does what umqtt.simple's ``connect`` does with its ``ssl`` argument, in
the same order: ``socket()``, ``settimeout(timeout)``, ``getaddrinfo``,
``connect``, then ``ssl.wrap_socket(sock, server_hostname=server)``, and
reads and writes the wrapped object with ``read``/``write`` only. Like
umqtt, ``wait_msg`` sets the socket blocking after its first byte and
``publish`` at QoS 1 waits for the PUBACK with no deadline of its own: only
the socket timeout (ct_uplink's guard) ends the wait.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any


class MQTTException(Exception):
    pass


def _str(b: bytes | str) -> bytes:
    b = b.encode() if isinstance(b, str) else bytes(b)
    return struct.pack("!H", len(b)) + b


def _len(n: int) -> bytes:
    out = bytearray()
    while True:
        d, n = n & 0x7F, n >> 7
        out.append(d | (0x80 if n else 0))
        if not n:
            return bytes(out)


class MQTTClient:
    def __init__(
        self,
        client_id: bytes | str,
        server: str,
        port: int = 0,
        user: str | None = None,
        password: str | None = None,
        keepalive: int = 0,
        ssl: Any = None,
    ) -> None:
        self.client_id = client_id
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.ssl = ssl
        self.sock: Any = None
        self.pid = 0
        self.cb: Callable[[bytes, bytes], None] | None = None
        self.lw: tuple[bytes | str, bytes, bool, int] | None = None

    def set_callback(self, f: Callable[[bytes, bytes], None]) -> None:
        self.cb = f

    def set_last_will(
        self, topic: bytes | str, msg: bytes, retain: bool = False, qos: int = 0
    ) -> None:
        self.lw = (topic, msg, retain, qos)

    def _read(self, n: int) -> bytes:
        b = self.sock.read(n)
        if not b or len(b) < n:
            # a TLS read returns what one record held: read the rest
            b = b or b""
            while len(b) < n:
                more = self.sock.read(n - len(b))
                if not more:
                    raise OSError(-1, "connection closed")
                b += more
        return b

    def _recv_len(self) -> int:
        n, sh = 0, 0
        while True:
            b = self._read(1)[0]
            n |= (b & 0x7F) << sh
            if not b & 0x80:
                return n
            sh += 7

    def connect(self, clean_session: bool = True, timeout: float | None = None) -> bool:
        self.sock = socket.socket()
        self.sock.settimeout(timeout)
        addr = socket.getaddrinfo(self.server, self.port)[0][-1]
        self.sock.connect(addr)
        if self.ssl:
            self.sock = self.ssl.wrap_socket(self.sock, server_hostname=self.server)
        flags = 0x02 if clean_session else 0
        payload = _str(self.client_id)
        if self.lw:
            t, m, r, q = self.lw
            flags |= 0x04 | (q & 3) << 3 | (0x20 if r else 0)
            payload += _str(t) + _str(m)
        if self.user:
            flags |= 0x80
            payload += _str(self.user)
            if self.pswd:
                flags |= 0x40
                payload += _str(self.pswd)
        body = _str(b"MQTT") + bytes((4, flags)) + struct.pack("!H", self.keepalive) + payload
        self.sock.write(b"\x10" + _len(len(body)) + body)
        resp = self._read(4)
        if resp[0] != 0x20 or resp[1] != 2:
            raise MQTTException(f"bad CONNACK {resp!r}")
        if resp[3] != 0:
            raise MQTTException(resp[3])
        return bool(resp[2] & 1)

    def disconnect(self) -> None:
        self.sock.write(b"\xe0\x00")
        self.sock.close()

    def ping(self) -> None:
        self.sock.write(b"\xc0\x00")

    def publish(self, topic: bytes | str, msg: bytes, retain: bool = False, qos: int = 0) -> None:
        head = 0x30 | qos << 1 | (1 if retain else 0)
        body = _str(topic)
        if qos > 0:
            self.pid += 1
            pid = self.pid
            body += struct.pack("!H", pid & 0xFFFF)  # umqtt's unwrapped id (#94)
        body += bytes(msg)
        self.sock.write(bytes((head,)) + _len(len(body)) + body)
        if qos == 1:
            while True:
                op = self.wait_msg()
                if op == 0x40:
                    rcv = struct.unpack("!H", self._read(3)[1:])[0]
                    if rcv == pid:
                        return

    def subscribe(self, topic: bytes | str, qos: int = 0) -> None:
        self.pid += 1
        body = struct.pack("!H", self.pid) + _str(topic) + bytes((qos,))
        self.sock.write(b"\x82" + _len(len(body)) + body)
        while True:
            op = self.wait_msg()
            if op == 0x90:
                resp = self._read(4)
                if resp[3] == 0x80:
                    raise MQTTException(resp[3])
                return

    def wait_msg(self) -> int | None:
        res = self.sock.read(1)
        self.sock.setblocking(True)
        if res is None:
            return None
        if res == b"":
            raise OSError(-1, "connection closed")
        if res == b"\xd0":  # PINGRESP
            self._read(1)
            return None
        op = res[0]
        if op & 0xF0 != 0x30:
            return op
        n = self._recv_len()
        tl = struct.unpack("!H", self._read(2))[0]
        topic = self._read(tl)
        n -= tl + 2
        pid = 0
        if op & 6:
            pid = struct.unpack("!H", self._read(2))[0]
            n -= 2
        msg = self._read(n) if n else b""
        if self.cb is not None:
            self.cb(topic, msg)
        if op & 6 == 2:
            self.sock.write(b"\x40\x02" + struct.pack("!H", pid))
        return op

    def check_msg(self) -> int | None:
        self.sock.setblocking(False)
        return self.wait_msg()
