"""coldtrace device provision against a fake board behind a fake mpremote."""

from __future__ import annotations

import base64
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gateway import provision as prov
from protocol.cli import main as cli_main
from protocol.keys import p256_public_from_sec1

ROOT = Path(__file__).resolve().parents[2]
BASE = json.loads((ROOT / "firmware" / "config.json").read_text())

# The fake board, shared by the in-process transport and the fake mpremote
# executable: files in a dict, a P-256 key made "on the board".
BOARD = textwrap.dedent(
    """
    import re
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    def board_exec(state, code, corrupt=False):
        m = re.search(r"set_ack_key\\('([0-9a-f]{64})'\\)", code)
        if m:
            state["files"]["ack.key"] = m.group(1)
            return "CT-OK\\n"
        m = re.search(r"keygen\\(force=(True|False)\\)", code)
        if m:
            if "key" in state and m.group(1) == "False":
                raise RuntimeError("ProvisionError: a key exists")
            k = ec.generate_private_key(ec.SECP256R1())
            state["key"] = k.private_numbers().private_value
            pub = k.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)
            return "CT-PUBKEY " + pub.hex() + "\\n"
        m = re.search(r"selftest\\('([0-9a-f]{64})'\\)", code)
        if m:
            k = ec.derive_private_key(state["key"], ec.SECP256R1())
            der = k.sign(bytes.fromhex(m.group(1)), ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            if corrupt:
                r ^= 1
            return "CT-SIG " + (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex() + "\\n"
        if "os.mkdir" in code:
            return ""
        raise RuntimeError("unknown code: " + code)
    """
)
ns: dict[str, Any] = {}
exec(BOARD, ns)


class FakeTransport:
    def __init__(self, corrupt: bool = False) -> None:
        self.state: dict[str, Any] = {"files": {}}
        self.dirs: list[str] = []
        self.corrupt = corrupt
        self.resets = 0

    def put(self, data: bytes, remote: str) -> None:
        self.state["files"][remote] = data

    def put_files(self, files: list[Path], remote_dir: str) -> None:
        for f in files:
            self.put(f.read_bytes(), remote_dir + "/" + f.name)

    def mkdir(self, remote: str) -> None:
        self.dirs.append(remote)

    def exec(self, code: str, timeout: float = 60) -> str:
        out: str = ns["board_exec"](self.state, code, self.corrupt)
        return out

    def reset(self) -> None:
        self.resets += 1


def cfg(**kw: Any) -> dict[str, Any]:
    base = {"id": "tl-7f3a21", "role": "logger", "board": "esp32s3"}
    base.update(kw)
    return prov.device_config(BASE, **base)


def test_provision_copies_firmware_makes_key_and_registers(tmp_path: Path) -> None:
    t = FakeTransport()
    reg = tmp_path / "provisioned.json"
    entry = prov.provision(t, cfg(place="truck-12"), reg, org="acme", cal=1042)
    files = t.state["files"]
    assert "lib/ct_app.py" in files and "main.py" in files and "boot.py" in files
    assert files["lib/ct_ds18b20.py"] == (ROOT / "firmware/lib/ct_ds18b20.py").read_bytes()
    conf = json.loads(files["config.json"])
    assert conf["id"] == "tl-7f3a21" and conf["place"] == "truck-12"
    doc = json.loads(reg.read_text())
    assert doc["devices"] == [entry]
    assert entry["device"] == "tl-7f3a21" and entry["role"] == "logger"
    assert entry["org"] == "acme" and entry["cal"] == 1042
    pub = base64.b64decode(entry["key"])
    assert len(pub) == 65 and pub[0] == 4
    p256_public_from_sec1(pub)
    assert base64.b64decode(entry["ack_key"]).hex() == files["ack.key"]
    assert reg.stat().st_mode & 0o077 == 0


def test_registration_file_loads_in_the_gateway(tmp_path: Path) -> None:
    reg = tmp_path / "p.json"
    prov.provision(FakeTransport(), cfg(), reg, org="acme")
    from gateway.evidence.registry import load_provisioning

    (e,) = load_provisioning(reg)
    assert e["device"] == "tl-7f3a21" and len(base64.b64decode(e["ack_key"])) == 32


def test_id_is_never_reused(tmp_path: Path) -> None:
    reg = tmp_path / "p.json"
    prov.provision(FakeTransport(), cfg(), reg, org="acme")
    with pytest.raises(prov.ProvisionError, match="never reused"):
        prov.provision(FakeTransport(), cfg(), reg, org="acme")


def test_config_only_updates_place_and_cal(tmp_path: Path) -> None:
    reg = tmp_path / "p.json"
    first = prov.provision(FakeTransport(), cfg(place="a"), reg, org="acme")
    t = FakeTransport()
    e = prov.provision(t, cfg(place="b"), reg, org="acme", cal=7, config_only=True)
    assert e["key"] == first["key"] and e["place"] == "b" and e["cal"] == 7
    assert list(t.state["files"]) == ["config.json"]


def test_broken_signer_is_refused(tmp_path: Path) -> None:
    reg = tmp_path / "p.json"
    with pytest.raises(prov.ProvisionError, match="does not verify"):
        prov.provision(FakeTransport(corrupt=True), cfg(), reg, org="acme")
    assert not reg.exists()


def test_bad_ids_and_roles_refused() -> None:
    with pytest.raises(prov.ProvisionError):
        cfg(id="Bad Id")
    with pytest.raises(prov.ProvisionError):
        cfg(role="gateway")
    with pytest.raises(prov.ProvisionError, match="place"):
        cfg(role="reader")


FAKE_MPREMOTE = """
import json, os, sys
sys.path.insert(0, {here!r})
from fake_board_impl import board_exec
args = sys.argv[1:]
state_path = {state!r}
try:
    state = json.load(open(state_path))
except OSError:
    state = {{"files": {{}}}}
log = open(state_path + ".log", "a")
log.write(json.dumps(args) + "\\n")
assert args[0] == "connect" and args[1] == "/dev/ttyFAKE", args
op = args[2:]
if op[:2] == ["fs", "cp"]:
    dest = op[-1].lstrip(":")
    for src in op[2:-1]:
        name = dest + os.path.basename(src) if dest.endswith("/") else dest
        state["files"][name] = open(src, "rb").read().hex()
elif op[0] == "exec":
    try:
        sys.stdout.write(board_exec(state, op[1]))
    except RuntimeError as e:
        sys.stderr.write("Traceback: " + str(e)); sys.exit(1)
elif op[0] == "reset":
    state["reset"] = True
json.dump(state, open(state_path, "w"))
"""


def test_cli_with_fake_mpremote_executable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fake_board_impl.py").write_text(BOARD)
    state = tmp_path / "board.json"
    exe = tmp_path / "mpremote.py"
    exe.write_text(FAKE_MPREMOTE.format(here=str(tmp_path), state=str(state)))
    reg = tmp_path / "var" / "provisioned.json"
    rc = cli_main(
        [
            "device",
            "provision",
            "--port",
            "/dev/ttyFAKE",
            "--id",
            "tr-dock3",
            "--role",
            "reader",
            "--place",
            "urn:epc:id:sgln:9506000.13435.0",
            "--org",
            "acme",
            "--registry",
            str(reg),
            "--wifi-ssid",
            "coldnet",
            "--wifi-key",
            "secret",
            "--mqtt-host",
            "gw.local",
            "--mpremote",
            f"{sys.executable} {exe}",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "ack_key" not in out.out  # the secret is not printed
    board = json.loads(state.read_text())
    conf = json.loads(bytes.fromhex(board["files"]["config.json"]))
    assert conf["role"] == "reader" and conf["wifi"]["ssid"] == "coldnet"
    assert conf["mqtt"]["host"] == "gw.local"
    assert board["reset"] is True
    assert "lib/ct_app.py" in board["files"] and "main.py" in board["files"]
    log = [json.loads(x) for x in (tmp_path / "board.json.log").read_text().splitlines()]
    assert all(a[:2] == ["connect", "/dev/ttyFAKE"] for a in log)
    (e,) = json.loads(reg.read_text())["devices"]
    assert e["role"] == "reader" and e["device"] == "tr-dock3"


def test_cli_reports_missing_mpremote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(
        [
            "device",
            "provision",
            "--port",
            "/dev/ttyX",
            "--id",
            "tl-1",
            "--registry",
            str(tmp_path / "r.json"),
            "--mpremote",
            "/nonexistent/mpremote",
        ]
    )
    assert rc == 1
    assert "pip install mpremote" in capsys.readouterr().err


def test_signature_check_is_real() -> None:
    k = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives import serialization

    pub = k.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    msg = b"x" * 32
    r, s = decode_dss_signature(k.sign(msg, ec.ECDSA(hashes.SHA256())))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    prov._verify_challenge(pub, msg, sig)
    with pytest.raises(prov.ProvisionError):
        prov._verify_challenge(pub, msg, sig[:-1] + bytes([sig[-1] ^ 1]))
    assert re.fullmatch(r"[0-9a-f]{130}", pub.hex())
