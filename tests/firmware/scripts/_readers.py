"""Handover readers for the custody tests: ct_reader on the real core
(ct_core, ct_state, ct_queue on a fake LittleFS; a hash stands in for the
ES256 signer so the records are real COSE_Sign1 bytes, made fast) and a
fake PN532 (I2C or SPI) or MFRC522 with tags the test holds to it."""

import hashlib

import ct_cbor
import ct_clock
import ct_mfrc522
import ct_ntag
import ct_pn532
import ct_reader
import ct_record
import ct_ui
import fake_nfc
from ct_core import Core
from ct_queue import Queue
from ct_state import State
from fake_nfc import FakePin
from fakefs import FakeFs

PLACE = "urn:epc:id:sgln:9506000.13435.%d"
ITEM = "/01/09506000134352/10/L42/21/7"


class HashSigner:
    def sign_digest(self, h):
        return hashlib.sha256(h).digest() * 2


class Ticks:
    def __init__(self):
        self.t = 0

    def ticks(self):
        return self.t

    def sleep(self, ms):
        self.t += ms


def fields(rec):
    """The payload of a record, decoded by the firmware's own strict decoder."""
    _, p, _ = ct_record.parse_sign1(rec)
    return ct_cbor.decode_map(p)


def queued(core):
    out = []
    cur = core.queue.head()
    while cur is not None:
        r, cur = core.queue.read(cur)
        if r is None:
            break
        out.append(r)
    return out


def new_core(name="rd-1"):
    """The real core on a fresh fake LittleFS, started."""
    fs = FakeFs()
    core = Core(name, HashSigner(), State(fs, "st"), Queue(fs, "q", 4, 2048, 0, 0))
    core.start()
    return core


class Station:
    """One reader device: ``chip`` is "pn532" (I2C), "pn532spi" or "mfrc522"."""

    def __init__(self, n, chip="pn532", cfg=None):
        self.core = new_core(f"rd-{n}")
        ticks = Ticks()
        if chip == "mfrc522":
            self.chip = fake_nfc.FakeMFRC522()
            rc = ct_mfrc522.MFRC522(self.chip, self.chip.cs, ticks.ticks, ticks.sleep)
            rc.init()
            read = lambda: ct_ntag.read_tag_mfrc522(rc)  # noqa: E731
        else:
            self.chip = fake_nfc.FakePN532()
            if chip == "pn532spi":
                bus = ct_pn532.SPIBus(*fake_nfc.pn532_spi(self.chip))
            else:
                bus = ct_pn532.I2CBus(fake_nfc.FakePN532I2C(self.chip))
            pn = ct_pn532.PN532(bus, ticks.ticks, ticks.sleep)
            read = lambda: ct_ntag.read_tag(pn)  # noqa: E731
        clock = ct_clock.Clock(lambda: 1790000000, lambda t: None)
        clock.sync(1790000000, ct_clock.GATEWAY)
        self.okp, self.errp = FakePin(0), FakePin(0)
        c = {"place": PLACE % n, "actions": [1, 2, 3, 4, 5, 6], "action": 2}
        c.update(cfg or {})
        self.reader = ct_reader.Reader(c, read, self.core, clock, ct_ui.Button(FakePin(1)),
                                       ct_ui.Led(self.okp), ct_ui.Led(self.errp), lambda: 4100)
        self.now = 0

    def tap(self, tag, action):
        """Hold ``tag`` to the reader with ``action`` until it records a
        scan (or 2 s pass); lift it. Returns the record or None."""
        self.reader.action = action
        self.okp.history = []
        self.errp.history = []
        tag.away = False
        self.chip.field = [tag]
        rec = None
        try:
            end = self.now + 2000
            while self.now < end and rec is None:
                rec = self.reader.step(self.now)
                self.now += 10
        finally:
            self.chip.field = []
            if hasattr(self.chip, "halted"):
                self.chip.halted = set()  # a lifted tag loses power
            end = self.now + 5000  # the LED patterns end; past repeat_ms
            while self.now < end:
                self.reader.step(self.now)
                self.now += 50
        return rec

    def ok(self):
        return 1 in self.okp.history and 1 not in self.errp.history

    def failed(self):
        return 1 in self.errp.history and 1 not in self.okp.history
