"""Firmware updates: the device's verify time (ES256 + SHA-256 of every file) under MicroPython.

A release of the whole firmware/lib (signed on the host by gateway/ota.py) is
placed in ``/slot_b`` of the real MicroPython interpreter's filesystem (wasm
build under Node, tests/firmware/mp_run.mjs) and ``ct_ota.verify_slot`` runs
on it, as the device does before it switches. Baselines measured in the same
run: an ES256 sign by ct_p256 in the same interpreter, and the host's check of
the same release (pyca ``cryptography``). The figure is best of 3 batches of 5 (the wasm clock has
millisecond steps); an ESP32 at
240 MHz is slower than wasm on x86 by a factor not measured here (no board);
its flash reads add to the hashing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "firmware" / "lib"
MP_RUN = ROOT / "tests" / "firmware" / "mp_run.mjs"

_MP = r"""
import json, os, time, ct_fs, ct_ota, ct_p256
os.rename("/slot_b/manifest.cose", "/slot_b/.manifest")
PUB = bytes.fromhex(%(pub)r)
fs = ct_fs.Fs()
with open("/slot_b/.manifest", "rb") as f:
    M = f.read()
best = lambda f: min(f() for _ in range(3))
def full():
    t0 = time.ticks_ms()
    for i in range(5):
        ct_ota.verify_slot(fs, "/slot_b", PUB)
    return time.ticks_diff(time.ticks_ms(), t0) / 5
def sig():
    t0 = time.ticks_ms()
    for i in range(5):
        ct_ota.verify_manifest(M, PUB)
    return time.ticks_diff(time.ticks_ms(), t0) / 5
S = ct_p256.Signer(bytes(range(1, 33)))
S.sign(b"warm")
def sign():
    t0 = time.ticks_ms()
    for i in range(5):
        S.sign(b"r%%d" %% i)
    return time.ticks_diff(time.ticks_ms(), t0) / 5
R = {"verify_ms": best(full), "sig_ms": best(sig), "sign_ms": best(sign)}
print("RESULT " + json.dumps(R))
"""


def run(rec) -> None:
    from gateway.ota import load_release, make_release
    from protocol.keys import generate_p256, p256_public_to_sec1

    key = generate_p256()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ota-"))
    try:
        rel = make_release(key, 2, "coldtrace-bench", [LIB], tmp / "rel")
        slot = tmp / "slot"
        shutil.copytree(tmp / "rel" / "files", slot)
        shutil.copy(tmp / "rel" / "manifest.cose", slot / "manifest.cose")
        script = tmp / "bench_ota_mp.py"
        script.write_text(_MP % {"pub": p256_public_to_sec1(key.public_key()).hex()})
        out = subprocess.run(
            ["node", str(MP_RUN), "--heap", str(1 << 20), "--put", f"{LIB}=/lib",
             "--put", f"{slot}=/slot_b", "--path", "/lib", str(script)],
            capture_output=True, text=True, timeout=600, check=True,
        ).stdout
        r = next(json.loads(x[7:]) for x in out.splitlines() if x.startswith("RESULT "))
        host = []
        for _ in range(5):
            t0 = time.perf_counter()
            load_release(tmp / "rel", key.public_key())
            host.append((time.perf_counter() - t0) * 1000)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(len(d) for _, d in rel.files)
    what = f"{len(rel.files)} files, {size / 1024:.0f} KiB (all of firmware/lib)"
    rec.add("ota.verify_ms.micropython_wasm", r["verify_ms"], "ms",
            baseline="one ES256 sign, same interpreter, same run", baseline_value=r["sign_ms"],
            note=f"ct_ota.verify_slot: manifest ES256 + SHA-256 of {what}; best of 3 x 5")
    rec.add("ota.manifest_signature_ms.micropython_wasm", r["sig_ms"], "ms",
            baseline="one ES256 sign, same interpreter, same run", baseline_value=r["sign_ms"],
            note=f"ct_p256.verify_digest of a {len(rel.manifest)}-byte manifest")
    rec.add("ota.verify_ms.host", min(host), "ms",
            baseline="the device's verify under MicroPython wasm",
            baseline_value=r["verify_ms"],
            note=f"gateway/ota.load_release with pyca cryptography: {what}; best of 5")
