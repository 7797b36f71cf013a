"""Firmware core: ES256 sign and verify time/heap under MicroPython, bytes per reading, queue.

Sign time is measured inside the real MicroPython interpreter (wasm build,
npm @micropython/micropython-webassembly-pyscript, under Node) with
time.ticks_us (best of 5 batches: the wasm build's clock has millisecond
steps; this 2-core machine is noisy, so the minimum is the figure), and
compared with the same module (firmware/lib/ct_p256.py) under CPython,
with python-ecdsa, and with the signer without its fixed-base table
(teeth=1: plain double-and-add). Verify time (ct_p256.verify, which the
device runs on OTA manifests) likewise, against the same code under CPython.
An ESP32 at 240 MHz is slower than wasm on x86 by a factor that was not
measured here (no board).

Heap: the wasm build's gc.collect() frees nothing inside one runPython call,
so resident bytes (the comb table and key) are read across calls, and
"allocated per sign" is the total the GC must reclaim per signature (an
upper bound of the extra peak a signature needs).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "firmware" / "lib"
MP_RUN = ROOT / "tests" / "firmware" / "mp_run.mjs"

_MP_SCRIPT = r"""
import gc, time, json, ct_p256
S = ct_p256.Signer(bytes(range(1, 33)))
R = {}
TEETH = %(teeth)r
# mp_run: split
ct_p256._table = None
gc.collect()
base = gc.mem_alloc()
# mp_run: split
ct_p256.set_teeth(TEETH[0], build=True)
S._pub = None
S.public_key()
# mp_run: split
gc.collect()
R["resident"] = gc.mem_alloc() - base
a0 = gc.mem_alloc()
S.sign(b"warm")
R["alloc_per_sign"] = gc.mem_alloc() - a0
# ticks_us is millisecond-grained in the wasm build: time batches of signs
times = []
for b in range(5):
    t0 = time.ticks_us()
    for i in range(%(reps)d):
        S.sign(b"reading %%d %%d" %% (b, i))
    times.append(time.ticks_diff(time.ticks_us(), t0) / %(reps)d)
R["sign_us"] = min(times)
PUB = S.public_key()
SIGS = [S.sign(b"verify %%d" %% i) for i in range(4)]
a0 = gc.mem_alloc()
ct_p256.verify(PUB, b"verify 0", SIGS[0])
R["alloc_per_verify"] = gc.mem_alloc() - a0
times = []
for b in range(3):
    t0 = time.ticks_us()
    for i in range(%(reps)d):
        ct_p256.verify(PUB, b"verify %%d" %% (i %% 4), SIGS[i %% 4])
    times.append(time.ticks_diff(time.ticks_us(), t0) / %(reps)d)
R["verify_us"] = min(times)
R["teeth"] = TEETH[0]
print("RESULT " + json.dumps(R))
TEETH.pop(0)
"""


def run_micropython(teeth: list[int], reps: int) -> list[dict[str, float]]:
    """One fresh interpreter per tooth count (GC state and heap growth of one
    run must not leak into the next)."""
    return [_run_micropython(t, reps) for t in teeth]


def _run_micropython(teeth: int, reps: int) -> dict[str, float]:
    src = _MP_SCRIPT % {"teeth": [teeth], "reps": reps}
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(src)
        path = f.name
    try:
        out = subprocess.run(
            ["node", str(MP_RUN), "--heap", str(256 << 10), "--put", f"{LIB}=/lib", path],
            capture_output=True, text=True, timeout=600, check=True,
        ).stdout
    finally:
        Path(path).unlink()
    found = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
    return found[0]


_MP_TABLE = r"""
import time, json, ct_p256
t0 = time.ticks_us()
for i in range(10):
    ct_p256._table = None
    ct_p256._comb_table()
t1 = time.ticks_us()
for i in range(10):
    ct_p256.set_teeth(5, build=True)
t2 = time.ticks_us()
print("RESULT " + json.dumps({"load_us": (t1 - t0) / 10, "build_us": (t2 - t1) / 10}))
"""


def micropython_table_us() -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(_MP_TABLE)
        path = f.name
    try:
        out = subprocess.run(
            ["node", str(MP_RUN), "--heap", str(256 << 10), "--put", f"{LIB}=/lib", path],
            capture_output=True, text=True, timeout=300, check=True,
        ).stdout
    finally:
        Path(path).unlink()
    return next(json.loads(x[7:]) for x in out.splitlines() if x.startswith("RESULT "))


def cpython_sign_us(reps: int) -> float:
    sys.path.insert(0, str(LIB))
    import ct_p256

    s = ct_p256.Signer(bytes(range(1, 33)))
    s.sign(b"warm")
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        s.sign(b"reading %d" % i)
        times.append((time.perf_counter() - t0) * 1e6)
    return min(statistics.mean(times[i : i + 12]) for i in range(0, len(times), 12))


def cpython_verify_us(reps: int) -> float:
    """ct_p256.verify under CPython, best mean of batches of 12 (the MicroPython baseline)."""
    sys.path.insert(0, str(LIB))
    import ct_p256

    s = ct_p256.Signer(bytes(range(1, 33)))
    pub = s.public_key()
    sigs = [s.sign(b"verify %d" % i) for i in range(4)]
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        ct_p256.verify(pub, b"verify %d" % (i % 4), sigs[i % 4])
        times.append((time.perf_counter() - t0) * 1e6)
    return min(statistics.mean(times[i : i + 12]) for i in range(0, len(times), 12))


def ecdsa_sign_us(reps: int) -> float:
    import ecdsa

    sk = ecdsa.SigningKey.from_string(bytes(range(1, 33)), curve=ecdsa.NIST256p,
                                      hashfunc=hashlib.sha256)
    sk.sign_deterministic(b"warm")
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        sk.sign_deterministic(b"reading %d" % i, hashfunc=hashlib.sha256)
        times.append((time.perf_counter() - t0) * 1e6)
    return min(statistics.mean(times[i : i + 12]) for i in range(0, len(times), 12))


def record_sizes() -> dict[str, int]:
    sys.path.insert(0, str(LIB))
    import ct_p256
    import ct_record

    s = ct_p256.Signer(bytes(range(1, 33)))
    common = {1: 1, 2: 12, 3: 70000, 4: 1790000000, 5: 3, 6: bytes(16)}
    out = {}
    for name, kid, extra in (
        ("temp, 9-byte id", "tl-7f3a21", {10: -1850}),
        ("temp+rh+batt, 9-byte id", "tl-7f3a21", {10: -1850, 11: 5000, 15: 3900}),
        ("temp+rh+batt, 4-byte id", "t001", {10: -1850, 11: 5000, 15: 3900}),
        ("temp, 4-byte id, seq<65536", "t001", {10: 450, 3: 1000}),
    ):
        f = dict(common)
        f.update(extra)
        out[name] = len(ct_record.sign1(ct_record.payload(f), kid, s))
    return out


def run(rec) -> None:
    reps = 12
    mp = run_micropython([5, 6, 4, 1], reps)
    by = {r["teeth"]: r for r in mp}
    cpy = cpython_sign_us(5 * reps)
    ref = ecdsa_sign_us(5 * reps)
    d = by[5]
    rec.add("firmware.sign_ms.micropython_wasm", d["sign_us"] / 1000, "ms",
            baseline="same code under CPython", baseline_value=cpy / 1000,
            note=f"ct_p256 ES256+RFC 6979, comb 5 teeth, best of 5 batches of {reps}")
    rec.add("firmware.sign_ms.micropython_wasm_vs_ecdsa", d["sign_us"] / 1000, "ms",
            baseline="python-ecdsa sign_deterministic (CPython)", baseline_value=ref / 1000)
    cpy_v = cpython_verify_us(3 * reps)
    rec.add("firmware.verify_ms.micropython_wasm", d["verify_us"] / 1000, "ms",
            baseline="same code under CPython", baseline_value=cpy_v / 1000,
            note=f"ct_p256.verify (ES256: SHA-256 + two scalar multiplications, u1 G by the "
                 f"comb table), best of 3 batches of {reps}; "
                 f"{d['verify_us'] / d['sign_us']:.2f} x a sign in the same interpreter")
    rec.add("firmware.heap.allocated_per_verify", d["alloc_per_verify"], "B",
            baseline="allocated per sign", baseline_value=d["alloc_per_sign"],
            note="bytes the GC reclaims per verification (upper bound of extra peak)")
    rec.add("firmware.sign_ms.micropython_wasm_no_table", by[1]["sign_us"] / 1000, "ms",
            baseline="comb 5 teeth (default)", baseline_value=d["sign_us"] / 1000,
            note="teeth=1: plain double-and-add, no precomputed table")
    for t in (4, 6):
        rec.add(f"firmware.sign_ms.micropython_wasm_teeth{t}", by[t]["sign_us"] / 1000, "ms",
                baseline="comb 5 teeth (default)", baseline_value=d["sign_us"] / 1000,
                note=f"table resident {by[t]['resident']} B")
    tt = micropython_table_us()
    rec.add("firmware.wake.comb_table_load_ms", tt["load_us"] / 1000, "ms",
            baseline="computing the table", baseline_value=tt["build_us"] / 1000,
            note="per deep-sleep wake: the shipped ct_p256_comb table vs building it")
    rec.add("firmware.heap.resident_table_and_key", d["resident"], "B",
            note="comb table (31 affine points) + key, MicroPython heap")
    rec.add("firmware.heap.allocated_per_sign", d["alloc_per_sign"], "B",
            note="bytes the GC reclaims per signature (upper bound of extra peak)")
    sizes = record_sizes()
    for name, n in sizes.items():
        rec.add(f"firmware.record_bytes.{name}", n, "B", baseline="goal", baseline_value=120,
                note="COSE_Sign1 incl. 64-byte signature, 16-byte chain link")
    typical = sizes["temp+rh+batt, 9-byte id"]
    topic = len(b"ct/v1/tl-7f3a21/rec")
    rec.add("firmware.mqtt_publish_bytes.reading", typical + 2 + 2 + topic + 2, "B",
            note=f"QoS 1 PUBLISH: fixed header 2, topic length 2, topic {topic}, packet id 2")
    frame = typical + 10
    rec.add("firmware.queue.records_per_kib", 1024 / frame, "records/KiB",
            note=f"frame = record {typical} + 10 (len, qid, CRC-32)")
    per_seg = 8188 // frame
    cap = 96 * per_seg - 2048 // frame
    rec.add("firmware.queue.capacity_default", cap, "readings",
            note=f"96 segments x 8188 B (768 KiB of a ~960 KiB LittleFS), {per_seg} per "
                 f"segment, minus the 2 KiB status reserve; {cap * 5 / 1440:.0f} days at 5 min, "
                 f"{cap * 10 / 1440:.0f} at 10 min")
    whole = (960 * 1024 // 8192) * per_seg
    rec.add("firmware.queue.capacity_whole_fs_bound", whole, "readings",
            note="if every 2-block segment of 960 KiB held readings (no firmware files, "
                 "no LittleFS metadata): an upper bound, not reachable")
    _battery_life(rec)


def _battery_life(rec) -> None:
    """Battery life from hardware/power.json (datasheet currents, not a
    measured board), by the same model as hardware/power_budget.py."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "hardware" / "power_budget.py"
    spec = importlib.util.spec_from_file_location("power_budget", path)
    pb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pb)
    d = json.loads(path.with_name("power.json").read_text())
    for sc in d["scenarios"][:2]:
        sign = "atecc" if sc["sign"] == "sign_atecc" else "python"
        for interval in d["intervals_s"]:
            r = pb.day_mah(d, sc, interval)
            rec.add(f"firmware.battery_days.{sign}_sign.{interval // 60}min", r["days"], "days",
                    note=f"{sc['name']}; {r['total']:.1f} mAh/day; "
                         f"{d['battery']['mah']} mAh x {d['battery']['usable']} usable; estimate")
