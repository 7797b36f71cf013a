"""The verifier against hostile input: no traceback, bounded time and memory, a
clear error and the documented exit status (docs/protocol.md §9, §13.2).

Hypothesis drives the bundle and trust readers with arbitrary bytes, arbitrary
JSON documents and mutations of a genuine bundle; hand-made worst cases cover
what a random search rarely finds (deep nesting, huge files, NaN, surrogates,
duplicate names). Each case has a time limit. Atheris, where it installs,
fuzzes the same entry points with coverage guidance for a bounded number of
runs (test_atheris_*).
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.bundle import loads_bundle
from protocol.cli import main
from protocol.errors import VerificationError
from protocol.trust import parse_trust
from protocol.verify import verify_bundle
from protocol.verify_cli import render
from tests.fuzz.harness import run_atheris
from tests.fuzz.targets import small_world
from tests.soak import scale

CASE_SECONDS = 2.0  # no single input may take longer than this to refuse or judge


_WORLD = small_world()
GOOD = json.loads(_WORLD.bundle().dumps())
TRUST = _WORLD.trust()
TRUST_DOC = _WORLD.trust_doc()


def _judge_text(text: str | bytes) -> None:
    """Read, verify, judge and render; only VerificationError may escape the reader."""
    t0 = time.perf_counter()
    try:
        bundle = loads_bundle(text)
    except VerificationError:
        assert time.perf_counter() - t0 < CASE_SECONDS
        return
    report = verify_bundle(bundle, TRUST)
    rendered = render(report, verbose=True)
    json.dumps(report.to_json(), ensure_ascii=True)
    assert "\x1b" not in rendered
    assert time.perf_counter() - t0 < CASE_SECONDS


def test_genuine_small_world_verifies_so_mutations_start_from_a_pass():
    report = verify_bundle(loads_bundle(json.dumps(GOOD)), TRUST)
    assert report.verified, report.failures


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_reader_refuses_arbitrary_bytes_cleanly(data):
    _judge_text(data)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_reader_refuses_arbitrary_json_cleanly(doc):
    _judge_text(json.dumps(doc))


def _paths(doc, prefix=()):
    """Every (container, key) position of a JSON document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


_GOOD_PATHS = list(_paths(GOOD))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_GOOD_PATHS), _json, st.booleans())
def test_mutated_genuine_bundle_never_crashes(path, value, delete):
    doc = copy.deepcopy(GOOD)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    _judge_text(json.dumps(doc))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=len(json.dumps(GOOD)) - 1), st.binary(min_size=1, max_size=8)
)
def test_byte_flipped_genuine_bundle_never_crashes(pos, junk):
    text = json.dumps(GOOD).encode()
    _judge_text(text[:pos] + junk + text[pos + len(junk) :])


@settings(max_examples=300, deadline=None)
@given(_json)
def test_trust_reader_refuses_arbitrary_documents_cleanly(doc):
    with contextlib.suppress(VerificationError):
        parse_trust(doc)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(_paths(TRUST_DOC))), _json)
def test_mutated_trust_file_never_crashes(path, value):
    doc = copy.deepcopy(TRUST_DOC)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    try:
        trust = parse_trust(doc)
    except VerificationError:
        return
    verify_bundle(loads_bundle(json.dumps(GOOD)), trust)


# --- worst cases, through the command line -------------------------------------------


def _cli(tmp_path: Path, body: bytes, capsys) -> tuple[int, str, str]:
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(body)
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(TRUST_DOC))
    t0 = time.perf_counter()
    rc = main(["verify", str(bundle), "--trust", str(trust)])
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    assert elapsed < 10, f"took {elapsed:.1f} s"
    return rc, out, err


def _with(**changes) -> bytes:
    doc = copy.deepcopy(GOOD)
    doc.update(changes)
    return json.dumps(doc).encode()


HOSTILE = {
    "deep nesting": b"[" * 1100 + b"]" * 1100,
    "deeper nesting": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "many empty objects": b"[" + b"{}," * 2_000_000 + b"{}]",
    "NaN": _with(created=float("nan")).replace(b"NaN", b"NaN"),
    "Infinity": json.dumps({**GOOD, "created": 1})
    .replace('"created": 1', '"created": Infinity')
    .encode(),
    "float": json.dumps({**GOOD, "created": 1}).replace('"created": 1', '"created": 1.0').encode(),
    "boolean version": json.dumps({**GOOD, "version": True}).encode(),
    "version 1": json.dumps({**GOOD, "version": 1}).encode(),
    "duplicate names": json.dumps(GOOD)
    .replace('{"format"', '{"format": "x", "format"', 1)
    .encode(),
    "lone surrogate in a receipt": json.dumps(GOOD)
    .replace('"type": "local", "ledger": "', '"type": "local", "ledger": "\\ud800', 1)
    .encode(),
    "escape sequence in a subject": _with(
        subject={"uid": "04a23c5a1b6f80", "item": "\x1b[2J" * 30}
    ),
    "BOM": b"\xef\xbb\xbf" + json.dumps(GOOD).encode(),
    "invalid UTF-8": json.dumps(GOOD)
    .encode()
    .replace(b"coldtrace-bundle", b"coldtrace-\xffbundle"),
    "huge string": _with(subject={"uid": "04a23c5a1b6f80", "item": "x" * 10_000_000}),
    "not JSON": b"\x00\x01\x02 not json",
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_cli_refuses_hostile_bundles_with_exit_2_and_no_traceback(name, tmp_path, capsys):
    rc, out, err = _cli(tmp_path, HOSTILE[name], capsys)
    assert rc == 2, (name, out[-500:], err[-500:])
    assert "Traceback" not in out + err
    assert "\x1b" not in out + err
    assert len(out) + len(err) < 2000


def test_cli_refuses_oversized_file_before_reading_it(tmp_path, capsys):
    bundle = tmp_path / "big.json"
    with bundle.open("wb") as f:  # sparse: 1 GiB that costs nothing to make
        f.truncate(1 << 30)
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(TRUST_DOC))
    t0 = time.perf_counter()
    rc = main(["verify", str(bundle), "--trust", str(trust)])
    assert time.perf_counter() - t0 < 1.0
    _, err = capsys.readouterr()
    assert rc == 2
    assert "64" in err  # names the limit


def test_cli_json_output_of_hostile_input_is_one_json_object(tmp_path, capsys):
    bundle = tmp_path / "b.json"
    bundle.write_bytes(HOSTILE["deep nesting"])
    trust = tmp_path / "t.json"
    trust.write_text(json.dumps(TRUST_DOC))
    rc = main(["verify", str(bundle), "--trust", str(trust), "--json"])
    out, _ = capsys.readouterr()
    assert rc == 2
    doc = json.loads(out)
    assert (
        doc["verified"] is False and doc["verdict"] is None and doc["error"] == "malformed_bundle"
    )


# --- atheris (coverage-guided), bounded ----------------------------------------------------


def test_atheris_bundle_reader_and_verifier(tmp_path):
    """Coverage-guided, bounded (tests/fuzz/harness.py run_atheris; counts in
    test-artifacts/fuzz/bundle.json)."""
    pytest.importorskip("atheris", reason="atheris does not install on this platform")
    seeds = [json.dumps(GOOD).encode(), HOSTILE["duplicate names"]]
    assert run_atheris("bundle", seeds, tmp_path, runs=scale(3000, 200_000)) >= 3000
