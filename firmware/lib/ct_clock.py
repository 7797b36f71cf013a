"""Record time and its quality flag (docs/protocol.md §2.1 fields 4 and 5).

tq 0: the clock was never set since power-on; ``time`` then counts seconds
      from when the RTC started (boot), not Unix time.
tq 1: holdover - set once, but no sync for more than 24 h.
tq 2: synced by NTP within 24 h.     tq 3: synced by the gateway within 24 h.

The RTC keeps running through deep sleep, so the sync state lives in RTC
memory (see ct_app) and is lost with power, like the time itself.
MicroPython on ESP32 counts from 2000-01-01; ``epoch_offset`` turns that
into Unix seconds (946684800), 0 on ports whose epoch is 1970.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

import struct

UNSET = const(0)
HOLDOVER = const(1)
NTP = const(2)
GATEWAY = const(3)
_DAY = const(86400)
_MIN_UNIX = const(1700000000)  # a clock set before 2023-11 is not a clock set
_STEP = const(2)  # a correction above this many seconds is a "clock set"


class ClockError(Exception):
    pass


def epoch_offset(gmtime):
    """946684800 when the port's epoch is 2000, else 0."""
    return 946684800 if gmtime(0)[0] == 2000 else 0


class Clock:
    """``rtc_now()`` -> seconds in the port's epoch; ``rtc_set(unix)`` sets
    the RTC from Unix seconds. State: (src, last_sync) as set by sync()."""

    def __init__(self, rtc_now, rtc_set, offset=0):
        self._now = rtc_now
        self._set = rtc_set
        self._off = offset
        self.src = UNSET
        self.last = 0

    def raw(self):
        return int(self._now())

    def now(self):
        """(time field, tq field) for a record made now."""
        t = self.raw()
        if self.src == UNSET:
            return t, UNSET
        t += self._off
        if t - self.last > _DAY:
            return t, HOLDOVER
        return t, self.src

    def sync(self, unix, src):
        """Set the clock from a trusted source. Returns the old time when the
        change is a real step (for a 'clock set' status record), else None."""
        if src not in (NTP, GATEWAY):
            raise ClockError("source")
        if not isinstance(unix, int) or unix < _MIN_UNIX or unix >= 1 << 32:
            raise ClockError("implausible time")
        old, oldq = self.now()
        step = oldq == UNSET or abs(old - unix) > _STEP
        if step:
            self._set(unix)
        self.src = src
        self.last = unix
        return old if step else None

    def pack(self):
        return struct.pack("<BI", self.src, self.last)

    def unpack(self, b):
        if b and len(b) == 5:
            self.src, self.last = struct.unpack("<BI", b)
