"""A durable FIFO of records on LittleFS that survives a power cut anywhere.

    q = Queue(fs, "ct/q", segments=96, seg_size=8188, reserve=2048)
    q.put(rec)            # True when durable; False when full (the policy)
    q.put(rec, True)      # may use the reserve (status records)
    q.fits(n, priority)   # would a record of n bytes be accepted now?
    c = q.head()          # cursor of the oldest unacked record (or None)
    rec, nxt = q.read(c)  # the record at c and the cursor after it (raises
                          # CorruptRecord, with .next, if flash damaged it)
    q.ack(nxt, mark)      # delete every record before cursor nxt; commit mark
    q.mark                # the mark of the last ack (u32, see below)
    q.count(), q.free(), q.low()
    q.last()              # newest readable record (bytes) or None

Layout: a fixed ring of ``segments`` files ``s000``... of at most
``seg_size`` bytes, and a pointer file ``ptr``. A frame is

    len (u16 LE) | qid (u32 LE) | record | CRC-32 (u32 LE) of the rest

``qid`` numbers frames 0, 1, 2... and never repeats, so a stale frame left
in a recycled segment, or a torn one, cannot pass for the next record.
``ptr`` holds the committed head (oldest unacked: qid, segment, offset), a
tail hint and the owner's ``mark``; it is rewritten as ``ptr.tmp`` + rename
(atomic).

``mark`` is a 32-bit value the owner commits together with each ack, so it
always describes the head: ct_uplink keeps there the seq the head record
should have (everything below it is settled at the gateway), which is how
it tells records lost on flash from records already acked. 0 in a new
queue; MARK_UNKNOWN (0xFFFFFFFF) after an ack that gave none, and in a queue
written by firmware before marks (``ptr`` magic ``CTq1``, read unchanged).

Damage (bit rot, a failing flash): a committed frame whose header (length,
qid) is intact but whose CRC fails is kept as a frame - read() raises
CorruptRecord for it and its qid is never reused, even when it is the
newest. A frame whose header is damaged cannot be measured: read() finds
the next valid frame again (the next qid in the same segment, else the
first frame of a later segment) and raises CorruptRecord pointing there.
Which *records* were lost is the owner's business (ct_uplink counts seqs).

Commit points:
  put    appending the frame and flush() (LittleFS commits the file
         then, or keeps the old content); the tail is found again at mount
         by scanning valid frames with consecutive qids from the tail hint.
  ack    the rename of ``ptr`` with the new head; files of fully acked
         segments are removed afterwards (compaction), and again at every
         mount, so a cut in between only delays it.
  roll   a frame that does not fit opens the next segment ('wb'); ``ptr``
         is rewritten with the new tail hint so a mount scans one segment.

Full policy (docs/protocol.md §2.4 event 5): keep the oldest unacked
records, refuse new ones. A put that would leave less than ``reserve``
bytes free is refused unless it is a priority put, so the status records
that report the shortage still fit. ``low()`` tells when free space is
under ``low_water`` (event 4).

Figures (bench/bench_firmware.py): a reading of 131-135 bytes makes a
141-145-byte frame, about 7.1 records per KiB of segment; the default 96
segments of 8188 bytes (two 4 KiB LittleFS blocks each: 768 KiB of the
~960 KiB filesystem, the rest is firmware and metadata) hold 56 readings
each, about 5,360 in all after the reserve: 19 days at 5 minutes, 37 at 10.
"""

import binascii
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_HDR = const(6)
_CRC = const(4)
_OVER = const(10)  # _HDR + _CRC
_MAX_REC = const(1024)
_PTR_MAGIC = b"CTq2"
_PTR_FMT = "<4sIIIIIII"
_PTR_SIZE = const(36)  # calcsize(_PTR_FMT) + 4
_PTR1_MAGIC = b"CTq1"  # before marks: no mark field, 32 bytes
_PTR1_SIZE = const(32)
_U32 = 0xFFFFFFFF
MARK_UNKNOWN = 0xFFFFFFFF
_SCAN = const(256)  # bytes read at a time when looking for a frame again


class QueueError(Exception):
    pass


class CorruptRecord(QueueError):
    """A committed record whose bytes changed on flash. ``next`` is the
    cursor after it: the uplink acks past it and reports it dropped."""

    def __init__(self, qid, nxt):
        super().__init__("record %d is corrupt on flash" % qid)
        self.next = nxt


class Queue:
    def __init__(self, fs, root, segments=96, seg_size=8188, reserve=2048, low_water=16384):
        if segments < 2 or segments > 999 or seg_size < 64:
            raise QueueError("need 2..999 segments of >= 64 bytes")
        self._fs = fs
        self._root = root
        self._n = segments
        self._size = seg_size
        self.reserve = reserve
        self.low_water = low_water
        self._buf = bytearray(_MAX_REC + _OVER)
        self._mv = memoryview(self._buf)
        self._rf = None  # (segment, open file) kept for reading
        self.mark = 0
        self.mount()

    # --- files ---------------------------------------------------------------

    def _seg(self, i):
        return "%s/s%03d" % (self._root, i)

    def _ptr(self):
        return self._root + "/ptr"

    def _close_reader(self):
        if self._rf is not None:
            try:
                self._rf[1].close()
            except OSError:
                pass
            self._rf = None

    def _reader(self, seg):
        if self._rf is None or self._rf[0] != seg:
            self._close_reader()
            self._rf = (seg, self._fs.open(self._seg(seg), "rb"))
        return self._rf[1]

    def _write_ptr(self):
        b = struct.pack(_PTR_FMT, _PTR_MAGIC, self._hq, self._hs, self._ho,
                        self._tq, self._ts, self._to, self.mark)
        b += struct.pack("<I", binascii.crc32(b) & _U32)
        tmp = self._root + "/ptr.tmp"
        with self._fs.open(tmp, "wb") as f:
            f.write(b)
            f.flush()
        self._fs.rename(tmp, self._ptr())

    def _read_ptr(self):
        if self._fs.size(self._ptr()) < 0:
            return None
        with self._fs.open(self._ptr(), "rb") as f:
            b = f.read(_PTR_SIZE + 1)
        n = len(b)
        if not ((n == _PTR_SIZE and b[:4] == _PTR_MAGIC)
                or (n == _PTR1_SIZE and b[:4] == _PTR1_MAGIC)):
            raise QueueError("queue pointer file is corrupt")
        if struct.unpack("<I", b[n - 4 :])[0] != binascii.crc32(b[: n - 4]) & _U32:
            raise QueueError("queue pointer file is corrupt")
        if n == _PTR1_SIZE:
            return struct.unpack("<IIIIII", b[4:28]) + (MARK_UNKNOWN,)
        return struct.unpack(_PTR_FMT, b[: n - 4])[1:]

    # --- frames --------------------------------------------------------------

    def _frame_at(self, seg, off, qid):
        """Length of the valid frame with this qid at (seg, off); its negated
        length when the header fits but the CRC fails; 0 when no frame."""
        size = self._fs.size(self._seg(seg))
        if size < off + _OVER + 1:
            return 0
        f = self._reader(seg)
        f.seek(off)
        mv = self._mv
        if f.readinto(mv[:_HDR]) != _HDR:
            return 0
        n, q = struct.unpack("<HI", self._buf[:_HDR])
        if n == 0 or n > _MAX_REC or q != qid or off + _OVER + n > size:
            return 0
        if f.readinto(mv[_HDR : _HDR + n + _CRC]) != n + _CRC:
            return 0
        crc = struct.unpack("<I", self._buf[_HDR + n : _OVER + n])[0]
        if binascii.crc32(mv[: _HDR + n]) & _U32 != crc:
            return -(_OVER + n)
        return _OVER + n

    def mount(self):
        """(Re)read the committed state and find the tail again."""
        self._close_reader()
        fs = self._fs
        fs.makedirs(self._root)
        p = self._read_ptr()
        if p is None:
            for name in fs.listdir(self._root):
                if name[:1] == "s" or name == "ptr.tmp":
                    fs.remove(self._root + "/" + name)
            self._hq = self._tq = 0
            self._hs = self._ts = 0
            self._ho = self._to = 0
            self.mark = 0
            self._write_ptr()
        else:
            self._hq, self._hs, self._ho, self._tq, self._ts, self._to, self.mark = p
            if self._hs >= self._n or self._ts >= self._n:
                raise QueueError("queue has %d segments, pointer says more" % self._n)
        # scan forward from the tail hint for frames appended since
        seg, off, qid = self._ts, self._to, self._tq
        while True:
            n = self._frame_at(seg, off, qid)
            if n < 0:
                # whole and with our qid, CRC wrong: committed, then damaged
                # (LittleFS commits an append whole or not at all; a torn one
                # is short). Keep it, so its qid is never handed out again.
                n = -n
            if n > 0:
                off += n
                qid = (qid + 1) & _U32
                continue
            # a damaged header, with whole frames after it? (a torn append
            # is the last thing in its segment: nothing whole follows it)
            o = self._find(seg, off + 1, fs.size(self._seg(seg)), (qid + 1) & _U32, True)
            if o >= 0:
                off, qid = o, (qid + 1) & _U32  # the damaged frame keeps its qid
                continue
            nxt = (seg + 1) % self._n
            if nxt != self._hs and self._frame_at(nxt, 0, qid) > 0:
                seg, off = nxt, 0
                continue
            break
        self._ts, self._to, self._tq = seg, off, qid
        # garbage after the tail (a torn append): never append behind it
        self._dirty = fs.size(self._seg(seg)) > off
        self._compact()

    def _live(self, seg):
        # is segment seg in the ring between head and tail (inclusive)?
        return (seg - self._hs) % self._n <= (self._ts - self._hs) % self._n

    def _compact(self):
        """Remove the files of segments outside head..tail."""
        self._close_reader()
        for name in self._fs.listdir(self._root):
            if len(name) == 4 and name[0] == "s":
                try:
                    i = int(name[1:])
                except ValueError:
                    continue
                if i >= self._n or not self._live(i):
                    self._fs.remove(self._root + "/" + name)

    # --- API -----------------------------------------------------------------

    def count(self):
        return (self._tq - self._hq) & _U32

    def free(self):
        """Bytes that new frames can still use."""
        used = (self._ts - self._hs) % self._n + 1
        room = self._size - self._to
        if self._dirty:
            room = 0
        return (self._n - used) * self._size + room

    def low(self):
        return self.free() < self.low_water

    def fits(self, n, priority=False):
        """Would a record of n bytes be accepted now?"""
        need = n + _OVER
        if need > self._size or self.free() - need < (0 if priority else self.reserve):
            return False
        if self._dirty or self._to + need > self._size:
            return (self._ts + 1) % self._n != self._hs
        return True

    def put(self, rec, priority=False):
        """Append rec durably. False when full (nothing was written)."""
        n = len(rec)
        if n == 0 or n > _MAX_REC:
            raise QueueError("record of %d bytes" % n)
        need = n + _OVER
        if need > self._size:
            raise QueueError("record larger than a segment")
        if self.free() - need < (0 if priority else self.reserve):
            return False
        roll = self._dirty or self._to + need > self._size
        seg = self._ts
        if roll:
            seg = (seg + 1) % self._n
            if seg == self._hs:
                return False
        b = self._buf
        struct.pack_into("<HI", b, 0, n, self._tq)
        b[_HDR : _HDR + n] = rec
        struct.pack_into("<I", b, _HDR + n, binascii.crc32(self._mv[: _HDR + n]) & _U32)
        self._close_reader()
        with self._fs.open(self._seg(seg), "wb" if roll else "ab") as f:
            f.write(self._mv[:need])
            f.flush()
        self._tq = (self._tq + 1) & _U32
        if roll:
            self._ts, self._to, self._dirty = seg, need, False
            self._write_ptr()
        else:
            self._to += need
        return True

    def head(self):
        """Cursor (qid, segment, offset) of the oldest unacked record."""
        if self._hq == self._tq:
            return None
        return (self._hq, self._hs, self._ho)

    def tail(self):
        return (self._tq, self._ts, self._to)

    def read(self, cur):
        """(record bytes, next cursor) at cursor cur; (None, cur) at the tail."""
        qid, seg, off = cur
        if qid == self._tq:
            return None, cur
        s, o = seg, off
        for _ in range(2):
            n = self._frame_at(s, o, qid)
            if n > 0:
                return bytes(self._buf[_HDR : n - _CRC]), ((qid + 1) & _U32, s, o + n)
            if n < 0:
                raise CorruptRecord(qid, ((qid + 1) & _U32, s, o - n))
            s, o = (s + 1) % self._n, 0
        # the frame at cur cannot even be measured: find the next one again
        raise CorruptRecord(qid, self._resync(qid, seg, off))

    def _inside(self, q, after):
        # is qid q a frame after qid ``after`` and before the tail?
        d = (q - after) & _U32
        return 0 < d < ((self._tq - after) & _U32)

    def _find(self, seg, pos, end, qid, whole):
        """Offset of the frame ``qid`` in segment seg between pos and end
        (looked up by its qid bytes, then measured; ``whole``: its CRC must
        hold too), or -1."""
        pat = struct.pack("<I", qid)
        while pos + _HDR <= end:
            f = self._reader(seg)
            f.seek(pos)
            k = f.readinto(self._mv[: min(_SCAN, end - pos)])
            chunk = bytes(self._buf[:k])
            i = chunk.find(pat, 2)
            while i >= 0:
                n = self._frame_at(seg, pos + i - 2, qid)
                if n > 0 or (n < 0 and not whole):
                    return pos + i - 2
                i = chunk.find(pat, i + 1)
            if k < _SCAN:
                break
            pos += k - 5  # a qid may straddle two reads
        return -1

    def _resync(self, qid, seg, off):
        """Cursor of the first frame after damaged frame ``qid`` at (seg,
        off): the frame qid+1 further on in the segment, else the first
        frame of a later segment, else the tail."""
        want = (qid + 1) & _U32
        if want != self._tq:
            end = self._to if seg == self._ts else self._fs.size(self._seg(seg))
            o = self._find(seg, off + 1, end, want, False)
            if o >= 0:
                return (want, seg, o)
        s = seg
        while s != self._ts:
            s = (s + 1) % self._n
            q = self._qid_at(s)
            if q is not None and self._inside(q, qid) and self._frame_at(s, 0, q) != 0:
                return (q, s, 0)
        return self.tail()

    def ack(self, cur, mark=MARK_UNKNOWN):
        """Delete every record before cursor cur (one returned by read) and
        commit ``mark`` with the new head (see the module notes)."""
        qid, seg, off = cur
        if (qid - self._hq) & _U32 > self.count():
            raise QueueError("ack beyond the tail")
        if qid == self._hq:
            return 0
        done = (qid - self._hq) & _U32
        moved = seg != self._hs
        self._hq, self._hs, self._ho = qid, seg, off
        self.mark = mark & _U32
        self._write_ptr()
        if moved:
            self._compact()
        return done

    def last(self):
        """The newest readable record, or None (used at start to recover
        ct_state). Damaged frames are passed over."""
        if self.count() == 0:
            return None
        c = self.head()
        if self._ts != self._hs:
            q = self._qid_at(self._ts)
            if q is not None and (q == self._hq or self._inside(q, self._hq)):
                c = (q, self._ts, 0)
        rec = None
        while True:
            try:
                r, nxt = self.read(c)
            except CorruptRecord as e:
                c = e.next
                continue
            if r is None:
                return rec
            rec, c = r, nxt

    def _qid_at(self, seg):
        # the qid in the header of segment seg's first frame, or None
        if self._fs.size(self._seg(seg)) < _HDR:
            return None
        f = self._reader(seg)
        f.seek(0)
        if f.readinto(self._mv[:_HDR]) != _HDR:
            return None
        return struct.unpack("<HI", self._buf[:_HDR])[1]

    def close(self):
        self._close_reader()
