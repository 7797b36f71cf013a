"""Writes tests/firmware/data/ecdsa_p256_sha256.json: ES256 signatures made by
python-ecdsa (``SigningKey.sign_deterministic``, RFC 6979, SHA-256) and then
normalised to low S, which the firmware signer must reproduce byte for byte
under both interpreters. Run from the repository root to regenerate:

    .venv/bin/python tests/firmware/make_vectors.py

Keys: x_i = SHA-256("coldtrace-fw-vector-" + i) mod (n - 1) + 1; messages of
lengths 0, 1, 55, 56, 64, 120, 1000 and COSE-like bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import ecdsa
from ecdsa.util import sigencode_string

N = ecdsa.NIST256p.order
OUT = Path(__file__).with_name("data") / "ecdsa_p256_sha256.json"


def main() -> None:
    cases = []
    lengths = [0, 1, 55, 56, 64, 120, 1000, 131, 3, 200, 17, 90]
    for i, n in enumerate(lengths):
        seed = hashlib.sha256(b"coldtrace-fw-vector-%d" % i).digest()
        x = int.from_bytes(seed, "big") % (N - 1) + 1
        msg = bytes((i * 31 + j * 7) & 0xFF for j in range(n))
        sk = ecdsa.SigningKey.from_secret_exponent(x, curve=ecdsa.NIST256p, hashfunc=hashlib.sha256)
        raw = sk.sign_deterministic(msg, hashfunc=hashlib.sha256, sigencode=sigencode_string)
        r = int.from_bytes(raw[:32], "big")
        s = int.from_bytes(raw[32:], "big")
        flipped = s > N // 2
        if flipped:
            s = N - s
        cases.append({
            "x": f"{x:064x}",
            "pub": "04" + sk.get_verifying_key().to_string().hex(),
            "msg": msg.hex(),
            "sig": f"{r:064x}{s:064x}",
            "flipped": flipped,
        })
    assert any(c["flipped"] for c in cases) and not all(c["flipped"] for c in cases)
    doc = {
        "source": f"python-ecdsa {ecdsa.__version__} sign_deterministic(hashfunc=sha256), "
                  "then s -> n - s when s > n/2 (docs/protocol.md §3); "
                  "tests/firmware/make_vectors.py",
        "cases": cases,
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
