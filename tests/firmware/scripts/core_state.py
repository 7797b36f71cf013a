"""ct_state: counters across reboots, deep sleep and power cuts."""

import ct_state
from ct_state import State, StateError
from fakefs import Disk, FakeFs, PowerCut
from fwrun import main, raises


class Mem:
    """RTCMem-like: get/put of small keyed blobs (lost with power)."""

    def __init__(self):
        self.d = {}

    def get(self, k):
        return self.d.get(k)

    def put(self, k, v):
        self.d[k] = bytes(v)


def test_fresh_then_counted_starts():
    fs = FakeFs()
    s = State(fs, "st")
    assert s.begin() == 1 and s.seq == 0 and s.head == bytes(16) and s.cmd == 0
    s.advance(0, b"\x11" * 16)
    s2 = State(fs, "st")
    assert s2.begin() == 2 and s2.seq == 1 and s2.head == b"\x11" * 16


def test_deep_sleep_wake_keeps_boot_power_loss_counts():
    fs, mem = FakeFs(), Mem()
    State(fs, "st", mem).begin()
    s = State(fs, "st", mem)
    assert s.begin(wake=True) == 1  # same power session
    s.advance(0, b"\x22" * 16)
    assert State(fs, "st", Mem()).begin(wake=True) == 2  # RTC memory gone: a real start
    assert State(fs, "st", mem).begin(wake=False) == 3


def test_rtc_copy_newer_than_flash_wins():
    fs, mem = FakeFs(), Mem()
    s = State(fs, "st", mem)
    s.begin()
    s.advance(0, b"\x01" * 16)
    snapshot = fs.disk.files["st"]
    s.advance(1, b"\x02" * 16)
    fs.disk.files["st"] = snapshot  # flash write lost, RTC kept (watchdog reset)
    s2 = State(fs, "st", mem)
    s2.begin()
    assert s2.seq == 2 and s2.head == b"\x02" * 16


def test_stale_rtc_copy_never_moves_seq_back():
    fs, mem = FakeFs(), Mem()
    s = State(fs, "st", mem)
    s.begin()
    s.advance(0, b"\x01" * 16)
    old = mem.d[b"S"]
    s.advance(1, b"\x02" * 16)
    s.advance(2, b"\x03" * 16)
    mem.d[b"S"] = old  # another RTC-memory user wrote back an old buffer
    s2 = State(fs, "st", mem)
    s2.begin(wake=True)
    assert s2.seq == 3 and s2.head == b"\x03" * 16


def test_corrupt_flash_is_an_error_unless_rtc_holds_the_state():
    fs, mem = FakeFs(), Mem()
    State(fs, "st", mem).begin()
    b = bytearray(fs.disk.files["st"])
    b[10] ^= 1
    fs.disk.files["st"] = bytes(b)
    raises(StateError, State(fs, "st").begin)
    s = State(fs, "st", mem)
    assert s.begin() == 2


def test_command_counter_only_grows_and_persists():
    fs = FakeFs()
    s = State(fs, "st")
    s.begin()
    s.accept_command(5)
    for bad in (5, 4, 0, -1, None, "6", 1 << 32):
        raises(StateError, s.accept_command, bad)
    s2 = State(fs, "st")
    s2.begin()
    assert s2.cmd == 5


def test_advance_out_of_order_and_recover():
    fs = FakeFs()
    s = State(fs, "st")
    s.begin()
    raises(StateError, s.advance, 3, bytes(16))
    raises(StateError, s.advance, 0, bytes(15))
    assert s.recover(9, b"\x09" * 16) and s.seq == 10 and s.head == b"\x09" * 16
    assert not s.recover(4, b"\x04" * 16) and s.seq == 10


def test_power_cut_at_every_step():
    def work(fs, log):
        s = State(fs, "st")
        s.begin()
        for i in range(3):
            log["doing"] = i
            s.advance(i, bytes((i + 1,)) * 16)
            log["done"] = i + 1
        s.accept_command(7)
        log["cmd"] = 7

    fs = FakeFs()
    work(fs, {})
    total = fs.steps
    for cut in range(1, total + 1):
        disk = Disk()
        log = {"done": 0, "doing": None, "cmd": 0}
        try:  # noqa: SIM105 (no contextlib in MicroPython)
            work(FakeFs(disk, cut), log)
        except PowerCut:
            pass
        s = State(FakeFs(disk), "st")
        s.load()
        # the file is the old or the new blob: never older than confirmed
        assert s.seq in (log["done"], log["done"] + 1), (cut, s.seq, log)
        if s.seq:
            assert s.head == bytes((s.seq,)) * 16
        assert s.cmd in (0, 7) and (log["cmd"] == 0 or s.cmd == 7)


def test_blob_size_is_forty_bytes():
    assert len(ct_state._pack(1, 2, 3, 4, bytes(16))) == 40


if __name__ == "__main__":
    main(globals())
