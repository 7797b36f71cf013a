"""``coldtrace sim``: simulated ColdTrace devices running the firmware code.

Each simulated logger is the real firmware (``firmware/lib``: ct_app,
ct_ds18b20/ct_sht4x drivers, the signing/queue/uplink core) under CPython,
on a fake board (``firmware/sim``): the temperature comes from a cold-room
curve with door openings and one excursion, through a fake 1-Wire bus that
answers with real DS18B20 scratchpads. A simulated reader runs ct_reader
with a fake PN532 and NTAG 424 DNA tags whose SUN messages are computed per
tap (AES-128 / CMAC, NXP AN12196), so the cloud can check them. The network
is real: devices talk MQTT to a broker through :class:`PahoClient`, a
``umqtt.simple``-compatible adapter over paho-mqtt.

Time runs ``--speed`` times faster than the wall clock: deep sleep is a
wait on the simulated clock, so a day of readings takes minutes.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

ROOT = Path(__file__).resolve().parent.parent
FW_LIB = ROOT / "firmware" / "lib"
FW_SIM = ROOT / "firmware" / "sim"

_SV2 = bytes.fromhex("3cc300010080")


class SimError(Exception):
    pass


# --- NTAG 424 DNA SUN (NXP AN12196 §4.4) ------------------------------------


def _cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def sun_message(
    uid: bytes, counter: int, k_meta: bytes, k_file: bytes, pad: bytes | None = None
) -> tuple[bytes, bytes]:
    """(encrypted PICCData 16, SDMMAC 8) as an NTAG 424 DNA mirrors them for
    one read: PICCData = AES-CBC(K_SDMMetaRead, IV 0)(C7 || UID || ctr LE ||
    5 random bytes); SDMMAC = odd bytes of CMAC(CMAC(K_SDMFileRead, 3CC3
    0001 0080 || UID || ctr), empty input)."""
    if len(uid) != 7 or not 0 <= counter < 1 << 24:
        raise SimError("uid is 7 bytes, counter 24 bits")
    ctr = counter.to_bytes(3, "little")
    pad = os.urandom(5) if pad is None else pad
    enc = Cipher(algorithms.AES(k_meta), modes.CBC(bytes(16))).encryptor()
    picc = enc.update(b"\xc7" + uid + ctr + pad) + enc.finalize()
    session = _cmac(k_file, _SV2 + uid + ctr)
    mac = _cmac(session, b"")[1::2]
    return picc, mac


class SunTag:
    """The URL an NTAG 424 DNA in SUN mode gives on each read."""

    def __init__(
        self,
        uid: bytes,
        base: str,
        k_meta: bytes | None = None,
        k_file: bytes | None = None,
        counter: int = 0,
    ) -> None:
        self.uid = uid
        self.base = base
        self.k_meta = k_meta or secrets.token_bytes(16)
        self.k_file = k_file or secrets.token_bytes(16)
        self.counter = counter

    def url(self) -> str:
        self.counter += 1
        picc, mac = sun_message(self.uid, self.counter, self.k_meta, self.k_file)
        sep = "&" if "?" in self.base else "?"
        return f"{self.base}{sep}picc_data={picc.hex().upper()}&cmac={mac.hex().upper()}"


# --- umqtt.simple look-alike over paho-mqtt ------------------------------------


class PahoClient:
    """The part of micropython-lib's ``umqtt.simple.MQTTClient`` the firmware
    uses, on paho-mqtt 2.x (MQTT 3.1.1), so the firmware's uplink runs under
    CPython against a real broker. paho's network loop runs in its thread;
    received messages wait in a queue until ``check_msg``/``wait_msg``
    hands them to the callback, as umqtt does. Every wait has a timeout."""

    def __init__(
        self,
        client_id: bytes | str,
        server: str,
        port: int = 1883,
        user: str | None = None,
        password: str | None = None,
        keepalive: int = 60,
        ssl: object | None = None,
        timeout: float = 10,
    ) -> None:
        import queue

        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        cid = client_id.decode() if isinstance(client_id, bytes) else client_id
        self._c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cid,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if user:
            self._c.username_pw_set(user, password)
        self.server = server
        self.port = port or 1883
        self.keepalive = keepalive or 60
        self.timeout = timeout
        self.cb = None
        self._inbox: queue.Queue[tuple[bytes, bytes]] = queue.Queue()
        self._connected = False
        self._c.on_message = lambda c, u, m: self._inbox.put((m.topic.encode(), m.payload))
        self._c.on_disconnect = self._on_disconnect

    def _on_disconnect(self, *a: object) -> None:
        self._connected = False

    def set_callback(self, f: object) -> None:
        self.cb = f

    def set_last_will(
        self, topic: bytes | str, msg: bytes | str, retain: bool = False, qos: int = 0
    ) -> None:
        t = topic.decode() if isinstance(topic, bytes) else topic
        self._c.will_set(t, msg, qos=qos, retain=retain)

    def connect(self, clean_session: bool = True, timeout: float | None = None) -> int:
        try:
            rc = self._c.connect(self.server, self.port, self.keepalive)
        except OSError as e:
            raise OSError(113, f"connect {self.server}:{self.port}: {e}") from e
        if rc != 0:
            raise OSError(113, f"connect failed rc={rc}")
        self._c.loop_start()
        import time

        deadline = time.monotonic() + (timeout or self.timeout)
        while not self._c.is_connected():
            if time.monotonic() > deadline:
                self.disconnect()
                raise OSError(110, "CONNACK timeout")
            time.sleep(0.01)
        self._connected = True
        return 0

    def disconnect(self) -> None:
        try:
            self._c.disconnect()
        finally:
            self._c.loop_stop()
            self._connected = False

    def ping(self) -> None:
        if not self._c.is_connected():
            raise OSError(104, "not connected")

    def publish(self, topic: bytes | str, msg: bytes, retain: bool = False, qos: int = 0) -> None:
        if not self._c.is_connected():
            raise OSError(104, "not connected")
        t = topic.decode() if isinstance(topic, bytes) else topic
        info = self._c.publish(t, bytes(msg), qos=qos, retain=retain)
        if qos:
            try:
                info.wait_for_publish(self.timeout)
            except (RuntimeError, ValueError) as e:
                raise OSError(104, str(e)) from e
            if not info.is_published():
                raise OSError(110, "PUBACK timeout")

    def subscribe(self, topic: bytes | str, qos: int = 0) -> None:
        t = topic.decode() if isinstance(topic, bytes) else topic
        rc, _ = self._c.subscribe(t, qos)
        if rc != 0:
            raise OSError(104, "subscribe failed")

    def check_msg(self, attempts: int = 2) -> None:
        import queue

        if not self._c.is_connected() and self._inbox.empty():
            raise OSError(104, "not connected")
        try:
            topic, msg = self._inbox.get_nowait()
        except queue.Empty:
            return None
        if self.cb:
            self.cb(topic, msg)  # type: ignore[operator]
        return None

    def wait_msg(self, timeout: float | None = None) -> None:
        import queue

        try:
            topic, msg = self._inbox.get(timeout=timeout or self.timeout)
        except queue.Empty as e:
            raise OSError(110, "no message") from e
        if self.cb:
            self.cb(topic, msg)  # type: ignore[operator]
