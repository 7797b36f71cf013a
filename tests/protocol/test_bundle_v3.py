"""Bundle format v3, the compact encoding (docs/protocol.md §9.1).

Version 3 carries the same content as version 2 (test_bundle.py): the same
:class:`Bundle` comes out of both, and the verifier reaches the same report.
Here: the format as written, an independent decoder that follows §9.1 only,
every malformed form refused as ``malformed_bundle`` (by the schema too where
JSON Schema can see it), the decompression limits, a property test, and the
size of a realistic bundle against the raw records it carries.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
import random
import time
import zlib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.bundle import (
    MAX_INFLATED_BYTES,
    MAX_PROOF_LEAVES,
    MIN_PACKED_BYTES_PER_RECORD,
    MIN_RECORD_BYTES,
    VERSION,
    AnchorRef,
    Bundle,
    BundleRecord,
    ConsistencyProof,
    MultiProof,
    Subject,
    loads_bundle,
    parse_bundle,
)
from protocol.errors import BundleError
from protocol.record import open_record
from protocol.trust import load_trust
from protocol.verify import verify_bundle
from tests.protocol.factory import ORIGIN, UID, world
from tests.protocol.scenario import COMMISSION, GTIN, ITEM, LOAD, RECEIVE, T0, UNLOAD, Scenario

ROOT = Path(__file__).parents[2]
SCHEMA = json.loads((ROOT / "protocol" / "schema" / "bundle.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
VECTORS = Path(__file__).resolve().parent / "vectors" / "verdict"
W = world(n_devices=2, readings=4)
GOOD = W.bundle(sizes=(5, len(W.leaves)))
DOC = GOOD.to_json()
RECEIPT = GOOD.anchors[0].receipt


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def deflate(data: bytes, *, level: int = 9) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def unfinished(data: bytes) -> bytes:
    """Raw DEFLATE of ``data`` flushed to a byte boundary but without a final block."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)


def framed(*records: bytes) -> bytes:
    return b"".join(len(r).to_bytes(2, "big") + r for r in records)


def noise(n: int, seed: object = 0) -> bytes:
    """``n`` bytes that do not compress (as a record's signature does not), from ``seed``."""
    out = b""
    k = 0
    while len(out) < n:
        out += hashlib.sha512(f"{seed}/{k}".encode()).digest()
        k += 1
    return out[:n]


def record_like(head: bytes, seed: object) -> bytes:
    """A record-sized byte string: ``head`` then 64 incompressible bytes in place of the
    signature (distinct for each ``seed``), at least MIN_RECORD_BYTES in all."""
    head = head + bytes(max(0, MIN_RECORD_BYTES - 64 - len(head)))
    return head + noise(64, seed)


def with_log(doc: dict[str, Any], **entry: Any) -> dict[str, Any]:
    """``doc`` with its first ``logs`` entry changed."""
    out = copy.deepcopy(doc)
    out["logs"][0].update(entry)
    return out


def changed(doc: dict[str, Any], member: str, value: object) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out[member] = value
    return out


def refused(doc: object, match: str | None = None) -> BundleError:
    with pytest.raises(BundleError, match=match) as info:
        parse_bundle(doc)
    assert info.value.code == "malformed_bundle"
    with pytest.raises(BundleError):
        loads_bundle(json.dumps(doc))
    return info.value


def decode_by_the_spec(doc: dict[str, Any]) -> list[tuple[str, int, bytes]]:
    """§9.1 read by hand, without protocol.bundle: (log, index, record bytes)."""
    out = []
    for entry in doc["logs"]:
        blob = zlib.decompress(base64.b64decode(entry["records"]), -15)
        pos = 0
        for first, count in entry["runs"]:
            for index in range(first, first + count):
                n = int.from_bytes(blob[pos : pos + 2], "big")
                out.append((entry["log"], index, blob[pos + 2 : pos + 2 + n]))
                pos += 2 + n
        assert pos == len(blob)
    return out


# --- the format ------------------------------------------------------------------------------


def test_writers_write_version_3_by_default() -> None:
    assert VERSION == 3
    assert DOC["version"] == 3 and json.loads(GOOD.dumps())["version"] == 3
    assert list(DOC) == [
        "format",
        "version",
        "created",
        "subject",
        "logs",
        "checkpoints",
        "proofs",
        "consistency",
        "anchors",
    ]
    assert DOC["logs"][0]["log"] == ORIGIN and DOC["logs"][0]["runs"] == [[0, len(W.leaves)]]
    assert set(DOC["logs"][0]) == {"log", "runs", "records"}
    assert DOC["proofs"][0]["leaves"] == [[0, 5]]
    assert isinstance(DOC["proofs"][0]["nodes"], str)
    assert isinstance(DOC["consistency"][0]["path"], str)
    assert DOC["anchors"] == GOOD.to_json(version=2)["anchors"]
    VALIDATOR.validate(DOC)


def test_round_trip_and_an_independent_decoder_agree() -> None:
    text = GOOD.dumps()
    assert loads_bundle(text) == GOOD
    assert loads_bundle(text.encode()) == GOOD
    assert decode_by_the_spec(DOC) == [(r.log, r.index, r.raw) for r in GOOD.records]
    nodes = base64.b64decode(DOC["proofs"][1]["nodes"])
    assert [nodes[k : k + 32] for k in range(0, len(nodes), 32)] == list(GOOD.proofs[1].nodes)


def test_version_2_and_3_of_one_bundle_read_the_same() -> None:
    assert loads_bundle(GOOD.dumps(version=2)) == loads_bundle(GOOD.dumps(version=3))


def test_records_are_grouped_by_log_and_sorted_by_index() -> None:
    raws = [r.raw for r in GOOD.records[:6]]
    mixed = Bundle(
        subject=Subject(UID),
        records=[
            BundleRecord("log-b", 9, raws[0]),
            BundleRecord("log-a", 4, raws[1]),
            BundleRecord("log-b", 3, raws[2]),
            BundleRecord("log-a", 5, raws[3]),
            BundleRecord("log-b", 4, raws[4]),
            BundleRecord("log-b", 7, raws[5]),
        ],
    )
    doc = mixed.to_json()
    assert [(e["log"], e["runs"]) for e in doc["logs"]] == [
        ("log-b", [[3, 2], [7, 1], [9, 1]]),
        ("log-a", [[4, 2]]),
    ]
    back = loads_bundle(mixed.dumps()).records
    assert [(r.log, r.index) for r in back] == [
        ("log-b", 3),
        ("log-b", 4),
        ("log-b", 7),
        ("log-b", 9),
        ("log-a", 4),
        ("log-a", 5),
    ]
    assert sorted(back, key=lambda r: (r.log, r.index)) == sorted(
        mixed.records, key=lambda r: (r.log, r.index)
    )


def test_version_3_cannot_hold_one_log_index_twice_but_version_2_can() -> None:
    raw = GOOD.records[0].raw
    twice = Bundle(
        subject=Subject(UID), records=[BundleRecord(ORIGIN, 0, raw), BundleRecord(ORIGIN, 0, raw)]
    )
    with pytest.raises(BundleError, match="one record per"):
        twice.to_json()
    assert len(loads_bundle(twice.dumps(version=2)).records) == 2


@pytest.mark.parametrize("version", [1, 4, "3"])
def test_only_versions_2_and_3_are_written(version: Any) -> None:
    with pytest.raises(ValueError, match="cannot write"):
        GOOD.dumps(version=version)


def test_an_empty_bundle() -> None:
    b = Bundle(subject=Subject(bytes(4)))
    doc = b.to_json()
    assert doc["logs"] == [] and "created" not in doc
    VALIDATOR.validate(doc)
    assert loads_bundle(b.dumps()) == b


# --- the same verdict from both versions ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in VECTORS.iterdir() if p.is_dir()))
def test_vectors_verify_the_same_in_version_2_and_3(name: str) -> None:
    d = VECTORS / name
    v2_text = (d / "bundle.json").read_text(encoding="utf-8")
    assert json.loads(v2_text)["version"] == 2
    v2 = loads_bundle(v2_text)
    v3_text = v2.dumps()
    VALIDATOR.validate(json.loads(v3_text))
    v3 = loads_bundle(v3_text)
    assert v3 == v2
    trust = load_trust(d / "trust.json")
    assert verify_bundle(v3, trust).to_json() == verify_bundle(v2, trust).to_json()
    assert len(v3_text) < 0.6 * len(v2_text)


def day_scenario() -> tuple[Scenario, Bundle]:
    """A day in the life: three loggers bound along the way and two others that share the
    log (their records are not in the bundle, so the multiproof has many nodes), all read
    every 5 minutes; commission, load, unload and receive scans."""
    s = Scenario(deterministic=False)
    s.profile(GTIN, T0 - 3600, low=200, high=800, delay=1800, gap=1800)
    dock, dc = s.reader("rd-dock", "pack:dock-1"), s.reader("rd-dc", "dc:dock-3")
    loggers = [s.logger(n) for n in ("tl-dock", "tl-truck", "tl-dc", "tl-other-1", "tl-other-2")]
    s.bind("pack:dock-1", ["tl-dock"], T0 - 3600)
    s.bind("fleet:truck-1", ["tl-truck"], T0 - 3600)
    s.bind("dc:dock-3", ["tl-dc"], T0 - 3600)
    s.scan(dock, COMMISSION, T0, item=ITEM)
    day = 86_400
    for t in range(T0 - 600, T0 + day + 600, 300):
        for lg in loggers:
            s.reading(lg, t, 450)
        if t == T0 + 3600:
            s.scan(dock, LOAD, t, ref="fleet:truck-1")
        if t == T0 + day - 3600:
            s.scan(dc, UNLOAD, t, ref="fleet:truck-1")
            s.scan(dc, RECEIVE, t + 60)
    others = {"tl-other-1", "tl-other-2"}
    return s, s.bundle(lambda raw: open_record(raw).signer not in others, item=ITEM)


def test_a_realistic_bundle_is_at_most_1_5_times_its_records() -> None:
    s, b = day_scenario()
    raw = sum(len(r.raw) for r in b.records)
    v2 = b.dumps(version=2).encode()
    v3 = b.dumps().encode()
    ratio = {
        "v2": len(v2) / raw,
        "v3": len(v3) / raw,
        "v2.gz": len(gzip.compress(v2)) / raw,
        "v3.gz": len(gzip.compress(v3)) / raw,
    }
    print(f"{len(b.records)} records, {raw} bytes:", {k: round(v, 2) for k, v in ratio.items()})
    assert len(b.records) > 500 and len(b.proofs[0].nodes) > 100
    assert ratio["v3"] <= 1.5, ratio
    assert ratio["v2"] > 2, ratio
    # §9.1's floor (32 compressed bytes a record) is far below a genuine bundle (89.5 here)
    for entry in json.loads(v3)["logs"]:
        n = sum(count for _, count in entry["runs"])
        per = len(base64.b64decode(entry["records"])) / n
        assert per > 2 * MIN_PACKED_BYTES_PER_RECORD, per
    assert min(len(r.raw) for r in b.records) > MIN_RECORD_BYTES
    trust = s.trust()
    one, two = verify_bundle(loads_bundle(v3), trust), verify_bundle(loads_bundle(v2), trust)
    assert one.verified and one.to_json() == two.to_json()


# --- refusals ------------------------------------------------------------------------------

RAW = GOOD.records[0].raw
LOG0 = DOC["logs"][0]
N = len(W.leaves)
ALL = [r.raw for r in GOOD.records]


def both_refuse() -> list[tuple[str, dict[str, Any]]]:
    """Malformed documents that the schema refuses too."""
    p = DOC["proofs"][0]
    c = DOC["consistency"][0]
    return [
        ("records member in version 3", changed(DOC, "records", [])),
        ("no logs", {k: v for k, v in DOC.items() if k != "logs"}),
        ("logs member in version 2", {**GOOD.to_json(version=2), "logs": []}),
        ("version 4", changed(DOC, "version", 4)),
        ("version true", changed(DOC, "version", True)),
        ("unknown member in a log", with_log(DOC, extra=1)),
        ("log missing runs", {**DOC, "logs": [{"log": ORIGIN, "records": LOG0["records"]}]}),
        ("runs empty", with_log(DOC, runs=[])),
        ("run count 0", with_log(DOC, runs=[[0, 0]])),
        ("run first negative", with_log(DOC, runs=[[-1, 2]])),
        ("run of one integer", with_log(DOC, runs=[[0]])),
        ("run of three integers", with_log(DOC, runs=[[0, 1, 2]])),
        ("run as an object", with_log(DOC, runs=[{"first": 0, "count": 1}])),
        ("run count true", with_log(DOC, runs=[[0, True]])),
        ("run first 2^63", with_log(DOC, runs=[[2**63, 1]])),
        ("records empty string", with_log(DOC, records="")),
        ("records not a string", with_log(DOC, records=[LOG0["records"]])),
        (
            "records with whitespace",
            with_log(DOC, records=LOG0["records"][:8] + "\n" + LOG0["records"][8:]),
        ),
        ("records not padded", with_log(DOC, records="AAAAAA")),
        ("records pad bits", with_log(DOC, records="AB==")),
        ("records url-safe", with_log(DOC, records="-_8=")),
        ("log not an origin", with_log(DOC, log="a+b")),
        ("nodes pad bits", changed(DOC, "proofs", [{**p, "nodes": "A" * 42 + "B="}])),
        ("nodes a list", changed(DOC, "proofs", [{**p, "nodes": [b64(bytes(32))]}])),
        ("nodes of 33 bytes", changed(DOC, "proofs", [{**p, "nodes": b64(bytes(33))}])),
        ("nodes of 31 bytes", changed(DOC, "proofs", [{**p, "nodes": b64(bytes(31))}])),
        ("nodes of 48 bytes", changed(DOC, "proofs", [{**p, "nodes": b64(bytes(48))}])),
        ("leaves a flat list", changed(DOC, "proofs", [{**p, "leaves": [0, 1, 2]}])),
        ("leaves empty", changed(DOC, "proofs", [{**p, "leaves": []}])),
        ("leaf run count 0", changed(DOC, "proofs", [{**p, "leaves": [[0, 0]]}])),
        ("path of 65 hashes", changed(DOC, "consistency", [{**c, "path": b64(bytes(32 * 65))}])),
        ("path of 40 bytes", changed(DOC, "consistency", [{**c, "path": b64(bytes(40))}])),
        ("path a list", changed(DOC, "consistency", [{**c, "path": [b64(bytes(32))]}])),
    ]


@pytest.mark.parametrize(("name", "doc"), both_refuse(), ids=[n for n, _ in both_refuse()])
def test_schema_and_reader_refuse(name: str, doc: dict[str, Any]) -> None:
    assert not VALIDATOR.is_valid(doc), f"the schema accepts: {name}"
    refused(doc)


def code_refuses() -> list[tuple[str, dict[str, Any], str]]:
    """Malformed documents only the reader can see: relations between members, blob contents."""
    p = DOC["proofs"][0]
    first, second = framed(*ALL[:2]), framed(*ALL[:3])
    two_logs = [LOG0, {**LOG0, "log": "other.example/log"}]
    return [
        ("adjacent runs", with_log(DOC, runs=[[0, 2], [2, N - 2]]), "adjacent runs"),
        ("overlapping runs", with_log(DOC, runs=[[0, 3], [2, N - 2]]), "must not overlap"),
        ("descending runs", with_log(DOC, runs=[[5, N - 5], [0, 5]]), "ascending"),
        ("one log twice", changed(DOC, "logs", [LOG0, LOG0]), "at most once"),
        ("run past 2^63 - 1", with_log(DOC, runs=[[2**63 - 1, 2]]), "want an integer in 1..1"),
        ("fewer runs than records", with_log(DOC, runs=[[0, N - 1]]), "trailing bytes"),
        ("more runs than records", with_log(DOC, runs=[[0, N + 1]]), "fewer than its runs"),
        ("trailing bytes", with_log(DOC, runs=[[0, 2]], records=b64(deflate(second))), "trailing"),
        (
            "trailing partial record",
            with_log(DOC, runs=[[0, 2]], records=b64(deflate(first + b"\x00"))),
            "trailing",
        ),
        (
            "record cut short",
            with_log(DOC, runs=[[0, 2]], records=b64(deflate(first[:-1]))),
            "cut short",
        ),
        (
            "record of 0 bytes",
            with_log(DOC, runs=[[0, 2]], records=b64(deflate(b"\x00\x00" + noise(100)))),
            r"\(record 0\): want 78\.\.1024 bytes",
        ),
        (
            "record of 77 bytes",
            with_log(DOC, runs=[[0, 1]], records=b64(deflate(framed(noise(77))))),
            r"\(record 0\): want 78\.\.1024 bytes",
        ),
        (
            "record of 1025 bytes",
            with_log(DOC, runs=[[0, 2]], records=b64(deflate(b"\x04\x01" + noise(1025)))),
            r"want 78\.\.1024 bytes",
        ),
        (
            "blob larger than its records can be",
            with_log(DOC, runs=[[0, 1]], records=b64(deflate(b"\x04\x00" + noise(1025)))),
            "decompresses to more than 1026 bytes",
        ),
        (
            "under 32 compressed bytes a record",
            with_log(DOC, runs=[[0, 1000]], records=b64(deflate(framed(*[RAW] * 1000)))),
            "fewer than 32 compressed bytes per record",
        ),
        (
            "one compressed byte short of 32 a record",
            with_log(DOC, runs=[[0, 1]], records=b64(b"\x01" + b"\x00" * 30)),
            r"want at least 32 for 1 records\) \(got \"'31 bytes'\"\)",
        ),
        (
            "truncated stream",
            with_log(DOC, records=b64(deflate(framed(*ALL))[:-4])),
            "truncated",
        ),
        (
            "stream without a final block",
            with_log(DOC, records=b64(unfinished(framed(*ALL)))),
            "truncated",
        ),
        (
            "bytes after the stream",
            with_log(DOC, records=b64(deflate(framed(*ALL)) + b"\x00")),
            "after the end",
        ),
        ("zlib header", with_log(DOC, records=b64(zlib.compress(framed(*ALL)))), "DEFLATE"),
        ("not DEFLATE", with_log(DOC, records=b64(b"\xff" * 32 * N)), "not a valid raw DEFLATE"),
        (
            "logs of 2 but one blob holds both",
            changed(DOC, "logs", [two_logs[0], {**two_logs[1], "runs": [[0, 1]]}]),
            "decompresses to more than 1026 bytes",
        ),
        (
            "leaves adjacent",
            changed(DOC, "proofs", [{**p, "leaves": [[0, 2], [2, 3]]}]),
            "adjacent",
        ),
        ("leaves overlap", changed(DOC, "proofs", [{**p, "leaves": [[0, 3], [2, 3]]}]), "overlap"),
        (
            "leaves past tree size",
            changed(DOC, "proofs", [{**p, "leaves": [[0, 6]]}]),
            "want an integer in 1..5",
        ),
        (
            "leaf at tree size",
            changed(DOC, "proofs", [{**p, "leaves": [[5, 1]]}]),
            "want an integer in 0..4",
        ),
        (
            "leaves more than the log's records",
            changed(DOC, "proofs", [{**p, "tree_size": 2**40, "leaves": [[0, N + 1]]}]),
            f"names more leaves than logs holds records of its log \\({N}\\)",
        ),
        (
            "leaves of a log without records",
            changed(DOC, "proofs", [{**p, "log": "other.example/log", "leaves": [[0, 1]]}]),
            r"records of its log \(0\)",
        ),
        (
            "65 nodes for one leaf",
            changed(DOC, "proofs", [{**p, "leaves": [[0, 1]], "nodes": b64(bytes(32 * 65))}]),
            r"want 0\.\.2048 bytes",
        ),
    ]


@pytest.mark.parametrize(
    ("name", "doc", "match"), code_refuses(), ids=[n for n, _, _ in code_refuses()]
)
def test_reader_refuses(name: str, doc: dict[str, Any], match: str) -> None:
    refused(doc, match)


def test_the_schema_accepts_what_only_the_reader_refuses_when_it_is_well_formed() -> None:
    for name, doc, _ in code_refuses():
        assert VALIDATOR.is_valid(doc), name


def test_a_deflate_bomb_is_refused_at_the_limit_without_inflating_it() -> None:
    """A blob of 80 KB that inflates to 80 MiB. Claiming a million records, it is refused
    before inflating anything (under 32 compressed bytes a record); claiming as many records
    as its size allows, after the limit for them (1026 bytes a record) plus one byte."""
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    packed = b"".join(bomb.compress(chunk) for _ in range(80)) + bomb.flush()
    assert len(packed) < 100_000
    start = time.perf_counter()
    doc = with_log(DOC, runs=[[0, 1_000_000]], records=b64(packed))
    refused(doc, "fewer than 32 compressed bytes per record")
    n = len(packed) // MIN_PACKED_BYTES_PER_RECORD
    err = refused(with_log(doc, runs=[[0, n]]), "decompresses to more than")
    assert f"{n * 1026} bytes" in str(err)
    assert time.perf_counter() - start < 5


def test_the_inflate_limit_is_for_all_logs_together() -> None:
    """Two logs each under 64 MiB but over it together (records of 1024 bytes, each with
    40 incompressible bytes so that the blob is above 32 compressed bytes a record)."""
    per = MAX_INFLATED_BYTES // 1026 // 2 + 1  # records per log: just over half the limit
    rng = random.Random(3)
    blob = framed(*[rng.randbytes(40) + bytes(984) for _ in range(per)])
    packed = b64(deflate(blob, level=1))
    assert len(base64.b64decode(packed)) >= MIN_PACKED_BYTES_PER_RECORD * per
    doc = changed(
        DOC,
        "logs",
        [
            {"log": "a.example/log", "runs": [[0, per]], "records": packed},
            {"log": "b.example/log", "runs": [[0, per]], "records": packed},
        ],
    )
    refused(doc, "logs\\[1\\].records: decompresses to more than")
    half = changed(changed(DOC, "logs", doc["logs"][:1]), "proofs", [])
    assert len(parse_bundle(half).records) == per


def test_proof_leaves_are_limited_in_all_in_both_versions() -> None:
    # version 3: a proof names at most the records of its log, so the bundle holds 1000
    many = 1000
    raws = [record_like(b"", k) for k in range(many)]
    big = with_log(DOC, runs=[[0, many]], records=b64(deflate(framed(*raws))))
    p = {"log": ORIGIN, "tree_size": 2**40, "leaves": [[0, many]], "nodes": ""}
    proofs = [p] * (MAX_PROOF_LEAVES // many)
    assert len(parse_bundle(changed(big, "proofs", proofs)).proofs) == len(proofs)
    refused(changed(big, "proofs", [*proofs, p]), f"more than {MAX_PROOF_LEAVES} leaves in all")
    half = MAX_PROOF_LEAVES // 2 + 1
    v2 = GOOD.to_json(version=2)
    q = {"log": ORIGIN, "tree_size": 2**40, "leaves": list(range(half)), "nodes": []}
    with pytest.raises(BundleError, match=f"more than {MAX_PROOF_LEAVES} leaves in all"):
        parse_bundle({**v2, "proofs": [q, q]})


def test_records_are_limited_in_all() -> None:
    runs = [[0, 600_000], [700_000, 400_001]]
    refused(with_log(DOC, runs=runs), "runs: more than 1000000 records in all")


def test_messages_name_the_member() -> None:
    err = refused(with_log(DOC, runs=[[0, 2], [2, N - 2]]))
    assert "logs[0].runs[1]" in str(err)
    p = DOC["proofs"][0]
    err = refused(changed(DOC, "proofs", [p, {**p, "nodes": b64(bytes(33))}]))
    assert "proofs[1].nodes" in str(err)


# --- property ------------------------------------------------------------------------------

ORIGINS = ["a.example/log", "b.example/log", "~" * 128]


@st.composite
def bundles(draw: st.DrawFn) -> Bundle:
    where = draw(
        st.lists(
            st.tuples(st.sampled_from(ORIGINS), st.integers(0, 40) | st.just(2**63 - 1)),
            unique=True,
            max_size=30,
        )
    )
    # records as genuine ones are: 78 to 1024 bytes, ending in 64 bytes that do not compress
    # (the signature), so that every blob is above 32 compressed bytes a record
    head = st.binary(min_size=0, max_size=64) | st.sampled_from([RAW[:-64], bytes(960)])
    records = [
        BundleRecord(log, index, record_like(draw(head), (log, index))) for log, index in where
    ]
    held: dict[str, int] = {}
    for log, _ in where:
        held[log] = held.get(log, 0) + 1
    proofs = []
    for _ in range(draw(st.integers(0, 3)) if held else 0):
        log = draw(st.sampled_from(sorted(held)))  # a proof names at most its log's records
        size = draw(st.integers(1, 100) | st.just(2**64 - 1))
        leaves = draw(
            st.lists(
                st.integers(0, min(size, 100) - 1),
                min_size=1,
                max_size=held[log],
                unique=True,
            )
        )
        n = draw(st.integers(0, min(3, 64 * len(leaves))))
        proofs.append(
            MultiProof(
                log,
                size,
                tuple(sorted(leaves)),
                tuple(draw(st.binary(min_size=32, max_size=32)) for _ in range(n)),
            )
        )
    consistency = [
        ConsistencyProof(
            draw(st.sampled_from(ORIGINS)),
            draw(st.integers(1, 2**64 - 1)),
            draw(st.integers(1, 2**64 - 1)),
            tuple(draw(st.lists(st.binary(min_size=32, max_size=32), max_size=64))),
        )
        for _ in range(draw(st.integers(0, 2)))
    ]
    return Bundle(
        subject=Subject(
            draw(st.sampled_from([bytes(4), bytes(7), UID])), draw(st.none() | st.just(ITEM))
        ),
        records=records,
        checkpoints=draw(st.lists(st.text(min_size=1, max_size=20), max_size=2)),
        proofs=proofs,
        consistency=consistency,
        anchors=[AnchorRef(ORIGIN, 10, RECEIPT)] if draw(st.booleans()) else [],
        created=draw(st.none() | st.integers(0, 2**32 - 1)),
    )


def canonical(b: Bundle) -> Bundle:
    """``b`` with its records in the order version 3 keeps them: by log as they first
    appear, then by index."""
    first: dict[str, int] = {}
    for r in b.records:
        first.setdefault(r.log, len(first))
    records = sorted(b.records, key=lambda r: (first[r.log], r.index))
    return Bundle(b.subject, records, b.checkpoints, b.proofs, b.consistency, b.anchors, b.created)


@given(bundles())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_bundle_round_trips_through_version_3(b: Bundle) -> None:
    text = b.dumps()
    assert loads_bundle(text) == canonical(b)
    doc = json.loads(text)
    VALIDATOR.validate(doc)
    assert loads_bundle(b.dumps(version=2)) == b
    assert loads_bundle(canonical(b).dumps(version=2)) == loads_bundle(text)
    assert decode_by_the_spec(doc) == [(r.log, r.index, r.raw) for r in canonical(b).records]


@given(st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_reader_raises_only_bundle_error_on_mutated_blobs(data: st.DataObject) -> None:
    packed = bytearray(base64.b64decode(LOG0["records"]))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(packed) - 1))
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "set":
            packed[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            packed.insert(i, data.draw(st.integers(0, 255)))
        else:
            del packed[i]
    runs = data.draw(st.sampled_from([LOG0["runs"], [[0, N - 1]], [[0, 1], [3, N - 3]]]))
    try:
        b = parse_bundle(with_log(DOC, runs=runs, records=b64(bytes(packed))))
    except BundleError:
        return
    assert loads_bundle(b.dumps()) == b


# --- speed ---------------------------------------------------------------------------------


def test_a_100k_record_bundle_parses_in_linear_time() -> None:
    rng = random.Random(7)
    raws = [r.raw for r in GOOD.records]
    n = 100_000
    b = Bundle(
        subject=Subject(UID),
        records=[
            BundleRecord(ORIGIN, 2 * i, rng.choice(raws)[:-64] + rng.randbytes(64))
            for i in range(n)
        ],
        proofs=[MultiProof(ORIGIN, 2 * n, tuple(range(0, 2 * n, 2)), (bytes(32),) * n)],
    )
    text = b.dumps(check=False)
    start = time.perf_counter()
    back = loads_bundle(text)
    elapsed = time.perf_counter() - start
    assert back == b
    # a guard against quadratic parsing, not a speed figure (about 1 s; bench/ measures speed)
    assert elapsed < 15, f"{elapsed:.2f} s for {len(text) / 1e6:.0f} MB"
