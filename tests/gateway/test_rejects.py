"""Every rejection reason, each with a real crafted record sent through Mosquitto.

One broker and one gateway serve the module. Each test publishes its crafted
message (as a device the broker's ACL lets publish on that topic), waits for
it in quarantine with the expected reason and its exact bytes, then checks
that a good record sent right after it is still accepted: nothing stalls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gateway.evidence.registry import RegistrySigner
from gateway.evidence.store import open_store
from gateway.service import Gateway
from protocol import cbor
from protocol.cose import sig_structure, sign1
from protocol.keys import generate_p256, load_p256_private_key
from protocol.record import Registration, chain_hash, make_record
from protocol.rfc6979 import N
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.env import (
    Broker,
    GatewayDir,
    cleanup_gateway,
    create_gateway_dir,
    mosquitto_missing,
    start_test_broker,
)


@dataclass
class Env:
    broker: Broker
    gw: GatewayDir
    gateway: Gateway
    a: SimDevice  # registered, active
    b: SimDevice  # registered, active
    stranger: SimDevice  # broker account, never registered
    rev: SimDevice  # registered, revoked during the tests


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if mosquitto_missing():
        pytest.fail("mosquitto is not installed: run `make system`")
    tmp = tmp_path_factory.mktemp("rejects")
    a, b, stranger, rev = (SimDevice(n) for n in ("tl-ra", "tl-rb", "tl-stranger", "tl-rev"))
    broker = start_test_broker(tmp / "broker", [a.id, b.id, stranger.id, rev.id])
    gw = create_gateway_dir(tmp / "gw", broker)
    gw.register(a, b, rev)
    stranger.ack_key = bytes(32)
    gateway = Gateway(gw.cfg)
    gateway.start()
    assert gateway.mqtt.subscribed.wait(15)
    gw.connect(a, b, stranger, rev)
    try:
        yield Env(broker, gw, gateway, a, b, stranger, rev)
    finally:
        stranger.disconnect()
        gateway.stop()
        cleanup_gateway(gw)
        broker.process.stop()


def quarantined(env: Env, raw: bytes, reason: str, timeout: float = 15.0) -> None:
    """Wait until ``raw`` is in quarantine; assert the reason; a good record still passes."""
    store = env.gateway.store

    def found() -> bool:
        return any(r.raw == raw for r in store.rejects(limit=1000))

    wait_for(found, timeout, f"{reason} in quarantine")
    rows = [r for r in store.rejects(limit=1000) if r.raw == raw]
    assert [r.reason for r in rows] == [reason], rows[0].detail
    good = env.b.reading()
    env.b.publish(good)
    wait_for(
        lambda: store.record_by_seq(env.b.id, env.b.seq - 1) is not None, timeout, "next record"
    )


def craft(
    dev: SimDevice, *, payload: dict[int, object] | None = None, key=None, **fields: object
) -> bytes:
    """A record of ``dev`` signed by ``key`` (default its own) with arbitrary payload map."""
    m: dict[int, object] = {
        1: 1,
        2: dev.boot,
        3: dev.seq,
        4: int(time.time()),
        5: 2,
        6: dev.prev,
        10: 400,
    }
    names = {"kind": 1, "boot": 2, "seq": 3, "time": 4, "tq": 5, "prev": 6, "temp": 10}
    for k, v in fields.items():
        m[names[k]] = v
    if payload is not None:
        m = payload
    return sign1(cbor.encode(m), dev.id, key or dev.key)


def test_forged_signature(env: Env) -> None:
    raw = craft(env.a, key=generate_p256())
    env.a.publish(raw)
    quarantined(env, raw, "bad_signature")


def test_high_s_signature_is_forged_too(env: Env) -> None:
    raw = craft(env.a)
    s = int.from_bytes(raw[-32:], "big")
    high = raw[:-32] + (N - s).to_bytes(32, "big")  # the other valid ECDSA encoding
    env.a.publish(high)
    quarantined(env, high, "bad_signature")


def test_unknown_device(env: Env) -> None:
    raw = env.stranger.reading(keep=False)
    env.stranger.publish(raw)
    quarantined(env, raw, "unknown_device")


def test_wrong_topic(env: Env) -> None:
    raw = env.b.reading(keep=False)  # a genuine record of b ...
    env.b.seq -= 1  # (b's chain does not move: the record is not b's to keep)
    env.a.publish(raw)  # ... replayed by a on a's own topic
    quarantined(env, raw, "wrong_topic")


def test_oversized(env: Env) -> None:
    # A properly signed record whose payload carries 1000 bytes of extension data.
    payload = cbor.encode(
        {
            1: 1,
            2: 1,
            3: env.a.seq,
            4: int(time.time()),
            5: 2,
            6: env.a.prev,
            10: 400,
            **{1000 + i: bytes(60) for i in range(16)},
        }
    )
    protected = cbor.encode({1: -7, 4: env.a.id.encode()})
    r, s_ = decode_dss_signature(
        env.a.key.sign(sig_structure(protected, payload), ec.ECDSA(hashes.SHA256()))
    )
    raw = (
        b"\xd2\x84"
        + cbor.head(2, len(protected))
        + protected
        + b"\xa0"
        + cbor.head(2, len(payload))
        + payload
        + b"\x58\x40"
        + r.to_bytes(32, "big")
        + min(s_, N - s_).to_bytes(32, "big")
    )
    assert len(raw) > 1024
    env.a.publish(raw)
    quarantined(env, raw, "oversized")


def test_malformed_cbor_payload(env: Env) -> None:
    good = cbor.encode(
        {1: 1, 2: 1, 3: env.a.seq, 4: int(time.time()), 5: 2, 6: env.a.prev, 10: 400}
    )
    # key 10 -> 400 encoded as a 4-byte integer: well-formed CBOR, not deterministic.
    bad = good.replace(b"\x0a\x19\x01\x90", b"\x0a\x1a\x00\x00\x01\x90")
    assert bad != good
    raw = sign1(bad, env.a.id, env.a.key)
    env.a.publish(raw)
    quarantined(env, raw, "malformed_cbor")


def test_malformed_cbor_envelope(env: Env) -> None:
    raw = env.a.reading(keep=False)[:-10]  # truncated inside the signature
    env.a.seq -= 1
    env.a.publish(raw)
    quarantined(env, raw, "malformed_cbor")


def test_wrong_algorithm(env: Env) -> None:
    protected = cbor.encode({1: -35, 4: env.a.id.encode()})  # ES384
    payload = cbor.encode(
        {1: 1, 2: 1, 3: env.a.seq, 4: int(time.time()), 5: 2, 6: env.a.prev, 10: 1}
    )
    raw = (
        b"\xd2\x84"
        + cbor.head(2, len(protected))
        + protected
        + b"\xa0"
        + cbor.head(2, len(payload))
        + payload
        + b"\x58\x40"
        + bytes(64)
    )
    env.a.publish(raw)
    quarantined(env, raw, "wrong_algorithm")


def test_not_the_cose_profile(env: Env) -> None:
    raw = b"\xa1\x01\x02" + bytes(100)  # a map, not a tagged COSE_Sign1
    env.a.publish(raw)
    quarantined(env, raw, "bad_cose")


def test_payload_out_of_range(env: Env) -> None:
    raw = craft(env.a, temp=20000)  # above +150.00 °C
    env.a.publish(raw)
    quarantined(env, raw, "bad_payload")


def test_time_in_the_future_for_a_synced_clock(env: Env) -> None:
    raw = craft(env.a, time=int(time.time()) + 7200)
    env.a.publish(raw)
    quarantined(env, raw, "bad_time")


def test_conflicting_record_raises_an_alarm(env: Env) -> None:
    first = env.a.reading()
    env.a.publish(first)
    seq = env.a.seq - 1
    store = env.gateway.store
    wait_for(lambda: store.record_by_seq(env.a.id, seq) is not None, 15, "first record")
    other = craft(env.a, seq=seq, prev=_prev_of(first), temp=999)
    env.a.publish(other)
    quarantined(env, other, "conflict")
    assert any("conflict" in a for a in env.gateway.ingestor.alarms)
    assert store.record_by_seq(env.a.id, seq).raw == first  # the stored record stays
    events = store.chain_events(env.a.id)
    assert any(e.kind == "conflict" and e.seq_from == seq for e in events)


def test_replayed_sequence_number_after_a_reboot(env: Env) -> None:
    first = env.a.reading()
    env.a.publish(first)
    seq = env.a.seq - 1
    store = env.gateway.store
    wait_for(lambda: store.record_by_seq(env.a.id, seq) is not None, 15, "first record")
    # The device "rebooted" (boot + 1) but restarted its sequence numbers.
    replay = craft(env.a, seq=seq, boot=env.a.boot + 1, prev=_prev_of(first), temp=123)
    env.a.publish(replay)
    quarantined(env, replay, "replayed_seq")


def test_identical_resend_is_a_duplicate_and_re_acked(env: Env) -> None:
    raw = env.a.reading()
    env.a.publish(raw)
    seq = env.a.seq - 1
    store = env.gateway.store
    wait_for(lambda: env.a.acked >= seq, 15, "ack")
    dups = env.gateway.ingestor.totals["duplicates"]
    acks = env.a.acks_seen
    env.a.publish(raw)
    env.a.publish(raw)
    wait_for(lambda: env.gateway.ingestor.totals["duplicates"] == dups + 2, 15, "duplicates")
    wait_for(lambda: env.a.acks_seen > acks, 15, "a fresh ack")
    assert len(store.records_of(env.a.id, seq, seq)) == 1
    assert not any(r.raw == raw for r in store.rejects(limit=1000))


def test_revoked_device_keeps_earlier_records(env: Env) -> None:
    store = env.gateway.store
    before = env.rev.reading()
    env.rev.publish(before)
    wait_for(lambda: store.record_by_seq(env.rev.id, 0) is not None, 15, "record before revocation")
    signer_store = open_store(env.gw.cfg)
    try:
        RegistrySigner(
            signer_store,
            env.gw.cfg.registry.id,
            load_p256_private_key(env.gw.cfg.registry.key_file),
        ).revoke(env.rev.id)
    finally:
        signer_store.close()
    wait_for(lambda: not env.gateway.registry.keys[env.rev.id].active, 15, "revocation logged")
    after = env.rev.reading()
    env.rev.publish(after)
    quarantined(env, after, "revoked_device")
    row = store.devices()[env.rev.id]
    assert row.state == 2 and row.revoked_leaf is not None
    assert store.record_by_seq(env.rev.id, 0).leaf < row.revoked_leaf


def test_registration_with_another_key_is_refused(env: Env) -> None:
    cfg = env.gw.cfg
    s = open_store(cfg)
    try:
        key = load_p256_private_key(cfg.registry.key_file)
        seq, last = s.last_signed(cfg.registry.id)
        reg = Registration(
            boot=0,
            seq=seq + 1,
            time=int(time.time()),
            tq=2,
            prev=chain_hash(last),
            device=env.a.id,
            key=SimDevice("tl-x").public_sec1,
            role=1,
            org="evil",
            state=1,
        )
        raw = make_record(reg, cfg.registry.id, key)
        s.outbox_add(cfg.registry.id, seq + 1, raw)
    finally:
        s.close()
    quarantined(env, raw, "bad_registration")
    assert env.gateway.store.devices()[env.a.id].org == "acme"


def test_rejects_cli_lists_the_quarantine(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    from protocol.cli import main as coldtrace

    raw = craft(env.a, key=generate_p256())
    env.a.publish(raw)
    quarantined(env, raw, "bad_signature")
    capsys.readouterr()
    assert (
        coldtrace(
            [
                "gateway",
                "rejects",
                "-c",
                str(env.gw.config_path),
                "--json",
                "--raw",
                "--reason",
                "bad_signature",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["reason"] == "bad_signature" for r in rows)
    assert coldtrace(["gateway", "rejects", "-c", str(env.gw.config_path)]) == 0
    assert "bad_signature" in capsys.readouterr().out


def _prev_of(record: bytes) -> bytes:
    """The prev field of one of our readings (the stored predecessor's link)."""
    from protocol.cose import parse_sign1
    from protocol.record import decode_payload

    return decode_payload(parse_sign1(record).payload).prev
