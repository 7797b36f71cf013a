"""Fake 1-Wire bus with DS18B20s and a fake SHT4x I2C bus, for tests and the
simulator. They speak the same bytes as the chips: scratchpads with their
Dallas CRC, SHT4x words with the Sensirion CRC. Runs under MicroPython too.
"""


def dallas_crc(data):
    r = 0
    for byte in data:
        for i in range(8):
            fb = (r ^ (byte >> i)) & 1
            r >>= 1
            if fb:
                r ^= 0x8C
    return r


def scratchpad(raw, cfg=0x7F):
    """A DS18B20 scratchpad holding ``raw`` (1/16 °C), CRC filled in."""
    raw &= 0xFFFF
    b = bytearray((raw & 0xFF, raw >> 8, 0x4B, 0x46, cfg, 0xFF, 0x0C, 0x10, 0))
    b[8] = dallas_crc(b[:8])
    return b


def centi_to_raw(t):
    """0.01 °C -> nearest 1/16 °C step."""
    n = t * 16
    return (n + 50) // 100 if n >= 0 else -((-n + 50) // 100)


class FakeDS18B20:
    def __init__(self, rom, temp=None, sp=None):
        self.rom = bytes(rom)
        self.temp = temp  # 0.01 °C, converted at Convert T
        self.sp = bytearray(sp) if sp is not None else scratchpad(0x0550)
        self.converting = False
        self.busy_polls = 0  # readbit answers 0 this many times


class FakeOneWire:
    """Models onewire.OneWire: reset/writebyte/write/readinto/readbit/
    select_rom/scan. ``present`` False = nobody answers the reset."""

    def __init__(self, devices=(), present=True, fail=False):
        self.devices = list(devices)
        self.present = present
        self.fail = fail  # raise OSError on every transfer
        self.log = []
        self._sel = None
        self._cmd_next = True
        self._last = None

    def _check(self):
        if self.fail:
            raise OSError(5)

    def reset(self, required=False):
        self._check()
        self._sel = None
        self._cmd_next = True
        self.log.append("reset")
        return self.present and bool(self.devices)

    def select_rom(self, rom):
        self._check()
        self.log.append("match")
        self._sel = [d for d in self.devices if d.rom == bytes(rom)]

    def writebyte(self, b):
        self._check()
        self.log.append(f"w {b:02x}")
        targets = self._sel if self._sel is not None else self.devices
        if b == 0xCC:
            self._sel = list(self.devices)
            return
        if b == 0x44:
            for d in targets:
                d.converting = True
                if d.temp is not None:
                    d.sp[:] = scratchpad(centi_to_raw(d.temp), d.sp[4])
        self._last = b

    def write(self, buf):
        for b in buf:
            self.writebyte(b)

    def readbit(self):
        self._check()
        targets = self._sel if self._sel is not None else self.devices
        for d in targets:
            if d.busy_polls:
                d.busy_polls -= 1
                return 0
        return 1

    def readinto(self, buf):
        self._check()
        targets = self._sel if self._sel is not None else self.devices
        if self._last == 0xBE and targets:
            sp = targets[0].sp
            for i in range(len(buf)):
                buf[i] = sp[i] if i < len(sp) else 0xFF
        else:
            for i in range(len(buf)):
                buf[i] = 0xFF

    def scan(self):
        return [bytearray(d.rom) for d in self.devices]


def sensirion_crc(data):
    c = 0xFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = ((c << 1) ^ 0x31) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


def sht_words(w1, w2):
    a = bytes((w1 >> 8, w1 & 0xFF))
    b = bytes((w2 >> 8, w2 & 0xFF))
    return a + bytes((sensirion_crc(a),)) + b + bytes((sensirion_crc(b),))


def centi_to_sht(t, rh):
    """0.01 °C / 0.01 %RH -> the 16-bit raw words the sensor would send."""
    st = ((t + 4500) * 65535 + 8750) // 17500
    srh = ((rh + 600) * 65535 + 6250) // 12500
    return max(0, min(65535, st)), max(0, min(65535, srh))


class FakeSHT4xBus:
    """An I2C bus (writeto/readfrom_into) with one SHT4x at ``addr``.
    ``reply`` overrides the next measurement's 6 bytes (recorded frames);
    ``temp``/``rh`` in 0.01 units otherwise."""

    def __init__(self, addr=0x44, temp=2000, rh=5000, serial=0x12345678):
        self.addr = addr
        self.temp = temp
        self.rh = rh
        self.serial = serial
        self.present = True
        self.reply = None
        self.nack_reads = 0
        self.bus_error = False
        self.log = []
        self._out = None

    def _addr_ok(self, addr):
        if self.bus_error:
            raise OSError(5)
        if addr != self.addr or not self.present:
            raise OSError(19)  # ENODEV: no ACK

    def writeto(self, addr, buf):
        self._addr_ok(addr)
        cmd = buf[0]
        self.log.append(cmd)
        if cmd == 0xFD:
            if self.reply is not None:
                self._out = bytes(self.reply)
                self.reply = None
            else:
                self._out = sht_words(*centi_to_sht(self.temp, self.rh))
        elif cmd == 0x89:
            self._out = sht_words(self.serial >> 16, self.serial & 0xFFFF)
        elif cmd == 0x94:
            self._out = None
        return len(buf)

    def readfrom_into(self, addr, buf):
        self._addr_ok(addr)
        if self.nack_reads:
            self.nack_reads -= 1
            raise OSError(19)
        if self._out is None:
            raise OSError(19)
        for i in range(len(buf)):
            buf[i] = self._out[i]
        self._out = None
