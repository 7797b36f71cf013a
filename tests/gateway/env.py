"""Test environments: a real Mosquitto on loopback and gateway directories.

``start_test_broker(dir, devices)`` renders the project's shipped broker
configuration (gateway/transport/broker.py: persistence, explicit queue limits,
passwords, per-device ACLs) into ``dir`` and starts ``mosquitto -c <conf>``
on a free port. ``create_gateway_dir(dir, broker)`` writes keys and a
gateway.toml pointing at that broker. The fixtures in conftest.py wrap them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, load_config, render_config
from gateway.evidence.registry import RegistrySigner
from gateway.evidence.store import open_store
from gateway.service import Gateway
from gateway.transport.broker import (
    BrokerProcess,
    BrokerUser,
    QueueLimits,
    free_port,
    read_credentials,
    start_broker,
    write_config,
)
from protocol.keys import generate_ed25519, generate_p256, load_p256_private_key, save_private_key
from protocol.note import NoteSigner
from tests.gateway.devices import SimDevice

GW_USER = "gw@test"
GW_ID = "gw-test"
ORIGIN = "coldtrace.test/gw"


@dataclass
class Broker:
    process: BrokerProcess
    port: int
    dir: Path
    creds: dict[str, str]

    def password(self, user: str) -> str:
        return self.creds[user]


@dataclass
class GatewayDir:
    dir: Path
    broker: Broker
    cfg: GatewayConfig
    devices: dict[str, SimDevice] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.dir / "gateway.toml"

    def register(self, *devices: SimDevice, place: str | None = None) -> None:
        """Sign registrations (queued in the outbox) and give each device its ack key;
        with ``place``, bind the devices to it (a binding statement each)."""
        store = open_store(self.cfg)
        try:
            signer = RegistrySigner(
                store, self.cfg.registry.id, load_p256_private_key(self.cfg.registry.key_file)
            )
            for dev in devices:
                _, dev.ack_key = signer.add(
                    dev.id, dev.public_sec1, role=dev.role, org="acme", place=place
                )
                self.devices[dev.id] = dev
        finally:
            store.close()

    def start_gateway(self) -> Gateway:
        """An in-process gateway on this directory, subscribed and ready."""
        gw = Gateway(self.cfg)
        gw.start()
        assert gw.mqtt.subscribed.wait(15), "gateway did not subscribe within 15 s"
        return gw

    def connect(self, *devices: SimDevice) -> None:
        for dev in devices:
            dev.connect(self.broker.port, self.broker.password(dev.id))

    def start_process(self) -> subprocess.Popen[bytes]:
        """``coldtrace gateway run`` as a separate process (for kill -9)."""
        with open(self.dir / "gateway.log", "ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "protocol.cli",
                    "gateway",
                    "run",
                    "-c",
                    str(self.config_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc


def mosquitto_missing() -> bool:
    return shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None


def start_test_broker(
    d: Path,
    devices: list[str],
    *,
    queue: QueueLimits | None = None,
    port: int | None = None,
    gateways: tuple[str, ...] = (GW_USER,),
) -> Broker:
    """``gateways``: the gateway accounts (a fleet's instances need one each)."""
    port = port or free_port()
    users = [BrokerUser(g, "gateway") for g in gateways]
    users += [BrokerUser(dev, "device") for dev in devices]
    conf = write_config(
        d,
        port=port,
        users=users,
        gateway_id=GW_ID,
        queue=queue or QueueLimits(max_inflight_messages=1000),
    )
    proc = start_broker(conf)
    return Broker(proc, port, d, read_credentials(d))


def create_gateway_dir(
    d: Path,
    broker: Broker,
    *,
    sections: dict[str, dict[str, Any]] | None = None,
    log_key: NoteSigner | None = None,
    gw_user: str = GW_USER,
    origin: str = ORIGIN,
    **ingest: Any,
) -> GatewayDir:
    """A gateway directory; ``sections`` adds or extends configuration sections
    (e.g. ``{"store": {"url": pg_url, "schema": "gw"}}`` for PostgreSQL)."""
    (d / "keys").mkdir(parents=True)
    (d / "keys" / "log.skey").write_text((log_key or NoteSigner.generate(origin)).skey + "\n")
    (d / "keys" / "log.skey").chmod(0o600)
    save_private_key(generate_ed25519(), d / "keys" / "ledger.pem")
    save_private_key(generate_p256(), d / "keys" / "registry.pem")
    (d / "mqtt.pw").write_text(broker.password(gw_user) + "\n")
    settings = {"batch_size": 200, "batch_wait": 0.01, "ack_interval": 0.05, **ingest}
    config: dict[str, dict[str, Any]] = {
        "gateway": {"id": GW_ID, "data_dir": "var"},
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker.port,
            "username": gw_user,
            "password_file": "mqtt.pw",
            "keepalive": 5,
        },
        "ingest": settings,
        "log": {
            "origin": origin,
            "key_file": "keys/log.skey",
            "checkpoint_interval": 0.5,
            "checkpoint_leaves": 100000,
        },
        "ledger": {"id": f"{origin}/ledger", "key_file": "keys/ledger.pem"},
        "registry": {"id": "acme-registry", "key_file": "keys/registry.pem"},
    }
    for name, values in (sections or {}).items():
        config[name] = {**config.get(name, {}), **values}
    (d / "gateway.toml").write_text(render_config(config))
    return GatewayDir(d, broker, load_config(d / "gateway.toml"))


def cleanup_gateway(gw: GatewayDir) -> None:
    for dev in gw.devices.values():
        dev.disconnect()
    for proc in gw.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
