"""LTE-M uplink through a SIMCom SIM7080G: PPP, so MQTT and TLS run as on Wi-Fi.

    lte = Lte(uart, pwrkey_pin, network.PPP, cfg["lte"], feed=wdt.feed)
    lte.up()      # modem on (or awake from PSM), registered, PPP up; OSError if not
    ...           # sockets, umqtt, TLS: unchanged (ct_uplink)
    lte.down()    # PPP down, modem to PSM (or powered down); never raises
    lte.rssi()    # dBm from AT+CSQ, or None

It has the WiFi interface of ct_net (up/down/rssi), so ct_core drives it
the same way and store-and-forward and the app-level ack are unchanged
(docs/decisions.md D33 says why PPP and not the modem's MQTT commands).

The modem (SIM7080 Series AT Command Manual; Hardware Design):
  * PWRKEY, through an NPN (``pwrkey_active`` 1: GPIO high = PWRKEY low):
    a pulse of ``pwrkey_on_ms`` (1000; >= 1 s switches an off module on,
    < 1.2 s so it never switches a running one off) wakes it from PSM or
    powers it on; the UART answers within ``boot_ms``. ``AT+CPOWD=1``
    powers it down, a ``pwrkey_off_ms`` (1500, >= 1.2 s) pulse if it does
    not answer.
  * setup: ``ATE0``, ``AT+CMEE=1``, ``AT+CPIN?``, ``AT+CNMP=38`` (LTE only),
    ``AT+CMNB`` (1 Cat-M, 2 NB-IoT), ``AT+CGDCONT=1,"IP",apn``,
    ``AT+CEREG=2``, ``AT+CGEREP=2``, and the sleep mode: ``AT+CPSMS=1,,,
    "T3412","T3324"`` from ``psm_tau``/``psm_active`` seconds (3GPP 24.008
    timers), ``AT+CEDRXS`` when ``edrx`` is set.
  * registration: ``AT+CEREG?`` and ``+CEREG`` URCs until home (1) or
    roaming (5) within ``reg_ms``; denied (3) fails at once.
  * ``ATD*99***1#`` -> ``CONNECT``, then ``network.PPP(uart).connect()``
    until ``isconnected()`` within ``ppp_ms``.
  * down: ``PPP.disconnect()`` (LCP terminate; the modem says ``NO
    CARRIER``), else ``+++`` with 1 s guard times and ``ATH``. Then PSM:
    the modem sleeps (~3 uA) after the granted active time and keeps its
    registration and PDN, so the next upload skips the attach. With
    ``sleep`` "off", or when the network granted no PSM timers (``+CEREG``
    with ``AT+CEREG=4``; an idle modem draws ~10 mA), it is powered down.

A modem that a reset left in PPP data mode (no answer to AT, and the 1 s
pulse does not switch a running one off) is brought back with ``+++`` and
``ATH``. Every wait has a deadline and feeds the watchdog. A failure raises
``LteError`` (an OSError), which the app treats as "no network": it backs
off and the queue keeps everything for the next wake.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


import ct_ticks

_POLL_MS = const(20)
_REG_POLL_MS = const(2000)
_KEEP = const(16)  # URCs and log entries kept (a reader never reboots)


class LteError(OSError):
    pass


def t3412_bits(s):
    """Seconds -> the 8-bit string of 3GPP 24.008 GPRS timer 3 (T3412
    extended, the periodic TAU), rounded up to what the units can say."""
    for unit, step in ((3, 2), (4, 30), (5, 60), (0, 600), (1, 3600), (2, 36000), (6, 1152000)):
        n = (s + step - 1) // step
        if n <= 31:
            return _bits(unit, n)
    return _bits(6, 31)


def t3324_bits(s):
    """Seconds -> the 8-bit string of GPRS timer 2 (T3324, the active
    time); None or a negative value: deactivated."""
    if s is None or s < 0:
        return "11100000"
    for unit, step in ((0, 2), (1, 60), (2, 360)):
        n = (s + step - 1) // step
        if n <= 31:
            return _bits(unit, n)
    return _bits(2, 31)


def _bits(unit, n):
    b = unit << 5 | n
    return "".join("1" if b >> (7 - i) & 1 else "0" for i in range(8))


class At:
    """Line-oriented AT commands on a UART. Results: OK, ERROR, +CME ERROR,
    CONNECT, NO CARRIER; other lines are a command's response or URCs."""

    def __init__(self, uart, ticks=ct_ticks, feed=None):
        self.uart = uart
        self._t = ticks
        self._feed = feed or (lambda: None)
        self._buf = b""
        self.urcs = []  # URC lines seen, oldest first (the caller trims)
        self.log = []  # (command, result) for diagnosis

    def _line(self, t0, ms):
        t = self._t
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = self._buf[:i].strip()
                self._buf = self._buf[i + 1 :]
                if line:
                    try:
                        return line.decode()
                    except ValueError:  # line noise (a modem powering up)
                        pass
                continue
            if self._buf.endswith(b"> "):
                self._buf = b""
                return ">"
            n = self.uart.any()
            if n:
                self._buf += self.uart.read(n) or b""
                continue
            if t.ticks_diff(t.ticks_ms(), t0) >= ms:
                return None
            self._feed()
            t.sleep_ms(_POLL_MS)

    def drain(self, ms=0):
        """Collect URCs for ``ms`` (0: what is there now)."""
        t0 = self._t.ticks_ms()
        while True:
            line = self._line(t0, ms)
            if line is None:
                return
            self._urc(line)

    def _urc(self, line):
        if len(self.urcs) >= _KEEP:
            self.urcs.pop(0)
        self.urcs.append(line)

    def _log(self, c, result):
        if len(self.log) >= _KEEP:
            self.log.pop(0)
        self.log.append((c, result))

    def cmd(self, c, timeout_ms=2000, ends=("OK",)):
        """Send ``AT<c>``; the response lines (without the echo) until a
        line in ``ends``; raises LteError on ERROR, +CME ERROR, NO CARRIER
        or the timeout. URCs that arrive meanwhile land in ``urcs``."""
        self.drain()
        self.uart.write(b"AT" + c.encode() + b"\r")
        t0 = self._t.ticks_ms()
        out = []
        echo = "AT" + c
        name = c.split("=")[0].split("?")[0]
        while True:
            line = self._line(t0, timeout_ms)
            if line is None:
                self._log(c, "timeout")
                raise LteError(110, "AT" + c + ": no answer")
            if line == echo:
                continue
            for e in ends:
                if line.startswith(e):
                    self._log(c, line)
                    out.append(line)
                    return out
            if line == "ERROR" or line.startswith("+CME ERROR") or line == "NO CARRIER":
                self._log(c, line)
                raise LteError(5, "AT" + c + ": " + line)
            if name and line.startswith(name + ":"):
                out.append(line)
            else:
                self._urc(line)

    def probe(self, ms):
        """True if the modem answers AT within ``ms``."""
        t = self._t
        t0 = t.ticks_ms()
        while t.ticks_diff(t.ticks_ms(), t0) < ms:
            try:
                self.cmd("", 300)
                return True
            except LteError:
                self._feed()
        return False


def _field(line, i):
    """The i-th comma-separated value after the colon, unquoted."""
    v = line.split(":", 1)[1].split(",")
    return v[i].strip().strip('"') if i < len(v) else ""


class Lte:
    def __init__(self, uart, pwrkey, ppp_new, cfg=None, ticks=ct_ticks, feed=None):
        c = cfg or {}
        self.apn = c.get("apn", "")
        self.user = c.get("user")
        self.password = c.get("password")
        self.rat = c.get("rat", "m1")
        self.sleep = c.get("sleep", "psm")
        self.psm_tau = c.get("psm_tau", 7200)
        self.psm_active = c.get("psm_active", 10)
        self.edrx = c.get("edrx")
        self.on_ms = c.get("pwrkey_on_ms", 1000)
        self.off_ms = c.get("pwrkey_off_ms", 1500)
        self.active = c.get("pwrkey_active", 1)
        self.boot_ms = c.get("boot_ms", 10000)
        self.reg_ms = c.get("reg_ms", 60000)
        self.dial_ms = c.get("dial_ms", 10000)
        self.ppp_ms = c.get("ppp_ms", 15000)
        if self.sleep not in ("psm", "off"):
            raise LteError(22, "lte.sleep must be psm or off")
        if self.rat not in ("m1", "nb"):
            raise LteError(22, "lte.rat must be m1 or nb")
        if self.on_ms < 1000 or self.on_ms >= 1200 or self.off_ms < 1200:
            raise LteError(22, "PWRKEY: on 1000..1199 ms, off >= 1200 ms")
        self.at = At(uart, ticks, feed)
        self._uart = uart
        self._pin = pwrkey
        self._ppp_new = ppp_new
        self._t = ticks
        self._feed = feed or (lambda: None)
        self._ppp = None
        self.csq = None  # last AT+CSQ rssi (0..31, 99 unknown)
        self.stat = None  # last +CEREG stat
        self.psm_granted = ""  # the Active-Time the network granted ("" none)
        self.pulses = 0
        if pwrkey is not None:
            pwrkey.value(0 if self.active else 1)

    # --- power -----------------------------------------------------------------

    def _pulse(self, ms):
        p = self._pin
        if p is None:
            raise LteError(19, "modem silent and no PWRKEY pin")
        self.pulses += 1
        p.value(1 if self.active else 0)
        self._sleep(ms)
        p.value(0 if self.active else 1)

    def _sleep(self, ms):
        while ms > 0:
            n = min(ms, 500)
            self._t.sleep_ms(n)
            self._feed()
            ms -= n

    def power_on(self):
        """Make the modem answer AT: awake already, from PSM, or from off."""
        if self.at.probe(600):
            return False
        self._pulse(self.on_ms)
        if self.at.probe(self.boot_ms):
            return True
        # running but deaf: still in PPP data mode from an upload a reset
        # cut short (the 1 s pulse does not switch a running modem off)
        self._escape()
        if self.at.probe(600):
            try:
                self.at.cmd("H")
            except OSError:
                pass
            return False
        raise LteError(110, "modem did not answer after PWRKEY")

    def _escape(self):
        """``+++`` with 1 s of silence before and after: data -> command mode."""
        self._sleep(1100)
        self._uart.write(b"+++")
        self._sleep(1100)
        self.at.drain(200)

    def power_off(self):
        """AT+CPOWD=1, or the PWRKEY off pulse when it does not answer."""
        try:
            self.at.cmd("+CPOWD=1", 3000, ("NORMAL POWER DOWN",))
        except OSError:
            if self._pin is not None:
                self._pulse(self.off_ms)

    # --- up and down ---------------------------------------------------------------

    def up(self):
        self._ppp_down()
        self.power_on()
        a = self.at
        a.cmd("E0")
        a.cmd("+CMEE=1")
        r = a.cmd("+CPIN?", 5000)
        if len(r) < 2 or "READY" not in r[-2]:
            raise LteError(13, "SIM not ready: " + (r[-2] if len(r) > 1 else "?"))
        a.cmd("+CNMP=38")
        a.cmd("+CMNB=%d" % (1 if self.rat == "m1" else 2))
        a.cmd('+CGDCONT=1,"IP","%s"' % self.apn)
        a.cmd("+CEREG=4")  # stat, cell, and the PSM timers the network granted
        a.cmd("+CGEREP=2,1")
        if self.sleep == "psm":
            a.cmd('+CPSMS=1,,,"%s","%s"' % (t3412_bits(self.psm_tau), t3324_bits(self.psm_active)))
        else:
            a.cmd("+CPSMS=0")
        if self.edrx:
            a.cmd('+CEDRXS=1,4,"%s"' % self.edrx)
        self._register()
        self.signal()
        self._dial()
        return self._ppp

    def _register(self):
        t = self._t
        t0 = t.ticks_ms()
        last = None
        while True:
            self._feed()
            if last is None or t.ticks_diff(t.ticks_ms(), last) >= _REG_POLL_MS:
                r = self.at.cmd("+CEREG?")
                last = t.ticks_ms()
                self.stat = _int(_field(r[-2], 1)) if len(r) > 1 else None
                self.psm_granted = _field(r[-2], 7) if len(r) > 1 else ""
            self._urcs()
            if self.stat in (1, 5):
                return
            if self.stat == 3:
                raise LteError(111, "LTE registration denied")
            if t.ticks_diff(t.ticks_ms(), t0) >= self.reg_ms:
                raise LteError(110, "LTE not registered within reg_ms")
            self.at.drain(200)

    def _urcs(self):
        for u in self.at.urcs:
            if u.startswith("+CEREG:"):
                self.stat = _int(_field(u, 0))
                if self.stat in (1, 5):
                    self.psm_granted = _field(u, 6)  # the URC has no <n> in front
        self.at.urcs = []

    def signal(self):
        r = self.at.cmd("+CSQ")
        self.csq = _int(_field(r[-2], 0)) if len(r) > 1 else None
        return self.csq

    def rssi(self):
        c = self.csq
        if c is None or c == 99 or c > 31:
            return None
        return -113 + 2 * c

    def _dial(self):
        self.at.cmd("D*99***1#", self.dial_ms, ("CONNECT",))
        p = self._ppp_new(self._uart)
        self._ppp = p
        if self.user:
            p.connect(p.SEC_PAP, self.user, self.password or "")
        else:
            p.connect()
        t = self._t
        t0 = t.ticks_ms()
        while not p.isconnected():
            if t.ticks_diff(t.ticks_ms(), t0) >= self.ppp_ms:
                self.down()
                raise LteError(110, "PPP not up within ppp_ms")
            self._feed()
            t.sleep_ms(100)

    def connected(self):
        return self._ppp is not None and self._ppp.isconnected()

    def _ppp_down(self):
        p = self._ppp
        self._ppp = None
        if p is not None:
            try:
                p.disconnect()
            except Exception:
                pass

    def down(self):
        """PPP down, then PSM or power-down. Never raises."""
        try:
            self._ppp_down()
            a = self.at
            a.drain(300)  # NO CARRIER after the LCP terminate
            if not a.probe(600):
                self._escape()  # still in data mode: escape, then hang up
            try:
                a.cmd("H")
            except OSError:
                pass
            self._urcs()
            if self.sleep == "off" or not self.psm_granted:
                # a modem the network lets idle (no PSM) would draw ~10 mA
                self.power_off()
        except Exception:
            pass


def _int(s):
    try:
        return int(s)
    except ValueError:
        return None
