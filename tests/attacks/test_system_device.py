"""Attacks by devices and by anyone holding a broker account, through the real
Mosquitto (the shipped configuration and ACL) and a real gateway.

One broker and one gateway serve the module (their state only grows: every
attack uses its own device or payloads, and each test asserts on what its own
attack left). The refusals are read where an operator reads them: the
quarantine (``coldtrace gateway rejects``), the chain events and alarms, the
persisted counters, and the broker's log. The broker tests in
tests/gateway/test_broker_acl.py and the ingest tests in test_ingest.py hold
the details; this module restates each attack end to end.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gateway.evidence.store import RejectRow
from gateway.service import Gateway
from gateway.transport.broker import BrokerProcess
from protocol.cose import sign1
from tests.attacks.registry import attack
from tests.gateway.conftest import make_broker, make_gateway  # noqa: F401 (fixtures)
from tests.gateway.devices import SimDevice, make_reading, open_ack, wait_for
from tests.gateway.env import (
    Broker,
    GatewayDir,
    cleanup_gateway,
    create_gateway_dir,
    mosquitto_missing,
    start_test_broker,
)
from tests.gateway.rawmqtt import MQTTError, RawClient
from tests.gateway.test_broker_tls import Pki, broker, pki, tls_client  # noqa: F401 (fixtures)
from tests.gateway.test_flood import accounted, check_stored_and_acked, with_quarantine

# honest devices, each attack's victim its own; "tl-m" is Mallory's registered logger
HONEST = ("tl-a", "tl-b", "tl-r", "tl-s", "tl-n", "tl-v")
QUIET = "tl-v"  # registered; like Mallory, not connected as a SimDevice (tests speak for it)
MALLORY = "tl-m"
STRANGER = "tl-x"  # a broker account with no registration


@dataclass
class Site:
    broker: Broker
    env: GatewayDir
    gw: Gateway
    devs: dict[str, SimDevice]

    def raw(self, user: str, password: str | None = None) -> RawClient:
        c = RawClient(
            self.broker.port,
            f"cid-{user}",
            username=user,
            password=password if password is not None else self.broker.password(user),
        )
        assert c.connect() == 0
        return c

    def refused(self, topic: str, payload: bytes, timeout: float = 15) -> RejectRow:
        """The quarantine row of ``payload`` received on ``topic`` (waits for it)."""
        found: list[RejectRow] = []

        def seen() -> bool:
            found[:] = [
                r
                for r in self.gw.store.rejects(limit=10_000)
                if r.topic == topic and payload.startswith(r.raw)
            ]
            return bool(found)

        wait_for(seen, timeout, f"a quarantine row for {topic}")
        return found[0]

    def serves(self, dev: SimDevice, n: int = 1) -> None:
        """``dev`` still gets records stored and acked (the gateway kept running)."""
        for _ in range(n):
            dev.publish(dev.reading())
        wait_for(lambda: not dev.unacked, 20, f"{dev.id} acked")
        assert self.gw.pipeline.error is None and self.gw.mqtt.connected.is_set()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if mosquitto_missing():
        pytest.fail("mosquitto is not installed: run `make system` (scripts/ensure-system.sh)")
    d = tmp_path_factory.mktemp("attack-site")
    mq = start_test_broker(d / "mq", [*HONEST, MALLORY, STRANGER])
    env = create_gateway_dir(d / "gw", mq)
    devs = {n: SimDevice(n) for n in (*HONEST, MALLORY)}
    env.register(*devs.values())
    gw = env.start_gateway()
    try:
        wait_for(lambda: gw.log.size == len(devs), 20, "registrations logged")
        env.connect(*(d for d in devs.values() if d.id not in (QUIET, MALLORY)))
        yield Site(mq, env, gw, devs)
    finally:
        gw.stop()
        cleanup_gateway(env)
        mq.process.stop()


def leaves_of(site: Site, dev: str) -> list[bytes]:
    return [r.raw for r in site.gw.store.records_of(dev, 0, 2**32)]


# --- impersonation ------------------------------------------------------------------------------


@attack(
    "device-kid-of-another",
    group="device and transport",
    attacker="a registered device (its own key and broker account)",
    tries="signs a record with its own key under another device's kid, on its own topic",
    refused_by="quarantine reason `wrong_topic` (signer is not the device of the topic)",
    recorded="quarantine row (topic, signer, reason, detail); `coldtrace gateway rejects`",
)
def test_a_record_under_another_devices_kid_is_wrong_topic(site: Site) -> None:
    m = site.devs[MALLORY]
    forged = make_reading(
        "tl-a", m.key, boot=1, seq=0, time_=int(time.time()), tq=2, prev=bytes(16), temp=450
    )
    before = leaves_of(site, "tl-a")
    with site.raw(MALLORY) as x:  # on ct/v1/tl-m/rec, the only rec topic it may write
        assert x.publish(f"ct/v1/{MALLORY}/rec", forged) == 1
    row = site.refused(f"ct/v1/{MALLORY}/rec", forged)
    assert (row.reason, row.signer) == ("wrong_topic", "tl-a")
    assert "signed by 'tl-a'" in row.detail
    assert leaves_of(site, "tl-a") == before


@attack(
    "device-key-of-another",
    group="device and transport",
    attacker="someone who stole a device's broker password but not its key",
    tries="publishes on the victim's topic a record with the victim's kid, signed with another key",
    refused_by="quarantine reason `bad_signature`",
    recorded="quarantine row with the signer and seq; nothing stored, no leaf",
)
def test_a_record_signed_with_another_devices_key_is_bad_signature(site: Site) -> None:
    victim, m = site.devs[QUIET], site.devs[MALLORY]
    forged = make_reading(
        victim.id, m.key, boot=1, seq=40, time_=int(time.time()), tq=2, prev=bytes(16), temp=-99
    )
    before = leaves_of(site, victim.id)
    with site.raw(victim.id) as stolen:  # the victim's account: the broker lets it through
        assert stolen.publish(f"ct/v1/{victim.id}/rec", forged) == 1
    row = site.refused(f"ct/v1/{victim.id}/rec", forged)
    assert (row.reason, row.signer, row.seq) == ("bad_signature", victim.id, 40)
    assert leaves_of(site, victim.id) == before


@attack(
    "device-topic-of-another",
    group="device and transport",
    attacker="a registered device (its own broker account)",
    tries="publishes a record, state, ack, command or firmware chunk on another device's topics",
    refused_by="broker ACL: PUBACK (MQTT 3.1.1 cannot refuse) and dropped; no subscriber gets it",
    recorded="not per message: Mosquitto logs ACL denials only at debug level (D48); the victim's "
    "chain and acks are untouched",
)
def test_publishing_on_another_devices_topics_reaches_nobody(site: Site) -> None:
    b, v = site.devs["tl-b"], site.devs[QUIET]
    site.serves(b)
    forged = make_reading(  # tl-b's genuine next record, in Mallory's hands
        b.id, b.key, boot=b.boot, seq=b.seq, time_=int(time.time()), tq=2, prev=b.prev, temp=1
    )
    before, presence = leaves_of(site, b.id), site.gw.store.presence()[b.id][0]
    with site.raw(v.id) as victim:  # tl-v listens where its gateway talks to it
        assert victim.subscribe(*(f"ct/v1/{v.id}/{k}" for k in ("ack", "cmd", "fw"))) == [1] * 3
        victim.receive(idle=0.3)
        with site.raw(MALLORY) as m:
            for topic, payload in (
                (f"ct/v1/{b.id}/rec", forged),
                (f"ct/v1/{b.id}/state", b"offline"),
                (f"ct/v1/{b.id}/fwreq", b"\xa4\x01\x02\x02\x00\x03\x00\x04\x10"),
                (f"ct/v1/{v.id}/ack", b"forged-ack"),
                (f"ct/v1/{v.id}/cmd", b"forged-cmd"),
                (f"ct/v1/{v.id}/fw", b"forged-chunk"),
            ):
                assert m.publish(topic, payload) == 1  # PUBACKed ...
            marker = b"marker-" + str(time.monotonic()).encode()
            assert m.publish(f"ct/v1/{MALLORY}/rec", marker) == 1
        # the gateway's own ack to tl-v comes after Mallory's forgeries
        assert victim.publish(f"ct/v1/{v.id}/rec", v.reading()) == 1
        got = victim.receive(limit=1, idle=5.0)
    # ... and dropped: tl-v got only its gateway's ack, which opens under its key
    assert [x.topic for x in got] == [f"ct/v1/{v.id}/ack"]
    assert v.ack_key is not None and open_ack(got[0].payload, v.ack_key)[0] == 0
    site.refused(f"ct/v1/{MALLORY}/rec", marker)  # the gateway read past the forgeries
    assert leaves_of(site, b.id) == before
    assert site.gw.store.presence()[b.id][0] == presence == "online"
    assert not [r for r in site.gw.store.rejects(limit=10_000) if "/tl-b/" in r.topic]
    assert "Denied PUBLISH" not in site.broker.process.log_text()  # D48: not logged


@attack(
    "device-reads-others-acks",
    group="device and transport",
    attacker="a registered device (its own broker account)",
    tries="subscribes to another device's ack, cmd and fw topics, to `ct/v1/+/ack`, `#`, records",
    refused_by="broker ACL: SUBACK may grant it, but nothing of another device is delivered",
    recorded="not per message (Mosquitto checks each delivery silently, D48)",
)
def test_wildcard_subscriptions_deliver_nothing_of_another_device(site: Site) -> None:
    b = site.devs["tl-b"]
    site.serves(b)  # a fresh retained ack for tl-b
    own = site.devs[MALLORY]
    with site.raw(MALLORY) as m:
        m.publish(f"ct/v1/{MALLORY}/rec", own.reading())  # so it has an ack of its own
        wait_for(lambda: len(leaves_of(site, MALLORY)) == own.seq, 10, "Mallory's record")
        m.subscribe(
            "ct/v1/tl-b/ack", "ct/v1/+/ack", "ct/v1/tl-b/#", "#", "ct/v1/+/rec", "ct/v1/+/cmd"
        )
        retained = m.receive(idle=1.0)
        site.serves(b, 2)  # live acks for tl-b while Mallory listens
        live = m.receive(idle=1.0)
    seen = [x.topic for x in retained + live]
    assert f"ct/v1/{MALLORY}/ack" in seen  # its own retained ack: the subscription works
    assert all(t.startswith(f"ct/v1/{MALLORY}/") for t in seen), seen


@attack(
    "broker-anonymous",
    group="device and transport",
    attacker="anyone on the network",
    tries="connects to the broker without credentials, or with a wrong password",
    refused_by="CONNACK return code 5 (not authorised, MQTT 3.1.1 §3.2.2.3)",
    recorded="broker log line `Client <id>|<unknown> disconnected, not authorised.`",
)
def test_anonymous_and_wrong_password_connections_are_refused(site: Site) -> None:
    port = site.broker.port

    def refusals() -> int:
        return site.broker.process.log_text().count("disconnected, not authorised.")

    before = refusals()
    for cid, kw in (("anon-atk", {}), ("badpw-atk", {"username": "tl-a", "password": "guess"})):
        c = RawClient(port, cid, **kw)  # type: ignore[arg-type]
        assert c.connect() == 5
        c.close()
    wait_for(lambda: refusals() == before + 2, 5, "the broker's log lines")
    # the anonymous client is named by its client id; a failed login as <unknown>
    assert "Client anon-atk disconnected, not authorised." in site.broker.process.log_text()


# --- replay and reordering at the gateway ------------------------------------------------------


@attack(
    "record-replay",
    group="device and transport",
    attacker="anyone on the network (or the device)",
    tries="publishes a genuine record a second time, and an old one after newer ones",
    refused_by="no second leaf: the copy is a `duplicate`, acked again; the ack never goes back",
    recorded="persisted counter `duplicates` (`coldtrace gateway status`); one leaf per record",
)
def test_a_replayed_record_is_stored_once(site: Site) -> None:
    r = site.devs["tl-r"]
    raws = [r.reading() for _ in range(5)]
    for raw in raws:
        r.publish(raw)
    wait_for(lambda: r.acked == 4, 20, "the five records acked")
    leaves, dups = site.gw.log.size, site.gw.store.counters().get("duplicates", 0)
    for raw in (raws[4], raws[0], raws[2]):  # the same again, then older ones after newer
        r.publish(raw)
    wait_for(lambda: site.gw.store.counters().get("duplicates", 0) == dups + 3, 15, "counted")
    assert site.gw.log.size == leaves and leaves_of(site, r.id) == raws
    acks = r.acks_seen
    wait_for(lambda: r.acks_seen > acks, 10, "acked again")
    assert r.acked == 4 and not r.bad_acks


@attack(
    "record-reorder",
    group="device and transport",
    attacker="anyone on the network",
    tries="delivers a device's records out of order (holds one back, sends it later)",
    refused_by="nothing to refuse: stored in seq order by the chain; the ack waits at the gap",
    recorded="chain events `gap` then `gap_filled`; no `break`",
)
def test_reordered_records_leave_a_gap_that_is_filled(site: Site) -> None:
    s = site.devs["tl-s"]
    raws = [s.reading() for _ in range(4)]
    for raw in (raws[0], raws[2], raws[3]):
        s.publish(raw)
    wait_for(lambda: len(leaves_of(site, s.id)) == 3, 15, "three stored")
    time.sleep(0.2)
    assert s.acked == 0  # the ack stays below the hole
    s.publish(raws[1])
    wait_for(lambda: s.acked == 3, 15, "acked past the filled gap")
    kinds = [(e.kind, e.seq_from) for e in site.gw.store.chain_events(s.id)]
    assert ("gap", 1) in kinds and ("gap_filled", 1) in kinds
    assert not any(k == "break" for k, _ in kinds)
    assert leaves_of(site, s.id) == raws


@attack(
    "chain-rollback",
    group="device and transport",
    attacker="a device whose flash was restored (or a cloned device)",
    tries="starts its chain again from seq 0 after newer records, with a new boot or the same one",
    refused_by="quarantine reasons `replayed_seq` (higher boot) and `conflict` (same boot)",
    recorded="quarantine rows, chain events of the same names, gateway alarm",
)
def test_a_rolled_back_chain_is_refused(site: Site) -> None:
    n = site.devs["tl-n"]
    for _ in range(3):
        n.publish(n.reading())
    wait_for(lambda: n.acked == 2, 15, "three acked")
    stored = leaves_of(site, n.id)
    n.seq, n.prev = 0, bytes(16)  # flash restored: the chain starts again
    same_boot = n.reading(temp=-2000, keep=False)
    n.seq, n.prev, n.boot = 0, bytes(16), 2
    new_boot = n.reading(temp=-2001, keep=False)
    n.seq = 3
    n.publish(same_boot)
    n.publish(new_boot)
    topic = f"ct/v1/{n.id}/rec"
    assert site.refused(topic, same_boot).reason == "conflict"
    assert site.refused(topic, new_boot).reason == "replayed_seq"
    events = {e.kind for e in site.gw.store.chain_events(n.id)}
    assert {"conflict", "replayed_seq"} <= events
    assert any(a.startswith("replayed_seq: tl-n seq 0") for a in site.gw.ingestor.alarms)
    assert leaves_of(site, n.id) == stored


# --- oversized and malformed input ----------------------------------------------------------------


def _deep(n: int) -> bytes:
    return b"\x81" * n + b"\x00"


@attack(
    "oversized-packet",
    group="gateway input",
    attacker="anyone with a broker account",
    tries="sends an MQTT packet larger than 16 KiB",
    refused_by="broker `max_packet_size 16384`: the connection is closed before the packet is read",
    recorded="broker log line `Client <id> disconnected due to oversize packet.`; the gateway "
    "never sees it",
)
def test_a_packet_over_the_brokers_limit_costs_the_connection(site: Site) -> None:
    with site.raw(STRANGER) as x:
        x.sock.sendall(b"\x32" + bytes([0x80, 0x80, 0x02]) + b"\x00" * 64)  # claims 32 KiB
        with pytest.raises((MQTTError, OSError)):
            x.receive(idle=3.0)
    wait_for(
        lambda: (
            f"Client {STRANGER} disconnected due to oversize packet."
            in site.broker.process.log_text()
        ),
        5,
        "the broker's log line",
    )
    site.serves(site.devs["tl-a"])


@attack(
    "malformed-records",
    group="gateway input",
    attacker="anyone with a broker account",
    tries="records over 1024 bytes, CBOR nested 10,000 and 1,000 deep, indefinite lengths, "
    "lengths of 2^64 − 1, a signed payload nested 300 deep",
    refused_by="quarantine reasons `oversized`, `malformed_cbor` (depth, indefinite, truncated), "
    "`bad_cose`; the gateway keeps running",
    recorded="quarantine rows with reason and detail; other devices' records still stored "
    "and acked",
)
def test_oversized_and_deeply_nested_input_is_refused_and_others_flow(site: Site) -> None:
    m = site.devs[MALLORY]
    topic = f"ct/v1/{MALLORY}/rec"
    signed_deep = sign1(b"\xa1\x01" + _deep(300), MALLORY, m.key)
    cases = {
        "big": (b"\xd2\x84" + b"\x00" * 2000, "oversized"),
        "deep-10000": (_deep(10_000), "oversized"),  # the size check comes first
        "deep-1000": (b"\xd2\x84" + _deep(1000), "malformed_cbor"),
        "indefinite": (b"\xd2\x9f\x40\xa0\x40\x40\xff", "malformed_cbor"),
        "indefinite-bstr": (b"\xd2\x84\x5f\x41\x00\xff\xa0\x40\x40", "malformed_cbor"),
        "huge-bstr": (b"\xd2\x84\x5b" + b"\xff" * 8, "malformed_cbor"),
        "huge-array": (b"\x9b" + b"\xff" * 8, "bad_cose"),
        "signed-deep": (signed_deep, "malformed_cbor"),
    }
    with site.raw(MALLORY) as x:
        for payload, _ in cases.values():
            assert x.publish(topic, payload) == 1
    for name, (payload, reason) in cases.items():
        row = site.refused(topic, payload)
        assert row.reason == reason, (name, row.reason, row.detail)
        assert row.reason != "internal_error"
    assert "nested too deep" in site.refused(topic, cases["deep-1000"][0]).detail
    assert "payload:" in site.refused(topic, signed_deep).detail
    assert "indefinite-length" in site.refused(topic, cases["indefinite"][0]).detail
    site.serves(site.devs["tl-a"], 3)
    site.serves(site.devs["tl-b"], 3)


# --- a quarantine flood --------------------------------------------------------------------------


FLOOD = 400
ROWS_CAP = 40


@attack(
    "quarantine-flood",
    group="gateway input",
    attacker="anyone with a broker account, registered or not",
    tries=f"floods {FLOOD} distinct 4 KB messages to fill the gateway's disk",
    refused_by="per-topic rate limit (`rate_limited`) and the quarantine caps (`full`): "
    "counted, not stored; honest devices served",
    recorded="quarantine rows up to the cap, then `quarantine_dropped` counts with a digest chain "
    "per (cause, reason, device); metric `coldtrace_quarantine_full`",
)
def test_a_quarantine_flood_is_capped_and_counted(make_broker, make_gateway) -> None:  # noqa: F811
    honest = SimDevice("tl-h")
    mq = make_broker([honest.id, "tl-flood"])
    env = make_gateway(mq, device_rate=20.0, device_burst=50)  # small: rate refusals certain
    env.register(honest)
    with_quarantine(env, max_rows=ROWS_CAP, keep_bytes=1024)
    gw = env.start_gateway()
    try:
        wait_for(lambda: gw.log.size == 1, 20, "registration logged")
        env.connect(honest)
        flooder = RawClient(
            mq.port, "tl-flood", username="tl-flood", password=mq.password("tl-flood")
        )
        assert flooder.connect() == 0
        payloads = [i.to_bytes(4, "big") + bytes([i % 256]) * 3996 for i in range(FLOOD)]
        sent = [honest.reading() for _ in range(20)]
        for k in range(0, FLOOD, 100):
            assert flooder.publish_many("ct/v1/tl-flood/rec", payloads[k : k + 100]) == 100
            for raw in sent[k // 20 : k // 20 + 5]:
                honest.publish(raw)
        flooder.disconnect()
        wait_for(lambda: accounted(gw.store, "tl-flood") == FLOOD, 30, "the flood accounted for")
        wait_for(lambda: not honest.unacked, 20, "the honest device acked")
        q = gw.status()["quarantine"]
        assert q["rows"] == ROWS_CAP and q["full"]
        dropped = {d.cause: d for d in gw.store.quarantine_dropped() if d.device == "tl-flood"}
        assert dropped["rate"].count > 0 and dropped["rate"].reason == "rate_limited"
        assert dropped["full"].count > 0 and dropped["full"].reason == "oversized"
        assert len(dropped["full"].digest) == 32
        assert ROWS_CAP + dropped["rate"].count + dropped["full"].count == FLOOD
        from gateway.metrics import render

        assert "coldtrace_quarantine_full 1" in render(gw.status()).splitlines()
        assert gw.pipeline.error is None
    finally:
        gw.stop()
    check_stored_and_acked(env, {honest.id: sent}, [honest])


# --- TLS client certificates ---------------------------------------------------------------------


@attack(
    "tls-certificate-impersonation",
    group="device and transport",
    attacker="a device with its own client certificate, or someone with a certificate of "
    "another CA",
    tries="connects with device A's certificate claiming user name B and publishes as B; "
    "connects with a certificate for B issued by a foreign CA, or with none",
    refused_by="the certificate's CN is the user name (`use_identity_as_username`): A's "
    "publishes under B are dropped by the ACL; a foreign or missing certificate fails the TLS "
    "handshake",
    recorded="broker log line `OpenSSL Error … certificate verify failed` (or `… peer did not "
    "return a certificate`) for the handshake; ACL drops not per message (D48)",
)
def test_a_certificate_speaks_only_for_its_own_device(
    broker: BrokerProcess,  # noqa: F811 (test_broker_tls.py's TLS-only broker)
    pki: Pki,  # noqa: F811
) -> None:
    gw = tls_client(broker, pki, pki.certs["gw@local"])
    a_claims_b = tls_client(broker, pki, pki.certs["tl-a"], username="tl-b", password="x")
    with gw, a_claims_b:
        assert gw.connect() == 0 and gw.subscribe("ct/v1/+/rec") == [1]
        assert a_claims_b.connect() == 0
        assert a_claims_b.publish("ct/v1/tl-b/rec", b"forged-as-b") == 1
        assert a_claims_b.publish("ct/v1/tl-a/rec", b"marker") == 1
        got = gw.receive(limit=1, idle=3.0)
    assert [(m.topic, m.payload) for m in got] == [("ct/v1/tl-a/rec", b"marker")]
    before = broker.log_text().count("OpenSSL Error")
    for cert in (pki.rogue_b, None):
        c = tls_client(broker, pki, cert)
        with pytest.raises((ssl.SSLError, OSError, MQTTError)):
            c.connect()
        c.close()
    wait_for(lambda: broker.log_text().count("OpenSSL Error") >= before + 2, 5, "logged")
    assert "certificate verify failed" in broker.log_text()
