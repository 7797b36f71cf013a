"""The broker configuration files, credentials, certificates and CLI (no broker running)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.transport import broker as gb
from gateway.transport.broker import (
    BrokerError,
    BrokerUser,
    QueueLimits,
    TLSListener,
    make_ca,
    make_cert,
    read_credentials,
    register_broker_commands,
    write_config,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_rendered_config_sets_every_limit_explicitly(tmp_path: Path) -> None:
    conf = write_config(tmp_path, port=18830, users=[BrokerUser("gw@site", "gateway")])
    text = conf.read_text()
    lines = directives(text)
    assert "{{" not in text
    for line in (
        "max_queued_messages 100000",
        "max_queued_bytes 67108864",
        "max_inflight_messages 1000",
        "queue_qos0_messages false",
        "persistence true",
        "allow_anonymous false",
        "listener 18830 127.0.0.1",
        "use_username_as_clientid true",
        f"password_file {tmp_path.resolve() / 'passwd'}",
        f"acl_file {tmp_path.resolve() / 'acl'}",
    ):
        assert line in lines, line
    assert (tmp_path / "data").is_dir()


def test_rendering_changes_only_the_placeholders(tmp_path: Path) -> None:
    conf = write_config(tmp_path, port=1883)
    template = (gb.TEMPLATE_DIR / "mosquitto.conf").read_text().splitlines()
    rendered = conf.read_text().splitlines()
    fixed = [line for line in template if "{{" not in line and line.strip()]
    assert [line for line in rendered if line in fixed] == fixed


def test_queue_limits_are_configurable_but_never_unlimited(tmp_path: Path) -> None:
    q = QueueLimits(
        max_queued_messages=250_000, max_queued_bytes=1 << 28, max_inflight_messages=2000
    )
    lines = directives(write_config(tmp_path, port=1883, queue=q).read_text())
    assert "max_queued_messages 250000" in lines
    assert "max_inflight_messages 2000" in lines
    for bad in ({"max_queued_messages": 0}, {"max_queued_bytes": -1}, {"max_inflight_messages": 0}):
        with pytest.raises(BrokerError):
            QueueLimits(**bad)  # type: ignore[arg-type]


def test_acl_has_device_patterns_and_gateway_sections(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        port=1883,
        gateway_id="wh-7",
        users=[
            BrokerUser("gw@wh-7", "gateway"),
            BrokerUser("ops@wh-7", "monitor"),
            BrokerUser("tl-1", "device"),
        ],
    )
    lines = directives((tmp_path / "acl").read_text())
    assert lines[:4] == [
        "pattern write ct/v1/%u/rec",
        "pattern write ct/v1/%u/state",
        "pattern read ct/v1/%u/ack",
        "pattern read ct/v1/%u/cmd",
    ]
    gw = lines.index("user gw@wh-7")
    assert lines[gw + 1 : gw + 7] == [
        "topic read ct/v1/+/rec",
        "topic read ct/v1/+/state",
        "topic readwrite ct/v1/+/ack",
        "topic write ct/v1/+/cmd",
        "topic write ct/v1/gw/wh-7/alerts",
        "topic read $SYS/broker/#",
    ]
    ops = lines.index("user ops@wh-7")
    assert lines[ops + 1 : ops + 4] == [
        "topic read ct/v1/gw/+/alerts",
        "topic read ct/v1/+/state",
        "topic read $SYS/broker/#",
    ]
    # Devices have no user section: the patterns are all they get.
    assert "user tl-1" not in lines


def test_password_file_is_hashed_and_private(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        port=1883,
        users=[BrokerUser("gw@x", "gateway", "given-secret"), BrokerUser("tl-1", "device")],
    )
    passwd = (tmp_path / "passwd").read_text()
    entries = dict(line.split(":", 1) for line in passwd.splitlines())
    assert set(entries) == {"gw@x", "tl-1"}
    assert all(h.startswith("$7$") for h in entries.values())  # PBKDF2-SHA512
    assert "given-secret" not in passwd
    assert mode(tmp_path / "passwd") == 0o600
    # Only generated passwords are kept, privately.
    creds = read_credentials(tmp_path)
    assert set(creds) == {"tl-1"} and len(creds["tl-1"]) >= 20
    assert mode(tmp_path / "credentials.json") == 0o600
    assert creds["tl-1"] not in passwd


def test_generated_passwords_survive_a_re_render(tmp_path: Path) -> None:
    write_config(tmp_path, users=[BrokerUser("tl-1")])
    first = read_credentials(tmp_path)
    write_config(tmp_path, users=[BrokerUser("tl-1"), BrokerUser("tl-2")])
    second = read_credentials(tmp_path)
    assert second["tl-1"] == first["tl-1"] and set(second) == {"tl-1", "tl-2"}


def test_tls_only_config(tmp_path: Path) -> None:
    tls = TLSListener(
        Path("ca.pem"),
        Path("server.pem"),
        Path("server.key"),
        port=8883,
        crlfile=Path("revoked.pem"),
    )
    lines = directives(
        write_config(
            tmp_path, port=None, tls=tls, users=[BrokerUser("gw@x", "gateway")]
        ).read_text()
    )
    listener = lines.index("listener 8883 0.0.0.0")
    block = lines[listener:]
    for want in (
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        "tls_version tlsv1.2",
    ):
        assert want in block
    assert any(line.startswith("crlfile ") and line.endswith("revoked.pem") for line in block)
    assert sum(line.startswith("listener ") for line in lines) == 1
    assert (tmp_path / "passwd").read_text() == ""  # certificate login only
    with pytest.raises(BrokerError, match="no listener"):
        write_config(tmp_path / "none", port=None)


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("gateway", "gateway"),  # a valid device id: a device could be registered as it
        ("gw:1", "gateway"),  # ':' breaks the password file
        ("gw/1", "monitor"),  # topic separator
        ("TL-A", "device"),  # device ids are lower case (§1)
        ("a" * 33, "device"),
        ("+", "device"),
        ("tl-1", "admin"),
    ],
)
def test_unusable_user_names_are_refused(name: str, role: str) -> None:
    with pytest.raises(BrokerError):
        BrokerUser(name, role)  # type: ignore[arg-type]


def test_duplicate_users_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="duplicate"):
        write_config(tmp_path, users=[BrokerUser("tl-1"), BrokerUser("tl-1")])


def test_ca_and_certificates(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    server = make_cert(
        ca,
        tmp_path,
        name="broker.example",
        kind="server",
        hosts=["broker.example", "127.0.0.1"],
        stem="server",
    )
    device = make_cert(ca, tmp_path, name="tl-7f3a21", kind="device")
    gateway = make_cert(ca, tmp_path, name="gw@wh-7", kind="gateway")
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for pair in (ca, server, device, gateway):
        assert mode(pair.key) == 0o600, pair.key
        assert b"PRIVATE KEY" in pair.key.read_bytes()
    for pair, cn, eku in (
        (server, "broker.example", ExtendedKeyUsageOID.SERVER_AUTH),
        (device, "tl-7f3a21", ExtendedKeyUsageOID.CLIENT_AUTH),
        (gateway, "gw@wh-7", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [eku]
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    san = (
        x509.load_pem_x509_certificate(server.cert.read_bytes())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert san.get_values_for_type(x509.DNSName) == ["broker.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_certificates_are_never_overwritten_by_accident(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    with pytest.raises(BrokerError, match="overwrite"):
        make_ca(tmp_path)
    make_cert(ca, tmp_path, name="tl-1", kind="device")
    with pytest.raises(BrokerError, match="overwrite"):
        make_cert(ca, tmp_path, name="tl-1", kind="device")
    make_cert(ca, tmp_path, name="tl-1", kind="device", overwrite=True)


def test_certificate_names_follow_the_account_rules(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    with pytest.raises(BrokerError):
        make_cert(ca, tmp_path, name="gateway", kind="gateway")  # a device id
    with pytest.raises(BrokerError):
        make_cert(ca, tmp_path, name="gw@x", kind="device")  # not a device id


def cli() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coldtrace")
    top = parser.add_subparsers(dest="command")
    gw = top.add_parser("gateway").add_subparsers(dest="gateway_command")
    register_broker_commands(gw)
    return parser


def test_cli_writes_config_and_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = cli()
    certs = tmp_path / "tls"
    args = parser.parse_args(
        [
            "gateway",
            "certs",
            "--dir",
            str(certs),
            "--server",
            "localhost",
            "--server",
            "127.0.0.1",
            "--device",
            "tl-1",
            "--gateway",
            "gw@x",
        ]
    )
    assert args.func(args) == 0
    assert {p.name for p in certs.iterdir()} >= {
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "tl-1.pem",
        "tl-1.key",
        "gw@x.pem",
        "gw@x.key",
    }
    conf_dir = tmp_path / "broker"
    args = parser.parse_args(
        [
            "gateway",
            "broker",
            "--write-only",
            "--dir",
            str(conf_dir),
            "--port",
            "11883",
            "--tls-port",
            "18883",
            "--tls-dir",
            str(certs),
            "--device",
            "tl-1",
            "--gateway",
            "gw@x",
            "--max-queued-messages",
            "5000",
        ]
    )
    assert args.func(args) == 0
    lines = directives((conf_dir / "mosquitto.conf").read_text())
    assert "listener 11883 127.0.0.1" in lines and "listener 18883 0.0.0.0" in lines
    assert "max_queued_messages 5000" in lines
    assert set(json.loads((conf_dir / "credentials.json").read_text())["users"]) == {"tl-1", "gw@x"}
    assert "mosquitto.conf" in capsys.readouterr().out


def test_cli_reports_errors_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = cli().parse_args(
        ["gateway", "broker", "--write-only", "--dir", str(tmp_path), "--gateway", "gateway"]
    )
    assert args.func(args) == 1
    assert "valid device id" in capsys.readouterr().err
