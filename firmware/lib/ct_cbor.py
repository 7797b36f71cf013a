"""Deterministic CBOR (RFC 8949 §4.2.1) for ColdTrace's flat maps.

Only what the records, acks and commands need (docs/protocol.md §2, §5):
unsigned and negative integers, byte strings, text strings, one flat map
with unsigned integer keys. No floats, tags, simple values or indefinite
lengths - the encoder cannot produce them and the decoder refuses them.

    buf = bytearray(512)
    n = encode_map(fields, buf)        # fields: {int key: int | bytes | str}
    payload = bytes(buf[:n])           # keys ascending, shortest heads
    d = decode_map(data)               # strict: canonical heads, ascending
                                       # keys, no trailing bytes
    n = head(buf, pos, major, value)   # writes one head, returns new pos

MicroPython's dict keeps no order, so ``encode_map`` sorts the keys; a
payload is then byte-for-byte what any core-deterministic encoder makes.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


MAJ_UINT = const(0)
MAJ_NINT = const(1)
MAJ_BYTES = const(2)
MAJ_TEXT = const(3)
MAJ_ARRAY = const(4)
MAJ_MAP = const(5)
MAJ_TAG = const(6)

_U64 = 0xFFFFFFFFFFFFFFFF


class CBORError(ValueError):
    pass


def head_len(n):
    if n < 24:
        return 1
    if n < 0x100:
        return 2
    if n < 0x10000:
        return 3
    if n < 0x100000000:
        return 5
    return 9


def head(buf, pos, major, n):
    """Write the shortest head for (major, n) at buf[pos]; return the new pos."""
    if n < 0 or n > _U64:
        raise CBORError("argument out of range")
    m = major << 5
    if n < 24:
        buf[pos] = m | n
        return pos + 1
    if n < 0x100:
        buf[pos] = m | 24
        buf[pos + 1] = n
        return pos + 2
    if n < 0x10000:
        buf[pos] = m | 25
        w = 2
    elif n < 0x100000000:
        buf[pos] = m | 26
        w = 4
    else:
        buf[pos] = m | 27
        w = 8
    i = pos + w
    while i > pos:
        buf[i] = n & 0xFF
        n >>= 8
        i -= 1
    return pos + 1 + w


def head_bytes(major, n):
    b = bytearray(9)
    return bytes(b[: head(b, 0, major, n)])


def _value(buf, pos, v):
    t = type(v)
    if t is bool or v is None:
        raise CBORError("no simple values")
    if t is int:
        if v >= 0:
            return head(buf, pos, MAJ_UINT, v)
        return head(buf, pos, MAJ_NINT, -1 - v)
    if t is str:
        v = v.encode()
        major = MAJ_TEXT
    elif t is bytes or t is bytearray or t is memoryview:
        major = MAJ_BYTES
    else:
        raise CBORError("value must be int, bytes or str")
    n = len(v)
    pos = head(buf, pos, major, n)
    if pos + n > len(buf):
        raise CBORError("buffer too small")
    buf[pos : pos + n] = v
    return pos + n


def encode_map(fields, buf):
    """Encode {uint: int|bytes|str} into buf; return the length used."""
    keys = sorted(fields)
    if len(keys) > 23:
        raise CBORError("too many fields")
    pos = head(buf, 0, MAJ_MAP, len(keys))
    for k in keys:
        if type(k) is not int or k < 0:
            raise CBORError("map keys are unsigned integers")
        if pos + 9 + 9 > len(buf):
            raise CBORError("buffer too small")
        pos = head(buf, pos, MAJ_UINT, k)
        pos = _value(buf, pos, fields[k])
    return pos


def read_head(data, pos):
    """(major, argument, new pos); refuses non-shortest and indefinite heads."""
    if pos >= len(data):
        raise CBORError("truncated")
    ib = data[pos]
    major = ib >> 5
    ai = ib & 31
    pos += 1
    if ai < 24:
        return major, ai, pos
    if ai > 27:
        raise CBORError("indefinite length or reserved head")
    w = 1 << (ai - 24)
    if pos + w > len(data):
        raise CBORError("truncated")
    n = 0
    for i in range(w):
        n = (n << 8) | data[pos + i]
    if head_len(n) != 1 + w:
        raise CBORError("non-canonical head")
    return major, n, pos + w


def decode_map(data, limit=24):
    """Strict decode of one flat map {uint: uint|nint|bstr|tstr}."""
    major, count, pos = read_head(data, 0)
    if major != MAJ_MAP:
        raise CBORError("not a map")
    if count > limit:
        raise CBORError("too many entries")
    out = {}
    last = -1
    for _ in range(count):
        major, k, pos = read_head(data, pos)
        if major != MAJ_UINT:
            raise CBORError("map key is not an unsigned integer")
        if k <= last:
            raise CBORError("keys not ascending or duplicated")
        last = k
        major, n, pos = read_head(data, pos)
        if major == MAJ_UINT:
            v = n
        elif major == MAJ_NINT:
            v = -1 - n
        elif major == MAJ_BYTES or major == MAJ_TEXT:
            if pos + n > len(data):
                raise CBORError("truncated")
            v = bytes(data[pos : pos + n])
            pos += n
            if major == MAJ_TEXT:
                try:
                    v = v.decode()
                except UnicodeError:
                    raise CBORError("invalid UTF-8")
        else:
            raise CBORError("value type not allowed")
        out[k] = v
    if pos != len(data):
        raise CBORError("trailing bytes")
    return out


def read_bstr(data, pos):
    """(start, end) of the byte string at pos."""
    major, n, pos = read_head(data, pos)
    if major != MAJ_BYTES:
        raise CBORError("not a byte string")
    if pos + n > len(data):
        raise CBORError("truncated")
    return pos, pos + n
