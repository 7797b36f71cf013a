"""The signer's counters, kept across reboots and power cuts.

    st = State(fs, "ct/state", rtc=None)   # rtc: ct_rtcmem.RTCMem or None
    st.begin(wake=False)    # every start: load; boot += 1 unless this is a
                            # deep-sleep wake whose RTC copy is valid
    st.boot, st.seq, st.head, st.cmd      # head = prev of the next record
    st.advance(seq, head)   # after a record with this seq is queued
    st.accept_command(n)    # raises StateError unless n > st.cmd; persists
    st.recover(last_rec_seq, last_rec_link)   # from the queue, see below

Persistence: a 40-byte blob (magic, generation, boot, seq, cmd, head,
CRC-32) written to ``path + ".tmp"`` and renamed over ``path`` (atomic on
LittleFS): after a power cut the file is the old or the new blob, never a
mix. The same blob goes first into RTC memory (key ``b"S"``), which
survives deep sleep and watchdog resets but not power loss. At start the
copy with the newer generation wins: RTC memory when a reset fell between
the two writes, flash otherwise - a stale RTC copy can never move seq back.
A valid RTC copy also tells a deep-sleep wake (same power session, boot
kept) from a real start.

Never reuse a seq: a record is queued *before* ``advance`` persists the new
seq, so a cut between the two leaves the queue ahead of the state file.
``Core`` (ct_core) calls ``recover`` with the queue's newest record at
start, which moves seq/head past it. Lost: nothing; reused: nothing.
"""

import binascii
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MAGIC = b"CTs1"
_FMT = "<4sIIII16s"
_SIZE = const(40)  # calcsize(_FMT) + 4 (crc)
_RTC_KEY = b"S"
_U32 = 0xFFFFFFFF


class StateError(Exception):
    pass


def _pack(gen, boot, seq, cmd, head):
    b = struct.pack(_FMT, _MAGIC, gen, boot, seq, cmd, head)
    return b + struct.pack("<I", binascii.crc32(b) & _U32)


def _unpack(b):
    if b is None or len(b) != _SIZE or b[:4] != _MAGIC:
        return None
    if struct.unpack("<I", b[36:])[0] != binascii.crc32(b[:36]) & _U32:
        return None
    return struct.unpack(_FMT, b[:36])[1:]


class State:
    def __init__(self, fs, path, rtc=None):
        self._fs = fs
        self._path = path
        self._rtc = rtc
        self.gen = 0
        self.boot = 0
        self.seq = 0
        self.cmd = 0
        self.head = bytes(16)
        self.fresh = True  # no state anywhere: a new device

    def _read_flash(self):
        if self._fs.size(self._path) < 0:
            return None
        with self._fs.open(self._path, "rb") as f:
            b = f.read(_SIZE + 1)
        v = _unpack(b)
        if v is None:
            raise StateError("state file %s is corrupt" % self._path)
        return v

    def load(self):
        """Read the newest valid copy: flash, or RTC memory when its
        generation is ahead (a reset between the two writes). A stale RTC
        copy (another writer of RTC memory put back an old buffer) never
        wins. Raises StateError when flash is corrupt and RTC cannot stand in."""
        r = None
        if self._rtc is not None:
            r = _unpack(self._rtc.get(_RTC_KEY))
        try:
            v = self._read_flash()
        except StateError:
            if r is None:
                raise
            v = None
        if v is None or (r is not None and 0 < ((r[0] - v[0]) & _U32) < 0x80000000):
            v = r
        if v is None:
            self.fresh = True
            return False
        self.gen, self.boot, self.seq, self.cmd, self.head = v
        self.head = bytes(self.head)
        self.fresh = False
        return True

    def begin(self, wake=False):
        """Load, then count this start. A deep-sleep wake (``wake``) with a
        valid RTC copy is the same power session: boot stays."""
        had_rtc = self._rtc is not None and _unpack(self._rtc.get(_RTC_KEY)) is not None
        self.load()
        if not (wake and had_rtc):
            if self.boot >= _U32:
                raise StateError("boot counter exhausted")
            self.boot += 1
            self.save()
        return self.boot

    def save(self):
        self.gen = (self.gen + 1) & _U32
        b = _pack(self.gen, self.boot, self.seq, self.cmd, self.head)
        if self._rtc is not None:
            self._rtc.put(_RTC_KEY, b)
        tmp = self._path + ".tmp"
        with self._fs.open(tmp, "wb") as f:
            f.write(b)
            f.flush()
        self._fs.rename(tmp, self._path)
        self.fresh = False

    def advance(self, seq, head):
        """The record ``seq`` (whose chain link is ``head``) is queued."""
        if seq != self.seq or len(head) != 16:
            raise StateError("advance out of order: %d, expected %d" % (seq, self.seq))
        if seq >= _U32:
            raise StateError("seq exhausted")
        self.seq = seq + 1
        self.head = bytes(head)
        self.save()

    def recover(self, last_seq, last_link):
        """The queue's newest record has ``last_seq``: never sign below it."""
        if last_seq >= self.seq:
            self.seq = last_seq + 1
            self.head = bytes(last_link)
            self.save()
            return True
        return False

    def accept_command(self, counter):
        """Persist a command counter; refuse one that is not higher (§5.3)."""
        if type(counter) is not int or counter <= self.cmd or counter > _U32:
            raise StateError("stale command counter %r (last %d)" % (counter, self.cmd))
        self.cmd = counter
        self.save()

    def forget_rtc(self):
        if self._rtc is not None:
            self._rtc.put(_RTC_KEY, b"")
