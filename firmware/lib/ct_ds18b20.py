"""DS18B20 1-Wire temperature probe: raw scratchpad read with our own checks.

Works on top of MicroPython's ``onewire.OneWire`` (reset, writebyte, write,
readinto, select_rom, readbit, scan); any object with those methods will do,
which is how the tests inject recorded scratchpads.

A measurement never yields a made-up temperature. Every way a DS18B20 can lie
is mapped to a fault code of docs/protocol.md §2.2:

* no presence pulse, or an all-0xFF scratchpad (bus idle high) -> 1 no sensor
* CRC-8 (Dallas/Maxim, x^8+x^5+x^4+1) mismatch             -> 2 CRC
* raw 0x0550 = 85.00 °C, the power-on value (it passes the CRC) -> 3
* all-zero scratchpad (its CRC is 0, so it passes too)       -> 4
* value outside -55 ... +125 °C                             -> 5 out of range
* the bus driver raised OSError                              -> 6 bus error
* conversion not finished after 750 ms + grace               -> 7 timeout
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

import ct_ticks

_CONVERT_T = const(0x44)
_READ_SCRATCH = const(0xBE)
_SKIP_ROM = const(0xCC)
_FAMILY = const(0x28)
_CONV_MS = const(750)  # 12-bit conversion, datasheet tCONV max
_GRACE_MS = const(250)
_POLL_MS = const(10)
_POWER_ON_RAW = const(0x0550)
_MIN_RAW = const(-55 * 16)
_MAX_RAW = const(125 * 16)

NO_SENSOR = const(1)
CRC = const(2)
POWER_ON = const(3)
ALL_ZERO = const(4)
RANGE = const(5)
BUS = const(6)
TIMEOUT = const(7)


class DS18B20Error(Exception):
    """args[0] is the protocol fault code (1 ... 7)."""


def crc8(data):
    """Dallas/Maxim CRC-8 (reflected poly 0x8C, init 0). 0 over data+crc."""
    crc = 0
    for b in data:
        for _ in range(8):
            mix = (crc ^ b) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            b >>= 1
    return crc


def raw_to_centi(raw):
    """1/16 °C two's complement -> 0.01 °C, rounded half away from zero."""
    n = raw * 25  # raw * 100 / 16 = raw * 25 / 4
    if n >= 0:
        return (n + 2) // 4
    return -((-n + 2) // 4)


def check_scratchpad(sp):
    """Return the temperature in 0.01 °C of a 9-byte scratchpad, or raise."""
    if len(sp) != 9:
        raise DS18B20Error(BUS, "scratchpad length")
    ones = 0
    zeros = 0
    for b in sp:
        if b == 0xFF:
            ones += 1
        elif b == 0:
            zeros += 1
    if ones == 9:
        raise DS18B20Error(NO_SENSOR, "bus idle high")
    if zeros == 9:
        raise DS18B20Error(ALL_ZERO, "all-zero scratchpad")
    if crc8(sp) != 0:
        raise DS18B20Error(CRC, "crc")
    raw = sp[0] | (sp[1] << 8)
    if raw & 0x8000:
        raw -= 0x10000
    if raw == _POWER_ON_RAW:
        raise DS18B20Error(POWER_ON, "85 C power-on value")
    # resolution bits R1:R0 = config bits 6:5; lower resolutions leave
    # the low bits undefined
    res = (sp[4] >> 5) & 3
    raw &= ~((1 << (3 - res)) - 1)
    if raw < _MIN_RAW or raw > _MAX_RAW:
        raise DS18B20Error(RANGE, "out of range")
    return raw_to_centi(raw)


def check_rom(rom):
    """A ROM code is 8 bytes, family 0x28, CRC-8 over all 8 bytes is 0."""
    return len(rom) == 8 and rom[0] == _FAMILY and crc8(rom) == 0


class DS18B20:
    """One probe on a 1-Wire bus. ``rom`` None means the only device (SKIP ROM).

    Use ``start()`` then, >= 750 ms later, ``read()``; or ``measure()`` which
    sleeps in between. ``ticks``/``sleep_ms`` are injectable for tests.
    """

    def __init__(self, ow, rom=None, ticks_ms=None, sleep_ms=None, powered=True):
        self._ow = ow
        self.rom = rom
        self._ticks = ticks_ms or ct_ticks.ticks_ms
        self._sleep = sleep_ms or ct_ticks.sleep_ms
        self._powered = powered
        self._t0 = None
        self._sp = bytearray(9)

    def _address(self):
        if not self._ow.reset():
            raise DS18B20Error(NO_SENSOR, "no presence pulse")
        if self.rom is None:
            self._ow.writebyte(_SKIP_ROM)
        else:
            self._ow.select_rom(self.rom)

    def start(self):
        """Issue Convert T. Raises DS18B20Error (1 or 6)."""
        try:
            self._address()
            self._ow.writebyte(_CONVERT_T)
        except OSError:
            raise DS18B20Error(BUS, "bus error")
        self._t0 = self._ticks()

    def read(self):
        """Wait out the conversion, read and check the scratchpad (0.01 °C)."""
        if self._t0 is None:
            raise DS18B20Error(TIMEOUT, "no conversion started")
        t0 = self._t0
        self._t0 = None
        left = _CONV_MS - ct_ticks.ticks_diff(self._ticks(), t0)
        if left > 0:
            self._sleep(left)
        try:
            if self._powered:
                # an externally powered DS18B20 answers 1 once it is done
                waited = 0
                while not self._ow.readbit():
                    if waited >= _GRACE_MS:
                        raise DS18B20Error(TIMEOUT, "conversion timeout")
                    self._sleep(_POLL_MS)
                    waited += _POLL_MS
            self._address()
            self._ow.writebyte(_READ_SCRATCH)
            self._ow.readinto(self._sp)
        except OSError:
            raise DS18B20Error(BUS, "bus error")
        return check_scratchpad(self._sp)

    def measure(self):
        self.start()
        return self.read()


def scan(ow):
    """ROM codes of the DS18B20s on the bus whose ROM CRC is valid."""
    return [bytes(r) for r in ow.scan() if check_rom(r)]
