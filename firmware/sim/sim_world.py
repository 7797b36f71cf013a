"""The simulated world around a device: a cold-room temperature curve with
door openings and one excursion, and humidity. Integers only (0.01 units),
deterministic for a seed, so a demo run can be replayed. Runs under
MicroPython too."""


class Lcg:
    """A tiny deterministic PRNG (Numerical Recipes LCG)."""

    def __init__(self, seed):
        self.s = seed & 0xFFFFFFFF

    def next(self):
        self.s = (1664525 * self.s + 1013904223) & 0xFFFFFFFF
        return self.s

    def randint(self, lo, hi):
        return lo + self.next() % (hi - lo + 1)


def _tri(t, period, amp):
    """Triangle wave in [-amp, amp] (compressor cycling), integer math."""
    ph = t % period
    half = period // 2
    if ph < half:
        return -amp + 2 * amp * ph // half
    return amp - 2 * amp * (ph - half) // (period - half)


class ColdRoom:
    """Temperature (0.01 °C) at time t (s since start): set point with the
    compressor's saw-tooth, short door openings, and one excursion from
    ``exc_start`` for ``exc_len`` seconds up to ``exc_peak``."""

    def __init__(self, seed=1, setpoint=400, exc_start=3 * 3600, exc_len=2700,
                 exc_peak=1150, door_every=5400):
        self.rng = Lcg(seed)
        self.setpoint = setpoint
        self.exc_start = exc_start
        self.exc_len = exc_len
        self.exc_peak = exc_peak
        self.door_every = door_every
        self.phase = self.rng.randint(0, 1800)

    def temp(self, t):
        v = self.setpoint + _tri(t + self.phase, 1800, 60)
        # door openings: +1.5 °C for ~4 minutes every door_every seconds
        d = (t + self.phase) % self.door_every
        if d < 240:
            v += 150 * (240 - abs(120 - d) * 2) // 240
        e = t - self.exc_start
        if 0 <= e < self.exc_len:
            ramp = min(e, self.exc_len - e, 900)
            v += (self.exc_peak - self.setpoint) * ramp // 900
        return v + self.rng.randint(-8, 8)

    def rh(self, t):
        return 8500 + _tri(t + self.phase, 3600, 300) + self.rng.randint(-50, 50)
