"""A small adapter around paho-mqtt 2.x for the gateway (docs/protocol.md §5).

What the gateway needs from MQTT, and nothing else:

- one persistent session (``clean_session=False``, a fixed client id, MQTT
  3.1.1) subscribed with QoS 1 to ``ct/v1/+/rec`` and ``ct/v1/+/state``;
- messages handed over in lists (:class:`Inbound`), **not acknowledged**
  (paho ``manual_ack=True``): the broker gets its PUBACK only when ingest
  calls :meth:`MqttAdapter.ack` after the durable write. Until then the
  broker keeps the message and re-sends it after a reconnect;
- retained QoS 1 publishes (the device acks of §5.2) from any thread.

paho's protocol engine (CONNECT, SUBSCRIBE, keepalive, the session, QoS 1
outbound with retry) is used as is; one paho client is driven by one network
thread (:meth:`MqttAdapter.start`), which is the only thread that touches it:
other threads hand it work through a queue and a wake-up socket.

Measured costs of stock paho are taken away by :class:`_BufferedClient`,
which overrides three of paho's internal hooks (paho-mqtt 2.x, pinned
``<3``): paho reads every packet with at least three ``recv`` calls (one
byte of type, the length byte by byte, then the body), writes every packet
with its own ``send``, and spends about 15 us of Python per PUBLISH
(MQTTMessage, topic matching, callback locks). ``_sock_recv``/``_sock_send``
read from and write to buffers instead, and ``_packet_read`` splits complete
packets out of the read buffer itself: PUBLISH packets go straight to the
gateway's list, every other packet (CONNACK, SUBACK, PUBACK of our acks,
PINGRESP) to paho's own handler. PUBACKs for ingested messages are appended
to the same ordered output buffer in bulk. Draining a queue of small
messages then costs a few system calls per thousand messages and about 3 us
of Python per message; ``fast_publish = False`` restores paho's reader.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

__all__ = ["Inbound", "MqttAdapter", "MqttSettings", "parse_topic"]

log = logging.getLogger("coldtrace.gateway.mqtt")

TOPIC_PREFIX = "ct/v1/"


@dataclass(slots=True)
class Inbound:
    """One message as received: topic, exact payload bytes, and how to ack it."""

    topic: str
    payload: bytes
    mid: int = 0  # packet id to PUBACK (0: nothing to ack)
    gen: int = 0  # connection generation the mid belongs to
    received: float = 0.0
    outbox_id: int = 0  # for registrations injected from the registry outbox
    release_id: int = 0  # for quarantined messages an operator released (rejects --release)


def parse_topic(topic: str) -> tuple[str, str] | None:
    """``ct/v1/{dev}/{kind}`` -> (dev, kind); None for anything else."""
    if not topic.startswith(TOPIC_PREFIX):
        return None
    rest = topic[len(TOPIC_PREFIX) :]
    dev, sep, kind = rest.partition("/")
    if not sep or not dev or "/" in kind:
        return None
    return dev, kind


@dataclass
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "gw@local"
    username: str | None = None
    password: str | None = None
    keepalive: int = 30
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    share_group: str | None = None
    subscribe_state: bool = True
    extra_topics: tuple[str, ...] = ()  # more device topics, e.g. "+/fwreq" (gateway/ota.py)
    reconnect_min: float = 0.2
    reconnect_max: float = 10.0


class _BufferedClient(paho.Client):
    """paho's client with buffered socket I/O and a fast PUBLISH reader.

    ``_sock_recv``/``_sock_send`` serve paho from read and write buffers.
    ``_packet_read`` (with ``fast_publish``) splits every complete packet
    out of the read buffer itself: a PUBLISH goes straight to
    ``on_publish_fast(topic, payload, mid)``; every other packet is handed to
    paho's own ``_packet_handle`` exactly as paho's reader would have. With
    ``fast_publish = False`` paho's reader runs unchanged (over the buffers).
    """

    _RECV_SIZE = 256 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self._rpos = 0
        self._wbuf = bytearray()
        self.fast_publish = True
        self.on_publish_fast: Callable[[bytes, bytes, int, int], None] | None = None

    def reset_buffers(self) -> None:
        self._rbuf = bytearray()
        self._rpos = 0
        self._wbuf.clear()

    def buffered(self) -> int:
        return len(self._rbuf) - self._rpos

    def ready(self) -> bool:
        """Whether the read buffer holds at least one complete packet."""
        buf, pos, n = self._rbuf, self._rpos, len(self._rbuf)
        if self._in_packet["command"] or pos + 2 > n:
            return False
        length, mult, i = 0, 1, pos + 1
        while i < n and i < pos + 5:
            b = buf[i]
            length += (b & 0x7F) * mult
            i += 1
            if not b & 0x80:
                return i + length <= n
            mult <<= 7
        return False

    def _recv_more(self) -> bytes:
        if self._sock is None:
            raise ConnectionError("self._sock is None")
        try:
            return self._sock.recv(self._RECV_SIZE)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as err:
            raise BlockingIOError() from err

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = self._recv_more()
            if not data:
                return data
            self._rbuf = bytearray(data)
            self._rpos = 0
        pos = self._rpos
        end = min(pos + bufsize, len(self._rbuf))
        self._rpos = end
        return bytes(self._rbuf[pos:end])

    def _packet_read(self) -> MQTTErrorCode:
        if not self.fast_publish or self.on_publish_fast is None or self._in_packet["command"]:
            return super()._packet_read()
        try:
            data = self._recv_more()
        except BlockingIOError:
            data = None
        except OSError:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if data is not None:
            if not data:
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            if self._rpos:
                del self._rbuf[: self._rpos]
                self._rpos = 0
            self._rbuf += data
        buf = self._rbuf
        pos = self._rpos
        n = len(buf)
        sink = self.on_publish_fast
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        handled = 0
        while pos + 2 <= n:
            first = buf[pos]
            # remaining length (1-4 bytes, MQTT 3.1.1 §2.2.3)
            length = 0
            mult = 1
            i = pos + 1
            while True:
                if i >= n:
                    length = -1
                    break
                b = buf[i]
                length += (b & 0x7F) * mult
                i += 1
                if not b & 0x80:
                    break
                mult <<= 7
                if mult > 128**3:
                    return MQTTErrorCode.MQTT_ERR_PROTOCOL
            if length < 0 or i + length > n:
                break  # an incomplete packet: wait for more bytes
            end = i + length
            handled += 1
            if first & 0xF0 == 0x30:
                qos = (first >> 1) & 3
                tlen = (buf[i] << 8) | buf[i + 1]
                t_end = i + 2 + tlen
                if qos:
                    mid = (buf[t_end] << 8) | buf[t_end + 1]
                    p0 = t_end + 2
                else:
                    mid = 0
                    p0 = t_end
                if qos == 2 or p0 > end:
                    return MQTTErrorCode.MQTT_ERR_PROTOCOL
                sink(bytes(buf[i + 2 : t_end]), bytes(buf[p0:end]), mid, qos)
            else:
                self._in_packet = {
                    "command": first,
                    "have_remaining": 1,
                    "remaining_count": [],
                    "remaining_mult": 1,
                    "remaining_length": length,
                    "packet": bytearray(buf[i:end]),
                    "to_process": 0,
                    "pos": 0,
                }
                self._rpos = end
                try:
                    rc = self._packet_handle()
                except paho.MalformedPacket:
                    rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
                self._in_packet = {
                    "command": 0,
                    "have_remaining": 0,
                    "remaining_count": [],
                    "remaining_mult": 1,
                    "remaining_length": 0,
                    "packet": bytearray(b""),
                    "to_process": 0,
                    "pos": 0,
                }
                if self._sock is None or self._rbuf is not buf:
                    return rc or MQTTErrorCode.MQTT_ERR_CONN_LOST
                if rc:
                    return rc
            pos = end
        self._rpos = pos
        if handled or data:
            with self._msgtime_mutex:
                self._last_bytes_received = paho.time_func()
        if not handled and data is None:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        return rc

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if self._sock is None:
            raise ConnectionError("self._sock is None")
        self._wbuf += buf
        return len(buf)

    def queue_raw(self, data: bytes) -> None:
        """Append already-encoded packets (PUBACKs) to the ordered output buffer."""
        self._wbuf += data

    def pending_out(self) -> int:
        return len(self._wbuf)

    def flush_out(self) -> bool:
        """Send what the socket takes now; True when the buffer is empty. Raises OSError."""
        sock = self._sock
        if sock is None or not self._wbuf:
            return not self._wbuf
        try:
            n = sock.send(self._wbuf)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return False
        del self._wbuf[:n]
        return not self._wbuf

    def reconnect(self) -> MQTTErrorCode:
        self.reset_buffers()
        return super().reconnect()


def _puback(mid: int) -> bytes:
    return b"\x40\x02" + mid.to_bytes(2, "big")


class MqttAdapter:
    """One persistent-session subscriber; see the module docstring.

    ``sink(list[Inbound])`` is called from the network thread with messages
    in arrival order; it must be quick (queue them). ``ack(gen, mids)`` and
    ``publish(topic, payload)`` may be called from any thread.
    """

    def __init__(
        self,
        settings: MqttSettings,
        sink: Callable[[list[Inbound]], None],
        *,
        backlog: Callable[[], int] | None = None,
        max_backlog: int = 20000,
    ) -> None:
        self.settings = settings
        self._sink = sink
        self._backlog = backlog or (lambda: 0)
        self._max_backlog = max_backlog
        self.gen = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # SUBACK of the current connection received
        self.stats = {"received": 0, "acked": 0, "published": 0, "connects": 0, "disconnects": 0}
        self.last_error: str | None = None
        self._commands: collections.deque[tuple[str, Any]] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rx: list[Inbound] = []
        self._client = self._make_client()

    # --- paho setup ------------------------------------------------------------------

    def _make_client(self) -> _BufferedClient:
        s = self.settings
        c = _BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
            manual_ack=True,
        )
        if s.username is not None:
            c.username_pw_set(s.username, s.password)
        if s.tls_ca is not None:
            c.tls_set(ca_certs=s.tls_ca, certfile=s.tls_cert, keyfile=s.tls_key)
        c.max_inflight_messages_set(1000)  # our retained acks
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_publish_fast = self._on_publish_fast
        c.suppress_exceptions = True
        return c

    def _topics(self) -> list[tuple[str, int]]:
        s = self.settings
        prefix = f"$share/{s.share_group}/" if s.share_group else ""
        topics = [(f"{prefix}{TOPIC_PREFIX}+/rec", 1)]
        if s.subscribe_state:
            topics.append((f"{prefix}{TOPIC_PREFIX}+/state", 1))
        topics += [(f"{prefix}{TOPIC_PREFIX}{t}", 1) for t in s.extra_topics]
        return topics

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.error("%s", self.last_error)
            return
        self.gen += 1
        self.stats["connects"] += 1
        client.subscribe(self._topics())
        log.info(
            "connected to %s:%d (session present: %s)",
            self.settings.host,
            self.settings.port,
            flags.session_present,
        )
        self.connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if any(r.is_failure for r in reasons):
            self.last_error = f"the broker refused a subscription: {reasons}"
            log.error("%s", self.last_error)
            return
        log.info("subscribed to %s", ", ".join(t for t, _ in self._topics()))
        self.subscribed.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.stats["disconnects"] += 1
        if self._stop.is_set():
            log.info("disconnected from the broker")
        else:
            log.warning("disconnected from the broker: %s", reason)

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<invalid utf-8>"
        self._rx.append(
            Inbound(topic, msg.payload, msg.mid if msg.qos else 0, self.gen, time.time())
        )

    def _on_publish_fast(self, topic: bytes, payload: bytes, mid: int, qos: int) -> None:
        self._rx.append(
            Inbound(
                topic.decode("utf-8", "replace"), payload, mid if qos else 0, self.gen, time.time()
            )
        )

    # --- public API (any thread) -------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        with contextlib.suppress(Exception):  # best effort on the way out
            self._client.disconnect()
        self._wake_r.close()
        self._wake_w.close()

    def ack(self, gen: int, mids: list[int]) -> None:
        """PUBACK ``mids`` of connection ``gen`` (after they are durably stored)."""
        if mids:
            self._command(("ack", (gen, mids)))

    def publish(self, topic: str, payload: bytes, *, retain: bool = True) -> None:
        """Publish with QoS 1 (retained by default) from any thread."""
        self._command(("pub", (topic, payload, retain)))

    def _command(self, cmd: tuple[str, Any]) -> None:
        # One wake-up byte per burst: the network thread drains the whole queue.
        idle = not self._commands
        self._commands.append(cmd)
        if idle:
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is already pending
            self._wake_w.send(b"\x00")

    # --- the network thread ----------------------------------------------------------------

    def _run(self) -> None:
        delay = self.settings.reconnect_min
        first = True
        while not self._stop.is_set():
            try:
                if first:
                    self._client.connect(
                        self.settings.host, self.settings.port, self.settings.keepalive
                    )
                    first = False
                else:
                    self._client.reconnect()
                self._client.flush_out()
            except (OSError, ssl.SSLError) as exc:
                self.last_error = (
                    f"cannot connect to {self.settings.host}:{self.settings.port}: {exc}"
                )
                log.warning("%s; retrying in %.1f s", self.last_error, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.reconnect_max)
                continue
            delay = self.settings.reconnect_min
            self._serve()
            if not self._stop.is_set():
                self._stop.wait(delay)

    def _serve(self) -> None:
        """Run one connection until it is lost or we stop."""
        c = self._client
        last_misc = 0.0
        while not self._stop.is_set():
            sock = c.socket()
            if sock is None:
                return
            reading = self._backlog() < self._max_backlog
            rlist = [sock, self._wake_r] if reading else [self._wake_r]
            wlist = [sock] if c.pending_out() or c.want_write() else []
            timeout = 0.0 if (reading and c.ready()) else 0.1
            try:
                r, _, _ = select.select(rlist, wlist, [], timeout)
            except (OSError, ValueError):
                return
            if self._wake_r in r:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(65536)
            if reading and (sock in r or c.ready()):
                rc = c.loop_read()
                # Drain complete packets already buffered without going back to select
                # (the fast reader takes them all at once; paho's takes one per call).
                while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and c.socket() and c.ready():
                    rc = c.loop_read()
                if self._rx:
                    batch, self._rx = self._rx, []
                    self.stats["received"] += len(batch)
                    self._sink(batch)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or c.socket() is None:
                    return
            self._run_commands()
            now = time.monotonic()
            if now - last_misc >= 1.0:
                last_misc = now
                if c.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return
            if c.want_write() and c.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            try:
                c.flush_out()
            except OSError as exc:
                log.warning("send failed: %s", exc)
                c._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
                return

    def _run_commands(self) -> None:
        c = self._client
        cmds = self._commands
        acks: list[bytes] = []
        while cmds:
            kind, arg = cmds.popleft()
            if kind == "ack":
                gen, mids = arg
                if gen == self.gen and self.connected.is_set():
                    acks.extend(_puback(m) for m in mids if m)
                    self.stats["acked"] += len(mids)
            else:
                topic, payload, retain = arg
                c.publish(topic, payload, qos=1, retain=retain)
                self.stats["published"] += 1
        if acks:
            c.queue_raw(b"".join(acks))
