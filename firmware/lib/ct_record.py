"""Records as signed COSE_Sign1 messages; acks and commands as COSE_Mac0.

docs/protocol.md §2 (payload), §3 (COSE_Sign1 profile), §4 (chain link),
§5.2/§5.3 (ack and command Mac0). Every value is an integer in fixed units;
nothing here touches a float.

    p = payload(fields)                  # {key: value} -> deterministic CBOR;
                                         # checks every bound of §2 first
    rec = sign1(p, kid, signer)          # COSE_Sign1 bytes, tag 18; signer
                                         # has sign_digest(h) -> r || s
    link = chain_link(rec)               # SHA-256(rec)[:16], the next prev
    prot, pl, sig = parse_sign1(rec)     # slices of our own records
    seq = record_seq(rec)                # field 3 of a record's payload
    f = record_fields(rec)               # all of them (our own records)
    o = control_char(text)               # first control character or -1
    kid, fields = verify_mac0(msg, key)  # ack/command: raises MacError
    msg = mac0(fields, kid, key)         # the gateway side, for tests/sim

``fields`` are the protocol's integer keys: 1 kind, 2 boot, 3 seq, 4 time,
5 tq, 6 prev, 10.. per kind. The caller (ct_core) fills 2, 3 and 6. Scan
key 27 (``link``, protocol v2) is the custody link read from the tag: 16
bytes, the chain_link of the tag's previous custody scan (ct_custody).
The largest scan payload (every optional field at its longest) is 385 bytes,
inside _MAX_PAYLOAD.

Record rules of protocol v2 that ``check_fields`` enforces besides the
bounds: no text (every tstr field, extensions too) holds a control
character (§1: U+0000-U+001F, U+007F-U+009F, counted in code points as
protocol/record.py does); a status record with ``lost`` (38) has event 11,
detail (37) >= 1 and lost + detail - 1 < seq (§2.4).
"""

import hashlib

import ct_cbor
from ct_hmac import eq, hmac_sha256

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MAX_PAYLOAD = const(512)
_MAX_RECORD = const(1024)
_U32 = 0xFFFFFFFF

# value kinds in the tables below
_U = const(0)  # uint lo..hi
_I = const(1)  # int lo..hi
_B = const(2)  # bstr, length lo..hi
_T = const(3)  # tstr, UTF-8 length lo..hi
_UID = const(4)  # bstr of 4, 7 or 10 bytes

_COMMON = {1: (_U, 1, 7), 2: (_U, 0, _U32), 3: (_U, 0, _U32), 4: (_U, 0, _U32),
           5: (_U, 0, 3), 6: (_B, 16, 16)}
_BATT = (_U, 0, 20000)
_KINDS = {
    1: {10: (_I, -10000, 15000), 11: (_U, 0, 10000), 12: (_U, 1, 255), 13: (_U, 0, 15),
        14: (_U, 0, _U32), 15: _BATT, 16: (_U, 0, 7)},
    2: {20: (_UID, 0, 0), 21: (_U, 1, 7), 22: (_T, 1, 64), 23: (_B, 24, 24),
        24: (_T, 1, 128), 25: (_UID, 0, 0), 26: (_T, 1, 64), 27: (_B, 16, 16), 15: _BATT},
    3: {30: (_U, 1, 255), 31: (_U, 0, _U32), 32: (_T, 1, 32), 33: (_U, 0, _U32),
        34: (_U, 0, _U32), 35: (_I, -128, 0), 36: (_U, 0, 255),
        37: (_I, -0x80000000, _U32), 38: (_U, 0, _U32), 39: (_U, 0, _U32), 15: _BATT},
    # kind 7, reading block (§2.8): slots checked by _check_block
    7: {13: (_U, 0, 15), 14: (_U, 0, _U32), 15: _BATT, 16: (_U, 0, 7),
        17: (_U, 1, 86400), 18: (_B, 2, 128), 19: (_B, 2, 128)},
}
_REQUIRED = {1: (), 2: (20, 21, 22), 3: (30,), 7: (17, 18)}
_EV_DROPPED = const(11)  # status event "records dropped" (§2.4)

_SIG1 = b"\x84\x6aSignature1"  # ["Signature1", ... array head and context
_MAC0 = b"\x84\x64MAC0"
_ES256 = const(-7)
_HMAC256 = const(5)


class RecordError(ValueError):
    pass


class MacError(RecordError):
    """An ack or command whose envelope or MAC is wrong: ignore it."""


def control_char(s):
    """The first control character of text s (§1: U+0000-U+001F,
    U+007F-U+009F) as a code point, or -1 when it has none."""
    for c in s:
        o = ord(c)
        if o < 0x20 or 0x7F <= o <= 0x9F:
            return o
    return -1


def _check_text(key, v):
    o = control_char(v)
    if o >= 0:
        raise RecordError("field %d holds control character U+%04X" % (key, o))


def _check(key, spec, v):
    kind, lo, hi = spec
    t = type(v)
    if kind == _U or kind == _I:
        if t is not int:
            raise RecordError("field %d must be an integer" % key)
        if v < lo or v > hi:
            raise RecordError("field %d = %d outside %d..%d" % (key, v, lo, hi))
        return
    if kind == _T:
        if t is not str:
            raise RecordError("field %d must be text" % key)
        n = len(v.encode())
    else:
        if t is not bytes and t is not bytearray:
            raise RecordError("field %d must be bytes" % key)
        n = len(v)
    if kind == _UID:
        if n != 4 and n != 7 and n != 10:
            raise RecordError("field %d: a tag UID is 4, 7 or 10 bytes" % key)
    elif n < lo or n > hi:
        raise RecordError("field %d length %d outside %d..%d" % (key, n, lo, hi))
    if kind == _T:
        _check_text(key, v)


def check_fields(fields):
    """Raise RecordError unless fields make a valid record payload (§2)."""
    kind = fields.get(1)
    if kind not in _KINDS:
        raise RecordError("kind must be 1, 2, 3 or 7")
    table = _KINDS[kind]
    for k in _COMMON:
        if k not in fields:
            raise RecordError("field %d is required" % k)
    for k in _REQUIRED[kind]:
        if k not in fields:
            raise RecordError("field %d is required" % k)
    for k, v in fields.items():
        if type(k) is not int or k < 0:
            raise RecordError("keys are unsigned integers")
        spec = _COMMON.get(k) or table.get(k)
        if spec is not None:
            _check(k, spec, v)
        elif k >= 1000:
            t = type(v)
            if t is int:
                if v < -0x8000000000000000 or v > 0xFFFFFFFFFFFFFFFF:
                    raise RecordError("extension %d out of range" % k)
            elif t is str:
                if len(v.encode()) > 64:
                    raise RecordError("extension %d longer than 64 bytes" % k)
                _check_text(k, v)
            elif t is bytes or t is bytearray:
                if len(v) > 64:
                    raise RecordError("extension %d longer than 64 bytes" % k)
            else:
                raise RecordError("extension %d has a bad type" % k)
        else:
            raise RecordError("field %d is not defined for kind %d" % (k, kind))
    if kind == 1:
        if (10 in fields) == (12 in fields):
            raise RecordError("a reading has exactly one of temp (10) or fault (12)")
        if 11 in fields and 12 in fields:
            raise RecordError("rh (11) never accompanies a fault (12)")
    elif kind == 2 and fields[21] == 1:
        if 24 not in fields:
            raise RecordError("a commission scan needs item (24)")
        if 27 in fields:
            raise RecordError("a commission scan carries no link (27)")
    elif kind == 3 and 38 in fields:
        _check_lost(fields)
    elif kind == 7:
        _check_block(fields)


def _check_block(fields):
    # §2.8: N = len(temps) / 2 slots; int16 temp -10000..15000 or 0x80 c
    # (fault c >= 1); rh uint16 0..10000 or 0xFFFF (none, always for a
    # fault); rhs all 0xFFFF is omitted; the last reading's time < 2^32
    t = fields[18]
    n = len(t) // 2
    if len(t) % 2:
        raise RecordError("temps (18) holds 2-byte slots")
    if fields[4] + (n - 1) * fields[17] > _U32:
        raise RecordError("block end time beyond 2^32")
    r = fields.get(19)
    if r is not None and len(r) != len(t):
        raise RecordError("rhs (19) must be as long as temps (18)")
    some = False
    for i in range(0, len(t), 2):
        v = (t[i] << 8) | t[i + 1]
        fault = t[i] == 0x80
        if fault:
            if not t[i + 1]:
                raise RecordError("temps (18) slot 0x8000")
        else:
            if v & 0x8000:
                v -= 0x10000
            if v < -10000 or v > 15000:
                raise RecordError("temps (18) slot out of range")
        if r is not None:
            h = (r[i] << 8) | r[i + 1]
            if h != 0xFFFF:
                if fault or h > 10000:
                    raise RecordError("rhs (19) slot out of range or with a fault")
                some = True
    if r is not None and not some:
        raise RecordError("rhs (19) without any humidity must be omitted")


def _check_lost(fields):
    # a declaration of lost records (§2.4, §5.2): seqs lost .. lost+detail-1,
    # all numbered before this record's own seq
    if fields[30] != _EV_DROPPED:
        raise RecordError("lost (38) belongs to event 11 only")
    n = fields.get(37)
    if n is None or n < 1:
        raise RecordError("lost (38) needs detail (37) >= 1, the count")
    if fields[38] + n - 1 >= fields[3]:
        raise RecordError("lost (38) + detail (37) - 1 must be below seq (3)")


_pbuf = bytearray(_MAX_PAYLOAD + 32)


def payload(fields):
    """Deterministic CBOR payload bytes for a checked record."""
    check_fields(fields)
    try:
        n = ct_cbor.encode_map(fields, _pbuf)
    except ct_cbor.CBORError as e:
        raise RecordError(str(e))
    if n > _MAX_PAYLOAD:
        raise RecordError("payload over 512 bytes")
    return bytes(_pbuf[:n])


def _check_kid(kid):
    if not 1 <= len(kid) <= 32:
        raise RecordError("kid is 1..32 bytes")
    c = kid[0]
    if not (0x61 <= c <= 0x7A or 0x30 <= c <= 0x39):
        raise RecordError("kid starts with a letter or digit")
    for c in kid:
        if not (0x61 <= c <= 0x7A or 0x30 <= c <= 0x39 or c in b"._-"):
            raise RecordError("kid is [a-z0-9._-]")


def _protected(alg_byte, kid):
    # {1: alg, 4: kid} deterministic: A2 01 <alg> 04 <bstr kid>
    return b"\xa2\x01" + alg_byte + b"\x04" + ct_cbor.head_bytes(ct_cbor.MAJ_BYTES, len(kid)) + kid


def protected(kid):
    """The protected header map bytes {1: -7, 4: kid} of a record (§3)."""
    if type(kid) is str:
        kid = kid.encode()
    _check_kid(kid)
    return _protected(b"\x26", kid)


def _bstr_head(n):
    return ct_cbor.head_bytes(ct_cbor.MAJ_BYTES, n)


def sign1(p, kid, signer, prot=None):
    """COSE_Sign1 (tag 18) over payload bytes p; ``prot`` may be a cached
    ``protected(kid)``."""
    if prot is None:
        prot = protected(kid)
    ph = _bstr_head(len(prot))
    lh = _bstr_head(len(p))
    h = hashlib.sha256(_SIG1)
    h.update(ph)
    h.update(prot)
    h.update(b"\x40")
    h.update(lh)
    h.update(p)
    sig = signer.sign_digest(h.digest())
    if len(sig) != 64:
        raise RecordError("signature must be 64 bytes")
    rec = b"\xd2\x84" + ph + prot + b"\xa0" + lh + p + b"\x58\x40" + sig
    if len(rec) > _MAX_RECORD:
        raise RecordError("record over 1024 bytes")
    return rec


def chain_link(rec):
    """prev of the next record: SHA-256 of this record's bytes, 16 bytes (§4)."""
    return hashlib.sha256(rec).digest()[:16]


def _split(data, tag):
    # (prot, payload, last) slices of 0xC? 0x84 bstr A0 bstr bstr
    if len(data) < 4 or data[0] != tag or data[1] != 0x84:
        raise ct_cbor.CBORError("not a tagged 4-element COSE array")
    a, b = ct_cbor.read_bstr(data, 2)
    if b >= len(data) or data[b] != 0xA0:
        raise ct_cbor.CBORError("unprotected header must be an empty map")
    c, d = ct_cbor.read_bstr(data, b + 1)
    e, f = ct_cbor.read_bstr(data, d)
    if f != len(data):
        raise ct_cbor.CBORError("trailing bytes")
    return data[a:b], data[c:d], data[e:f]


def parse_sign1(rec):
    """(protected, payload, signature) of a COSE_Sign1 record."""
    try:
        return _split(rec, 0xD2)
    except ct_cbor.CBORError as e:
        raise RecordError(str(e))


def record_fields(rec):
    """The payload fields of one of our records ({key: value}, seq checked)."""
    _, p, _ = parse_sign1(rec)
    try:
        f = ct_cbor.decode_map(p)
    except ct_cbor.CBORError as e:
        raise RecordError(str(e))
    if type(f.get(3)) is not int:
        raise RecordError("record without seq")
    return f


def record_seq(rec):
    """The seq (field 3) of one of our records."""
    return record_fields(rec)[3]


def _mac_input(prot, p):
    return (_MAC0, _bstr_head(len(prot)), prot, b"\x40", _bstr_head(len(p)), p)


def verify_mac0(msg, key):
    """(gateway kid, payload fields) of a valid COSE_Mac0 under key (§5.2/§5.3).

    Raises MacError for anything else: wrong envelope, header, alg or tag.
    The tag is checked on the bytes received before the payload is decoded.
    """
    if len(key) != 32:
        raise MacError("ack key must be 32 bytes")
    try:
        prot, p, tag = _split(msg, 0xD1)
    except ct_cbor.CBORError as e:
        raise MacError("envelope: " + str(e))
    if len(tag) != 32:
        raise MacError("tag must be 32 bytes")
    if len(prot) < 6 or prot[:4] != b"\xa2\x01\x05\x04":
        raise MacError("protected header must be {1: 5, 4: kid}")
    try:
        a, b = ct_cbor.read_bstr(prot, 4)
    except ct_cbor.CBORError as e:
        raise MacError("kid: " + str(e))
    if b != len(prot):
        raise MacError("protected header has extra bytes")
    kid = bytes(prot[a:b])
    if not eq(hmac_sha256(key, *_mac_input(prot, p)), tag):
        raise MacError("MAC does not verify")
    try:
        fields = ct_cbor.decode_map(p)
    except ct_cbor.CBORError as e:
        raise MacError("payload: " + str(e))
    return kid, fields


def mac0(fields, kid, key):
    """COSE_Mac0 (tag 17) of a flat map under key: what a gateway sends."""
    if type(kid) is str:
        kid = kid.encode()
    buf = bytearray(256)
    p = bytes(buf[: ct_cbor.encode_map(fields, buf)])
    prot = _protected(b"\x05", kid)
    tag = hmac_sha256(key, *_mac_input(prot, p))
    return (b"\xd1\x84" + _bstr_head(len(prot)) + prot + b"\xa0"
            + _bstr_head(len(p)) + p + b"\x58\x20" + tag)
