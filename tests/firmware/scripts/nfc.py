"""PN532, MFRC522 and NTAG from recorded frames: full UIDs, NDEF URL, SUN."""

import binascii

import ct_custody
import ct_mfrc522
import ct_ntag
import ct_pn532
import fake_nfc
from fwrun import data, main, raises

F = data("pn532_frames.json")
AN = data("an12196_sun.json")
H = binascii.unhexlify


class ScriptedI2C:
    """Replays recorded PN532 I2C traffic: every host frame must equal the
    recorded one byte for byte; the chip's recorded ACK and response follow."""

    def __init__(self, steps, busy=0):
        self.steps = list(steps)
        self.queue = []
        self.busy = busy
        self.writes = []

    def writeto(self, addr, buf):
        assert addr == 0x24
        buf = bytes(buf)
        self.writes.append(buf)
        if buf == H(F["sam_config"]["ack"]):
            self.queue = []  # abort
            return
        step = self.steps.pop(0)
        assert buf == H(step["host"]), (binascii.hexlify(buf), step["host"])
        self.queue = [H(step["ack"]), H(step["chip"])]

    def readfrom_into(self, addr, buf):
        ready = bool(self.queue)
        if ready and self.busy and len(buf) == 1:
            self.busy -= 1
            ready = False
        if len(buf) == 1 or not ready:
            buf[0] = 1 if ready else 0
            for i in range(1, len(buf)):
                buf[i] = 0
            return
        frame = self.queue.pop(0)
        buf[0] = 1
        for i in range(1, len(buf)):
            buf[i] = frame[i - 1] if i - 1 < len(frame) else 0


class Clock:
    def __init__(self):
        self.t = 0

    def ticks(self):
        return self.t

    def sleep(self, ms):
        self.t += ms


def pn(bus):
    c = Clock()
    return ct_pn532.PN532(ct_pn532.I2CBus(bus), c.ticks, c.sleep)


def steps(*names):
    out = []
    for n in names:
        v = F[n]
        if isinstance(v, list):
            out.extend(v)
        else:
            out.append(v)
    return out


def test_build_frame_matches_recorded_host_frames():
    assert ct_pn532.build_frame(b"\x02") == H(F["firmware_version"]["host"])
    assert ct_pn532.build_frame(b"\x4a\x01\x00") == H(F["list_ntag215"]["host"])
    assert ct_pn532.build_frame(b"\x14\x01\x14\x01") == H(F["sam_config"]["host"])


def test_firmware_version_and_setup():
    bus = ScriptedI2C(steps("firmware_version", "sam_config", "rf_retries"), busy=3)
    p = pn(bus)
    assert p.firmware_version() == (0x32, 1, 6, 7)
    p.sam_config()
    p.set_retries()
    assert not bus.steps


def test_list_target_keeps_full_7_byte_uid():
    t = pn(ScriptedI2C(steps("list_ntag215"))).list_target()
    assert t.uid == H(F["list_ntag215"]["uid"]) and len(t.uid) == 7
    assert t.atqa == b"\x00\x44" and not t.iso_dep() and t.ats == b""


def test_list_target_4_and_10_byte_uids():
    t = pn(ScriptedI2C(steps("list_classic"))).list_target()
    assert t.uid == H("deadbeef") and t.sak == 8
    t = pn(ScriptedI2C(steps("list_triple"))).list_target()
    assert len(t.uid) == 10 and t.uid == H(F["list_triple"]["uid"])


def test_list_target_none():
    assert pn(ScriptedI2C(steps("list_none"))).list_target() is None


def test_ntag424_ats_and_iso_dep():
    t = pn(ScriptedI2C(steps("list_ntag424"))).list_target()
    assert t.iso_dep() and t.ats == H("067777710280") and t.tg == 1


def test_read_tag_ntag424_gives_uid_url_sun_and_link_from_recorded_frames():
    bus = ScriptedI2C(steps("list_ntag424", "ndef_read_ntag424", "custody_read_ntag424",
                            "custody_write_ntag424", "release"))
    tag = ct_ntag.read_tag(pn(bus))
    assert tag.uid == H(AN["uid"])
    assert tag.uri == AN["url"]
    assert tag.sun == H(AN["sun"]) and len(tag.sun) == 24
    assert tag.sun[:16] == H(AN["picc_data_enc"]) and tag.sun[16:] == H(AN["sdm_mac"])
    assert tag.item is None
    assert tag.link == H(F["custody_link"])
    assert len(bus.steps) == len(F["custody_write_ntag424"]) + 1  # no InRelease yet
    tag.write_link(H(F["custody_new_link"]))
    tag.release()
    tag.release()  # once only
    assert not bus.steps


def test_read_tag_type4_without_file_03_has_no_link():
    bus = ScriptedI2C(steps("list_ntag424", "ndef_read_ntag424", "custody_none_ntag424",
                            "release"))
    tag = ct_ntag.read_tag(pn(bus))
    assert tag.uri == AN["url"] and tag.link is None and tag.custody is None
    raises(ct_custody.CustodyError, tag.write_link, H(F["custody_new_link"]))
    tag.release()
    assert not bus.steps


def test_read_tag_ntag215_uid_and_link_from_recorded_frames():
    bus = ScriptedI2C(steps("list_ntag215", "custody_read_ntag215", "custody_write_ntag215",
                            "release"))
    tag = ct_ntag.read_tag(pn(bus))
    assert tag.uid == H("04a1b2c3d4e5f6") and tag.sun is None and tag.uri is None
    assert tag.link == H(F["custody_link"])
    tag.write_link(H(F["custody_new_link"]))
    tag.release()
    assert not bus.steps


def test_read_tag_mifare_classic_uid_only_no_memory_commands():
    bus = ScriptedI2C(steps("list_classic", "release"))
    tag = ct_ntag.read_tag(pn(bus))
    assert tag.uid == H("deadbeef") and tag.link is None and tag.custody is None
    tag.release()
    assert not bus.steps


def corrupt(name, index, delta=1):
    st = dict(F[name])
    b = bytearray(H(st["chip"]))
    b[index] = (b[index] + delta) & 0xFF
    st["chip"] = binascii.hexlify(b).decode()
    return st


def test_corrupt_frames_are_refused():
    # index in the response frame: 3 LEN, 4 LCS, 5 TFI, 6 code, -2 DCS, -1 post
    n = len(H(F["list_ntag215"]["chip"]))
    for idx, what in ((3, "LCS"), (4, "LCS"), (5, "TFI"), (9, "DCS"), (n - 2, "DCS"),
                      (n - 1, "postamble"), (2, "preamble")):
        bus = ScriptedI2C([corrupt("list_ntag215", idx)])
        e = raises(ct_pn532.PN532Error, pn(bus).list_target)
        assert e is not None, what


def test_error_frame_and_extended_frame_refused():
    st = dict(F["firmware_version"])
    st["chip"] = F["error_frame"]
    e = raises(ct_pn532.PN532Error, pn(ScriptedI2C([st])).firmware_version)
    assert "error frame" in str(e)
    st = dict(F["firmware_version"])
    st["chip"] = "0000ffffff0003fdd50332010607e800"
    e = raises(ct_pn532.PN532Error, pn(ScriptedI2C([st])).firmware_version)
    assert "extended" in str(e)


def test_bad_ack_refused():
    st = dict(F["firmware_version"])
    st["ack"] = "0000ffff0000"  # a NACK
    raises(ct_pn532.PN532Error, pn(ScriptedI2C([st])).firmware_version)


def test_timeout_sends_ack_to_abort():
    class Silent(ScriptedI2C):
        def writeto(self, addr, buf):
            ScriptedI2C.writeto(self, addr, buf)
            if bytes(buf) != H(F["sam_config"]["ack"]):
                self.queue = self.queue[:1]  # ACK only, the answer never comes

    bus = Silent(steps("list_none"))
    e = raises(ct_pn532.PN532Error, lambda: pn(bus).list_target(200))
    assert "timeout" in str(e)
    assert bus.writes[-1] == H(F["sam_config"]["ack"])


def test_no_ack_is_an_error():
    class Dead:
        def writeto(self, a, b):
            pass

        def readfrom_into(self, a, b):
            for i in range(len(b)):
                b[i] = 0

    raises(ct_pn532.PN532Error, pn(Dead()).firmware_version)


def test_frame_too_long_refused():
    raises(ct_pn532.PN532Error, ct_pn532.build_frame, bytes(255))


def test_spi_bus_bit_reversal_with_fake_chip():
    chip = fake_nfc.FakePN532([fake_nfc.ntag21x(H("04a1b2c3d4e5f6"))])
    spi, cs = fake_nfc.pn532_spi(chip)
    c = Clock()
    p = ct_pn532.PN532(ct_pn532.SPIBus(spi, cs), c.ticks, c.sleep)
    assert p.firmware_version()[0] == 0x32
    assert p.list_target().uid == H("04a1b2c3d4e5f6")
    assert chip.bad_frames == 0


def test_fake_chip_ntag424_long_url_is_read_in_chunks():
    url = "https://id.example.com/01/09506000134352/10/L42/21/7?picc_data=" + AN[
        "picc_data_enc"] + "&cmac=" + AN["sdm_mac"] + "&pad=" + "x" * 150
    tag = fake_nfc.Ntag424(H("04de5f1eacc040"), url)
    chip = fake_nfc.FakePN532([tag])
    c = Clock()
    p = ct_pn532.PN532(ct_pn532.I2CBus(fake_nfc.FakePN532I2C(chip)), c.ticks, c.sleep)
    got = ct_ntag.read_tag(p)
    got.release()
    assert got.uri == url
    assert got.item == "/01/09506000134352/10/L42/21/7"
    assert got.sun == H(AN["sun"])
    k = tag.apdus.index(H("00a4000c02e105"))  # then the custody file
    reads = [a for a in tag.apdus[:k] if a[:2] == b"\x00\xb0"]
    n = len(fake_nfc.ndef_uri(url))
    assert n > 256
    assert len(reads) == 2 + (n + 127) // 128  # CC, NLEN, then 128-byte chunks
    assert max(a[4] for a in reads) == 128
    assert tag.apdus[k:] == [H("00a4000c02e105"), H("00b0000014")]


def test_tag_leaving_field_mid_read_is_an_error():
    tag = fake_nfc.Ntag424(H("04de5f1eacc040"), AN["url"])
    chip = fake_nfc.FakePN532([tag])

    class Flaky(fake_nfc.FakePN532I2C):
        def writeto(self, addr, buf):
            if len(chip.commands) == 3:
                chip.field = []
            fake_nfc.FakePN532I2C.writeto(self, addr, buf)

    c = Clock()
    p = ct_pn532.PN532(ct_pn532.I2CBus(Flaky(chip)), c.ticks, c.sleep)
    raises(ct_pn532.PN532Error, ct_ntag.read_tag, p)


# --- NDEF / SUN ---------------------------------------------------------------

def test_parse_uri_and_sun_of_an12196_url():
    msg = fake_nfc.ndef_uri(AN["url"])
    assert msg[:2] == H("d101") and msg[2] == len(msg) - 4 and msg[3:5] == H("5504")
    uri = ct_ntag.parse_uri(msg)
    assert uri == AN["url"]
    assert ct_ntag.sun_from_uri(uri) == H(AN["sun"])


def test_sun_alternative_names_and_case():
    u = "https://x.example/t?e=" + AN["picc_data_enc"].lower() + "&c=" + AN["sdm_mac"]
    assert ct_ntag.sun_from_uri(u) == H(AN["sun"])
    assert ct_ntag.sun_from_uri("https://x.example/t?a=1") is None


def test_sun_malformed_refused():
    raises(ct_ntag.NTAGError, ct_ntag.sun_from_uri, "https://x/?picc_data=" + AN["picc_data_enc"])
    raises(ct_ntag.NTAGError, ct_ntag.sun_from_uri, "https://x/?e=00&c=" + AN["sdm_mac"])
    raises(ct_ntag.NTAGError, ct_ntag.sun_from_uri,
           "https://x/?e=" + "zz" * 16 + "&c=" + AN["sdm_mac"])


def test_parse_uri_skips_other_records_and_refuses_garbage():
    text = bytes((0x91, 0x01, 0x05, 0x54, 0x02)) + b"enhi"  # MB, SR, 'T' record
    uri = bytes((0x51, 0x01, 0x0c, 0x55, 0x04)) + b"example.com"  # ME, SR
    assert ct_ntag.parse_uri(text + uri) == "https://example.com"
    raises(ct_ntag.NTAGError, ct_ntag.parse_uri, text[:-1] + bytes((0x40,)))
    raises(ct_ntag.NTAGError, ct_ntag.parse_uri, bytes((0xd1, 0x01, 0x40, 0x55, 0x04)))
    raises(ct_ntag.NTAGError, ct_ntag.parse_uri, bytes((0xd1, 0x01, 0x02, 0x55, 0x99, 0x41)))


def test_item_from_gs1_digital_link():
    f = ct_ntag.item_from_uri
    assert f("https://id.example.com/01/09506000134352/10/L42/21/7?e=1") == \
        "/01/09506000134352/10/L42/21/7"
    assert f("https://id.example.com/tag?x=/01/1") is None
    assert f("https://id.example.com/") is None


def test_bad_status_word_refused():
    def ex(apdu):
        return b"\x6a\x82"

    raises(ct_ntag.NTAGError, ct_ntag.read_ndef, ex)


# --- MFRC522 ------------------------------------------------------------------

def reader(*tags):
    chip = fake_nfc.FakeMFRC522(tags)
    c = Clock()
    r = ct_mfrc522.MFRC522(chip, chip.cs, c.ticks, c.sleep)
    assert r.init() == 0x92
    return r, chip


def test_crc_a_iso14443_example():
    # ISO/IEC 14443-3 Annex B: CRC_A of 00 00 is A0 1E; of 12 34 is 26 CF
    assert ct_mfrc522.crc_a(b"\x00\x00") == b"\xa0\x1e"
    assert ct_mfrc522.crc_a(b"\x12\x34") == b"\x26\xcf"


def test_mfrc522_7_byte_uid_two_cascade_levels():
    r, chip = reader(fake_nfc.ntag21x(H("04a1b2c3d4e5f6")))
    uid, sak = r.read_uid()
    assert uid == H("04a1b2c3d4e5f6") and sak == 0
    sels = [f[0][:2] for f in chip.frames]
    assert sels == [b"\x26", b"\x93\x20", b"\x93\x70", b"\x95\x20", b"\x95\x70"]
    # level 1 select carries the cascade tag 88 and BCC
    assert chip.frames[2][0][2:7] == H("8804a1b2") + bytes((0x88 ^ 0x04 ^ 0xa1 ^ 0xb2,))


def test_mfrc522_4_and_10_byte_uids():
    r, _ = reader(fake_nfc.mifare_classic(H("deadbeef")))
    assert r.read_uid() == (H("deadbeef"), 8)
    r, chip = reader(fake_nfc.Tag(H("0411223344556677889a"), b"\x00\x84", 0))
    assert r.read_uid()[0] == H("0411223344556677889a")
    assert [f[0][0] for f in chip.frames if f[0][1:2] == b"\x70"] == [0x93, 0x95, 0x97]


def test_mfrc522_no_tag():
    r, _ = reader()
    assert r.read_uid() is None


def test_mfrc522_collision_resolves_to_one_full_uid():
    a = fake_nfc.ntag21x(H("04a1b2c3d4e5f6"))
    b = fake_nfc.ntag21x(H("04a1b2c3d4e5f7"))  # differs in the last bit
    c = fake_nfc.ntag21x(H("04a1b2c3d5e5f6"))
    r, chip = reader(a, b, c)
    uid, _ = r.read_uid()
    assert uid in (a.uid, b.uid, c.uid) and len(uid) == 7
    assert any(f[1] for f in chip.frames[1:])  # bit-oriented frames were sent
    r.halt()
    uid2, _ = r.read_uid()
    assert uid2 != uid and len(uid2) == 7


def test_mfrc522_refuses_cascade_tag_in_complete_uid():
    class Liar(fake_nfc.Tag):
        def cascade(self):
            return [b"\x88" + self.uid[:3]]  # says complete after level 1

    r, _ = reader(Liar(H("04a1b2c3"), b"\x00\x44", 0))
    raises(ct_mfrc522.MFRC522Error, r.read_uid)


main(globals())
