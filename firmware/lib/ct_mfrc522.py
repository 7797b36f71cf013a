"""NXP MFRC522 reader over SPI: full ISO 14443A UIDs (4, 7 or 10 bytes).

MFRC522 datasheet §8.1.2 (SPI: address byte = reg << 1, MSB set to read) and
ISO/IEC 14443-3 §6.5.3 (anticollision and select): cascade level n sends
SEL (93/95/97) + NVB + the UID bits known so far; the tags answer with the
rest of UID CLn (4 bytes) + BCC. A SELECT answers SAK; SAK bit 3 (0x04) says
"UID not complete", and then UID CLn starts with the cascade tag 0x88 and
carries 3 UID bytes. Many example drivers stop at level 1 and keep 88 xx xx
xx as a "UID": this one runs levels 1-3 and refuses an inconsistent answer,
so a 7-byte NTAG UID is always reported whole.

Once a tag is selected, ``read16``/``write4`` speak the NFC Forum Type 2 /
NTAG 21x memory commands (NTAG213/215/216 datasheet §10): READ (30h, page)
answers 16 bytes + CRC_A, or a 4-bit NAK; WRITE (A2h, page, 4 bytes)
answers a 4-bit ACK (Ah) once the page is programmed, or a NAK. After a NAK
the tag is back in IDLE and must be selected again.

CRC_A (init 0x6363, reflected poly 0x8408) is computed here; the chip's own
CRC coprocessor is not used.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

import ct_ticks

_COMMAND = const(0x01)
_COM_IRQ = const(0x04)
_ERROR = const(0x06)
_FIFO_DATA = const(0x09)
_FIFO_LEVEL = const(0x0A)
_CONTROL = const(0x0C)
_BIT_FRAMING = const(0x0D)
_COLL = const(0x0E)
_MODE = const(0x11)
_TX_CONTROL = const(0x14)
_TX_ASK = const(0x15)
_T_MODE = const(0x2A)
_T_PRESCALER = const(0x2B)
_T_RELOAD_H = const(0x2C)
_T_RELOAD_L = const(0x2D)
_VERSION = const(0x37)

_IDLE = const(0x00)
_TRANSCEIVE = const(0x0C)
_SOFT_RESET = const(0x0F)

_REQA = const(0x26)
_HLTA = const(0x50)
_READ = const(0x30)
_WRITE = const(0xA2)
_ACK = const(0x0A)
_CASCADE_TAG = const(0x88)
_SAK_MORE = const(0x04)
_TIMEOUT_MS = const(30)


class MFRC522Error(Exception):
    pass


def crc_a(data, n=None):
    """ISO 14443-3 CRC_A as 2 bytes, least significant first."""
    crc = 0x6363
    if n is None:
        n = len(data)
    for i in range(n):
        crc ^= data[i]
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0x8408
            else:
                crc >>= 1
    return bytes((crc & 0xFF, crc >> 8))


class MFRC522:
    def __init__(self, spi, cs, ticks_ms=None, sleep_ms=None):
        self._spi = spi
        self._cs = cs
        self._ticks = ticks_ms or ct_ticks.ticks_ms
        self._sleep = sleep_ms or ct_ticks.sleep_ms
        self._b2 = bytearray(2)
        self._fifo = bytearray(64)
        cs(1)

    def _wr(self, reg, val):
        self._b2[0] = (reg << 1) & 0x7E
        self._b2[1] = val
        self._cs(0)
        try:
            self._spi.write(self._b2)
        finally:
            self._cs(1)

    def _rd(self, reg):
        self._b2[0] = 0x80 | ((reg << 1) & 0x7E)
        self._b2[1] = 0
        self._cs(0)
        try:
            self._spi.write_readinto(self._b2, self._b2)
        finally:
            self._cs(1)
        return self._b2[1]

    def init(self):
        self._wr(_COMMAND, _SOFT_RESET)
        self._sleep(50)
        self._wr(_T_MODE, 0x80)  # TAuto: timer starts at end of transmission
        self._wr(_T_PRESCALER, 0xA9)  # 13.56 MHz / (2*169+1) ~ 40 kHz
        self._wr(_T_RELOAD_H, 0x03)  # 0x3E8 = 1000 ticks ~ 25 ms
        self._wr(_T_RELOAD_L, 0xE8)
        self._wr(_TX_ASK, 0x40)  # 100 % ASK
        self._wr(_MODE, 0x3D)  # CRC preset 6363
        self.antenna(True)
        return self._rd(_VERSION)

    def antenna(self, on):
        v = self._rd(_TX_CONTROL)
        self._wr(_TX_CONTROL, (v | 0x03) if on else (v & ~0x03))

    def transceive(self, data, tx_bits=0, rx_align=0):
        """Send data (last byte holds ``tx_bits`` bits, 0 = 8; the first
        received bit lands at bit ``rx_align`` of the first byte); return
        (received bytes, valid bits in the last byte, collision position).
        collision position is 0 when there was none, else 1 ... 32."""
        self._wr(_COMMAND, _IDLE)
        self._wr(_COM_IRQ, 0x7F)
        self._wr(_FIFO_LEVEL, 0x80)  # flush
        for b in data:
            self._wr(_FIFO_DATA, b)
        framing = (rx_align << 4) | tx_bits
        self._wr(_BIT_FRAMING, framing)
        self._wr(_COMMAND, _TRANSCEIVE)
        self._wr(_BIT_FRAMING, 0x80 | framing)  # StartSend
        t0 = self._ticks()
        while True:
            irq = self._rd(_COM_IRQ)
            if irq & 0x30:  # RxIRq | IdleIRq
                break
            if irq & 0x01:  # TimerIRq: no tag answered
                return b"", 0, 0
            if ct_ticks.ticks_diff(self._ticks(), t0) > _TIMEOUT_MS:
                raise MFRC522Error("chip timeout")
            self._sleep(1)
        self._wr(_BIT_FRAMING, 0)
        err = self._rd(_ERROR)
        if err & 0x13:  # BufferOvfl, ParityErr, ProtocolErr
            raise MFRC522Error("rx error 0x%02x" % err)
        coll = 0
        if err & 0x08:
            c = self._rd(_COLL)
            if c & 0x20:
                raise MFRC522Error("collision position not valid")
            coll = (c & 0x1F) or 32
        n = self._rd(_FIFO_LEVEL) & 0x7F
        if n > len(self._fifo):
            raise MFRC522Error("fifo")
        for i in range(n):
            self._fifo[i] = self._rd(_FIFO_DATA)
        bits = self._rd(_CONTROL) & 0x07
        return bytes(self._fifo[:n]), bits, coll

    def request(self):
        """REQA (7-bit short frame); ATQA (2 bytes) or None."""
        r, bits, _ = self.transceive(bytes((_REQA,)), 7)
        if len(r) != 2 or bits:
            return None
        return r

    def _anticoll(self, sel):
        """One cascade level: UID CLn (4) + BCC, resolving collisions."""
        uid = bytearray(5)
        known = 0
        for _ in range(33):
            nbytes = known // 8
            nbits = known % 8
            frame = bytearray(2 + nbytes + (1 if nbits else 0))
            frame[0] = sel
            frame[1] = 0x20 + (nbytes << 4) + nbits
            for i in range(len(frame) - 2):
                frame[2 + i] = uid[i]
            r, _, coll = self.transceive(frame, nbits, nbits)
            if not r:
                raise MFRC522Error("no answer to anticollision")
            # r[0] holds bits nbits..7 of uid[nbytes] (RxAlign), then on
            for i in range(len(r)):
                j = nbytes + i
                if j >= 5:
                    break
                if i == 0 and nbits:
                    mask = (0xFF << nbits) & 0xFF
                    uid[j] = (uid[j] & ~mask) | (r[0] & mask)
                else:
                    uid[j] = r[i]
            if not coll:
                if nbytes + len(r) < 5:
                    raise MFRC522Error("short anticollision answer")
                break
            # CollPos counts from bit 0 of the first FIFO byte, which RxAlign
            # lined up with byte ``nbytes`` of UID CLn
            pos = nbytes * 8 + coll
            if pos <= known or pos > 40:
                raise MFRC522Error("collision position")
            # take the branch where the colliding bit is 1
            uid[(pos - 1) // 8] |= 1 << ((pos - 1) % 8)
            known = pos
            # the bits after the collision in that byte are asked again
            if known % 8:
                uid[known // 8] &= (1 << (known % 8)) - 1
        else:
            raise MFRC522Error("anticollision did not converge")
        if uid[0] ^ uid[1] ^ uid[2] ^ uid[3] ^ uid[4]:
            raise MFRC522Error("BCC")
        return uid

    def _select(self, sel, uid_cl):
        frame = bytearray(9)
        frame[0] = sel
        frame[1] = 0x70
        frame[2:7] = uid_cl
        frame[7:9] = crc_a(frame, 7)
        r, bits, _ = self.transceive(frame)
        if len(r) != 3 or bits:
            raise MFRC522Error("no SAK")
        if crc_a(r, 1) != r[1:3]:
            raise MFRC522Error("SAK CRC")
        return r[0]

    def read_uid(self):
        """Select one tag: (uid bytes of 4/7/10, sak) or None if none there."""
        if self.request() is None:
            return None
        uid = bytearray()
        for sel in (0x93, 0x95, 0x97):
            cl = self._anticoll(sel)
            sak = self._select(sel, cl)
            if sak & _SAK_MORE:
                if cl[0] != _CASCADE_TAG:
                    raise MFRC522Error("cascade bit without cascade tag")
                uid.extend(cl[1:4])
                continue
            if cl[0] == _CASCADE_TAG:
                raise MFRC522Error("cascade tag in a complete UID")
            uid.extend(cl[0:4])
            return bytes(uid), sak
        raise MFRC522Error("more than 3 cascade levels")

    def _t2(self, frame):
        """Send a Type 2 command (CRC_A appended); the answer without its
        CRC, or an int: the 4-bit ACK/NAK. Raises when no tag answers."""
        f = bytearray(len(frame) + 2)
        f[: len(frame)] = frame
        f[len(frame) :] = crc_a(frame)
        r, bits, _ = self.transceive(f)
        if not r:
            raise MFRC522Error("no answer")
        if bits == 4 and len(r) == 1:
            return r[0] & 0x0F
        if bits or len(r) < 3:
            raise MFRC522Error("short answer")
        if crc_a(r, len(r) - 2) != r[-2:]:
            raise MFRC522Error("answer CRC")
        return r[:-2]

    def read16(self, page):
        """READ: pages page..page+3 (16 bytes), or None when the tag NAKs
        (no such page, or read-protected)."""
        r = self._t2(bytes((_READ, page)))
        if type(r) is int:
            if r == _ACK:
                raise MFRC522Error("ACK to READ")
            return None
        if len(r) != 16:
            raise MFRC522Error("READ answer length")
        return r

    def write4(self, page, data):
        """WRITE one page (4 bytes); raises unless the tag answers ACK."""
        if len(data) != 4:
            raise MFRC522Error("a page is 4 bytes")
        r = self._t2(bytes((_WRITE, page)) + bytes(data))
        if type(r) is not int:
            raise MFRC522Error("data answer to WRITE")
        if r != _ACK:
            raise MFRC522Error("WRITE NAK %x" % r)

    def halt(self):
        f = bytearray(4)
        f[0] = _HLTA
        f[2:4] = crc_a(f, 2)
        self.transceive(f)
