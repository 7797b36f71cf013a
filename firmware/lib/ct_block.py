"""Reading blocks (docs/protocol.md §2.8, kind 7): each channel's open block
on flash until it is signed, so deep sleep and power cuts lose no reading
and no reading is ever signed twice.

    b = Blocks(fs, "ct", size=12)     # size 2..64 readings per block
    b.fits(ch, t, tq, ivl, cal)       # -> time the reading gets, or None
    n = b.add(ch, t, tq, ivl, cal, temp, fault, rh)   # durable on return;
                                      # n readings now in the open block
    b.open_channels()                 # channels with an open block
    ok = b.close(ch, core, batt, alarm)   # sign + queue the open block
    b.resume(core, restart)           # at start, before any other record

``fits`` takes a reading measured at ``t`` (record time, with ``tq``) into
the open block when the block has room, the same ``tq``, ``ivl`` and ``cal``,
and ``t`` is within ``_SLACK`` seconds of the next slot time (``time + n x
ivl``): the reading is then dated at that slot, exactly. Anything else
(the clock was set, a late wake) means: close the open block, start a new one.

Flash layout, one channel ``c`` (``root/bc`` and ``root/bc.s``):

    bc    header (23 B): "CTb1" time ivl tq ch has_cal cal, CRC-32
          then one 5-byte entry per reading: the temp slot and the rh slot
          exactly as §2.8 packs them, and a check byte (CRC-32 of the
          entry's index and slots, low byte)
    bc.s  seal (20 B): "CTbs" seq n batt alarm, CRC-32 (tmp + rename)

Each reading is appended and flushed (LittleFS commits the file or keeps
the old content); a torn or damaged tail entry is dropped on load (a
weaker filesystem), never read as a reading.

Closing a block, in this order:

    1. seal: the block will be record ``seq`` = the core's next seq
       (durable; batt and alarm are in it, so a re-sign gives the same bytes)
    2. core.record + core.enqueue (the queue commit, the state advances)
    3. remove ``bc``, then ``bc.s``

``resume`` at start (after ct_core's ``start``, which moves seq past the
newest queued record): a seal whose seq is below the core's seq was
queued - its journal is removed, never signed again; a seal at the core's
seq was not - the block is signed now with the sealed batt and alarm. An
unsealed block is kept on a deep-sleep wake and signed at once after any
other start (power cut, reset): the clock it was dated by may be gone.
A seal without a journal (a cut between the two removes) is removed.
"""

import binascii
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MAGIC = b"CTb1"
_SEAL = b"CTbs"
_HDR = "<4sIIBBBI"
_HDR_SIZE = const(23)  # calcsize(_HDR) + 4
_SEAL_FMT = "<4sIBHB"
_SEAL_SIZE = const(16)  # calcsize(_SEAL_FMT) + 4
_NO_BATT = const(0xFFFF)
_ENTRY = const(5)
_MAX = const(64)  # §2.8: 1 <= N <= 64
_SLACK = const(3)  # seconds a wake may be late and still take its slot
_U32 = 0xFFFFFFFF
_KIND_BLOCK = const(7)
_NO_RH = b"\xff\xff"


class BlockError(Exception):
    pass


def slot(temp, fault):
    """The 2-byte temperature slot of §2.8: int16 BE, or 0x80 c for fault c."""
    if fault is not None:
        return bytes((0x80, fault & 0xFF))
    return struct.pack(">h", temp)


def rh_slot(rh):
    return _NO_RH if rh is None else struct.pack(">H", rh)


def _crc(b, v=0):
    return binascii.crc32(b, v) & _U32


class _Open:
    """One channel's open block, as read from flash."""

    def __init__(self, t, ivl, tq, ch, cal):
        self.t = t
        self.ivl = ivl
        self.tq = tq
        self.ch = ch
        self.cal = cal
        self.temps = bytearray()
        self.rhs = bytearray()

    def n(self):
        return len(self.temps) // 2

    def fields(self, batt, alarm):
        f = {1: _KIND_BLOCK, 4: self.t, 5: self.tq, 17: self.ivl, 18: bytes(self.temps)}
        for i in range(0, len(self.rhs), 2):
            if self.rhs[i : i + 2] != _NO_RH:  # §2.8: all-0xFFFF rhs is omitted
                f[19] = bytes(self.rhs)
                break
        if self.ch:
            f[13] = self.ch
        if self.cal is not None:
            f[14] = self.cal
        if batt is not None:
            f[15] = batt
        if alarm:
            f[16] = alarm
        return f


class Blocks:
    def __init__(self, fs, root, size=12):
        if type(size) is not int or size < 2 or size > _MAX:
            raise BlockError("block size is 2..64 readings")
        self._fs = fs
        self._root = root
        self.size = size
        self._cache = {}
        self.signed = 0  # block records queued by this object (tests, sim)
        self.dropped = 0  # readings of blocks the queue refused

    # -- flash ----------------------------------------------------------

    def _path(self, ch):
        return "%s/b%d" % (self._root, ch)

    def _load(self, ch):
        if ch in self._cache:
            return self._cache[ch]
        b = None
        p = self._path(ch)
        if self._fs.size(p) >= _HDR_SIZE:
            with self._fs.open(p, "rb") as f:
                raw = f.read()
            b = self._parse(raw, ch)
        self._cache[ch] = b
        return b

    def _parse(self, raw, ch):
        h = raw[:_HDR_SIZE]
        if h[:4] != _MAGIC or struct.unpack("<I", h[19:23])[0] != _crc(h[:19]):
            return None  # a damaged header: nothing of it can be dated
        _, t, ivl, tq, c, has_cal, cal = struct.unpack(_HDR, h[:19])
        if c != ch or ivl < 1:
            return None
        b = _Open(t, ivl, tq, c, cal if has_cal else None)
        pos = _HDR_SIZE
        i = 0
        while pos + _ENTRY <= len(raw) and i < _MAX:
            e = raw[pos : pos + 4]
            if raw[pos + 4] != _crc(e, i) & 0xFF:
                break  # a torn or damaged tail: not a reading
            b.temps.extend(e[:2])
            b.rhs.extend(e[2:4])
            pos += _ENTRY
            i += 1
        return b if i else None

    def _seal_of(self, ch):
        p = self._path(ch) + ".s"
        if self._fs.size(p) < 0:
            return None
        with self._fs.open(p, "rb") as f:
            raw = f.read()
        if (len(raw) != _SEAL_SIZE or raw[:4] != _SEAL
                or struct.unpack("<I", raw[12:])[0] != _crc(raw[:12])):
            return None
        seq, n, batt, alarm = struct.unpack(_SEAL_FMT, raw[:12])[1:]
        return seq, n, None if batt == _NO_BATT else batt, alarm

    def _write_seal(self, ch, seq, n, batt, alarm):
        p = self._path(ch) + ".s"
        b = struct.pack(_SEAL_FMT, _SEAL, seq, n, _NO_BATT if batt is None else batt, alarm)
        with self._fs.open(p + ".tmp", "wb") as f:
            f.write(b + struct.pack("<I", _crc(b)))
            f.flush()
        self._fs.rename(p + ".tmp", p)

    def _names(self):
        try:
            return self._fs.listdir(self._root)
        except OSError:  # no directory yet: no block was ever opened
            return []

    def _remove(self, ch):
        p = self._path(ch)
        for q in (p, p + ".s"):  # journal first: a seal alone means "done"
            if self._fs.size(q) >= 0:
                self._fs.remove(q)
        self._cache[ch] = None

    # -- the open block -------------------------------------------------

    def open_channels(self):
        out = []
        for name in self._names():
            if len(name) > 1 and name[0] == "b" and name[1:].isdigit():
                ch = int(name[1:])
                if self._load(ch) is not None:
                    out.append(ch)
        out.sort()
        return out

    def count(self, ch):
        b = self._load(ch)
        return 0 if b is None else b.n()

    def fits(self, ch, t, tq, ivl, cal):
        """The time a reading measured at ``t`` takes in the open block of
        ``ch``, or None when it cannot join it (close the block first)."""
        b = self._load(ch)
        if b is None or b.n() >= self.size or b.tq != tq or b.ivl != ivl or b.cal != cal:
            return None
        due = b.t + b.n() * ivl
        slack = min(_SLACK, ivl // 4)
        if t < due - slack or t > due + slack:
            return None
        return due

    def add(self, ch, t, tq, ivl, cal, temp, fault, rh):
        """Append a reading, durably. ``t`` must come from ``fits`` when a
        block is open; with none open it starts a block. Returns N."""
        if fault is None and rh is not None and not 0 <= rh <= 10000:
            raise BlockError("rh out of range")
        b = self._load(ch)
        p = self._path(ch)
        if b is None:
            if t < 0 or t > _U32 or ivl < 1 or ivl > 86400:
                raise BlockError("bad block time or interval")
            if self._fs.size(self._root) < 0:
                self._fs.makedirs(self._root)
            b = _Open(t, ivl, tq, ch, cal)
            h = struct.pack(_HDR, _MAGIC, t, ivl, tq, ch, cal is not None,
                            0 if cal is None else cal)
            data = h + struct.pack("<I", _crc(h))
            mode = "wb"
        else:
            if t != b.t + b.n() * b.ivl or b.n() >= self.size:
                raise BlockError("reading does not continue the open block")
            data = b""
            mode = "ab"
        e = slot(temp, fault) + (_NO_RH if fault is not None else rh_slot(rh))
        data += e + bytes((_crc(e, b.n()) & 0xFF,))
        with self._fs.open(p, mode) as f:
            f.write(data)
            f.flush()
        b.temps.extend(e[:2])
        b.rhs.extend(e[2:])
        self._cache[ch] = b
        return b.n()

    # -- signing --------------------------------------------------------

    def close(self, ch, core, batt, alarm):
        """Sign the open block of ``ch`` and queue it. Returns True when it
        was queued, False when the queue refused it (its readings are
        counted in ``dropped``, the full-storage policy), None when no block
        was open."""
        b = self._load(ch)
        if b is None:
            return None
        alarm = alarm or 0
        self._write_seal(ch, core.state.seq, b.n(), batt, alarm)
        return self._sign(ch, b, core, batt, alarm)

    def _sign(self, ch, b, core, batt, alarm):
        rec = core.record(b.fields(batt, alarm))
        ok = core.enqueue(rec)
        if ok:
            self.signed += 1
        else:
            self.dropped += b.n()
        self._remove(ch)
        return ok

    def resume(self, core, restart, batt=None, alarm=0):
        """Finish what a reset interrupted; sign every open block after a
        real start (``restart``, with ``batt`` and ``alarm`` now). Returns
        (blocks signed, readings the queue refused)."""
        n = 0
        lost = self.dropped
        for name in self._names():
            if not (len(name) > 3 and name[0] == "b" and name.endswith(".s")
                    and name[1:-2].isdigit()):
                continue
            ch = int(name[1:-2])
            s = self._seal_of(ch)
            b = self._load(ch)
            if s is None or b is None or s[0] < core.state.seq:
                self._remove(ch)  # queued already (or nothing to seal)
                continue
            # sealed, never queued: sign it now, as it would have been
            if self._sign(ch, b, core, s[2], s[3]):
                n += 1
        if restart:
            for ch in self.open_channels():
                if self.close(ch, core, batt, alarm):
                    n += 1
        return n, self.dropped - lost


def from_config(cfg, fs=None):
    """config.json's ``block`` (default 12, §2.8; above 64 means 64, not a
    number means 12): its Blocks under the device's directory, or None for
    1 (every reading a kind-1 record)."""
    n = cfg.get("block", 12)
    if type(n) is not int:
        n = 12  # a bad key must not stop the logger (it would boot-loop)
    if n <= 1:
        return None
    n = min(n, _MAX)
    import ct_fs
    import ct_provision

    return Blocks(fs or ct_fs.Fs(), cfg.get("dir", ct_provision.ROOT), n)
