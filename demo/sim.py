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

``coldtrace sim --place P`` puts the loggers and the readers in one place, and
``--gateway-config`` registers the devices and binds the loggers to it
(binding statements), so the trace of a tag scanned there holds the loggers'
readings; ``--journey`` sets the scans each tag goes through. As boards with
``ntp`` in their config.json do, the devices' clocks are set at power-on
(``--no-ntp``: unset until the gateway's first ack).

The devices' clocks follow ``clock`` (default: the wall clock). The cold
room's curve runs ``--scale`` times faster than it, so a day of temperature
history passes in minutes. ``demo/world.py`` instead gives the devices
a simulated clock (a past day replayed at high speed) and a radio
(:class:`SimWifi`) that is out of range until that clock reaches the present.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
        self._fake: Any = None

    def fake(self) -> Any:
        """The fake NTAG 424 DNA (firmware/sim/fake_nfc) answering for this
        tag: one per tag, shared by every reader it is held to, so its
        custody file (the link to its last custody scan) travels with it."""
        if self._fake is None:
            firmware_on_path()
            import fake_nfc

            self._fake = fake_nfc.Ntag424(self.uid, self.url)
        return self._fake

    def url(self) -> str:
        self.counter += 1
        picc, mac = sun_message(self.uid, self.counter, self.k_meta, self.k_file)
        sep = "&" if "?" in self.base else "?"
        return f"{self.base}{sep}picc_data={picc.hex().upper()}&cmac={mac.hex().upper()}"


# --- umqtt.simple look-alike over paho-mqtt ------------------------------------


class _PahoSock:
    """What ct_uplink touches of ``client.sock``: timeouts and close."""

    def __init__(self, client: PahoClient) -> None:
        self._client = client

    def settimeout(self, t: float | None) -> None:
        if t:
            self._client.timeout = t

    def setblocking(self, flag: bool) -> None:
        return None

    def close(self) -> None:
        self._client._shutdown()


class PahoClient:
    """The part of micropython-lib's ``umqtt.simple.MQTTClient`` the firmware
    uses (connect, publish, subscribe, check_msg, wait_msg, set_callback,
    set_last_will, disconnect, ``sock``, ``pid``), on paho-mqtt 2.x with
    MQTT 3.1.1, so ct_uplink runs under CPython against a real broker.
    paho's network loop runs in its own thread; received messages wait in a
    queue until ``check_msg``/``wait_msg`` hands them to the callback, as
    umqtt does. Every wait has a timeout."""

    def __init__(self, client_id: bytes | str, server: str, port: int = 1883,
                 user: str | None = None, password: str | None = None,
                 keepalive: int = 60, ssl: object | None = None, timeout: float = 10) -> None:
        self.client_id = client_id.decode() if isinstance(client_id, bytes) else client_id
        self.server = server
        self.port = port or 1883
        self.user = user
        self.password = password
        self.keepalive = keepalive or 60
        self.timeout = timeout
        self.cb: Callable[[bytes, bytes], None] | None = None
        self.pid = 0
        self.sock: _PahoSock | None = None
        self._will: tuple[str, bytes, bool, int] | None = None
        self._c: Any = None
        self._inbox: queue.Queue[tuple[bytes, bytes]] = queue.Queue()

    @staticmethod
    def _topic(t: bytes | str) -> str:
        return t.decode() if isinstance(t, bytes) else t

    def set_callback(self, f: Callable[[bytes, bytes], None]) -> None:
        self.cb = f

    def set_last_will(self, topic: bytes | str, msg: bytes, retain: bool = False,
                      qos: int = 0) -> None:
        self._will = (self._topic(topic), bytes(msg), retain, qos)

    def connect(self, clean_session: bool = True, timeout: float | None = None) -> int:
        import paho.mqtt.client as mqtt

        self._shutdown()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=mqtt.MQTTv311, clean_session=clean_session)
        if self.user:
            c.username_pw_set(self.user, self.password)
        if self._will:
            t, m, r, q = self._will
            c.will_set(t, m, qos=q, retain=r)
        c.on_message = lambda cl, u, msg: self._inbox.put((msg.topic.encode(), msg.payload))
        c.connect_timeout = timeout or self.timeout
        try:
            rc = c.connect(self.server, self.port, self.keepalive)
        except OSError as e:
            raise OSError(113, f"connect {self.server}:{self.port}: {e}") from e
        if rc != 0:
            raise OSError(113, f"connect refused rc={rc}")
        self._c = c
        c.loop_start()
        deadline = time.monotonic() + (timeout or self.timeout)
        while not c.is_connected():
            if time.monotonic() > deadline:
                self._shutdown()
                raise OSError(110, "no CONNACK")
            time.sleep(0.005)
        self.sock = _PahoSock(self)
        return 0

    def _shutdown(self) -> None:
        c, self._c = self._c, None
        if c is not None:
            with contextlib.suppress(Exception):
                c.disconnect()
            c.loop_stop()

    def _live(self) -> Any:
        if self._c is None or not self._c.is_connected():
            raise OSError(104, "not connected")
        return self._c

    def disconnect(self) -> None:
        self._shutdown()

    def ping(self) -> None:
        self._live()

    def publish(self, topic: bytes | str, msg: bytes, retain: bool = False, qos: int = 0) -> None:
        c = self._live()
        if qos:
            self.pid += 1
        info = c.publish(self._topic(topic), bytes(msg), qos=qos, retain=retain)
        if qos:
            try:
                info.wait_for_publish(self.timeout)
            except (RuntimeError, ValueError) as e:
                raise OSError(104, str(e)) from e
            if not info.is_published():
                raise OSError(110, "no PUBACK")

    def subscribe(self, topic: bytes | str, qos: int = 0) -> None:
        self.pid += 1
        rc, _ = self._live().subscribe(self._topic(topic), qos)
        if rc != 0:
            raise OSError(104, "subscribe failed")

    def _deliver(self, item: tuple[bytes, bytes]) -> int:
        if self.cb is not None:
            self.cb(*item)
        return 0x30  # umqtt returns the PUBLISH op

    def check_msg(self, attempts: int = 2) -> int | None:
        try:
            item = self._inbox.get_nowait()
        except queue.Empty:
            self._live()
            return None
        return self._deliver(item)

    def wait_msg(self) -> int | None:
        try:
            item = self._inbox.get(timeout=self.timeout)
        except queue.Empty as e:
            raise OSError(110, "no message") from e
        return self._deliver(item)


# --- simulated devices -----------------------------------------------------------


def firmware_on_path() -> None:
    """Make firmware/lib and firmware/sim importable (CPython runs them as is)."""
    import sys

    for p in (FW_SIM, FW_LIB):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))


class SimWifi:
    """The radio link a simulated device's core brings up for each upload
    (ct_core calls ``up()``/``down()``): while ``in_range`` is false, ``up()``
    fails as an ESP32 does without an access point, and the app backs off."""

    def __init__(self, in_range: bool = True) -> None:
        self.in_range = in_range

    def up(self) -> None:
        if not self.in_range:
            raise OSError(113, "no Wi-Fi in range")

    def down(self) -> None:
        return None


class WallBoard:
    """A board on ``clock`` (the wall clock by default). Its RTC is unset at
    power-on (time counts from boot, tq 0) until the gateway's ack sets it, as
    on a real ESP32."""

    DEEPSLEEP = 4
    offset = 0

    def __init__(self, batt_mv: int = 4150, clock: Callable[[], float] = time.time) -> None:
        firmware_on_path()
        from fake_board import FakeRTC

        self.clock = clock
        self.rtc = FakeRTC()
        self._boot = clock()
        self._delta: float | None = None
        self.cause = 1  # power-on
        self.batt = batt_mv
        self.led_v = 0

    def now(self) -> int:
        if self._delta is None:
            return int(self.clock() - self._boot)
        return int(self.clock() + self._delta)

    def set_time(self, unix: int) -> None:
        self._delta = unix - self.clock()

    def feed(self) -> None:
        return None

    def batt_mv(self) -> int:
        return self.batt

    def reset_cause(self) -> int:
        return self.cause

    def uptime(self) -> int:
        return int(self.clock() - self._boot)

    def led(self, v: int) -> None:
        self.led_v = v

    def deep_sleep(self, ms: int) -> None:
        self.cause = self.DEEPSLEEP
        self.batt = max(3300, self.batt - 1)


def _device_fs(root: Path) -> Any:
    firmware_on_path()
    import ct_fs

    root.mkdir(parents=True, exist_ok=True)
    return ct_fs.Fs()


def provision_sim_device(root: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """Key and ack key for a simulated device, made by the firmware's own
    ct_provision (kept when they exist); returns its registration entry (as
    ``coldtrace device provision`` writes it)."""
    firmware_on_path()
    import base64
    import contextlib as _cl
    import io

    import ct_provision

    fs = _device_fs(root)
    ack_path = root / ct_provision.ACK_KEY
    ack = ack_path.read_bytes() if ack_path.exists() else secrets.token_bytes(32)
    with _cl.redirect_stdout(io.StringIO()):
        # a device keeps its key and ack key across sim runs (same id, same key)
        if not ack_path.exists():
            ct_provision.set_ack_key(ack.hex(), fs, str(root))
        pub = ct_provision.keygen(False, fs, str(root), cfg, os.urandom)
    entry: dict[str, Any] = {"device": cfg["id"], "role": cfg["role"],
                             "key": base64.b64encode(bytes(pub)).decode(), "org": cfg["org"],
                             "ack_key": base64.b64encode(ack).decode()}
    if cfg.get("place"):
        entry["place"] = cfg["place"]
    return entry


class SimLogger:
    """One temperature logger: the firmware's Logger cycle on a WallBoard, a
    DS18B20 (through ct_ds18b20 and a fake 1-Wire bus) and an SHT4x (through
    ct_sht4x and a fake I2C bus) reading a ColdRoom curve run ``scale``
    times faster than the records' clock (``clock``, the wall clock by
    default). ``wifi`` (a :class:`SimWifi`) makes uploads depend on coverage.
    After each wake, ``queued`` is the number of records on its flash that
    no ack has covered yet; ``sent``/``acked`` count over all wakes."""

    def __init__(self, cfg: dict[str, Any], root: Path, new_client: Callable[[], Any],
                 seed: int = 1, scale: int = 600, world: dict[str, int] | None = None,
                 clock: Callable[[], float] = time.time, wifi: SimWifi | None = None,
                 fs: Callable[[], Any] | None = None) -> None:
        firmware_on_path()
        import ct_ds18b20
        import ct_sht4x
        from fake_sensors import FakeDS18B20, FakeOneWire, FakeSHT4xBus
        from sim_world import ColdRoom

        self.cfg = cfg
        self.root = root
        self.new_client = new_client
        self.clock = clock
        self.wifi = wifi
        # the device's flash, remounted at each wake: its directory on the host's
        # disk, or (``fs``) another ct_fs-like filesystem, e.g. one that loses power
        self.mount = fs or (lambda: _device_fs(root))
        self.board = WallBoard(clock=clock)
        self.room = ColdRoom(seed=seed, **(world or {}))
        self.scale = scale
        self.t0 = clock()
        rom = bytes((0x28, seed & 0xFF, 0x4C, 0x3A, 0x91, 0x16, 0x04, 0))
        from fake_sensors import dallas_crc

        rom = rom[:7] + bytes((dallas_crc(rom[:7]),))
        self.probe = FakeDS18B20(rom)
        self.ds = ct_ds18b20.DS18B20(FakeOneWire([self.probe]), None, sleep_ms=lambda ms: None)
        self.sht_bus = FakeSHT4xBus()
        self.sht = ct_sht4x.SHT4x(self.sht_bus, sleep_ms=lambda ms: None)
        self.settings: dict[str, Any] = {}
        self.next_wake = clock()
        self.cycles = 0
        self.events: list[tuple[int, int | None]] = []
        self.queued = self.sent = self.acked = 0

    def curve_t(self) -> int:
        return int((self.clock() - self.t0) * self.scale)

    def set_clock(self, unix: int, src: int = 3) -> None:
        """Set the RTC as a gateway (src 3) or NTP (2) sync would have, before
        the first wake (the sync state is kept in RTC memory, as ct_app does)."""
        firmware_on_path()
        import ct_app
        import ct_clock
        import ct_rtcmem

        clock = ct_clock.Clock(self.board.now, self.board.set_time, self.board.offset)
        clock.sync(unix, src)
        ct_rtcmem.RTCMem(self.board.rtc).put(ct_app._K_CLOCK, clock.pack())

    def _channels(self) -> list[tuple[int, int | None, Callable[[], tuple[int, int | None]]]]:
        # a calibration the gateway sent (settings["cal"], as ct_board.channels)
        import ct_cal

        c0, t0, _ = ct_cal.from_config(ct_cal.pick(None, self.settings, 0))
        c1, t1, rh1 = ct_cal.from_config(ct_cal.pick(None, self.settings, 1))

        def ds() -> tuple[int, int | None]:
            self.probe.temp = self.room.temp(self.curve_t())
            raw = self.ds.measure()
            return (t0.apply(raw) if t0 else raw), None

        def sht() -> tuple[int, int | None]:
            t = self.curve_t()
            self.sht_bus.temp = self.room.temp(t) + 30  # the box air, a little warmer
            self.sht_bus.rh = self.room.rh(t)
            temp, rh = self.sht.measure()
            if rh1 is not None and rh is not None:
                rh = rh1.apply(rh)
            return (t1.apply(temp) if t1 else temp), rh

        return [(0, c0, ds), (1, c1, sht)]

    def wake(self) -> float:
        """One wake: returns the seconds until the next."""
        firmware_on_path()
        import ct_app
        import ct_core
        import ct_rtcmem

        fs = self.mount()
        core = ct_core.open_device(self.cfg, self.board, self.wifi, fs,
                                   self.new_client, ct_rtcmem.RTCMem(self.board.rtc))
        import ct_ota

        try:
            ota = ct_ota.from_config(self.cfg, core, fs=fs)  # "ota" in cfg
            lg = ct_app.Logger(self.cfg, self.board, core, self._channels, self.settings, ota,
                               blocks=self._blocks(fs))
            ms = lg.cycle()
            if lg.settings_dirty:
                self.settings = dict(lg.settings)
            self.events.extend(lg.events)
            self.queued = core.queued()[0]
            if core.uplink is not None:
                self.sent += core.uplink.sent
                self.acked += core.uplink.acked
        finally:
            core.close()
        self.board.deep_sleep(ms)
        self.cycles += 1
        return ms / 1000

    def _blocks(self, fs: Any) -> Any:
        """Reading blocks (docs/protocol.md §2.8) when the configuration asks for
        them (``"block"`` > 1; the simulator's default stays one kind-1 record per
        reading, the board's default is 12)."""
        firmware_on_path()
        import ct_block

        return ct_block.from_config(self.cfg, fs) if self.cfg.get("block", 1) > 1 else None

    def flush(self) -> None:
        """Sign the open reading blocks, then upload what the flash still holds
        (as the next scheduled upload would)."""
        firmware_on_path()
        import ct_app
        import ct_core
        import ct_rtcmem

        fs = self.mount()
        core = ct_core.open_device(self.cfg, self.board, self.wifi, fs,
                                   self.new_client, ct_rtcmem.RTCMem(self.board.rtc))
        try:
            lg = ct_app.Logger(self.cfg, self.board, core, [], self.settings,
                               blocks=self._blocks(fs))
            lg.close_blocks()
            # the upload a wake makes (ct_app's own): a fresh ack's time sets an
            # unset or drifted clock (the clock-set record goes with the next
            # upload), commands apply; a failed link backs off as in a wake
            lg._upload(lg.clock.now()[0])
            lg._save()
            if lg.settings_dirty:
                self.settings = dict(lg.settings)
            self.events.extend(lg.events)
            self.queued = core.queued()[0]
        finally:
            core.close()


class SimReader:
    """One handover reader: ct_reader with a fake PN532 (through ct_pn532
    and ct_ntag) and NTAG 424 DNA tags that compute a fresh SUN message per
    read. Every ``tap_every`` seconds the next tag is held to the reader for
    a second, with the action its journey is at (commission, load, ship,
    receive, unload, sell). A scripted scenario calls :meth:`tap` and
    :meth:`upload` itself instead of :meth:`wake`."""

    JOURNEY = (1, 2, 5, 4, 3, 6)

    def __init__(self, cfg: dict[str, Any], root: Path, new_client: Callable[[], Any],
                 tags: list[SunTag], tap_every: float = 5.0,
                 clock: Callable[[], float] = time.time, wifi: SimWifi | None = None,
                 journey: tuple[int, ...] | None = None) -> None:
        firmware_on_path()
        import ct_clock
        import ct_ntag
        import ct_pn532
        import ct_reader
        import ct_rtcmem
        import ct_ui
        import fake_nfc

        self.cfg = cfg
        self._time = clock
        self.board = WallBoard(clock=clock)
        self.tags = tags
        self.nfc = [t.fake() for t in tags]
        self.chip = fake_nfc.FakePN532([])
        pn = ct_pn532.PN532(ct_pn532.I2CBus(fake_nfc.FakePN532I2C(self.chip)))
        self.clock = ct_clock.Clock(self.board.now, self.board.set_time, 0)
        self.mem = ct_rtcmem.RTCMem(self.board.rtc)
        import ct_core

        self.core = ct_core.open_device(cfg, self.board, wifi, _device_fs(root), new_client,
                                        self.mem)
        self.reader = ct_reader.Reader(
            cfg, lambda: ct_ntag.read_tag(pn), self.core, self.clock,
            ct_ui.Button(fake_nfc.FakePin(1)), ct_ui.Led(fake_nfc.FakePin(0)),
            ct_ui.Led(fake_nfc.FakePin(0)), self.board.batt_mv)
        self.tap_every = tap_every
        self.journey = tuple(journey or self.JOURNEY)
        self.next_tap = clock() + 1.0
        self.lift_at = 0.0
        self.step_no = [0] * len(tags)
        self.turn = 0
        self.scans = 0
        self.next_wake = clock()

    def _ms(self) -> int:
        return int(self._time() * 1000)

    @property
    def queued(self) -> int:
        """Records on the reader's flash that no ack has covered yet."""
        return int(self.core.queued()[0])

    def set_clock(self, unix: int, src: int = 3) -> None:
        """Set the clock as a gateway (src 3) or NTP (2) sync would have."""
        self.clock.sync(unix, src)

    def tap(self, i: int, action: int, ref: str | None = None) -> bytes | None:
        """Hold tag ``i`` to the reader with ``action`` selected (and the
        operator's business reference ``ref``, if any) until the reader
        records the scan; lift it. Returns the signed scan record, or None."""
        self.reader.action = action
        configured = self.cfg.get("ref")
        if ref:
            self.cfg["ref"] = ref
        self.chip.field = [self.nfc[i]]
        rec = None
        try:
            now = self._ms()
            for k in range(5):  # the reader polls every poll_ms
                rec = self.reader.step(now + k * self.reader.poll_ms)
                if rec is not None:
                    self.scans += 1
                    break
        finally:
            self.chip.field = []
            if configured is None:
                self.cfg.pop("ref", None)
            else:
                self.cfg["ref"] = configured
        return rec

    def wake(self) -> float:
        now = self._time()
        if self.chip.field and now >= self.lift_at:
            self.chip.field = []
        if not self.chip.field and now >= self.next_tap and self.tags:
            i = self.turn % len(self.tags)
            self.turn += 1
            k = self.step_no[i]
            if k < len(self.journey):
                self.reader.action = self.journey[k]
                self.step_no[i] = k + 1
                self.chip.field = [self.nfc[i]]
                self.lift_at = now + 1.0
            self.next_tap = now + self.tap_every
        if self.reader.step(self._ms()) is not None:
            self.scans += 1
        if self.reader.upload_due(self._ms()):
            self.upload()
        return 0.05

    def upload(self) -> None:
        """Upload the queue (on error, the next scan tries again); a fresh
        ack sets the clock."""
        import ct_clock

        try:
            for item in self.core.upload(self.cfg.get("upload_ms", 10000),
                                         self.clock.src == ct_clock.UNSET):
                if item[0] == "ack" and item[2]:
                    with contextlib.suppress(ct_clock.ClockError):
                        self.clock.sync(item[2], ct_clock.GATEWAY)
            self.reader.uploaded()
        except OSError:
            self.reader.uploaded()  # try again after the next scan


def logger_config(dev: str, org: str, host: str, port: int, interval: int, upload: int,
                  root: Path, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "id": dev, "role": "logger", "org": org, "dir": str(root),
        "interval": interval, "upload": upload, "heartbeat": max(upload * 10, 600),
        "alarm": {"high": 800, "low": 200, "delay": max(interval * 2, 1), "cum": 0,
                  "ignore": 0, "channel": 0},
        "mqtt": {"host": host, "port": port, "timeout_ms": 5000, "ack_wait_ms": 4000},
        "upload_ms": 8000,
        "place": "urn:epc:id:sgln:9506000.13435.coldroom-1",
    }
    cfg.update(extra)
    return cfg


def reader_config(dev: str, org: str, host: str, port: int, root: Path,
                  place: str) -> dict[str, Any]:
    return {
        "id": dev, "role": "reader", "org": org, "dir": str(root), "place": place,
        "actions": [1, 2, 3, 4, 5, 6], "action": 2, "repeat_ms": 2000, "poll_ms": 100,
        "mqtt": {"host": host, "port": port, "timeout_ms": 5000, "ack_wait_ms": 4000},
        "upload_ms": 8000,
    }


def client_factory(dev: str, host: str, port: int, password: str | None = None
                   ) -> Callable[[], PahoClient]:
    def new() -> PahoClient:
        return PahoClient(dev, host, port, dev if password else None, password, 30)

    return new


class Sim:
    """Loggers and readers, provisioned under ``root``, run by one scheduler
    thread (the firmware modules share preallocated buffers, so one device
    runs at a time, like the one CPU each has)."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 1883,
                 loggers: int = 2, readers: int = 1, interval: int = 10, upload: int = 60,
                 scale: int = 600, org: str = "acme", passwords: dict[str, str] | None = None,
                 tags: int = 3, tap_every: float = 5.0, world: dict[str, int] | None = None,
                 place: str | None = None, journey: tuple[int, ...] | None = None,
                 ntp: bool = False, block: int = 1) -> None:
        if not 1 <= block <= 64:
            raise SimError(f"--block {block}: a reading block holds 1-64 readings")
        self.root = root
        self.interval = interval
        if world is None:  # the excursion lasts two readings, so every run records it
            world = {"exc_len": max(2700, 2 * interval * scale)}
        self.devices: list[SimLogger | SimReader] = []
        self.entries: list[dict[str, Any]] = []
        pw = passwords or {}
        root.mkdir(parents=True, exist_ok=True)
        for i in range(loggers):
            dev = f"sim-tl-{i + 1}"
            d = root / dev
            cfg = logger_config(dev, org, host, port, interval, upload, d)
            if block > 1:
                cfg["block"] = block
            if place:
                cfg["place"] = place
            self.entries.append(provision_sim_device(d, cfg))
            self.devices.append(SimLogger(cfg, d, client_factory(dev, host, port, pw.get(dev)),
                                          seed=i + 1, scale=scale, world=world))
        self.tags = [
            SunTag(bytes((0x04, 0x5E, 0xC0, 0x01, 0x00, 0x10, k + 1)),
                   f"https://id.example.com/01/09506000134352/10/LOT{k + 1:03d}/21/{k + 1}")
            for k in range(tags)
        ]
        for i in range(readers):
            dev = f"sim-rd-{i + 1}"
            d = root / dev
            cfg = reader_config(dev, org, host, port, d,
                                place or f"urn:epc:id:sgln:9506000.13435.dock-{i + 1}")
            self.entries.append(provision_sim_device(d, cfg))
            self.devices.append(SimReader(cfg, d, client_factory(dev, host, port, pw.get(dev)),
                                          self.tags, tap_every, journey=journey))
        if ntp:  # as a board with "ntp" in its config.json does at power-on
            for dev_ in self.devices:
                dev_.set_clock(int(time.time()), 2)
        self.write_files()

    def write_files(self) -> None:
        import json

        (self.root / "provisioned.json").write_text(
            json.dumps({"devices": self.entries}, indent=1) + "\n")
        os.chmod(self.root / "provisioned.json", 0o600)
        (self.root / "tags.json").write_text(json.dumps({"tags": [
            {"uid": t.uid.hex(), "k_sdm_meta_read": t.k_meta.hex(),
             "k_sdm_file_read": t.k_file.hex(), "url": t.base,
             "item": t.base[t.base.index("/01/"):]} for t in self.tags]}, indent=1) + "\n")
        os.chmod(self.root / "tags.json", 0o600)

    def run(self, duration: float, stop: Callable[[], bool] = lambda: False) -> None:
        end = time.time() + duration if duration else float("inf")
        first_tap = time.time() + self.interval + 3.0  # after the loggers' first readings
        for d in self.devices:
            if isinstance(d, SimReader):
                d.next_tap = max(d.next_tap, first_tap)
        while time.time() < end and not stop():
            d = min(self.devices, key=lambda x: x.next_wake)
            wait = d.next_wake - time.time()
            if wait > 0:
                time.sleep(min(wait, 0.2))
                continue
            d.next_wake = time.time() + d.wake()
        for d in self.devices:  # the last records reach the gateway before the sim exits
            if isinstance(d, SimReader):
                if d.queued:
                    d.upload()
                d.core.close()
            else:
                d.flush()


# --- command line --------------------------------------------------------------------


def _wait_logged(db: Path, wait: float) -> None:
    """Wait up to ``wait`` s for the running gateway to log the registry's outbox, so
    the devices' first records do not reach it before their registrations."""
    from gateway.evidence.store import open_store

    end = time.monotonic() + wait
    while time.monotonic() < end:
        store = open_store(db)
        try:
            if not store.outbox_pending():
                return
        finally:
            store.close()
        time.sleep(0.2)
    print(f"the gateway has not logged the registrations within {wait:g} s (is it running?); "
          "records of unregistered devices are refused until it does, and sent again",
          flush=True)


def register_with_gateway(config: str | Path, entries: list[dict[str, Any]],
                          wait: float = 0.0) -> str:
    """Register ``entries`` in the registry of the gateway configured by ``config``
    and bind each logger to its place (binding statements, docs/protocol.md §2.6),
    so that the traces of the simulated items are judged; returns what was done."""
    from gateway.config import load_config
    from gateway.evidence.registry import RegistryError
    from gateway.evidence.store import open_store
    from gateway.service import registry_signer

    cfg = load_config(config)
    store = open_store(cfg)
    try:
        signer = registry_signer(cfg, store)
        if signer is None:
            raise RegistryError(f"{config}: [registry] key_file is needed to register devices")
        done = signer.import_entries(entries)
    finally:
        store.close()
    _wait_logged(cfg.db_path, wait)
    bound = sorted({e["place"] for e in entries if e.get("place") and e.get("role") == "logger"})
    return (f"registered {len(done)} devices with gateway {cfg.id}; loggers bound to "
            f"{', '.join(bound) or 'no place'}")


def _cmd_sim(args: Any) -> int:
    import json
    import signal
    import sys

    host, _, port = args.broker.rpartition(":")
    if not host:
        host, port = args.broker, "1883"
    passwords = None
    if args.passwords:
        doc = json.loads(Path(args.passwords).read_text(encoding="utf-8"))
        # {device: password}, or the broker's credentials.json {"users": {name: {...}}}
        if isinstance(doc.get("users"), dict):
            doc = {k: v["password"] for k, v in doc["users"].items()}
        passwords = doc
    root = Path(args.dir)
    try:
        journey = parse_journey(args.journey)
        if args.place is not None:
            check_place(args.place)
        s = Sim(root, host, int(port), args.loggers, args.readers, args.interval, args.upload,
                args.scale, args.org, passwords, args.tags, args.tap_every,
                place=args.place, journey=journey, ntp=not args.no_ntp, block=args.block)
    except (OSError, ValueError, SimError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"provisioned {len(s.entries)} devices: {root / 'provisioned.json'}; "
          f"tag keys: {root / 'tags.json'}", flush=True)
    if args.gateway_config:
        try:
            wait = 0.0 if args.provision_only else 15.0
            print(register_with_gateway(args.gateway_config, s.entries, wait), flush=True)
        except Exception as e:  # ConfigError, RegistryError, OSError: said, not raised
            print(f"error: registering with {args.gateway_config}: {e}", file=sys.stderr)
            return 1
    else:
        print(f"register them (and bind the loggers to their places) with: coldtrace gateway "
              f"registry import {root / 'provisioned.json'}", flush=True)
    if args.provision_only:
        return 0
    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))
    with contextlib.suppress(KeyboardInterrupt):
        s.run(args.duration, lambda: bool(stopping))
    for d in s.devices:
        if isinstance(d, SimLogger):
            print(f"{d.cfg['id']}: {d.cycles} wakes")
        else:
            print(f"{d.cfg['id']}: {d.scans} scans")
    return 0


ACTIONS = {"commission": 1, "load": 2, "unload": 3, "receive": 4, "ship": 5, "sell": 6,
           "install": 7}


def parse_journey(text: str | None) -> tuple[int, ...] | None:
    """``commission,ship`` -> (1, 5): the actions each tag is taken through, in order."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in ACTIONS]
    if bad or not names:
        raise SimError(f"--journey: {', '.join(bad) or 'nothing'} is not a scan action "
                       f"(one of {', '.join(ACTIONS)}, separated by commas)")
    return tuple(ACTIONS[n] for n in names)


def check_place(place: str) -> None:
    """A place id as the protocol takes it (docs/protocol.md §1): 1-64 bytes, no control
    character."""
    if not 1 <= len(place.encode("utf-8")) <= 64 or any(
            ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in place):
        raise SimError(f"--place {place!r}: a place id is 1-64 bytes of UTF-8 without a "
                       "control character")


def register(subparsers: Any) -> None:
    """Entry point (``coldtrace.commands``): adds ``coldtrace sim``."""
    p = subparsers.add_parser(
        "sim", help="run simulated loggers and readers (the firmware under CPython) over MQTT")
    p.add_argument("--broker", default="127.0.0.1:1883", help="MQTT broker HOST:PORT")
    p.add_argument("--dir", default="var/sim", help="device files, provisioned.json, tags.json")
    p.add_argument("--loggers", type=int, default=2)
    p.add_argument("--readers", type=int, default=1)
    p.add_argument("--interval", type=int, default=10, help="reading interval, s")
    p.add_argument("--upload", type=int, default=60, help="upload interval, s")
    p.add_argument("--scale", type=int, default=600,
                   help="the cold room's curve runs this many times faster (600: 10 min/s)")
    p.add_argument("--tags", type=int, default=3, help="NTAG 424 DNA tags the readers see")
    p.add_argument("--tap-every", type=float, default=5.0, help="seconds between taps")
    p.add_argument("--org", default="acme")
    p.add_argument("--place", help="the place the loggers monitor (bound to it in the gateway's "
                   "registry with --gateway-config) and the readers scan at; default: loggers "
                   "in a cold room, readers at their own docks")
    p.add_argument("--journey", metavar="ACTIONS",
                   help="the scans each tag is taken through, e.g. commission,ship (default "
                   "commission,load,ship,receive,unload,sell)")
    p.add_argument("--no-ntp", action="store_true",
                   help="start the devices' clocks unset (set by the gateway's first ack) "
                   "instead of set by NTP at power-on")
    p.add_argument("--block", type=int, default=1, metavar="N",
                   help="loggers sign one reading block (kind 7) per N readings of a channel "
                   "(2-64; a board's default is 12); 1 = one kind-1 record per reading")
    p.add_argument("--passwords", help="JSON {device id: MQTT password}, or the broker's "
                   "credentials.json (coldtrace gateway broker)")
    p.add_argument("--duration", type=float, default=0, help="seconds to run; 0 = until stopped")
    p.add_argument("--gateway-config", metavar="GATEWAY_TOML",
                   help="register the devices in this gateway's registry and bind the "
                   "loggers to their places (binding statements)")
    p.add_argument("--provision-only", action="store_true",
                   help="make the devices' keys and files, then exit")
    p.set_defaults(func=_cmd_sim)
