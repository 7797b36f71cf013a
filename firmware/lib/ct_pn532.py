"""NXP PN532 NFC controller over I2C or SPI (normal information frames).

PN532 User Manual (UM0701-02) §6.2: a host frame is

    00 00 FF LEN LCS TFI PD0 ... PDn DCS 00

with LEN = bytes in TFI..PDn, LCS = -LEN (mod 256), TFI = D4 (host -> PN532)
or D5 (PN532 -> host), DCS = -(TFI + sum PD) (mod 256). The chip answers a
command with an ACK frame (00 00 FF 00 FF 00), then, when ready, the
response frame whose first data byte is the command code + 1. An error frame
(LEN 1, TFI 7F) reports a syntax error. Extended frames (LEN = FF FF) are
refused: a frame here is at most 255 bytes of TFI+data.

Buses (§6.2.4/§6.2.5): I2C at address 0x24, every read starts with a status
byte (bit 0 = ready). SPI is LSB-first on the wire; this driver reverses the
bits itself so any MSB-first ``machine.SPI`` works (mode 0, <= 5 MHz), and
prefixes 01 (data write), 02 (status read) or 03 (data read).

Every wait has a deadline; a command that times out is aborted by sending an
ACK frame (§6.2.1.3).
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

import ct_ticks

I2C_ADDR = const(0x24)
_HOST = const(0xD4)
_CHIP = const(0xD5)
_ERR_TFI = const(0x7F)
_MAX_LEN = const(255)
_BUF = const(264)  # status + preamble(3) + LEN + LCS + 255 + DCS + post + slack
_ACK_TIMEOUT = const(50)
_POLL_MS = const(2)

CMD_GET_FIRMWARE = const(0x02)
CMD_SAM_CONFIG = const(0x14)
CMD_RF_CONFIG = const(0x32)
CMD_IN_DATA_EXCHANGE = const(0x40)
CMD_IN_LIST_PASSIVE = const(0x4A)
CMD_IN_RELEASE = const(0x52)

ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"


class PN532Error(Exception):
    pass


def build_frame(data):
    """Host frame around ``data`` (command code and parameters)."""
    n = len(data) + 1
    if n > _MAX_LEN:
        raise PN532Error("frame too long")
    f = bytearray(n + 7)
    f[2] = 0xFF
    f[3] = n
    f[4] = (-n) & 0xFF
    f[5] = _HOST
    s = _HOST
    for i in range(len(data)):
        f[6 + i] = data[i]
        s += data[i]
    f[6 + len(data)] = (-s) & 0xFF
    return f


def _start(buf, n):
    """Index of LEN after the 00 FF start code, skipping leading zeros."""
    i = 0
    while i < n and buf[i] == 0:
        i += 1
    if i == 0 or i >= n or buf[i] != 0xFF:
        raise PN532Error("no preamble")
    return i + 1


def is_ack(buf, n):
    i = _start(buf, n)
    return i + 2 <= n and buf[i] == 0 and buf[i + 1] == 0xFF


def parse_frame(buf, n):
    """Check a chip frame in buf[:n]; return (start, length) of its data
    after TFI (response code first). Raises PN532Error on any bad byte."""
    i = _start(buf, n)
    if i + 2 > n:
        raise PN532Error("short frame")
    ln = buf[i]
    lcs = buf[i + 1]
    if ln == 0 and lcs == 0xFF:
        raise PN532Error("unexpected ack")
    if ln == 0xFF and lcs == 0xFF:
        raise PN532Error("extended frame")
    if (ln + lcs) & 0xFF:
        raise PN532Error("bad LCS")
    if ln == 0 or i + 2 + ln + 2 > n:
        raise PN532Error("short frame")
    s = 0
    for k in range(i + 2, i + 3 + ln):
        s += buf[k]
    if s & 0xFF:
        raise PN532Error("bad DCS")
    if buf[i + 3 + ln] != 0:
        raise PN532Error("bad postamble")
    tfi = buf[i + 2]
    if tfi == _ERR_TFI:
        raise PN532Error("error frame")
    if tfi != _CHIP:
        raise PN532Error("bad TFI")
    return i + 3, ln - 1


class I2CBus:
    def __init__(self, i2c, addr=I2C_ADDR):
        self._i2c = i2c
        self._addr = addr
        self._st = bytearray(1)

    def write(self, frame):
        self._i2c.writeto(self._addr, frame)

    def ready(self):
        self._i2c.readfrom_into(self._addr, self._st)
        return self._st[0] & 1

    def read(self, buf, n):
        """Fill buf[:n] with a frame; returns n. (Status byte dropped.)"""
        mv = memoryview(buf)
        self._i2c.readfrom_into(self._addr, mv[: n + 1])
        # shift out the leading status byte
        for k in range(n):
            buf[k] = buf[k + 1]
        return n


_REV = bytearray(256)
for _i in range(256):
    _r = 0
    for _b in range(8):
        if _i & (1 << _b):
            _r |= 0x80 >> _b
    _REV[_i] = _r


def _reverse(buf, n):
    for k in range(n):
        buf[k] = _REV[buf[k]]


class SPIBus:
    """``spi`` is a machine.SPI (MSB first), ``cs`` a machine.Pin (active low)."""

    def __init__(self, spi, cs):
        self._spi = spi
        self._cs = cs
        self._one = bytearray(1)
        cs(1)

    def write(self, frame):
        out = bytearray(len(frame) + 1)
        out[0] = 0x01
        out[1:] = frame
        _reverse(out, len(out))
        self._cs(0)
        try:
            self._spi.write(out)
        finally:
            self._cs(1)

    def ready(self):
        self._cs(0)
        try:
            self._one[0] = _REV[0x02]
            self._spi.write(self._one)
            self._spi.readinto(self._one)
        finally:
            self._cs(1)
        return _REV[self._one[0]] & 1

    def read(self, buf, n):
        self._cs(0)
        try:
            self._one[0] = _REV[0x03]
            self._spi.write(self._one)
            mv = memoryview(buf)
            self._spi.readinto(mv[:n])
        finally:
            self._cs(1)
        _reverse(buf, n)
        return n


class Target:
    """One ISO 14443A target from InListPassiveTarget."""

    def __init__(self, tg, atqa, sak, uid, ats):
        self.tg = tg
        self.atqa = atqa
        self.sak = sak
        self.uid = uid
        self.ats = ats

    def iso_dep(self):
        """SAK bit 6 (0x20): the target speaks ISO 14443-4 (APDUs)."""
        return bool(self.sak & 0x20)


class PN532:
    def __init__(self, bus, ticks_ms=None, sleep_ms=None):
        self._bus = bus
        self._ticks = ticks_ms or ct_ticks.ticks_ms
        self._sleep = sleep_ms or ct_ticks.sleep_ms
        self._buf = bytearray(_BUF)

    def _wait_ready(self, timeout_ms):
        t0 = self._ticks()
        while not self._bus.ready():
            if ct_ticks.ticks_diff(self._ticks(), t0) >= timeout_ms:
                return False
            self._sleep(_POLL_MS)
        return True

    def call(self, cmd, params=b"", resp_len=32, timeout_ms=1000):
        """Send ``cmd``+``params``; return the response data after the
        response code (bytes). ``resp_len`` bounds the data expected."""
        frame = build_frame(bytes((cmd,)) + bytes(params))
        self._bus.write(frame)
        if not self._wait_ready(_ACK_TIMEOUT):
            raise PN532Error("no ack")
        n = self._bus.read(self._buf, 6)
        if bytes(self._buf[:6]) != ACK:
            raise PN532Error("bad ack")
        if not self._wait_ready(timeout_ms):
            self._bus.write(ACK)  # abort the command
            raise PN532Error("timeout")
        n = min(resp_len + 9, _BUF - 1)
        self._bus.read(self._buf, n)
        start, ln = parse_frame(self._buf, n)
        if ln < 0 or self._buf[start] != cmd + 1:
            raise PN532Error("bad response code")
        return bytes(self._buf[start + 1 : start + ln])

    def firmware_version(self):
        """(IC, Ver, Rev, Support); IC is 0x32 for a PN532."""
        r = self.call(CMD_GET_FIRMWARE, b"", 4, 100)
        if len(r) != 4:
            raise PN532Error("firmware version")
        return r[0], r[1], r[2], r[3]

    def sam_config(self):
        """Normal mode, no SAM, use the IRQ line (§7.2.10)."""
        self.call(CMD_SAM_CONFIG, b"\x01\x14\x01", 0, 100)

    def set_retries(self, passive=2):
        """RFConfiguration item 5: MxRtyATR, MxRtyPSL, MxRtyPassiveActivation,
        so InListPassiveTarget gives up instead of waiting for a tag forever."""
        self.call(CMD_RF_CONFIG, bytes((5, 0xFF, 0x01, passive)), 0, 100)

    def list_target(self, timeout_ms=500):
        """One ISO 14443A target at 106 kbps, or None when no tag answers."""
        r = self.call(CMD_IN_LIST_PASSIVE, b"\x01\x00", 64, timeout_ms)
        if not r or r[0] == 0:
            return None
        if len(r) < 6:
            raise PN532Error("short target data")
        tg = r[1]
        atqa = bytes(r[2:4])
        sak = r[4]
        ulen = r[5]
        if ulen not in (4, 7, 10) or len(r) < 6 + ulen:
            raise PN532Error("uid length")
        uid = bytes(r[6 : 6 + ulen])
        ats = b""
        if len(r) > 6 + ulen:
            tl = r[6 + ulen]
            ats = bytes(r[6 + ulen : 6 + ulen + tl])
            if len(ats) != tl:
                raise PN532Error("ats length")
        return Target(tg, atqa, sak, uid, ats)

    def exchange_status(self, tg, data, resp_len=140, timeout_ms=500):
        """InDataExchange (§7.3.8): send ``data`` to target ``tg``; return
        (status, answer). Status 0: the target answered; else the error
        code of §7.1 (0x01: the target did not answer in time)."""
        r = self.call(CMD_IN_DATA_EXCHANGE, bytes((tg,)) + bytes(data), resp_len + 1, timeout_ms)
        if not r:
            raise PN532Error("empty exchange")
        st = r[0] & 0x3F
        if not st and r[0] & 0x40:
            raise PN532Error("chaining (MI) not supported")
        return st, r[1:]

    def exchange(self, tg, data, resp_len=140, timeout_ms=500):
        """InDataExchange: send one APDU to target ``tg``, return the answer."""
        st, r = self.exchange_status(tg, data, resp_len, timeout_ms)
        if st:
            raise PN532Error("target status 0x%02x" % st)
        return r

    def release(self, tg=0):
        self.call(CMD_IN_RELEASE, bytes((tg,)), 1, 100)
