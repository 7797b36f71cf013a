"""Simulated NFC tags and reader chips (PN532 over I2C/SPI, MFRC522 over SPI).

The chips answer with the bytes the real ones send: PN532 information frames
with LCS/DCS, ACK frames, the I2C status byte, LSB-first SPI; MFRC522
registers, FIFO and ISO 14443A anticollision frames (UID CLn + BCC, SAK +
CRC_A, bit-level collisions between several tags). Runs under MicroPython
too, so the firmware tests and the simulator share them.

Tag memory: an NTAG 21x answers READ (30h) with 16 bytes and WRITE (A2h)
with a 4-bit ACK (Ah) or NAK (0h invalid page, 1h CRC error), going IDLE
after a NAK; an NTAG 424 DNA has its file 03 (E105, 128 bytes) for READ
BINARY / UPDATE BINARY with ISO status words. So a sequence of readers on
one tag builds a real chain of custody links. ``leave_at_write(n)`` makes a
tag leave the field when its n-th next write command arrives, before the
write takes effect (``away`` until a test sets it back to False). A
MIFARE Classic (plain ``Tag``) has no memory the readers can use.
"""

import binascii

_URI_PREFIX = ((4, "https://"), (3, "http://"))


def ndef_uri(uri):
    """A one-record NDEF message holding a URI record."""
    code = 0
    for c, p in _URI_PREFIX:
        if uri.startswith(p):
            code = c
            uri = uri[len(p):]
            break
    payload = bytes((code,)) + uri.encode()
    n = len(payload)
    if n <= 255:  # short record
        return bytes((0xD1, 0x01, n, 0x55)) + payload
    return bytes((0xC1, 0x01, n >> 24, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF, 0x55)) + payload


ACK4 = 0x0A  # NTAG 21x 4-bit ACK
NAK_ARG = 0x00  # NAK: invalid argument (page address)
NAK_CRC = 0x01  # NAK: parity or CRC error


class Tag:
    """A plain ISO 14443A tag: ATQA, SAK, UID. No APDUs, no memory commands
    (it stays silent, as a MIFARE Classic does before authentication)."""

    iso_dep = False

    def __init__(self, uid, atqa=b"\x00\x44", sak=0x00):
        if len(uid) not in (4, 7, 10):
            raise ValueError("uid length")
        self.uid = bytes(uid)
        self.atqa = bytes(atqa)
        self.sak = sak
        self.ats = b""
        self.away = False
        self._leave_in = 0
        self.writes = 0  # write commands that took effect

    def leave_at_write(self, n=1):
        """Leave the field when the n-th write command from now arrives
        (1 = the next one), before it takes effect."""
        self._leave_in = n

    def _torn(self):
        """Called for each write command: True when the tag leaves now."""
        if self._leave_in:
            self._leave_in -= 1
            if not self._leave_in:
                self.away = True
                return True
        return False

    def t2(self, cmd):
        """A Type 2 command without CRC -> data bytes, a 4-bit ACK/NAK
        (int), or None (no answer)."""
        return None

    def cascade(self):
        """UID CLn (4 bytes) per cascade level, with cascade tags."""
        u = self.uid
        if len(u) == 4:
            return [u]
        if len(u) == 7:
            return [b"\x88" + u[:3], u[3:]]
        return [b"\x88" + u[:3], b"\x88" + u[3:6], u[6:]]


class Ntag21x(Tag):
    """NTAG 213/215/216 memory (NTAG213/215/216 datasheet §8.5, §10): pages
    of 4 bytes; UID and lock bytes in pages 0-2, CC in page 3, user memory
    from page 4 to ``user_end``; config pages after it are not modelled
    (READ gives zeros, WRITE NAKs). ``read_only``: every WRITE NAKs."""

    def __init__(self, uid, pages=135, user_end=0x81, read_only=False):
        Tag.__init__(self, uid, b"\x00\x44", 0x00)
        if len(uid) != 7:
            raise ValueError("an NTAG 21x has a 7-byte UID")
        self.pages = pages
        self.user_end = user_end
        self.read_only = read_only
        m = bytearray(4 * pages)
        u = self.uid
        m[0:4] = bytes((u[0], u[1], u[2], 0x88 ^ u[0] ^ u[1] ^ u[2]))
        m[4:8] = u[3:7]
        m[8] = u[3] ^ u[4] ^ u[5] ^ u[6]
        m[9] = 0x48
        if user_end >= 4:
            m[12:16] = bytes((0xE1, 0x10, (user_end - 3) // 2, 0x00))
            m[16:19] = b"\x03\x00\xfe"  # empty NDEF message TLV, terminator
        self.mem = m

    def t2(self, cmd):
        if len(cmd) == 2 and cmd[0] == 0x30:
            page = cmd[1]
            if page >= self.pages:
                return NAK_ARG
            out = bytearray(16)
            for i in range(16):  # rolls over to page 0 past the last page
                out[i] = self.mem[(4 * page + i) % len(self.mem)]
            return bytes(out)
        if len(cmd) == 6 and cmd[0] == 0xA2:
            if self._torn():
                return None
            page = cmd[1]
            if self.read_only or page < 4 or page > self.user_end:
                return NAK_ARG
            self.mem[4 * page : 4 * page + 4] = cmd[2:6]
            self.writes += 1
            return ACK4
        return None

    def page(self, p, n=1):
        """Bytes of pages p .. p+n-1 (for tests)."""
        return bytes(self.mem[4 * p : 4 * (p + n)])


def ntag21x(uid, model=215):
    """An NTAG 213, 215 or 216 with its page count and user memory."""
    pages, end = {213: (45, 0x27), 215: (135, 0x81), 216: (231, 0xE1)}[model]
    return Ntag21x(uid, pages, end)


def mifare_classic(uid):
    return Tag(uid, b"\x00\x04", 0x08)


class Ntag424(Tag):
    """NTAG 424 DNA answering ISO 7816-4 APDUs for its NDEF (T4T) files.
    ``uri`` is a string or a callable returning the URL of the next tap (so a
    simulator can produce a fresh SUN message per read)."""

    iso_dep = True

    def __init__(self, uid, uri, custody=True):
        Tag.__init__(self, uid, b"\x03\x44", 0x20)
        self.ats = b"\x06\x77\x77\x71\x02\x80"
        self._uri = uri
        self.cc = binascii.unhexlify(
            "001720010000ff0406e104010000000506e10500808283000000000000000000"
        )
        self.selected_app = False
        self.file = None
        self.fid = None
        self.apdus = []
        self._ndef = None
        # file 03 (E105), 128 bytes; ``custody``: commissioned for free
        # read/write in plain mode - else it answers 69 82, as delivered
        self.data03 = bytearray(128)
        self.custody = custody

    def _ndef_file(self):
        uri = self._uri() if callable(self._uri) else self._uri
        msg = ndef_uri(uri)
        return bytes((len(msg) >> 8, len(msg) & 0xFF)) + msg

    def apdu(self, a):
        a = bytes(a)
        self.apdus.append(a)
        if a[:4] == b"\x00\xa4\x04\x00":
            self.selected_app = a[5:5 + a[4]] == b"\xd2\x76\x00\x00\x85\x01\x01"
            self.file = self.fid = None
            return b"\x90\x00" if self.selected_app else b"\x6a\x82"
        if a[:4] == b"\x00\xa4\x00\x0c":
            if not self.selected_app:
                return b"\x6a\x82"
            fid = a[5:7]
            if fid == b"\xe1\x03":
                self.file = self.cc
            elif fid == b"\xe1\x04":
                self._ndef = self._ndef_file()  # SDM: fresh data per read
                self.file = self._ndef
            elif fid == b"\xe1\x05":
                self.file = self.data03
            else:
                self.file = self.fid = None
                return b"\x6a\x82"
            self.fid = bytes(fid)
            return b"\x90\x00"
        if a[:2] == b"\x00\xb0":
            if self.file is None:
                return b"\x69\x86"
            if self.fid == b"\xe1\x05" and not self.custody:
                return b"\x69\x82"
            off = (a[2] << 8) | a[3]
            n = a[4] or 256
            if off + n > len(self.file):
                return b"\x6b\x00"
            return bytes(self.file[off:off + n]) + b"\x90\x00"
        if a[:2] == b"\x00\xd6":
            if self.file is None:
                return b"\x69\x86"
            if self.fid != b"\xe1\x05" or not self.custody:
                return b"\x69\x82"  # the NDEF and CC files are not written here
            off = (a[2] << 8) | a[3]
            n = a[4] if len(a) > 4 else 0
            data = a[5:]
            if n == 0 or len(data) != n:
                return b"\x67\x00"
            if off + n > len(self.file):
                return b"\x6b\x00"
            if self._torn():
                return b""
            self.file[off:off + n] = data
            self.writes += 1
            return b"\x90\x00"
        return b"\x6d\x00"


def _frame(data, tfi=0xD5):
    n = len(data) + 1
    s = tfi + sum(data)
    return bytes((0, 0, 0xFF, n, (-n) & 0xFF, tfi)) + bytes(data) + bytes(((-s) & 0xFF, 0))


ACK = b"\x00\x00\xff\x00\xff\x00"
# InDataExchange status for a tag's NAK: UM0701's error table has no entry
# for it; 0x14 (MIFARE error) is assumed - the firmware treats any status
# other than 0x01 (timeout) on a page READ as "no such pages"
NAK_STATUS = 0x14


class FakePN532:
    """The chip: takes host frames, queues ACK + response frames."""

    def __init__(self, tags=()):
        self.field = list(tags)  # tags currently in the RF field
        self.out = b""
        self.pending = None
        self.busy_polls = 0
        self.commands = []
        self.bad_frames = 0
        self.listed = None
        self.muted = False  # the listed tag went IDLE (NAK): it answers nothing
        self.corrupt_next = None  # function(frame) -> frame, for tests
        self.sam = False

    def host_write(self, buf):
        buf = bytes(buf)
        if buf == ACK:  # abort
            self.pending = None
            self.out = b""
            return
        i = 0
        while i < len(buf) and buf[i] == 0:
            i += 1
        ok = i >= 1 and i + 2 < len(buf) and buf[i] == 0xFF
        if ok:
            n = buf[i + 1]
            ok = ((n + buf[i + 2]) & 0xFF) == 0 and len(buf) >= i + 5 + n
        if ok:
            body = buf[i + 3:i + 3 + n]
            ok = body[0] == 0xD4 and (sum(body) + buf[i + 3 + n]) & 0xFF == 0
        if not ok:
            self.bad_frames += 1  # a real PN532 stays silent
            return
        self.commands.append(body[1:])
        self.out = ACK
        self.pending = body[1:]

    def ready(self):
        if self.out:
            return True
        if self.pending is None:
            return False
        if self.busy_polls:
            self.busy_polls -= 1
            return False
        frame = _frame(bytes((self.pending[0] + 1,)) + self._answer(self.pending))
        if self.corrupt_next:
            frame = self.corrupt_next(frame)
            self.corrupt_next = None
        self.out = frame
        self.pending = None
        return True

    def read(self, n):
        """n bytes of the current output (the frame is resent in full on the
        next read, as the PN532 does over I2C until it has a new one)."""
        out = self.out + bytes(max(0, n - len(self.out)))
        self.out = b""
        return out[:n]

    def _answer(self, cmd):
        c = cmd[0]
        if c == 0x02:
            return b"\x32\x01\x06\x07"
        if c == 0x14:
            self.sam = True
            return b""
        if c == 0x32:
            return b""
        if c == 0x4A:
            if not self.field:
                return b"\x00"
            t = self.field[0]
            self.listed = t
            self.muted = False
            r = b"\x01\x01" + t.atqa + bytes((t.sak, len(t.uid))) + t.uid + t.ats
            return r
        if c == 0x40:
            t = self.listed
            if t is None or cmd[1] != 1:
                return b"\x27"  # wrong context
            if t not in self.field or t.away or self.muted:
                return b"\x01"  # timeout: the tag left the field
            if t.iso_dep:
                r = t.apdu(cmd[2:])
                return b"\x01" if t.away else b"\x00" + r
            # Type 2: the PN532 adds/checks CRC_A and takes the 4-bit ACK
            r = t.t2(bytes(cmd[2:]))
            if r is None or t.away:
                return b"\x01"
            if type(r) is int:
                if r == ACK4:
                    return b"\x00"
                self.muted = True  # the tag went IDLE
                return bytes((NAK_STATUS,))
            return b"\x00" + r
        if c == 0x52:
            self.listed = None
            return b"\x00"
        return b"\x00"


class FakePN532I2C:
    """machine.I2C look-alike for a FakePN532 at address 0x24."""

    def __init__(self, chip, addr=0x24):
        self.chip = chip
        self.addr = addr

    def writeto(self, addr, buf):
        if addr != self.addr:
            raise OSError(19)
        self.chip.host_write(buf)

    def readfrom_into(self, addr, buf):
        if addr != self.addr:
            raise OSError(19)
        if not self.chip.ready():
            for i in range(len(buf)):
                buf[i] = 0
            return
        if len(buf) == 1:
            buf[0] = 1
            return
        data = b"\x01" + self.chip.read(len(buf) - 1)
        for i in range(len(buf)):
            buf[i] = data[i]


def _rev(b):
    r = 0
    for i in range(8):
        if b & (1 << i):
            r |= 0x80 >> i
    return r


class FakePin:
    def __init__(self, v=1):
        self.v = v
        self.history = []

    def __call__(self, v=None):
        if v is None:
            return self.v
        self.v = v
        self.history.append(v)

    def value(self, v=None):
        return self(v)


class FakePN532SPI:
    """machine.SPI (MSB first) look-alike; decodes the PN532's LSB-first
    DW/SR/DR protocol. Use ``cs`` as the chip-select pin."""

    def __init__(self, chip):
        self.chip = chip
        self.cs = FakePin(1)
        self._op = None
        self._cs_seen = 1

    def _sync(self):
        if self.cs.v == 1 or self._cs_seen == 1:
            self._op = None
        self._cs_seen = self.cs.v

    def write(self, buf):
        if self.cs.v:
            raise OSError(5)
        if self._cs_seen == 1:
            self._op = None
        self._cs_seen = 0
        data = bytes(_rev(b) for b in buf)
        if self._op is None:
            self._op = data[0]
            data = data[1:]
        if self._op == 0x01 and data:
            self.chip.host_write(data)

    def readinto(self, buf):
        if self.cs.v:
            raise OSError(5)
        if self._op == 0x02:
            v = 1 if self.chip.ready() else 0
            for i in range(len(buf)):
                buf[i] = _rev(v)
        elif self._op == 0x03:
            data = self.chip.read(len(buf))
            for i in range(len(buf)):
                buf[i] = _rev(data[i])
        else:
            for i in range(len(buf)):
                buf[i] = 0xFF

    def end(self):
        self._cs_seen = 1


class _CSPin(FakePin):
    def __init__(self, spi):
        FakePin.__init__(self, 1)
        self.spi = spi

    def __call__(self, v=None):
        if v is None:
            return self.v
        self.v = v
        if v:
            self.spi._cs_seen = 1
            self.spi._op = None


def pn532_spi(chip):
    spi = FakePN532SPI(chip)
    spi.cs = _CSPin(spi)
    return spi, spi.cs


# --- MFRC522 -----------------------------------------------------------------

def crc_a(data):
    crc = 0x6363
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return bytes((crc & 0xFF, crc >> 8))


def _bits(data, n):
    """First n bits of data, LSB first per byte, as a list of 0/1."""
    return [(data[i // 8] >> (i % 8)) & 1 for i in range(n)]


def _with_bcc(cl):
    return bytes(cl) + bytes((cl[0] ^ cl[1] ^ cl[2] ^ cl[3],))


def _pack(bits):
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i // 8] |= 1 << (i % 8)
    return out


class FakeMFRC522:
    """Register-level MFRC522 on a fake SPI bus with tags in its field.
    Implements Transceive with TxLastBits/RxAlign, ErrorReg CollErr,
    CollReg, FIFO, ControlReg RxLastBits, ComIrqReg and VersionReg."""

    def __init__(self, tags=(), version=0x92):
        self.field = list(tags)
        self.reg = bytearray(64)
        self.reg[0x37] = version
        self.fifo = bytearray()
        self.cs = FakePin(1)
        self.frames = []  # (sent bytes, tx bits) for tests
        self._state = {}  # tag -> (level, selected)
        self.halted = set()

    # SPI: write/write_readinto with [addr, data...]
    def write(self, buf):
        self._spi(bytes(buf), None)

    def write_readinto(self, out, into):
        self._spi(bytes(out), into)

    def _spi(self, out, into):
        if self.cs.v:
            raise OSError(5)
        a = out[0]
        reg = (a >> 1) & 0x3F
        if a & 0x80:
            for i in range(1, len(out)):
                into[i] = self._read(reg)
            into[0] = 0
        else:
            for b in out[1:]:
                self._write(reg, b)

    def _read(self, reg):
        if reg == 0x09:
            if not self.fifo:
                return 0
            v = self.fifo[0]
            self.fifo = self.fifo[1:]
            return v
        if reg == 0x0A:
            return len(self.fifo)
        return self.reg[reg]

    def _write(self, reg, v):
        if reg == 0x09:
            self.fifo.append(v)
            return
        if reg == 0x0A:
            if v & 0x80:
                self.fifo = bytearray()
            return
        if reg == 0x04:  # ComIrqReg: Set1 bit 7 clears the marked bits
            if v & 0x80:
                self.reg[4] |= v & 0x7F
            else:
                self.reg[4] &= ~v & 0xFF
            return
        if reg == 0x01 and v & 0x0F == 0x0F:
            self.reg[:] = bytearray(64)
            self.reg[0x37] = 0x92
            return
        self.reg[reg] = v
        if reg == 0x0D and v & 0x80 and self.reg[1] & 0x0F == 0x0C:
            self._transceive()

    def _transceive(self):
        tx_bits = self.reg[0x0D] & 0x07
        sent = bytes(self.fifo)
        self.fifo = bytearray()
        self.frames.append((sent, tx_bits))
        self.reg[0x06] = 0
        self.reg[0x0C] = 0
        reply_bits, coll = self._respond(sent, tx_bits)
        if reply_bits is None:
            self.reg[0x04] |= 0x01  # TimerIRq
            return
        rx_align = (self.reg[0x0D] >> 4) & 0x07
        bits = [0] * rx_align + reply_bits
        self.fifo = _pack(bits)
        self.reg[0x0C] = len(bits) % 8
        if coll:
            self.reg[0x06] |= 0x08
            self.reg[0x0E] = coll & 0x1F  # 32 -> 0
        self.reg[0x04] |= 0x30

    def _active(self):
        return [t for t in self.field if id(t) not in self.halted and not t.away]

    def _memory(self, sent):
        """READ/WRITE to the selected tag: CRC_A checked, the answer with
        CRC_A, or a 4-bit ACK/NAK; IDLE after a NAK."""
        tags = [t for t in self._active() if self._state.get(id(t)) == "sel"]
        if not tags:
            return None, 0
        t = tags[0]
        if len(sent) < 3 or crc_a(sent[:-2]) != sent[-2:]:
            r = NAK_CRC
        else:
            r = t.t2(bytes(sent[:-2]))
        if r is None or t.away:
            return None, 0
        if type(r) is int:
            if r != ACK4:
                self._state[id(t)] = None
            return [(r >> i) & 1 for i in range(4)], 0
        r = bytes(r) + crc_a(r)
        return _bits(r, 8 * len(r)), 0

    def _respond(self, sent, tx_bits):
        if tx_bits == 7 and sent == b"\x26":  # REQA
            tags = self._active()
            if not tags:
                return None, 0
            for t in tags:
                self._state[id(t)] = 0
            return self._merge([_bits(t.atqa, 16) for t in tags])
        if tx_bits == 0 and sent[:1] in (b"\x30", b"\xa2"):
            return self._memory(sent)
        if sent[:1] == b"\x50":
            for t in self._active():
                if self._state.get(id(t)) == "sel":
                    self.halted.add(id(t))
            return None, 0
        sel = sent[0]
        if sel not in (0x93, 0x95, 0x97):
            return None, 0
        level = (sel - 0x93) // 2
        nvb = sent[1]
        if nvb == 0x70:
            if len(sent) != 9 or crc_a(sent[:7]) != sent[7:9]:
                return None, 0
            answers = []
            for t in self._active():
                cl = t.cascade()
                if level < len(cl) and self._state.get(id(t)) == level:
                    if bytes(sent[2:7]) == _with_bcc(cl[level]):
                        last = level == len(cl) - 1
                        sak = t.sak if last else 0x04
                        self._state[id(t)] = "sel" if last else level + 1
                        answers.append(_bits(bytes((sak,)) + crc_a(bytes((sak,))), 24))
                    else:
                        self._state[id(t)] = None  # not selected: goes idle
            if not answers:
                return None, 0
            return self._merge(answers)
        known = ((nvb >> 4) - 2) * 8 + (nvb & 0x0F)
        prefix = _bits(sent[2:], known)
        resp = []
        for t in self._active():
            cl = t.cascade()
            if level >= len(cl) or self._state.get(id(t)) != level:
                continue
            bits = _bits(_with_bcc(cl[level]), 40)
            if bits[:known] == prefix:
                resp.append(bits[known:])
        if not resp:
            return None, 0
        heard, coll = self._merge(resp, known)
        if coll:
            coll -= (known // 8) * 8  # CollPos counts from the first FIFO byte
        return heard, coll

    def _merge(self, answers, offset=0):
        """Bits as the reader hears several tags: identical until the first
        differing bit (a collision). Returns (bits, 1-based position of the
        collision in UID CLn, or 0)."""
        first = answers[0]
        for i in range(len(first)):
            if any(a[i] != first[i] for a in answers[1:]):
                heard = first[:i] + [1] + [0] * (len(first) - i - 1)
                return heard, offset + i + 1
        return list(first), 0


def mfrc522_bus(chip):
    return chip, chip.cs
