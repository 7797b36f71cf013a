"""The firmware's kind-7 rules (ct_record.check_fields) accept and refuse exactly the
reading blocks that the protocol package does, on the shared record cases
(tests/page/data/records/cases.json) and on blocks the firmware itself makes."""

import json
import sys
from pathlib import Path

from protocol.record import ReadingBlock, decode_payload, pack_block

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "page" / "data" / "records" / "cases.json"


def _fw():  # type: ignore[no-untyped-def]
    lib = str(ROOT / "firmware" / "lib")
    if lib not in sys.path:
        sys.path.insert(0, lib)
    import ct_cbor
    import ct_record

    return ct_cbor, ct_record


def _firmware_accepts(payload: bytes) -> bool:
    ct_cbor, ct_record = _fw()
    try:
        ct_record.check_fields(ct_cbor.decode_map(payload))
    except (ct_record.RecordError, ct_cbor.CBORError):
        return False
    return True


def _python_accepts(payload: bytes) -> bool:
    try:
        decode_payload(payload)
    except Exception:
        return False
    return True


def test_firmware_and_protocol_agree_on_every_block_case() -> None:
    _, ct_record = _fw()
    seen = 0
    for case in json.loads(CASES.read_text()):
        raw = bytes.fromhex(case["record"])
        try:
            _, payload, _ = ct_record.parse_sign1(raw)
        except ct_record.RecordError:
            continue  # an envelope case: not a payload rule
        if len(payload) < 3 or payload[1:3] != b"\x01\x07":  # {1: 7, ...}
            continue
        seen += 1
        assert _firmware_accepts(bytes(payload)) == _python_accepts(bytes(payload)), case
    assert seen >= 10


def test_every_slot_value_is_judged_alike() -> None:
    ct_cbor, _ = _fw()
    buf = bytearray(600)
    agree = 0
    for hi in (0x00, 0x27, 0x3A, 0x7F, 0x80, 0x81, 0xD8, 0xFF):
        for lo in (0x00, 0x01, 0x10, 0x98, 0x99, 0xEF, 0xF0, 0xFF):
            for rh in (None, b"\x00\x00", b"\x27\x10", b"\x27\x11", b"\xff\xff", b"\x80\x00"):
                f = {1: 7, 2: 1, 3: 5, 4: 1790000000, 5: 3, 6: bytes(16), 17: 300,
                     18: bytes((0x01, 0xC2, hi, lo))}
                if rh is not None:
                    f[19] = b"\x17\x70" + rh
                p = bytes(buf[: ct_cbor.encode_map(f, buf)])
                assert _firmware_accepts(p) == _python_accepts(p), (hi, lo, rh)
                agree += 1
    assert agree == 8 * 8 * 6


def test_the_firmwares_blocks_are_the_protocols() -> None:
    _, ct_record = _fw()
    lib = str(ROOT / "firmware" / "lib")
    sys.path.insert(0, lib)
    import ct_block

    temps = [450, None, -1850, 15000, -10000]
    faults = [None, 7, None, None, None]
    rhs = [6120, None, None, 10000, 0]
    t, r = pack_block(temps, faults, rhs)
    fw_t = b"".join(ct_block.slot(v, c) for v, c in zip(temps, faults, strict=True))
    fw_r = b"".join(
        ct_block.rh_slot(None if c is not None else h) for h, c in zip(rhs, faults, strict=True)
    )
    assert (fw_t, fw_r) == (t, r)
    p = ct_record.payload({1: 7, 2: 1, 3: 9, 4: 1790000000, 5: 3, 6: bytes(16), 17: 300,
                           18: fw_t, 19: fw_r, 15: 3900})
    b = decode_payload(p)
    assert isinstance(b, ReadingBlock) and b.n == 5
    assert [(x.temp, x.fault, x.rh) for x in b.readings()] == [
        (450, None, 6120), (None, 7, None), (-1850, None, None), (15000, None, 10000),
        (-10000, None, 0),
    ]
