"""ct_queue: FIFO, ring and full policy; power cut at every write step."""

from ct_queue import MARK_UNKNOWN, CorruptRecord, Queue, QueueError
from fakefs import Disk, FakeFs, PowerCut
from fwrun import main, raises

SEGMENTS = 4


def rec(i):
    # variable length, self-describing: the id and a filler that depends on it
    n = 40 + (i * 37) % 70
    head = f"R{i:05d}:".encode()
    return head + bytes((i + j) & 0xFF for j in range(n - len(head)))


def rid(b):
    i = int(b[1:6])
    if b != rec(i):
        raise AssertionError(f"record {i} corrupted")
    return i


def small(fs, **kw):
    return Queue(fs, "q", segments=kw.get("segments", SEGMENTS), seg_size=kw.get("seg_size", 400),
                 reserve=kw.get("reserve", 0), low_water=kw.get("low_water", 0))


def ids(q):
    out = []
    c = q.head()
    while c is not None:
        b, c2 = q.read(c)
        if b is None:
            break
        out.append(rid(b))
        c = c2
    return out


def ack_n(q, n):
    c = q.head()
    for _ in range(n):
        b, c = q.read(c)
        if b is None:
            raise AssertionError("ack past the tail")
    return q.ack(c)


def test_fifo_roll_and_wrap_many_laps():
    fs = FakeFs()
    q = small(fs)
    nxt = 0
    kept = []
    for _ in range(30):
        for _ in range(5):
            assert q.put(rec(nxt))
            kept.append(nxt)
            nxt += 1
        assert ids(q) == kept
        ack_n(q, len(kept) - 2)
        kept = kept[-2:]
        q = small(fs)  # a remount sees the same queue
        assert ids(q) == kept and q.count() == 2
    # compaction: only the live segments have files
    segs = [n for n in fs.listdir("q") if n[0] == "s"]
    assert len(segs) <= 2, segs


def test_last_is_newest_after_remount():
    fs = FakeFs()
    q = small(fs)
    assert q.last() is None
    for i in range(11):
        q.put(rec(i))
        assert rid(q.last()) == i
    ack_n(q, 9)
    q = small(fs)
    assert rid(q.last()) == 10
    ack_n(q, 2)
    assert q.last() is None


def test_full_keeps_oldest_and_refuses_new():
    fs = FakeFs()
    q = small(fs, reserve=150)
    i = 0
    while q.put(rec(i)):
        i += 1
    assert i > 5
    assert ids(q) == list(range(i))  # the oldest are kept
    free = q.free()
    # the reserve still takes a priority record (status: "storage full")
    assert q.put(rec(900), True)
    assert q.free() < free
    while q.put(rec(901), True):
        pass
    assert not q.put(rec(902), True)
    ack_n(q, q.count() - 1)
    assert q.count() == 1
    assert q.put(rec(i))  # room again after the gateway acked


def test_low_water_and_free_figures():
    fs = FakeFs()
    q = Queue(fs, "q", segments=8, seg_size=1000, reserve=0, low_water=3000)
    assert q.free() == 8000 and not q.low()
    while not q.low():
        q.put(rec(1))
    assert q.free() < 3000


def test_oversize_and_empty_records_are_refused():
    q = small(FakeFs())
    raises(QueueError, q.put, b"")
    raises(QueueError, q.put, bytes(1025))
    raises(QueueError, q.put, bytes(395))  # larger than a segment


def test_torn_tail_is_never_appended_behind():
    fs = FakeFs()
    q = small(fs)
    for i in range(3):
        q.put(rec(i))
    # a torn append: half a frame at the end of the tail segment
    seg = f"q/s{q.tail()[1]:03d}"
    fs.disk.files[seg] = fs.disk.files[seg] + b"\x30\x00\x03\x00\x00\x00junk"
    q = small(fs)
    assert ids(q) == [0, 1, 2]
    assert q.put(rec(3))
    q = small(fs)
    assert ids(q) == [0, 1, 2, 3]


def test_corrupt_record_is_reported_not_skipped():
    fs = FakeFs()
    q = small(fs)
    for i in range(3):
        q.put(rec(i))
    seg = "q/s000"
    b = bytearray(fs.disk.files[seg])
    b[20] ^= 1  # flip a bit inside record 0
    fs.disk.files[seg] = bytes(b)
    q = small(fs)
    assert q.count() == 3  # the records after it are not lost
    e = raises(CorruptRecord, q.read, q.head())
    b, _ = q.read(e.next)
    assert rid(b) == 1


def test_mark_is_committed_with_the_ack_and_survives_a_remount():
    fs = FakeFs()
    q = small(fs)
    assert q.mark == 0  # a new queue
    for i in range(4):
        q.put(rec(i))
    c = q.head()
    for _ in range(2):
        _, c = q.read(c)
    q.ack(c, 1234)
    assert small(fs).mark == 1234
    _, c = q.read(q.head())
    q.ack(c)  # an ack without a mark leaves it unknown, never stale
    assert small(fs).mark == MARK_UNKNOWN


def test_pointer_file_of_the_old_format_is_read_with_an_unknown_mark():
    import binascii
    import struct

    fs = FakeFs()
    q = small(fs)
    for i in range(5):
        q.put(rec(i))
    ack_n(q, 2)
    new = fs.disk.files["q/ptr"]
    old = b"CTq1" + new[4:28]  # no mark field
    fs.disk.files["q/ptr"] = old + struct.pack("<I", binascii.crc32(old) & 0xFFFFFFFF)
    q = small(fs)
    assert ids(q) == [2, 3, 4] and q.mark == MARK_UNKNOWN
    ack_n(q, 1)
    assert len(fs.disk.files["q/ptr"]) == 36 and fs.disk.files["q/ptr"][:4] == b"CTq2"
    assert ids(small(fs)) == [3, 4]


def test_damaged_newest_frame_keeps_its_qid():
    fs = FakeFs()
    q = small(fs)
    for i in range(3):
        q.put(rec(i))
    seg = "q/s000"
    b = bytearray(fs.disk.files[seg])
    b[-10] ^= 1  # inside the newest record: whole, but its CRC fails
    fs.disk.files[seg] = bytes(b)
    q = small(fs)
    assert q.count() == 3 and rid(q.last()) == 1  # last() passes over it
    assert q.put(rec(3))
    q = small(fs)
    c = q.head()
    got = []
    while True:
        try:
            r, c = q.read(c)
        except CorruptRecord as e:
            got.append("x")
            c = e.next
            continue
        if r is None:
            break
        got.append(rid(r))
    assert got == [0, 1, "x", 3]


def test_damaged_header_is_read_past():
    fs = FakeFs()
    q = small(fs, seg_size=400, segments=4)
    for i in range(9):
        assert q.put(rec(i))
    segs = sorted(n for n in fs.disk.files if n.startswith("q/s"))
    b = bytearray(fs.disk.files[segs[0]])
    n = b[0] | (b[1] << 8)
    b[10 + n + 5] ^= 0x80  # the qid of the second frame of the first segment
    fs.disk.files[segs[0]] = bytes(b)
    q = small(fs)
    assert q.count() == 9
    c = q.head()
    b0, c = q.read(c)
    e = raises(CorruptRecord, q.read, c)
    assert e.next[0] == c[0] + 1
    b2, _ = q.read(e.next)
    assert (rid(b0), rid(b2)) == (0, 2)


def test_corrupt_pointer_file_stops_instead_of_guessing():
    fs = FakeFs()
    q = small(fs)
    q.put(rec(0))
    b = bytearray(fs.disk.files["q/ptr"])
    b[9] ^= 0x40
    fs.disk.files["q/ptr"] = bytes(b)
    raises(QueueError, small, fs)


# --- power cuts ---------------------------------------------------------------

PLAN = [("put", 9), ("ack", 4), ("put", 8), ("ack", 9), ("put", 6), ("ack", 3),
        ("put", 4), ("ack", 11)]


def workload(fs, log):
    """Run PLAN; log what completed: log["put"] ids in order, log["acked"]
    how many of them are confirmed acked, log["doing"] the step under way."""
    log["doing"] = ("mount",)
    q = small(fs)
    nxt = 0
    for op, n in PLAN:
        for _ in range(n if op == "put" else 1):
            if op == "put":
                log["doing"] = ("put", nxt)
                if not q.put(rec(nxt)):
                    raise AssertionError("queue unexpectedly full")
                log["put"].append(nxt)
                nxt += 1
            else:
                log["doing"] = ("ack", log["acked"] + n)
                ack_n(q, n)
                log["acked"] += n
    log["doing"] = None
    return q


def check_after_cut(disk, log, torn):
    fs = FakeFs(disk, None, torn)
    q = small(fs)
    got = ids(q)
    put, acked, doing = log["put"], log["acked"], log["doing"]
    allowed = [put[acked:]]
    if doing and doing[0] == "put":
        allowed.append(put[acked:] + [doing[1]])  # noqa: RUF005
    if doing and doing[0] == "ack":
        allowed.append(put[doing[1]:])
    if got not in allowed:
        raise AssertionError(f"after cut during {doing!r}: got {got!r}, allowed {allowed!r}")
    # the queue still works: new records go after the survivors, then drain
    base = 1000
    for i in range(3):
        assert q.put(rec(base + i))
    q = small(fs)
    assert ids(q) == got + [base, base + 1, base + 2]  # noqa: RUF005
    ack_n(q, len(got) + 3)
    q = small(fs)
    assert q.count() == 0 and ids(q) == []


def cut_everywhere(torn):
    fs = FakeFs(torn=torn)
    log = {"put": [], "acked": 0, "doing": None}
    workload(fs, log)
    total = fs.steps
    kinds = {}
    for _, kind, _ in fs.trace:
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds.get("rename", 0) >= 6 and kinds.get("remove", 0) >= 2, kinds
    for cut in range(1, total + 1):
        disk = Disk()
        fs = FakeFs(disk, cut, torn)
        log = {"put": [], "acked": 0, "doing": None}
        try:
            workload(fs, log)
        except PowerCut:
            pass
        else:
            raise AssertionError(f"no cut at step {cut} of {total}")
        check_after_cut(disk, log, torn)
    return total


def test_power_cut_at_every_step_littlefs():
    global SEGMENTS
    SEGMENTS = 6  # room for the survivors + 3 after any cut; still wraps
    try:
        assert cut_everywhere(False) > 100
    finally:
        SEGMENTS = 4


def test_power_cut_at_every_step_torn_writes():
    global SEGMENTS
    SEGMENTS = 6
    try:
        assert cut_everywhere(True) > 100
    finally:
        SEGMENTS = 4


def test_cut_during_recovery_itself():
    # cut, then cut again during the remount's own writes, then recover
    global SEGMENTS
    SEGMENTS = 6
    try:
        _cut_twice()
    finally:
        SEGMENTS = 4


def _cut_twice():
    for first in (5, 40, 77):
        disk = Disk()
        log = {"put": [], "acked": 0, "doing": None}
        try:  # noqa: SIM105 (no contextlib in MicroPython)
            workload(FakeFs(disk, first), log)
        except PowerCut:
            pass
        for second in (1, 2, 3):
            d2 = disk.copy()
            try:  # noqa: SIM105
                small(FakeFs(d2, second))
            except PowerCut:
                pass
            check_after_cut(d2, log, False)


if __name__ == "__main__":
    main(globals())
