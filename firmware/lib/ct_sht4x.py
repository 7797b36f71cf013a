"""Sensirion SHT4x (SHT40/41/43/45) over I2C, integers only.

Datasheet SHT4x v6.x: measure T & RH with high precision = command 0xFD,
result after max 8.3 ms as 6 bytes (T msb, T lsb, CRC, RH msb, RH lsb, CRC);
CRC-8 polynomial 0x31, init 0xFF, no reflection, per 16-bit word
(CRC(0xBEEF) = 0x92). Serial number = command 0x89, two CRC'd words. Soft
reset = 0x94.

    T  [°C]  = -45 + 175 * S_T  / 65535
    RH [%RH] =  -6 + 125 * S_RH / 65535   (clipped to 0 ... 100)

computed here straight in 0.01 units with integer rounding, no floats.
Faults carry the protocol codes: 1 no answer, 2 CRC, 5 out of range, 6 bus,
7 not ready in time.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

import ct_ticks

ADDR = const(0x44)
_MEASURE_HIGH = const(0xFD)
_READ_SERIAL = const(0x89)
_SOFT_RESET = const(0x94)
_MEASURE_MS = const(10)  # 8.3 ms max for high precision
_SHORT_MS = const(2)
_ENODEV = const(19)
_EIO = const(5)
_ETIMEDOUT = const(110)
_T_MIN = const(-4000)  # specified range -40 ... +125 °C
_T_MAX = const(12500)

NO_SENSOR = const(1)
CRC = const(2)
RANGE = const(5)
BUS = const(6)
TIMEOUT = const(7)


class SHT4xError(Exception):
    """args[0] is the protocol fault code."""


def crc8(data, start=0, end=None):
    """Sensirion CRC-8: poly 0x31, init 0xFF, MSB first."""
    crc = 0xFF
    if end is None:
        end = len(data)
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            if crc & 0x80:
                crc = ((crc << 1) ^ 0x31) & 0xFF
            else:
                crc = (crc << 1) & 0xFF
    return crc


def _div_round(n, d):
    """n / d rounded half away from zero (d > 0)."""
    if n >= 0:
        return (n + d // 2) // d
    return -((-n + d // 2) // d)


def ticks_to_centi_c(st):
    return -4500 + _div_round(17500 * st, 65535)


def ticks_to_centi_rh(srh):
    rh = -600 + _div_round(12500 * srh, 65535)
    if rh < 0:
        return 0
    if rh > 10000:
        return 10000
    return rh


def parse(buf):
    """6 measurement bytes -> (temp 0.01 °C, rh 0.01 %RH); raises SHT4xError."""
    if crc8(buf, 0, 2) != buf[2] or crc8(buf, 3, 5) != buf[5]:
        raise SHT4xError(CRC, "crc")
    t = ticks_to_centi_c((buf[0] << 8) | buf[1])
    if t < _T_MIN or t > _T_MAX:
        raise SHT4xError(RANGE, "out of range")
    return t, ticks_to_centi_rh((buf[3] << 8) | buf[4])


class SHT4x:
    def __init__(self, i2c, addr=ADDR, sleep_ms=None):
        self._i2c = i2c
        self.addr = addr
        self._sleep = sleep_ms or ct_ticks.sleep_ms
        self._cmd = bytearray(1)
        self._buf = bytearray(6)

    def _write(self, cmd):
        self._cmd[0] = cmd
        try:
            self._i2c.writeto(self.addr, self._cmd)
        except OSError as e:
            if e.args and e.args[0] == _ENODEV:
                raise SHT4xError(NO_SENSOR, "no ack")
            raise SHT4xError(BUS, "bus error")

    def _read(self, wait_ms):
        # a NACK on the read header means "not ready yet": one retry
        for attempt in range(2):
            self._sleep(wait_ms)
            try:
                self._i2c.readfrom_into(self.addr, self._buf)
                return self._buf
            except OSError as e:
                if not e.args or e.args[0] not in (_ENODEV, _EIO, _ETIMEDOUT):
                    raise SHT4xError(BUS, "bus error")
        raise SHT4xError(TIMEOUT, "not ready")

    def measure(self):
        """(temp in 0.01 °C, rh in 0.01 %RH), high precision."""
        self._write(_MEASURE_HIGH)
        return parse(self._read(_MEASURE_MS))

    def serial(self):
        """The 32-bit serial number."""
        self._write(_READ_SERIAL)
        b = self._read(_SHORT_MS)
        if crc8(b, 0, 2) != b[2] or crc8(b, 3, 5) != b[5]:
            raise SHT4xError(CRC, "crc")
        return (b[0] << 24) | (b[1] << 16) | (b[3] << 8) | b[4]

    def reset(self):
        self._write(_SOFT_RESET)
        self._sleep(_SHORT_MS)
