"""TLS with per-device client certificates against a real Mosquitto.

The TLS listener requires a client certificate from the broker CA and takes
the certificate's CN as the user name (use_identity_as_username), so the same
ACL applies: a certificate for device A can publish only as A.
"""

from __future__ import annotations

import os
import pwd
import shutil
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.transport.broker import (
    BrokerError,
    BrokerProcess,
    BrokerUser,
    CertPair,
    TLSListener,
    free_port,
    make_ca,
    make_cert,
    start_broker,
    write_config,
)
from tests.gateway.rawmqtt import MQTTError, RawClient


@dataclass
class Pki:
    dir: Path
    ca: CertPair
    server: CertPair
    certs: dict[str, CertPair]
    rogue_b: CertPair  # CN tl-b, issued by a CA the broker does not trust


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    server = make_cert(
        ca, d, name="localhost", kind="server", hosts=["localhost", "127.0.0.1"], stem="server"
    )
    certs = {
        "tl-a": make_cert(ca, d, name="tl-a", kind="device"),
        "tl-b": make_cert(ca, d, name="tl-b", kind="device"),
        "gw@local": make_cert(ca, d, name="gw@local", kind="gateway"),
    }
    rogue_ca = make_ca(d / "rogue", name="Someone else's CA")
    rogue_b = make_cert(rogue_ca, d / "rogue", name="tl-b", kind="device")
    return Pki(d, ca, server, certs, rogue_b)


@pytest.fixture(scope="module")
def broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed: run `make system` (scripts/ensure-system.sh)")
    tls = TLSListener(
        cafile=pki.ca.cert,
        certfile=pki.server.cert,
        keyfile=pki.server.key,
        port=free_port(),
        bind="127.0.0.1",
    )
    # TLS only: no password listener at all; users come from certificates.
    # Devices need no account for certificate login (the ACL patterns cover
    # every device id); the gateway needs its ACL section.
    conf = write_config(
        tmp_path_factory.mktemp("broker-tls"),
        port=None,
        tls=tls,
        users=[BrokerUser("gw@local", "gateway", certificate_only=True)],
    )
    with start_broker(conf) as b:
        yield b


def context(pki: Pki, cert: CertPair | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


def tls_client(broker: BrokerProcess, pki: Pki, cert: CertPair | None, **kw: object) -> RawClient:
    assert broker.tls_port is not None
    return RawClient(broker.tls_port, "c", ssl_context=context(pki, cert), **kw)  # type: ignore[arg-type]


def test_certificate_for_device_a_cannot_publish_as_device_b(
    broker: BrokerProcess, pki: Pki
) -> None:
    gw = tls_client(broker, pki, pki.certs["gw@local"])
    a = tls_client(broker, pki, pki.certs["tl-a"])
    # Claiming to be tl-b in CONNECT changes nothing: the CN is the user name.
    a_claims_b = tls_client(broker, pki, pki.certs["tl-a"], username="tl-b", password="x")
    with gw, a:
        assert gw.connect() == 0
        assert gw.subscribe("ct/v1/+/rec") == [1]
        assert a.connect() == 0
        assert a.publish("ct/v1/tl-b/rec", b"forged") == 1
        assert a.publish("ct/v1/tl-a/rec", b"marker-1") == 1
        assert [m.payload for m in gw.receive(limit=1, idle=3.0)] == [b"marker-1"]
        a.close()
        with a_claims_b:
            assert a_claims_b.connect() == 0
            a_claims_b.publish("ct/v1/tl-b/rec", b"forged-again")
            a_claims_b.publish("ct/v1/tl-a/rec", b"marker-2")
            got = gw.receive(limit=1, idle=3.0)
    assert [(m.topic, m.payload) for m in got] == [("ct/v1/tl-a/rec", b"marker-2")]


def test_certificate_for_device_a_cannot_read_device_bs_ack(
    broker: BrokerProcess, pki: Pki
) -> None:
    with tls_client(broker, pki, pki.certs["gw@local"]) as gw:
        assert gw.connect() == 0
        gw.publish("ct/v1/tl-b/ack", b"ack-b", retain=True)
        gw.publish("ct/v1/tl-a/ack", b"ack-a", retain=True)
    with tls_client(broker, pki, pki.certs["tl-a"]) as a:
        assert a.connect() == 0
        a.subscribe("ct/v1/tl-b/ack", "ct/v1/+/ack")
        got = [(m.topic, m.payload) for m in a.receive(idle=1.0)]
    assert got == [("ct/v1/tl-a/ack", b"ack-a")]


def test_connection_without_client_certificate_is_refused(broker: BrokerProcess, pki: Pki) -> None:
    c = tls_client(broker, pki, None, username="tl-a", password="anything")
    with pytest.raises((ssl.SSLError, OSError, MQTTError)):
        c.connect()
    c.close()


def test_certificate_from_another_ca_is_refused(broker: BrokerProcess, pki: Pki) -> None:
    c = tls_client(broker, pki, pki.rogue_b)
    with pytest.raises((ssl.SSLError, OSError, MQTTError)):
        c.connect()
    c.close()


def test_client_verifies_the_broker_certificate(broker: BrokerProcess, pki: Pki) -> None:
    # A client that pins another CA must refuse the broker.
    assert broker.tls_port is not None
    ctx = ssl.create_default_context(cafile=str(pki.dir / "rogue" / "ca.pem"))
    ctx.load_cert_chain(str(pki.certs["tl-a"].cert), str(pki.certs["tl-a"].key))
    c = RawClient(broker.tls_port, "c", ssl_context=ctx)
    with pytest.raises(ssl.SSLCertVerificationError):
        c.connect()
    c.close()


def test_paho_gateway_receives_over_tls_with_its_certificate(
    broker: BrokerProcess, pki: Pki
) -> None:
    """The gateway core's client library (paho 2.x) works with this listener."""
    assert broker.tls_port is not None
    gw_cert = pki.certs["gw@local"]
    got: list[tuple[str, bytes]] = []
    arrived = threading.Event()
    subscribed = threading.Event()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id="gw@local",
        clean_session=False,
        protocol=mqtt.MQTTv311,
    )
    client.tls_set(ca_certs=str(pki.ca.cert), certfile=str(gw_cert.cert), keyfile=str(gw_cert.key))

    def on_connect(c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        c.subscribe("ct/v1/+/rec", qos=1)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append((msg.topic, msg.payload))
        arrived.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = on_message
    client.connect("127.0.0.1", broker.tls_port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        with tls_client(broker, pki, pki.certs["tl-b"]) as b:
            assert b.connect() == 0
            b.publish("ct/v1/tl-b/rec", b"record-b")
        assert arrived.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    assert got == [("ct/v1/tl-b/rec", b"record-b")]


def test_broker_as_a_service_user_reads_what_it_needs(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    """As root with run_as="mosquitto" (a system service), files are handed over."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start Mosquitto as another user")
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no 'mosquitto' user")
    # pytest's temporary directories are 0700 (root only): the service user
    # could not even reach its files there, which write_config reports.
    hidden = tmp_path_factory.mktemp("hidden")
    with pytest.raises(BrokerError, match="not searchable by 'mosquitto'"):
        write_config(hidden, port=free_port(), run_as="mosquitto")
    d = Path(tempfile.mkdtemp(prefix="coldtrace-service-"))
    d.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(d, ignore_errors=True))
    ca = make_ca(d)
    server = make_cert(ca, d, name="localhost", kind="server", hosts=["127.0.0.1"])
    device = make_cert(ca, d, name="tl-a", kind="device")
    tls = TLSListener(ca.cert, server.cert, server.key, port=free_port(), bind="127.0.0.1")
    users = [BrokerUser("gw@local", "gateway", "pw")]
    # Mosquitto 2.0 drops privileges before it loads the TLS key: refuse early.
    with pytest.raises(BrokerError, match=r"localhost\.key is not readable by 'mosquitto'"):
        write_config(d / "broker", port=free_port(), tls=tls, users=users, run_as="mosquitto")
    shutil.chown(server.key, user="mosquitto")
    conf = write_config(d / "broker", port=free_port(), tls=tls, users=users, run_as="mosquitto")
    with start_broker(conf) as broker:
        assert broker.port is not None
        gw = RawClient(broker.port, "gw", username="gw@local", password="pw", clean=False)
        with gw:
            assert gw.connect() == 0  # the password file was readable
            assert gw.subscribe("ct/v1/+/rec") == [1]
            gw.disconnect()
        assert broker.tls_port is not None
        ctx = ssl.create_default_context(cafile=str(ca.cert))
        ctx.load_cert_chain(str(device.cert), str(device.key))
        with RawClient(broker.tls_port, "a", ssl_context=ctx) as a:
            assert a.connect() == 0  # the TLS key was readable
            a.publish("ct/v1/tl-a/rec", b"queued")
            a.disconnect()
        broker.restart()  # the persistence database was writable
        with RawClient(broker.port, "gw", username="gw@local", password="pw", clean=False) as gw:
            assert gw.connect() == 0
            assert [m.payload for m in gw.receive(limit=1, idle=3.0)] == [b"queued"]
    assert "Error" not in broker.log_text()
