"""A hardened JSON reader for documents from outside: trace bundles and trust files.

The JSON rules of docs/protocol.md §9, in the order they are checked, so that
hostile input costs bounded time and memory before anything is built:

1. size: at most ``limit`` bytes, checked before reading (``stat`` of a
   regular file) and never more than ``limit + 1`` bytes read from any stream;
2. UTF-8 (RFC 8259 §8.1), without a byte order mark;
3. a pre-scan at C speed (``bytes.replace``/``translate``/``count``, no
   Python loop per byte) of the brackets outside strings: at most
   ``max_containers`` objects and arrays in all, nested at most ``max_depth``
   deep, so that neither 60 MiB of ``[{},{},…]`` nor 100,000 ``[`` ever
   reach the parser;
4. :func:`json.loads` with hooks that refuse duplicate member names, numbers
   that are not integers written as integers (``1.0``, ``1e3``), ``NaN`` and
   ``Infinity``, and integer literals longer than 20 digits.

Every refusal is an instance of the caller's error class (``BundleError``,
``TrustError``) with a short message; attacker input appears in a message
only through :func:`show`, escaped and cut to a few dozen characters.
What the document means (members, types, ranges) is the caller's business.
"""

from __future__ import annotations

import gc
import json
import os
import stat
import sys
from collections.abc import Callable
from typing import IO, Any, NoReturn

from protocol.errors import VerificationError

__all__ = [
    "MAX_CONTAINERS",
    "MAX_DEPTH",
    "check_text",
    "load_strict",
    "loads_strict",
    "read_limited",
    "show",
]

#: Deepest nesting of objects and arrays (the outermost counts as 1).
MAX_DEPTH = 8
#: Most objects and arrays in one document.
MAX_CONTAINERS = 4_000_000
#: An integer of the protocol is below 2^64: at most 20 digits (and a sign).
_MAX_INT_DIGITS = 21
_INT_DIGITS_LIMIT = 4300  # CPython's default int_max_str_digits

ErrorClass = Callable[..., VerificationError]

_BOM = b"\xef\xbb\xbf"
_SHOW = 40
# Keep the four brackets and the quote, map { } to [ ] (depth does not care which).
_STRUCTURE_TABLE = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_CHUNK = 1 << 18


class _Refused(ValueError):
    """Raised inside json.loads hooks; turned into the caller's error class."""


def show(value: object, limit: int = _SHOW) -> str:
    """``value`` for an error message: ASCII-escaped, cut to about ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    cut = text[:limit]
    out = ascii(cut)
    return out + "…" if len(text) > limit else out


def check_text(value: str) -> bytes | None:
    """The UTF-8 of ``value``, or None if it holds a lone surrogate (from a ``\\ud800`` escape)."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        return None


# --- reading -----------------------------------------------------------------------------


def read_limited(
    source: str | os.PathLike[str] | IO[bytes], limit: int, *, what: str, error: ErrorClass
) -> bytes:
    """The bytes of a file (path) or binary stream, refusing more than ``limit`` bytes.

    A regular file is measured with ``fstat`` before anything is read; from
    any source at most ``limit + 1`` bytes are read.
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            f = open(source, "rb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise error(
                f"cannot open the {what}: {exc.strerror}", found=show(str(source))
            ) from None
        with f:
            try:
                st = os.fstat(f.fileno())
            except OSError as exc:
                raise error(f"cannot read the {what}: {exc.strerror}") from None
            if stat.S_ISREG(st.st_mode) and st.st_size > limit:
                raise _too_large(what, error, limit, st.st_size)
            data = _read_at_most(f, limit + 1, what, error)
    else:
        data = _read_at_most(source, limit + 1, what, error)
    if len(data) > limit:
        raise _too_large(what, error, limit, f"more than {limit} bytes")
    return data


def _read_at_most(f: IO[bytes], n: int, what: str, error: ErrorClass) -> bytes:
    chunks: list[bytes] = []
    left = n
    try:
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            if not isinstance(chunk, bytes):
                raise error(f"the {what} stream must give bytes", found=type(chunk).__name__)
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise error(f"cannot read the {what}: {exc.strerror}") from None
    return b"".join(chunks)


def _too_large(what: str, error: ErrorClass, limit: int, size: object) -> VerificationError:
    return error(f"the {what} is too large", expected=f"<= {limit} bytes", found=size)


# --- parsing ------------------------------------------------------------------------------


def load_strict(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    limit: int,
    what: str,
    error: ErrorClass,
    max_depth: int = MAX_DEPTH,
    max_containers: int = MAX_CONTAINERS,
) -> Any:
    """:func:`read_limited`, then :func:`loads_strict`."""
    data = read_limited(source, limit, what=what, error=error)
    return loads_strict(
        data,
        limit=limit,
        what=what,
        error=error,
        max_depth=max_depth,
        max_containers=max_containers,
    )


def loads_strict(
    data: bytes | str,
    *,
    limit: int,
    what: str,
    error: ErrorClass,
    max_depth: int = MAX_DEPTH,
    max_containers: int = MAX_CONTAINERS,
) -> Any:
    """Parse one JSON document under the rules of the module docstring; raise ``error``."""
    if isinstance(data, str):
        if len(data) > limit:  # at least as many bytes as characters
            raise _too_large(what, error, limit, f"{len(data)} characters")
        raw = check_text(data)
        if raw is None:
            raise error(f"the {what} is not valid Unicode (a lone surrogate)")
        data = raw
    elif isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    elif not isinstance(data, bytes):
        raise TypeError(f"a {what} is bytes or str, not {type(data).__name__}")
    if len(data) > limit:
        raise _too_large(what, error, limit, len(data))
    if data.startswith(_BOM):
        raise error(f"the {what} starts with a byte order mark (RFC 8259 §8.1: no BOM)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"the {what} is not UTF-8",
            expected="UTF-8",
            found=f"byte 0x{data[exc.start]:02x} at offset {exc.start}",
        ) from None
    reason = _prescan(data, max_depth, max_containers)
    if reason is not None:
        raise error(f"the {what} {reason}")
    # Python's own limit on decimal digits (4300 unless changed) bounds the cost of
    # an integer literal; if a program lifted it, a hook bounds it instead.
    digits = sys.get_int_max_str_digits()
    collect = gc.isenabled()
    if collect:
        gc.disable()  # the parse builds no cycles; collections only slow it down
    try:
        return json.loads(
            text,
            object_pairs_hook=_object,
            parse_float=_no_float,
            parse_int=int if 0 < digits <= _INT_DIGITS_LIMIT else _int,
            parse_constant=_no_constant,
        )
    except _Refused as exc:
        raise error(f"the {what} {exc}") from None
    except json.JSONDecodeError as exc:
        raise error(
            f"the {what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError:  # an integer literal longer than Python's digit limit
        raise error(f"the {what} has an integer literal that is too long") from None
    except (RecursionError, MemoryError) as exc:  # defensive: the pre-scan bounds both
        raise error(f"the {what} is not acceptable JSON ({type(exc).__name__})") from None
    finally:
        if collect:
            gc.enable()


def _prescan(data: bytes, max_depth: int, max_containers: int) -> str | None:
    """Why ``data`` nests too deep or holds too many containers, or None.

    Brackets inside strings do not count. Escapes are dropped first (pairs of
    backslashes, then escaped quotes: in a run of backslashes before a quote,
    the quote is escaped exactly when the run is odd); then only brackets and
    quotes are kept, empty strings (``""``, adjacent quotes) are dropped, and
    any remaining string contents are cut out chunk by chunk (bounded memory).
    A balanced bracket word empties in as many rounds of removing ``[]`` as
    it is deep; anything left after ``max_depth`` rounds is too deep (or
    unbalanced, which the parser would refuse anyway).
    """
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = data.translate(_STRUCTURE_TABLE, _NOT_STRUCTURE)
    if b'"' in kept:
        kept = kept.replace(b'""', b"")
        if b'"' in kept:
            outside = _outside_strings(kept)
            if outside is None:
                return "has a string that is not closed"
            kept = outside
    containers = kept.count(b"[")
    if containers > max_containers:
        return f"holds {containers} objects and arrays (at most {max_containers})"
    for _ in range(max_depth):
        if not kept:
            return None
        kept = kept.replace(b"[]", b"")
    if kept:
        return f"nests objects and arrays deeper than {max_depth} levels (or does not balance them)"
    return None


def _outside_strings(kept: bytes) -> bytes | None:
    """The brackets of ``kept`` (brackets and quotes only) outside strings; None if unclosed."""
    out: list[bytes] = []
    inside = False
    for start in range(0, len(kept), _CHUNK):
        parts = kept[start : start + _CHUNK].split(b'"')
        out.append(b"".join(parts[1::2] if inside else parts[0::2]))
        if len(parts) % 2 == 0:
            inside = not inside
    return None if inside else b"".join(out)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _Refused(f"has an object with the member {show(name)} twice")
            seen.add(name)
    return obj


def _int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        raise _Refused(f"has an integer of {len(text)} digits (at most 20)")
    return int(text)


def _no_float(text: str) -> NoReturn:
    raise _Refused(f"has a number that is not an integer: {show(text)}")


def _no_constant(name: str) -> NoReturn:
    raise _Refused(f"has {name}, which is not a JSON number")
