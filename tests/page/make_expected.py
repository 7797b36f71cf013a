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
- ``data/provenance/<name>/report.json`` for each provenance vector of
  tests/protocol/vectors/provenance/ (verified with its input.json's ``tag``);
- ``data/extra/<name>/{bundle.json,trust.json,report.json}`` for bundles made here with
  tests/protocol/scenario.py (deterministic keys and RFC 6979 signatures): the same bundle
  in versions 2 and 3, an edited reading (bad signature), a record left out that its proof
  lists and a record cut short (proof mismatch), a checkpoint without the witness
  cosignature the quorum requires and one with it, an unpinned ledger, a duplicate member,
  a deflate bomb, a DEFLATE stream with bytes after its end, and §9.1's floors (under 32
  compressed bytes a record, a record under 78 bytes, a proof naming more leaves than the
  records of its log: ``floor_*``).

tests/page/verify.test.mjs compares the JavaScript reports with these files;
tests/page/test_js_verifier.py checks the files equal a fresh run and runs the Node tests.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
import zlib
from collections.abc import Callable
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
PROVENANCE = ROOT / "tests" / "protocol" / "vectors" / "provenance"
OUT = Path(__file__).resolve().parent / "data"


def report(bundle_text: bytes, trust_text: bytes, tag: str = "unknown") -> dict[str, Any]:
    """The Python verifier's report for the two files, as the JavaScript one must give it."""
    try:
        trust = loads_trust(trust_text)
        bundle = loads_bundle(bundle_text)
    except VerificationError as err:
        return {"verified": False, "verdict": None, "error": err.code}
    rep = verify_bundle(bundle, trust, tag=tag)
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

    # §9.1's floors (docs/decisions.md D44): a million 1-byte records in 3 KB of DEFLATE, the
    # bundle's own records repeated (under 32 compressed bytes a record), a record of 77
    # incompressible bytes (under the 78 of the shortest envelope) and proofs naming more
    # leaves than the bundle holds records of their log
    def v3_edit(change: Callable[[dict[str, Any]], None]) -> bytes:
        doc = json.loads(text(b, 3))
        change(doc)
        return (json.dumps(doc) + "\n").encode()

    def packed(blob: bytes) -> str:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        return base64.b64encode(c.compress(blob) + c.flush()).decode()

    def logs0(runs: list[list[int]], blob: bytes) -> Callable[[dict[str, Any]], None]:
        return lambda d: d["logs"][0].update(runs=runs, records=packed(blob))

    first = b.records[0].raw
    tail = bytes(range(77))
    out["floor_million_tiny_records"] = (
        v3_edit(logs0([[0, 1_000_000]], b"\x00\x01x" * 1_000_000)),
        trust,
    )
    out["floor_repeated_records"] = (
        v3_edit(logs0([[0, 2000]], (len(first).to_bytes(2, "big") + first) * 2000)),
        trust,
    )
    out["floor_record_77_bytes"] = (
        v3_edit(logs0([[0, 1]], b"\x00\x4d" + bytes((k * 151 + 7) % 256 for k in tail))),
        trust,
    )
    out["floor_proof_million_leaves"] = (
        v3_edit(lambda d: d["proofs"][0].update(tree_size=2**40, leaves=[[0, 1_000_000]])),
        trust,
    )
    out["floor_proof_other_log"] = (
        v3_edit(lambda d: d["proofs"][0].update(log="elsewhere.example/log", leaves=[[0, 1]])),
        trust,
    )
    return out


# --- malformed and odd bundles ---------------------------------------------------------------


def json_cases() -> dict[str, tuple[bytes, bytes]]:
    """Bundles edited one way each: JSON rules (§9), members, base64, runs, receipts,
    checkpoints, consistency, duplicate entries. The report (or the unreadable code) of
    each must be Python's."""
    s, _ = scenario()
    trust = trust_text(s.trust_doc())
    b = s.bundle(item=ITEM, sizes=[5])
    v2 = text(b, 2).decode()
    v3 = text(b, 3).decode()
    dropped = set(s.records[10:14])
    part = text(s.bundle(lambda raw: raw not in dropped, item=ITEM, sizes=[5]), 2).decode()
    out: dict[str, tuple[bytes, bytes]] = {}

    def edit(name: str, base: str, old: str, new: str, t: bytes = trust) -> None:
        assert old in base, name
        out[name] = (base.replace(old, new, 1).encode(), t)

    def doc_edit(name: str, base: str, change: Callable[[dict[str, Any]], None]) -> None:
        doc = json.loads(base)
        change(doc)
        out[name] = ((json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode(), trust)

    created = '"created": 1790000000'
    for name, new in [
        ("float_created", '"created": 1790000000.0'),
        ("exponent_created", '"created": 1.79e9'),
        ("minus_zero_created", '"created": -0'),
        ("nan_created", '"created": NaN'),
        ("huge_created", '"created": 123456789012345678901234567890'),
        ("created_2_32", '"created": 4294967296'),
        ("bool_created", '"created": true'),
        ("string_created", '"created": "1790000000"'),
    ]:
        edit(name, v2, created, new)
    edit("bool_version", v2, '"version": 2', '"version": true')
    edit("version_1", v2, '"version": 2', '"version": 1')
    edit("version_4", v2, '"version": 2', '"version": 4')
    out["bom"] = (b"\xef\xbb\xbf" + v2.encode(), trust)
    out["trailing_garbage"] = ((v2 + "x").encode(), trust)
    out["not_utf8"] = (v2.encode().replace(b"gateway-1", b"gateway\xff1", 1), trust)
    edit("lone_surrogate_item", v2, '"item": "/01/', '"item": "\\ud800/01/')
    edit("surrogate_pair_item", v2, '/21/7"', '/21/7\\ud83d\\ude00"')
    edit("escaped_control_item", v2, '/21/7"', '/21/7\\u0085"')
    edit("raw_tab_in_string", v2, '/21/7"', '/21/7\t"')
    edit("deep_nesting", v2, created, created + ', "x": [[[[[[[[[]]]]]]]]]')
    edit("depth_8_unknown_member", v2, created, created + ', "x": [[[[[[[]]]]]]]')
    edit("uid_upper", v2, '"uid": "04a23c5a1b6f80"', '"uid": "04A23C5A1B6F80"')
    edit("extra_member", v2, created, created + ', "foo": 1')
    edit("duplicate_receipt_type", v2, '"type": "local"', '"type": "local", "type": "local"')
    edit("origin_plus", v2, '"log": "vectors.example/gateway-1"', '"log": "vectors+example"')
    edit("checkpoint_garbage", v2, '"checkpoints": [\n  "', '"checkpoints": [\n  "hello", "')
    edit("checkpoint_extension_line", v2, "\\n\\n\u2014", "\\nextension\\n\\n\u2014")
    edit("logs_in_v2", v2, created, created + ', "logs": []')
    edit("records_in_v3", v3, '"created": 1790000000', '"created": 1790000000, "records": []')
    edit("runs_adjacent", v3, '"runs":[[0,25]]', '"runs":[[0,10],[10,15]]')
    edit("runs_overlap", v3, '"runs":[[0,25]]', '"runs":[[0,10],[9,16]]')
    edit("runs_fewer", v3, '"runs":[[0,25]]', '"runs":[[0,24]]')
    edit("runs_more", v3, '"runs":[[0,25]]', '"runs":[[0,26]]')
    edit("runs_zero_count", v3, '"runs":[[0,25]]', '"runs":[[0,25],[30,0]]')

    def b64_noncanonical(doc: dict[str, Any]) -> None:
        for r in doc["records"]:
            t = r["record"]
            if t.endswith("=") and not t.endswith("=="):
                alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                c = alphabet.index(t[-2])
                r["record"] = t[:-2] + alphabet[c | 1] + "="
                return
        raise AssertionError("no record ending in one =")

    doc_edit("b64_noncanonical", v2, b64_noncanonical)
    doc_edit(
        "b64_newline",
        v2,
        lambda d: d["records"][0].update(
            record=d["records"][0]["record"][:8] + "\n" + d["records"][0]["record"][8:]
        ),
    )
    doc_edit("duplicate_entry", v2, lambda d: d["records"].append(dict(d["records"][3])))
    doc_edit(
        "same_record_two_indexes",
        v2,
        lambda d: d["records"].append({**d["records"][3], "index": 99}),
    )
    doc_edit("node_missing", part, lambda d: d["proofs"][0]["nodes"].pop())
    doc_edit(
        "node_extra", part, lambda d: d["proofs"][0]["nodes"].append(d["proofs"][0]["nodes"][0])
    )
    doc_edit("leaves_unsorted", v2, lambda d: d["proofs"][0]["leaves"].reverse())
    doc_edit(
        "leaf_beyond_tree",
        v2,
        lambda d: d["proofs"][0]["leaves"].append(d["proofs"][0]["tree_size"]),
    )
    doc_edit("part", part, lambda d: None)
    doc_edit("node_short", part, lambda d: d["proofs"][0]["nodes"].__setitem__(0, "AAAA"))
    doc_edit("node_swapped", part, lambda d: d["proofs"][0]["nodes"].reverse())
    doc_edit("proof_other_size", v2, lambda d: d["proofs"][0].update(tree_size=26))
    doc_edit("no_proofs", v2, lambda d: d.update(proofs=[]))
    doc_edit("no_consistency", v2, lambda d: d.update(consistency=[]))
    doc_edit(
        "consistency_twice_one_bad",
        v2,
        lambda d: d["consistency"].insert(
            0, {**d["consistency"][0], "path": list(reversed(d["consistency"][0]["path"]))}
        ),
    )
    doc_edit("no_anchors", v2, lambda d: d.update(anchors=[]))
    doc_edit("anchor_small_checkpoint", v2, lambda d: d["anchors"][0].update(tree_size=5))
    doc_edit("anchor_unknown_size", v2, lambda d: d["anchors"][0].update(tree_size=7))
    doc_edit("receipt_extra_member", v2, lambda d: d["anchors"][0]["receipt"].update(x=1))
    doc_edit("receipt_bool_index", v2, lambda d: d["anchors"][0]["receipt"].update(index=True))
    doc_edit("receipt_prev_at_0", v2, lambda d: d["anchors"][0]["receipt"].update(prev="11" * 32))
    doc_edit("receipt_index_1_zero_prev", v2, lambda d: d["anchors"][0]["receipt"].update(index=1))
    doc_edit(
        "receipt_bad_signature", v2, lambda d: d["anchors"][0]["receipt"].update(time=1790000001)
    )
    doc_edit("receipt_twice", v2, lambda d: d["anchors"].append(dict(d["anchors"][0])))
    doc_edit(
        "receipt_fork",
        v2,
        lambda d: d["anchors"].append(
            {
                **d["anchors"][0],
                "receipt": {**d["anchors"][0]["receipt"], "checkpoint_hash": "22" * 32},
            }
        ),
    )
    evm = {
        "type": "evm",
        "chain_id": 31337,
        "contract": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "tx_hash": "0x" + "ab" * 32,
        "block_number": 42,
        "block_hash": "0x" + "cd" * 32,
        "log_index": 0,
        "checkpoint_hash": "ef" * 32,
        "confirmations": 12,
    }
    doc_edit("evm_unpinned", v2, lambda d: d["anchors"].append({**d["anchors"][0], "receipt": evm}))
    doc_edit(
        "evm_bad_checksum",
        v2,
        lambda d: d["anchors"].append(
            {
                **d["anchors"][0],
                "receipt": {**evm, "contract": evm["contract"].replace("a", "A", 1)},
            }
        ),
    )
    tdoc = s.trust_doc()
    tdoc["ledgers"].append({"type": "evm", "chain_id": 31337, "contract": evm["contract"].lower()})
    out["evm_pinned"] = (out["evm_unpinned"][0], trust_text(tdoc))
    tdoc = s.trust_doc()
    tdoc["quorum"] = 1
    out["trust_quorum_above_witnesses"] = (v2.encode(), trust_text(tdoc))
    out["trust_duplicate_member"] = (
        v2.encode(),
        trust.replace(b'"version": 2', b'"version": 2, "version": 2', 1),
    )
    tdoc = s.trust_doc()
    tdoc["registries"][0]["places"] = ["pack:*"]
    out["scope_place_out"] = (v2.encode(), trust_text(tdoc))
    tdoc = s.trust_doc()
    tdoc["registries"][0]["gtins"] = ["1*"]
    out["scope_gtin_out"] = (v2.encode(), trust_text(tdoc))
    tdoc = s.trust_doc()
    tdoc["registries"][0]["devices"] = ["rd-*"]
    out["scope_devices_out"] = (v2.encode(), trust_text(tdoc))
    tdoc = s.trust_doc()
    tdoc["devices"] = [{"id": "tl-truck", "key": tdoc["registries"][0]["key"]}]
    out["pinned_device_wrong_key"] = (v2.encode(), trust_text(tdoc))
    tdoc = s.trust_doc()
    tdoc.pop("logs")
    out["no_log_key"] = (v2.encode(), trust_text(tdoc))
    return out


# --- the strict JSON reader ------------------------------------------------------------------

JSON_TEXTS = [
    "{}",
    "[]",
    " [1] ",
    "\t\n\r[1]\r\n",
    "\f[1]",
    "\u00a0[1]",
    "",
    "   ",
    "true",
    "nul",
    "1",
    "-0",
    "-1",
    "01",
    "1.",
    ".5",
    "-",
    "+1",
    "1e5",
    "1E5",
    "1.0",
    "0x10",
    "- 1",
    "--1",
    "123456789012345678901",
    "12345678901234567890",
    "-9223372036854775808",
    "9007199254740991",
    "9007199254740992",
    "18446744073709551615",
    "18446744073709551616",
    "NaN",
    "Infinity",
    "-Infinity",
    "[NaN]",
    "[1,]",
    "[,1]",
    "{,}",
    '{"a":1,}',
    "[01]",
    '{"a":1,"a":2}',
    '{"a":{"b":1,"b":1}}',
    '[{"a":1},{"a":1}]',
    '{"__proto__":1}',
    '{"__proto__":1,"__proto__":2}',
    '{"constructor":1}',
    '{"a":1 "b":2}',
    '{"a" 1}',
    "{1:2}",
    '["\\u00e9"]',
    '["\\uD83D\\uDE00"]',
    '["\\ud83d"]',
    '["\\udc00"]',
    '["\\ud83d\\ud83d"]',
    '["\\ud83dx"]',
    '["\\x41"]',
    '["\\u12"]',
    '["\\u12G4"]',
    '["\\/"]',
    '["\\\\"]',
    '["a\x7fb"]',
    '["a\x1fb"]',
    '["a\u2028b"]',
    '["\u00e9"]',
    '["\U0001f600"]',
    '["\\"]',
    '["\\""]',
    '"abc',
    "[1]]",
    "[[1]",
    "[1] [2]",
    "[1] x",
    "{}{}",
    "/* c */ {}",
    "[true,false,null]",
    "[" * 8 + "]" * 8,
    "[" * 9 + "]" * 9,
    '{"a":' * 8 + "1" + "}" * 8,
    '{"a":' * 9 + "1" + "}" * 9,
    '["[[[[[[[[[[["]',
    '["\\"[[[[[[[[[[["]',
    '["\\\\", ' + "[" * 7 + "]" * 7 + "]",
    '["\\\\", ' + "[" * 8 + "]" * 8 + "]",
    '["\\\\\\"[[[[[[[[["]',
    "[" * 100 + "]" * 100,
    '{"a": [1, 2, {"b": "c"}], "d": -5}',
    '{"b":1,"a":2}',
]


def json_text_cases() -> list[dict[str, Any]]:
    """loads_strict (§9's JSON rules) on odd texts: accepted or not, and the value."""
    from protocol.errors import BundleError
    from protocol.strictjson import loads_strict

    out = []
    texts: list[bytes] = [t.encode("utf-8", "surrogatepass") for t in JSON_TEXTS]
    texts += [b"\xef\xbb\xbf[1]", b'["\xff"]', b'["\xc3"]', b'["\xed\xa0\x80"]', b"[1]" + b" " * 40]
    for data in texts:
        case: dict[str, Any] = {"text": base64.b64encode(data).decode()}
        try:
            value = loads_strict(data, limit=64, what="bundle", error=BundleError)
        except VerificationError:
            case["ok"] = False
        else:
            case["ok"] = True
            case["value"] = json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=True
            )
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                # Python's reader keeps a lone surrogate for the bundle or trust parser to
                # refuse (every string member is checked); the JavaScript reader refuses it
                # at once. tests/page/data/json/lone_surrogate_item compares whole bundles.
                case["lone_surrogate"] = True
        out.append(case)
    return out


# --- raw DEFLATE ----------------------------------------------------------------------------


def inflate_cases() -> list[dict[str, Any]]:
    """protocol.bundle._inflate (zlib, bounded) on raw DEFLATE streams of every kind
    (stored, fixed, dynamic; levels 0-9) and on copies with a byte changed, cut or added,
    each with a cap: accepted or not, and the SHA-256 of the output."""
    import hashlib
    import random

    from protocol.bundle import _inflate
    from protocol.errors import BundleError

    rng = random.Random(1951)
    sources = [
        bytes(3000),
        bytes(rng.randrange(256) for _ in range(2000)),
        b"coldtrace " * 300 + bytes(rng.randrange(4) for _ in range(1500)),
        (VECTORS / "pass" / "trust.json").read_bytes(),
    ]
    streams: list[tuple[bytes, int]] = []
    for src in sources:
        for level in (0, 1, 6, 9):
            for strategy in (zlib.Z_DEFAULT_STRATEGY, zlib.Z_FIXED, zlib.Z_HUFFMAN_ONLY):
                c = zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy)
                packed = c.compress(src) + c.flush()
                streams.append((packed, len(src)))
                streams.append((packed, len(src) - 1))
                for _ in range(4):
                    b = bytearray(packed)
                    k = rng.randrange(len(b))
                    how = rng.randrange(4)
                    if how == 0:
                        b[k] ^= 1 << rng.randrange(8)
                    elif how == 1:
                        b[k] = rng.randrange(256)
                    elif how == 2:
                        del b[k:]
                    else:
                        b.insert(k, rng.randrange(256))
                    streams.append((bytes(b), len(src) + 10))
    for src in sources:  # a sync flush: an empty stored block after Huffman blocks, mid-byte
        for level in (1, 9):
            c = zlib.compressobj(level, zlib.DEFLATED, -15)
            half = len(src) // 2
            packed = c.compress(src[:half]) + c.flush(zlib.Z_SYNC_FLUSH)
            packed += c.compress(src[half:]) + c.flush()
            streams.append((packed, len(src)))
    for strategy in (zlib.Z_HUFFMAN_ONLY, zlib.Z_DEFAULT_STRATEGY):
        # few symbols, so end-of-block has a short code: the stored block of each sync flush
        # starts with bits of more than one byte already read
        c = zlib.compressobj(6, zlib.DEFLATED, -15, 9, strategy)
        packed, src = b"", b""
        for k in range(12):
            chunk = (b"ab" * (300 + 37 * k))[: 600 + 71 * k]
            src += chunk
            packed += c.compress(chunk) + c.flush(zlib.Z_SYNC_FLUSH)
        packed += c.flush()
        streams.append((packed, len(src)))
    streams += [(bytes([0x03, 0x00]), 10), (bytes([0x01, 0x00, 0x00, 0xFF, 0xFF]), 0)]
    streams += [(bytes([0x07]), 10), (bytes([0x01, 0x01, 0x00, 0xFE, 0xFF, 0x41]), 1)]
    out = []
    for packed, cap in streams:
        case: dict[str, Any] = {"data": base64.b64encode(packed).decode(), "cap": cap}
        try:
            blob = _inflate(packed, "x", cap)
        except BundleError:
            case["ok"] = False
        else:
            case.update(ok=True, sha256=hashlib.sha256(blob).hexdigest())
        out.append(case)
    return out


# --- records: open_record on mutated records ------------------------------------------------

_SAFE = 2**53 - 1
_VALUES: list[Any] = [
    0,
    1,
    -1,
    2,
    3,
    7,
    11,
    15,
    16,
    23,
    24,
    60,
    255,
    256,
    20000,
    20001,
    65535,
    65536,
    86400,
    86401,
    -10000,
    -10001,
    15000,
    15001,
    -129,
    -128,
    2**31,
    -(2**31),
    -(2**31) - 1,
    2**32 - 1,
    2**32,
    2**53,
    2**64 - 1,
    -(2**64),
    b"",
    bytes(4),
    bytes(7),
    bytes(10),
    bytes(16),
    bytes(24),
    bytes(65),
    b"\x04" + bytes(64),
    "",
    "a",
    "x" * 65,
    "x" * 129,
    "a\x7fb",
    "\x85",
    "é" * 32,
    "tl-1 tl-2",
    "tl-2 tl-1",
    "tl-1  tl-2",
    "09506000134352",
    "09506000134353",
    "L-42",
    "L 42",
    [],
    {},
    [1],
    {1: 2},
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


#: Values for a reading block's fields (§2.8): slot arrays at and past each rule's edge.
_BLOCK_VALUES: dict[int, list[Any]] = {
    4: [2**32 - 1 - 5 * 600, 2**32 - 5 * 600],  # the last reading at 2^32 - 1, then past it
    17: [0, 1, 86400, 86401, -1, "x"],
    18: [
        b"",
        bytes(1),
        bytes(3),
        bytes(128),
        bytes(130),
        b"\x80\x00" * 6,
        b"\x80\x01" * 6,
        b"\x80\xff" + bytes(10),
        b"\x3a\x98" * 6,
        b"\x3a\x99" + bytes(10),
        b"\xd8\xf0" * 6,
        bytes(10) + b"\xd8\xef",
        bytes(10) + b"\x81\x00",
        "temps",
    ],
    19: [
        bytes(12),
        bytes(10),
        bytes(14),
        b"\xff\xff" * 6,
        b"\x27\x10" * 6,
        bytes(10) + b"\x27\x11",
        b"\xff\xff" * 5 + b"\x00\x01",
    ],
}


def _block_raws() -> list[bytes]:
    """Blocks of the pass_blocks vector with one field set to each of _BLOCK_VALUES, removed,
    or with a faulted first slot (with and without a humidity beside it)."""
    from protocol.record import ReadingBlock, open_record

    doc = json.loads((VECTORS / "pass_blocks" / "bundle.json").read_text())
    blocks = [
        r.raw
        for r in loads_bundle(json.dumps(doc)).records
        if isinstance(open_record(r.raw).payload, ReadingBlock)
    ][:3]
    out: list[bytes] = []
    for raw in blocks:
        rec = open_record(raw)
        p = rec.payload
        assert isinstance(p, ReadingBlock) and p.n == 6
        m: dict[int, Any] = {1: 7, 2: p.boot, 3: p.seq, 4: p.time, 5: p.tq, 6: p.prev}
        m |= {17: p.ivl, 18: p.temps, 15: 3600, 13: 1}
        variants: list[dict[int, Any]] = [m]
        variants += [m | {key: v} for key, values in _BLOCK_VALUES.items() for v in values]
        variants += [{k: v for k, v in m.items() if k != key} for key in (17, 18)]
        faulted = b"\x80\x03" + p.temps[2:]
        variants += [m | {18: faulted}, m | {18: faulted, 19: b"\x17\x70" * 6}]
        variants += [m | {18: faulted, 19: b"\xff\xff" + b"\x17\x70" * 5}]
        for v in variants:
            body = cbor.encode(dict(sorted(v.items())))
            out.append(_envelope(rec.signer, body, raw[-64:]))
    return out


def record_cases() -> list[dict[str, Any]]:
    """open_record (§2, §3) on records of the pass vector, mutated: payload fields set to
    edge values, removed or added (re-encoded, the envelope rebuilt), and bytes flipped,
    cut or appended. ``ok``; for a refused record the error's code, message, expected and
    found; for an accepted one its signer and payload fields (byte strings as {"hex"},
    integers beyond 2^53 as {"int"})."""
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
    raws += _block_raws()
    out = []
    for raw in raws:
        case: dict[str, Any] = {"record": raw.hex()}
        try:
            rec = open_record(raw)
        except VerificationError as err:
            case.update(ok=False, code=err.code, message=err.message)
            case["expected"] = None if err.expected is None else str(err.expected)
            case["found"] = None if err.found is None else str(err.found)
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


def outputs() -> dict[Path, str | bytes]:
    """Every file this script writes, by path, with its text."""
    files: dict[Path, str | bytes] = {}
    for d in sorted(p for p in VECTORS.iterdir() if p.is_dir()):
        rep = report((d / "bundle.json").read_bytes(), (d / "trust.json").read_bytes())
        files[OUT / "vectors" / d.name / "report.json"] = dumps(rep)
    for d in sorted(p for p in PROVENANCE.iterdir() if p.is_dir()):
        tag = json.loads((d / "input.json").read_text())["tag"]
        rep = report((d / "bundle.json").read_bytes(), (d / "trust.json").read_bytes(), tag)
        files[OUT / "provenance" / d.name / "report.json"] = dumps(rep)
    for name, (bundle, trust) in extras().items():
        where = OUT / "extra" / name
        files[where / "bundle.json"] = bundle
        files[where / "trust.json"] = trust.decode()
        files[where / "report.json"] = dumps(report(bundle, trust))
    for name, (bundle, trust) in json_cases().items():
        where = OUT / "json" / name
        files[where / "bundle.json"] = bundle
        files[where / "trust.json"] = trust.decode()
        files[where / "report.json"] = dumps(report(bundle, trust))
    files[OUT / "records" / "cases.json"] = dumps(record_cases())
    files[OUT / "records" / "json_texts.json"] = dumps(json_text_cases())
    files[OUT / "records" / "inflate.json"] = dumps(inflate_cases())
    return files


def main(argv: list[str]) -> int:
    del argv
    for path, content in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
