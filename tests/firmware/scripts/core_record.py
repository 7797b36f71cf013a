"""ct_cbor + ct_record: deterministic payloads, bounds, COSE_Sign1, Mac0."""

import hashlib

import ct_cbor
import ct_p256
import ct_record
from ct_record import MacError, RecordError
from fwrun import main, raises

KID = "tl-7f3a21"
KEY = bytes(range(32))
SIGNER = ct_p256.Signer(bytes(range(1, 33)))


def base(kind=1, **kw):
    f = {1: kind, 2: 3, 3: 17, 4: 1790000000, 5: 3, 6: bytes(16)}
    if kind == 1:
        f[10] = 450
    elif kind == 2:
        f.update({20: b"\x04\xa1\xb2\xc3\xd4\xe5\xf6", 21: 2, 22: "dock-7"})
    elif kind == 3:
        f[30] = 2
    for k, v in kw.items():
        f[int(k[1:])] = v
    return f


def test_payload_bytes_are_core_deterministic():
    f = {1: 1, 2: 0, 3: 0, 4: 0, 5: 0, 6: bytes(16), 10: -1}
    want = bytes.fromhex("a7010102000300040005000650" + "00" * 16 + "0a20")
    assert ct_record.payload(f) == want
    # heads: shortest form at every boundary, keys in ascending order
    f = {1: 3, 2: 23, 3: 24, 4: 255, 5: 0, 6: bytes(16), 31: 256, 33: 65535, 34: 65536,
         37: 0xFFFFFFFF, 30: 1}
    p = ct_record.payload(f)
    assert p.startswith(bytes.fromhex("ab0103021703181804 18ff".replace(" ", "")))
    assert bytes.fromhex("181f190100") in p and bytes.fromhex("1821 19ffff".replace(" ", "")) in p
    assert bytes.fromhex("18221a00010000") in p and bytes.fromhex("18251affffffff") in p
    assert ct_cbor.decode_map(p) == f


def test_every_bound_of_the_reading_is_checked():
    ok = [base(p10=-10000), base(p10=15000), base(p11=0), base(p11=10000), base(p13=15),
          base(p14=0xFFFFFFFF), base(p15=20000), base(p16=7), base(p1000="x" * 64),
          base(p1001=-5), base(p1002=b"\x00" * 64)]
    for f in ok:
        ct_record.payload(f)
    bad = [base(p10=-10001), base(p10=15001), base(p11=10001), base(p11=-1), base(p13=16),
           base(p15=20001), base(p16=8), base(p17=1), base(p999=1), base(p1000="x" * 65),
           base(p1000=b"\x00" * 65), base(p10=True), base(p10=1.5), base(p10="450"),
           base(p6=bytes(15)), base(p5=4), base(p3=1 << 32), base(p4=-1)]
    for f in bad:
        raises(RecordError, ct_record.payload, f)
    f = base()
    f[12] = 3
    raises(RecordError, ct_record.payload, f)  # temp and fault
    f = base()
    del f[10]
    raises(RecordError, ct_record.payload, f)  # neither
    f[12] = 3
    ct_record.payload(f)
    f[11] = 5000
    raises(RecordError, ct_record.payload, f)  # rh with a fault
    for k in (1, 2, 3, 4, 5, 6):
        f = base()
        del f[k]
        raises(RecordError, ct_record.payload, f)
    raises(RecordError, ct_record.payload, base(kind=4))


def test_scan_and_status_rules():
    for uid in (b"\x01" * 4, b"\x01" * 7, b"\x01" * 10):
        ct_record.payload(base(2, p20=uid, p25=uid))
    for uid in (b"\x01" * 3, b"\x01" * 5, b"\x01" * 8, b""):
        raises(RecordError, ct_record.payload, base(2, p20=uid))
    raises(RecordError, ct_record.payload, base(2, p21=1))  # commission without item
    ct_record.payload(base(2, p21=1, p24="/01/09506000134352/10/L42/21/7"))
    raises(RecordError, ct_record.payload, base(2, p22=""))
    raises(RecordError, ct_record.payload, base(2, p22="x" * 65))
    ct_record.payload(base(2, p22="é" * 32))  # 64 bytes of UTF-8
    raises(RecordError, ct_record.payload, base(2, p22="é" * 33))
    raises(RecordError, ct_record.payload, base(2, p23=bytes(23)))
    ct_record.payload(base(3, p35=-128, p37=-0x80000000, p32="coldtrace-0.1.0"))
    raises(RecordError, ct_record.payload, base(3, p35=1))
    raises(RecordError, ct_record.payload, base(3, p37=-0x80000001))
    raises(RecordError, ct_record.payload, base(3, p10=450))  # a reading field in a status


# docs/protocol.md §1: C0, DEL and C1, as code points; their neighbours are text
CONTROL = ("\x00", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f")
PRINTABLE = (" ", "~", "\xa0", "\xe9", "\u0105", "\u2028", "\U0001f9ca")  # U+0105 is C4 85


def test_control_char_finds_the_first_code_point_of_the_ranges():
    assert ct_record.control_char("") == -1
    assert ct_record.control_char("dock-7 " + "".join(PRINTABLE)) == -1
    for c in CONTROL:
        assert ct_record.control_char("dock" + c + "\x01") == ord(c)
    assert ct_record.control_char("\u0105\x85") == 0x85  # the code point, not a byte


def test_no_text_field_holds_a_control_character():
    item = "/01/09506000134352/10/L42/21/"
    for c in CONTROL:
        for f in (base(2, p22="dock" + c), base(2, p22=c), base(2, p26="PO" + c + "4711"),
                  base(2, p21=1, p24=item + c), base(3, p32="coldtrace-0.1.0" + c),
                  base(p1000="vendor" + c)):
            e = raises(RecordError, ct_record.payload, f)
            assert "control character" in str(e), e
    for c in PRINTABLE:
        ct_record.payload(base(2, p22="dock" + c, p26="PO" + c))
        ct_record.payload(base(2, p21=1, p24=item + c))
        ct_record.payload(base(3, p32="fw" + c))
        ct_record.payload(base(p1000="vendor" + c))


def test_lost_needs_event_11_a_count_and_seqs_already_numbered():
    # seq 17: a declaration may name seqs up to 16 (§2.4, §5.2)
    for lost, n in ((0, 1), (0, 17), (15, 2), (16, 1), (3, 5)):
        f = ct_cbor.decode_map(ct_record.payload(base(3, p30=11, p37=n, p38=lost)))
        assert f[38] == lost and f[37] == n
    for lost, n in ((16, 2), (17, 1), (0, 18), (0xFFFFFFFF, 1), (0xFFFFFFFF - 1, 2)):
        raises(RecordError, ct_record.payload, base(3, p30=11, p37=n, p38=lost))
    raises(RecordError, ct_record.payload, base(3, p30=11, p37=0, p38=3))
    raises(RecordError, ct_record.payload, base(3, p30=11, p37=-1, p38=3))
    raises(RecordError, ct_record.payload, base(3, p30=11, p38=3))  # no count
    for ev in (1, 2, 5, 10, 12):
        raises(RecordError, ct_record.payload, base(3, p30=ev, p37=1, p38=3))
    raises(RecordError, ct_record.payload, base(3, p3=0, p30=11, p37=1, p38=0))
    ct_record.payload(base(3, p3=1, p30=11, p37=1, p38=0))
    ct_record.payload(base(3, p30=11, p37=4))  # dropped before numbering: no lost
    ct_record.payload(base(3, p30=11, p37=0))


def test_payload_size_limit():
    f = base()
    for i in range(8):
        f[1000 + i] = "x" * 64
    raises(RecordError, ct_record.payload, f)


def test_sign1_layout_and_signature():
    p = ct_record.payload(base(p11=5000, p15=3900))
    rec = ct_record.sign1(p, KID, SIGNER)
    prot = bytes.fromhex("a20126044974") + b"l-7f3a21"
    assert rec[:2] == b"\xd2\x84" and rec[2] == 0x40 + len(prot) and rec[3:3 + len(prot)] == prot
    pr, pl, sig = ct_record.parse_sign1(rec)
    assert bytes(pr) == prot and bytes(pl) == p and len(sig) == 64
    assert rec[3 + len(prot)] == 0xA0
    tbs = b"\x84\x6aSignature1" + bytes((0x40 + len(prot),)) + prot + b"\x40" + \
        ct_cbor.head_bytes(2, len(p)) + p
    ct_p256.verify(SIGNER.public_key(), tbs, sig)
    assert len(rec) == 131  # temp + rh + batt, 9-byte kid
    assert ct_record.record_seq(rec) == 17
    assert ct_record.chain_link(rec) == hashlib.sha256(rec).digest()[:16]
    raises(RecordError, ct_record.sign1, p, "Bad_Kid", SIGNER)
    raises(RecordError, ct_record.sign1, p, "", SIGNER)
    raises(RecordError, ct_record.sign1, p, "a" * 33, SIGNER)
    long = ct_record.sign1(p, "a" * 32, SIGNER)  # 32-byte kid: 0x58 head
    assert long[2] == 0x58 and long[3] == 5 + 32 + 1


def test_mac0_round_trip_and_refusals():
    f = {1: 41, 2: 1790000000, 3: bytes(range(16))}
    m = ct_record.mac0(f, "gw-1", KEY)
    kid, got = ct_record.verify_mac0(m, KEY)
    assert kid == b"gw-1" and got == f
    raises(MacError, ct_record.verify_mac0, m, bytes(32))
    for i in (len(m) - 1, len(m) - 40, 5):  # tag, payload, header
        b = bytearray(m)
        b[i] ^= 1
        raises(MacError, ct_record.verify_mac0, bytes(b), KEY)
    raises(MacError, ct_record.verify_mac0, m + b"\x00", KEY)
    raises(MacError, ct_record.verify_mac0, b"\xd2" + m[1:], KEY)
    raises(MacError, ct_record.verify_mac0, m[:-1], KEY)
    i = m.index(b"\xa0")
    raises(MacError, ct_record.verify_mac0, m[:i] + b"\xa1\x01\x01" + m[i + 1:], KEY)
    # a valid MAC over a header with the wrong algorithm is still refused
    bad = b"\xd1\x84\x49\xa2\x01\x26\x04\x44gw-1\xa0" + m[m.index(b"\xa0") + 1:]
    raises(MacError, ct_record.verify_mac0, bad, KEY)
    raises(MacError, ct_record.verify_mac0, m, b"short")


def test_decoder_refuses_non_canonical_cbor():
    good = bytes.fromhex("a201050202")
    assert ct_cbor.decode_map(good) == {1: 5, 2: 2}
    for h in ("a2180105 0202", "a202020105", "a201050105", "a2010502", "a201050202 00",
              "bf01050202ff", "a201f93c00", "a20182010202", "a101c0", "a101f5", "80",
              "a10161ff", "a1015f4100ff"):
        raises(ct_cbor.CBORError, ct_cbor.decode_map, bytes.fromhex(h.replace(" ", "")))


def test_encoder_refuses_what_the_protocol_forbids():
    buf = bytearray(64)
    raises(ct_cbor.CBORError, ct_cbor.encode_map, {1: None}, buf)
    raises(ct_cbor.CBORError, ct_cbor.encode_map, {1: False}, buf)
    raises(ct_cbor.CBORError, ct_cbor.encode_map, {1: 0.5}, buf)
    raises(ct_cbor.CBORError, ct_cbor.encode_map, {-1: 1}, buf)
    raises(ct_cbor.CBORError, ct_cbor.encode_map, {1: [1]}, buf)
    raises(ct_cbor.CBORError, ct_cbor.encode_map, {1: bytes(100)}, buf)


if __name__ == "__main__":
    main(globals())
