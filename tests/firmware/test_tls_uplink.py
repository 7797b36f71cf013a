"""The firmware's own network code (ct_core.mqtt_factory, ct_tls, ct_uplink)
under CPython against the shipped TLS Mosquitto listener (client certificate
required, CN = user name) and a real gateway.

A device with its certificate connects and the gateway's acks empty its
queue. A wrong server name, a broker certificate from a CA the device does
not pin, no client certificate, and a client certificate from a CA the broker
does not trust are each refused with a clear status (``Uplink.error``) and
the queue keeps every record. The MQTT client is tests/firmware/netmqtt.py
(umqtt.simple's API and connect order over CPython sockets): on a board it
is umqtt.simple over MicroPython's mbedTLS, which no test here reaches.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.evidence.registry import RegistrySigner
from gateway.evidence.store import open_store
from gateway.service import Gateway
from gateway.transport.broker import (
    BrokerProcess,
    BrokerUser,
    CertPair,
    TLSListener,
    free_port,
    make_ca,
    make_cert,
    read_credentials,
    start_broker,
    write_config,
)
from protocol.keys import load_p256_private_key
from tests.firmware import netmqtt
from tests.gateway.env import GW_USER, Broker, GatewayDir, create_gateway_dir

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "firmware" / "lib"
if str(LIB) not in sys.path:
    sys.path.insert(0, str(LIB))
import ct_core  # noqa: E402
import ct_fs  # noqa: E402
import ct_provision  # noqa: E402
import ct_tls  # noqa: E402

DEV = "tl-tls-1"


@dataclass
class Pki:
    ca: CertPair
    server: CertPair
    dev: CertPair
    rogue_ca: CertPair
    rogue_dev: CertPair


@dataclass
class Env:
    pki: Pki
    tls_port: int
    gw: GatewayDir
    ack_key: bytes
    pub: bytes


class _Board:
    DEEPSLEEP = 4
    offset = 0
    rtc = None

    def feed(self) -> None:
        return None

    def reset_cause(self) -> int:
        return 1


class _RtcMem:
    def __init__(self) -> None:
        self.d: dict[bytes, bytes] = {}

    def get(self, k: bytes) -> bytes | None:
        return self.d.get(k)

    def put(self, k: bytes, v: bytes) -> None:
        self.d[k] = v


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed: run `make system` (scripts/ensure-system.sh)")
    d = tmp_path_factory.mktemp("tls")
    ca = make_ca(d / "pki")
    server = make_cert(
        ca,
        d / "pki",
        name="broker.test",
        kind="server",
        hosts=["broker.test", "localhost"],
        stem="server",
    )
    dev = make_cert(ca, d / "pki", name=DEV, kind="device")
    rogue_ca = make_ca(d / "rogue", name="Someone else's CA")
    rogue_dev = make_cert(rogue_ca, d / "rogue", name=DEV, kind="device")
    pki = Pki(ca, server, dev, rogue_ca, rogue_dev)
    port, tls_port = free_port(), free_port()
    tls = TLSListener(
        cafile=ca.cert, certfile=server.cert, keyfile=server.key, port=tls_port, bind="127.0.0.1"
    )
    conf = write_config(
        d / "broker",
        port=port,
        tls=tls,
        users=[BrokerUser(GW_USER, "gateway")],
        gateway_id="gw-test",
    )
    proc: BrokerProcess = start_broker(conf)
    gw = create_gateway_dir(
        d / "gw", Broker(proc, port, d / "broker", read_credentials(d / "broker"))
    )
    # the device's key, made by the firmware's own provisioning
    devdir = d / DEV
    devdir.mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        pub = bytes(
            ct_provision.keygen(False, ct_fs.Fs(), str(devdir), {"signer": "p256"}, os.urandom)
        )
    store = open_store(gw.cfg.db_path)
    try:
        signer = RegistrySigner(
            store, gw.cfg.registry.id, load_p256_private_key(gw.cfg.registry.key_file)
        )
        _, ack_key = signer.add(DEV, pub, role=1, org="acme")
    finally:
        store.close()
    with contextlib.redirect_stdout(io.StringIO()):
        ct_provision.set_ack_key(ack_key.hex(), ct_fs.Fs(), str(devdir))
    gateway = Gateway(gw.cfg)
    gateway.start()
    try:
        assert gateway.mqtt.subscribed.wait(15), "gateway did not subscribe"
        yield Env(pki, tls_port, gw, ack_key, pub)
    finally:
        gateway.stop()
        proc.stop()


def _device(env: Env, tmp: Path, port: int | None = None, **tls: Any) -> Any:
    """The core as ct_main builds it, with netmqtt as umqtt.simple."""
    devdir = env.gw.dir.parent / DEV
    t = {
        "ca": str(env.pki.ca.cert),
        "cert": str(env.pki.dev.cert),
        "key": str(env.pki.dev.key),
        "server_name": "broker.test",
        **tls,
    }
    cfg = {
        "id": DEV,
        "role": "logger",
        "dir": str(devdir),
        "signer": "p256",
        "mqtt": {
            "host": "127.0.0.1",
            "port": port or env.tls_port,
            "timeout_ms": 3000,
            "tls": {k: v for k, v in t.items() if v is not None},
        },
    }
    new = ct_core.mqtt_factory(cfg, DEV, netmqtt.MQTTClient)
    core = ct_core.open_device(cfg, _Board(), fs=ct_fs.Fs(), new_client=new, rtc_mem=_RtcMem())
    core.uplink._backoff0 = 200  # several attempts within a short upload
    return core


def _reading(core: Any, temp: int) -> None:
    assert core.enqueue(core.record({1: 1, 4: 1790000000, 5: 3, 10: temp}))


@pytest.mark.parametrize(
    ("tls", "status"),
    [
        ({"server_name": "wrong.test"}, "tls: server name mismatch"),
        ({"ca": "rogue"}, "tls: server certificate not trusted"),
        ({"cert": None, "key": None}, "tls: refused by the broker (client certificate?)"),
        ({"cert": "rogue", "key": "rogue"}, "tls: refused by the broker (client certificate?)"),
    ],
    ids=["wrong-server-name", "untrusted-server", "no-client-cert", "client-cert-other-ca"],
)
def test_refused_connection_has_a_clear_status_and_loses_nothing(
    env: Env, tmp_path: Path, tls: dict[str, Any], status: str
) -> None:
    rogue = {
        "ca": str(env.pki.rogue_ca.cert),
        "cert": str(env.pki.rogue_dev.cert),
        "key": str(env.pki.rogue_dev.key),
    }
    tls = {k: (rogue[k] if v == "rogue" else v) for k, v in tls.items()}
    core = _device(env, tmp_path, **tls)
    try:
        before = core.queued()[0]
        _reading(core, 451)
        t0 = time.monotonic()
        with pytest.raises(OSError):
            core.upload(2500)
        assert time.monotonic() - t0 < 20  # bounded by the upload deadline, never a hang
        assert core.uplink.error == status
        assert core.uplink.acked == 0
        assert core.queued()[0] == before + 1  # every record still queued
    finally:
        core.close()


def test_device_with_its_certificate_is_acked_by_the_gateway(env: Env, tmp_path: Path) -> None:
    core = _device(env, tmp_path)
    try:
        for temp in (450, 452, 455):
            _reading(core, temp)
        n = core.queued()[0]
        assert n >= 3
        events = core.upload(20000)
        assert core.uplink.error is None
        assert [e for e in events if e[0] == "ack"], events
        assert core.queued()[0] == 0  # the acks emptied the queue
        assert core.uplink.acked == n
    finally:
        core.close()
    store = open_store(env.gw.cfg.db_path, readonly=True)
    try:
        stored = store.records_of(DEV, 0, 1 << 30)
    finally:
        store.close()
    assert len(stored) == n


def test_unusable_tls_configuration_is_a_failed_upload_not_a_crash(
    env: Env, tmp_path: Path
) -> None:
    core = _device(env, tmp_path, ca=str(tmp_path / "missing.pem"))
    try:
        _reading(core, 460)
        with pytest.raises(OSError):
            core.upload(1000)
        assert core.uplink.error.startswith("tls config: mqtt.tls.ca")
    finally:
        core.close()
    with pytest.raises(ct_tls.TLSError, match="both"):
        ct_tls.Context({"ca": str(env.pki.ca.cert), "cert": str(env.pki.dev.cert)}, "h")
    with pytest.raises(ct_tls.TLSError, match="ca"):
        ct_tls.Context({"cert": "a", "key": "b"}, "h")


def test_server_name_is_checked_even_when_the_host_is_an_address(env: Env) -> None:
    ctx = ct_tls.Context({"ca": str(env.pki.ca.cert)}, "127.0.0.1")
    assert ctx.name == "127.0.0.1"
    assert (
        ct_tls.Context({"ca": str(env.pki.ca.cert), "server_name": "broker.test"}, "127.0.0.1").name
        == "broker.test"
    )


@contextlib.contextmanager
def _dead_server(env: Env, handshake: bool) -> Iterator[int]:
    """A server that accepts and then says nothing: before the TLS handshake
    (a black hole), or after it (no CONNACK ever)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.2)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(env.pki.server.cert), str(env.pki.server.key))
    ctx.load_verify_locations(cafile=str(env.pki.ca.cert))
    ctx.verify_mode = ssl.CERT_REQUIRED
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            if handshake:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn = ctx.wrap_socket(conn, server_side=True)
            held.append(conn)  # never read, never answered

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        th.join(5)
        for c in held:
            c.close()
        srv.close()


@pytest.mark.parametrize("handshake", [False, True], ids=["no-handshake", "no-connack"])
def test_a_dead_link_ends_at_the_deadline_with_the_queue_intact(
    env: Env, tmp_path: Path, handshake: bool
) -> None:
    with _dead_server(env, handshake) as port:
        core = _device(env, tmp_path, port=port)
        try:
            before = core.queued()[0]
            _reading(core, 470)
            t0 = time.monotonic()
            with pytest.raises(OSError):
                core.upload(4000)
            took = time.monotonic() - t0
            # mqtt.timeout_ms (3 s) per attempt, the upload's 4 s overall: never a hang
            assert took < 12, took
            assert core.uplink.error == "timeout"
            assert core.queued()[0] == before + 1
        finally:
            core.close()
