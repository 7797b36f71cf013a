"""Deterministic CBOR encoder and strict decoder (protocol.cbor, RFC 8949)."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import cbor
from protocol.cbor import Tag, decode, encode
from protocol.errors import (
    CBORError,
    DepthError,
    DuplicateKeyError,
    FloatError,
    IndefiniteLengthError,
    InvalidUTF8Error,
    MalformedError,
    MapKeyTypeError,
    NonCanonicalError,
    SimpleValueError,
    SizeError,
    TagError,
    TrailingBytesError,
    TruncatedError,
    UnsortedKeysError,
)


def dec(hex_: str, **kw: object) -> object:
    kw.setdefault("max_size", 4096)
    return decode(bytes.fromhex(hex_), **kw)  # type: ignore[arg-type]


# --- RFC 8949 Appendix A examples (the subset without floats/simple values) ----------

APPENDIX_A = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (b"", "40"),
    (bytes.fromhex("01020304"), "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({1: 2, 3: 4}, "a201020304"),
    (Tag(1, 1363896240), "c11a514b67b0"),
    (Tag(23, bytes.fromhex("01020304")), "d74401020304"),
]


@pytest.mark.parametrize(("value", "hex_"), APPENDIX_A, ids=[h for _, h in APPENDIX_A])
def test_encode_matches_rfc8949_appendix_a(value: object, hex_: str) -> None:
    assert encode(value).hex() == hex_


@pytest.mark.parametrize(("value", "hex_"), APPENDIX_A, ids=[h for _, h in APPENDIX_A])
def test_decode_matches_rfc8949_appendix_a(value: object, hex_: str) -> None:
    tags = frozenset({1, 23})
    assert dec(hex_, allowed_tags=tags) == value


def test_encode_sorts_map_keys_bytewise() -> None:
    # RFC 8949 §4.2.1: bytewise order of the encoded keys. 24 (18 18) sorts
    # before -1 (20) although it is longer (length-first order would differ).
    parts = ["a6", "0100", "181800", "186400", "2000", "3700", "381800"]
    assert encode({-1: 0, 24: 0, 1: 0, 100: 0, -24: 0, -25: 0}).hex() == "".join(parts)


def test_encode_accepts_tuples_and_bytearrays() -> None:
    assert encode((1, bytearray(b"\x01"))) == bytes.fromhex("82014101")


@pytest.mark.parametrize(
    "value",
    [1.5, True, False, None, {"a": 1}, {b"k": 1}, {True: 1}, 2**64, -(2**64) - 1, object()],
    ids=repr,
)
def test_encode_refuses_what_the_profile_does_not_have(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode(value)


# --- refusals, one rule each -------------------------------------------------------------


@pytest.mark.parametrize(
    "hex_", ["9f01ff", "bf0101ff", "5f4101ff", "7f6161ff", "9fff", "a1019f01ff"]
)
def test_decode_rejects_indefinite_length(hex_: str) -> None:
    with pytest.raises(IndefiniteLengthError):
        dec(hex_, max_depth=2)


@pytest.mark.parametrize(
    "hex_",
    [
        "1817",  # 23 with a 1-byte argument
        "190017",  # 23 with a 2-byte argument
        "1900ff",  # 255 with a 2-byte argument
        "1a0000ffff",  # 65535 with a 4-byte argument
        "1b00000000ffffffff",  # 2^32-1 with an 8-byte argument
        "3817",  # -24 with a 1-byte argument
        "390017",
        "580100",  # bstr of length 1 with a 1-byte length
        "780161",  # tstr of length 1 with a 1-byte length
        "980101",  # array of 1 with a 1-byte count
        "b8010101",  # map of 1 with a 1-byte count
        "d81701",  # tag 23 with a 1-byte tag number
    ],
)
def test_decode_rejects_non_shortest_int(hex_: str) -> None:
    with pytest.raises(NonCanonicalError):
        dec(hex_, allowed_tags=frozenset({23}))


@pytest.mark.parametrize("hex_", ["f93c00", "fa47c35000", "fb3ff199999999999a", "a101f93c00"])
def test_decode_rejects_floats(hex_: str) -> None:
    with pytest.raises(FloatError):
        dec(hex_)


@pytest.mark.parametrize("hex_", ["f4", "f5", "f6", "f7", "e0", "f3", "f820", "f8ff", "a101f6"])
def test_decode_rejects_simple_values(hex_: str) -> None:
    with pytest.raises(SimpleValueError):
        dec(hex_)


@pytest.mark.parametrize("hex_", ["c001", "d24101", "a101c11a514b67b0", "d9ffff01"])
def test_decode_rejects_disallowed_tag(hex_: str) -> None:
    with pytest.raises(TagError):
        dec(hex_)


def test_decode_accepts_an_allowed_tag_only() -> None:
    assert dec("d28101", allowed_tags=frozenset({18})) == Tag(18, [1])
    with pytest.raises(TagError):
        dec("d28101", allowed_tags=frozenset({17}))
    with pytest.raises(TagError):
        dec("d2d28101", allowed_tags=frozenset({18}) - {18})


@pytest.mark.parametrize("hex_", ["a201000100", "a3010001000200", "a2181800181800", "a220002000"])
def test_decode_rejects_duplicate_key(hex_: str) -> None:
    with pytest.raises(DuplicateKeyError):
        dec(hex_)


@pytest.mark.parametrize(
    "hex_",
    [
        "a202000100",  # 2 then 1
        "a2181800170000",  # 24 then 23
        "a220000100",  # -1 then 1: unsigned keys sort first
        "a2210020 00".replace(" ", ""),  # -2 then -1
        "a2381800181800",  # -25 then 24
    ],
)
def test_decode_rejects_unsorted_keys(hex_: str) -> None:
    with pytest.raises(UnsortedKeysError):
        dec(hex_)


def test_decode_accepts_keys_in_bytewise_order() -> None:
    data = encode({1: 0, 24: 0, -1: 0, -2: 0, 1000: 0})
    assert dec(data.hex()) == {1: 0, 24: 0, -1: 0, -2: 0, 1000: 0}


@pytest.mark.parametrize("hex_", ["a1616101", "a1410101", "a1800101", "a1a00101", "a1f401"])
def test_decode_rejects_non_int_map_key(hex_: str) -> None:
    with pytest.raises((MapKeyTypeError, SimpleValueError)):
        dec(hex_, max_depth=3)
    if hex_ != "a1f401":
        with pytest.raises(MapKeyTypeError):
            dec(hex_, max_depth=3)


@pytest.mark.parametrize(
    "hex_",
    [
        "62c080",  # overlong encoding of U+0000
        "63eda080",  # UTF-16 surrogate U+D800
        "61ff",  # never valid
        "62e282",  # truncated 3-byte sequence
        "64f4908080",  # above U+10FFFF
    ],
)
def test_decode_rejects_invalid_utf8(hex_: str) -> None:
    with pytest.raises(InvalidUTF8Error):
        dec(hex_)


@pytest.mark.parametrize("hex_", ["0000", "a0a0", "4100 00".replace(" ", ""), "8001"])
def test_decode_rejects_trailing_bytes(hex_: str) -> None:
    with pytest.raises(TrailingBytesError):
        dec(hex_)


@pytest.mark.parametrize(
    "hex_",
    [
        "",
        "18",
        "19 01".replace(" ", ""),
        "1a000100",
        "1b0000000100000000"[:-2],
        "4201",
        "6261",
        "8201",
        "a101",
        "a1",
        "c1",
        "9bffffffffffffffff",  # huge declared count: refused without allocating
        "5bffffffffffffffff",
    ],
)
def test_decode_rejects_truncated(hex_: str) -> None:
    with pytest.raises(TruncatedError):
        dec(hex_, allowed_tags=frozenset({1}))


def test_decode_rejects_oversize() -> None:
    data = encode(b"x" * 100)
    assert decode(data, max_size=len(data)) == b"x" * 100
    with pytest.raises(SizeError) as info:
        decode(data, max_size=len(data) - 1)
    assert info.value.found == len(data)


def test_decode_rejects_too_deep() -> None:
    assert dec("01", max_depth=0) == 1
    assert dec("a10102", max_depth=1) == {1: 2}
    with pytest.raises(DepthError):
        dec("a10102", max_depth=0)
    with pytest.raises(DepthError):
        dec("a101a0", max_depth=1)  # a map inside a flat map
    with pytest.raises(DepthError):
        dec("81" * 5 + "01", max_depth=4)
    assert dec("81" * 4 + "01", max_depth=4) == [[[[1]]]]
    with pytest.raises(DepthError):  # tags count as a level: no unbounded recursion
        dec("d2" * 600 + "01", max_size=2000, allowed_tags=frozenset({18}), max_depth=16)


def test_decode_refuses_unbounded_max_depth() -> None:
    with pytest.raises(ValueError):
        dec("01", max_depth=cbor.MAX_DEPTH_LIMIT + 1)


@pytest.mark.parametrize("hex_", ["1c", "1d", "1e", "3c", "5c", "7c", "9c", "bc", "dc", "fc"])
def test_decode_rejects_reserved_additional_information(hex_: str) -> None:
    with pytest.raises(MalformedError):
        dec(hex_)


@pytest.mark.parametrize("hex_", ["1f", "3f", "df", "ff"])
def test_decode_rejects_indefinite_marker_without_meaning(hex_: str) -> None:
    with pytest.raises(MalformedError):
        dec(hex_)


def test_errors_carry_expected_and_found() -> None:
    with pytest.raises(NonCanonicalError) as info:
        dec("1817")
    assert info.value.expected is not None
    assert info.value.found is not None
    assert "want" in str(info.value)
    assert "got" in str(info.value)
    assert info.value.code == "malformed_record"


def test_decode_at_returns_the_offset_after_the_item() -> None:
    data = bytes.fromhex("0102a0")
    assert cbor.decode_at(data, 1) == (2, 2)
    with pytest.raises(TruncatedError):
        cbor.decode_at(bytes.fromhex("19"), 0)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    assert decode(bytearray(b"\x01"), max_size=1) == 1  # type: ignore[arg-type]
    assert decode(memoryview(b"\x01"), max_size=1) == 1  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        decode("01", max_size=2)  # type: ignore[arg-type]


# --- properties ------------------------------------------------------------------------------

ints = st.integers(min_value=-(2**64), max_value=2**64 - 1)
scalars = st.one_of(ints, st.binary(max_size=40), st.text(max_size=20))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(ints, inner, max_size=5),
        st.builds(Tag, st.sampled_from([18, 1000, 40000]), inner),
    ),
    max_leaves=20,
)
ANY_TAG = frozenset({18, 1000, 40000})


@given(values)
@settings(max_examples=400)
def test_encode_decode_round_trips(value: object) -> None:
    data = encode(value)
    assert decode(data, max_size=len(data), max_depth=16, allowed_tags=ANY_TAG) == value
    assert encode(decode(data, max_size=len(data), max_depth=16, allowed_tags=ANY_TAG)) == data


@given(values)
@settings(max_examples=300)
def test_decoded_values_agree_with_cbor2(value: object) -> None:
    data = encode(value)

    def plain(v: object) -> object:
        if isinstance(v, Tag):
            return cbor2.CBORTag(v.tag, plain(v.value))
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    assert cbor2.loads(data) == plain(value)


@given(st.dictionaries(st.integers(0, 2**64 - 1), st.integers(0, 1000), max_size=8))
def test_encode_matches_cbor2_canonical_for_unsigned_keys(value: dict[int, int]) -> None:
    assert encode(value) == cbor2.dumps(value, canonical=True)


@given(st.binary(max_size=64))
@settings(max_examples=2000)
def test_decoder_fuzz_raises_only_cbor_errors(data: bytes) -> None:
    try:
        value = decode(data, max_size=64, max_depth=4, allowed_tags=frozenset({18}))
    except CBORError:
        return
    # Whatever is accepted is well-formed CBOR that cbor2 reads the same way,
    # and is already in deterministic form.
    assert encode(value) == data


@given(values, st.data())
@settings(max_examples=300)
def test_decoder_fuzz_of_mutated_encodings_raises_only_cbor_errors(
    value: object, data: st.DataObject
) -> None:
    raw = bytearray(encode(value))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    try:
        out = decode(bytes(raw), max_size=len(raw), max_depth=16, allowed_tags=ANY_TAG)
    except CBORError:
        return
    assert encode(out) == bytes(raw)
