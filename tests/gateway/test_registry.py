"""The registry CLI: init, add, update, revoke, import, list, trust."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.registry import RegistryError, RegistrySigner, load_provisioning
from gateway.store import open_store
from protocol.cli import main as coldtrace
from protocol.keys import b64e, load_p256_private_key
from tests.gateway.devices import SimDevice


@pytest.fixture
def gwdir(tmp_path: Path) -> Path:
    assert (
        coldtrace(
            [
                "gateway",
                "init",
                "--dir",
                str(tmp_path),
                "--id",
                "gw-reg",
                "--origin",
                "coldtrace.test/reg",
                "--registry-id",
                "acme-reg",
            ]
        )
        == 0
    )
    return tmp_path


def test_init_writes_a_loadable_configuration_and_trust_file(gwdir: Path) -> None:
    cfg = load_config(gwdir / "gateway.toml")
    assert cfg.id == "gw-reg" and cfg.log.origin == "coldtrace.test/reg"
    trust = json.loads((gwdir / "trust.json").read_text())
    assert trust["format"] == "coldtrace-trust" and trust["logs"][0]["origin"] == cfg.log.origin
    assert (gwdir / "keys" / "registry.pem").stat().st_mode & 0o077 == 0
    assert coldtrace(["gateway", "init", "--dir", str(gwdir)]) == 2  # never overwrites silently


def test_add_update_revoke_through_the_cli(gwdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = str(gwdir / "gateway.toml")
    dev = SimDevice("tl-cli")
    capsys.readouterr()
    assert (
        coldtrace(
            [
                "gateway",
                "registry",
                "add",
                dev.id,
                "-c",
                conf,
                "--key",
                b64e(dev.public_sec1),
                "--org",
                "acme",
                "--place",
                "room-1",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert len(bytes.fromhex(out["ack_key"])) == 32
    assert (
        coldtrace(["gateway", "registry", "update", dev.id, "-c", conf, "--place", "truck-2"]) == 0
    )
    assert coldtrace(["gateway", "registry", "revoke", dev.id, "-c", conf]) == 0
    assert coldtrace(["gateway", "registry", "revoke", dev.id, "-c", conf]) == 1  # already revoked
    other = SimDevice("tl-cli")
    assert (
        coldtrace(
            [
                "gateway",
                "registry",
                "add",
                dev.id,
                "-c",
                conf,
                "--key",
                other.public_sec1.hex(),
                "--org",
                "acme",
            ]
        )
        == 1
    )
    store = open_store(load_config(conf).db_path)
    pending = store.outbox_pending()
    store.close()
    assert len(pending) == 3  # waiting for the gateway to log them, in chain order
    capsys.readouterr()
    assert coldtrace(["gateway", "registry", "list", "-c", conf]) == 0
    assert "3 registration(s) waiting" in capsys.readouterr().out


def test_import_provisioning_json(gwdir: Path, tmp_path: Path) -> None:
    devs = [SimDevice(f"tl-imp{i}") for i in range(3)]
    doc = {
        "devices": [
            {
                "device": d.id,
                "key": b64e(d.public_sec1),
                "role": "logger",
                "org": "acme",
                "ack_key": (bytes([i + 1]) * 32).hex(),
            }
            for i, d in enumerate(devs)
        ]
    }
    path = tmp_path / "prov.json"
    path.write_text(json.dumps(doc))
    assert len(load_provisioning(path)) == 3
    assert (
        coldtrace(["gateway", "registry", "import", str(path), "-c", str(gwdir / "gateway.toml")])
        == 0
    )
    cfg = load_config(gwdir / "gateway.toml")
    store = open_store(cfg.db_path)
    try:
        assert store.ack_keys()[devs[2].id] == bytes([3]) * 32
        signer = RegistrySigner(
            store, cfg.registry.id, load_p256_private_key(cfg.registry.key_file)
        )
        with pytest.raises(RegistryError):
            signer.add("Not-An-Id", devs[0].public_sec1, role=1, org="x")
        with pytest.raises(RegistryError):
            signer.revoke("tl-nobody")
    finally:
        store.close()
