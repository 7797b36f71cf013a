"""An ATECC608 behind a machine.I2C-like bus, modelled from the data sheet's
I2C packet format (both interpreters). It checks what the host sends as the
chip would and answers as the chip would:

* asleep until a wake pulse (a write to address 0x00); then the first read
  gives ``04 11 33 43``; word address 0x01 puts it to sleep (TempKey lost);
* a command (word address 0x03) must have count == its length and a valid
  CRC, else the answer is status 0xFF; unknown opcodes/modes give 0x03;
* while "executing" it NACKs its address (OSError) for ``busy_polls`` reads;
* GenKey mode 0x04 makes a key in the slot and returns X||Y, mode 0x00
  recomputes X||Y; Nonce mode 0x03 loads 32 bytes into TempKey; Sign mode
  0x80 signs TempKey (refused, status 0x0F, if TempKey was not loaded).
* a 128-byte configuration zone: Read (0x02; param1 zone 0 + bit 7 for 32
  bytes; param2 = block << 3 | word), Write (0x12, config zone, 4 or 32
  bytes, only while unlocked, never bytes 0-15 or 84-87), Lock (0x17: mode
  0x00 config zone with the CRC-16 of the zone in param2, bit 7 skips the
  CRC; mode 0x01/0x81 data and OTP zones, only after the config zone and,
  here, only without CRC). Refusals answer 0x0F (execution error).
  ``blank=True`` is a chip as it leaves the factory: RevNum 00 00 60 03
  (ATECC608B), I2C address 0xC0, both lock bytes 0x55, every SlotConfig
  and KeyConfig zero. By default the chip is provisioned (both zones
  locked, every slot a P-256 signing slot) as the other tests expect.
  GenKey then needs the config zone locked, a KeyConfig with Private and
  KeyType 4 (P-256), and once the data zone is locked a SlotConfig whose
  WriteConfig lets GenKey write (bit 13); the public mode needs PubInfo.
  Sign needs both zones locked and ReadKey bit 0 (external messages).

Faults to inject: ``corrupt_next`` flips a bit of the next answer (host must
retry), ``reject_next`` answers 0xFF to the next command (host must resend),
``high_s`` returns n - s (host must normalise).
"""

import ct_atecc
import ct_p256


class FakeI2C:
    def __init__(self, addr=0x60, busy_polls=3, seed=1, blank=False):
        self.addr = addr
        c = bytearray(128)
        c[0:4] = b"\x01\x23\x5a\x1e"  # SN[0:1] = 01 23
        c[4:8] = b"\x00\x00\x60\x03"  # RevNum: ATECC608B
        c[8:13] = b"\x4c\x0d\x9b\x27\xee"  # SN[8] = EE
        c[14] = 0x01  # I2C_Enable
        c[16] = 0xC0  # I2C_Address (0x60 << 1)
        c[86] = c[87] = 0x55  # LockValue, LockConfig: unlocked
        c[88] = c[89] = 0xFF  # SlotLocked: none
        if not blank:
            for slot in range(16):
                c[20 + 2 * slot : 22 + 2 * slot] = b"\x83\x20"
                c[96 + 2 * slot : 98 + 2 * slot] = b"\x33\x00"
            c[86] = c[87] = 0x00
        self.config = c
        self.awake = False
        self.busy = 0
        self.busy_polls = busy_polls
        self.out = b""
        self.slots = {}
        self.tempkey = None
        self.corrupt_next = False
        self.reject_next = False
        self.high_s = False
        self.commands = []  # (opcode, p1, p2, data) accepted
        self.wire = []  # every command write as sent (word address 0x03 first)
        self.wakes = 0
        self._seed = seed

    def _nack(self):
        raise OSError(19)  # ENODEV: no ACK

    def _answer(self, body):
        pkt = bytes((len(body) + 3,)) + bytes(body)
        pkt = pkt + ct_atecc.crc16(pkt)
        if self.corrupt_next:
            self.corrupt_next = False
            pkt = pkt[:1] + bytes((pkt[1] ^ 0x01,)) + pkt[2:]
        self.out = pkt
        self.busy = self.busy_polls

    def writeto(self, addr, buf, stop=True):
        buf = bytes(buf)
        if addr == 0:
            if not self.awake:
                self.awake = True
                self.wakes += 1
                self.out = ct_atecc._WAKE_OK
                self.busy = 0
            self._nack()
        if addr != self.addr or not self.awake or self.busy:
            self._nack()
        wa = buf[0]
        if wa == 0x01:
            self.awake = False
            self.tempkey = None
            self.out = b""
            return 1
        if wa != 0x03:
            return 1
        self.wire.append(buf)
        pkt = buf[1:]
        if not pkt or pkt[0] != len(pkt) or len(pkt) < 7 or ct_atecc.crc16(pkt[:-2]) != pkt[-2:]:
            self._answer(b"\xff")
            return len(buf)
        if self.reject_next:
            self.reject_next = False
            self._answer(b"\xff")
            return len(buf)
        op, p1, p2, data = pkt[1], pkt[2], pkt[3] | pkt[4] << 8, pkt[5:-2]
        self.commands.append((op, p1, p2, data))
        self._answer(self._execute(op, p1, p2, data))
        return len(buf)

    def _slot(self, base, slot):
        return self.config[base + 2 * slot] | self.config[base + 2 * slot + 1] << 8

    def _config_rw(self, op, p1, p2, data):
        n = 32 if p1 & 0x80 else 4
        if p1 & 0x03 != 0 or p2 > 0x1F:
            return b"\x0f"  # only the configuration zone is modelled
        at = (p2 >> 3) * 32 if n == 32 else p2 * 4
        if op == 0x02:
            if data:
                return b"\x03"
            return bytes(self.config[at : at + n])
        if len(data) != n:
            return b"\x03"
        if self.config[87] != 0x55 or at < 16 or (at < 88 and at + n > 84):
            return b"\x0f"
        self.config[at : at + n] = data
        return b"\x00"

    def _lock(self, p1, p2):
        zone = p1 & 0x03
        if zone == 0 and self.config[87] == 0x55:
            if not p1 & 0x80 and ct_atecc.crc16(bytes(self.config)) != bytes((p2 & 0xFF, p2 >> 8)):
                return b"\x0f"
            self.config[87] = 0x00
            return b"\x00"
        if zone == 1 and self.config[87] == 0x00 and self.config[86] == 0x55 and p1 & 0x80:
            self.config[86] = 0x00
            return b"\x00"
        return b"\x0f"

    def _may(self, op, p1, slot):
        """The chip's policy for GenKey and Sign on ``slot``."""
        c = self.config
        if c[87] != 0x00:
            return False
        kc, sc = self._slot(96, slot), self._slot(20, slot)
        if not kc & 1 or (kc >> 2) & 7 != 4:
            return False
        if op == 0x40 and p1 == 0x04:
            return c[86] == 0x55 or bool(sc & 0x2000)
        if op == 0x40:
            return bool(kc & 2)
        return c[86] == 0x00 and bool(sc & 1)

    def _execute(self, op, p1, p2, data):
        if op in (0x02, 0x12):
            return self._config_rw(op, p1, p2, data)
        if op == 0x17:
            return self._lock(p1, p2) if not data else b"\x03"
        if op in (0x40, 0x41) and p1 in (0x00, 0x04, 0x80) and not self._may(op, p1, p2 & 15):
            return b"\x0f"
        if op == 0x40:  # GenKey
            if p1 == 0x04:
                self._seed += 1
                d = int.from_bytes(ct_atecc.hashlib.sha256(b"fake-atecc-%d" % self._seed).digest(),
                                   "big") % (ct_p256.N - 1) + 1
                self.slots[p2] = d
            elif p1 != 0x00 or data:
                return b"\x03"
            if p2 not in self.slots:
                return b"\x0f"
            x, y = ct_p256.public_point(self.slots[p2])
            return x.to_bytes(32, "big") + y.to_bytes(32, "big")
        if op == 0x16:  # Nonce
            if p1 != 0x03 or len(data) != 32:
                return b"\x03"
            self.tempkey = bytes(data)
            return b"\x00"
        if op == 0x41:  # Sign
            if p1 != 0x80 or data:
                return b"\x03"
            if self.tempkey is None or p2 not in self.slots:
                return b"\x0f"
            r, s = ct_p256.sign_raw(self.slots[p2], self.tempkey, low_s=True)
            if self.high_s:
                s = ct_p256.N - s
            self.tempkey = None  # consumed
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return b"\x03"

    def readfrom(self, addr, n):
        if addr != self.addr or not self.awake:
            self._nack()
        if self.busy:
            self.busy -= 1
            self._nack()
        b = self.out[:n]
        self.out = self.out[n:]
        return b

    def readfrom_into(self, addr, buf):
        b = self.readfrom(addr, len(buf))
        buf[: len(b)] = b
