"""A fake ESP32 board (RTC, RTC memory, ADC, LED, watchdog, deep sleep) and a
fake record core (unsigned records, a bounded queue, a scripted gateway) for
testing ct_app without the crypto or the network. The simulator uses the
board with the real core instead."""


class FakeRTC:
    def __init__(self):
        self._mem = b""

    def memory(self, data=None):
        if data is None:
            return self._mem
        if len(data) > 2048:
            raise ValueError("RTC memory is 2 KiB")
        self._mem = bytes(data)


DEEPSLEEP_RESET = 4
PWRON_RESET = 1


class FakeBoard:
    """Time is simulated: ``t`` is the RTC in the port's epoch (seconds)."""

    DEEPSLEEP = DEEPSLEEP_RESET

    def __init__(self, t=0, offset=0, batt=3900):
        self.t = t
        self.offset = offset
        self.rtc = FakeRTC()
        self.batt = batt
        self.cause = PWRON_RESET
        self.fed = 0
        self.led_v = 0
        self.slept = []
        self.boot_t = t
        self.elapsed = 0  # simulated seconds since the start, whatever the RTC says

    def now(self):
        return self.t

    def button_wake(self):
        b, self.button = getattr(self, "button", False), False
        return b

    def set_time(self, unix):
        self.t = unix - self.offset

    def feed(self):
        self.fed += 1

    def batt_mv(self):
        return self.batt

    def reset_cause(self):
        return self.cause

    def uptime(self):
        return self.t - self.boot_t

    def led(self, v):
        self.led_v = v

    def deep_sleep(self, ms):
        self.slept.append(ms)
        self.t += ms // 1000
        self.elapsed += ms // 1000
        self.cause = DEEPSLEEP_RESET

    def power_cycle(self):
        self.rtc = FakeRTC()
        self.t = 0
        self.boot_t = 0
        self.cause = PWRON_RESET


class FakeCore:
    """Keeps records as field dicts; ``seq`` counts like the real core, and
    fields are checked like the real core does (ct_record.RecordError).

    ``upload`` answers like ct_uplink: when it delivered something, an ack
    and, if ``gateway_time`` is set, ("time", gateway time) (a fresh ack);
    with nothing to deliver, only the retained ack, which gives no time."""

    def __init__(self, capacity=1000, record_size=120):
        self.records = []
        self.queue = []
        self.capacity = capacity
        self.size = record_size
        self.online = True
        self.gateway_time = None
        self.commands = []
        self.delivered = []
        self.uploads = 0

    def record(self, fields):
        import ct_record

        f = dict(fields)
        f[3] = len(self.records)
        full = dict(f)
        full.setdefault(2, 1)
        full.setdefault(6, bytes(16))
        ct_record.check_fields(full)
        self.records.append(f)
        return f

    def enqueue(self, rec):
        if len(self.queue) >= self.capacity:
            return False
        self.queue.append(rec)
        return True

    def queued(self):
        return len(self.queue), (self.capacity - len(self.queue)) * self.size

    def close(self):
        self.closed = True

    def upload(self, timeout_ms, want_time=False, now=None, on_time=None, sync=None, ahead=None):
        self.uploads += 1
        if not self.online:
            raise OSError(113)
        out = []
        gt = self.gateway_time() if callable(self.gateway_time) else self.gateway_time
        if self.queue:
            self.delivered.extend(self.queue)
            out.append(("ack", self.queue[-1][3], gt))
            if gt:
                out.append(("time", gt))
            self.queue = []
        elif self.delivered:
            out.append(("ack", self.delivered[-1][3], None))  # the retained one
        for c in self.commands:
            out.append(("cmd", c))
        self.commands = []
        return out
