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
import gzip
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
#: §12.10's provenance vectors: their inputs are written as ``provenance.<name>.json``.
PROVENANCE = ROOT / "tests" / "protocol" / "vectors" / "provenance"
PROVENANCE_PREFIX = "provenance."
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


def vector_dir(name: str) -> Path:
    """The vector directory of an input name (``<verdict vector>`` or ``provenance.<name>``)."""
    if name.startswith(PROVENANCE_PREFIX):
        return PROVENANCE / name.removeprefix(PROVENANCE_PREFIX)
    return VECTORS / name


def inputs(vector: Path) -> dict[str, Any]:
    """Run the verifier over one vector and capture the arguments of its judge()."""
    bundle = load_bundle(vector / "bundle.json")
    trust = load_trust(vector / "trust.json")
    tag = None
    if (vector / "input.json").exists():  # the tag's authentication (§12.10)
        tag = json.loads((vector / "input.json").read_text(encoding="utf-8"))["tag"]
    seen: list[tuple[list[Record], bytes]] = []
    real = verdict_mod.judge

    def capture(records: Any, t: Any, uid: bytes, *args: Any, **kwargs: Any) -> Any:
        seen.append((list(records), uid))
        return real(records, t, uid, *args, **kwargs)

    with mock.patch.object(verdict_mod, "judge", capture):
        if tag is None:
            verify_bundle(bundle, trust)
        else:
            verify_bundle(bundle, trust, tag=tag)
    if len(seen) != 1:
        raise RuntimeError(f"{vector.name}: the verifier judged {len(seen)} times")
    good, uid = seen[0]
    return {
        "uid": uid.hex(),
        **({} if tag is None else {"tag": tag}),
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


# --- random traces: Python's judge against the JavaScript's, beyond the vectors -------------------

FUZZ = "_fuzz.json.gz"  # gzip (mtime 0): 3 MB of JSON, 0.x MB in the tree
FUZZ_BLOCKS = "_fuzz_blocks.json.gz"  # the same with reading blocks (kind 7)
BLOCKS_FUZZ_N = 80
_GTIN = "09506000134352"
_UID = bytes.fromhex("04a23c5a1b6f80")
_OTHER_UID = bytes.fromhex("04a23c5a1b6f81")


class _Trace:
    """One random trace: records of readers, loggers and registries around one item."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.records: list[Record] = []
        self.seqs: dict[str, int] = {}
        self.count = 0

    def add(self, signer: str, payload: Any) -> Record:
        self.count += 1
        raw = self.count.to_bytes(2, "big") + self.rnd.randbytes(self.rnd.choice([6, 10]))
        r = Record(raw, signer, payload)
        self.records.append(r)
        return r

    def seq(self, signer: str, skip: int = 0) -> int:
        n = self.seqs.get(signer, 0) + skip
        self.seqs[signer] = n + 1
        return n


def _fuzz_trust(rnd: random.Random) -> Trust:
    from protocol.trust import Scopes

    scopes = {"reg-a": Scopes(devices=("*",), places=("p:*", "fleet:*"), gtins=("*",))}
    if rnd.random() < 0.5:
        scopes["reg-b"] = Scopes(places=("p:b", "q:*"), gtins=rnd.choice([("0950*",), ("1*",)]))
    if rnd.random() < 0.1:
        scopes["reg-c"] = Scopes(places=("p:*",), gtins=rnd.choice([("*",), ("x",)]))  # ties
    return Trust(scopes=scopes)


def fuzz_case(rnd: random.Random, blocks: random.Random | None = None) -> dict[str, Any]:
    """A random trace and Python's verdict document over it. With ``blocks`` (a second
    generator, so that the traces without it stay the same), loggers also sign reading
    blocks (§2.8): of 1-8 readings, faulted slots, the next record sometimes inside a block's
    span (an overlap) or a kind-1 reading signed after a block but dated inside it; and
    devices are registered in random roles, some changing during the trace (§12.1)."""
    from protocol.record import (
        Binding,
        ProductProfile,
        Reading,
        ReadingBlock,
        Registration,
        Scan,
        Status,
        chain_hash,
        pack_block,
    )

    tr = _Trace(rnd)
    trust = _fuzz_trust(rnd)
    clean = rnd.random() < 0.5  # bindings and profile shown: the temperature is judged
    t0 = 1_790_000_000
    places = ["p:a", "p:b", "q:c", "fleet:t1", "z:none"]
    devices = ["tl-a", "tl-b", "tl-c", "tl-\u00e9"]
    zero = bytes(16)

    # a product without a profile (§12.10's provenance verdict): no profile statement of its
    # GTIN; the tag's authentication at the tap
    provenance = rnd.random() < 0.3
    tidy = provenance and rnd.random() < 0.6  # a plausible genuine journey
    tag = rnd.choice(["genuine", "replayed", "unauthenticated", "unknown"])

    # scans of the item (and of another tag)
    scans: list[Record] = []
    t = t0
    item = rnd.choice(
        [
            f"/01/{_GTIN}/10/L1/21/7",
            f"/01/{_GTIN}/21/7",
            f"/01/{_GTIN}/10/L%31/21/7",
            f"/01/{_GTIN}/10/L%FF",
            f"/01/{_GTIN}",
            "urn:epc:id:sgtin:0950600.013435.7",
        ]
        + [f"/01/{_GTIN}/10/L1/21/7"] * 6
    )
    prev_action = 1
    for k in range(rnd.randint(1, 7)):
        reader = rnd.choice(["rd-1", "rd-2", "rd-\u00e9"])
        if k == 0 and rnd.random() < 0.9:
            action = 1
        elif rnd.random() < (0.98 if tidy else 0.7):  # what usually comes next
            action = {1: 2, 2: 3, 3: 4, 4: 5, 5: 2, 6: 6, 7: 7}[prev_action]
            if action == 5 and rnd.random() < 0.3:
                action = rnd.choice([6, 7])
        else:
            action = rnd.choice([1, 2, 3, 4, 5, 6, 7])
        prev_action = action
        place = rnd.choice(places[:3]) if rnd.random() < 0.8 else rnd.choice(places)
        refs = ["fleet:t1", "p:b", None] if action == 2 else [None, None, "x"]
        ref = rnd.choice(refs)
        roll = rnd.random()
        if not scans or roll < (0.02 if tidy else 0.2):
            link = None
        elif roll < (0.98 if tidy else 0.75):
            link = chain_hash(scans[-1].raw)
        elif roll < 0.85:
            link = chain_hash(rnd.choice(scans).raw)
        else:
            link = rnd.randbytes(16)
        tq = 0 if not tidy and rnd.random() < 0.04 else 2
        t += rnd.choice([600, 3600] if tidy else [0, 1, 10, 11, 600, 1800, 3600, 7200])
        uid = _UID if tidy or rnd.random() < 0.93 else _OTHER_UID
        scans.append(
            tr.add(
                reader,
                Scan(
                    boot=1,
                    seq=tr.seq(reader, rnd.choice([0, 0, 0, 1])),
                    time=t if tq else 50,
                    tq=tq,
                    prev=zero,
                    uid=uid,
                    action=action,
                    place=place,
                    item=item if action == 1 else None,
                    ref=ref,
                    link=link,
                ),
            )
        )
    end = t + 3600

    # loggers first: the bindings name them
    loggers = rnd.sample(devices, rnd.randint(1, 4))

    # bindings: per place, a chain of statements (mostly of its authority), some left out
    for place in places:
        authority = trust.place_authority(place)
        regs = [authority] if authority is not None and (clean or rnd.random() < 0.8) else []
        regs += rnd.sample(["reg-a", "reg-b", "reg-c"], 0 if clean else rnd.randint(0, 1))
        for reg in regs:
            tt = t0 - (3600 if clean else rnd.choice([3600, 3600, 0, -1800]))
            for cseq in range(rnd.randint(1, 4)):
                pool = loggers + ([] if clean else ["tl-x"])
                chosen = sorted(rnd.sample(pool, min(len(pool), rnd.choice([0, 1, 1, 1, 2]))))
                if clean and not chosen:
                    chosen = [rnd.choice(loggers)]
                if cseq == 0 or clean or rnd.random() < 0.9:
                    tr.add(
                        reg,
                        Binding(
                            boot=0,
                            seq=tr.seq(reg),
                            time=tt,
                            tq=2,
                            prev=zero,
                            cseq=cseq,
                            cprev=zero,
                            target=place,
                            devices=" ".join(chosen) or None,
                        ),
                    )
                tt += rnd.choice([0, 1800, 5400, 9000])
            if clean or rnd.random() < 0.5:  # restated after the end: the whole trace is shown
                tr.add(
                    reg,
                    Binding(
                        boot=0,
                        seq=tr.seq(reg),
                        time=end + 10**6,
                        tq=2,
                        prev=zero,
                        cseq=cseq + 1,
                        cprev=zero,
                        target=place,
                        devices=" ".join(chosen) or None,
                    ),
                )

    # profiles: a GTIN chain (always some profile of the GTIN), sometimes a lot chain
    # readers registered by a registry (the brand owner or another)
    for reader in ["rd-1", "rd-2", "rd-\u00e9"]:
        brand = trust.gtin_authority(_GTIN)
        some = rnd.sample(["reg-a", "reg-b"], rnd.choice([0, 1, 2, 2]))
        regs = [brand] if tidy and brand else some
        for reg in regs:
            for _ in range(rnd.randint(1, 2)):
                tr.add(
                    reg,
                    Registration(
                        boot=0,
                        seq=tr.seq(reg),
                        time=t0 - 86400,
                        tq=2,
                        prev=zero,
                        device=reader,
                        key=b"\x04" * 65,
                        role=2,
                        org=rnd.choice(["Acme", "Brand", "Other"]),
                        state=1,
                    ),
                )

    lots = [None, "L1"] if rnd.random() < 0.4 else [None]
    for lot in [] if provenance else lots:
        authority = trust.gtin_authority(_GTIN)
        reg = authority if authority is not None and (clean or rnd.random() < 0.85) else "reg-b"
        tt = t0 - (3600 if clean else rnd.choice([3600, 3600, 3600, 0, -600]))
        for cseq in range(rnd.randint(1, 3)):
            low = rnd.choice([None, 0, 200])
            high = rnd.choice([None, 400, 600, 800])
            if rnd.random() < 0.85 or cseq == 0 or clean:
                tr.add(
                    reg,
                    ProductProfile(
                        boot=0,
                        seq=tr.seq(reg),
                        time=tt,
                        tq=2,
                        prev=zero,
                        cseq=cseq,
                        cprev=zero,
                        gtin=_GTIN,
                        delay=rnd.choice([0, 600, 1800]),
                        gap=rnd.choice([600, 1800, 3600]),
                        lot=lot,
                        low=low,
                        high=high,
                        cumul=rnd.choice([None, 1800, 7200]),
                        mkt=rnd.choice([None, 300, 500]),
                        lots=rnd.choice([None, None, 1]) if lot is None else None,
                        links=rnd.choice([None, None, 1]),
                        name=rnd.choice([None, "chilled"]),
                    ),
                )
            tt += rnd.choice([0, 1800, 7200])
        if clean or rnd.random() < 0.7:  # restated after the end
            tr.add(
                reg,
                ProductProfile(
                    boot=0,
                    seq=tr.seq(reg),
                    time=end + 10**6,
                    tq=2,
                    prev=zero,
                    cseq=cseq + 1,
                    cprev=zero,
                    gtin=_GTIN,
                    delay=1800,
                    gap=1800,
                    lot=lot,
                ),
            )

    # loggers: readings with gaps, declared losses, faults, two channels, an unset clock
    for dev in loggers:
        boot, seq = 1, 0
        tt = t0 - rnd.choice([0, 1800, 3600])
        unset = rnd.random() < 0.3
        local = 100
        base = rnd.choice([150, 300, 450])
        while tt < end:
            roll = rnd.random()
            if unset and roll < 0.1:
                tr.add(
                    dev,
                    Status(
                        boot=boot,
                        seq=seq,
                        time=tt,
                        tq=2,
                        prev=zero,
                        event=6,
                        detail=local,
                    ),
                )
                unset = False
                seq += 1
                continue
            if roll < 0.05:
                gap = rnd.randint(1, 4)
                tr.add(
                    dev,
                    Status(
                        boot=boot,
                        seq=seq + gap,
                        time=tt,
                        tq=2 if not unset else 0,
                        prev=zero,
                        event=11,
                        lost=seq + rnd.choice([0, 0, 1]),
                        detail=gap + rnd.choice([0, 0, -1, 2]),
                    ),
                )
                seq += gap + 1
            elif roll < 0.09:
                seq += rnd.randint(1, 3)  # records left out, not declared
            elif roll < 0.11:
                boot += 1
            if blocks is not None and blocks.random() < 0.6:
                n = blocks.randint(1, 8)
                ivl = blocks.choice([60, 300, 600, 900])
                temps = [
                    None
                    if blocks.random() < 0.05
                    else blocks.choice([-250, 650, 900])
                    if blocks.random() < 0.05
                    else base + blocks.randint(-60, 60)
                    for _ in range(n)
                ]
                packed, rhs = pack_block(
                    temps,
                    [1 if v is None else None for v in temps],
                    [None if v is None else 5000 for v in temps] if blocks.random() < 0.3 else None,
                )
                ch = blocks.choice([None, None, None, 1])
                tr.add(
                    dev,
                    ReadingBlock(
                        boot=boot,
                        seq=seq,
                        time=local if unset else tt,
                        tq=0 if unset else 2,
                        prev=zero,
                        ivl=ivl,
                        temps=packed,
                        rhs=rhs,
                        ch=ch,
                    ),
                )
                seq += 1
                span = n * ivl
                if blocks.random() < 0.15:  # a kind-1 reading signed next, dated inside the
                    inside = blocks.randint(-span, span - 1)  # block or before it
                    tr.add(
                        dev,
                        Reading(
                            boot=boot,
                            seq=seq,
                            time=max(0, (local if unset else tt) + inside),
                            tq=0 if unset else 2,
                            prev=zero,
                            temp=blocks.choice([base, 900]),
                            ch=ch,
                        ),
                    )
                    seq += 1
                step = blocks.choice([span, span, span, span - ivl, span // 2, span + 600, -ivl])
                if local + step < 0:  # an unset clock's time stays a uint
                    step = 1
                tt += step
                local += step
                continue
            temp = base + rnd.randint(-60, 60)
            if rnd.random() < 0.06:
                temp = rnd.choice([-250, 650, 900, 1200])
            fault = rnd.random() < 0.04
            tr.add(
                dev,
                Reading(
                    boot=boot,
                    seq=seq,
                    time=local if unset else tt,
                    tq=0 if unset else 2,
                    prev=zero,
                    temp=None if fault else temp,
                    fault=1 if fault else None,
                    ch=rnd.choice([None, None, None, 1]),
                ),
            )
            seq += 1
            step = rnd.choice([300, 600, 600, 900, 2400])
            tt += step
            local += step
    if blocks is not None:  # roles (§12.1): a device registered in a role it does not play,
        # or whose role changes during the trace (its records before stay in the old role)
        for dev in [*sorted(loggers), "rd-1", "rd-2", "rd-\u00e9"]:
            if blocks.random() < 0.6:
                continue
            for _ in range(blocks.randint(1, 2)):
                reg = blocks.choice(["reg-a", "reg-b"])
                tr.add(
                    reg,
                    Registration(
                        boot=0,
                        seq=tr.seq(reg),
                        time=t0 + blocks.choice([-86400, 0, 3600, 7200, 14400]),
                        tq=2,
                        prev=zero,
                        device=dev,
                        key=b"\x04" * 65,
                        role=blocks.choice([1, 2]),
                        org="Acme",
                        state=1,
                    ),
                )
    rnd.shuffle(tr.records)
    verdict = verdict_mod.judge(tr.records, trust, _UID, tag)
    return {
        "uid": _UID.hex(),
        "tag": tag,
        "trust": trust_json(trust),
        "records": [record_json(r) for r in tr.records],
        "expected": {"verified": True, **verdict.to_json()},
    }


def render_fuzz(n: int = 150, blocks: bool = False) -> str:
    """The random traces (``_fuzz.json.gz``); with ``blocks``, traces with reading blocks
    (``_fuzz_blocks.json.gz``)."""
    rnd = random.Random(12)
    more = random.Random(7) if blocks else None
    cases = [fuzz_case(rnd, more) for _ in range(n)]
    return "[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n]\n"


def _judged(vector: Path) -> bool:
    return bool(json.loads((vector / "expected.json").read_text(encoding="utf-8"))["verified"])


def names() -> list[str]:
    """The input names: the verdict vectors', then the provenance vectors' (prefixed). A
    vector whose bundle is refused (``unverified_*``: no verdict) has no judge() inputs."""
    out = sorted(p.name for p in VECTORS.iterdir() if p.is_dir() and _judged(p))
    if PROVENANCE.exists():
        out += sorted(PROVENANCE_PREFIX + p.name for p in PROVENANCE.iterdir() if p.is_dir())
    return out


def render(name: str) -> str:
    """A vector's inputs as written: one record a line."""
    doc = inputs(vector_dir(name))
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in doc["records"]]
    tag = f' "tag": {json.dumps(doc["tag"])},\n' if "tag" in doc else ""
    return (
        "{\n"
        f' "uid": {json.dumps(doc["uid"])},\n'
        + tag
        + f' "trust": {json.dumps(doc["trust"], ensure_ascii=False)},\n'
        + ' "records": [\n  '
        + ",\n  ".join(lines)
        + "\n ]\n}\n"
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
    (OUT / FUZZ).write_bytes(gzip.compress(render_fuzz().encode("utf-8"), 9, mtime=0))
    blocks = render_fuzz(BLOCKS_FUZZ_N, blocks=True).encode("utf-8")
    (OUT / FUZZ_BLOCKS).write_bytes(gzip.compress(blocks, 9, mtime=0))
    print(f"wrote {len(names())} files to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
