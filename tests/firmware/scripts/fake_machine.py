"""A ``machine`` module look-alike for ct_board tests (install it with
sys.modules["machine"] = fake_machine before importing ct_board)."""

DEEPSLEEP_RESET = 4
PWRON_RESET = 1
log = []
state = {"cause": PWRON_RESET, "time": None, "uv": 1950000, "slept": None}


class Pin:
    OUT = 1
    IN = 0
    PULL_UP = 2
    levels = {}  # noqa: RUF012 - shared pin levels, like the hardware

    def __init__(self, n, mode=0, pull=None, value=None):
        self.n = n
        if value is not None:
            Pin.levels[n] = value
        log.append(("pin", n, mode, value))

    def __call__(self, v=None):
        if v is None:
            return Pin.levels.get(self.n, 1)
        Pin.levels[self.n] = v
        log.append(("set", self.n, v))

    def value(self, v=None):
        return self(v)


class RTC:
    mem = b""

    def memory(self, data=None):
        if data is None:
            return RTC.mem
        RTC.mem = bytes(data)

    def datetime(self, t=None):
        state["time"] = t


class WDT:
    def __init__(self, timeout=5000):
        log.append(("wdt", timeout))

    def feed(self):
        log.append(("feed",))


class ADC:
    ATTN_11DB = 3

    def __init__(self, pin):
        self.pin = pin

    def atten(self, a):
        log.append(("atten", a))

    def read_uv(self):
        return state["uv"]


class I2C:
    bus = None

    def __init__(self, n, sda=None, scl=None, freq=100000, timeout=50000):
        log.append(("i2c", n, sda.n, scl.n, freq))

    def writeto(self, addr, buf):
        return I2C.bus.writeto(addr, buf)

    def readfrom_into(self, addr, buf):
        return I2C.bus.readfrom_into(addr, buf)


class SPI:
    def __init__(self, n, **kw):
        log.append(("spi", n, kw["sck"].n, kw["mosi"].n, kw["miso"].n))


EXT0_WAKE = 2


def wake_reason():
    return state.get("wake", 0)


def reset_cause():
    return state["cause"]


def deepsleep(ms):
    state["slept"] = ms


def lightsleep(ms):
    log.append(("lightsleep", ms))


def reset():
    raise SystemExit("reset")
