"""Kind 7, the reading block (docs/protocol.md §2.8): codec, bounds, expansion, sizes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from protocol import cbor
from protocol.errors import (
    FieldConflictError,
    FieldRangeError,
    FieldTypeError,
    MissingFieldError,
    UnknownFieldError,
)
from protocol.keys import p256_private_from_scalar
from protocol.record import (
    BLOCK_DEFAULT,
    BLOCK_MAX,
    KIND_BLOCK,
    Reading,
    ReadingBlock,
    _decode_payload_fast,
    _decode_payload_strict,
    decode_payload,
    encode_payload,
    make_record,
    pack_block,
    verify_record,
)

KEY = p256_private_from_scalar(0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721)
DEVICE = "tl-7f3a21"  # 9 bytes, as in the §3 size example
COMMON: dict[str, Any] = {
    "boot": 7,
    "seq": (1 << 20) + 17,
    "time": 1_790_000_000,
    "tq": 2,
    "prev": bytes(range(16)),
}


def block(n: int = BLOCK_DEFAULT, rh: bool = True, **kw: Any) -> ReadingBlock:
    temps, rhs = pack_block(
        [420 + 3 * i for i in range(n)], rhs=[6100 + i for i in range(n)] if rh else None
    )
    return ReadingBlock(**{**COMMON, "ivl": 300, "temps": temps, "rhs": rhs, "batt": 3710, **kw})


def craft(**fields: Any) -> bytes:
    """A kind-7 payload from raw keys (k17=...), None deletes a key; no checks."""
    m: dict[int, Any] = {1: KIND_BLOCK, 2: 7, 3: 1, 4: 1_790_000_000, 5: 2, 6: bytes(16)}
    m |= {17: 300, 18: bytes.fromhex("01a40190"), 19: bytes.fromhex("17d417d5")}
    for name, value in fields.items():
        key = int(name[1:])
        if value is None:
            m.pop(key, None)
        else:
            m[key] = value
    return cbor.encode(dict(sorted(m.items())))


def both(data: bytes) -> Any:
    """Decode on the strict path; the fast path agrees (same payload or defers)."""
    strict = _decode_payload_strict(data)
    fast = _decode_payload_fast(data)
    assert fast is None or fast == strict
    return strict


def test_round_trip_and_expansion() -> None:
    temps, rhs = pack_block(
        [-1850, None, 15000, -10000], faults=[None, 3, None, None], rhs=[6120, None, None, 0]
    )
    assert temps == bytes.fromhex("f8c680033a98d8f0")
    assert rhs == bytes.fromhex("17e8ffffffff0000")
    b = ReadingBlock(**COMMON, ivl=60, temps=temps, rhs=rhs, ch=2, cal=9, batt=3600, alarm=4)
    data = encode_payload(b)
    assert decode_payload(data) == b
    assert _decode_payload_fast(data) == b  # the hot path takes blocks too
    assert b.n == 4 and b.end_time == COMMON["time"] + 180
    rs = b.readings()
    assert [r.time for r in rs] == [COMMON["time"] + 60 * i for i in range(4)]
    assert [(r.temp, r.fault, r.rh) for r in rs] == [
        (-1850, None, 6120),
        (None, 3, None),
        (15000, None, None),
        (-10000, None, 0),
    ]
    for r in rs:
        assert isinstance(r, Reading)
        assert (r.seq, r.boot, r.tq, r.ch, r.cal, r.batt, r.alarm) == (
            COMMON["seq"],
            7,
            2,
            2,
            9,
            None,
            None,
        )
        # each expanded reading is itself a valid kind-1 payload
        assert decode_payload(encode_payload(r)) == r


def test_rh_omitted_when_no_reading_has_one() -> None:
    assert pack_block([1, 2], rhs=[None, None]) == (bytes.fromhex("00010002"), None)
    with pytest.raises(FieldRangeError, match="omit it"):
        both(craft(k19=bytes.fromhex("ffffffff")))


@pytest.mark.parametrize("n", [1, 2, BLOCK_MAX])
def test_sizes_accepted(n: int) -> None:
    b = block(n)
    assert decode_payload(encode_payload(b)).n == n  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"k18": b""}, FieldRangeError, "wrong length"),
        ({"k18": bytes(2 * BLOCK_MAX + 2), "k19": None}, FieldRangeError, "wrong length"),
        ({"k18": bytes(3), "k19": None}, FieldRangeError, "even"),
        ({"k19": bytes(2)}, FieldRangeError, "one slot per reading"),
        ({"k19": bytes(6)}, FieldRangeError, "one slot per reading"),
        ({"k17": 0}, FieldRangeError, "ivl"),
        ({"k17": 86401}, FieldRangeError, "ivl"),
        ({"k17": None}, MissingFieldError, "ivl"),
        ({"k18": None}, MissingFieldError, "temps"),
        ({"k18": bytes.fromhex("80000190")}, FieldRangeError, "0x8000"),
        ({"k18": bytes.fromhex("3a990190")}, FieldRangeError, "slot 0 is out of range"),
        ({"k18": bytes.fromhex("01a4d8ef")}, FieldRangeError, "slot 1 is out of range"),
        ({"k18": bytes.fromhex("01a481ff")}, FieldRangeError, "slot 1 is out of range"),
        ({"k19": bytes.fromhex("2711ffff")}, FieldRangeError, "rhs .* slot 0"),
        ({"k18": bytes.fromhex("01a48001")}, FieldConflictError, "faulted"),
        ({"k10": 400}, UnknownFieldError, "temp"),
        ({"k12": 3}, UnknownFieldError, "fault"),
        ({"k11": 3}, UnknownFieldError, "rh"),
        ({"k20": bytes(4)}, UnknownFieldError, "uid"),
        ({"k17": -1}, FieldTypeError, "ivl"),
        ({"k18": "01a4"}, FieldTypeError, "temps"),
        ({"k4": (1 << 32) - 300, "k17": 300}, FieldRangeError, "below 2\\^32"),
    ],
)
def test_refused(fields: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        both(craft(**fields))
    with pytest.raises(error):
        decode_payload(craft(**fields))


def test_end_time_bound_is_exact() -> None:
    # the last reading at 2^32 - 1 is fine; one second later is not
    ok = craft(k4=(1 << 32) - 1 - 300, k17=300)
    assert both(ok).end_time == (1 << 32) - 1
    with pytest.raises(FieldRangeError):
        both(craft(k4=(1 << 32) - 300, k17=300))


def test_block_fields_are_not_kind_1_fields() -> None:
    m = {1: 1, 2: 7, 3: 1, 4: 1_790_000_000, 5: 2, 6: bytes(16), 10: 400, 17: 300}
    with pytest.raises(UnknownFieldError, match="ivl"):
        decode_payload(cbor.encode(m))


def test_encoder_refuses_what_the_decoder_refuses() -> None:
    with pytest.raises(FieldRangeError):
        encode_payload(dataclasses.replace(block(2), temps=bytes.fromhex("80000001"), rhs=None))
    with pytest.raises(ValueError, match="exactly one"):
        pack_block([1, None], faults=[None, None])
    with pytest.raises(ValueError, match="one entry"):
        pack_block([1, 2], rhs=[1])
    # a value no slot can hold is refused, never wrapped into a valid one
    for bad in ([15001], [-10001], [65536 + 400]):
        with pytest.raises(ValueError, match="temperature"):
            pack_block(bad)
    for code in (0, 256):
        with pytest.raises(ValueError, match="fault code"):
            pack_block([None], faults=[code])
    with pytest.raises(ValueError, match="humidity"):
        pack_block([1], rhs=[10001])
    with pytest.raises(ValueError, match="humidity"):
        pack_block([None], faults=[3], rhs=[5000])


def test_every_single_byte_flip_is_refused_or_a_valid_block() -> None:
    data = encode_payload(block(4))
    for i in range(len(data)):
        for bit in range(8):
            mutated = bytearray(data)
            mutated[i] ^= 1 << bit
            try:
                p = _decode_payload_strict(bytes(mutated))
            except Exception:
                assert _decode_payload_fast(bytes(mutated)) is None
                continue
            assert _decode_payload_fast(bytes(mutated)) in (None, p)
            assert encode_payload(p) == bytes(mutated)  # one encoding per value


#: Bytes on the wire of a signed block (COSE_Sign1, ES256, deterministic CBOR) with
#: humidity and battery, the §3 example's device id and seq: the §15 table.
WIRE_WITH_RH = {1: 139, 4: 151, 8: 167, 12: 185, 16: 201, 32: 265, 64: 394}
WIRE_TEMP_ONLY = {1: 135, 4: 141, 8: 149, 12: 158, 16: 166, 32: 198, 64: 262}


@pytest.mark.parametrize("n", sorted(WIRE_WITH_RH))
def test_bytes_per_reading(n: int) -> None:
    with_rh = make_record(block(n), DEVICE, KEY, deterministic=True)
    temp_only = make_record(block(n, rh=False), DEVICE, KEY, deterministic=True)
    assert verify_record(with_rh, KEY.public_key()).payload == block(n)
    assert (len(with_rh), len(temp_only)) == (WIRE_WITH_RH[n], WIRE_TEMP_ONLY[n])


def test_default_block_meets_the_goal() -> None:
    rec = make_record(block(BLOCK_DEFAULT), DEVICE, KEY, deterministic=True)
    assert len(rec) / BLOCK_DEFAULT <= 40
    # and the largest block is within every size limit (§2.9, §3)
    big = make_record(block(BLOCK_MAX), DEVICE, KEY, deterministic=True)
    assert len(encode_payload(block(BLOCK_MAX))) <= 512 and len(big) <= 1024


def test_the_spec_tables_are_the_measured_sizes() -> None:
    """docs/protocol.md §15's bytes-per-reading table and §2.8's example are these figures."""
    spec = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text("utf-8")
    rows = {}
    for line in spec.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in (
            "temperature and humidity: bytes",
            "temperature only: bytes",
        ):
            rows[cells[0]] = [int(c) for c in cells[1:]]
    sizes = sorted(WIRE_WITH_RH)
    assert rows["temperature and humidity: bytes"] == [WIRE_WITH_RH[n] for n in sizes]
    assert rows["temperature only: bytes"] == [WIRE_TEMP_ONLY[n] for n in sizes]
    n = BLOCK_DEFAULT
    assert (
        f"is {WIRE_WITH_RH[n]} bytes on the\nwire, {WIRE_WITH_RH[n] / n:.1f} bytes per reading"
        in spec
    )
    assert (
        f"{BLOCK_MAX} readings (two 128-byte slot arrays); the largest block is "
        f"{WIRE_WITH_RH[BLOCK_MAX]} bytes" in spec
    )
