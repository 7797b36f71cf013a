"""ct_p256: RFC 6979 A.2.5 vectors, python-ecdsa equality, keys, verify."""

import hashlib

import ct_p256
from _ctdata import load, rfc6979
from fwrun import main, raises

N = ct_p256.N


def unhex(s):
    return bytes.fromhex(s)


def hashes():
    out = {"sha256": (hashlib.sha256, 64)}
    for name, block in (("sha1", 64), ("sha224", 64), ("sha384", 128), ("sha512", 128)):
        h = getattr(hashlib, name, None)
        if h is not None:
            out[name] = (h, block)
    return out


def test_rfc6979_a25_vectors_that_this_interpreter_can_hash():
    hs = hashes()
    ran = []
    for name, c in rfc6979():
        if c["hash"] not in hs:
            continue  # MicroPython has SHA-256 only
        h, block = hs[c["hash"]]
        x = int(c["x"], 16)
        pub = b"\x04" + unhex(c["Ux"]) + unhex(c["Uy"])
        digest = h(c["message"].encode()).digest()
        sig = unhex(c["r"]) + unhex(c["s"])
        if c["expect"] == "valid":
            assert ct_p256.encode_point(*ct_p256.public_point(x)) == pub, name
            k = next(ct_p256.rfc6979_k(x, digest, h, block))
            assert k == int(c["k"], 16), name
            r, s = ct_p256.sign_raw(x, digest, h, block, low_s=False)
            assert (r, s) == (int(c["r"], 16), int(c["s"], 16)), name
            ct_p256.verify_digest(pub, digest, sig)
        else:
            try:
                ct_p256.verify_digest(pub, digest, sig)
            except ct_p256.P256Error:
                pass
            else:
                raise AssertionError(name + " verified")
        ran.append(c["hash"])
    assert ran.count("sha256") >= 2 + 7, ran


def test_signatures_equal_python_ecdsa_after_low_s():
    doc = load("ecdsa_p256_sha256.json")
    flipped = 0
    for c in doc["cases"]:
        s = ct_p256.Signer(unhex(c["x"]))
        assert s.public_key() == unhex(c["pub"])
        sig = s.sign(unhex(c["msg"]))
        assert sig == unhex(c["sig"]), c["msg"][:20]
        assert int.from_bytes(sig[32:], "big") <= N // 2
        ct_p256.verify(s.public_key(), unhex(c["msg"]), sig)
        flipped += c["flipped"]
    assert flipped > 0


def test_sign_digest_equals_sign_and_is_deterministic():
    s = ct_p256.Signer(bytes(range(1, 33)))
    m = b"coldtrace"
    assert s.sign(m) == s.sign_digest(hashlib.sha256(m).digest()) == s.sign(m)
    raises(ct_p256.P256Error, s.sign_digest, b"short")


def test_comb_table_sizes_agree():
    d = 0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF
    want = ct_p256.public_point(d)
    for teeth in (1, 3, 6, 5):
        ct_p256.set_teeth(teeth)
        assert ct_p256.public_point(d) == want, teeth
    # k*G for edge scalars
    assert ct_p256.public_point(1) == (ct_p256.GX, ct_p256.GY)
    x, y = ct_p256.public_point(N - 1)
    assert (x, y) == (ct_p256.GX, ct_p256.P - ct_p256.GY)


def test_shipped_comb_table_is_the_computed_one():
    import ct_p256_comb

    assert ct_p256.table_bytes() == ct_p256_comb.TABLE
    ct_p256.set_teeth(5)  # loads the shipped table
    s = ct_p256.Signer(bytes(range(1, 33)))
    sig = s.sign(b"x")
    ct_p256.set_teeth(5, build=True)
    assert s.sign(b"x") == sig


def test_generate_uses_the_random_source_and_rejects_out_of_range():
    calls = []

    def rnd(n):
        calls.append(n)
        if len(calls) == 1:
            return b"\xff" * 32  # >= n: must be rejected
        if len(calls) == 2:
            return bytes(32)  # zero: rejected
        return bytes(31) + b"\x07"

    s = ct_p256.Signer.generate(rnd)
    assert len(calls) == 3 and s.secret() == bytes(31) + b"\x07"
    assert s.public_key() == ct_p256.encode_point(*ct_p256.public_point(7))
    mixed = ct_p256.Signer.generate(lambda n: bytes(31) + b"\x07", extra=b"host")
    assert mixed.secret() == hashlib.sha256(bytes(31) + b"\x07" + b"host").digest()
    raises(ct_p256.P256Error, ct_p256.Signer.generate, lambda n: b"\xff" * 32)


def test_bad_keys_and_signatures_are_refused():
    raises(ct_p256.P256Error, ct_p256.Signer, bytes(32))
    raises(ct_p256.P256Error, ct_p256.Signer, N.to_bytes(32, "big"))
    raises(ct_p256.P256Error, ct_p256.Signer, b"\x01" * 31)
    s = ct_p256.Signer(b"\x01" * 32)
    pub = s.public_key()
    sig = s.sign(b"m")
    raises(ct_p256.P256Error, ct_p256.verify, pub, b"n", sig)
    raises(ct_p256.P256Error, ct_p256.verify, pub, b"m", sig[:63])
    raises(ct_p256.P256Error, ct_p256.verify, pub, b"m", bytes(32) + sig[32:])
    raises(ct_p256.P256Error, ct_p256.verify, pub[:64] + bytes((pub[64] ^ 1,)), b"m", sig)
    raises(ct_p256.P256Error, ct_p256.decode_point, b"\x02" + pub[1:33])
    # high S is a valid ECDSA signature (verify accepts it); the signer never makes one
    s_ = int.from_bytes(sig[32:], "big")
    ct_p256.verify(pub, b"m", sig[:32] + (N - s_).to_bytes(32, "big"))


def test_pow_minus_one_is_not_used():
    # MicroPython's pow(x, -1, m) returns 0 instead of raising or inverting
    assert ct_p256._inv(3, 7) == 5


if __name__ == "__main__":
    main(globals())
