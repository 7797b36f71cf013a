"""A SIMCom SIM7080G behind a fake UART, for ct_lte (both interpreters).

Written from the SIM7080 Series AT Command Manual and Hardware Design (not
from any driver), on simulated time (fakeclock.FakeTicks):

* PWRKEY (through the board's NPN, so GPIO high = PWRKEY low): held low
  >= 1000 ms switches an off module on; the UART answers ``boot_ms`` later
  and, with a fixed baud rate, says ``RDY``, ``+CFUN: 1``, ``+CPIN: READY``,
  ``SMS Ready``. Held low >= 1200 ms switches a running module off
  (``NORMAL POWER DOWN``). Any pulse >= 100 ms wakes it from PSM. While off
  or in PSM the UART is dead: what is written is lost, nothing is read.
* the AT interpreter: ``AT`` prefix, CR-terminated lines, echo (``ATE1``
  after boot, ``ATE0``), results ``OK`` / ``ERROR`` / ``+CME ERROR: <n>``
  (``AT+CMEE=1``) or ``+CME ERROR: <text>`` (``AT+CMEE=2``), V1 framing
  ``\\r\\n...\\r\\n``; every command takes ``cmd_ms``.
* registration: after ``AT+CFUN=1`` (or boot) the module searches
  (``+CEREG: 2``) for ``reg_ms`` and registers home (1) or roaming (5), or
  is denied (3) - ``+CEREG`` URCs with ``AT+CEREG=1|2|4``; ``AT+CSQ``.
* ``AT+CGEREP=2`` enables ``+CGEV: ME PDN ACT 1`` / ``+CGEV: NW PDN DEACT 1``.
* ``AT+CPSMS=1,,,"T3412","T3324"`` (3GPP 24.008 GPRS timer 3 / timer 2
  bit strings), ``AT+CEDRXS=1,4,"xxxx"``, ``AT+CPSMSTATUS=1``; the granted
  timers appear in ``+CEREG`` with ``AT+CEREG=4`` (``grant_psm=False``: the
  network refuses PSM, no timers, no sleep). Once the
  data call is over and the module is idle for the granted T3324 it says
  ``+CPSMSTATUS: "ENTER PSM"`` and sleeps (registration kept: after a
  wake it is registered at once).
* ``ATD*99#`` / ``ATD*99***1#``: ``CONNECT 150000000`` after ``dial_ms``
  and data mode (``NO CARRIER`` when not registered or no PDP context).
  ``+++`` with 1 s guard times before and after returns to command mode
  (``OK``); ``ATH`` ends the call; ``ATO`` resumes it.
* ``AT+CNACT=0,1`` (the modem's own IP stack): ``+APP PDP: 0,ACTIVE``.
* ``lose_network()``: the network drops the PDN connection mid-call:
  the PPP link dies, ``NO CARRIER``, ``+CGEV: NW PDN DEACT 1``,
  ``+CEREG: 2`` (searching) until ``restore_network()``.

The PPP link itself is not emulated byte by byte: ``FakePPP`` stands in for
MicroPython's ``network.PPP`` and is up only while the modem is in data mode
with a live PDN connection (LCP/IPCP take ``ppp_ms``).
"""

_CME = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    30: "no network service",
    50: "Incorrect parameters",
    100: "unknown",
}


class FakePin:
    """machine.Pin output driving the modem's PWRKEY through an NPN."""

    def __init__(self, modem):
        self.modem = modem
        self.v = 0
        self.since = 0
        self.pulses = []  # (start ms, length ms) of every pulse

    def value(self, v=None):
        if v is None:
            return self.v
        v = 1 if v else 0
        now = self.modem.clock.ticks_ms()
        if v and not self.v:
            self.since = now
        elif self.v and not v:
            self.pulses.append((self.since, now - self.since))
            self.modem.pwrkey(now - self.since)
        self.v = v

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class FakeUart:
    """machine.UART connected to the modem: write, read, any, irq."""

    IRQ_RXIDLE = 4096

    def __init__(self, modem):
        self.modem = modem
        self.handler = None

    def write(self, b):
        self.modem.rx(bytes(b))
        return len(b)

    def any(self):
        self.modem.step()
        return len(self.modem.out)

    def read(self, n=-1):
        self.modem.step()
        out = self.modem.out
        if not out:
            return None
        if n is None or n < 0:
            n = len(out)
        b = bytes(out[:n])
        self.modem.out = out[n:]
        return b

    def irq(self, handler=None, trigger=0):
        self.handler = handler


class FakeSim7080:
    def __init__(
        self,
        clock,
        sim=True,
        reg_stat=1,
        reg_ms=6000,
        boot_ms=3000,
        csq=18,
        fixed_baud=True,
        cmd_ms=20,
        dial_ms=300,
        ppp_ms=1200,
        grant_psm=True,
    ):
        self.clock = clock
        self.sim = sim
        self.reg_stat = reg_stat  # what the network will grant: 1, 5 or 3
        self.reg_ms = reg_ms
        self.boot_ms = boot_ms
        self.csq = csq
        self.fixed_baud = fixed_baud
        self.cmd_ms = cmd_ms
        self.dial_ms = dial_ms
        self.ppp_ms = ppp_ms
        self.grant_psm = grant_psm  # the network may refuse PSM
        self.power = "off"  # off, booting, on, psm
        self.out = bytearray()
        self.inbuf = b""
        self.echo = True
        self.cmee = 0
        self.cereg_n = 0
        self.cgerep = 0
        self.psm_status = 0
        self.cfun = 0
        self.stat = 0  # +CEREG stat
        self.net_ok = True
        self.pdp = {}  # cid -> (type, apn)
        self.pdn_up = False
        self.data = False  # in data mode (after CONNECT)
        self.call = False  # a data call exists (data mode or escaped)
        self.ppp = None  # the FakePPP on this modem
        self.psms = None  # (mode, t3412, t3324) requested
        self.edrx = None
        self.cnmp = 2
        self.cmnb = 1
        self.app_pdp = False
        self._events = []  # (time, fn)
        self._esc = None  # escape sequence state: (time of last byte before, "+" count)
        self._last_rx = 0
        self._idle_since = None
        self.log = []  # every command line received, in order
        self.boots = 0
        self.power_downs = 0
        self.psm_entries = 0
        self.pin = FakePin(self)
        self.uart = FakeUart(self)

    # --- time ---------------------------------------------------------------

    def at(self, delay, fn):
        self._events.append((self.clock.ticks_ms() + delay, fn))

    def step(self):
        """Run everything due by now (called on every UART access)."""
        while True:
            now = self.clock.ticks_ms()
            due = [e for e in self._events if e[0] <= now]
            if not due:
                break
            due.sort(key=lambda e: e[0])
            e = due[0]
            self._events.remove(e)
            e[1]()
        self._escape_check()
        self._psm_check()

    def urc(self, line):
        if self.power == "on" and not self.data:
            self.out += b"\r\n" + line.encode() + b"\r\n"

    # --- power ----------------------------------------------------------------

    def pwrkey(self, ms):
        self.step()
        if self.power == "off" and ms >= 1000:
            self.power = "booting"
            self.at(self.boot_ms, self._booted)
        elif self.power == "psm" and ms >= 100:
            self.power = "on"
            self._idle_since = self.clock.ticks_ms()
            if self.psm_status:
                self.urc('+CPSMSTATUS: "EXIT PSM"')
        elif self.power == "on" and ms >= 1200:
            self._power_down()

    def _booted(self):
        if self.power != "booting":
            return
        self.power = "on"
        self.boots += 1
        self.echo = True
        self.cmee = self.cereg_n = self.cgerep = self.psm_status = 0
        self.data = self.call = self.pdn_up = self.app_pdp = False
        self.stat = 0
        self.cfun = 1
        self._idle_since = self.clock.ticks_ms()
        if self.fixed_baud:
            self.urc("RDY")
        self.urc("+CFUN: 1")
        if not self.sim:
            self.urc("+CPIN: NOT INSERTED")
        elif self.sim == "pin":
            self.urc("+CPIN: SIM PIN")  # locked: no registration until a PIN
        else:
            self.urc("+CPIN: READY")
            self.urc("SMS Ready")
            self._search()

    def _power_down(self):
        self.urc("NORMAL POWER DOWN")
        self._drop_ppp()
        self.power = "off"
        self.power_downs += 1
        self.data = self.call = self.pdn_up = False
        self._events = []

    def _search(self):
        if not self.sim or self.sim == "pin" or self.cfun != 1:
            return
        self._set_stat(2)
        self.at(self.reg_ms, self._register)

    def _register(self):
        if self.power not in ("on", "psm") or self.cfun != 1 or not self.net_ok:
            return
        self._set_stat(self.reg_stat)

    def _set_stat(self, stat):
        if stat == self.stat:
            return
        self.stat = stat
        if self.cereg_n:
            self.urc("+CEREG: " + self._cereg(False))

    def _cereg(self, query):
        s = str(self.stat)
        if self.cereg_n >= 2 and self.stat in (1, 5):
            s += ',"1A2D","01A2D101",7'
            if self.cereg_n >= 4 and self.psms and self.psms[0] and self.grant_psm:
                s += f',,,"{self.psms[2]}","{self.psms[1]}"'
        return f"{self.cereg_n},{s}" if query else s

    def _psm_check(self):
        if (
            self.power != "on"
            or self.call
            or not self.psms
            or not self.psms[0]
            or not self.grant_psm
            or self.stat not in (1, 5)
            or self._idle_since is None
        ):
            return
        active = decode_t3324(self.psms[2])
        if active is None:
            return
        if self.clock.ticks_ms() - max(self._idle_since, self._last_rx) >= active * 1000:
            if self.psm_status:
                self.urc('+CPSMSTATUS: "ENTER PSM"')
            self.power = "psm"
            self.psm_entries += 1

    # --- the network ------------------------------------------------------------

    def lose_network(self):
        """The network drops the PDN connection (and the cell) now."""
        self.step()
        self.net_ok = False
        self.pdn_up = False
        if self.call:
            self._drop_ppp()
            self.data = self.call = False
            self.urc("NO CARRIER")
        if self.cgerep:
            self.urc("+CGEV: NW PDN DEACT 1")
        if self.app_pdp:
            self.app_pdp = False
            self.urc("+APP PDP: 0,DEACTIVE")
        self._set_stat(2)

    def restore_network(self, after_ms=0):
        def back():
            self.net_ok = True
            if self.power == "on" and self.cfun == 1:
                self._set_stat(self.reg_stat)

        self.at(after_ms, back)

    def _drop_ppp(self):
        if self.ppp is not None:
            self.ppp.link_lost()

    # --- the UART ------------------------------------------------------------------

    def rx(self, b):
        self.step()
        if self.power != "on":
            return  # the UART is off: lost
        now = self.clock.ticks_ms()
        if self.data:
            self._data_rx(b, now)
            self._last_rx = now
            return
        self._last_rx = now
        if self.echo:
            self.out += b
        self.inbuf += b
        while b"\r" in self.inbuf:
            line, self.inbuf = self.inbuf.split(b"\r", 1)
            line = line.strip(b"\n").strip()
            if line:
                self.clock.advance(self.cmd_ms)
                self._command(line.decode())

    def _data_rx(self, b, now):
        # only the escape sequence matters in data mode (PPP is faked above)
        if b == b"+++" and now - self._last_rx >= 1000:
            self._esc = now
        else:
            self._esc = None

    def _escape_check(self):
        if self._esc is not None and self.clock.ticks_ms() - self._esc >= 1000:
            self._esc = None
            self.data = False
            self.out += b"\r\nOK\r\n"

    def _ok(self, *lines):
        for x in lines:
            self.out += b"\r\n" + x.encode() + b"\r\n"
        self.out += b"\r\nOK\r\n"

    def _err(self, code=100):
        if self.cmee == 1:
            self.out += b"\r\n+CME ERROR: %d\r\n" % code
        elif self.cmee == 2:
            self.out += b"\r\n+CME ERROR: " + _CME.get(code, "unknown").encode() + b"\r\n"
        else:
            self.out += b"\r\nERROR\r\n"

    def _command(self, line):
        self.log.append(line)
        u = line.upper()
        if not u.startswith("AT"):
            self.out += b"\r\nERROR\r\n"
            return
        c = line[2:]
        cu = u[2:]
        if cu == "":
            return self._ok()
        if cu in ("E0", "E1"):
            self.echo = cu == "E1"
            return self._ok()
        if cu in ("H", "H0"):
            if self.call:
                self.call = self.data = False
                self._drop_ppp()
            self._idle_since = self.clock.ticks_ms()
            return self._ok()
        if cu == "O":
            if not self.call:
                self.out += b"\r\nNO CARRIER\r\n"
                return
            self.data = True
            self.out += b"\r\nCONNECT 150000000\r\n"
            return
        if cu.startswith("D"):
            return self._dial(cu[1:])
        if not cu.startswith("+"):
            self.out += b"\r\nERROR\r\n"
            return
        name, _, arg = cu[1:].partition("=")
        query = name.endswith("?")
        name = name.rstrip("?")
        h = getattr(self, "_c_" + name.lower(), None)
        if h is None:
            self.out += b"\r\nERROR\r\n"
            return
        raw = c[1:].partition("=")[2]
        h(query, arg, raw)

    def _needs_sim(self):
        if not self.sim:
            self._err(10)
            return True
        return False

    # --- commands (handlers: query flag, upper-case argument, raw argument) ---------

    def _c_cmee(self, q, arg, raw):
        if q:
            return self._ok(f"+CMEE: {self.cmee}")
        if arg not in ("0", "1", "2"):
            return self._err(50)
        self.cmee = int(arg)
        self._ok()

    def _c_cpin(self, q, arg, raw):
        if self._needs_sim():
            return
        if q:
            return self._ok("+CPIN: SIM PIN" if self.sim == "pin" else "+CPIN: READY")
        self._err(3)  # entering a PIN is not emulated

    def _c_cfun(self, q, arg, raw):
        if q:
            return self._ok(f"+CFUN: {self.cfun}")
        n = arg.split(",")[0]
        if n not in ("0", "1", "4"):
            return self._err(50)
        self.cfun = int(n)
        self._ok()
        if self.cfun == 1:
            self._search()
        else:
            self.pdn_up = False
            self._set_stat(0)

    def _c_cnmp(self, q, arg, raw):
        if q:
            return self._ok(f"+CNMP: {self.cnmp}")
        if arg not in ("2", "13", "38", "51"):
            return self._err(50)
        self.cnmp = int(arg)
        self._ok()

    def _c_cmnb(self, q, arg, raw):
        if q:
            return self._ok(f"+CMNB: {self.cmnb}")
        if arg not in ("1", "2", "3"):
            return self._err(50)
        self.cmnb = int(arg)
        self._ok()

    def _c_cgdcont(self, q, arg, raw):
        if q:
            return self._ok(
                *[f'+CGDCONT: {k},"{v[0]}","{v[1]}"' for k, v in sorted(self.pdp.items())]
            )
        parts = _split(raw)
        if (
            len(parts) < 3
            or not parts[0].isdigit()
            or parts[1].upper() not in ("IP", "IPV6", "IPV4V6", "NONIP")
        ):
            return self._err(50)
        self.pdp[int(parts[0])] = (parts[1].upper(), parts[2])
        self._ok()

    def _c_cereg(self, q, arg, raw):
        if q:
            return self._ok("+CEREG: " + self._cereg(True))
        if arg not in ("0", "1", "2", "4"):
            return self._err(50)
        self.cereg_n = int(arg)
        self._ok()

    def _c_cgerep(self, q, arg, raw):
        if q:
            return self._ok(f"+CGEREP: {self.cgerep},0")
        mode = arg.split(",")[0]
        if mode not in ("0", "1", "2"):
            return self._err(50)
        self.cgerep = int(mode)
        self._ok()

    def _c_csq(self, q, arg, raw):
        if self._needs_sim():
            return
        rssi = self.csq if self.stat in (1, 5) else 99
        self._ok(f"+CSQ: {rssi},99")

    def _c_cgatt(self, q, arg, raw):
        if q:
            return self._ok("+CGATT: " + ("1" if self.stat in (1, 5) else "0"))
        self._ok()

    def _c_cpsms(self, q, arg, raw):
        if q:
            m, t3, t2 = self.psms or (0, "", "")
            m = 1 if m else 0
            return self._ok(f'+CPSMS: {m},,,"{t3}","{t2}"')
        p = _split(raw)
        if not p or p[0] not in ("0", "1", "2"):
            return self._err(50)
        t3412 = p[3] if len(p) > 3 else "00000110"
        t3324 = p[4] if len(p) > 4 else "00100001"
        if not _bits8(t3412) or not _bits8(t3324):
            return self._err(50)
        self.psms = (int(p[0]) == 1, t3412, t3324)
        self._ok()

    def _c_cedrxs(self, q, arg, raw):
        if q:
            return self._ok('+CEDRXS: 4,"' + (self.edrx or "0000") + '"')
        p = _split(raw)
        if not p or p[0] not in ("0", "1", "2", "3"):
            return self._err(50)
        if len(p) > 2 and (len(p[2]) != 4 or any(ch not in "01" for ch in p[2])):
            return self._err(50)
        self.edrx = p[2] if len(p) > 2 and p[0] != "0" else None
        self._ok()

    def _c_cpsmstatus(self, q, arg, raw):
        if arg not in ("0", "1"):
            return self._err(50)
        self.psm_status = int(arg)
        self._ok()

    def _c_cnact(self, q, arg, raw):
        if q:
            return self._ok("+CNACT: 0," + ("1" if self.app_pdp else "0") + ',"10.64.1.7"')
        p = _split(raw)
        if len(p) < 2 or p[0] != "0":
            return self._err(50)
        if p[1] == "1":
            if self.stat not in (1, 5):
                return self._err(30)
            self._ok()
            self.app_pdp = True
            self.urc("+APP PDP: 0,ACTIVE")
        else:
            self._ok()
            self.app_pdp = False
            self.urc("+APP PDP: 0,DEACTIVE")

    def _c_cpowd(self, q, arg, raw):
        if arg != "1":
            return self._err(50)
        self._power_down()

    def _c_gsn(self, q, arg, raw):
        self._ok("869951030000017")

    def _dial(self, number):
        if number not in ("*99#", "*99***1#"):
            self.out += b"\r\nNO CARRIER\r\n"
            return
        if self.stat not in (1, 5) or 1 not in self.pdp or not self.net_ok:
            self.clock.advance(self.dial_ms)
            self.out += b"\r\nNO CARRIER\r\n"
            return
        self.clock.advance(self.dial_ms)
        self.pdn_up = True
        if self.cgerep:
            self.urc("+CGEV: ME PDN ACT 1")
        self.out += b"\r\nCONNECT 150000000\r\n"
        self.data = self.call = True


def _split(raw):
    """Split an AT argument list at commas outside quotes; unquote."""
    out = []
    cur = ""
    quoted = False
    for ch in raw:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def _bits8(s):
    return len(s) == 8 and all(ch in "01" for ch in s)


def decode_t3324(s):
    """3GPP 24.008 GPRS timer 2 bit string -> seconds (None: deactivated)."""
    unit = int(s[:3], 2)
    v = int(s[3:], 2)
    if unit == 7:
        return None
    return v * {0: 2, 1: 60, 2: 360}.get(unit, 60)


def decode_t3412(s):
    """3GPP 24.008 GPRS timer 3 (T3412 extended) bit string -> seconds."""
    unit = int(s[:3], 2)
    v = int(s[3:], 2)
    if unit == 7:
        return None
    return v * {0: 600, 1: 3600, 2: 36000, 3: 2, 4: 30, 5: 60, 6: 1152000}[unit]


class FakePPP:
    """network.PPP over the fake modem: connect() negotiates LCP/IPCP for
    ``ppp_ms`` while the modem is in data mode with a live PDN connection;
    isconnected() is False after the link died. ``on_up``/``on_down`` let
    a test tie a broker's reachability to the link."""

    SEC_NONE = 0
    SEC_PAP = 1
    SEC_CHAP = 2

    def __init__(self, stream):
        self.modem = stream.modem
        self.modem.ppp = self
        self.stream = stream
        self.state = "idle"
        self.up_at = None
        self.connects = 0
        self.on_up = None
        self.on_down = None
        self.auth = None

    def connect(self, security=0, user=None, key=None):
        m = self.modem
        self.stream.irq(self.poll, self.stream.IRQ_RXIDLE)
        self.auth = (security, user, key)
        self.connects += 1
        if not m.data or not m.pdn_up:
            self.state = "dead"  # LCP gets nothing back
            return
        self.state = "negotiating"
        self.up_at = m.clock.ticks_ms() + m.ppp_ms

    def poll(self, *a):
        return None

    def isconnected(self):
        m = self.modem
        m.step()
        if self.state == "negotiating" and m.clock.ticks_ms() >= self.up_at:
            if m.data and m.pdn_up:
                self.state = "up"
                if self.on_up:
                    self.on_up()
            else:
                self.state = "dead"
        return self.state == "up"

    def ipconfig(self, key):
        return "10.64.1.7" if self.state == "up" else "0.0.0.0"

    def link_lost(self):
        was = self.state == "up"
        self.state = "dead"
        if was and self.on_down:
            self.on_down()

    def disconnect(self):
        """LCP Terminate: the modem ends the call and says NO CARRIER."""
        m = self.modem
        self.stream.irq(None)
        if self.state in ("up", "negotiating") and m.data:
            m.data = m.call = False
            self.link_lost()
            m.pdn_up = m.net_ok
            m._idle_since = m.clock.ticks_ms()
            m.out += b"\r\nNO CARRIER\r\n"
        self.state = "idle"
