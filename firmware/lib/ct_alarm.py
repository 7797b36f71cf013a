"""Temperature alarms as cold-chain loggers do them: high/low, delay, single
and cumulative, ignore period, latched indicator.

Each side (high, low) raises an alarm when either

* single: the temperature stays beyond the threshold without a break for
  ``delay`` seconds (0 = at the first reading beyond it), or
* cumulative: the total time beyond the threshold since the start reaches
  ``cum`` seconds (0 = no cumulative alarm);

and ends when a reading is back inside the range. Readings in the first
``ignore`` seconds after ``start`` (loading, pre-cooling) count for neither.
Time beyond the threshold is counted between consecutive readings (the
interval ending at a reading beyond the threshold counts when the previous
reading was beyond it too); a faulted reading (None) stops the clock for its
interval and leaves the state alone.

Any alarm sets the latched bit, which only ``clear_latch()`` (operator
button or command) resets; the device shows it on its LED. ``update``
returns the events for status records (protocol event 7 start / 8 end, detail
= peak temperature in 0.01 °C: highest for a high alarm, lowest for a low).
State packs into 36 bytes for RTC memory.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

import struct

HIGH = const(1)
LOW = const(2)
LATCHED = const(4)
EV_START = const(7)
EV_END = const(8)

_FMT = "<iIIIIIiiB3x"  # 36 bytes
SIZE = const(36)
_NONE_T = const(-0x80000000)


class AlarmError(Exception):
    pass


class Side:
    """Running state of one side: beyond since, cumulative s, peak, active."""

    def __init__(self):
        self.since = None
        self.cum = 0
        self.peak = None
        self.active = False


class Alarm:
    def __init__(self, high, low, delay=0, cum=0, ignore=0, start=0):
        self.configure(high, low, delay, cum, ignore)
        self.start = start
        self.last_t = None
        self.last_temp = None
        self.bits = 0
        self.hi = Side()
        self.lo = Side()

    def configure(self, high, low, delay=0, cum=0, ignore=0):
        for v in (high, low, delay, cum, ignore):
            if not isinstance(v, int):
                raise AlarmError("integers only")
        if low >= high:
            raise AlarmError("low must be below high")
        if delay < 0 or cum < 0 or ignore < 0:
            raise AlarmError("negative time")
        self.high = high
        self.low = low
        self.delay = delay
        self.cum = cum
        self.ignore = ignore

    def _side(self, side, beyond, temp, t, dt, flag, events, is_high):
        if beyond:
            if side.since is None:
                side.since = t
            if dt:
                side.cum += dt
            if side.peak is None or (temp > side.peak if is_high else temp < side.peak):
                side.peak = temp
            if not side.active:
                single = t - side.since >= self.delay
                total = self.cum and side.cum >= self.cum
                if single or total:
                    side.active = True
                    self.bits |= flag | LATCHED
                    events.append((EV_START, flag, side.peak))
        else:
            side.since = None
            if side.active:
                side.active = False
                self.bits &= ~flag
                events.append((EV_END, flag, side.peak))
            side.peak = None

    def update(self, t, temp):
        """Feed one reading (Unix s, 0.01 °C or None). Returns a list of
        (event, side flag, peak) tuples, usually empty."""
        events = []
        prev_t = self.last_t
        prev = self.last_temp
        self.last_t = t
        self.last_temp = temp
        if temp is None or t - self.start < self.ignore:
            self.hi.since = self.lo.since = None
            self.last_temp = None
            return events
        dt_hi = dt_lo = 0
        if prev_t is not None and prev is not None and t > prev_t:
            if prev > self.high:
                dt_hi = t - prev_t
            if prev < self.low:
                dt_lo = t - prev_t
        self._side(self.hi, temp > self.high, temp, t, dt_hi if temp > self.high else 0,
                   HIGH, events, True)
        self._side(self.lo, temp < self.low, temp, t, dt_lo if temp < self.low else 0,
                   LOW, events, False)
        return events

    def pending(self, t):
        """Seconds until a pending single alarm would fire (so the device
        can wake for it), or None when nothing is pending."""
        best = None
        for side in (self.hi, self.lo):
            if side.since is not None and not side.active:
                left = side.since + self.delay - t
                if self.cum:
                    left = min(left, self.cum - side.cum)
                left = max(left, 0)
                if best is None or left < best:
                    best = left
        return best

    def excursion(self):
        """True while any reading beyond a threshold is open (alarm or not)."""
        return self.hi.since is not None or self.lo.since is not None

    def clear_latch(self):
        self.bits &= ~LATCHED

    def pack(self):
        def enc(v):
            return _NONE_T if v is None else v

        flags = self.bits | (8 if self.hi.active else 0) | (16 if self.lo.active else 0)
        return struct.pack(
            _FMT,
            enc(self.last_temp),
            0xFFFFFFFF if self.last_t is None else self.last_t,
            0xFFFFFFFF if self.hi.since is None else self.hi.since,
            0xFFFFFFFF if self.lo.since is None else self.lo.since,
            self.hi.cum,
            self.lo.cum,
            enc(self.hi.peak),
            enc(self.lo.peak),
            flags,
        )

    def unpack(self, b):
        """Restore what ``pack`` wrote (after deep sleep)."""
        if len(b) != SIZE:
            raise AlarmError("state size")
        lt, t, hs, ls, hc, lc, hp, lp, flags = struct.unpack(_FMT, b)

        def dec(v):
            return None if v == _NONE_T else v

        def dect(v):
            return None if v == 0xFFFFFFFF else v

        self.last_temp = dec(lt)
        self.last_t = dect(t)
        self.hi.since = dect(hs)
        self.lo.since = dect(ls)
        self.hi.cum = hc
        self.lo.cum = lc
        self.hi.peak = dec(hp)
        self.lo.peak = dec(lp)
        self.bits = flags & 7
        self.hi.active = bool(flags & 8)
        self.lo.active = bool(flags & 16)


def from_config(c, start=0):
    a = c.get("alarm", {})
    return Alarm(
        a.get("high", 800),
        a.get("low", 200),
        a.get("delay", 0),
        a.get("cum", 0),
        a.get("ignore", 0),
        start,
    )
