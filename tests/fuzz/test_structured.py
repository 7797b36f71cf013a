"""Structure-aware fuzzing: inputs that get past the first checks of each parser.

Random bytes rarely make a CBOR map with the right keys, a COSE envelope whose
signature or MAC verifies, a note whose key id matches a pinned key, or a SUN
query with hex of the right length. Here hypothesis builds them:

* record payloads from the field tables of protocol/record.py (every kind,
  1-7, and unknown ones), values of the right and wrong types, in and out of
  range, encoded as deterministic CBOR; then the same payloads signed with the
  genuine device key (so verify_record reaches the payload checks) and MACed
  with the ack key (so COSE_Mac0 and the firmware's ack check reach the map);
* Merkle proofs with sizes and indexes from 0 to past 2^64 and hash lists of
  every length;
* signed notes line by line: checkpoint bodies, signature lines whose key name
  and id are the pinned log's or witness's, base64 of payloads of any length;
* SUN query parameters under every accepted name, with hex-like values
  (digits, letters, whitespace, a final newline, non-ASCII digits);
* compact (version 3) bundles whose ``logs`` carry arbitrary runs and DEFLATE
  blobs of framed records, including a decompression bomb.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import zlib

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from cloud import sun
from protocol import cose
from protocol import record as rec
from protocol.bundle import loads_bundle
from protocol.errors import VerificationError
from tests.fuzz import targets as t
from tests.fuzz.harness import FUZZ, Target, attempt

_U64 = 2**64

# --- record payloads ---------------------------------------------------------------------------


def _value_for(field: tuple | None) -> st.SearchStrategy[object]:
    ints = st.one_of(
        st.integers(-(2**63), 2**64 - 1),
        st.integers(-20000, 100000),
        st.sampled_from([0, 1, -1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32]),
    )
    any_value = st.one_of(ints, st.binary(max_size=300), st.text(max_size=80))
    if field is None:
        return any_value
    _, check, lo, hi = field
    if check in (rec._UINT, rec._INT):
        ranged = st.integers(lo, hi) if isinstance(lo, int) else ints
        return st.one_of(ranged, ranged, any_value)
    if check == rec._TSTR:
        return st.one_of(st.text(min_size=lo, max_size=hi + 2), any_value)
    sizes = sorted(lo) if check == rec._BSTR_SET else [lo, hi]
    return st.one_of(
        st.binary(min_size=min(sizes), max_size=max(sizes) + 2),
        st.sampled_from(sizes).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
        any_value,
    )


@st.composite
def payload_maps(draw: st.DrawFn) -> dict[int, object]:
    kind = draw(st.one_of(st.integers(1, 7), st.integers(0, 300)))
    spec = rec._SPECS.get(kind, rec._SPECS[1])
    keys = draw(
        st.lists(
            st.one_of(st.sampled_from(sorted(spec)), st.integers(0, 2000)), max_size=26, unique=True
        )
    )
    m: dict[int, object] = {1: kind}
    required = [k for k in spec if draw(st.booleans()) or k in (2, 3, 4, 5, 6)]
    for key in {*keys, *required}:
        if key != 1:
            m[key] = draw(_value_for(spec.get(key)))
    if kind == rec.KIND_BLOCK and draw(st.booleans()):  # coherent slots, N from 1 to 129
        n = draw(st.integers(1, 129))
        m[18] = draw(st.binary(min_size=2 * n, max_size=2 * n))
        if draw(st.booleans()):
            m[19] = draw(st.binary(min_size=2 * n, max_size=2 * n))
    return m


def _cbor(m: dict[int, object]) -> bytes:
    return cbor2.dumps(m, canonical=True)


@FUZZ
@given(payload_maps())
def test_generated_payloads_of_every_kind(m):
    attempt(t.TARGETS["record_payload"].target, t.record_payload, _cbor(m))


@FUZZ
@given(payload_maps())
def test_generated_payloads_signed_by_the_genuine_key(m):
    data = cose.sign1_deterministic(_cbor(m), "tl-truck", t.DEVICE_KEY)
    attempt(t.TARGETS["cose_sign1"].target, t.cose_sign1, data)


_FW_ACK = t.TARGETS["fw_mac0"].target


@FUZZ
@given(payload_maps(), st.booleans())
def test_generated_acks_with_a_valid_mac(m, small):
    payload = _cbor({k: v for k, v in m.items() if k < 24} if small else m)
    data = cose.mac0(payload, "gw-1", t.ACK_KEY)
    attempt(t.TARGETS["cose_mac0"].target, t.cose_mac0, data)
    attempt(_FW_ACK, t.fw_mac0, data)  # the device's check, under CPython


@FUZZ
@given(st.binary(max_size=600), st.sampled_from(["gw-1", "tl-truck", "x" * 40, "Ü"]))
def test_acks_with_a_valid_mac_over_arbitrary_bytes(payload, kid):
    protected = cose._protected_bytes(cose.ALG_HMAC_256_256, "gw-1") if kid != "gw-1" else None
    try:
        data = cose.mac0(payload, kid, t.ACK_KEY)
    except VerificationError:  # the kid is not an id: build the envelope by hand
        assert protected is not None
        tag = hashlib.sha256(payload).digest()
        data = cose._assemble(cose.TAG_MAC0, protected, payload, tag)
    attempt(t.TARGETS["cose_mac0"].target, t.cose_mac0, data)
    attempt(_FW_ACK, t.fw_mac0, data)


# --- Merkle proofs -----------------------------------------------------------------------------

_size = st.one_of(
    st.integers(0, 64), st.integers(0, _U64 + 1), st.sampled_from([2**63, _U64 - 1, _U64])
)
_hash = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40))
_proof = st.lists(st.binary(min_size=32, max_size=32), max_size=70) | st.lists(_hash, max_size=8)


@FUZZ
@given(_size, _size, _hash, _proof, _hash)
def test_inclusion_proofs_of_any_shape(index, size, leaf, proof, root):
    attempt(
        t.TARGETS["merkle_inclusion"].target,
        t.verify_inclusion,
        index,
        size,
        leaf,
        proof,
        root,
    )


@FUZZ
@given(_size, _size, _proof, _hash, _hash)
def test_consistency_proofs_of_any_shape(size1, size2, proof, root1, root2):
    attempt(
        t.TARGETS["merkle_consistency"].target,
        t.verify_consistency,
        size1,
        size2,
        proof,
        root1,
        root2,
    )


@FUZZ
@given(_size, st.lists(_size, max_size=40), st.integers(0, 3), _proof, _hash)
def test_multiproofs_of_any_shape(size, leaves, extra, nodes, root):
    leaf_hashes = [hashlib.sha256(b"%d" % i).digest() for i in range(max(0, len(leaves) - extra))]
    attempt(
        t.TARGETS["merkle_multiproof"].target,
        t.verify_multiproof,
        size,
        leaves,
        leaf_hashes,
        nodes,
        root,
    )


# --- notes, checkpoints, cosignatures ------------------------------------------------------

_KEYS = [
    (t.LOG.name, t.LOG.key_id),
    (t.WITNESS.name, t.WITNESS.key_id),
    (t.OTHER_WITNESS.name, t.OTHER_WITNESS.key_id),
    ("unknown.example/k", 0x01020304),
]
_line_text = st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=40)


@st.composite
def notes(draw: st.DrawFn) -> str:
    origin = draw(st.sampled_from([t.LOG.name, "other.example/log", ""]) | _line_text)
    size = draw(st.sampled_from(["0", "5", "18446744073709551615", "18446744073709551616", "05"]))
    size = draw(st.just(size) | st.integers(-1, 2**70).map(str) | _line_text)
    root = base64.b64encode(draw(st.binary(min_size=32, max_size=32))).decode()
    root = draw(st.just(root) | _line_text | st.just(root[:-1]))
    body = f"{origin}\n{size}\n{root}\n" + "".join(
        f"{x}\n" for x in draw(st.lists(_line_text, max_size=3))
    )
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        name, kid = draw(st.sampled_from(_KEYS))
        if draw(st.integers(0, 9)) == 0:
            name = draw(_line_text)
        payload = kid.to_bytes(4, "big") + draw(
            st.sampled_from([64, 72, 0, 1, 8]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
            | st.binary(max_size=100)
        )
        if draw(st.integers(0, 9)) == 0:  # a timestamp above 2^63 - 1
            payload = payload[:4] + b"\xff" * 8 + payload[12:]
        sig = base64.b64encode(payload).decode()
        if draw(st.integers(0, 9)) == 0:
            sig = sig.rstrip("=")
        lines.append(f"\u2014 {name} {sig}\n")
    sep = draw(st.sampled_from(["\n", "", "\r\n", "\n\n"]))
    return body + sep + "".join(lines)


@FUZZ
@given(notes())
def test_generated_checkpoint_notes(text):
    attempt(t.TARGETS["checkpoint"].target, t.checkpoint, text.encode("utf-8", "surrogatepass"))
    attempt(t.TARGETS["cosignature"].target, t.cosignature, text.encode("utf-8", "surrogatepass"))


# --- SUN ------------------------------------------------------------------------------------------

_hexish = st.text(
    st.sampled_from("0123456789abcdefABCDEF0123456789abcdef \n\t+-xg\u0661\uff10"), max_size=70
)


@st.composite
def sun_params(draw: st.DrawFn) -> dict[str, str]:
    params: dict[str, str] = {}
    for names, sizes in (
        (sun.PICC_NAMES, (32, 48)),
        (sun.MAC_NAMES, (16,)),
        (sun.ENC_NAMES, (32, 64, 256, 258)),
    ):
        if draw(st.integers(0, 4)) == 0:
            continue
        n = draw(st.sampled_from(sizes))
        value = draw(
            st.text(st.sampled_from("0123456789abcdefABCDEF"), min_size=n, max_size=n) | _hexish
        )
        if draw(st.integers(0, 3)) == 0:  # a trailing newline, or one digit less and one
            value = value[:-1] + draw(st.sampled_from(["\n", " ", "\u0661"]))
        params[draw(st.sampled_from(names))] = value
    return params


_SUN = t.TARGETS["sun_url"].target


def _sun_params(params: dict[str, str]) -> None:
    msg = sun.parse_sun(params)
    if msg is not None:
        sun.verify_sun(t.SUN_KEYS.meta_read, t._file_key, msg)


@FUZZ
@given(sun_params())
def test_generated_sun_parameters(params):
    attempt(_SUN, _sun_params, params)


# --- compact bundles (version 3, §9.1): runs and DEFLATE blobs ------------------------------

GOOD = json.loads(t.bundle_text())
_BUNDLE = Target("bundle_compact", (VerificationError,))


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


@st.composite
def compact_logs(draw: st.DrawFn) -> dict:
    doc = copy.deepcopy(GOOD)
    entry = doc["logs"][0]
    n = draw(st.integers(0, 6))
    records = draw(st.lists(st.binary(min_size=0, max_size=40), min_size=n, max_size=n))
    real = [base64.b64decode(entry["records"])] if draw(st.booleans()) else []
    blob = b"".join(len(r).to_bytes(2, "big") + r for r in records)
    if real:
        blob = zlib.decompress(real[0], -15) + blob
    choice = draw(st.integers(0, 5))
    if choice == 0:
        packed = zlib.compress(blob)  # zlib, not raw DEFLATE
    elif choice == 1:
        packed = _deflate(blob)[: draw(st.integers(0, 20))]  # truncated
    elif choice == 2:
        packed = _deflate(blob) + draw(st.binary(min_size=1, max_size=4))  # trailing bytes
    else:
        packed = _deflate(blob)
    entry["records"] = base64.b64encode(packed).decode()
    runs = draw(
        st.lists(
            st.lists(st.integers(-1, 2**64), min_size=0, max_size=3)
            | st.tuples(st.integers(0, 40), st.integers(0, 8)).map(list),
            max_size=4,
        )
    )
    entry["runs"] = runs if draw(st.booleans()) else entry["runs"]
    return doc


def _read_compact(doc: dict) -> None:
    loads_bundle(json.dumps(doc))


@FUZZ
@given(compact_logs())
def test_compact_logs_with_arbitrary_runs_and_blobs(doc):
    attempt(_BUNDLE, _read_compact, doc)


_b64_hashes = st.one_of(
    st.integers(0, 70).flatmap(lambda n: st.binary(min_size=32 * n, max_size=32 * n)),
    st.binary(max_size=100),
).map(lambda raw: base64.b64encode(raw).decode())
_runs = st.lists(
    st.tuples(st.integers(0, 20) | st.integers(0, 2**64), st.integers(0, 20)).map(list), max_size=5
)


@st.composite
def compact_proofs(draw: st.DrawFn) -> dict:
    doc = copy.deepcopy(GOOD)
    log = doc["proofs"][0]["log"]
    proofs = []
    for _ in range(draw(st.integers(0, 3))):
        proofs.append(
            {
                "log": log,
                "tree_size": draw(st.integers(1, 40) | st.just(17) | st.just(2**64 - 1)),
                "leaves": draw(_runs | st.just([[0, 17]])),
                "nodes": draw(_b64_hashes | st.just("")),
            }
        )
    doc["proofs"] = proofs or doc["proofs"]
    doc["consistency"] = [
        {
            "log": log,
            "old_size": draw(st.integers(0, 40) | st.just(2**64 - 1)),
            "new_size": draw(st.integers(0, 40)),
            "path": draw(_b64_hashes),
        }
        for _ in range(draw(st.integers(0, 2)))
    ]
    return doc


_VERIFY = Target("bundle_compact", (VerificationError,))


@FUZZ
@given(compact_proofs())
def test_compact_proofs_with_arbitrary_runs_and_hash_strings(doc):
    """The compact multiproof and consistency readers, then the verifier on what they read."""
    attempt(_VERIFY, t.bundle, json.dumps(doc).encode())


def test_compact_logs_refuse_a_decompression_bomb_without_inflating_it():
    doc = copy.deepcopy(GOOD)
    doc["logs"][0]["records"] = base64.b64encode(_deflate(bytes(64 << 20))).decode()
    err = attempt(_BUNDLE, _read_compact, doc)
    assert err is not None and "decompresses to more than" in str(err)
