"""HMAC (RFC 2104) over hashlib, for MicroPython, which has no hmac module.

    tag = hmac_sha256(key, data)            # 32 bytes
    tag = hmac_sha256(key, a, b, c)         # HMAC over a || b || c, no copy
    eq(a, b)                                 # compare tags in time independent of content

``hmac`` takes any hash constructor and its block size, so the RFC 6979 code
in ct_p256 can also run the SHA-1/224/384/512 vectors where the interpreter
has those hashes (CPython does; MicroPython usually has only SHA-256).
"""

import hashlib

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_BLOCK = const(64)


class HMACError(Exception):
    pass


def hmac(key, parts, h=hashlib.sha256, block=_BLOCK):
    """HMAC-H(key, parts[0] || parts[1] || ...)."""
    if len(key) > block:
        key = h(key).digest()
    k = bytearray(block)
    k[: len(key)] = key
    for i in range(block):
        k[i] ^= 0x36
    inner = h(k)
    for p in parts:
        inner.update(p)
    for i in range(block):
        k[i] ^= 0x36 ^ 0x5C
    outer = h(k)
    outer.update(inner.digest())
    return outer.digest()


def hmac_sha256(key, *parts):
    return hmac(key, parts)


def eq(a, b):
    """True when a == b; the time taken does not depend on where they differ."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0
