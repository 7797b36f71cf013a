"""ECDSA P-256 with SHA-256 (COSE ES256) in pure MicroPython; also CPython.

    s = Signer(d)                        # d: 32-byte big-endian secret scalar
    s = Signer.generate()                # fresh key from os.urandom (radio on!)
    s.public_key()   -> 65 bytes         # SEC1 uncompressed 04 || X || Y
    s.sign(msg)      -> 64 bytes         # r || s over SHA-256(msg)
    s.sign_digest(h) -> 64 bytes         # h = SHA-256 digest (32 bytes)
    s.secret()       -> 32 bytes         # only for ct_provision to store it
    verify(pub, msg, sig)                # raises P256Error; self-test only

Signatures follow FIPS 186-4 ECDSA with RFC 6979 §3.2 deterministic nonces
(HMAC-SHA-256) and are normalised to low S (s <= n/2, docs/protocol.md §3):
byte-identical to python-ecdsa's ``sign_deterministic`` after s -> n - s.

Speed: k*G uses a fixed-base comb (Lim-Lee, ``_TEETH`` teeth): a table of
2^teeth - 1 affine points, then 256/teeth doublings and as many mixed
additions per signature, no doubling chain over 256 bits. The default
table ships precomputed in ct_p256_comb (1,984 bytes; a test checks it
against a fresh computation), so a wake from deep sleep does not rebuild it. Jacobian
coordinates, a = -3 doubling; two modular inversions per signature (Fermat,
``pow``: MicroPython's pow(x, -1, m) silently returns 0).

Not constant-time: big-integer arithmetic leaks timing. RFC 6979 removes the
weak-RNG risk, not side channels; where a physical attacker with a scope is
in the threat model, use the ATECC608 backend (ct_atecc).
"""

import hashlib

from ct_hmac import hmac

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_TEETH = const(5)  # 31 table points (~3 KiB as ints); see bench_firmware

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
_HALF_N = N >> 1


class P256Error(Exception):
    pass


def _inv(x, m):
    # Fermat; m is prime. x must be non-zero mod m.
    return pow(x, m - 2, m)


def _i2b(x):
    return x.to_bytes(32, "big")


def _b2i(b):
    return int.from_bytes(b, "big")


# --- point arithmetic, Jacobian (X, Y, Z); Z == 0 is the point at infinity --


def _dbl(X1, Y1, Z1):
    # dbl-2001-b (a = -3): 3M + 5S
    p = P
    if Z1 == 0 or Y1 == 0:
        return 0, 1, 0
    delta = Z1 * Z1 % p
    gamma = Y1 * Y1 % p
    beta = X1 * gamma % p
    alpha = 3 * (X1 - delta) * (X1 + delta) % p
    X3 = (alpha * alpha - 8 * beta) % p
    Z3 = ((Y1 + Z1) * (Y1 + Z1) - gamma - delta) % p
    Y3 = (alpha * (4 * beta - X3) - 8 * gamma * gamma) % p
    return X3, Y3, Z3


def _madd(X1, Y1, Z1, x2, y2):
    # madd-2007-bl: Jacobian + affine, 7M + 4S
    p = P
    if Z1 == 0:
        return x2, y2, 1
    Z1Z1 = Z1 * Z1 % p
    U2 = x2 * Z1Z1 % p
    S2 = y2 * Z1 * Z1Z1 % p
    H = (U2 - X1) % p
    r = 2 * (S2 - Y1) % p
    if H == 0:
        if r == 0:
            return _dbl(X1, Y1, Z1)
        return 0, 1, 0
    HH = H * H % p
    I = 4 * HH % p
    J = H * I % p
    V = X1 * I % p
    X3 = (r * r - J - 2 * V) % p
    Y3 = (r * (V - X3) - 2 * Y1 * J) % p
    Z3 = ((Z1 + H) * (Z1 + H) - Z1Z1 - HH) % p
    return X3, Y3, Z3


def _add(X1, Y1, Z1, X2, Y2, Z2):
    # add-2007-bl: Jacobian + Jacobian (verification only)
    p = P
    if Z1 == 0:
        return X2, Y2, Z2
    if Z2 == 0:
        return X1, Y1, Z1
    Z1Z1 = Z1 * Z1 % p
    Z2Z2 = Z2 * Z2 % p
    U1 = X1 * Z2Z2 % p
    U2 = X2 * Z1Z1 % p
    S1 = Y1 * Z2 * Z2Z2 % p
    S2 = Y2 * Z1 * Z1Z1 % p
    H = (U2 - U1) % p
    r = 2 * (S2 - S1) % p
    if H == 0:
        if r == 0:
            return _dbl(X1, Y1, Z1)
        return 0, 1, 0
    I = 4 * H * H % p
    J = H * I % p
    V = U1 * I % p
    X3 = (r * r - J - 2 * V) % p
    Y3 = (r * (V - X3) - 2 * S1 * J) % p
    Z3 = ((Z1 + Z2) * (Z1 + Z2) - Z1Z1 - Z2Z2) * H % p
    return X3, Y3, Z3


def _affine(X, Y, Z):
    if Z == 0:
        raise P256Error("point at infinity")
    zi = _inv(Z, P)
    zi2 = zi * zi % P
    return X * zi2 % P, Y * zi2 * zi % P


def _batch_affine(pts):
    # Montgomery's trick: one inversion for the whole list of Jacobian points.
    p = P
    acc = [1] * len(pts)
    a = 1
    for i in range(len(pts)):
        acc[i] = a
        a = a * pts[i][2] % p
    a = _inv(a, p)
    out = [None] * len(pts)
    for i in range(len(pts) - 1, -1, -1):
        X, Y, Z = pts[i]
        zi = a * acc[i] % p
        a = a * Z % p
        zi2 = zi * zi % p
        out[i] = (X * zi2 % p, Y * zi2 * zi % p)
    return out


# --- fixed-base comb ---------------------------------------------------------

_table = None
_span = 0


def _comb_table(teeth=_TEETH):
    """Affine points T[j] = sum over set bits i of j of 2^(i*span) * G."""
    global _table, _span
    if _table is not None and len(_table) == 1 << teeth:
        return _table
    span = (256 + teeth - 1) // teeth
    if teeth == _TEETH:
        # the default table ships precomputed (ct_p256_comb): a deep-sleep
        # wake that signs once would otherwise pay more for the table than
        # for the signature
        try:
            from ct_p256_comb import TABLE
        except ImportError:
            TABLE = None
        if TABLE is not None and len(TABLE) == 64 * ((1 << teeth) - 1):
            t = [None]
            for i in range(0, len(TABLE), 64):
                t.append((_b2i(TABLE[i : i + 32]), _b2i(TABLE[i + 32 : i + 64])))
            _table = t
            _span = span
            return t
    return _build_table(teeth, span)


def _build_table(teeth, span):
    global _table, _span
    bases = []
    X, Y, Z = GX, GY, 1
    for i in range(teeth):
        if i:
            for _ in range(span):
                X, Y, Z = _dbl(X, Y, Z)
        bases.append((X, Y, Z))
    bases = _batch_affine(bases)
    jac = [None] * (1 << teeth)
    for j in range(1, 1 << teeth):
        top = 0
        while (j >> (top + 1)) != 0:
            top += 1
        rest = j ^ (1 << top)
        bx, by = bases[top]
        if rest == 0:
            jac[j] = (bx, by, 1)
        else:
            X, Y, Z = jac[rest]
            # jac[rest] may not be normalised: add in Jacobian form
            jac[j] = _add(X, Y, Z, bx, by, 1)
    aff = _batch_affine(jac[1:])
    _table = [None] + aff
    _span = span
    return _table


def set_teeth(teeth, build=False):
    """Use a comb table with another tooth count (benchmarks); ``build``
    computes it even when a precomputed one ships."""
    global _table
    if teeth < 1 or teeth > 8:
        raise P256Error("teeth 1..8")
    _table = None
    if build:
        return _build_table(teeth, (256 + teeth - 1) // teeth)
    return _comb_table(teeth)


def table_bytes(teeth=_TEETH):
    """The comb table as X || Y of T[1..], what ct_p256_comb.TABLE holds."""
    t = _build_table(teeth, (256 + teeth - 1) // teeth)
    return b"".join(_i2b(x) + _i2b(y) for x, y in t[1:])


def _mul_g(k):
    """k * G as affine (x, y) for 0 < k < 2^256."""
    table = _table if _table is not None else _comb_table()
    span = _span
    teeth = 0
    while (1 << teeth) < len(table):
        teeth += 1
    kb = _i2b(k)
    X, Y, Z = 0, 1, 0
    for col in range(span - 1, -1, -1):
        X, Y, Z = _dbl(X, Y, Z)
        idx = 0
        pos = col
        for i in range(teeth):
            if pos < 256 and (kb[31 - (pos >> 3)] >> (pos & 7)) & 1:
                idx |= 1 << i
            pos += span
        if idx:
            x2, y2 = table[idx]
            X, Y, Z = _madd(X, Y, Z, x2, y2)
    return _affine(X, Y, Z)


def _mul(k, x, y):
    """k * (x, y) as Jacobian, 4-bit fixed window (verification only)."""
    win = [None, (x, y, 1)]
    for i in range(2, 16):
        X, Y, Z = win[i - 1]
        win.append(_madd(X, Y, Z, x, y))
    kb = _i2b(k)
    X, Y, Z = 0, 1, 0
    for b in kb:
        for nib in (b >> 4, b & 15):
            for _ in range(4):
                X, Y, Z = _dbl(X, Y, Z)
            if nib:
                X2, Y2, Z2 = win[nib]
                X, Y, Z = _add(X, Y, Z, X2, Y2, Z2)
    return X, Y, Z


def on_curve(x, y):
    if not (0 <= x < P and 0 <= y < P):
        return False
    return (y * y - (x * x * x - 3 * x + B)) % P == 0


# --- RFC 6979 ----------------------------------------------------------------


def _bits2int(b):
    v = _b2i(b)
    blen = len(b) * 8
    if blen > 256:
        v >>= blen - 256
    return v


def rfc6979_k(x, h1, h=hashlib.sha256, block=64):
    """Generator of candidate nonces k for secret x and message digest h1
    (RFC 6979 §3.2 steps b-h; qlen = 256). ``h``/``block``: the HMAC hash."""
    xo = _i2b(x)
    ho = _i2b(_bits2int(h1) % N)  # bits2octets
    hl = len(h(b"").digest())
    V = b"\x01" * hl
    K = b"\x00" * hl
    K = hmac(K, (V, b"\x00", xo, ho), h, block)
    V = hmac(K, (V,), h, block)
    K = hmac(K, (V, b"\x01", xo, ho), h, block)
    V = hmac(K, (V,), h, block)
    while True:
        T = b""
        while len(T) < 32:
            V = hmac(K, (V,), h, block)
            T += V
        k = _bits2int(T[:32]) if len(T) > 32 else _bits2int(T)
        if 0 < k < N:
            yield k
        K = hmac(K, (V, b"\x00"), h, block)
        V = hmac(K, (V,), h, block)


def sign_raw(x, h1, h=hashlib.sha256, block=64, low_s=True):
    """(r, s) for secret x over digest h1 with RFC 6979 nonces."""
    e = _bits2int(h1)
    for k in rfc6979_k(x, h1, h, block):
        rx, _ = _mul_g(k)
        r = rx % N
        if r == 0:
            continue
        s = _inv(k, N) * (e + r * x) % N
        if s == 0:
            continue
        if low_s and s > _HALF_N:
            s = N - s
        return r, s


# --- keys ----------------------------------------------------------------------


def public_point(x):
    return _mul_g(x)


def encode_point(x, y):
    return b"\x04" + _i2b(x) + _i2b(y)


def decode_point(pub):
    if len(pub) != 65 or pub[0] != 4:
        raise P256Error("public key must be 65-byte SEC1 uncompressed")
    x = _b2i(pub[1:33])
    y = _b2i(pub[33:])
    if not on_curve(x, y):
        raise P256Error("public key is not on P-256")
    return x, y


class Signer:
    """A P-256 key held in RAM. ``sign`` is what ct_record calls."""

    alg = -7

    def __init__(self, secret):
        if len(secret) != 32:
            raise P256Error("secret must be 32 bytes")
        d = _b2i(secret)
        if not 0 < d < N:
            raise P256Error("secret out of range")
        self._d = d
        self._pub = None

    @classmethod
    def generate(cls, urandom=None, extra=b""):
        """New key from urandom(32) (rejection sampling). ``extra`` is mixed
        in by SHA-256 (e.g. host-supplied entropy): never weaker than urandom."""
        if urandom is None:
            import os

            urandom = os.urandom
        for _ in range(64):
            raw = urandom(32)
            if extra:
                raw = hashlib.sha256(raw + extra).digest()
            d = _b2i(raw)
            if 0 < d < N:
                return cls(raw)
        raise P256Error("random source is broken")

    def secret(self):
        return _i2b(self._d)

    def public_key(self):
        if self._pub is None:
            self._pub = encode_point(*public_point(self._d))
        return self._pub

    def sign_digest(self, h1):
        if len(h1) != 32:
            raise P256Error("digest must be 32 bytes")
        r, s = sign_raw(self._d, h1)
        return _i2b(r) + _i2b(s)

    def sign(self, msg):
        return self.sign_digest(hashlib.sha256(msg).digest())


def verify_digest(pub, h1, sig):
    """Raise P256Error unless sig (r || s, any S) is valid for digest h1."""
    x, y = decode_point(pub)
    if len(sig) != 64:
        raise P256Error("signature must be 64 bytes")
    r = _b2i(sig[:32])
    s = _b2i(sig[32:])
    if not (0 < r < N and 0 < s < N):
        raise P256Error("r or s out of range")
    e = _bits2int(h1)
    w = _inv(s, N)
    u1 = e * w % N
    u2 = r * w % N
    X, Y, Z = _mul(u2, x, y)
    if u1:
        gx, gy = _mul_g(u1)
        X, Y, Z = _madd(X, Y, Z, gx, gy)
    if Z == 0:
        raise P256Error("bad signature")
    rx, _ = _affine(X, Y, Z)
    if rx % N != r:
        raise P256Error("bad signature")


def verify(pub, msg, sig):
    verify_digest(pub, hashlib.sha256(msg).digest(), sig)
