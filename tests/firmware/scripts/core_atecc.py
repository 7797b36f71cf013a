"""ct_atecc against a fake I2C bus that answers like an ATECC608."""

import hashlib

import ct_atecc
import ct_p256
from fake_atecc import FakeI2C
from fakeclock import FakeTicks
from fwrun import main, raises


def rig(**kw):
    bus = FakeI2C(**kw)
    clock = FakeTicks()
    chip = ct_atecc.ATECC(bus, 0x60, clock)
    return bus, chip, clock


def test_crc16_matches_the_wake_answer_of_the_data_sheet():
    assert ct_atecc.crc16(b"\x04\x11") == b"\x33\x43"
    assert ct_atecc.crc16(b"") == b"\x00\x00"


def test_command_packet_layout():
    p = ct_atecc.packet(0x16, 0x03, 0x0000, bytes(32))
    assert p[0] == 39 and len(p) == 39 and p[1:5] == b"\x16\x03\x00\x00"
    assert p[-2:] == ct_atecc.crc16(p[:-2])
    p = ct_atecc.packet(0x41, 0x80, 0x0102)
    assert p[:5] == b"\x07\x41\x80\x02\x01"  # param2 little-endian


def test_generate_public_key_and_sign():
    bus, chip, _ = rig()
    s = ct_atecc.Signer(chip, slot=2)
    pub = s.generate()
    assert len(pub) == 65 and pub[0] == 4
    ct_p256.decode_point(pub)
    s2 = ct_atecc.Signer(chip, slot=2)
    assert s2.public_key() == pub  # GenKey public mode recomputes it
    h = hashlib.sha256(b"reading").digest()
    sig = s.sign_digest(h)
    ct_p256.verify_digest(pub, h, sig)
    assert int.from_bytes(sig[32:], "big") <= ct_p256.N // 2
    ops = [(c[0], c[1], c[2]) for c in bus.commands]
    assert ops == [(0x40, 0x04, 2), (0x40, 0x00, 2), (0x16, 0x03, 0), (0x41, 0x80, 2)]
    assert bus.commands[2][3] == h  # the digest goes into TempKey
    assert not bus.awake and bus.wakes == 3  # asleep after every operation


def test_high_s_from_the_chip_is_normalised():
    bus, chip, _ = rig()
    s = ct_atecc.Signer(chip, 0)
    pub = s.generate()
    bus.high_s = True
    h = hashlib.sha256(b"x").digest()
    sig = s.sign_digest(h)
    assert int.from_bytes(sig[32:], "big") <= ct_p256.N // 2
    ct_p256.verify_digest(pub, h, sig)


def test_crc_errors_both_ways_are_retried():
    bus, chip, _ = rig()
    s = ct_atecc.Signer(chip, 0)
    pub = s.generate()
    bus.corrupt_next = True  # our read of its answer is damaged
    sig = s.sign(b"m")
    ct_p256.verify(pub, b"m", sig)
    bus.reject_next = True  # the chip saw a damaged command (status 0xFF)
    sig = s.sign(b"n")
    ct_p256.verify(pub, b"n", sig)
    assert chip.retries == 2


def test_busy_chip_is_polled_and_silent_chip_times_out():
    _, chip, clock = rig(busy_polls=40)
    s = ct_atecc.Signer(chip, 0)
    s.generate()
    assert clock.ticks_ms() >= 40 * 2
    bus2 = FakeI2C()
    bus2.writeto = lambda a, b, stop=True: (_ for _ in ()).throw(OSError(19))
    bus2.readfrom = lambda a, n: (_ for _ in ()).throw(OSError(19))
    chip2 = ct_atecc.ATECC(bus2, 0x60, FakeTicks())
    e = raises(ct_atecc.ATECCError, ct_atecc.Signer(chip2, 0).generate)
    assert "wake" in str(e) or "answer" in str(e)


def test_sign_without_nonce_is_an_execution_error():
    _, chip, _ = rig()
    s = ct_atecc.Signer(chip, 0)
    s.generate()
    chip.wake()
    e = raises(ct_atecc.ATECCError, chip.command, 0x41, 0x80, 0, b"", 700)
    assert e.status == 0x0F
    chip.sleep()
    raises(ct_atecc.ATECCError, ct_atecc.Signer, chip, 16)
    raises(ct_atecc.ATECCError, s.sign_digest, b"short")


if __name__ == "__main__":
    main(globals())
