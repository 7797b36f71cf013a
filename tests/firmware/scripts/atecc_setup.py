"""ct_atecc_setup against the fake ATECC608B (fake_atecc, blank=True): the
configure-and-lock procedure byte for byte, then signing through ct_atecc."""

import hashlib

import ct_atecc
import ct_atecc_setup
import ct_p256
from fake_atecc import FakeI2C
from fakeclock import FakeTicks
from fwrun import main, raises


def rig(blank=True):
    bus = FakeI2C(blank=blank)
    chip = ct_atecc.ATECC(bus, 0x60, FakeTicks())
    return bus, chip


def quiet(*a):
    out.append(" ".join(a))


out = []


def setup(chip, **kw):
    with chip.session() as c:
        return ct_atecc_setup.setup(c, say=quiet, **kw)


def test_dry_run_reads_and_plans_but_writes_nothing():
    bus, chip = rig()
    del out[:]
    assert setup(chip, slot=0) is None
    assert [c[0] for c in bus.commands] == [0x02] * 4
    assert [(c[1], c[2]) for c in bus.commands] == [(0x80, 0), (0x80, 8), (0x80, 16), (0x80, 24)]
    assert out[0] == "CT-ATECC-CONFIG " + bytes(bus.config).hex()
    assert out[1] == "CT-ATECC-PLAN 05:83200000 18:33000000"
    assert bus.config[86] == bus.config[87] == 0x55  # still blank


def test_lock_writes_the_slot_config_locks_both_zones_and_makes_the_key():
    bus, chip = rig()
    del out[:]
    pub = setup(chip, slot=0, lock=True)
    ops = [(c[0], c[1], c[2]) for c in bus.commands]
    # 4 reads, 2 writes, 4 reads back, Lock config (CRC), Lock data (no CRC), GenKey
    assert ops[:4] == [(0x02, 0x80, b << 3) for b in range(4)]
    assert ops[4:6] == [(0x12, 0x00, 5), (0x12, 0x00, 24)]
    assert [c[3] for c in bus.commands[4:6]] == [b"\x83\x20\x00\x00", b"\x33\x00\x00\x00"]
    assert ops[6:10] == ops[:4]
    zone = bytes(bus.config[:86]) + b"\x55\x55" + bytes(bus.config[88:])  # as it was locked
    crc = ct_atecc.crc16(zone)
    assert ops[10] == (0x17, 0x00, crc[0] | crc[1] << 8)
    assert ops[11:] == [(0x17, 0x81, 0), (0x40, 0x04, 0)]
    # the Write of SlotConfig 0 on the wire: count, opcode, p1, p2 LE, data, CRC LE
    w = bytes((0x0B, 0x12, 0x00, 0x05, 0x00, 0x83, 0x20, 0x00, 0x00))
    assert bus.wire[4] == b"\x03" + w + ct_atecc.crc16(w)
    assert bus.config[20:22] == b"\x83\x20" and bus.config[96:98] == b"\x33\x00"
    assert bus.config[86] == bus.config[87] == 0x00
    assert out[-2] == "CT-ATECC-LOCKED" and out[-1] == "CT-PUBKEY " + pub.hex()
    assert len(pub) == 65 and pub[0] == 4
    ct_p256.decode_point(pub)
    # the existing backend signs with it
    s = ct_atecc.Signer(chip, slot=0)
    assert s.public_key() == pub
    msg = b"coldtrace record"
    sig = s.sign(msg)
    ct_p256.verify(pub, msg, sig)
    assert int.from_bytes(sig[32:], "big") <= ct_p256.N >> 1


def test_blank_chip_refuses_genkey_and_sign_until_locked():
    _bus, chip = rig()
    e = raises(ct_atecc.ATECCError, ct_atecc.Signer(chip, 0).generate)
    assert e.status == 0x0F
    s = ct_atecc.Signer(chip, 0)
    s._pub = b"\x04" + bytes(64)
    e = raises(ct_atecc.ATECCError, s.sign_digest, hashlib.sha256(b"x").digest())
    assert e.status == 0x0F


def test_running_again_keeps_the_key_and_writes_nothing():
    bus, chip = rig()
    pub = setup(chip, slot=0, lock=True)
    n = len(bus.commands)
    assert setup(chip, slot=0, lock=True) == pub
    again = bus.commands[n:]
    assert [c[0] for c in again] == [0x02] * 4 + [0x40]
    assert again[-1][1] == 0x00  # GenKey public mode: recomputed, not replaced
    assert setup(chip, slot=0, lock=True, new_key=True) != pub


def test_locked_chip_with_an_unsuitable_slot_is_refused():
    bus, chip = rig()
    setup(chip, slot=0, lock=True)
    n = len(bus.commands)
    e = raises(ct_atecc_setup.SetupError, lambda: setup(chip, slot=1, lock=True))
    assert "slot 1" in str(e)
    assert [c[0] for c in bus.commands[n:]] == [0x02] * 4


def test_chip_refuses_a_wrong_lock_crc_and_writes_to_protected_bytes():
    bus, chip = rig()
    with chip.session() as c:
        e = raises(ct_atecc.ATECCError, c.command, 0x17, 0x00, 0x1234, b"", 35)
        assert e.status == 0x0F and bus.config[87] == 0x55
        for addr in (0, 3, 21):  # serial/revision, UserExtra..LockConfig
            e = raises(ct_atecc.ATECCError, c.command, 0x12, 0x00, addr, b"\x00" * 4, 45)
            assert e.status == 0x0F
        # the data zone cannot be locked before the configuration
        e = raises(ct_atecc.ATECCError, c.command, 0x17, 0x81, 0, b"", 35)
        assert e.status == 0x0F
    assert bus.config[84:88] == b"\x00\x00\x55\x55"


def test_not_an_atecc608_is_refused_before_any_write():
    bus, chip = rig()
    bus.config[6] = 0x50  # an ATECC508A's RevNum
    e = raises(ct_atecc_setup.SetupError, lambda: setup(chip, slot=0, lock=True))
    assert "ATECC608" in str(e)
    assert all(c[0] == 0x02 for c in bus.commands)


def test_run_uses_the_configured_bus_and_address():
    bus = FakeI2C(blank=True, busy_polls=0)  # run() keeps real time: never make it wait
    pub = ct_atecc_setup.run(0, True, cfg={"atecc": {"addr": 0x60}}, i2c=bus, say=quiet)
    assert out[-1] == "CT-PUBKEY " + pub.hex() and bus.config[87] == 0


class Mem:
    def __init__(self, words):
        self.mem32 = words


def test_flash_encryption_is_read_from_the_efuse_counter():
    import ct_provision

    # ESP32: FLASH_CRYPT_CNT bits 20-26 of 0x3FF5A000; odd bit count = on
    assert ct_provision.flash_encrypted(Mem({0x3FF5A000: 1 << 20}), "ESP32") == "1"
    assert ct_provision.flash_encrypted(Mem({0x3FF5A000: 3 << 20 | 0xFFFFF}), "ESP32") == "0"
    assert ct_provision.flash_encrypted(Mem({0x3FF5A000: 0x7F << 20}), "ESP32") == "1"
    # ESP32-S3: SPI_BOOT_CRYPT_CNT bits 18-20 of 0x60007034
    assert ct_provision.flash_encrypted(Mem({0x60007034: 1 << 18}), "ESP32S3") == "1"
    assert ct_provision.flash_encrypted(Mem({0x60007034: 0}), "ESP32S3") == "0"
    assert ct_provision.flash_encrypted(Mem({}), "ESP32C3") == "?"  # not read at all


main(globals())
