"""Reading blocks on the logger (docs/protocol.md §2.8, kind 7): ct_block's
journal on a fake LittleFS, and ct_app with the real core, queue and uplink
to a scripted gateway: blocks fill and are signed once, an out-of-band
reading or an alarm closes the block and goes out at once as kind 1, a fault
is a fault slot, and a power cut anywhere (a block half full, a block being
signed) loses no stored reading and signs none twice."""

import ct_app
import ct_block
import ct_record
from _rig import Rig, payloads, readings
from fakefs import Disk, FakeFs
from fwrun import main, raises

# --- ct_block alone -----------------------------------------------------------


def _fs():
    fs = FakeFs(Disk())
    fs.mkdir("ct")
    return fs


def test_journal_keeps_readings_across_a_remount_and_drops_a_torn_tail():
    fs = _fs()
    b = ct_block.Blocks(fs, "ct", 12)
    assert b.fits(0, 1000, 3, 300, None) is None  # nothing open
    assert b.add(0, 1000, 3, 300, 7, 450, None, 6120) == 1
    assert b.fits(0, 1302, 3, 300, 7) == 1300  # a late wake takes its slot
    assert b.fits(0, 1310, 3, 300, 7) is None  # too late: a new block
    assert b.fits(0, 1300, 2, 300, 7) is None  # another clock quality
    assert b.fits(0, 1300, 3, 600, 7) is None  # another interval
    assert b.fits(0, 1300, 3, 300, None) is None  # another calibration
    assert b.add(0, 1300, 3, 300, 7, None, 2, None) == 2
    assert b.add(0, 1600, 3, 300, 7, -1850, None, None) == 3
    raises(ct_block.BlockError, b.add, 0, 1800, 3, 300, 7, 1, None, None)
    fs.disk.files["ct/b0"] = fs.disk.files["ct/b0"][:-2]  # a torn last entry
    b2 = ct_block.Blocks(FakeFs(fs.disk), "ct", 12)
    assert b2.open_channels() == [0] and b2.count(0) == 2
    f = b2._load(0).fields(3900, 0)
    assert f[4] == 1000 and f[5] == 3 and f[17] == 300 and f[14] == 7 and f[15] == 3900
    assert f[18] == b"\x01\xc2\x80\x02" and f[19] == b"\x17\xe8\xff\xff"
    assert 13 not in f and 16 not in f
    f[1], f[2], f[3], f[6] = 7, 1, 5, bytes(16)
    ct_record.check_fields(f)  # what the core will sign


def test_rhs_without_humidity_is_omitted_and_channels_are_apart():
    fs = _fs()
    b = ct_block.Blocks(fs, "ct", 4)
    b.add(1, 60, 0, 60, None, 100, None, None)
    b.add(1, 120, 0, 60, None, None, 6, None)
    b.add(2, 60, 0, 60, None, 200, None, 4000)
    f = b._load(1).fields(None, 5)
    assert 19 not in f and 15 not in f and f[16] == 5 and f[13] == 1
    assert b.open_channels() == [1, 2] and b.count(2) == 1


def test_block_size_is_checked():
    raises(ct_block.BlockError, ct_block.Blocks, _fs(), "ct", 1)
    raises(ct_block.BlockError, ct_block.Blocks, _fs(), "ct", 65)
    assert ct_block.from_config({"block": 1}) is None
    fs = _fs()
    assert ct_block.from_config({"block": 200, "dir": "ct"}, fs).size == 64
    assert ct_block.from_config({"block": "x", "dir": "ct"}, fs).size == 12
    assert ct_block.from_config({"dir": "ct"}, fs).size == 12


def test_firmware_refuses_what_the_spec_forbids_in_a_block():
    base = {1: 7, 2: 1, 3: 9, 4: 1000, 5: 3, 6: bytes(16), 17: 300}
    bad = [
        {18: b"\x01"},  # odd length
        {18: b"\x80\x00"},  # neither a temperature nor a fault
        {18: b"\x3a\x99"},  # 15001
        {18: b"\xd8\xef"},  # -10001
        {18: b"\x01\xc2", 19: b"\xff\xff"},  # rhs without humidity
        {18: b"\x80\x02", 19: b"\x10\x00"},  # rh with a fault
        {18: b"\x01\xc2", 19: b"\x27\x11"},  # rh 10001
        {18: b"\x01\xc2\x01\xc2", 19: b"\x10\x00"},  # rhs shorter than temps
        {18: b"\x01\xc2\x01\xc2", 4: 0xFFFFFFFF},  # end time beyond 2^32
        {18: b""},
    ]
    for extra in bad:
        f = dict(base)
        f.update(extra)
        raises(ct_record.RecordError, ct_record.check_fields, f)
    f = dict(base)
    f.update({18: b"\xd8\xf0\x3a\x98\x80\xff", 19: b"\x00\x00\x27\x10\xff\xff"})
    ct_record.check_fields(f)


# --- the logger -----------------------------------------------------------------


def test_blocks_fill_sign_once_and_reach_the_gateway_in_order():
    rig = Rig([300 + i for i in range(14)], size=4, rh=True)
    rig.wake(14)  # 14 readings at 5 minutes; uploads hourly
    rig.flush()
    ps = payloads(rig.gw)
    seqs = sorted(rig.gw.records)
    assert seqs == list(range(len(seqs))) and rig.gw.chain_errors == 0
    kinds = [p[1] for p in ps]
    assert 1 not in kinds and kinds.count(7) == 4
    blocks = [p for p in ps if p[1] == 7]
    assert [len(p[18]) // 2 for p in blocks] == [4, 4, 4, 2]  # the last one cut short
    rd = readings(rig.gw)
    assert [r[2] for r in rd] == rig.measured
    assert all(r[4] == 5000 + r[2] for r in rd)
    times = [r[0] for r in rd]
    assert all(times[i + 1] - times[i] == 300 for i in range(len(times) - 1))
    assert all(p[17] == 300 and p[14] == 5 and p[15] == 3900 and p[5] == 3 for p in blocks)


def test_the_open_block_is_signed_before_the_clock_set_record():
    rig = Rig([300 + i for i in range(6)], size=4, skew=600)  # 10 minutes slow
    rig.wake(6)
    rig.flush()
    ps = payloads(rig.gw)
    blocks = [p for p in ps if p[1] == 7]
    cs = next(p for p in ps if p[1] == 3 and p[30] == ct_app.EV_CLOCK_SET)
    assert blocks[0][5] == 3 and len(blocks[0][18]) == 2  # the slow clock's reading
    assert blocks[0][3] + 1 == cs[3]  # signed just before the clock-set record
    assert blocks[0][4] <= cs[37]  # dated on the clock as it was before the step
    assert [r[2] for r in readings(rig.gw)] == rig.measured


def test_with_the_clock_unset_readings_are_kind_1_then_blocks():
    # a tq-0 reading kept across a power cut would be signed in the next boot,
    # where no clock-set record of its own boot can date it (§12.2)
    rig = Rig([300 + i for i in range(6)], size=4, synced=False)
    rig.wake(6)
    rig.flush()
    ps = payloads(rig.gw)
    rd = [p for p in ps if p[1] in (1, 7)]
    assert rd[0][1] == 1 and rd[0][5] == 0  # before the gateway's ack set the clock
    assert all(p[1] == 7 and p[5] == 3 for p in rd[1:])
    assert [r[2] for r in readings(rig.gw)] == rig.measured


def test_out_of_band_reading_closes_the_block_and_goes_out_at_once():
    rig = Rig([450, 460, 470, 900, 480, 490], size=12)
    rig.wake(3)
    sent = len(rig.gw.records)
    rig.wake(1)  # 9.00 °C: above the band (8.00), the alarm delay not yet reached
    ps = payloads(rig.gw)
    assert len(rig.gw.records) > sent  # uploaded in that very wake
    assert [p[1] for p in ps if p[1] in (1, 7)] == [7, 1]
    assert len(next(p for p in ps if p[1] == 7)[18]) == 6  # cut short at 3 readings
    assert [p[10] for p in ps if p[1] == 1] == [900]
    rig.wake(2)
    rig.flush()
    rd = readings(rig.gw)
    assert [r[2] for r in rd] == rig.measured  # in time order, each once


def test_alarm_start_is_kind_1_with_its_status_and_the_fault_is_a_slot():
    err = OSError(1)  # a DS18B20 that does not answer: fault 1
    rig = Rig([450, err, 460, 900, 910, 920, 930, 450, 440], size=12)
    rig.wake(9)
    rig.flush()
    ps = payloads(rig.gw)
    rd = readings(rig.gw)
    assert [r[3] for r in rd].count(1) == 1  # the fault, once
    assert [r[2] for r in rd if r[2] is not None] == rig.measured
    kind1 = [p for p in ps if p[1] == 1]
    assert [p[10] for p in kind1] == [900, 910, 920, 930, 450]  # out of band, then the end
    assert any(p[1] == 3 and p[30] == 7 for p in ps) and any(p[1] == 3 and p[30] == 8 for p in ps)
    first = next(p for p in ps if p[1] == 7)
    assert first[18][2:4] == b"\x80\x01"  # fault 1 in the block's second slot


def test_power_cut_with_a_block_half_full_signs_it_at_restart():
    rig = Rig([400 + i for i in range(10)], size=12)
    rig.wake(3)
    rig.board.power_cycle()  # RTC memory and the clock are gone
    rig.board.t = 2000
    rig.wake(3)
    rig.flush()
    ps = payloads(rig.gw)
    blocks = [p for p in ps if p[1] == 7]
    assert len(blocks[0][18]) // 2 == 3 and blocks[0][2] == 2  # signed in the new boot
    boot = [p for p in ps if p[1] == 3 and p[30] == ct_app.EV_BOOT]
    # the old block is signed first thing after the restart, before its boot record
    assert boot[1][2] == 2 and blocks[0][3] + 1 == boot[1][3]
    assert blocks[0][5] == 3  # dated by the clock it was measured with
    assert [r[2] for r in readings(rig.gw)] == rig.measured


def test_a_block_the_full_queue_refuses_is_counted_and_reported():
    # two 1 KiB segments: a few records fill them while the gateway is away
    rig = Rig([400 + i for i in range(50)], size=4, queue=(2, 1024, 384, 512))
    rig.broker.down = True
    rig.wake(40)
    dropped = sum(lg.blocks.dropped for lg in rig.logs)
    assert dropped and dropped % 4 == 0  # whole blocks, counted in readings
    full = [e for lg in rig.logs for e in lg.events if e[0] == ct_app.EV_STORAGE_FULL]
    assert full and full[0][1] == 4  # the status record reports the readings
    rig.broker.down = False
    rig.later(3600)
    rig.wake(2)
    rig.flush()
    got = [r[2] for r in readings(rig.gw)]
    assert len(got) + dropped == len(rig.measured)  # the kept ones, each once
    assert len(set(got)) == len(got) and rig.gw.chain_errors == 0
    k = 0
    while got[k] == rig.measured[k]:
        k += 1
    # the oldest are kept (the full policy); the blocks made while full are gone
    assert got[k:] == rig.measured[k + dropped :] and k >= 20


def _cut_run(cut_at, torn):
    """Three wakes, then a wake that loses power at filesystem step cut_at,
    then three more, then a flush: every stored reading is signed exactly
    once. Returns whether the cut fell inside the wake."""
    rig = Rig([500 + i for i in range(12)], size=4)
    rig.wake(3)
    rig.broker.down = True  # keep everything on flash across the cut
    before = len(rig.measured)
    fell = not rig.wake(1, cut_at, torn)
    cut = rig.measured[before:]
    rig.broker.down = False
    rig.wake(3)
    rig.flush()
    got = [r[2] for r in readings(rig.gw)]
    seqs = sorted(rig.gw.records)
    assert seqs == list(range(len(seqs))) and rig.gw.chain_errors == 0, cut_at
    # each value once; all of them but (maybe) the one measured as power went
    for v in got:
        assert got.count(v) == 1, (cut_at, v, got)
    missing = [v for v in rig.measured if v not in got]
    assert all(v in cut for v in missing) and len(missing) <= 1, (cut_at, missing)
    return fell


def test_power_cut_at_every_step_of_a_wake_that_fills_a_block():
    # the 4th wake adds the 4th reading: the block is sealed, signed, queued
    # and removed in that wake
    step = 1
    while _cut_run(step, False):
        step += 1
    assert step > 10  # the wake has many steps, each one was cut


def test_power_cut_at_every_step_with_torn_writes():
    # a weaker filesystem: a cut flush leaves half the new bytes
    step = 1
    while _cut_run(step, True):
        step += 1
    assert step > 10


main(globals())
