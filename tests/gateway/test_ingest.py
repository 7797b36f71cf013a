"""Ingest without MQTT: the stateful checks, the chain bookkeeping, acks, robustness."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.evidence.checks import REASONS, IngestSettings, check_message, make_ack
from gateway.transport.mqtt import Inbound
from protocol import cbor
from protocol.cose import sign1
from protocol.record import chain_hash
from tests.gateway.core import Core, rec
from tests.gateway.devices import SimDevice, open_ack


@pytest.fixture(params=["sqlite", "postgresql"])
def core(tmp_path: Path, request: pytest.FixtureRequest):
    """The parts on SQLite, or on a real PostgreSQL (same behaviour expected)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    c = Core(tmp_path, store_url=url)
    yield c
    c.close()


def test_in_order_records_are_stored_logged_and_acked(core: Core) -> None:
    dev = SimDevice("tl-1")
    core.register(dev)
    raws = [dev.reading(temp=k) for k in range(5)]
    out = core.send(*(rec(dev, r) for r in raws))
    assert len(out.accepted) == 5 and out.rejected == 0 and out.ack_due == {dev.id}
    assert [m for mids in out.mids.values() for m in mids] == list(
        range(core.mid - 4, core.mid + 1)
    )
    assert core.log.size == core.store.leaf_count() == 6
    st_ = core.ingestor.states[dev.id]
    assert (st_.contig, st_.contig_hash) == (4, chain_hash(raws[-1]))
    seq, _t, head = open_ack(core.ingestor.ack_for(dev.id, int(time.time())), dev.ack_key)
    assert (seq, head) == (4, chain_hash(raws[-1]))


def test_a_gap_is_recorded_and_the_ack_waits_for_it(core: Core) -> None:
    dev = SimDevice("tl-gap")
    core.register(dev)
    raws = [dev.reading() for _ in range(6)]
    core.send(*(rec(dev, r) for r in raws[:2] + raws[4:]))
    assert core.ingestor.states[dev.id].contig == 1
    assert [(e.kind, e.seq_from, e.seq_to) for e in core.store.chain_events(dev.id)] == [
        ("gap", 2, 3)
    ]
    core.send(rec(dev, raws[3]))  # out of order inside the gap
    assert core.ingestor.states[dev.id].contig == 1
    core.send(rec(dev, raws[2]))
    st_ = core.ingestor.states[dev.id]
    assert (st_.contig, st_.contig_hash, st_.above) == (5, chain_hash(raws[5]), set())
    kinds = [(e.kind, e.seq_from) for e in core.store.chain_events(dev.id)]
    assert ("gap_filled", 2) in kinds and ("gap_filled", 3) in kinds
    assert not any(k == "break" for k, _ in kinds)


def test_state_survives_a_restart(core: Core) -> None:
    dev = SimDevice("tl-restart")
    core.register(dev)
    raws = [dev.reading() for _ in range(6)]
    core.send(*(rec(dev, r) for r in raws[:2] + raws[3:]))
    core.reopen()
    st_ = core.ingestor.states[dev.id]
    assert (st_.contig, st_.max_seq, st_.above) == (1, 5, {3, 4, 5})
    core.send(rec(dev, raws[2]))
    assert core.ingestor.states[dev.id].contig == 5
    out = core.send(rec(dev, raws[4]))
    assert out.duplicates == 1 and not out.accepted


def test_a_prev_that_does_not_link_is_a_break_not_a_refusal(core: Core) -> None:
    dev = SimDevice("tl-break")
    core.register(dev)
    core.send(rec(dev, dev.reading()))
    dev.prev = bytes(range(16))  # a device bug: a wrong chain link
    out = core.send(rec(dev, dev.reading()))
    assert len(out.accepted) == 1
    assert [e.kind for e in core.store.chain_events(dev.id)] == ["break"]
    assert any("chain break" in a for a in core.ingestor.alarms)


def test_duplicates_within_one_batch(core: Core) -> None:
    dev = SimDevice("tl-dupb")
    core.register(dev)
    r0, r1 = dev.reading(), dev.reading()
    out = core.send(rec(dev, r0), rec(dev, r1), rec(dev, r0), rec(dev, r1))
    assert len(out.accepted) == 2 and out.duplicates == 2
    assert len(out.mids[1]) == 4  # every copy is PUBACKed


def test_conflict_and_replay_within_one_batch(core: Core) -> None:
    dev = SimDevice("tl-conf")
    core.register(dev)
    r0 = dev.reading(temp=1)
    dev.seq, dev.prev = 0, bytes(16)
    other = dev.reading(temp=2)
    dev.seq, dev.prev, dev.boot = 0, bytes(16), 2
    replay = dev.reading(temp=3)
    out = core.send(rec(dev, r0), rec(dev, other), rec(dev, replay))
    assert len(out.accepted) == 1
    assert sorted(r.reason for r in core.store.rejects()) == ["conflict", "replayed_seq"]


def test_records_of_a_revoked_device_in_the_same_batch(core: Core) -> None:
    dev = SimDevice("tl-rv")
    core.register(dev)
    before = dev.reading()
    core.send(rec(dev, before))
    revocation = core.registration(dev, state=2)
    after = dev.reading()
    core.send(revocation, rec(dev, after))
    reasons = [r.reason for r in core.store.rejects()]
    assert reasons == ["revoked_device"]
    row = core.store.devices()[dev.id]
    assert row.state == 2 and core.store.record_by_seq(dev.id, 0).leaf < row.revoked_leaf


def test_registration_updates_calibration_and_keeps_history(core: Core) -> None:
    dev = SimDevice("tl-cal")
    core.register(dev)
    core.send(core.registration(dev, cal=7))
    assert core.store.devices()[dev.id].cal == 7
    assert [c for _, _, _, c in core.store.placements(dev.id)] == [None, 7]


def test_a_registration_with_another_key_is_refused(core: Core) -> None:
    dev = SimDevice("tl-key")
    core.register(dev)
    core.send(core.registration(dev, key=SimDevice("tl-other").public_sec1))
    assert [r.reason for r in core.store.rejects()] == ["bad_registration"]


def test_a_record_dated_ahead_is_acked_again_and_its_declaration_settles(core: Core) -> None:
    """§5.2 "Records dated ahead": a record refused as bad_time makes its
    device's ack due again (its time lets the device set its clock); the
    device's declaration of it settles the ack, which then moves past it."""
    dev = SimDevice("tl-ahead")
    core.register(dev)
    core.send(*(rec(dev, dev.reading(temp=k)) for k in range(2)))
    now = int(time.time())
    out = core.send(rec(dev, dev.reading(time_=now + 3600)))  # seq 2, a fast clock
    assert out.rejected == 1 and out.ack_due == {dev.id}
    assert [r.reason for r in core.store.rejects()] == ["bad_time"]
    seq, t, _ = open_ack(core.ingestor.ack_for(dev.id, now), dev.ack_key)
    assert seq == 1 and t == now  # the same ack, the gateway's time now
    dev.status(6, detail=now + 3600)  # seq 3: the clock set back
    out = core.send(rec(dev, dev.unacked[3]), rec(dev, dev.declare_lost(2)))
    assert out.rejected == 0
    seq, _, head = open_ack(core.ingestor.ack_for(dev.id, now), dev.ack_key)
    assert seq == 4 and head == chain_hash(dev.unacked[4])[:16]
    assert [r.reason for r in core.store.rejects()] == ["bad_time"]  # kept, with its reason


def test_ack_payload_is_the_protocol_ack() -> None:
    key = bytes(range(32))
    msg = make_ack("gw-1", key, 41, bytes(16), 1790000000)
    assert open_ack(msg, key) == (41, 1790000000, bytes(16))


def test_time_sanity_depends_on_clock_quality(core: Core) -> None:
    dev = SimDevice("tl-time")
    core.register(dev)
    now = int(time.time())
    s = IngestSettings(future_skew=300, holdover_skew=86400)

    def reason(tq: int, t: int) -> str | None:
        dev.tq = tq
        raw = dev.reading(time_=t, keep=False)
        r = check_message(Inbound(f"ct/v1/{dev.id}/rec", raw), core.registry, now, s)
        return getattr(r, "reason", None)

    assert reason(0, 5) is None  # unset clock: seconds since boot, anything goes
    assert reason(2, now + 200) is None
    assert reason(2, now + 400) == "bad_time"
    assert reason(1, now + 3600) is None  # holdover drifts
    assert reason(1, now + 2 * 86400) == "bad_time"
    assert reason(3, 1000) == "bad_time"  # a set clock in 1970


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(max_size=1100), topic=st.sampled_from(["ct/v1/tl-fz/rec", "ct/v1/x/rec", "a/b"])
)
def test_nothing_malformed_escapes_the_checks(core: Core, data: bytes, topic: str) -> None:
    if "tl-fz" not in core.registry.keys:
        core.register(SimDevice("tl-fz"))
    r = check_message(Inbound(topic, data), core.registry, int(time.time()), IngestSettings())
    assert r.reason in REASONS and r.reason != "internal_error"


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(flip=st.integers(min_value=0, max_value=10**6), value=st.integers(0, 255))
def test_mutated_records_are_refused_with_a_reason(core: Core, flip: int, value: int) -> None:
    if "tl-mut" not in core.registry.keys:
        core.register(MUTANT)
    key = MUTANT.key
    raw = bytearray(
        sign1(
            cbor.encode({1: 1, 2: 1, 3: 0, 4: 1790000000, 5: 0, 6: bytes(16), 10: 5}), "tl-mut", key
        )
    )
    original = bytes(raw)
    raw[flip % len(raw)] = value
    r = check_message(
        Inbound("ct/v1/tl-mut/rec", bytes(raw)), core.registry, 1790000000, IngestSettings()
    )
    if bytes(raw) == original:
        assert not hasattr(r, "reason") or r.reason == "bad_signature"
    else:
        assert r.reason in REASONS and r.reason != "internal_error"


MUTANT = SimDevice("tl-mut")


def test_process_verifier_follows_the_registry_and_matches_threads(core: Core) -> None:
    from gateway.evidence.verifiers import ProcessVerifier, ThreadVerifier

    dev = SimDevice("tl-proc")
    core.register(dev)
    raws = [dev.reading(temp=k) for k in range(20)] + [b"junk", dev.reading(time_=2**31)]
    msgs = [Inbound(f"ct/v1/{dev.id}/rec", r) for r in raws]
    procs = ProcessVerifier(2, IngestSettings())
    threads = ThreadVerifier(2, IngestSettings())
    try:
        now = int(time.time())
        a = [r for h in procs.submit(msgs, core.registry, now) for r in h()]
        b = [r for h in threads.submit(msgs, core.registry, now) for r in h()]
        assert [type(r).__name__ for r in a] == [type(r).__name__ for r in b]
        assert [getattr(r, "reason", None) for r in a][-2:] == ["bad_cose", "bad_time"]
        assert [r.payload for r in a[:20]] == [r.payload for r in b[:20]]
        # A device registered after the processes started is known to them too.
        late = SimDevice("tl-late")
        core.register(late)
        got = procs.submit([Inbound(f"ct/v1/{late.id}/rec", late.reading())], core.registry, now)
        assert type(got[0]()[0]).__name__ == "Accepted"
        # A dead worker is neither a hang nor an error: it is restarted, its chunk
        # checked again (tests/gateway/test_workers.py).
        os.kill(procs.pids[0], signal.SIGKILL)
        handles = procs.submit(msgs[:4], core.registry, now)
        assert [type(r).__name__ for r in handles[0]()] == ["Accepted"] * 4
        assert procs.restarts == 1
    finally:
        procs.close()
        threads.close()


def _signed(key: object, r: int, s: int) -> bytes:
    """A record of tl-sig whose signature field is r ‖ s (valid or not)."""
    body = cbor.encode({1: 1, 2: 1, 3: 0, 4: 1790000000, 5: 0, 6: bytes(16), 10: 5})
    raw = sign1(body, "tl-sig", key)  # type: ignore[arg-type]
    return raw[:-64] + r.to_bytes(32, "big") + s.to_bytes(32, "big")


def test_worker_signature_check_matches_verify_sign1() -> None:
    """gateway.verifiers slices Sig_structure and writes DER itself: same bytes, same verdicts."""
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    from gateway.evidence import verifiers as v
    from protocol.cose import parse_sign1, sig_structure, verify_sign1
    from protocol.errors import SignatureError
    from protocol.keys import generate_p256
    from protocol.rfc6979 import HALF_N, N

    key = generate_p256()
    pub = key.public_key()
    good = []
    while len(good) < 300:  # both DER layouts of r, now and then a leading zero
        raw = sign1(
            cbor.encode({1: 1, 2: 1, 3: len(good), 4: 1790000000, 5: 0, 6: bytes(16), 10: 5}),
            "tl-sig",
            key,
        )
        good.append(raw)
    r, s = (int.from_bytes(good[0][-64:-32], "big"), int.from_bytes(good[0][-32:], "big"))
    cases = [
        *good,
        _signed(key, r, N - s),  # high s
        _signed(key, 0, s),
        _signed(key, r, 0),
        _signed(key, N, s),
        _signed(key, r, N + 5 if N + 5 < 2**256 else N),
        _signed(key, 5, 7),  # small r and s: leading zero bytes, does not verify
        _signed(key, r, s ^ 1),
        _signed(key, r, HALF_N + 1),
        _signed(generate_p256(), r, s),
    ]
    for raw in cases:
        m = parse_sign1(raw)
        pend = v._protected_end(m)
        assert raw[pend] == 0xA0
        tbs = b"".join((v._SIG1_PREFIX, raw[2:pend], v._EMPTY_BSTR, raw[pend + 1 : -66]))
        assert tbs == sig_structure(m.protected, m.payload)
        sig = raw[-64:]
        if sig[0] and sig[32] and sig[32] < 0x80:
            der = b"".join(
                (v._DER_R32 if sig[0] < 0x80 else v._DER_R33, sig[:32], v._DER_S32, sig[32:])
            )
            rr, ss = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            assert der == encode_dss_signature(rr, ss)
            assert decode_dss_signature(der) == (rr, ss)
    got = dict(
        v.verify_signatures(
            [pub] * len(cases), cases, [v._protected_end(parse_sign1(x)) for x in cases]
        )
    )
    for i, raw in enumerate(cases):
        try:
            verify_sign1(raw, pub)
            want = None
        except SignatureError as exc:
            want = str(exc)
        assert got.get(i) == want, i
    assert not any(i < len(good) for i in got)


def test_a_device_registered_while_the_gateway_runs_is_acked(core: Core) -> None:
    """registry add/import writes the ack key to the store of a running gateway; the
    ingestor reads the keys again when a device has none (at most once a second)."""
    dev = SimDevice("tl-late")
    dev.ack_key = bytes(range(32))
    core.send(core.registration(dev))
    core.store.set_ack_key(dev.id, dev.ack_key)  # as the registry command does, meanwhile
    raws = [dev.reading(temp=k) for k in range(3)]
    core.send(*(rec(dev, r) for r in raws))
    core.ingestor._ack_keys_read -= 2  # the last read was more than a second ago
    ack = core.ingestor.ack_for(dev.id, int(time.time()))
    assert ack is not None
    seq, _t, head = open_ack(ack, dev.ack_key)
    assert (seq, head) == (2, chain_hash(raws[-1]))
