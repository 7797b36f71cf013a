"""The tag-carried custody link (scan field 27, ct_custody): the custody
file on an NTAG 424 DNA (file 03 through a PN532) and an NTAG 21x (pages
20h-24h through a PN532 or an MFRC522), and readers in a row building the
chain on one tag: commission, reused tags, failed writes, tags without
memory."""

import binascii
import hashlib

import ct_custody
import ct_mfrc522
import ct_ntag
import ct_pn532
import ct_record
import fake_nfc
from _readers import ITEM, HashSigner, Station, Ticks, fields, queued
from fwrun import data, main, raises

AN = data("an12196_sun.json")
H = binascii.unhexlify
UID7 = H("04a1b2c3d4e5f6")
URL = f"https://id.example.com{ITEM}?picc_data={AN['picc_data_enc']}&cmac={AN['sdm_mac']}"
MAGIC = b"CTL\x01"
OLD = hashlib.sha256(b"a scan from the tag's previous life").digest()[:16]
NEW = hashlib.sha256(b"the next scan").digest()[:16]


def pn532(tag, spi=False):
    chip = fake_nfc.FakePN532([tag])
    t = Ticks()
    if spi:
        bus = ct_pn532.SPIBus(*fake_nfc.pn532_spi(chip))
    else:
        bus = ct_pn532.I2CBus(fake_nfc.FakePN532I2C(chip))
    return ct_pn532.PN532(bus, t.ticks, t.sleep), chip


def mfrc522(tag):
    chip = fake_nfc.FakeMFRC522([tag])
    t = Ticks()
    rc = ct_mfrc522.MFRC522(chip, chip.cs, t.ticks, t.sleep)
    rc.init()
    return rc, chip


def tap_pn532(tag, spi=False):
    p, _ = pn532(tag, spi)
    return ct_ntag.read_tag(p)


def tap_mfrc522(tag):
    rc, _ = mfrc522(tag)
    return ct_ntag.read_tag_mfrc522(rc)


def ntag424(data03=None, custody=True):
    t = fake_nfc.Ntag424(H("04de5f1eacc040"), URL, custody)
    if data03 is not None:
        t.data03[: len(data03)] = data03
    return t


def ntag215(data=None):
    t = fake_nfc.ntag21x(UID7, 215)
    if data is not None:
        t.mem[4 * 0x20 : 4 * 0x20 + len(data)] = data
    return t


def custody_bytes(tag):
    if isinstance(tag, fake_nfc.Ntag424):
        return bytes(tag.data03[:20])
    return tag.page(0x20, 5)


# --- the custody file ---------------------------------------------------------

def test_link_needs_the_magic():
    assert ct_custody.link(MAGIC + OLD) == OLD
    assert ct_custody.link(MAGIC + OLD + b"rest of the file") == OLD
    assert ct_custody.link(b"CTL\x02" + OLD) is None
    assert ct_custody.link(bytes(20)) is None
    assert ct_custody.link(MAGIC + OLD[:15]) is None
    assert ct_custody.link(None) is None


def test_write_link_clears_the_magic_first_and_sets_it_last():
    writes = []

    class Port:
        def write(self, off, data):
            writes.append((off, bytes(data)))

    ct_custody.write_link(Port(), NEW)
    assert writes == [(0, bytes(4)), (4, NEW), (0, MAGIC)]
    raises(ct_custody.CustodyError, ct_custody.write_link, Port(), NEW[:15])
    assert len(writes) == 3


# --- NTAG 424 DNA, file 03, through a PN532 ----------------------------------------

def test_ntag424_custody_file_read_and_written_with_iso_apdus():
    tag = ntag424(MAGIC + OLD)
    got = tap_pn532(tag)
    assert got.link == OLD and got.custody is not None
    k = tag.apdus.index(H("00a4000c02e105"))
    assert tag.apdus[k:] == [H("00a4000c02e105"), H("00b0000014")]
    got.write_link(NEW)
    got.release()
    assert tag.apdus[k + 2 :] == [H("00d6000004") + bytes(4), H("00d6000410") + NEW,
                                  H("00d6000004") + MAGIC]
    assert custody_bytes(tag) == MAGIC + NEW
    assert tag.data03[20:] == bytes(108)  # the rest of file 03 untouched
    assert tap_pn532(tag).link == NEW


def test_ntag424_blank_file_03_gives_no_link_but_takes_one():
    tag = ntag424()
    got = tap_pn532(tag)
    assert got.link is None and got.custody is not None
    got.write_link(NEW)
    assert custody_bytes(tag) == MAGIC + NEW


def test_ntag424_not_commissioned_for_custody_has_no_custody_file():
    tag = ntag424(MAGIC + OLD, custody=False)  # file 03 as delivered: 69 82
    got = tap_pn532(tag)
    assert got.uri == URL and got.link is None and got.custody is None
    raises(ct_custody.CustodyError, got.write_link, NEW)
    assert custody_bytes(tag) == MAGIC + OLD


def test_ntag424_pulled_away_during_custody_read_is_a_failed_read():
    tag = ntag424(MAGIC + OLD)
    chip = fake_nfc.FakePN532([tag])

    class Leaving(fake_nfc.FakePN532I2C):
        def writeto(self, addr, buf):
            if b"\xe1\x05" in bytes(buf):  # SELECT file 03
                chip.field = []
            fake_nfc.FakePN532I2C.writeto(self, addr, buf)

    t = Ticks()
    p = ct_pn532.PN532(ct_pn532.I2CBus(Leaving(chip)), t.ticks, t.sleep)
    raises(ct_pn532.PN532Error, ct_ntag.read_tag, p)
    assert chip.commands[-1][0] == 0x52  # released all the same


def test_ntag424_pulled_away_mid_write_keeps_old_link_or_none_never_a_mix():
    for n, left in ((1, MAGIC + OLD), (2, bytes(4) + OLD), (3, bytes(4) + NEW)):
        tag = ntag424(MAGIC + OLD)
        got = tap_pn532(tag)
        tag.leave_at_write(n)
        raises(ct_pn532.PN532Error, got.write_link, NEW)
        got.release()
        assert custody_bytes(tag) == left, n
        tag.away = False
        assert tap_pn532(tag).link == (OLD if n == 1 else None)


# --- NTAG 21x, pages 20h-24h, through a PN532 and an MFRC522 -----------------------

def test_ntag215_pages_read_and_written_through_pn532_i2c_and_spi():
    for spi in (False, True):
        tag = ntag215(MAGIC + OLD)
        got = tap_pn532(tag, spi)
        assert got.link == OLD
        got.write_link(NEW)
        got.release()
        assert tag.page(0x20, 5) == MAGIC + NEW and tag.writes == 6
        assert tag.page(0x25) == bytes(4) and tag.page(0x1F) == bytes(4)
        assert tap_pn532(tag, spi).link == NEW


def test_ntag215_pages_through_mfrc522_with_crc_and_ack():
    tag = ntag215(MAGIC + OLD)
    rc, chip = mfrc522(tag)
    got = ct_ntag.read_tag_mfrc522(rc)
    assert got.uid == UID7 and got.link == OLD
    frames = [f for f, _ in chip.frames if f[0] in (0x30, 0xA2)]
    assert frames == [b"\x30\x20" + ct_mfrc522.crc_a(b"\x30\x20"),
                      b"\x30\x24" + ct_mfrc522.crc_a(b"\x30\x24")]
    got.write_link(NEW)
    got.release()
    writes = [f for f, _ in chip.frames if f[0] == 0xA2]
    assert [w[1] for w in writes] == [0x20, 0x21, 0x22, 0x23, 0x24, 0x20]
    assert all(w[-2:] == ct_mfrc522.crc_a(w[:-2]) and len(w) == 8 for w in writes)
    assert tag.page(0x20, 5) == MAGIC + NEW
    assert chip.frames[-1][0][0] == 0x50  # halted at release
    assert tap_mfrc522(tag).link == NEW


def test_mfrc522_read16_write4_refusals():
    tag = ntag215()
    rc, chip = mfrc522(tag)
    rc.read_uid()
    assert rc.read16(0x86) is not None  # last page, rolls over
    assert rc.read16(0x87) is None  # past the end: NAK, the tag goes IDLE
    raises(ct_mfrc522.MFRC522Error, rc.read16, 0x20)  # IDLE: no answer
    rc.read_uid()
    raises(ct_mfrc522.MFRC522Error, rc.write4, 0x02, bytes(4))  # NAK (lock page)
    rc.read_uid()
    raises(ct_mfrc522.MFRC522Error, rc.write4, 0x20, bytes(3))
    rc.read_uid()

    def bad_crc(sent):
        bits, c = fake_nfc.FakeMFRC522._memory(chip, sent)
        bits[-1] ^= 1
        return bits, c

    chip._memory = bad_crc
    e = raises(ct_mfrc522.MFRC522Error, rc.read16, 0x20)
    assert "CRC" in str(e)


def test_ntag213_custody_pages_at_the_end_of_user_memory():
    tag = fake_nfc.ntag21x(UID7, 213)
    got = tap_mfrc522(tag)
    assert got.link is None and got.custody is not None
    got.write_link(NEW)
    assert tag.page(0x20, 5) == MAGIC + NEW


def test_tag_without_page_20h_has_no_custody_file():
    # a MIFARE Ultralight: 16 pages; READ 20h is NAKed
    for tap in (tap_pn532, tap_mfrc522):
        tag = fake_nfc.Ntag21x(UID7, 16, 0x0F)
        got = tap(tag)
        assert got.link is None and got.custody is None and tag.writes == 0


class Shy(fake_nfc.Ntag21x):
    """Leaves the field as the custody file is read."""

    def t2(self, cmd):
        if cmd[0] == 0x30 and cmd[1] >= 0x20:
            self.away = True
        return fake_nfc.Ntag21x.t2(self, cmd)


def test_ntag21x_pulled_away_during_custody_read_is_a_failed_read():
    for tap, err in ((tap_pn532, ct_ntag.NTAGError), (tap_mfrc522, ct_mfrc522.MFRC522Error)):
        raises(err, tap, Shy(UID7))  # not taken for a tag without custody file
    for chip in ("pn532", "mfrc522"):
        s = Station(1, chip)
        assert s.tap(Shy(UID7), 2) is None and s.failed() and not queued(s.core)


def test_ntag21x_pulled_away_mid_write_keeps_old_link_or_none():
    for tap in (tap_pn532, tap_mfrc522):
        for n in range(1, 7):
            tag = ntag215(MAGIC + OLD)
            got = tap(tag)
            tag.leave_at_write(n)
            raises(Exception, got.write_link, NEW)
            got.release()
            tag.away = False
            link = tap(tag).link
            assert link == (OLD if n == 1 else None), (n, link)


def test_read_only_ntag_gives_its_link_and_refuses_the_write():
    for tap in (tap_pn532, tap_mfrc522):
        tag = ntag215(MAGIC + OLD)
        tag.read_only = True
        got = tap(tag)
        assert got.link == OLD
        raises(Exception, got.write_link, NEW)
        assert tag.page(0x20, 5) == MAGIC + OLD


def test_mifare_classic_no_memory_commands_no_link():
    rc, chip = mfrc522(fake_nfc.mifare_classic(H("deadbeef")))
    got = ct_ntag.read_tag_mfrc522(rc)
    got.release()
    assert got.uid == H("deadbeef") and got.link is None and got.custody is None
    assert not [f for f, _ in chip.frames if f[0] in (0x30, 0xA2)]
    p, chip = pn532(fake_nfc.mifare_classic(H("deadbeef")))
    got = ct_ntag.read_tag(p)
    got.release()
    assert got.uid == H("deadbeef") and got.link is None and got.custody is None
    assert [c[0] for c in chip.commands] == [0x4A, 0x52]


# --- readers in a row on one tag ----------------------------------------------------

def journey(tag, chips):
    """Commission, load, unload of one tag at three readers."""
    a, b, c = (Station(i + 1, ch) for i, ch in enumerate(chips))
    r1 = a.tap(tag, 1)
    r2 = b.tap(tag, 2)
    r3 = c.tap(tag, 3)
    return (a, b, c), (r1, r2, r3)


def check_chain(stations, recs, tag):
    r1, r2, r3 = recs
    assert None not in recs
    f1, f2, f3 = fields(r1), fields(r2), fields(r3)
    assert f1[21] == 1 and 27 not in f1
    assert f2[21] == 2 and f2[27] == ct_record.chain_link(r1)
    assert f3[21] == 3 and f3[27] == ct_record.chain_link(r2)
    assert custody_bytes(tag) == MAGIC + ct_record.chain_link(r3)
    for s, r in zip(stations, recs):  # noqa: B905 (MicroPython)
        assert queued(s.core) == [r] and s.ok() and s.reader.link_fails == 0


def test_three_readers_chain_links_on_an_ntag424():
    tag = ntag424()
    stations, recs = journey(tag, ("pn532", "pn532spi", "pn532"))
    check_chain(stations, recs, tag)
    assert fields(recs[0])[24] == ITEM and len(fields(recs[1])[23]) == 24


def test_ntag215_commission_without_item_is_refused_and_writes_nothing():
    tag = ntag215(MAGIC + OLD)  # an NTAG 21x gives no item (no NDEF parsing)
    s = Station(1, "mfrc522")
    assert s.tap(tag, 1) is None and s.failed() and not queued(s.core)
    assert tag.page(0x20, 5) == MAGIC + OLD and tag.writes == 0


def test_three_readers_chain_links_on_an_ntag215_across_chips():
    tag = ntag215()
    a, b, c = Station(1, "mfrc522"), Station(2, "pn532"), Station(3, "mfrc522")
    r1 = a.tap(tag, 5)
    r2 = b.tap(tag, 4)
    r3 = c.tap(tag, 3)
    assert 27 not in fields(r1)  # a blank tag: the item's first custody scan
    assert fields(r2)[27] == ct_record.chain_link(r1)
    assert fields(r3)[27] == ct_record.chain_link(r2)
    assert tag.page(0x20, 5) == MAGIC + ct_record.chain_link(r3)
    assert a.ok() and b.ok() and c.ok()


def test_reused_tag_commission_ignores_the_old_link():
    tag = ntag424(MAGIC + OLD)
    a, b = Station(1), Station(2)
    r1 = a.tap(tag, 1)
    assert 27 not in fields(r1) and a.ok()
    assert custody_bytes(tag) == MAGIC + ct_record.chain_link(r1)
    r2 = b.tap(tag, 2)
    assert fields(r2)[27] == ct_record.chain_link(r1)
    # not a commission: the link the tag held goes into the scan
    tag2 = ntag424(MAGIC + OLD)
    assert fields(Station(3).tap(tag2, 4))[27] == OLD


def test_failed_write_scan_recorded_error_shown_next_scan_names_the_older_scan():
    tag = ntag424()
    a, b, c = Station(1), Station(2), Station(3)
    r1 = a.tap(tag, 1)
    tag.leave_at_write(1)  # pulled away as reader 2 starts writing
    r2 = b.tap(tag, 2)
    assert r2 is not None and queued(b.core) == [r2]  # signed evidence, kept
    assert fields(r2)[27] == ct_record.chain_link(r1)
    assert b.failed() and b.reader.link_fails == 1 and b.reader.scans == 1
    assert custody_bytes(tag) == MAGIC + ct_record.chain_link(r1)
    r3 = c.tap(tag, 3)
    # the branch: scans 2 and 3 both name scan 1
    assert fields(r3)[27] == ct_record.chain_link(r1) and c.ok()
    assert custody_bytes(tag) == MAGIC + ct_record.chain_link(r3)


def test_failed_write_on_ntag21x_through_mfrc522():
    tag = ntag215()
    a, b, c = Station(1, "mfrc522"), Station(2, "mfrc522"), Station(3, "mfrc522")
    r1 = a.tap(tag, 5)
    tag.leave_at_write(3)  # mid-write: magic cleared, link half written
    r2 = b.tap(tag, 4)
    assert r2 is not None and b.failed() and b.reader.link_fails == 1
    assert fields(r2)[27] == ct_record.chain_link(r1)
    r3 = c.tap(tag, 3)
    assert 27 not in fields(r3) and c.ok()  # no link, never a mixed one
    assert tag.page(0x20, 5) == MAGIC + ct_record.chain_link(r3)


def test_mifare_classic_scans_have_no_link_and_no_error():
    tag = fake_nfc.mifare_classic(H("deadbeef"))
    for s in (Station(1), Station(2, "mfrc522")):
        for action in (5, 4):
            rec = s.tap(tag, action)
            assert rec is not None and 27 not in fields(rec) and fields(rec)[20] == tag.uid
            assert s.ok()
        assert s.reader.link_fails == 0


def test_queue_full_writes_no_link():
    tag = ntag424(MAGIC + OLD)
    s = Station(1)
    s.core.queue.fits = lambda n, prio: False
    assert s.tap(tag, 2) is None and s.failed()
    assert custody_bytes(tag) == MAGIC + OLD and tag.writes == 0


# --- the record -------------------------------------------------------------------

def scan(**extra):
    f = {1: 2, 2: 1, 3: 0, 4: 1790000000, 5: 3, 6: bytes(16), 20: UID7, 21: 2,
         22: "urn:epc:id:sgln:9506000.13435.0"}
    f.update(extra)
    return f


def test_link_is_key_27_after_ref_in_the_payload():
    f = scan()
    f[26] = "PO-4711"
    f[27] = NEW
    f[15] = 4100
    p = ct_record.payload(f)
    ref = b"\x18\x1a\x67PO-4711"
    link = b"\x18\x1b\x50" + NEW
    assert p[0] == 0xA0 + 12
    assert p.find(ref) > 0 and p.find(link) == p.find(ref) + len(ref)
    assert p.endswith(link)
    assert p[1:3] == b"\x01\x02"  # kind first
    assert fields(ct_record.sign1(p, "rd-1", HashSigner()))[27] == NEW


def test_link_bounds():
    for bad in (NEW[:15], NEW + b"\x00", b"", "x" * 16, 16):
        f = scan()
        f[27] = bad
        e = raises(ct_record.RecordError, ct_record.payload, f)
        assert "27" in str(e)
    f = scan()
    f[27] = bytearray(NEW)
    assert ct_record.payload(f).endswith(b"\x18\x1b\x50" + NEW)
    r = {1: 1, 2: 1, 3: 0, 4: 1790000000, 5: 3, 6: bytes(16), 10: 450, 27: NEW}
    raises(ct_record.RecordError, ct_record.payload, r)  # scans only
    f = scan()
    f[21] = 1
    f[24] = ITEM
    ct_record.payload(f)
    f[27] = NEW
    e = raises(ct_record.RecordError, ct_record.payload, f)  # never on a commission
    assert "27" in str(e)


def test_largest_scan_with_link_fits():
    f = scan()
    f.update({2: 0xFFFFFFFF, 3: 0xFFFFFFFF, 4: 0xFFFFFFFF, 20: bytes(10), 22: "p" * 64,
              23: bytes(24), 24: "/01/" + "9" * 124, 25: bytes(10), 26: "r" * 64, 27: NEW,
              15: 20000})
    p = ct_record.payload(f)
    assert len(p) == 385  # 19 bytes of it the link: 18 1b 50 + 16
    del f[27]
    assert len(ct_record.payload(f)) == 385 - 19


main(globals())
