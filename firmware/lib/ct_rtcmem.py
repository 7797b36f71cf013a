"""Small keyed blobs in RTC memory (survives deep sleep, not power loss).

machine.RTC().memory() is one 2 KiB buffer for everybody; this module
shares it as a list of (key, length, bytes) entries behind a magic and a
CRC-32, so a torn or stale buffer (power-on: all zero or garbage) reads as
empty instead of as wrong state.

    m = RTCMem(rtc)          # rtc has .memory() / .memory(bytes)
    m.get(b"A")              # bytes or None
    m.put(b"A", data)        # re-reads, then rewrites the buffer

Several RTCMem objects may share one RTC (ct_state keeps b"S", ct_app b"A",
b"L", b"C" and b"B"): ``put`` re-reads the buffer first, so each writer
keeps the others' latest entries. ``get`` answers from the copy read at
creation or at the last ``put``.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

import binascii
import struct

_MAGIC = b"CTr1"
_MAX = const(2048)


class RTCMemError(Exception):
    pass


class RTCMem:
    def __init__(self, rtc):
        self._rtc = rtc
        self._d = {}
        self._load()

    def _load(self):
        raw = bytes(self._rtc.memory())
        self._d = {}
        if len(raw) < 10 or raw[:4] != _MAGIC:
            return
        n, crc = struct.unpack("<HI", raw[4:10])
        body = raw[10 : 10 + n]
        if len(body) != n or binascii.crc32(body) & 0xFFFFFFFF != crc:
            return
        i = 0
        while i + 2 <= n:
            k = body[i : i + 1]
            ln = body[i + 1]
            self._d[k] = body[i + 2 : i + 2 + ln]
            i += 2 + ln

    def get(self, key):
        return self._d.get(key)

    def put(self, key, data):
        if len(key) != 1 or len(data) > 255:
            raise RTCMemError("key is 1 byte, data <= 255 bytes")
        # read-modify-write: other RTCMem objects (ct_state's, the app's)
        # share the buffer, so never write back a stale copy of their keys
        self._load()
        self._d[bytes(key)] = bytes(data)
        self._save()

    def clear(self):
        self._d = {}
        self._save()

    def _save(self):
        body = bytearray()
        for k in sorted(self._d):
            v = self._d[k]
            body.extend(k)
            body.append(len(v))
            body.extend(v)
        if len(body) + 10 > _MAX:
            raise RTCMemError("RTC memory full")
        crc = binascii.crc32(body) & 0xFFFFFFFF
        self._rtc.memory(_MAGIC + struct.pack("<HI", len(body), crc) + bytes(body))
