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

Faults to inject: ``corrupt_next`` flips a bit of the next answer (host must
retry), ``reject_next`` answers 0xFF to the next command (host must resend),
``high_s`` returns n - s (host must normalise).
"""

import ct_atecc
import ct_p256


class FakeI2C:
    def __init__(self, addr=0x60, busy_polls=3, seed=1):
        self.addr = addr
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

    def _execute(self, op, p1, p2, data):
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
