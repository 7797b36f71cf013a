"""Deterministic CBOR: an encoder and a strict decoder (RFC 8949).

The encoder writes the core deterministic encoding of RFC 8949 §4.2.1:
shortest heads, definite lengths only, map keys sorted by the bytewise order
of their encodings. It takes integers, byte strings, text strings, lists,
dicts with integer keys and :class:`Tag`; anything else is a programming
error (``TypeError``/``ValueError``).

The decoder is written by hand because general-purpose decoders (cbor2) are
lenient by design: they accept indefinite lengths, non-shortest heads,
duplicate keys and floats. :func:`decode` accepts exactly the deterministic
subset this protocol uses (docs/protocol.md §2) and refuses everything else
with its own subclass of :class:`~protocol.errors.CBORError`:

=====================================  ======================================
refused                                error
=====================================  ======================================
input longer than ``max_size``         :class:`~protocol.errors.SizeError`
input ends inside an item              :class:`~protocol.errors.TruncatedError`
bytes after the top-level item         :class:`~protocol.errors.TrailingBytesError`
indefinite length (RFC 8949 §3.2.2)    :class:`~protocol.errors.IndefiniteLengthError`
head not in shortest form (§4.2.1)     :class:`~protocol.errors.NonCanonicalError`
floating-point value                   :class:`~protocol.errors.FloatError`
simple value (false, true, null, ...)  :class:`~protocol.errors.SimpleValueError`
tag not in ``allowed_tags``            :class:`~protocol.errors.TagError`
map key that is not an integer         :class:`~protocol.errors.MapKeyTypeError`
repeated map key                       :class:`~protocol.errors.DuplicateKeyError`
map keys out of bytewise order         :class:`~protocol.errors.UnsortedKeysError`
text string that is not UTF-8          :class:`~protocol.errors.InvalidUTF8Error`
nesting deeper than ``max_depth``      :class:`~protocol.errors.DepthError`
reserved head values (§3)              :class:`~protocol.errors.MalformedError`
=====================================  ======================================

Decoded values are ``int``, ``bytes``, ``str``, ``list``, ``dict`` (integer
keys) and :class:`Tag`. The decoder never re-encodes: callers keep and verify
the bytes they were given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from protocol.errors import (
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

__all__ = ["MAX_DEPTH_LIMIT", "Tag", "decode", "decode_at", "encode", "head"]

#: Upper bound for ``max_depth``: keeps recursion far from Python's limit.
MAX_DEPTH_LIMIT = 16

_UINT64_END = 1 << 64
_MAJOR_NAMES = ("uint", "negative int", "bstr", "tstr", "array", "map", "tag", "simple/float")


@dataclass(frozen=True, slots=True)
class Tag:
    """A CBOR tag (major type 6): tag number and the tagged item."""

    tag: int
    value: object


# --- encoder -------------------------------------------------------------------


def head(major: int, arg: int) -> bytes:
    """The shortest head for ``major`` with argument ``arg`` (RFC 8949 §3, §4.2.1)."""
    mt = major << 5
    if arg < 24:
        if arg < 0:
            raise ValueError(f"CBOR head argument must be >= 0, got {arg}")
        return bytes((mt | arg,))
    if arg < 0x100:
        return bytes((mt | 24, arg))
    if arg < 0x10000:
        return bytes((mt | 25,)) + arg.to_bytes(2, "big")
    if arg < 0x100000000:
        return bytes((mt | 26,)) + arg.to_bytes(4, "big")
    if arg < _UINT64_END:
        return bytes((mt | 27,)) + arg.to_bytes(8, "big")
    raise ValueError(f"CBOR head argument must be < 2^64, got {arg}")


def encode(obj: object) -> bytes:
    """Encode ``obj`` in core deterministic CBOR (RFC 8949 §4.2.1)."""
    out = bytearray()
    _encode(obj, out)
    return bytes(out)


def _map_sort_key(key: int) -> int:
    # For shortest-form integer heads the bytewise order of the encodings is
    # the order of (major type, argument): all unsigned keys first, ascending,
    # then negative keys by ascending argument (-1, -2, ...).
    return key if key >= 0 else _UINT64_END - 1 - key


def _encode(obj: object, out: bytearray) -> None:
    t = type(obj)
    if t is int:  # the common case first; bool is not int here
        assert isinstance(obj, int)
        if 0 <= obj < 24:
            out.append(obj)
        else:
            out += head(0, obj) if obj >= 0 else head(1, -1 - obj)
    elif isinstance(obj, bool) or obj is None:
        raise TypeError(f"cannot encode {obj!r}: no simple values in deterministic CBOR here")
    elif isinstance(obj, int):
        out += head(0, obj) if obj >= 0 else head(1, -1 - obj)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj)
        out += head(2, len(raw))
        out += raw
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        out += head(3, len(raw))
        out += raw
    elif isinstance(obj, (list, tuple)):
        out += head(4, len(obj))
        for item in obj:
            _encode(item, out)
    elif isinstance(obj, Mapping):
        for key in obj:
            if type(key) is not int:
                raise TypeError(f"CBOR map keys must be int, got {type(key).__name__}")
        out += head(5, len(obj))
        keys = sorted(obj)
        if keys and keys[0] < 0:
            keys.sort(key=_map_sort_key)
        for key in keys:
            _encode(key, out)
            _encode(obj[key], out)
    elif isinstance(obj, Tag):
        out += head(6, obj.tag)
        _encode(obj.value, out)
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} in deterministic CBOR")


# --- decoder -------------------------------------------------------------------


def decode(
    data: bytes,
    *,
    max_size: int,
    max_depth: int = 4,
    allowed_tags: frozenset[int] = frozenset(),
) -> object:
    """Decode exactly one deterministic CBOR item from ``data``; raise CBORError.

    ``max_size`` bounds the whole input in bytes. ``max_depth`` bounds nesting:
    each array, map or tag entered uses one level, so a flat map needs 1 and a
    bare integer 0. ``allowed_tags`` lists the tag numbers accepted anywhere.
    """
    if type(data) is not bytes:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        else:
            raise TypeError(f"decode() wants bytes, got {type(data).__name__}")
    if not 0 <= max_depth <= MAX_DEPTH_LIMIT:
        raise ValueError(f"max_depth must be in 0..{MAX_DEPTH_LIMIT}, got {max_depth}")
    n = len(data)
    if n > max_size:
        raise SizeError("CBOR input too large", expected=f"<= {max_size} bytes", found=n)
    try:
        value, pos = _item(data, 0, max_depth, allowed_tags)
    except IndexError:
        raise TruncatedError(
            "CBOR input ends inside an item", expected="more bytes", found=f"{n} bytes"
        ) from None
    if pos != n:
        raise TrailingBytesError(
            f"bytes after the CBOR item at offset {pos}",
            expected=f"{pos} bytes",
            found=f"{n} bytes",
        )
    return value


def decode_at(
    data: bytes,
    pos: int,
    *,
    max_depth: int = 4,
    allowed_tags: frozenset[int] = frozenset(),
) -> tuple[object, int]:
    """Decode the one item that starts at offset ``pos`` of ``data``.

    Returns the item and the offset just after it; bytes after it are the
    caller's business. Same rules and errors as :func:`decode`.
    """
    if not 0 <= max_depth <= MAX_DEPTH_LIMIT:
        raise ValueError(f"max_depth must be in 0..{MAX_DEPTH_LIMIT}, got {max_depth}")
    try:
        return _item(data, pos, max_depth, allowed_tags)
    except IndexError:
        raise TruncatedError(
            "CBOR input ends inside an item", expected="more bytes", found=f"{len(data)} bytes"
        ) from None


def _truncated(pos: int, need: int, n: int) -> TruncatedError:
    return TruncatedError(
        f"CBOR input ends inside an item at offset {pos}",
        expected=f"{need} more bytes",
        found=f"{n - pos} bytes",
    )


def _major7(ib: int, pos: int) -> Exception:
    ai = ib & 0x1F
    if ai in (25, 26, 27):
        return FloatError(
            f"floating-point value at offset {pos}",
            expected="integer (fixed-point)",
            found=f"float{16 << (ai - 25)} (0x{ib:02x})",
        )
    if ai == 31:
        return MalformedError(
            f"'break' stop code outside an indefinite-length item at offset {pos}",
            expected="a CBOR item",
            found="0xff",
        )
    if ai >= 28:
        return MalformedError(
            f"reserved additional information {ai} at offset {pos}",
            expected="0..27",
            found=ai,
        )
    names = {20: "false", 21: "true", 22: "null", 23: "undefined", 24: "simple(n)"}
    return SimpleValueError(
        f"simple value at offset {pos}",
        expected="integer, bstr, tstr, array or map",
        found=names.get(ai, f"simple({ai})"),
    )


def _item(data: bytes, pos: int, depth: int, tags: frozenset[int]) -> tuple[object, int]:
    """Decode the item at ``pos``; return it and the offset after it.

    Reads past the end raise IndexError, which :func:`decode` turns into
    TruncatedError; slices are bounds-checked explicitly.
    """
    start = pos
    ib = data[pos]
    pos += 1
    major = ib >> 5
    ai = ib & 0x1F
    if major == 7:
        raise _major7(ib, start)
    if ai < 24:
        arg = ai
    elif ai == 24:
        arg = data[pos]
        pos += 1
        if arg < 24:
            raise _non_canonical(start, 1, arg)
    elif ai == 25:
        end = pos + 2
        if end > len(data):
            raise _truncated(pos, 2, len(data))
        arg = (data[pos] << 8) | data[pos + 1]
        pos = end
        if arg < 0x100:
            raise _non_canonical(start, 2, arg)
    elif ai == 26:
        end = pos + 4
        if end > len(data):
            raise _truncated(pos, 4, len(data))
        arg = int.from_bytes(data[pos:end], "big")
        pos = end
        if arg < 0x10000:
            raise _non_canonical(start, 4, arg)
    elif ai == 27:
        end = pos + 8
        if end > len(data):
            raise _truncated(pos, 8, len(data))
        arg = int.from_bytes(data[pos:end], "big")
        pos = end
        if arg < 0x100000000:
            raise _non_canonical(start, 8, arg)
    elif ai == 31:
        if 2 <= major <= 5:
            raise IndefiniteLengthError(
                f"indefinite-length {_MAJOR_NAMES[major]} at offset {start}",
                expected="definite length",
                found=f"0x{ib:02x}",
            )
        raise MalformedError(
            f"indefinite marker on {_MAJOR_NAMES[major]} at offset {start}",
            expected="additional information 0..27",
            found=f"0x{ib:02x}",
        )
    else:
        raise MalformedError(
            f"reserved additional information {ai} at offset {start}",
            expected="0..27",
            found=f"0x{ib:02x}",
        )

    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major == 2:
        end = pos + arg
        if end > len(data):
            raise _truncated(pos, arg, len(data))
        return data[pos:end], end
    if major == 3:
        end = pos + arg
        if end > len(data):
            raise _truncated(pos, arg, len(data))
        try:
            return data[pos:end].decode("utf-8"), end
        except UnicodeDecodeError as exc:
            raise InvalidUTF8Error(
                f"text string at offset {start} is not valid UTF-8",
                expected="UTF-8",
                found=f"byte 0x{data[pos + exc.start]:02x} at offset {pos + exc.start}",
            ) from None
    if major == 6 and arg not in tags:  # say "tag" rather than "too deep"
        raise TagError(
            f"tag {arg} at offset {start} not allowed here",
            expected=sorted(tags) if tags else "no tags",
            found=arg,
        )
    if depth <= 0:
        raise DepthError(
            f"{_MAJOR_NAMES[major]} at offset {start} nested too deep",
            expected="no deeper nesting",
            found=_MAJOR_NAMES[major],
        )
    if major == 4:
        if arg > len(data) - pos:
            raise _truncated(pos, arg, len(data))
        items: list[object] = []
        append = items.append
        for _ in range(arg):
            value, pos = _item(data, pos, depth - 1, tags)
            append(value)
        return items, pos
    if major == 5:
        if 2 * arg > len(data) - pos:
            raise _truncated(pos, 2 * arg, len(data))
        result: dict[int, object] = {}
        prev = -1
        for _ in range(arg):
            kpos = pos
            kb = data[pos]
            if kb < 24:  # small unsigned key: the common case, decoded inline
                key = kb
                pos += 1
            elif kb < 0x40:
                key, pos = _item(data, pos, 0, tags)  # type: ignore[assignment]
            else:
                raise MapKeyTypeError(
                    f"map key at offset {kpos} is not an integer",
                    expected="uint or negative int",
                    found=_MAJOR_NAMES[kb >> 5],
                )
            skey = key if key >= 0 else _UINT64_END - 1 - key
            if skey <= prev:
                if skey == prev:
                    raise DuplicateKeyError(
                        f"map key {key} repeated at offset {kpos}",
                        expected="each key once",
                        found=key,
                    )
                raise UnsortedKeysError(
                    f"map key {key} at offset {kpos} out of order",
                    expected="keys in ascending bytewise order (RFC 8949 §4.2.1)",
                    found=f"{key} after {_unsort_key(prev)}",
                )
            prev = skey
            # Inline the values a record payload is made of; the rest recurses.
            vb = data[pos]
            if vb < 24:
                result[key] = vb
                pos += 1
            elif vb == 0x1A:
                end = pos + 5
                if end > len(data):
                    raise _truncated(pos + 1, 4, len(data))
                value = int.from_bytes(data[pos + 1 : end], "big")
                if value < 0x10000:
                    raise _non_canonical(pos, 4, value)
                result[key] = value
                pos = end
            elif vb == 0x19 or vb == 0x39:
                end = pos + 3
                if end > len(data):
                    raise _truncated(pos + 1, 2, len(data))
                value = (data[pos + 1] << 8) | data[pos + 2]
                if value < 0x100:
                    raise _non_canonical(pos, 2, value)
                result[key] = value if vb == 0x19 else -1 - value
                pos = end
            elif 0x40 <= vb < 0x58:
                end = pos + 1 + (vb - 0x40)
                if end > len(data):
                    raise _truncated(pos + 1, vb - 0x40, len(data))
                result[key] = data[pos + 1 : end]
                pos = end
            else:
                result[key], pos = _item(data, pos, depth - 1, tags)
        return result, pos
    # major == 6, an allowed tag
    value, pos = _item(data, pos, depth - 1, tags)
    return Tag(arg, value), pos


def _unsort_key(skey: int) -> int:
    return skey if skey < _UINT64_END else _UINT64_END - 1 - skey


def _non_canonical(pos: int, width: int, arg: int) -> NonCanonicalError:
    return NonCanonicalError(
        f"head at offset {pos} not in shortest form",
        expected=f"shortest head for {arg}",
        found=f"{width}-byte argument",
    )
