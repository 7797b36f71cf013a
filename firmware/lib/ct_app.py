"""The temperature logger's duty cycle, one wake at a time.

    measure -> record -> queue -> (upload when due, or at once on an alarm)
    -> deep sleep until the next reading

Everything the cycle touches outside this module is injected, so the same
code runs on the board (main.py wires machine/network), in the simulator
(demo/sim.py) and in tests:

``hw``    now() RTC seconds in the port's epoch, set_time(unix), epoch offset
          ``offset``, rtc (``memory()``), feed() watchdog, batt_mv(),
          reset_cause() and ``DEEPSLEEP`` (the cause after a deep-sleep
          wake), deep_sleep(ms), led(v), uptime() s, and optionally
          button_wake() (True clears the latched alarm indicator).
``core``  the signed-record core, through ct_core (ct_record/ct_state/
          ct_queue/ct_uplink): record(fields) -> bytes, enqueue(rec) -> bool,
          queued() -> (records, free bytes), upload(timeout_ms, want_time, now)
          -> list of ("ack", seq, time or None), ("time", unix), ("cmd",
          payload or None), ("lost", first, n) and ("ntp", unix) tuples
          (ct_uplink); raises OSError when the network is down.
``channels``  list (or a callable returning the list, built only outside
          safe mode) of (ch, cal_id, measure) where measure() returns
          (temp, rh or None) in 0.01 units or raises an exception whose
          args[0] is the protocol fault code. A value outside the bounds of
          docs/protocol.md §2.2 (-100.00 ... 150.00 °C, 0 ... 100.00 %RH) or
          not an integer is recorded as fault 5 (out of range), never
          signed as a temperature and never fed to the alarm.

Clock: the gateway's time (tq 3) comes only from a fresh ack, one that
answers a record sent in this upload (ct_uplink's ("time", unix) event);
the retained ack a session starts with can be hours old. When the gateway
refuses queued records as dated ahead of its time (a fast clock, config
``clock.max_ahead``/``clock.hold_ahead``), the uplink sets the clock during
the upload and declares those records lost (docs/protocol.md §5.2).

Persistent state: RTC memory (ct_rtcmem) for what must survive deep sleep
(alarm, clock sync, upload schedule, boot failures); ``settings`` (applied
gateway commands) is saved on flash by the caller via ``save_settings``.

``ota``   optional ct_ota.Updater (firmware updates, docs/protocol.md §5.4):
          status records carry its running version (32 label, 39 number);
          a command with key 20 is an update offer; a boot on trial
          uploads at once, and its first fresh ack is the health check.

``blocks`` (a ct_block.Blocks, config key ``block``) puts the readings of
each channel into its open reading block (docs/protocol.md §2.8, kind 7),
signed when it is full. A reading outside the alarm band, or one that
changes the alarm state, closes its channel's block and is signed at once
as kind 1 and uploaded at once; the open blocks are also signed before a
clock-set record, before a new interval applies and after any start that
is not a deep-sleep wake. While the clock is unset (tq 0) readings stay
kind 1: a block kept across a power cut would be signed in the next boot,
and §12.2 dates a tq-0 record by a clock-set record of its own boot.
Without ``blocks`` every reading is a kind-1 record.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

import struct

import ct_alarm
import ct_cal
import ct_clock
import ct_record
import ct_rtcmem

FW = "coldtrace-0.1.0"

EV_BOOT = const(1)
EV_HEARTBEAT = const(2)
EV_SAFE = const(3)
EV_STORAGE_LOW = const(4)
EV_STORAGE_FULL = const(5)
EV_CLOCK_SET = const(6)
EV_SENSOR_FAULT = const(9)
EV_CONFIG = const(10)
EV_DROPPED = const(11)

_K_APP = b"A"
_K_ALARM = b"L"
_K_CLOCK = b"C"
_K_BOOT = b"B"
_APP_FMT = "<IIIBHIBI"
_MIN_BACKOFF = const(60)
_UPLOAD_MS = const(20000)

# docs/protocol.md §2.2: what a reading may carry; anything else is fault 5
_T_MIN = const(-10000)
_T_MAX = const(15000)
_RH_MAX = const(10000)
FAULT_RANGE = const(5)  # value out of the sensor's range
FAULT_BUS = const(6)  # the driver failed without a code

# command payload keys (docs/protocol.md §5.3) -> settings names; keys 16-19
# (a calibration) are read by ct_cal.from_command into settings["cal"]
CMD_KEYS = {10: "interval", 11: "upload", 12: "high", 13: "low", 14: "delay"}
_LIMITS = {
    "interval": (10, 86400),
    "upload": (0, 7 * 86400),
    "high": (-10000, 15000),
    "low": (-10000, 15000),
    "delay": (0, 7 * 86400),
}


class AppError(Exception):
    pass


def _valid(temp, rh):
    """Can a reading carry this temperature and humidity (§2.2)?"""
    if type(temp) is not int or temp < _T_MIN or temp > _T_MAX:
        return False
    return rh is None or (type(rh) is int and 0 <= rh <= _RH_MAX)


def boot_failures(rtc):
    """Called first thing in boot.py: count this start as a failure until
    the cycle ends cleanly. Returns the number of failed starts before it."""
    m = ct_rtcmem.RTCMem(rtc)
    b = m.get(_K_BOOT)
    n = b[0] if b else 0
    m.put(_K_BOOT, bytes((min(n + 1, 255),)))
    return n


class Logger:
    def __init__(self, cfg, hw, core, channels, settings=None, ota=None, blocks=None):
        self.ota = ota
        self.cfg = cfg
        self.blocks = blocks
        self.hw = hw
        self.core = core
        self.channels = channels
        self.settings = dict(settings or {})
        self.mem = ct_rtcmem.RTCMem(hw.rtc)
        self.clock = ct_clock.Clock(hw.now, hw.set_time, hw.offset)
        self.clock.unpack(self.mem.get(_K_CLOCK))
        a = dict(cfg.get("alarm", {}))
        for k in ("high", "low", "delay"):
            if k in self.settings:
                a[k] = self.settings[k]
        self.alarm = ct_alarm.Alarm(
            a.get("high", 800), a.get("low", 200), a.get("delay", 0),
            a.get("cum", 0), a.get("ignore", 0), 0,
        )
        self.alarm_ch = a.get("channel", 0)
        al = self.mem.get(_K_ALARM)
        if al and len(al) == ct_alarm.SIZE + 4:
            self.alarm.unpack(al[4:])
            self.alarm.start = struct.unpack("<I", al[:4])[0]
        st = self.mem.get(_K_APP)
        if st and len(st) == struct.calcsize(_APP_FMT):
            (self.last_upload, self.next_upload, self.next_heartbeat, self.fails,
             self.faulted, self.dropped, self.storage, self.safe_since) = struct.unpack(
                _APP_FMT, st)
            self.fresh = False
        else:
            self.last_upload = self.next_upload = self.next_heartbeat = 0
            self.fails = self.faulted = self.dropped = self.storage = self.safe_since = 0
            self.fresh = True
        b = self.mem.get(_K_BOOT)
        self.boot_fails = (b[0] - 1) if b else 0
        self.events = []  # (event, detail) made this cycle, for tests/sim
        self._pending_fault = None
        self.settings_dirty = False
        self._shift = 0  # s the clock stepped during this upload (a set clock)

    # -- settings ---------------------------------------------------------

    def get(self, name, default):
        return self.settings.get(name, self.cfg.get(name, default))

    def interval(self):
        return self.get("interval", 300)

    def upload_interval(self):
        return self.get("upload", 3600)

    # -- records ----------------------------------------------------------

    def _emit(self, fields):
        t, tq = self.clock.now()
        fields[4] = t
        fields[5] = tq
        try:
            rec = self.core.record(fields)
        except ct_record.RecordError:
            # a reading the protocol cannot carry (a value out of bounds that
            # _measure did not catch): record the fault, never crash the cycle
            if fields.get(1) != 1 or 12 in fields:
                raise  # our own status/fault fields: a bug, stay loud
            self._fault(fields, FAULT_RANGE)
            rec = self.core.record(fields)
        if not self.core.enqueue(rec):
            self.dropped += 1
            return False
        return True

    def status(self, event, detail=None, extra=None):
        f = {1: 3, 30: event}
        if detail is not None:
            f[37] = detail
        if extra:
            f.update(extra)
        self.events.append((event, detail))
        return self._emit(f)

    def _storage(self):
        n, free = self.core.queued()
        low = self.cfg.get("storage_low", 16384)
        if free < low and not self.storage & 1:
            self.storage |= 1
            self.status(EV_STORAGE_LOW, n, {33: n, 34: free})
        elif free >= 2 * low:
            self.storage &= ~1
        if self.dropped and not self.storage & 2:
            self.storage |= 2
            self.status(EV_STORAGE_FULL, self.dropped, {33: n, 34: free})
        return n, free

    # -- one wake ---------------------------------------------------------

    def safe_mode(self):
        return self.boot_fails >= self.cfg.get("safe_after", 3)

    def cycle(self):
        """One wake. Returns milliseconds to sleep."""
        hw = self.hw
        hw.feed()
        self.events = []
        now = self.clock.now()[0]
        if getattr(hw, "button_wake", None) and hw.button_wake():
            self.alarm.clear_latch()  # the operator acknowledged the alarm LED
        restart = self.fresh or hw.reset_cause() != hw.DEEPSLEEP
        if self.blocks is not None:  # first: a sealed block owns the next seq
            self.dropped += self.blocks.resume(self.core, restart, hw.batt_mv(),
                                               self.alarm.bits)[1]
        fw = {32: FW}
        if self.ota is not None:
            lab, ver = self.ota.running()
            fw = {32: lab, 39: ver}
        if restart:
            fw.update({31: hw.uptime(), 36: hw.reset_cause()})
            self.status(EV_BOOT, None, fw)
            self.fresh = False
        urgent = False
        if self.ota is not None:
            self._ota_events(self.ota.notes())
            urgent = self.ota.in_trial()  # the health check needs an ack now
        safe = self.safe_mode()
        if safe:
            if not self.safe_since:
                self.safe_since = now or 1
                self.status(EV_SAFE, self.boot_fails, {32: FW, 36: hw.reset_cause()})
            elif now - self.safe_since >= self.cfg.get("safe_hold", 21600):
                self.safe_since = 0
                self.boot_fails = 0  # try the normal path again
            urgent = True
        else:
            self.safe_since = 0
            urgent = self._measure(now) or urgent
        hw.feed()
        self._storage()
        if now >= self.next_heartbeat:
            n, free = self.core.queued()
            hb = {31: hw.uptime(), 33: n, 34: free, 15: hw.batt_mv()}
            if 39 in fw:
                hb[39] = fw[39]
            self.status(EV_HEARTBEAT, None, hb)
            self.next_heartbeat = now + self.cfg.get("heartbeat", 21600)
        if urgent or now >= self.next_upload:
            self._upload(now)
        if self.ota is not None and self.ota.pending():
            self._ota_work()
        self._save()
        self._clean_exit()
        return self._sleep_ms()

    def _measure(self, now):
        batt = self.hw.batt_mv()
        urgent = False
        bits = self.alarm.bits
        chans = self.channels() if callable(self.channels) else self.channels
        for ch, cal_id, measure in chans:
            f = {1: 1, 15: batt}
            if ch:
                f[13] = ch
            try:
                temp, rh = measure()
                if not _valid(temp, rh):
                    raise AppError(FAULT_RANGE, "out of range", temp, rh)
            except Exception as e:  # driver faults carry the protocol code
                code = e.args[0] if e.args and isinstance(e.args[0], int) else FAULT_BUS
                self._fault(f, code)
                temp = None
            else:
                self.faulted &= ~(1 << ch)
                f[10] = temp
                if rh is not None:
                    f[11] = rh
                if cal_id is not None:
                    f[14] = cal_id
            evs = ()
            was = self.alarm.bits
            if ch == self.alarm_ch:
                evs = self.alarm.update(self.clock.now()[0], temp)
                bits = self.alarm.bits
                if bits:
                    f[16] = bits
            elif self.alarm.bits:
                f[16] = self.alarm.bits
            how = 0 if self.blocks is None else self._block(ch, cal_id, f, temp, bits != was, batt)
            if how != 1:
                self._emit(f)
                urgent = urgent or how == 2  # sent at once too
            if 12 in f and self._pending_fault:
                self.status(EV_SENSOR_FAULT, f[12], {15: batt})
                self._pending_fault = None
            for ev, side, peak in evs:
                self.status(ev, peak, {15: batt})
                urgent = True
        self.hw.led(1 if bits & ct_alarm.LATCHED else 0)
        return urgent

    def _block(self, ch, cal, f, temp, changed, batt):
        """Put reading ``f`` in the open block of ``ch`` (1), or sign that
        block first and return 2 (out of the band or an alarm change: ``f``
        is signed and sent at once, §2.8) or 0 (the clock is unset: ``f`` is
        signed now, in the boot whose clock dates it, §12.2)."""
        a = self.alarm
        if ch == self.alarm_ch and (changed or temp is not None
                                    and (temp > a.high or temp < a.low)):
            self._close_block(ch, batt)
            return 2
        t, tq = self.clock.now()
        if tq == 0:  # a restart would sign it in another boot: undatable
            self._close_block(ch, batt)
            return 0
        ivl = self.interval()
        b = self.blocks
        at = b.fits(ch, t, tq, ivl, cal)
        if at is None:
            self._close_block(ch, batt)
            at = t
        if b.add(ch, at, tq, ivl, cal, f.get(10), f.get(12), f.get(11)) >= b.size:
            self._close_block(ch, batt)
        return 1

    def _close_block(self, ch, batt=None):
        n = self.blocks.count(ch)
        if batt is None:
            batt = self.hw.batt_mv()
        if self.blocks.close(ch, self.core, batt, self.alarm.bits) is False:
            self.dropped += n  # the queue is full: counted like refused readings

    def close_blocks(self):
        """Sign every open block now (before a clock set or a new interval;
        the simulator before it stops)."""
        if self.blocks is not None:
            for ch in self.blocks.open_channels():
                self._close_block(ch)

    def _fault(self, f, code):
        """Make reading fields f a fault reading (no value, no calibration)
        and note the first fault of a channel for its status record."""
        for k in (10, 11, 14):
            if k in f:
                del f[k]
        f[12] = code
        ch = f.get(13, 0)
        if not self.faulted & (1 << ch):
            self.faulted |= 1 << ch
            self._pending_fault = (ch, code)

    def _upload(self, now):
        self._shift = 0
        try:
            c = self.cfg.get("clock", {})
            got = self.core.upload(self.cfg.get("upload_ms", _UPLOAD_MS), self._want_time(now),
                                   self.clock.now, self._ntp_now, self._gw_now,
                                   (c.get("max_ahead", 300), c.get("hold_ahead", 86400)))
        except OSError:
            self.fails = min(self.fails + 1, 20)
            back = _MIN_BACKOFF << min(self.fails, 10)
            self.next_upload = now + min(back, max(self.upload_interval(), _MIN_BACKOFF))
            return False
        # the link went (or acks stalled) before the queue drained: retry at
        # a later wake, backing off as after a failed connect
        left = self.core.queued()[0]
        self.fails = min(self.fails + 1, 20) if left else 0
        self.last_upload = now
        self.next_upload = now + self.upload_interval()
        if left:
            back = _MIN_BACKOFF << min(self.fails, 10)
            self.next_upload = now + min(back, max(self.upload_interval(), _MIN_BACKOFF))
        for item in got:
            if item[0] == "ack" and item[2] is not None and self.ota is not None:
                self._ota_events(self.ota.healthy())  # a fresh ack: signed and stored
            if item[0] == "time":  # from a fresh ack only (ct_uplink)
                self._sync(item[1], ct_clock.GATEWAY)
            elif item[0] == "ntp":
                self._sync(item[1], ct_clock.NTP)
            elif item[0] == "cmd":
                self._on_cmd(item[1])
            elif item[0] == "lost":  # the core signed the declaration (§5.2)
                self.events.append((EV_DROPPED, item[2]))
        if self._shift:
            # the clock stepped during this upload: the schedule made on the
            # old clock keeps its distance on the new one (a fast clock set
            # back a day must not wait a day for its next upload)
            self.last_upload += self._shift
            self.next_upload += self._shift
            self.next_heartbeat += self._shift
        if self.dropped and self.storage & 2:
            # the queue drained: report how much was lost, then start over
            n, free = self.core.queued()
            if free >= self.cfg.get("storage_low", 16384):
                self.status(EV_DROPPED, self.dropped, {33: n, 34: free})
                self.dropped = 0
                self.storage &= ~2
        return True

    def _on_cmd(self, p):
        self._command(p)
        if p is not None and 20 in p and self.ota is not None:
            self._ota_events(self.ota.offer(p))

    def _ota_work(self):
        try:
            self._ota_events(self.ota.work(self.cfg.get("ota_ms", 60000)))
        except OSError:
            pass  # the link failed: what was fetched stays, next wake resumes
        up = getattr(self.core, "uplink", None)
        for topic, msg in self.ota.take_stash():
            if up is not None and topic == up.t_cmd:
                for item in up.command(msg):
                    self._on_cmd(item[1])

    def _ota_events(self, evs):
        for ev, detail in evs:
            self.status(ev, detail)
    def _ntp_now(self, t):
        # before the connection: TLS checks certificate dates (ct_core.upload)
        self._sync(t, ct_clock.NTP)

    def _gw_now(self, t):
        # during the upload: the gateway refuses records dated ahead of its
        # time (ct_uplink); set the clock before the declaration is signed
        return self._sync(t, ct_clock.GATEWAY)

    def _want_time(self, now):
        """Ask the uplink for NTP time when the clock is unset or 12 h old."""
        c = self.clock
        return bool(self.cfg.get("ntp")) and (
            c.src == ct_clock.UNSET or now - c.last > 43200)

    def _sync(self, t, src):
        was = self.clock.src
        try:
            old = self.clock.sync(t, src)
        except ct_clock.ClockError:
            return False
        if old is not None and was != ct_clock.UNSET:
            self._shift += t - old
        if old is not None:
            self.close_blocks()  # §2.8: blocks before the clock-set record
            self.status(EV_CLOCK_SET, old)
        self.mem.put(_K_CLOCK, self.clock.pack())
        return True

    def _command(self, p):
        """Apply a verified command payload (dict), or refuse (None)."""
        if p is None:
            self.status(EV_CONFIG, -1)
            return
        changed = {}
        for key, name in CMD_KEYS.items():
            if key in p:
                v = p[key]
                lo, hi = _LIMITS[name]
                if not isinstance(v, int) or v < lo or v > hi:
                    self.status(EV_CONFIG, -1)
                    return
                changed[name] = v
        high = changed.get("high", self.alarm.high)
        low = changed.get("low", self.alarm.low)
        if low >= high:
            self.status(EV_CONFIG, -1)
            return
        try:
            cal = ct_cal.from_command(p)  # keys 16-19; applied from the next reading
        except ct_cal.CalError:
            self.status(EV_CONFIG, -1)
            return
        if 15 in p and not self._sync(p[15], ct_clock.GATEWAY):
            self.status(EV_CONFIG, -1)
            return
        if cal is not None:
            cals = dict(self.settings.get("cal") or {})
            cals[str(cal[0])] = cal[1]
            changed["cal"] = cals
        if changed:
            if "interval" in changed:
                self.close_blocks()  # §2.8: before the interval changes
            self.settings.update(changed)
            self.alarm.configure(high, low, changed.get("delay", self.alarm.delay),
                                 self.alarm.cum, self.alarm.ignore)
            if "upload" in changed:
                self.next_upload = self.last_upload + changed["upload"]
            self.status(EV_CONFIG, p.get(1, 0))
            self.settings_dirty = True

    # -- state and sleep --------------------------------------------------

    def _save(self):
        self.mem.put(_K_APP, struct.pack(
            _APP_FMT, self.last_upload, self.next_upload, self.next_heartbeat,
            self.fails, self.faulted, self.dropped, self.storage, self.safe_since))
        self.mem.put(_K_ALARM, struct.pack("<I", self.alarm.start) + self.alarm.pack())
        self.mem.put(_K_CLOCK, self.clock.pack())

    def _clean_exit(self):
        """The cycle ran to its end: this start was not a failure."""
        if not self.safe_mode():
            self.mem.put(_K_BOOT, b"\x00")

    def _sleep_ms(self):
        now = self.clock.now()[0]
        iv = self.interval()
        nxt = (now // iv + 1) * iv  # aligned to the interval
        pend = self.alarm.pending(now)
        if pend is not None and pend > 0:
            nxt = min(nxt, now + pend)
        if self.safe_mode():
            nxt = max(nxt, now + min(self.upload_interval() or iv, 3600))
        return max(1, nxt - now) * 1000
