"""The device's identity from the host: ``coldtrace device atecc-setup`` and
``provision`` running the firmware's own code (ct_atecc_setup, ct_provision,
ct_atecc) in-process against the fake ATECC608B, the TLS and account flags
of ``provision``, and the warning about a key left readable in flash."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import json
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import atecc as host_atecc
from gateway import device_tls
from gateway import provision as prov
from gateway.transport.broker import make_ca, make_cert
from protocol.cli import main as cli_main
from tests.firmware.test_provision import BOARD, FAKE_MPREMOTE

ROOT = Path(__file__).resolve().parents[2]
BASE = json.loads((ROOT / "firmware" / "config.json").read_text())
for p in (ROOT / "firmware" / "lib", ROOT / "tests" / "firmware" / "fakes"):
    if str(p) not in sys.path:
        sys.path.append(str(p))
from fake_atecc import FakeI2C  # noqa: E402


class BoardTransport:
    """A board in a directory: files are files, ``exec`` runs the firmware's
    code in this process (cwd = the board's root) with a fake ``machine``
    whose I2C bus is ``bus``; an exception is a failed mpremote call."""

    def __init__(
        self, root: Path, bus: FakeI2C, efuse: dict[int, int] | None = None, chip: str = "ESP32S3"
    ) -> None:
        self.root = root
        self.bus = bus
        self.machine = types.ModuleType("machine")
        self.machine.I2C = lambda *a, **kw: bus  # type: ignore[attr-defined]
        self.machine.Pin = lambda n, *a, **kw: n  # type: ignore[attr-defined]
        self.machine.mem32 = efuse or {}  # type: ignore[attr-defined]
        self.chip = chip
        self.execs: list[str] = []

    def put(self, data: bytes, remote: str) -> None:
        p = self.root / remote
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def put_files(self, files: list[Path], remote_dir: str) -> None:
        for f in files:
            self.put(f.read_bytes(), remote_dir + "/" + f.name)

    def mkdir(self, remote: str) -> None:
        (self.root / remote).mkdir(parents=True, exist_ok=True)

    def exec(self, code: str, timeout: float = 60) -> str:
        self.execs.append(code)
        out = io.StringIO()
        cwd = os.getcwd()
        old = sys.modules.get("machine")
        sys.modules["machine"] = self.machine
        sys.implementation._machine = f"Generic {self.chip} module with {self.chip}"  # type: ignore[attr-defined]
        try:
            os.chdir(self.root)
            with contextlib.redirect_stdout(out):
                exec(compile(code, "<board>", "exec"), {})  # the board's REPL
        except Exception as e:
            raise prov.ProvisionError(f"board: {e!r}") from e
        finally:
            os.chdir(cwd)
            del sys.implementation._machine  # type: ignore[attr-defined]
            if old is None:
                sys.modules.pop("machine", None)
            else:
                sys.modules["machine"] = old
        return out.getvalue()

    def reset(self) -> None:
        return None


def _cfg(**kw: Any) -> dict[str, Any]:
    base = {"id": "tl-5e0001", "role": "logger", "board": "esp32s3"}
    base.update(kw)
    return prov.device_config(BASE, **base)


def test_atecc_setup_then_provision_registers_the_key_the_chip_made(tmp_path: Path) -> None:
    bus = FakeI2C(blank=True, busy_polls=1)  # real time here: keep the polling short
    t = BoardTransport(tmp_path / "board", bus)
    t.mkdir("")
    dry = host_atecc.atecc_setup(t, {"board": "esp32s3", "role": "logger"}, slot=0)
    assert dry["public_key"] is None and dry["plan"] == ["05:83200000", "18:33000000"]
    assert dry["config"]["config_locked"] is False and bus.config[87] == 0x55
    assert (tmp_path / "board" / "lib" / "ct_atecc_setup.py").exists()
    done = host_atecc.atecc_setup(t, {"board": "esp32s3"}, slot=0, lock=True, copy=False)
    pub = done["public_key"]
    assert pub is not None and len(pub) == 65
    assert bus.config[86] == bus.config[87] == 0x00
    # the zone as read before this run changed it
    assert not done["config"]["config_locked"] and done["config"]["i2c_address"] == 0x60
    # provision: the board's ct_provision reads the chip's key and signs the challenge with it
    reg = tmp_path / "provisioned.json"
    cfg = _cfg(signer="atecc", atecc={"bus": 0, "addr": 0x60, "slot": 0})
    entry = prov.provision(t, cfg, reg, org="acme")
    assert base64.b64decode(entry["key"]) == pub
    assert not (tmp_path / "board" / "ct" / "key.p256").exists()  # no key in flash
    assert [c[0] for c in bus.commands].count(0x41) == 1  # the challenge, signed by the chip
    assert host_atecc.flash_warning(t, cfg, stated=False) is None  # key in the chip


def test_atecc_setup_reports_a_refusal_from_the_board(tmp_path: Path) -> None:
    bus = FakeI2C(blank=True, busy_polls=1)  # real time here: keep the polling short
    bus.config[6] = 0x50  # an ATECC508A
    t = BoardTransport(tmp_path, bus)
    with pytest.raises(prov.ProvisionError, match="not an ATECC608"):
        host_atecc.atecc_setup(t, {"board": "esp32s3"}, slot=0, lock=True)
    assert bus.config[87] == 0x55


@pytest.mark.parametrize(
    ("chip", "efuse", "stated", "warned"),
    [
        ("ESP32S3", {0x60007034: 0}, False, "off"),
        ("ESP32S3", {0x60007034: 1 << 18}, False, None),
        ("ESP32", {0x3FF5A000: 1 << 20}, False, None),
        ("ESP32", {0x3FF5A000: 3 << 20}, False, "off"),
        ("ESP32C3", {}, False, "not known to be on"),
        ("ESP32S3", {0x60007034: 0}, True, None),
    ],
)
def test_flash_key_warning(
    tmp_path: Path, chip: str, efuse: dict[int, int], stated: bool, warned: str | None
) -> None:
    t = BoardTransport(tmp_path, FakeI2C(), efuse, chip)
    w = host_atecc.flash_warning(t, {"signer": "p256"}, stated)
    if warned is None:
        assert w is None
    else:
        assert w is not None and f"flash encryption is {warned}" in w and "USB" in w


# --- TLS files and broker account ----------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    dev = make_cert(ca, d, name="tl-5e0001", kind="device")
    other = make_cert(ca, d, name="tl-5e0002", kind="device")
    rogue = make_ca(d / "rogue")
    rogue_dev = make_cert(rogue, d / "rogue", name="tl-5e0001", kind="device")
    yield {
        "ca": ca.cert,
        "ca_key": ca.key,
        "cert": dev.cert,
        "key": dev.key,
        "other": other.cert,
        "other_key": other.key,
        "rogue_cert": rogue_dev.cert,
        "rogue_key": rogue_dev.key,
    }


def test_tls_files_checks_the_certificate_against_the_ca_and_the_device(
    pki: dict[str, Path],
) -> None:
    f = device_tls.tls_files("tl-5e0001", pki["ca"], pki["cert"], pki["key"])
    assert f == {
        "ct/ca.pem": pki["ca"].read_bytes(),
        "ct/tls.pem": pki["cert"].read_bytes(),
        "ct/tls.key": pki["key"].read_bytes(),
    }
    bad = [
        ((pki["ca"], pki["other"], pki["other_key"]), "not 'tl-5e0001'"),
        ((pki["ca"], pki["rogue_cert"], pki["rogue_key"]), "not issued by"),
        ((pki["ca"], pki["cert"], pki["other_key"]), "does not match"),
        ((pki["cert"], pki["cert"], pki["key"]), "not a CA"),
        ((pki["ca"], pki["cert"], None), "go together"),
        ((pki["ca"], pki["cert"], pki["ca"]), "not an unencrypted PEM private key"),
        ((pki["ca"].parent / "none.pem", None, None), "No such file"),
    ]
    for (ca, cert, key), msg in bad:
        with pytest.raises(device_tls.DeviceTLSError, match=msg):
            device_tls.tls_files("tl-5e0001", ca, cert, key)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3000)
    with pytest.raises(device_tls.DeviceTLSError, match="not now"):
        device_tls.tls_files("tl-5e0001", pki["ca"], pki["cert"], pki["key"], now=later)


def test_ca_key_issues_a_certificate_for_the_device(pki: dict[str, Path]) -> None:
    from cryptography import x509

    f = device_tls.tls_files("tl-5e0009", pki["ca"], ca_key=pki["ca_key"])
    c = x509.load_pem_x509_certificate(f["ct/tls.pem"])
    assert c.subject.rfc4514_string() == "CN=tl-5e0009"
    c.verify_directly_issued_by(x509.load_pem_x509_certificate(pki["ca"].read_bytes()))
    assert b"PRIVATE KEY" in f["ct/tls.key"]


def test_mqtt_settings(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    m = device_tls.mqtt_settings(
        {"host": "h", "port": 1883},
        "tl-1",
        password_file=pw,
        tls={"ct/ca.pem": b"x", "ct/tls.pem": b"y", "ct/tls.key": b"z"},
        server_name="broker.example",
    )
    assert m == {
        "host": "h",
        "port": 8883,
        "user": "tl-1",
        "password": "s3cret",
        "tls": {
            "ca": "ct/ca.pem",
            "cert": "ct/tls.pem",
            "key": "ct/tls.key",
            "server_name": "broker.example",
        },
    }
    assert device_tls.mqtt_settings({}, "tl-1", user="u")["user"] == "u"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(device_tls.DeviceTLSError, match="empty"):
        device_tls.mqtt_settings({}, "tl-1", password_file=tmp_path / "empty")
    with pytest.raises(device_tls.DeviceTLSError, match="needs --ca"):
        device_tls.mqtt_settings({}, "tl-1", server_name="b")


def test_tls_without_ntp_is_warned() -> None:
    tls = {"mqtt": {"tls": {"ca": "ct/ca.pem"}}}
    w = device_tls.clock_warning({**tls, "ntp": ""})
    assert w is not None and "ntp" in w
    assert device_tls.clock_warning({**tls, "ntp": "pool.ntp.org"}) is None
    assert device_tls.clock_warning({"mqtt": {"tls": False}}) is None


def _fake_mpremote(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "fake_board_impl.py").write_text(BOARD)
    state = tmp_path / "board.json"
    exe = tmp_path / "mpremote.py"
    exe.write_text(FAKE_MPREMOTE.format(here=str(tmp_path), state=str(state)))
    return state, f"{sys.executable} {exe}"


def test_cli_writes_tls_files_and_account_to_the_board(
    tmp_path: Path, pki: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state, mp = _fake_mpremote(tmp_path)
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    rc = cli_main(
        [
            "device",
            "provision",
            "--port",
            "/dev/ttyFAKE",
            "--id",
            "tl-5e0001",
            "--registry",
            str(tmp_path / "reg.json"),
            "--mqtt-host",
            "10.0.7.2",
            "--mqtt-password-file",
            str(pw),
            "--ca",
            str(pki["ca"]),
            "--client-cert",
            str(pki["cert"]),
            "--client-key",
            str(pki["key"]),
            "--server-name",
            "broker.wh7.example",
            "--mpremote",
            mp,
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    files = json.loads(state.read_text())["files"]
    conf = json.loads(bytes.fromhex(files["config.json"]))
    assert conf["mqtt"] == {
        "host": "10.0.7.2",
        "port": 8883,
        "tls": {
            "ca": "ct/ca.pem",
            "cert": "ct/tls.pem",
            "key": "ct/tls.key",
            "server_name": "broker.wh7.example",
        },
        "user": "tl-5e0001",
        "password": "hunter2",
    }
    assert bytes.fromhex(files["ct/tls.key"]) == pki["key"].read_bytes()
    assert bytes.fromhex(files["ct/ca.pem"]) == pki["ca"].read_bytes()
    # the fake board cannot say whether flash encryption is on: warned
    assert "WARNING: the device key is stored in flash" in out.err


def test_cli_refuses_a_certificate_for_another_device_before_touching_the_board(
    tmp_path: Path, pki: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state, mp = _fake_mpremote(tmp_path)
    rc = cli_main(
        [
            "device",
            "provision",
            "--port",
            "/dev/ttyFAKE",
            "--id",
            "tl-5e0001",
            "--registry",
            str(tmp_path / "reg.json"),
            "--ca",
            str(pki["ca"]),
            "--client-cert",
            str(pki["other"]),
            "--client-key",
            str(pki["other_key"]),
            "--mpremote",
            mp,
        ]
    )
    assert rc == 1
    assert "is for 'tl-5e0002', not 'tl-5e0001'" in capsys.readouterr().err
    assert not state.exists() and not (tmp_path / "reg.json").exists()


def test_cli_atecc_setup_is_a_device_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli_main(
        ["device", "atecc-setup", "--port", "/dev/ttyX", "--mpremote", "/nonexistent/mpremote"]
    )
    assert rc == 1 and "pip install mpremote" in capsys.readouterr().err
