"""The registry CLI: init, add, update, revoke, import, list, trust."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway import units
from gateway.config import ConfigError, load_config
from gateway.evidence.registry import RegistryError, RegistrySigner, Scopes, load_provisioning
from gateway.evidence.store import open_store
from protocol.cli import main as coldtrace
from protocol.keys import b64e, load_p256_private_key
from protocol.record import Binding, ProductProfile, chain_hash, open_record
from tests.gateway.devices import SimDevice
from tests.schemas import assert_trust


@pytest.fixture(params=["sqlite", "postgresql"])
def gwdir(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh ``gateway init`` directory; its store on SQLite or on a real PostgreSQL."""
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
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        with (tmp_path / "gateway.toml").open("a") as f:
            f.write(f'\n[store]\nurl = "{url}"\nschema = "gw_reg"\n')
    return tmp_path


def test_init_writes_a_loadable_configuration_and_trust_file(gwdir: Path) -> None:
    cfg = load_config(gwdir / "gateway.toml")
    assert cfg.id == "gw-reg" and cfg.log.origin == "coldtrace.test/reg"
    trust = json.loads((gwdir / "trust.json").read_text())
    assert_trust(trust)
    assert trust["format"] == "coldtrace-trust" and trust["version"] == 2
    assert trust["logs"][0]["origin"] == cfg.log.origin
    (reg,) = trust["registries"]
    assert (reg["id"], reg["devices"], reg["places"], reg["gtins"]) == (
        "acme-reg",
        ["*"],
        ["*"],
        ["*"],
    )
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
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert len(bytes.fromhex(out["ack_key"])) == 32 and out["place"] == "room-1"
    assert (
        coldtrace(["gateway", "registry", "update", dev.id, "-c", conf, "--place", "truck-2"]) == 0
    )
    text = capsys.readouterr().out
    assert "room-1: monitored by no device" in text and "truck-2: monitored by tl-cli" in text
    assert coldtrace(["gateway", "registry", "revoke", dev.id, "-c", conf]) == 0
    assert "truck-2: monitored by no device" in capsys.readouterr().out  # unbound first
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
    store = open_store(load_config(conf))
    kinds = [open_record(raw).payload.kind for _, raw in store.outbox_pending()]
    store.close()
    # registration, bind room-1, unbind room-1, bind truck-2, unbind truck-2, revocation
    assert kinds == [4, 5, 5, 5, 5, 4]
    capsys.readouterr()
    assert coldtrace(["gateway", "registry", "list", "-c", conf]) == 0
    assert "6 registry record(s) waiting" in capsys.readouterr().out


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
    store = open_store(cfg)
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


# --- bindings, profiles, restating ----------------------------------------------------------

GTIN = "09506000134352"


@pytest.fixture
def signer(gwdir: Path):
    cfg = load_config(gwdir / "gateway.toml")
    store = open_store(cfg)
    s = RegistrySigner(store, cfg.registry.id, load_p256_private_key(cfg.registry.key_file))
    for name in ("tl-a", "tl-b", "tl-c"):
        s.add(name, SimDevice(name).public_sec1, role=1, org="acme")
    yield s
    store.close()


def payloads(s: RegistrySigner) -> list:
    return [open_record(raw).payload for _, raw in s.store.outbox_pending()]


def test_bind_adds_to_the_current_set_and_unbind_removes(signer: RegistrySigner) -> None:
    t0 = int(time.time()) - 7200
    signer.bind("dc:room-2", ["tl-b"], at=t0)
    signer.bind("dc:room-2", ["tl-a", "tl-b"], at=t0 + 10)
    signer.unbind("dc:room-2", ["tl-b"], at=t0 + 20)
    signer.unbind("dc:room-2", ["tl-a"])
    b = [p for p in payloads(signer) if isinstance(p, Binding)]
    assert [(p.cseq, p.devices, p.time) for p in b[:3]] == [
        (0, "tl-b", t0),
        (1, "tl-a tl-b", t0 + 10),
        (2, "tl-a", t0 + 20),
    ]
    assert b[3].devices is None and b[3].cseq == 3 and b[3].time >= int(time.time()) - 5
    assert [p.cprev for p in b[1:]] == [chain_hash(raw) for raw in statements(signer)[:3]]
    assert all(p.tq == 2 and p.boot == 0 for p in b)
    seqs = [p.seq for p in payloads(signer)]
    assert seqs == list(range(len(seqs)))  # one registry chain for kinds 4-6


def statements(s: RegistrySigner) -> list[bytes]:
    return [raw for _, raw in s.store.outbox_pending() if open_record(raw).payload.kind == 5]


def test_binding_refusals(signer: RegistrySigner) -> None:
    t0 = int(time.time()) - 7200
    signer.bind("room", ["tl-a"], at=t0)
    with pytest.raises(RegistryError, match="before the chain's previous statement"):
        signer.bind("room", ["tl-b"], at=t0 - 1)
    with pytest.raises(RegistryError, match="in the future"):
        signer.bind("room", ["tl-b"], at=int(time.time()) + 3600)
    with pytest.raises(RegistryError, match="not registered"):
        signer.bind("room", ["tl-nobody"])
    with pytest.raises(RegistryError, match=r"tl-c does not monitor room"):
        signer.unbind("room", ["tl-c"])
    signer.revoke("tl-a")  # unbinds it from room first
    with pytest.raises(RegistryError, match="revoked"):
        signer.bind("room", ["tl-a"])
    assert [getattr(p, "devices", "reg") for p in payloads(signer)][-2:] == [None, "reg"]


def test_scopes_are_enforced_when_signing(gwdir: Path) -> None:
    cfg = load_config(gwdir / "gateway.toml")
    store = open_store(cfg)
    try:
        s = RegistrySigner(
            store,
            cfg.registry.id,
            load_p256_private_key(cfg.registry.key_file),
            scopes=Scopes(("tl-*",), ("acme:*",), ("0950600013435*",)),
        )
        with pytest.raises(RegistryError, match="outside the registry's scope"):
            s.add("rd-1", SimDevice("rd-1").public_sec1, role=2, org="acme")
        s.add("tl-1", SimDevice("tl-1").public_sec1, role=1, org="acme")
        with pytest.raises(RegistryError, match="place 'other:x'"):
            s.bind("other:x", ["tl-1"])
        with pytest.raises(RegistryError, match="GTIN"):
            s.set_profile("04012345000016", low=0, high=400, delay=1800, gap=1800)
    finally:
        store.close()


def test_profile_and_restate(signer: RegistrySigner) -> None:
    t0 = int(time.time()) - 86400
    signer.set_profile(
        GTIN, low=0, high=400, delay=1800, gap=1800, cumul=7200, name="chilled", at=t0
    )
    signer.set_profile(GTIN, lot="L2611-42", high=800, delay=600, gap=900, links=True, at=t0)
    with pytest.raises(RegistryError, match="check digit"):
        signer.set_profile("09506000134353", low=0, delay=60, gap=60)
    with pytest.raises(RegistryError, match="lots"):
        signer.set_profile(GTIN, lot="L1", low=0, delay=60, gap=60, lots=True)
    signer.bind("room", ["tl-c"], at=t0)
    assert sorted(signer.chains()) == [(5, "room"), (6, GTIN), (6, f"{GTIN} L2611-42")]
    done = signer.restate_due(3600)
    assert sorted(done) == sorted(signer.chains())
    assert signer.restate_due(3600) == []  # just restated
    last = signer.last_statement((6, GTIN))
    assert isinstance(last, ProductProfile)
    assert (last.cseq, last.low, last.high, last.cumul, last.name) == (1, 0, 400, 7200, "chilled")
    assert last.time >= int(time.time()) - 5
    b = signer.last_statement((5, "room"))
    assert isinstance(b, Binding) and (b.cseq, b.devices) == (1, "tl-c")


def test_bind_profile_restate_and_listings_through_the_cli(
    gwdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = str(gwdir / "gateway.toml")
    for name in ("tl-a", "tl-b"):
        key = b64e(SimDevice(name).public_sec1)
        assert (
            coldtrace(
                ["gateway", "registry", "add", name, "-c", conf, "--key", key, "--org", "acme"]
            )
            == 0
        )
    reg = ["gateway", "registry"]
    assert (
        coldtrace(
            [*reg, "bind", "dc:room-2", "tl-a", "tl-b", "-c", conf, "--at", "2026-06-01T08:00:00Z"]
        )
        == 0
    )
    assert coldtrace([*reg, "unbind", "dc:room-2", "tl-b", "-c", conf]) == 0
    with pytest.raises(SystemExit) as bad_time:
        coldtrace([*reg, "bind", "dc:room-2", "tl-b", "-c", conf, "--at", "2026-06-01"])
    assert bad_time.value.code == 2
    assert (
        coldtrace([*reg, "bind", "dc:room-2", "tl-b", "-c", conf, "--at", "1780300800"]) == 1
    )  # before the previous statement
    assert (
        coldtrace(
            [
                *reg,
                "profile",
                "set",
                GTIN,
                "-c",
                conf,
                "--low",
                "0",
                "--high",
                "4.00",
                "--delay",
                "30m",
                "--gap",
                "1800s",
                "--cumul",
                "2h",
                "--name",
                "chilled 0-4 °C",
            ]
        )
        == 0
    )
    with pytest.raises(SystemExit) as bad_temp:
        coldtrace(
            [
                *reg,
                "profile",
                "set",
                GTIN,
                "-c",
                conf,
                "--high",
                "4.005",
                "--delay",
                "30m",
                "--gap",
                "30m",
            ]
        )
    assert bad_temp.value.code == 2
    assert coldtrace([*reg, "restate", "dc:room-2", "-c", conf]) == 0
    assert coldtrace([*reg, "restate", "nowhere", "-c", conf]) == 1
    assert coldtrace([*reg, "restate", "-c", conf]) == 2
    capsys.readouterr()
    assert coldtrace([*reg, "bindings", "-c", conf, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["dc:room-2"]["devices"] == ["tl-a"]
    hist = doc["dc:room-2"]["history"]
    assert [(h["cseq"], h["devices"]) for h in hist] == [
        (0, ["tl-a", "tl-b"]),
        (1, ["tl-a"]),
        (2, ["tl-a"]),
    ]
    assert hist[0]["time"] == 1780300800 and all(h["leaf"] is None for h in hist)
    assert coldtrace([*reg, "profile", "list", "-c", conf, "--json"]) == 0
    (prof,) = json.loads(capsys.readouterr().out)
    assert (prof["low"], prof["high"], prof["delay"], prof["gap"], prof["cumul"]) == (
        0,
        400,
        1800,
        1800,
        7200,
    )
    assert coldtrace([*reg, "bindings", "-c", conf]) == 0
    assert "dc:room-2: tl-a (since" in capsys.readouterr().out
    assert coldtrace([*reg, "profile", "list", "-c", conf]) == 0
    assert "0.00 °C … 4.00 °C, delay 30 min" in capsys.readouterr().out
    assert coldtrace([*reg, "restate", "--all", "-c", conf]) == 0
    assert "profile of 09506000134352: restated" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "centi"),
    [("4", 400), ("4.00", 400), ("-18.5", -1850), ("0.05", 5), ("-0.05", -5), ("2 °C", 200)],
)
def test_temperatures_convert_exactly(text: str, centi: int) -> None:
    assert units.parse_centi(text) == centi


@pytest.mark.parametrize("text", ["4.005", "abc", "nan", "", "1e400"])
def test_bad_temperatures_are_refused(text: str) -> None:
    with pytest.raises(units.UnitError):
        units.parse_centi(text)


def test_durations_and_times() -> None:
    assert [units.parse_duration(t) for t in ("30m", "2h", "1800s", "1h30m", "90")] == [
        1800,
        7200,
        1800,
        5400,
        90,
    ]
    for bad in ("", "m", "2d", "-5m", "1.5h"):
        with pytest.raises(units.UnitError):
            units.parse_duration(bad)
    assert units.parse_time("2026-06-01T08:00:00Z") == 1780300800
    assert units.parse_time("2026-06-01 08:00") == 1780300800
    assert units.parse_time("1780300800") == 1780300800
    for bad in ("2026-02-30T00:00Z", "yesterday", "2026-06-01T25:00Z"):
        with pytest.raises(units.UnitError):
            units.parse_time(bad)
    assert units.format_time(1780300800) == "2026-06-01T08:00:00Z"
    assert units.format_time(None) == "-"
    assert units.parse_centi("-0.05") == -5


def test_trust_carries_the_configured_scopes(
    gwdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = gwdir / "gateway.toml"
    text = (
        conf.read_text()
        .replace('devices = ["*"]', 'devices = ["tl-*", "rd-*"]')
        .replace('places = ["*"]', 'places = ["acme:*"]')
        .replace('gtins = ["*"]', 'gtins = ["0950600013435*"]')
    )
    conf.write_text(text)
    cfg = load_config(conf)
    assert cfg.registry.places == ["acme:*"]
    capsys.readouterr()
    assert coldtrace(["gateway", "trust", "-c", str(conf)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert_trust(doc)
    assert doc["registries"][0]["places"] == ["acme:*"]
    assert doc["registries"][0]["devices"] == ["tl-*", "rd-*"]
    conf.write_text(text.replace('places = ["acme:*"]', 'places = "acme:*"'))
    with pytest.raises(ConfigError, match="places must be a list"):
        load_config(conf)
