"""ES256 in a Microchip ATECC608A/B secure element over I2C: the key is made
in the chip and never leaves it.

    chip = ATECC(machine.I2C(0, scl=Pin(22), sda=Pin(21), freq=100000))
    s = Signer(chip, slot=0)
    s.generate()     -> 65-byte SEC1 public key (GenKey, private key in slot)
    s.public_key()   -> 65 bytes (GenKey public mode: recomputed from the slot)
    s.sign_digest(h) -> 64 bytes r || s, low-S (Nonce pass-through + Sign external)
    s.sign(msg)      -> over SHA-256(msg)

I2C protocol (ATECC608 data sheet, "I/O Protocols" / "Command Packets"):
wake = SDA low >= 60 us (a write to address 0x00 at <= 100 kHz), then
>= 1.5 ms until the chip answers ``04 11 33 43``. A command is the word
address 0x03 then [count, opcode, param1, param2 (LE u16), data, CRC-16
(LE)], count covering itself to the CRC. The chip NACKs while it executes;
the host polls until it answers [count, data..., CRC-16]. A 4-byte answer
carries a status (0x00 ok, 0x01 miscompare, 0x03 parse, 0x05 ECC fault,
0x0F execution, 0x11 after wake, 0xEE watchdog, 0xFF CRC/comms error).
The CRC is CRC-16 polynomial 0x8005, initial 0, bits fed LSB first,
no final xor; ``04 11`` -> ``33 43`` checks it. Word address 0x01 puts the
chip to sleep (its watchdog would after ~1.3 s anyway; TempKey is lost).

The slot must be an ECC private-key slot whose configuration allows GenKey
and external-message signatures: SlotConfig 0x2083, KeyConfig 0x0033, both
zones locked. A blank chip is set up that way by ct_atecc_setup
(``coldtrace device atecc-setup``); an ESP32-WROOM-32SE ships
pre-provisioned and locked. firmware/README.md, section "Secure element
(ATECC608B)", has the procedure and which slot to use. The chip picks its own nonce (a
true RNG inside), so signatures are not RFC 6979 and not reproducible; they
are normalised to low S like every ColdTrace signature.
"""

import hashlib

import ct_p256
import ct_ticks

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_ADDR = const(0x60)
_WA_RESET = const(0x00)
_WA_SLEEP = const(0x01)
_WA_IDLE = const(0x02)
_WA_CMD = const(0x03)
_OP_NONCE = const(0x16)
_OP_GENKEY = const(0x40)
_OP_SIGN = const(0x41)
_OP_INFO = const(0x30)
_GENKEY_PRIVATE = const(0x04)
_GENKEY_PUBLIC = const(0x00)
_NONCE_PASSTHROUGH = const(0x03)
_SIGN_EXTERNAL = const(0x80)
# worst-case execution times, ms (608 at its slowest clock divider)
_T_NONCE = const(20)
_T_GENKEY = const(700)
_T_SIGN = const(700)
_T_INFO = const(5)
_POLL_MS = const(2)
_RETRIES = const(3)
_WAKE_OK = b"\x04\x11\x33\x43"

STATUS = {0x01: "miscompare", 0x03: "parse error", 0x05: "ECC fault", 0x07: "self-test error",
          0x08: "health test error", 0x0F: "execution error", 0x11: "after wake",
          0xEE: "watchdog about to expire", 0xFF: "CRC or communication error"}


class ATECCError(Exception):
    def __init__(self, msg, status=None):
        super().__init__(msg)
        self.status = status


def crc16(data):
    """ATECC CRC-16: poly 0x8005, init 0, data bits LSB first. 2 bytes, LE."""
    crc = 0
    for b in data:
        for i in range(8):
            bit = (b >> i) & 1
            top = crc >> 15
            crc = (crc << 1) & 0xFFFF
            if bit != top:
                crc ^= 0x8005
    return bytes((crc & 0xFF, crc >> 8))


def packet(opcode, p1, p2, data=b""):
    """The bytes after word address 0x03 for one command."""
    n = 7 + len(data)
    pkt = bytearray(n)
    pkt[0] = n
    pkt[1] = opcode
    pkt[2] = p1
    pkt[3] = p2 & 0xFF
    pkt[4] = p2 >> 8
    pkt[5 : 5 + len(data)] = data
    pkt[n - 2 : n] = crc16(pkt[: n - 2])
    return bytes(pkt)


class ATECC:
    def __init__(self, i2c, addr=_ADDR, ticks=ct_ticks):
        self._i2c = i2c
        self._addr = addr
        self._t = ticks
        self.retries = 0

    def wake(self):
        try:
            self._i2c.writeto(0, b"\x00")  # nobody answers at 0: the low pulse is the point
        except OSError:
            pass
        self._t.sleep_ms(2)  # tWHI >= 1.5 ms
        r = self._read(4, 10)
        if r != _WAKE_OK:
            raise ATECCError("no wake answer from the ATECC (got %r)" % (r,))

    def sleep(self):
        try:
            self._i2c.writeto(self._addr, bytes((_WA_SLEEP,)))
        except OSError:
            pass

    def _read(self, n, max_ms):
        """Poll until the chip answers (it NACKs while busy); n=None reads
        the count byte first, then the rest."""
        t = self._t
        t0 = t.ticks_ms()
        while True:
            try:
                if n is not None:
                    return self._i2c.readfrom(self._addr, n)
                first = self._i2c.readfrom(self._addr, 1)
                cnt = first[0]
                if cnt < 4 or cnt > 155:
                    raise ATECCError("bad response length %d" % cnt, 0xFF)
                return first + self._i2c.readfrom(self._addr, cnt - 1)
            except OSError:
                if t.ticks_diff(t.ticks_ms(), t0) > max_ms:
                    raise ATECCError("the ATECC did not answer within %d ms" % max_ms)
                t.sleep_ms(_POLL_MS)

    def command(self, opcode, p1, p2, data, max_ms):
        """Run one command; return the response data (without count/CRC)."""
        pkt = bytes((_WA_CMD,)) + packet(opcode, p1, p2, data)
        err = None
        for _ in range(_RETRIES):
            try:
                self._i2c.writeto(self._addr, pkt)
            except OSError as e:
                err = ATECCError("I2C write failed: %r" % (e,))
                self.retries += 1
                continue
            self._t.sleep_ms(1)
            r = self._read(None, max_ms + 50)
            if crc16(r[:-2]) != r[-2:]:
                err = ATECCError("response CRC mismatch", 0xFF)
                self.retries += 1
                continue
            body = r[1:-2]
            if len(r) == 4 and body[0] != 0:
                st = body[0]
                err = ATECCError("ATECC status 0x%02x (%s)" % (st, STATUS.get(st, "?")), st)
                if st == 0xFF:  # the chip saw a bad CRC: send again
                    self.retries += 1
                    continue
                raise err
            return body
        raise err

    def session(self):
        """Context manager: wake ... sleep."""
        return _Session(self)


class _Session:
    def __init__(self, chip):
        self.chip = chip

    def __enter__(self):
        self.chip.wake()
        return self.chip

    def __exit__(self, *exc):
        self.chip.sleep()
        return False


class Signer:
    alg = -7

    def __init__(self, chip, slot=0):
        if not 0 <= slot <= 15:
            raise ATECCError("slot 0..15")
        self.chip = chip
        self.slot = slot
        self._pub = None

    def _pubkey(self, mode, ms):
        with self.chip.session() as c:
            r = c.command(_OP_GENKEY, mode, self.slot, b"", ms)
        if len(r) != 64:
            raise ATECCError("GenKey answered %d bytes, want 64" % len(r))
        pub = b"\x04" + bytes(r)
        ct_p256.decode_point(pub)  # on the curve, or raise
        self._pub = pub
        return pub

    def generate(self):
        """A new private key in the slot (the old one is gone)."""
        return self._pubkey(_GENKEY_PRIVATE, _T_GENKEY)

    def public_key(self):
        if self._pub is None:
            self._pubkey(_GENKEY_PUBLIC, _T_GENKEY)
        return self._pub

    def sign_digest(self, h):
        if len(h) != 32:
            raise ATECCError("digest must be 32 bytes")
        with self.chip.session() as c:
            st = c.command(_OP_NONCE, _NONCE_PASSTHROUGH, 0, h, _T_NONCE)
            if len(st) != 1 or st[0] != 0:
                raise ATECCError("Nonce failed")
            sig = c.command(_OP_SIGN, _SIGN_EXTERNAL, self.slot, b"", _T_SIGN)
        if len(sig) != 64:
            raise ATECCError("Sign answered %d bytes, want 64" % len(sig))
        r = int.from_bytes(sig[:32], "big")
        s = int.from_bytes(sig[32:], "big")
        if not (0 < r < ct_p256.N and 0 < s < ct_p256.N):
            raise ATECCError("signature out of range")
        if s > ct_p256.N >> 1:
            s = ct_p256.N - s  # low-S (docs/protocol.md §3)
        return bytes(sig[:32]) + s.to_bytes(32, "big")

    def sign(self, msg):
        return self.sign_digest(hashlib.sha256(msg).digest())
