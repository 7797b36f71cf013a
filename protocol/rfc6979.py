"""Deterministic ECDSA on P-256 (RFC 6979 §3.2), in pure Python.

pyca/cryptography signs with random nonces only. Devices sign with RFC 6979
nonces (docs/protocol.md §3), so this module lets the host reproduce a device
signature byte for byte: same key, same message, same (r, s).

It is meant for the host side — tests, the simulator, tools. It is not
constant-time (Python integers and a double-and-add ladder with secret-dependent
branches), so do not run it where an attacker can time it. Gateway-side
signing uses pyca's ECDSA (``protocol.cose.sign1``).

The nonce generator works with any hashlib hash, so the RFC's A.2.5 vectors
for SHA-1/224/256/384/512 can all be checked; records use SHA-256 only.
Signatures are returned as produced by the RFC's algorithm (s not
normalised); :func:`low_s` applies the profile's low-S rule.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

__all__ = [
    "GX",
    "GY",
    "HALF_N",
    "B",
    "N",
    "P",
    "generate_k",
    "low_s",
    "public_point",
    "scalar_mult",
    "sign",
    "sign_digest",
]

# NIST P-256 (SEC 2 secp256r1 / FIPS 186-4 D.1.2.3): y^2 = x^3 - 3x + b over GF(P).
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
#: Group order n (``q`` in RFC 6979).
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
#: floor(n / 2): the largest s a low-S signature may carry.
HALF_N = N // 2

_QLEN = 256  # bit length of N
_RLEN = 32  # octets


# --- RFC 6979 §2.3: conversions ------------------------------------------------


def _bits2int(b: bytes) -> int:
    """RFC 6979 §2.3.2: the leftmost qlen bits of ``b`` as an integer."""
    x = int.from_bytes(b, "big")
    blen = len(b) * 8
    return x >> (blen - _QLEN) if blen > _QLEN else x


def _int2octets(x: int) -> bytes:
    """RFC 6979 §2.3.3."""
    return x.to_bytes(_RLEN, "big")


def _bits2octets(b: bytes) -> bytes:
    """RFC 6979 §2.3.4: bits2int, reduced once modulo q, as octets."""
    z1 = _bits2int(b)
    return _int2octets(z1 - N if z1 >= N else z1)


# --- RFC 6979 §3.2: the nonce ----------------------------------------------------


def _k_candidates(x: int, h1: bytes, hash_name: str) -> Iterator[int]:
    """Yield the RFC 6979 §3.2 nonces for key ``x`` and message hash ``h1``, in order.

    The first one is used unless it gives r = 0 or s = 0 (step h.3 continues).
    """
    if not 1 <= x < N:
        raise ValueError("private scalar out of range 1..n-1")
    digest_size = hashlib.new(hash_name).digest_size

    def mac(key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, hash_name)

    bx = _int2octets(x) + _bits2octets(h1)
    v = b"\x01" * digest_size  # step b
    k = b"\x00" * digest_size  # step c
    k = mac(k, v + b"\x00" + bx)  # step d
    v = mac(k, v)  # step e
    k = mac(k, v + b"\x01" + bx)  # step f
    v = mac(k, v)  # step g
    while True:  # step h
        t = b""
        while len(t) < _RLEN:
            v = mac(k, v)
            t += v
        candidate = _bits2int(t)
        if 1 <= candidate < N:
            yield candidate
        k = mac(k, v + b"\x00")
        v = mac(k, v)


def generate_k(x: int, h1: bytes, hash_name: str = "sha256") -> int:
    """The RFC 6979 §3.2 nonce for private scalar ``x`` and message hash ``h1``."""
    return next(_k_candidates(x, h1, hash_name))


# --- P-256 arithmetic (Jacobian coordinates, a = -3) ------------------------------

_Jacobian = tuple[int, int, int]
_INFINITY: _Jacobian = (0, 1, 0)


def _double(pt: _Jacobian) -> _Jacobian:
    x, y, z = pt
    if z == 0 or y == 0:
        return _INFINITY
    delta = z * z % P
    gamma = y * y % P
    beta = x * gamma % P
    alpha = 3 * (x - delta) * (x + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y + z) * (y + z) - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return x3, y3, z3


def _add_affine(pt: _Jacobian, x2: int, y2: int) -> _Jacobian:
    x1, y1, z1 = pt
    if z1 == 0:
        return x2, y2, 1
    z1z1 = z1 * z1 % P
    u2 = x2 * z1z1 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - x1) % P
    r = (s2 - y1) % P
    if h == 0:
        return _double(pt) if r == 0 else _INFINITY
    hh = h * h % P
    hhh = h * hh % P
    v = x1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - y1 * hhh) % P
    return x3, y3, z1 * h % P


def scalar_mult(k: int, x: int = GX, y: int = GY) -> tuple[int, int]:
    """k·(x, y) in affine coordinates; (x, y) defaults to the base point G."""
    if not 1 <= k < N:
        raise ValueError("scalar out of range 1..n-1")
    acc = _INFINITY
    for bit in bin(k)[2:]:
        acc = _double(acc)
        if bit == "1":
            acc = _add_affine(acc, x, y)
    ax, ay, az = acc
    if az == 0:
        raise ValueError("scalar multiple is the point at infinity")
    zinv = pow(az, -1, P)
    zinv2 = zinv * zinv % P
    return ax * zinv2 % P, ay * zinv2 * zinv % P


def public_point(x: int) -> tuple[int, int]:
    """The public point U = x·G for private scalar ``x``."""
    return scalar_mult(x)


# --- ECDSA signing (FIPS 186-4 §6.4 with the RFC 6979 nonce) -------------------------


def sign_digest(x: int, h1: bytes, hash_name: str = "sha256") -> tuple[int, int]:
    """Sign message hash ``h1`` (made with ``hash_name``) with scalar ``x``.

    Returns (r, s) exactly as RFC 6979 computes them: s is not normalised.
    """
    e = _bits2int(h1)
    for k in _k_candidates(x, h1, hash_name):
        rx, _ = scalar_mult(k)
        r = rx % N
        if r == 0:
            continue
        s = pow(k, -1, N) * (e + r * x) % N
        if s != 0:
            return r, s
    raise AssertionError("unreachable: the nonce generator never ends")  # pragma: no cover


def sign(x: int, message: bytes, hash_name: str = "sha256") -> tuple[int, int]:
    """Hash ``message`` with ``hash_name`` and sign it deterministically (s not normalised)."""
    return sign_digest(x, hashlib.new(hash_name, message).digest(), hash_name)


def low_s(s: int) -> int:
    """The profile's low-S form of ``s`` (docs/protocol.md §3): n - s when s > n/2."""
    return N - s if s > HALF_N else s
