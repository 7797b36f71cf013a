"""Simulated milliseconds: the ct_ticks interface (ticks_ms, ticks_diff,
sleep_ms) where sleeping and socket timeouts advance time instantly."""


class FakeTicks:
    def __init__(self, start=0):
        self.now = start
        self.slept = 0

    def ticks_ms(self):
        return self.now

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.slept += ms
        self.now += int(ms)

    def advance(self, ms):
        self.now += int(ms)
