"""Attacks on the records inside a bundle (docs/protocol.md §3, §4.1, §11 steps 6-11):
records replayed, reordered, forged under another COSE algorithm or attributed to
another signer's key. Each bundle is judged by both verifiers (tests/attacks/outcome.py).

The world is the verdict vectors' day (tests/protocol/vectors/make_verdict_vectors.py:
a pallet commissioned, trucked, received into a cold room), with pyca's random nonces
for speed; the attacker edits the log or the bundle and the verifiers must refuse it,
or judge it exactly as the honest bundle, with the code named in the register.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from protocol import cbor, cose
from protocol.bundle import BundleRecord
from protocol.cbor import Tag
from protocol.record import Binding, Reading, encode_payload, make_record, open_record
from protocol.rfc6979 import N
from tests.attacks.outcome import outcome, outcomes
from tests.attacks.registry import attack
from tests.protocol.scenario import ITEM, T0, Signer
from tests.protocol.vectors.make_verdict_vectors import PACK, T_END, TRUCK, Day, build_day

GROUP = "bundle and verdict"


def day() -> Day:
    return build_day(deterministic=False)


def truck_readings(d: Day) -> list[int]:
    """Indexes in the log of the truck logger's readings during the trip."""
    dev = d.loggers[TRUCK].id
    return [
        i
        for i, raw in enumerate(d.s.records)
        if open_record(raw).signer == dev and isinstance(open_record(raw).payload, Reading)
    ]


def honest(d: Day) -> dict[str, object]:
    out = outcome(d.s.bundle(item=ITEM), d.s.trust_doc())
    assert out.verified and out.verdict == "PASS", out.failures
    return out.document


# --- replayed and reordered ------------------------------------------------------------------


@attack(
    "bundle-entry-replayed",
    group=GROUP,
    attacker="bundle holder",
    tries="lists a genuine record twice at one (log, index), e.g. a cold reading",
    refused_by="`duplicate_entry`: not verified",
    recorded="the report's failures (check `record.entry`)",
)
def test_a_record_listed_twice_is_duplicate_entry():
    d = day()
    b = d.s.bundle(item=ITEM)
    b.records.append(b.records[len(b.records) // 2])
    out = outcome(b, d.s.trust_doc(), version=2)
    assert out.failures == {"duplicate_entry"} and out.verdict is None
    assert out.checks["duplicate_entry"] == {"record.entry"}


@attack(
    "bundle-record-moved",
    group=GROUP,
    attacker="bundle holder",
    tries="replays a genuine record at another index of the log, or swaps two records' "
    "places (reorders the log)",
    refused_by="`proof_mismatch`: not verified",
    recorded="the report's failures (check `record.inclusion`)",
)
def test_a_record_replayed_or_reordered_in_the_log_is_proof_mismatch():
    d = day()
    i, j = truck_readings(d)[10:12]
    moved = d.s.bundle(item=ITEM)
    at = {r.index: n for n, r in enumerate(moved.records)}
    # record i replayed in the place of record j
    moved.records[at[j]] = BundleRecord(moved.records[at[j]].log, j, d.s.records[i])
    swapped = d.s.bundle(item=ITEM)
    swapped.records[at[i]] = BundleRecord(swapped.records[at[i]].log, i, d.s.records[j])
    swapped.records[at[j]] = BundleRecord(swapped.records[at[j]].log, j, d.s.records[i])
    for out in outcomes([(moved, d.s.trust_doc()), (swapped, d.s.trust_doc())]):
        assert out.failures == {"proof_mismatch"} and out.verdict is None
        assert out.checks["proof_mismatch"] == {"record.inclusion"}


@attack(
    "bundle-records-shuffled",
    group=GROUP,
    attacker="bundle holder",
    tries="reorders the bundle's records, or adds a second copy the log holds (a resent "
    "record logged twice), to change the verdict",
    refused_by="order and copies do not count: the verdict document is the honest one",
    recorded="the verdict document (§13.1), equal to the honest bundle's",
)
def test_reordered_and_logged_twice_records_do_not_change_the_verdict():
    d = day()
    want = honest(d)
    shuffled = d.s.bundle(item=ITEM)
    random.Random(12).shuffle(shuffled.records)
    # the gateway logged a resent reading a second time: the log holds it twice
    twice = list(d.s.records)
    twice.append(d.s.records[truck_readings(d)[5]])
    doubled = d.s.bundle(item=ITEM, records=twice)
    for out in outcomes([(shuffled, d.s.trust_doc()), (doubled, d.s.trust_doc())]):
        assert out.verified and out.document == want


@attack(
    "device-seq-fork",
    group=GROUP,
    attacker="device (or its stolen key)",
    tries="signs a second, colder record under a seq it already used (replay with new "
    "content), both logged",
    refused_by="`broken_chain` (a fork): not verified",
    recorded="the report's failures (check `chain.link`)",
)
def test_two_records_under_one_seq_are_broken_chain():
    d = day()
    i = truck_readings(d)[12]
    rec = open_record(d.s.records[i])
    p = rec.payload
    assert isinstance(p, Reading)
    dev = d.loggers[TRUCK]
    colder = Reading(boot=p.boot, seq=p.seq, time=p.time, tq=p.tq, prev=p.prev, temp=p.temp - 100)
    d.s.add(make_record(colder, dev.id, dev.key))
    out = outcome(d.s.bundle(item=ITEM), d.s.trust_doc())
    assert out.failures == {"broken_chain"} and out.verdict is None
    assert out.checks["broken_chain"] == {"chain.link"}


# --- algorithm confusion -----------------------------------------------------------------------


def _protected(alg: int | None, kid: str) -> bytes:
    header: dict[int, object] = {4: kid.encode()}
    if alg is not None:
        header[1] = alg
    return cbor.encode(dict(sorted(header.items())))


def _es384(protected: bytes, payload: bytes) -> bytes:
    key = ec.derive_private_key(384384, ec.SECP384R1())
    der = key.sign(cose.sig_structure(protected, payload), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    return r.to_bytes(48, "big") + s.to_bytes(48, "big")


def _eddsa(protected: bytes, payload: bytes) -> bytes:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"attacker").digest())
    return key.sign(cose.sig_structure(protected, payload))


def _es256(protected: bytes, payload: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    der = key.sign(cose.sig_structure(protected, payload), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    s = min(s, N - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


ACK_KEY = hashlib.sha256(b"the device's ack key, which its gateway holds (D5)").digest()


def _confused(how: str, genuine: bytes, d: Day) -> bytes:
    """The genuine record's payload, 3 °C colder, in an envelope of another algorithm."""
    rec = open_record(genuine)
    kid = rec.signer
    p = rec.payload
    assert isinstance(p, Reading) and p.temp is not None
    payload = encode_payload(Reading(**{**_fields(p), "temp": p.temp - 300}))
    dev = d.loggers[TRUCK]
    if how == "ES384 (-35)":
        prot = _protected(-35, kid)
        return cbor.encode(Tag(18, [prot, {}, payload, _es384(prot, payload)]))
    if how == "EdDSA (-8)":
        prot = _protected(-8, kid)
        return cbor.encode(Tag(18, [prot, {}, payload, _eddsa(prot, payload)]))
    if how == "HMAC 256/256 (5), COSE_Mac0":
        return cose.mac0(payload, kid, ACK_KEY)
    if how == "HMAC 256/256 (5) in a COSE_Sign1":
        prot = _protected(5, kid)
        tag = cose.mac0(payload, kid, ACK_KEY)[-32:]
        return cbor.encode(Tag(18, [prot, {}, payload, tag]))
    if how == "alg only in the unprotected header":
        prot = _protected(None, kid)
        return cbor.encode(Tag(18, [prot, {1: -7}, payload, _es256(prot, payload, dev.key)]))
    if how == "ES256 protected, EdDSA unprotected":
        prot = _protected(-7, kid)
        return cbor.encode(Tag(18, [prot, {1: -8}, payload, _es256(prot, payload, dev.key)]))
    raise AssertionError(how)


def _fields(p: object) -> dict[str, object]:
    return {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}


#: each envelope, and the words of the malformed_record failure that refuses it
CONFUSIONS = {
    "ES384 (-35)": "wrong algorithm",
    "EdDSA (-8)": "wrong algorithm",
    "HMAC 256/256 (5), COSE_Mac0": "not a tagged COSE_Sign1",
    "HMAC 256/256 (5) in a COSE_Sign1": "wrong algorithm",
    "alg only in the unprotected header": "protected header has no alg",
    "ES256 protected, EdDSA unprotected": "unprotected header must be empty",
}


@attack(
    "cose-algorithm-confusion",
    group=GROUP,
    attacker="gateway operator or bundle holder without the device's P-256 key",
    tries="a colder reading under the device's kid, in a COSE envelope of another "
    "algorithm: ES384 (-35), EdDSA (-8), an HMAC (5) under the ack key the gateway holds "
    "(COSE_Mac0, or a Sign1 with a MAC), alg in the unprotected header; and logs it",
    refused_by='`malformed_record` ("wrong algorithm", the header rules of §3), and so '
    "`proof_mismatch` for the proof that lists it: not verified",
    recorded="the report's failures (checks `record.format`, `record.inclusion`)",
)
@pytest.mark.parametrize("how", sorted(CONFUSIONS))
def test_a_record_under_another_algorithm_is_malformed_record(how):
    d = day()
    k = truck_readings(d)[15]
    log = list(d.s.records)
    log[k] = _confused(how, log[k], d)
    out = outcome(d.s.bundle(item=ITEM, records=log), d.s.trust_doc())
    # the refused record is no record of the bundle, so the multiproof that lists it
    # fails too (§11 step 7): proof_mismatch follows, never replaces, malformed_record
    assert "malformed_record" in out.failures and out.verdict is None
    assert out.failures <= {"malformed_record", "proof_mismatch"}
    assert [m for m in out.messages["malformed_record"] if CONFUSIONS[how] in m]
    assert out.checks["malformed_record"] == {"record.format"}


# --- kid confusion -------------------------------------------------------------------------------


def _in_the_name_of(who: Signer, key: ec.EllipticCurvePrivateKey) -> Signer:
    """A signer that continues ``who``'s chain (kid, boot, seq, prev) with another key."""
    return dataclasses.replace(who, key=key, deterministic=False)


@attack(
    "kid-another-devices-key",
    group=GROUP,
    attacker="reader (a registered device with a key of its own)",
    tries="signs the truck logger's next reading, colder, under the logger's kid with the "
    "reader's key",
    refused_by="`bad_signature`: the key is the kid's registered key, never one that "
    "happens to verify",
    recorded="the report's failures (check `record.signature`)",
)
def test_a_record_under_another_devices_kid_is_bad_signature():
    d = day()
    forger = _in_the_name_of(d.loggers[TRUCK], d.readers[PACK].key)
    d.s.add(forger.sign(Reading, T0 + T_END + 900, temp=250))
    out = outcome(d.s.bundle(item=ITEM), d.s.trust_doc())
    assert out.failures == {"bad_signature"} and out.verdict is None
    assert out.checks["bad_signature"] == {"record.signature"}


@attack(
    "kid-registry-as-device",
    group=GROUP,
    attacker="registry (gateway operator) key holder, or a device",
    tries="signs a device record (a reading) with the registry key under the registry's "
    "kid, or a binding with a device's key under the device's kid",
    refused_by="`unknown_key`: a registry key signs only kinds 4-6, a device key never",
    recorded="the report's failures (checks `record.key`, `registry.key`)",
)
def test_registry_and_device_keys_do_not_stand_in_for_each_other():
    d = day()
    reg = d.s.registry
    reading = reg.sign(Reading, T0 + T_END + 900, temp=250)
    spare = d.s.logger("tl-spare")  # registered, no records yet: its chain starts here
    spare.boot = 0  # as a registry signs (a binding with boot 1 is malformed)
    binding = spare.sign(Binding, T0, cseq=0, cprev=bytes(16), target=TRUCK, devices="tl-spare")
    cases = [
        (d.s.bundle(item=ITEM, records=[*d.s.records, reading]), d.s.trust_doc()),
        (d.s.bundle(item=ITEM, records=[*d.s.records, binding]), d.s.trust_doc()),
    ]
    as_device, as_registry = outcomes(cases)
    for out in (as_device, as_registry):
        assert out.failures == {"unknown_key"} and out.verdict is None
    assert as_device.checks["unknown_key"] == {"record.key"}
    assert as_registry.checks["unknown_key"] == {"registry.key"}


@attack(
    "kid-reader-fills-logger-gap",
    group=GROUP,
    attacker="reader (its own key, its own kid)",
    tries="signs temperature readings for the hour a truck logger's records are cut out, "
    "to stand in for them",
    refused_by="`records_missing`: only the devices bound to the place count (INCOMPLETE)",
    recorded="the verdict's reasons",
)
def test_readings_signed_by_a_reader_do_not_fill_a_loggers_gap():
    d = day()
    gap = truck_readings(d)[12:18]
    times = [open_record(d.s.records[i]).payload.time for i in gap]
    reader = d.readers[PACK]
    for t in times:
        d.s.reading(reader, t, 250)  # the reader's own, genuine, signed readings
    cut = {d.s.records[i] for i in gap}
    out = outcome(d.s.bundle(lambda raw: raw not in cut, item=ITEM), d.s.trust_doc())
    assert out.verified and out.verdict == "INCOMPLETE"
    (missing,) = out.reason("records_missing")
    assert missing["device"] == d.loggers[TRUCK].id
    assert missing["from"] <= times[0] and missing["to"] >= times[-1]
