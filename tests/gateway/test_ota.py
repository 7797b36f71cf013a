"""Signed firmware releases (gateway/ota.py, docs/protocol.md §5.4): the host's
release is what the firmware's ct_ota accepts, bad releases and requests are
refused with a reason, and end to end a real Mosquitto and a real gateway serve
a release to a simulated device (the firmware under CPython) that installs it,
reports it in its status records, and refuses one signed by another key."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest

from gateway import ota
from gateway.dashboard import DashboardData
from gateway.evidence.registry import RegistrySigner
from gateway.evidence.store import open_store
from protocol.cli import main as coldtrace
from protocol.cose import parse_sign1
from protocol.keys import (
    generate_p256,
    load_p256_private_key,
    p256_public_to_sec1,
    save_private_key,
)
from protocol.record import EVENT_UPDATE_CONFIRMED, EVENT_UPDATE_REFUSED, decode_payload

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "firmware" / "lib"


def _fw() -> Any:
    for p in (str(ROOT / "firmware" / "sim"), str(LIB)):
        if p not in sys.path:
            sys.path.insert(0, p)
    import ct_fs
    import ct_ota

    return ct_ota, ct_fs


def test_release_of_the_firmware_verifies_on_the_device_and_on_the_host(tmp_path: Path) -> None:
    key = generate_p256()
    rel = ota.make_release(key, 7, "coldtrace-0.7.0", [LIB], tmp_path / "rel")
    assert {n for n, _ in rel.files} == {p.name for p in LIB.glob("*.py")}
    again = ota.load_release(tmp_path / "rel", key.public_key())
    assert again == rel
    ct_ota, _ = _fw()
    pub = p256_public_to_sec1(key.public_key())
    ver, label, files = ct_ota.verify_manifest(rel.manifest, pub)
    assert (ver, label) == (7, "coldtrace-0.7.0")
    assert files == [(n, len(d), hashlib.sha256(d).digest()) for n, d in rel.files]
    other = p256_public_to_sec1(generate_p256().public_key())
    with pytest.raises(ct_ota.OtaError) as e:
        ct_ota.verify_manifest(rel.manifest, other)
    assert e.value.args[0] == ct_ota.R_SIGNATURE
    with pytest.raises(ota.OtaError, match="signature"):
        ota.load_release(tmp_path / "rel", generate_p256().public_key())


def test_release_refuses_bad_input(tmp_path: Path) -> None:
    key = generate_p256()
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "Bad-Name.py").write_text("x")
    with pytest.raises(ota.OtaError, match="file name"):
        ota.make_release(key, 2, "l", [tmp_path / "x"], tmp_path / "rel")
    with pytest.raises(ota.OtaError, match="version 0"):
        ota.make_release(key, 0, "l", [LIB / "ct_ota.py"], tmp_path / "rel")
    with pytest.raises(ota.OtaError, match="no such file"):
        ota.make_release(key, 2, "l", [tmp_path / "nothing"], tmp_path / "rel")
    ota.make_release(key, 2, "l", [LIB / "ct_ota.py"], tmp_path / "rel")
    f = tmp_path / "rel" / "files" / "ct_ota.py"
    f.write_bytes(f.read_bytes() + b"#")
    with pytest.raises(ota.OtaError, match="does not match the manifest"):
        ota.load_release(tmp_path / "rel")
    for junk, why in ((b"\xff", "not a manifest COSE_Sign1"), (b"\x80", "tag 18"),
                      (bytes.fromhex("d284404040a0"), "byte strings")):
        (tmp_path / "rel" / "manifest.cose").write_bytes(junk)
        with pytest.raises(ota.OtaError, match=why):
            ota.load_release(tmp_path / "rel")


def test_chunk_answers_and_refusals(tmp_path: Path) -> None:
    rel = ota.make_release(generate_p256(), 3, "l", [LIB / "ct_ota.py", LIB / "ct_cbor.py"],
                           tmp_path / "rel")
    _fw()
    import ct_record

    k = bytes(range(32))
    msg = ota.answer(rel, cbor2.dumps({1: 3, 2: 2, 3: 100, 4: 1024}), "gw-1", k)
    _, f = ct_record.verify_mac0(msg, k)  # what the device checks
    assert f == {1: 3, 2: 2, 3: 100, 4: rel.files[1][1][100:1124]}
    for req, why in (({1: 2, 2: 1, 3: 0, 4: 10}, "version 2"),
                     ({1: 3, 2: 3, 3: 0, 4: 10}, "file index 3"),
                     ({1: 3, 2: 0, 3: 0, 4: 1025}, "length 1025"),
                     ({1: 3, 2: 1, 3: 10**6, 4: 10}, "offset"),
                     ({1: 3, 2: 1}, "chunk request is")):
        with pytest.raises(ota.OtaError, match=why):
            ota.answer(rel, cbor2.dumps(req), "gw-1", k)
    with pytest.raises(ota.OtaError, match="chunk request"):
        ota.answer(rel, b"\xff", "gw-1", k)


def test_gateway_ota_sends_each_offer_once_with_rising_counters(tmp_path: Path) -> None:
    import json

    _fw()
    import ct_record

    rel = ota.make_release(generate_p256(), 3, "l", [LIB / "ct_ota.py"], tmp_path / "rel")
    keys = {"tl-a": bytes(32), "tl-b": bytes(range(32))}
    sent: list[tuple[str, bytes]] = []
    g = ota.GatewayOta(tmp_path / "gw", "gw-1", lambda: dict(keys),
                       lambda t, m: sent.append((t, m)))
    assert g.poll() == 0
    ota.record_offer(tmp_path / "gw", tmp_path / "rel", ["tl-a", "tl-c"])
    assert g.poll() == 1 and g.poll() == 0  # tl-c has no ack key (not registered): waits
    ((topic, msg),) = sent
    assert topic == "ct/v1/tl-a/cmd"
    _, f = ct_record.verify_mac0(msg, keys["tl-a"])
    assert (f[20], f[21], f[22]) == (3, rel.manifest_hash, len(rel.manifest))
    keys["tl-c"] = bytes([7]) * 32
    g.KEYS_TTL = 0.0
    ota.record_offer(tmp_path / "gw", tmp_path / "rel", ["tl-a"])  # offered again
    assert g.poll() == 2
    counters = [ct_record.verify_mac0(m, keys[t.split("/")[2]])[1][1] for t, m in sent]
    assert counters == sorted(set(counters)) and counters[0] >= int(time.time()) - 5
    st = json.loads((tmp_path / "gw" / "ota" / "sent.json").read_text())
    assert st["counter"] == counters[-1] and st["tl-a"] == 2 and st["tl-c"] == 1
    # a fresh instance (a restart) sends nothing twice and continues the counter
    g2 = ota.GatewayOta(tmp_path / "gw", "gw-1", lambda: dict(keys),
                        lambda t, m: sent.append((t, m)))
    assert g2.poll() == 0
    # chunk requests: answered for an offered device, refused (logged) otherwise
    assert g.handle("ct/v1/tl-a/fwreq", cbor2.dumps({1: 3, 2: 1, 3: 0, 4: 16}))
    assert sent[-1][0] == "ct/v1/tl-a/fw" and g.served == 1
    assert g.handle("ct/v1/tl-b/fwreq", cbor2.dumps({1: 3, 2: 1, 3: 0, 4: 16}))
    assert g.refused == 1 and sent[-1][0] == "ct/v1/tl-a/fw"
    assert not g.handle("ct/v1/tl-a/rec", b"")


def test_device_release_and_provision_pin_from_the_command_line(tmp_path: Path) -> None:
    key = generate_p256()
    save_private_key(key, tmp_path / "release.pem")
    assert coldtrace(["device", "release", "--key", str(tmp_path / "release.pem"), "--version",
                      "4", "--files", str(LIB), "--out", str(tmp_path / "rel")]) == 0
    rel = ota.load_release(tmp_path / "rel", load_p256_private_key(tmp_path / "release.pem")
                           .public_key())
    assert rel.version == 4 and rel.label == "coldtrace-4"
    pin = ota.release_pin(tmp_path / "release.pem", {"k": 5})
    assert pin == {"k": 5, "key": p256_public_to_sec1(key.public_key()).hex()}
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ota.OtaError, match="not a PEM"):
        ota.release_pin(tmp_path / "junk.pem")
    assert coldtrace(["device", "release", "--key", str(tmp_path / "junk.pem"), "--version",
                      "4", "--files", str(LIB), "--out", str(tmp_path / "r2")]) == 1


def test_provision_pins_the_release_key(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from tests.firmware.test_provision import BOARD, FAKE_MPREMOTE

    (tmp_path / "fake_board_impl.py").write_text(BOARD)
    state = tmp_path / "board.json"
    exe = tmp_path / "mpremote.py"
    exe.write_text(FAKE_MPREMOTE.format(here=str(tmp_path), state=str(state)))
    key = generate_p256()
    save_private_key(key, tmp_path / "release.pem")
    args = ["device", "provision", "--port", "/dev/ttyFAKE", "--id", "tl-rel1", "--role",
            "logger", "--registry", str(tmp_path / "reg.json"), "--mpremote",
            f"{sys.executable} {exe}", "--release-key"]
    assert coldtrace([*args, str(tmp_path / "release.pem")]) == 0, capsys.readouterr().err
    conf = json.loads(bytes.fromhex(json.loads(state.read_text())["files"]["config.json"]))
    assert conf["ota"]["key"] == p256_public_to_sec1(key.public_key()).hex()
    (tmp_path / "junk.pem").write_text("junk")
    assert coldtrace([*args, str(tmp_path / "junk.pem")]) == 1
    assert "not a PEM P-256 key" in capsys.readouterr().err


def test_boot_selects_the_slot_from_config(tmp_path: Path, monkeypatch: Any) -> None:
    import json

    ct_ota = _fw()[0]
    base = str(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"ota": {"k": 1, "base": base}}))
    monkeypatch.chdir(tmp_path)
    assert ct_ota.boot() == base + "/lib"
    (tmp_path / "ota").mkdir()
    ptr = {"cur": "", "ver": 0, "try": "a", "tver": 2, "tlab": "x", "n": 0, "hi": 0}
    (tmp_path / "ota" / "ptr").write_text(json.dumps(ptr))
    assert ct_ota.boot() == base + "/slot_a"  # K = 1 boot on trial
    assert ct_ota.boot() == base + "/lib"  # then rolled back
    assert json.loads((tmp_path / "ota" / "ptr").read_text())["rb"] == 2
    (tmp_path / "config.json").write_text("{broken")
    assert ct_ota.boot() == "/lib"  # unreadable config: defaults, base "" (the board's root)


# --- end to end: real Mosquitto, real gateway, the firmware under CPython -------------


def test_gateway_serves_a_release_to_a_simulated_device(make_broker, make_gateway,
                                                        tmp_path: Path) -> None:
    import json

    from demo import sim

    dev = "tl-ota1"
    broker = make_broker([dev])
    g = make_gateway(broker)
    key = generate_p256()
    root = tmp_path / "dev"
    pub = p256_public_to_sec1(key.public_key()).hex()
    cfg = sim.logger_config(dev, "acme", "127.0.0.1", broker.port, 60, 0, root,
                            ota={"key": pub, "k": 3, "version": 1, "base": str(root)})
    entry = sim.provision_sim_device(root, cfg)
    store = open_store(g.cfg.db_path)
    try:
        RegistrySigner(store, g.cfg.registry.id,
                       load_p256_private_key(g.cfg.registry.key_file)).import_entries([entry])
    finally:
        store.close()
    gw = g.start_gateway()
    try:
        device = sim.SimLogger(cfg, root, sim.client_factory(dev, "127.0.0.1", broker.port,
                                                             broker.password(dev)))
        device.set_clock(int(time.time()))
        device.wake()  # first boot: registered, acked, subscribed (persistent session)
        assert device.acked > 0

        def offer(release: Path) -> None:
            sent = gw.ota.offered
            assert coldtrace(["gateway", "ota", "offer", "-c", str(g.config_path), "--release",
                              str(release), "--device", dev]) == 0
            deadline = time.monotonic() + 10
            while gw.ota.offered == sent and time.monotonic() < deadline:
                time.sleep(0.05)  # the gateway sends it within a second
            assert gw.ota.offered == sent + 1
            time.sleep(0.3)  # the broker queues it in the device's session

        # 1. signed by a key the device does not pin: refused, event 13 detail 1
        ota.make_release(generate_p256(), 2, "evil", [LIB / "ct_ota.py"], tmp_path / "bad")
        offer(tmp_path / "bad")
        device.wake()
        assert (EVENT_UPDATE_REFUSED, 1) in device.events, device.events
        # 2. the real release: downloaded, verified, switched; the next boot is on trial
        rel = ota.make_release(key, 2, "coldtrace-0.2.0", [LIB], tmp_path / "rel")
        offer(tmp_path / "rel")
        device.wake()
        ct_ota, ct_fs = _fw()
        fs = ct_fs.Fs()
        assert ct_ota._ptr(fs, str(root))["try"] == "b"
        d = ct_ota.select(fs, str(root), 3)  # what boot.py does
        assert d == str(root) + "/slot_b"
        for name, data in rel.files:
            assert (Path(d) / name).read_bytes() == data
        assert gw.ota.served >= sum(-(-len(b) // 1024) for _, b in rel.files)
        device.board.cause = 1  # a reset, not a deep-sleep wake: a boot record
        device.wake()  # on trial: uploads at once; the fresh ack is the health check
        assert (EVENT_UPDATE_CONFIRMED, 2) in device.events, device.events
        device.flush()
        deadline = time.monotonic() + 15
        got: dict[int, list[Any]] = {}
        while time.monotonic() < deadline:
            got = {}
            for r in gw.store.newest_of(dev, (3,), 200):
                p = decode_payload(parse_sign1(bytes(r.raw)).payload)
                got.setdefault(p.event, []).append(p)
            if EVENT_UPDATE_CONFIRMED in got:
                break
            time.sleep(0.2)
        assert [p.detail for p in got[EVENT_UPDATE_CONFIRMED]] == [2]
        assert [p.detail for p in got[EVENT_UPDATE_REFUSED]] == [1]
        boots = got[1]  # newest first
        assert (boots[0].fw, boots[0].fwv) == ("coldtrace-0.2.0", 2)
        assert boots[-1].fwv == 1
        view = DashboardData(g.cfg, gw.store).devices(int(time.time()), {})
        assert [d["firmware"] for d in view if d["id"] == dev] == ["coldtrace-0.2.0 (2)"]
        # --all: every device the gateway holds an ack key for; nothing named: an error
        assert coldtrace(["gateway", "ota", "offer", "-c", str(g.config_path), "--release",
                          str(tmp_path / "rel"), "--all"]) == 0
        offers = json.loads((g.cfg.data_dir / "ota" / "offers.json").read_text())
        assert offers[dev] == {"release": str((tmp_path / "rel").resolve()), "n": 3}
        assert coldtrace(["gateway", "ota", "offer", "-c", str(g.config_path), "--release",
                          str(tmp_path / "rel")]) == 1
    finally:
        gw.stop()
