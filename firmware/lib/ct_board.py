"""The ESP32 side of ct_app/ct_reader: machine.* wrapped as the ``hw``
object, sensor channels and NFC reader built from config.json + ct_pins.

Only this module, ct_net and main.py touch ``machine``/``network``; the
simulator and the tests replace them with fakes (a ``machine`` module on
sys.path is enough for this file).
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

import time

import machine

import ct_cal
import ct_clock
import ct_pins
import ct_ticks

_ADC_SAMPLES = const(8)
_PWR_SETTLE_MS = const(10)


class BoardError(Exception):
    pass


class Board:
    DEEPSLEEP = getattr(machine, "DEEPSLEEP_RESET", 4)

    def __init__(self, cfg):
        self.cfg = cfg
        self.pins = ct_pins.of(cfg)
        self.rtc = machine.RTC()
        self.offset = ct_clock.epoch_offset(time.gmtime)
        self.wdt = machine.WDT(timeout=cfg.get("wdt_ms", 60000))
        b = cfg.get("batt", {})
        self._num = b.get("num", 2)
        self._den = b.get("den", 1)
        self._adc = None
        if "batt_adc" in self.pins:
            self._adc = machine.ADC(machine.Pin(self.pins["batt_adc"]))
            self._adc.atten(machine.ADC.ATTN_11DB)
        led = self.pins.get("led", self.pins.get("led_err"))
        self._led = machine.Pin(led, machine.Pin.OUT, value=0) if led is not None else None
        self._t0 = ct_ticks.ticks_ms()

    def now(self):
        return time.time()

    def set_time(self, unix):
        t = time.gmtime(unix - self.offset)
        # RTC.datetime: (year, month, day, weekday, hours, minutes, seconds, subseconds)
        self.rtc.datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))

    def feed(self):
        self.wdt.feed()

    def batt_mv(self):
        if self._adc is None:
            return 0
        uv = 0
        for _ in range(_ADC_SAMPLES):
            uv += self._adc.read_uv()
        mv = uv // _ADC_SAMPLES * self._num // self._den // 1000
        return max(0, min(20000, mv))

    def reset_cause(self):
        return machine.reset_cause()

    def uptime(self):
        return ct_ticks.ticks_diff(ct_ticks.ticks_ms(), self._t0) // 1000

    def led(self, v):
        # deep sleep lets the pin go: a latched alarm is a blink per wake
        if self._led is not None and v:
            self._led(1)
            ct_ticks.sleep_ms(50)
            self._led(0)

    def light_sleep(self, ms):
        self.feed()
        machine.lightsleep(ms)

    def button_wake(self):
        """The operator pressed the button (it woke the board from deep sleep)."""
        return machine.wake_reason() == getattr(machine, "EXT0_WAKE", 2)

    def deep_sleep(self, ms):
        b = self.pins.get("button")
        if b is not None:
            try:
                import esp32

                esp32.wake_on_ext0(machine.Pin(b, machine.Pin.IN, machine.Pin.PULL_UP),
                                   esp32.WAKEUP_ALL_LOW)
            except (ImportError, AttributeError, ValueError, OSError):
                pass
        machine.deepsleep(ms)


def channels(cfg, board, settings=None):
    """[(ch, cal id or None, measure)] for ct_app.Logger, from cfg["sensors"];
    a calibration the gateway sent (settings["cal"]) replaces the configured one."""
    pins = board.pins
    out = []
    i2c = None
    ow = None
    pwr = None
    if "sensor_pwr" in pins:
        pwr = machine.Pin(pins["sensor_pwr"], machine.Pin.OUT, value=0)
    for s in cfg.get("sensors", []):
        ch = s.get("ch", 0)
        cid, tcal, rhcal = ct_cal.from_config(ct_cal.pick(s.get("cal"), settings, ch))
        kind = s.get("type")
        if kind == "ds18b20":
            import onewire
            import ct_ds18b20

            if ow is None:
                ow = onewire.OneWire(machine.Pin(pins["ow"]))
            rom = s.get("rom")
            rom = bytes.fromhex(rom) if rom else None
            drv = ct_ds18b20.DS18B20(ow, rom, sleep_ms=board.light_sleep)
            out.append((ch, cid, _measure_ds(drv, tcal, pwr)))
        elif kind == "sht4x":
            import ct_sht4x

            if i2c is None:
                i2c = machine.I2C(0, sda=machine.Pin(pins["i2c_sda"]),
                                  scl=machine.Pin(pins["i2c_scl"]), freq=100000, timeout=50000)
            drv = ct_sht4x.SHT4x(i2c, s.get("addr", ct_sht4x.ADDR))
            out.append((ch, cid, _measure_sht(drv, tcal, rhcal)))
        else:
            raise BoardError("unknown sensor type %s" % kind)
    return out


def _measure_ds(drv, tcal, pwr):
    def measure():
        if pwr is not None:
            pwr(1)
            ct_ticks.sleep_ms(_PWR_SETTLE_MS)
        try:
            t = drv.measure()
        finally:
            if pwr is not None:
                pwr(0)
        return (tcal.apply(t) if tcal else t), None

    return measure


def _measure_sht(drv, tcal, rhcal):
    def measure():
        t, rh = drv.measure()
        if tcal:
            t = tcal.apply(t)
        if rhcal:
            rh = max(0, min(10000, rhcal.apply(rh)))
        return t, rh

    return measure


def nfc_reader(cfg, board):
    """A ``read_tag()`` callable for ct_reader from cfg["nfc"]."""
    import ct_ntag

    pins = board.pins
    n = cfg.get("nfc", {})
    chip = n.get("chip", "pn532")
    if "nfc_rst" in pins:
        machine.Pin(pins["nfc_rst"], machine.Pin.OUT, value=1)
        ct_ticks.sleep_ms(10)
    if chip == "pn532":
        import ct_pn532

        if n.get("bus", "spi") == "spi":
            spi = machine.SPI(1, baudrate=1000000, polarity=0, phase=0,
                              sck=machine.Pin(pins["spi_sck"]), mosi=machine.Pin(pins["spi_mosi"]),
                              miso=machine.Pin(pins["spi_miso"]))
            bus = ct_pn532.SPIBus(spi, machine.Pin(pins["nfc_cs"], machine.Pin.OUT, value=1))
        else:
            i2c = machine.I2C(0, sda=machine.Pin(pins["i2c_sda"]),
                              scl=machine.Pin(pins["i2c_scl"]), freq=100000, timeout=50000)
            bus = ct_pn532.I2CBus(i2c)
        pn = ct_pn532.PN532(bus)
        pn.sam_config()
        pn.set_retries(2)
        return lambda: ct_ntag.read_tag(pn)
    if chip == "mfrc522":
        import ct_mfrc522

        spi = machine.SPI(1, baudrate=4000000, polarity=0, phase=0,
                          sck=machine.Pin(pins["spi_sck"]), mosi=machine.Pin(pins["spi_mosi"]),
                          miso=machine.Pin(pins["spi_miso"]))
        rc = ct_mfrc522.MFRC522(spi, machine.Pin(pins["nfc_cs"], machine.Pin.OUT, value=1))
        rc.init()
        return lambda: ct_ntag.read_tag_mfrc522(rc)
    raise BoardError("unknown NFC chip %s" % chip)
