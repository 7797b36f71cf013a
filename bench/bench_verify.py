"""Verifier: time and peak memory of `coldtrace verify` on 10^4- and 10^5-record trace bundles.

A trace of five legs (packhouse, truck, cross-dock, cold room, shop), each
watched by four loggers reading every five minutes, with the scans, bindings,
profile and registrations a real bundle holds (tests/protocol/scenario.py).
Each bundle is verified by the command line in a fresh process, as a user
runs it, so the figures include reading and parsing the file; peak memory
is the child's peak resident set (VmHWM). Goals (issue 7): a 10^5-record
bundle in <= 15 s and <= 300 MB, growing linearly from 10^4.

The baseline, measured in the same run, is the raw cost of the dominant work:
checking the bundle's ECDSA signatures one by one with pyca/cryptography.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results import Recorder

PLACES = ["pack:dock-1", "fleet:truck-1", "xdock:bay-2", "dc:cold-room-2", "shop:chiller-1"]
ACTIONS = [
    1,
    2,
    3,
    4,
    5,
]  # commission, load (ref = truck), unload, receive, ship -> receive at shop


def build(n: int, out: Path) -> tuple[Path, Path, int]:
    """Write a bundle of about ``n`` records and its trust file; return their paths."""
    from tests.protocol.scenario import GTIN, ITEM, T0, Scenario

    s = Scenario(deterministic=False)
    every = 300
    per_leg = max(2, n // (len(PLACES) * 4))
    leg_len = per_leg * every
    s.profile(GTIN, T0 - 3600, low=0, high=800, delay=1800, gap=1800, cumul=7200)
    loggers = {}
    for place in PLACES:
        devs = [s.logger(f"tl-{place.split(':')[0]}-{k}") for k in range(4)]
        loggers[place] = devs
        s.bind(place, [d.id for d in devs], T0 - 3600)
    readers = [s.reader(f"rd-{i}", PLACES[i] if i != 1 else PLACES[0]) for i in range(5)]
    t = T0
    for leg, place in enumerate(PLACES):
        action = [1, 2, 3, 4, 4][leg]
        ref = {"ref": PLACES[1]} if action == 2 else {}
        kw = {"item": ITEM} if action == 1 else {}
        s.scan(readers[leg], action, t, **ref, **kw)
        for k, dev in enumerate(loggers[place]):
            s.readings(
                dev, t - every, t + leg_len, every, lambda x, k=k: 300 + (x // every + k) % 200
            )
        t += leg_len
    s.scan(readers[4], 6, t)
    s.profile(GTIN, t + 60, low=0, high=800, delay=1800, gap=1800, cumul=7200)  # restated
    for place in PLACES:
        s.bind(place, [d.id for d in loggers[place]], t + 60)  # restated: closes every leg
    bundle, trust = out / f"bundle-{n}.json", out / f"trust-{n}.json"
    bundle.write_text(s.bundle().dumps())
    import json

    trust.write_text(json.dumps(s.trust_doc()))
    return bundle, trust, len(s.records)


def _verify_in_child(bundle: Path, trust: Path) -> tuple[float, float, int]:
    """Seconds and peak MiB of `coldtrace verify --json` in a fresh process; its exit status."""
    code = (
        "import sys, time;"
        "from protocol.cli import main;"
        "t = time.perf_counter();"
        f"rc = main(['verify', {str(bundle)!r}, '--trust', {str(trust)!r}, '--json']);"
        "dt = time.perf_counter() - t;"
        # VmHWM, not ru_maxrss: after fork + exec, ru_maxrss still holds the
        # parent's high-water mark (Linux carries it over); VmHWM is this image's.
        "rss = next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM'));"
        "print('BENCH', dt, rss, rc, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    line = next(x for x in proc.stderr.splitlines() if x.startswith("BENCH"))
    _, dt, rss_kib, rc = line.split()
    return float(dt), int(rss_kib) / 1024, int(rc)


def _raw_verify_rate(bundle: Path, trust: Path) -> float:
    """Signatures per second, one by one, with pyca (the baseline)."""
    from protocol.bundle import load_bundle
    from protocol.record import open_record, verify_record
    from protocol.trust import load_trust

    b = load_bundle(bundle)
    load_trust(trust)
    from cryptography.hazmat.primitives.asymmetric import ec

    from protocol.keys import p256_public_from_sec1
    from protocol.record import Registration

    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    recs = [open_record(r.raw) for r in b.records]
    for r in recs:
        if isinstance(r.payload, Registration):
            keys[r.payload.device] = p256_public_from_sec1(r.payload.key)
    sample = [r for r in recs if r.signer in keys][:5000]
    t0 = time.perf_counter()
    for r in sample:
        verify_record(r.raw, keys[r.signer])
    return len(sample) / (time.perf_counter() - t0)


def run(rec: Recorder) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        figures = {}
        for n in (10_000, 100_000):
            t0 = time.perf_counter()
            bundle, trust, count = build(n, out)
            print(
                f"   built a {count}-record bundle ({bundle.stat().st_size / 2**20:.1f} MiB) "
                f"in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
            seconds, mib, rc = _verify_in_child(bundle, trust)
            figures[n] = (count, seconds, mib)
            rate = _raw_verify_rate(bundle, trust)
            rec.add(
                f"verify.bundle_{n}.seconds",
                seconds,
                "s",
                baseline="raw pyca ECDSA verify of the same records, one core",
                baseline_value=count / rate,
                note=f"{count} records, exit status {rc}, goal <= 15 s at 10^5",
            )
            rec.add(
                f"verify.bundle_{n}.peak_mib",
                mib,
                "MiB",
                baseline="bundle file size",
                baseline_value=bundle.stat().st_size / 2**20,
                note="peak resident memory of the verifying process; goal <= 300 MB at 10^5",
            )
        (c4, s4, _), (c5, s5, _) = figures[10_000], figures[100_000]
        rec.add(
            "verify.growth_10x.time_ratio",
            (s5 / c5) / (s4 / c4),
            "x",
            note="per-record time at 10^5 over per-record time at 10^4 (1.0 = linear)",
        )
