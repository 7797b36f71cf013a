"""Operator feedback: a debounced button and non-blocking LED patterns.

Both are polled with the current tick (ms) so the main loop stays in charge
and nothing blocks. The button is active low (to GND, pull-up on).
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_DEBOUNCE_MS = const(30)
_LONG_MS = const(1500)

SHORT = const(1)
LONG = const(2)

# (on ms, off ms) steps; a pattern plays once
OK = ((600, 0),)
ERROR = ((100, 100), (100, 100), (100, 300))
ALARM = ((50, 150), (50, 0))


class UIError(Exception):
    pass


class Button:
    """``pin()`` returns 0 while pressed. ``poll(now)`` -> SHORT, LONG or None:
    a press is reported on release, after the level was stable 30 ms."""

    def __init__(self, pin, debounce_ms=_DEBOUNCE_MS, long_ms=_LONG_MS):
        self._pin = pin
        self._db = debounce_ms
        self._long = long_ms
        self._raw = 1
        self._raw_since = None
        self._state = 1
        self._down_at = None

    def poll(self, now):
        v = 1 if self._pin() else 0
        if v != self._raw:
            self._raw = v
            self._raw_since = now
            return None
        if v == self._state or self._raw_since is None or now - self._raw_since < self._db:
            return None
        self._state = v
        if v == 0:
            self._down_at = self._raw_since
            return None
        if self._down_at is None:
            return None
        held = self._raw_since - self._down_at
        self._down_at = None
        return LONG if held >= self._long else SHORT


class Led:
    """``pin(v)`` drives the LED. ``play(pattern, now)`` then ``poll(now)``."""

    def __init__(self, pin):
        self._pin = pin
        self._steps = None
        self._i = 0
        self._on = False
        self._until = 0
        pin(0)

    def play(self, steps, now):
        self._steps = steps
        self._i = 0
        self._start(now)

    def _start(self, now):
        on_ms, _ = self._steps[self._i]
        self._on = True
        self._pin(1)
        self._until = now + on_ms

    def busy(self):
        return self._steps is not None

    def poll(self, now):
        if self._steps is None or now < self._until:
            return
        if self._on:
            _, off_ms = self._steps[self._i]
            self._on = False
            self._pin(0)
            self._until = now + off_ms
            return
        self._i += 1
        if self._i >= len(self._steps):
            self._steps = None
            return
        self._start(now)


def count_pattern(n):
    """n short blinks: shows the selected action number."""
    return tuple((150, 250) for _ in range(n))
