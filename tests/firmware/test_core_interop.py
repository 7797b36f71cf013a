"""The firmware core (firmware/lib, run here under CPython) against the
independent implementations: python-ecdsa, pyca/cryptography, pycose, cbor2
and the ``protocol`` package. The same modules also run under MicroPython in
the scripts (test_scripts.py); these checks need the host libraries."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import cbor2
import ecdsa
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from ecdsa.util import sigencode_string
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import cose
from protocol import record as precord
from protocol.errors import VerificationError
from protocol.keys import p256_public_from_sec1

LIB = Path(__file__).resolve().parents[2] / "firmware" / "lib"
FAKES = Path(__file__).resolve().parent / "fakes"
for p in (str(FAKES), str(LIB)):
    if p not in sys.path:
        sys.path.insert(0, p)

import ct_cbor  # noqa: E402
import ct_p256  # noqa: E402
import ct_record  # noqa: E402

N = ct_p256.N
KID = "tl-7f3a21"
SECRET = bytes(range(1, 33))
SIGNER = ct_p256.Signer(SECRET)


def ecdsa_low_s(secret: bytes, msg: bytes) -> bytes:
    sk = ecdsa.SigningKey.from_string(secret, curve=ecdsa.NIST256p, hashfunc=hashlib.sha256)
    raw = sk.sign_deterministic(msg, hashfunc=hashlib.sha256, sigencode=sigencode_string)
    s = int.from_bytes(raw[32:], "big")
    return raw[:32] + min(s, N - s).to_bytes(32, "big")


@settings(max_examples=60, deadline=None)
@given(
    secret=st.integers(min_value=1, max_value=N - 1),
    msg=st.binary(max_size=300),
)
def test_signature_equals_python_ecdsa_after_low_s(secret: int, msg: bytes) -> None:
    raw = secret.to_bytes(32, "big")
    s = ct_p256.Signer(raw)
    assert s.sign(msg) == ecdsa_low_s(raw, msg)
    vk = ecdsa.SigningKey.from_string(raw, curve=ecdsa.NIST256p).get_verifying_key()
    assert s.public_key() == b"\x04" + vk.to_string()


def private_key(secret: bytes = SECRET) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256R1())


def common(kind: int, seq: int = 7) -> dict[int, Any]:
    return {1: kind, 2: 2, 3: seq, 4: 1790000000, 5: 2, 6: bytes(range(16))}


RECORDS = [
    common(1) | {10: -1850, 11: 5000, 15: 3900},
    common(1) | {10: 15000, 13: 15, 14: 0xFFFFFFFF, 16: 7, 1000: "vendor", 1001: b"\x00" * 64},
    common(1) | {12: 3, 15: 0},
    common(2) | {20: bytes(7), 21: 1, 22: "urn:epc:id:sgln:0614141.00777.0",
                 23: bytes(24), 24: "/01/09506000134352/10/L42/21/7", 25: bytes(10),
                 26: "PO-4711", 15: 4100},
    common(3) | {30: 11, 31: 86400, 32: "coldtrace-0.1.0", 33: 5000, 34: 0, 35: -128,
                 36: 255, 37: -(2**31), 15: 3600},
    common(3, seq=0) | {30: 1},
    common(3) | {30: 11, 37: 2, 38: 5},  # declared losses (§5.2): seqs 5, 6 < seq 7
    common(2) | {20: bytes(7), 21: 2, 22: "urn:epc:id:sgln:0614141.00777.0", 26: "PO-4711",
                 27: bytes(range(16, 32))},  # custody link (protocol v2 §4.3)
]


@pytest.mark.parametrize("fields", RECORDS, ids=lambda f: f"kind{f[1]}-{len(f)}")
def test_firmware_records_verify_with_the_protocol_package(fields: dict[int, Any]) -> None:
    p = ct_record.payload(fields)
    rec = ct_record.sign1(p, KID, SIGNER)
    pub = p256_public_from_sec1(SIGNER.public_key())
    got = precord.verify_record(rec, pub)
    assert got.signer == KID and got.raw == rec
    assert precord.encode_payload(got.payload) == p  # the protocol's encoder agrees
    assert precord.chain_hash(rec) == ct_record.chain_link(rec)
    assert precord.open_record(rec).payload == got.payload
    # byte-identical to the protocol's own device-style signer
    assert cose.sign1_deterministic(p, KID, private_key()) == rec
    # and cbor2's canonical encoder makes the same payload bytes
    assert cbor2.dumps(cbor2.loads(p), canonical=True) == p


@pytest.mark.parametrize("fields", RECORDS[:2] + RECORDS[3:4], ids=["reading", "ext", "scan"])
def test_firmware_records_verify_with_pycose(fields: dict[int, Any]) -> None:
    from pycose.keys.curves import P256
    from pycose.keys.ec2 import EC2Key
    from pycose.messages import Sign1Message

    rec = ct_record.sign1(ct_record.payload(fields), KID, SIGNER)
    pub = SIGNER.public_key()
    msg = Sign1Message.decode(rec)
    msg.key = EC2Key(crv=P256, x=pub[1:33], y=pub[33:])
    assert msg.verify_signature()
    assert msg.phdr[next(k for k in msg.phdr if getattr(k, "identifier", k) == 4)] == KID.encode()
    # a flipped payload bit does not verify
    bad = bytearray(rec)
    bad[30] ^= 1
    msg = Sign1Message.decode(bytes(bad))
    msg.key = EC2Key(crv=P256, x=pub[1:33], y=pub[33:])
    assert not msg.verify_signature()


def test_declared_loss_from_the_core_verifies_with_the_protocol_package() -> None:
    """ct_core.declare_lost signs what §2.4/§5.2 define: a status record,
    event 11, detail = how many, lost = the first lost seq, chained."""
    import ct_core
    import ct_queue
    import ct_state
    from fakefs import FakeFs

    fs = FakeFs()
    core = ct_core.Core(KID, SIGNER, ct_state.State(fs, "st"),
                        ct_queue.Queue(fs, "q", 4, 2048, 0, 0))
    core.start()
    recs = []
    for t in (450, 460, 470, 480):
        recs.append(core.record({1: 1, 4: 1790000000, 5: 3, 10: t}))
        assert core.enqueue(recs[-1])
    rec = core.declare_lost(1, 2, 1790000060, 3)
    assert rec is not None
    got = precord.verify_record(rec, p256_public_from_sec1(SIGNER.public_key()))
    p = got.payload
    assert isinstance(p, precord.Status) and got.signer == KID
    assert (p.event, p.detail, p.lost) == (11, 2, 1)
    assert (p.boot, p.seq, p.time, p.tq) == (1, 4, 1790000060, 3)
    assert p.prev == precord.chain_hash(recs[-1])
    with pytest.raises(ct_core.CoreError):
        core.declare_lost(4, 2, 1790000060, 3)  # seq 5 was never signed


def test_mac0_interoperates_with_the_protocol_package() -> None:
    key = bytes(range(32))
    fields = {1: 41, 2: 1790000000, 3: bytes(16)}
    payload = cbor2.dumps(fields, canonical=True)
    theirs = cose.mac0(payload, "gw-1", key)
    kid, got = ct_record.verify_mac0(theirs, key)
    assert kid == b"gw-1" and got == fields
    ours = ct_record.mac0(fields, "gw-1", key)
    assert ours == theirs
    assert cose.verify_mac0(ours, key).payload == payload
    with pytest.raises(ct_record.MacError):
        ct_record.verify_mac0(cose.mac0(payload, "gw-1", bytes(32)), key)


def test_mac0_verifies_with_pycose() -> None:
    from pycose.keys.symmetric import SymmetricKey
    from pycose.messages import Mac0Message

    key = bytes(range(32))
    msg = Mac0Message.decode(ct_record.mac0({1: 3, 2: 5, 3: bytes(16)}, "gw-1", key))
    msg.key = SymmetricKey(k=key)
    assert msg.verify_tag()


readings = st.fixed_dictionaries(
    {1: st.just(1), 2: st.integers(0, 2**32), 3: st.integers(0, 2**32),
     4: st.integers(-1, 2**32), 5: st.integers(0, 4), 6: st.binary(min_size=15, max_size=17)},
    optional={10: st.integers(-10001, 15001), 11: st.integers(-1, 10001),
              12: st.integers(0, 256), 13: st.integers(0, 16), 15: st.integers(-1, 20001),
              16: st.integers(0, 8), 17: st.integers(0, 5), 1000: st.text(max_size=70)},
)


@settings(max_examples=300, deadline=None)
@given(readings)
def test_firmware_accepts_exactly_what_the_protocol_accepts(fields: dict[int, Any]) -> None:
    try:
        p = ct_record.payload(fields)
    except ct_record.RecordError:
        ours = None
    else:
        ours = p
    try:
        theirs = precord.decode_payload(cbor2.dumps(fields, canonical=True))
    except (VerificationError, ValueError, OverflowError):
        theirs = None
    assert (ours is None) == (theirs is None), fields
    if ours is not None:
        assert precord.encode_payload(theirs) == ours


scans = st.fixed_dictionaries(
    {1: st.just(2), 2: st.just(1), 3: st.just(5), 4: st.just(1790000000), 5: st.just(3),
     6: st.just(bytes(16)), 20: st.binary(min_size=6, max_size=8), 21: st.integers(0, 7),
     22: st.just("urn:epc:id:sgln:0614141.00777.0")},
    optional={24: st.just("/01/09506000134352/10/L42/21/7"), 26: st.just("PO-4711"),
              27: st.binary(min_size=15, max_size=17), 15: st.integers(-1, 20001)},
)


@settings(max_examples=300, deadline=None)
@given(scans)
def test_firmware_accepts_exactly_the_scans_the_protocol_accepts(fields: dict[int, Any]) -> None:
    """Scan key 27 (link): 16 bytes, never on a commission; same verdicts."""
    try:
        ours = ct_record.payload(fields)
    except ct_record.RecordError:
        ours = None
    try:
        theirs = precord.decode_payload(cbor2.dumps(fields, canonical=True))
    except (VerificationError, ValueError, OverflowError):
        theirs = None
    assert (ours is None) == (theirs is None), fields
    if ours is not None:
        assert precord.encode_payload(theirs) == ours
        assert theirs.link == fields.get(27)


def test_ack_and_decoder_agree_with_cbor2() -> None:
    for m in ({1: 0, 2: 0, 3: b""}, {1: 2**32 - 1, 2: 2**32 - 1, 3: bytes(16)},
              {1: 24, 10: -1, 12: -25, 13: -256, 14: 65536}):
        b = cbor2.dumps(m, canonical=True)
        assert ct_cbor.decode_map(b) == m
        buf = bytearray(64)
        assert bytes(buf[: ct_cbor.encode_map(m, buf)]) == b


# docs/protocol.md §1: every tstr of a record is free of C0, DEL and C1 code points
texts = st.text(st.characters(codec="utf-8"), min_size=0, max_size=66) | st.sampled_from(
    ["\x00", "\x1f", " ", "~", "\x7f", "\x80", "\x9f", "\xa0", "\u0105", "a\nb"])
text_scans = st.fixed_dictionaries(
    {1: st.just(2), 2: st.just(1), 3: st.just(5), 4: st.just(1790000000), 5: st.just(3),
     6: st.just(bytes(16)), 20: st.just(bytes(7)), 21: st.integers(1, 2), 22: texts},
    optional={24: texts, 26: texts, 1000: texts},
)


@settings(max_examples=400, deadline=None)
@given(text_scans)
def test_firmware_accepts_exactly_the_texts_the_protocol_accepts(fields: dict[int, Any]) -> None:
    """place, item, ref and extension text: length bounds and no control character."""
    try:
        ours = ct_record.payload(fields)
    except ct_record.RecordError:
        ours = None
    try:
        theirs = precord.decode_payload(cbor2.dumps(fields, canonical=True))
    except (VerificationError, ValueError, OverflowError):
        theirs = None
    assert (ours is None) == (theirs is None), fields
    if ours is not None:
        assert precord.encode_payload(theirs) == ours


declarations = st.fixed_dictionaries(
    {1: st.just(3), 2: st.just(1), 3: st.integers(0, 40), 4: st.just(1790000000),
     5: st.just(3), 6: st.just(bytes(16)), 30: st.sampled_from([1, 2, 10, 11, 12])},
    optional={37: st.integers(-2, 42), 38: st.integers(0, 42) | st.just(2**32 - 1),
              32: texts},
)


@settings(max_examples=400, deadline=None)
@given(declarations)
def test_firmware_accepts_exactly_the_declarations_the_protocol_accepts(
    fields: dict[int, Any],
) -> None:
    """§2.4: lost (38) only with event 11, detail >= 1, lost + detail - 1 < seq."""
    try:
        ours = ct_record.payload(fields)
    except ct_record.RecordError:
        ours = None
    try:
        theirs = precord.decode_payload(cbor2.dumps(fields, canonical=True))
    except (VerificationError, ValueError, OverflowError):
        theirs = None
    assert (ours is None) == (theirs is None), fields
    if ours is not None:
        assert precord.encode_payload(theirs) == ours
