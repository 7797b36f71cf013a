"""Inputs of the page's JavaScript verdict (cloud/page/static/verify/verdict.js), per vector.

    python -m tests.page.make_verdict_inputs        # rewrites tests/page/data/verdict_inputs/

For each vector of tests/protocol/vectors/verdict/ (docs/protocol.md §13.4) this runs the
Python verifier (protocol.verify) and records what it hands to ``protocol.verdict.judge``:
the verified, de-duplicated records in the verifier's order (``good``), the trust file's
scopes (§10) and the subject's uid. Each goes to ``<name>.json``::

    {"uid": hex,
     "records": [{"raw": hex, "signer": str, "payload": {field: value, ...}}, ...],
     "trust": {"registries": {id: {"devices": [...], "places": [...], "gtins": [...]}},
               "quorum": int}}

Payload members are the fields of the classes of protocol/record.py (``kind`` included,
``extensions`` left out); byte strings are ``{"hex": ...}``, absent fields null.
tests/page/verdict.test.mjs rebuilds the JavaScript inputs from these files, runs judge()
and compares with the vector's expected.json; tests/page/test_js_verdict.py checks that
these files equal a fresh run.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from pathlib import Path
from typing import Any
from unittest import mock

from protocol import verdict as verdict_mod
from protocol.analytics import dexp, dlog, mean_centi, mkt_centi
from protocol.bundle import load_bundle
from protocol.reasons import fmt_centi, fmt_duration, fmt_time
from protocol.record import Record
from protocol.trust import Trust, load_trust
from protocol.verify import verify_bundle

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "protocol" / "vectors" / "verdict"
OUT = Path(__file__).resolve().parent / "data" / "verdict_inputs"
ARITHMETIC = "_arithmetic.json"


def _value(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    return v


def record_json(r: Record) -> dict[str, Any]:
    p = r.payload
    payload: dict[str, Any] = {"kind": p.kind}
    for f in dataclasses.fields(p):
        if f.name != "extensions":
            payload[f.name] = _value(getattr(p, f.name))
    return {"raw": r.raw.hex(), "signer": r.signer, "payload": payload}


def trust_json(trust: Trust) -> dict[str, Any]:
    return {
        "registries": {
            rid: {"devices": list(s.devices), "places": list(s.places), "gtins": list(s.gtins)}
            for rid, s in trust.scopes.items()
        },
        "quorum": trust.quorum,
    }


def inputs(vector: Path) -> dict[str, Any]:
    """Run the verifier over one vector and capture the arguments of its judge()."""
    bundle = load_bundle(vector / "bundle.json")
    trust = load_trust(vector / "trust.json")
    seen: list[tuple[list[Record], bytes]] = []
    real = verdict_mod.judge

    def capture(records: Any, t: Any, uid: bytes, *args: Any, **kwargs: Any) -> Any:
        seen.append((list(records), uid))
        return real(records, t, uid, *args, **kwargs)

    with mock.patch.object(verdict_mod, "judge", capture):
        verify_bundle(bundle, trust)
    if len(seen) != 1:
        raise RuntimeError(f"{vector.name}: the verifier judged {len(seen)} times")
    good, uid = seen[0]
    return {
        "uid": uid.hex(),
        "records": [record_json(r) for r in good],
        "trust": trust_json(trust),
    }


def arithmetic() -> dict[str, Any]:
    """Values of §12.8's dexp/dlog/MKT, the mean, T/C/D and the string order, from Python, for
    the JavaScript to match bit for bit (``_arithmetic.json``). A fixed seed: same file each run."""
    rnd = random.Random(12_8)
    ys = [0.0, -0.0, -1e-300, -0.5, -1.0, -700.0, -745.0, -745.2, -746.0, -800.0]
    ys += [-rnd.uniform(0, 2) for _ in range(200)] + [-rnd.uniform(0, 60) for _ in range(200)]
    vs = [1.0, 0.5, 0.7071067811865476, 0.7071067811865475, 5e-324, 2.2250738585072014e-308]
    vs += [rnd.uniform(1e-9, 1.0) for _ in range(200)] + [rnd.random() ** 20 for _ in range(50)]
    mkts = []
    for n in [*range(1, 12), 50, 200, 1000]:
        for _ in range(12):
            lo, hi = rnd.choice([(-300, 900), (-3000, 5000), (-8000, 12000), (200, 210)])
            samples = [
                (rnd.randint(lo, hi), rnd.choice([1, 60, 600, rnd.randint(1, 100000)]))
                for _ in range(n)
            ]
            mkts.append([samples, mkt_centi(samples), mean_centi(samples)])
    times = [0, 59, 86399, 951782400, 1790000000, 4102444800, 4294967295]
    times += [rnd.randint(0, 2**32 - 1) for _ in range(100)]
    centis = [0, 5, -5, 99, -99, 100, -100, 912, -1234, 32767, -32768]
    durations = [0, 1, 30, 59, 60, 61, 3599, 3600, 3601, 3660, 3690, 86400, 90061]
    durations += [rnd.randint(0, 10**7) for _ in range(50)]
    words = ["", "a", "b", "ab", "a-b", "tl-1", "tl-10", "tl-2", "é", "z", "\uffff", "\U0001f600"]
    strings = [
        [a, b, (a.encode() > b.encode()) - (a.encode() < b.encode())] for a in words for b in words
    ]
    return {
        "dexp": [[y, dexp(y)] for y in ys],
        "dlog": [[v, dlog(v)] for v in vs],
        "mkt": mkts,
        "time": [[t, fmt_time(t)] for t in times],
        "centi": [[c, fmt_centi(c)] for c in centis],
        "duration": [[d, fmt_duration(d)] for d in durations],
        "strings": strings,
    }


def names() -> list[str]:
    return sorted(p.name for p in VECTORS.iterdir() if p.is_dir())


def render(name: str) -> str:
    """A vector's inputs as written: one record a line."""
    doc = inputs(VECTORS / name)
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in doc["records"]]
    return (
        "{\n"
        f' "uid": {json.dumps(doc["uid"])},\n'
        f' "trust": {json.dumps(doc["trust"], ensure_ascii=False)},\n'
        ' "records": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"
    )


def render_arithmetic() -> str:
    doc = arithmetic()
    return (
        "{\n"
        + ",\n".join(
            f" {json.dumps(k)}: [\n  "
            + ",\n  ".join(json.dumps(x, ensure_ascii=False) for x in v)
            + "\n ]"
            for k, v in doc.items()
        )
        + "\n}\n"
    )


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    for name in names():
        (OUT / f"{name}.json").write_text(render(name), encoding="utf-8")
    (OUT / ARITHMETIC).write_text(render_arithmetic(), encoding="utf-8")
    print(f"wrote {len(names())} files to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
