"""Expected reports for the page's JavaScript verifier (cloud/page/static/verify/index.js).

    python -m tests.page.make_expected          # rewrites tests/page/data/{vectors,extra}/

The Python verifier (protocol.verify) is the reference: for each input this writes what
``verify_bundle(...).to_json()`` gives, plus ``passed_counts`` (the counts of passed checks
the Python Report keeps), to ``report.json``. An input the command line calls unreadable
(§11 step 1: ``malformed_bundle`` or ``malformed_trust``) gets
``{"verified": false, "verdict": null, "error": <code>}`` instead.

- ``data/vectors/<name>/report.json`` for each verdict vector of
  tests/protocol/vectors/verdict/ (its bundle.json and trust.json are read from there, not
  copied);
- ``data/extra/<name>/{bundle.json,trust.json,report.json}`` for bundles made here with
  tests/protocol/scenario.py (deterministic keys and RFC 6979 signatures): the same bundle
  in versions 2 and 3, an edited reading (bad signature), a record left out that its proof
  lists and a record cut short (proof mismatch), a checkpoint without the witness
  cosignature the quorum requires and one with it, an unpinned ledger, a duplicate member,
  a deflate bomb and a DEFLATE stream with bytes after its end.

tests/page/verify.test.mjs compares the JavaScript reports with these files;
tests/page/test_js_verifier.py checks the files equal a fresh run and runs the Node tests.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
import zlib
from pathlib import Path
from typing import Any

from protocol import cbor
from protocol.bundle import loads_bundle
from protocol.errors import VerificationError
from protocol.trust import loads_trust
from protocol.verify import verify_bundle
from tests.protocol.scenario import COMMISSION, GTIN, ITEM, LOAD, T0, Scenario

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "protocol" / "vectors" / "verdict"
OUT = Path(__file__).resolve().parent / "data"


def report(bundle_text: bytes, trust_text: bytes) -> dict[str, Any]:
    """The Python verifier's report for the two files, as the JavaScript one must give it."""
    try:
        trust = loads_trust(trust_text)
        bundle = loads_bundle(bundle_text)
    except VerificationError as err:
        return {"verified": False, "verdict": None, "error": err.code}
    rep = verify_bundle(bundle, trust)
    doc = rep.to_json()
    doc["passed_counts"] = dict(sorted(rep.passed_counts.items()))
    return doc


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


# --- the scenario ---------------------------------------------------------------------------

PACK, TRUCK = "pack:dock-1", "fleet:truck-1"


def scenario() -> tuple[Scenario, dict[str, bytes]]:
    """A short day: a profile, a packhouse reader, a truck logger, commission and load."""
    s = Scenario()
    marks: dict[str, bytes] = {}
    s.profile(GTIN, T0 - 3600, low=0, high=400, delay=1800, gap=1800, name="chilled 0-4 C")
    truck = s.logger("tl-truck")
    s.bind(TRUCK, ["tl-truck"], T0 - 3600)
    dock = s.reader("rd-pack", PACK)
    s.scan(dock, COMMISSION, T0, item=ITEM)
    s.readings(truck, T0, T0 + 1800, 600, lambda t: 250)
    marks["load"] = s.scan(dock, LOAD, T0 + 1800, ref=TRUCK)
    readings = s.readings(truck, T0 + 2400, T0 + 3 * 3600, 600, lambda t: 300 + (t - T0) // 600)
    marks["reading"] = readings[3]
    marks["last"] = readings[-1]
    return s, marks


def text(bundle: Any, version: int = 3) -> bytes:
    return bundle.dumps(version=version, check=False).encode()


def trust_text(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=1) + "\n").encode()


def edit_reading(raw: bytes) -> bytes:
    """The same record with one payload byte changed (still a valid payload): the
    signature no longer verifies."""
    from protocol.record import open_record

    rec = open_record(raw)
    temp = rec.payload.temp  # type: ignore[union-attr]
    old = (b"\x19" + temp.to_bytes(2, "big")) if temp >= 256 else None
    assert old is not None and raw.count(old) == 1
    return raw.replace(old, b"\x19" + (temp + 1).to_bytes(2, "big"))


def extras() -> dict[str, tuple[bytes, bytes]]:
    out: dict[str, tuple[bytes, bytes]] = {}
    s, marks = scenario()
    trust = trust_text(s.trust_doc())
    b = s.bundle(item=ITEM)
    out["scenario_v2"] = (text(b, 2), trust)
    out["scenario_v3"] = (text(b, 3), trust)

    # one reading edited in the log: its signature fails, the next record's link too
    s2, marks2 = scenario()
    i = s2.records.index(marks2["reading"])
    s2.records[i] = edit_reading(s2.records[i])
    out["edited_reading"] = (text(s2.bundle(item=ITEM), 2), trust)

    # a record left out of the bundle while its proof lists it
    doc = json.loads(text(b, 2))
    doc["records"] = [r for r in doc["records"] if base64.b64decode(r["record"]) != marks["load"]]
    out["record_left_out"] = ((json.dumps(doc, indent=1) + "\n").encode(), trust)

    # a record cut short: malformed, and the proof over the others fails
    doc = json.loads(text(b, 2))
    for r in doc["records"]:
        if base64.b64decode(r["record"]) == marks["last"]:
            r["record"] = base64.b64encode(marks["last"][:-7]).decode()
    out["record_cut"] = ((json.dumps(doc, indent=1) + "\n").encode(), trust)

    # witnesses: quorum 1 without the cosignature, and with it
    w = s.witness("witness.example/w1")
    wtrust = trust_text(s.trust_doc(witnesses=[w], quorum=1))
    out["no_cosignature"] = (text(s.bundle(item=ITEM, sizes=[5])), wtrust)
    out["cosigned"] = (text(s.bundle(item=ITEM, sizes=[5], witnesses=[w])), wtrust)

    # a claimed item that is not the commission's
    out["subject_mismatch"] = (text(s.bundle(item=ITEM + "9")), trust)

    # the ledger key not pinned: the anchor's key is unknown, nothing is covered
    tdoc = s.trust_doc()
    tdoc.pop("ledgers")
    out["unpinned_ledger"] = (text(b), trust_text(tdoc))

    # garbage JSON: a duplicate member
    dup = text(b, 2).replace(b'"version": 2,', b'"version": 2,\n "version": 2,', 1)
    assert dup != text(b, 2)
    out["duplicate_member"] = (dup, trust)

    # a deflate bomb: 16 MiB of zeros in a log whose runs count one record
    doc = json.loads(text(b, 3))
    doc["logs"][0]["runs"] = [[0, 1]]
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = bomb.compress(bytes(16 << 20)) + bomb.flush()
    doc["logs"][0]["records"] = base64.b64encode(packed).decode()
    out["deflate_bomb"] = ((json.dumps(doc) + "\n").encode(), trust)

    # bytes after the end of a DEFLATE stream
    doc = json.loads(text(b, 3))
    raw = base64.b64decode(doc["logs"][0]["records"]) + b"\x00"
    doc["logs"][0]["records"] = base64.b64encode(raw).decode()
    out["deflate_trailing"] = ((json.dumps(doc) + "\n").encode(), trust)
    return out


# --- records: open_record on mutated records ------------------------------------------------

_SAFE = 2**53 - 1
_VALUES: list[Any] = [
    0, 1, -1, 2, 3, 7, 11, 15, 16, 23, 24, 60, 255, 256, 20000, 20001, 65535, 65536,
    86400, 86401, -10000, -10001, 15000, 15001, -129, -128, 2**31, -(2**31), -(2**31) - 1,
    2**32 - 1, 2**32, 2**53, 2**64 - 1, -(2**64), b"", bytes(4), bytes(7), bytes(10), bytes(16),
    bytes(24), bytes(65), b"\x04" + bytes(64), "", "a", "x" * 65, "x" * 129, "a\x7fb", "\x85",
    "é" * 32, "tl-1 tl-2", "tl-2 tl-1", "tl-1  tl-2", "09506000134352", "09506000134353",
    "L-42", "L 42", [], {}, [1], {1: 2},
]
_KEYS = [0, 7, 8, 9, 17, 28, 39, 44, 46, 52, 59, 71, 999, 1000, 5000, 2**40, 2**64 - 1]


def _json_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    if isinstance(v, int) and not -_SAFE <= v <= _SAFE:
        return {"int": str(v)}
    return v


def _envelope(kid: str, payload: bytes, signature: bytes) -> bytes:
    protected = cbor.encode({1: -7, 4: kid.encode()})
    return (
        b"\xd2\x84"
        + cbor.head(2, len(protected))
        + protected
        + b"\xa0"
        + cbor.head(2, len(payload))
        + payload
        + b"\x58\x40"
        + signature
    )


def record_cases() -> list[dict[str, Any]]:
    """open_record (§2, §3) on records of the pass vector, mutated: payload fields set to
    edge values, removed or added (re-encoded, the envelope rebuilt), and bytes flipped,
    cut or appended. ``ok``, the error code, and for an accepted record its signer and
    payload fields (byte strings as {"hex"}, integers beyond 2^53 as {"int"})."""
    import random

    from protocol.record import open_record

    rng = random.Random(20261207)
    doc = json.loads((VECTORS / "pass" / "bundle.json").read_text())
    bundle = loads_bundle(json.dumps(doc))
    originals = [r.raw for r in bundle.records]
    raws: list[bytes] = []
    for raw in originals[:: max(1, len(originals) // 60)]:
        raws.append(raw)
        rec = open_record(raw)
        start = raw.index(b"\xa0") + 1
        head = raw[start]
        body = rec.raw[start + (1 if head < 0x58 else 2 if head == 0x58 else 3) :][:-66]
        m = cbor.decode(body, max_size=512, max_depth=1)
        assert isinstance(m, dict)
        signature = raw[-64:]
        for _ in range(6):
            mm = dict(m)
            what = rng.randrange(3)
            if what == 0:
                mm[rng.choice(sorted(mm))] = rng.choice(_VALUES)
            elif what == 1:
                del mm[rng.choice(sorted(mm))]
            else:
                mm[rng.choice(_KEYS)] = rng.choice(_VALUES)
            try:
                raws.append(_envelope(rec.signer, cbor.encode(mm), signature))
            except (TypeError, ValueError):
                continue
        for _ in range(3):
            b = bytearray(raw)
            k = rng.randrange(len(b))
            how = rng.randrange(3)
            if how == 0:
                b[k] ^= 1 << rng.randrange(8)
            elif how == 1:
                del b[k:]
            else:
                b.insert(k, rng.randrange(256))
            raws.append(bytes(b))
    out = []
    for raw in raws:
        case: dict[str, Any] = {"record": raw.hex()}
        try:
            rec = open_record(raw)
        except VerificationError as err:
            case.update(ok=False, code=err.code)
        else:
            p = rec.payload
            fields = {"kind": p.kind}
            for f in dataclasses.fields(p):
                if f.name == "extensions":
                    fields[f.name] = {str(k): _json_value(v) for k, v in p.extensions.items()}
                else:
                    fields[f.name] = _json_value(getattr(p, f.name))
            case.update(ok=True, code=None, signer=rec.signer, payload=fields)
        out.append(case)
    return out


def outputs() -> dict[Path, str]:
    """Every file this script writes, by path, with its text."""
    files: dict[Path, str] = {}
    for d in sorted(p for p in VECTORS.iterdir() if p.is_dir()):
        rep = report((d / "bundle.json").read_bytes(), (d / "trust.json").read_bytes())
        files[OUT / "vectors" / d.name / "report.json"] = dumps(rep)
    for name, (bundle, trust) in extras().items():
        where = OUT / "extra" / name
        files[where / "bundle.json"] = bundle.decode()
        files[where / "trust.json"] = trust.decode()
        files[where / "report.json"] = dumps(report(bundle, trust))
    files[OUT / "records" / "cases.json"] = dumps(record_cases())
    return files


def main(argv: list[str]) -> int:
    del argv
    for path, content in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
