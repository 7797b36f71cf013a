"""The board's MQTT identity for ``coldtrace device provision``: broker
account (``--mqtt-user``, ``--mqtt-password-file``) and TLS files (``--ca``,
``--client-cert``/``--client-key``, or a certificate issued here from the
broker CA with ``--ca-key``).

Everything is checked on the host before anything is written to the board:
the CA is a CA certificate; the client certificate was issued by it, names
the device (CN = device id: the broker's TLS listener takes the CN as the
user name, docs/operations.md §1.2), is valid now and matches its key. The
files go to the board under ``ct/`` (:data:`CA`, :data:`CERT`, :data:`KEY`)
and ``config.json`` ``mqtt.tls`` points at them (firmware/lib/ct_tls.py).

The TLS key only authenticates the MQTT connection; records are signed by
the device key, which never leaves the board. A key issued with ``--ca-key``
is made on the host, copied to the board and not kept on the host.
"""

from __future__ import annotations

import datetime as _dt
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CA = "ct/ca.pem"
CERT = "ct/tls.pem"
KEY = "ct/tls.key"


class DeviceTLSError(Exception):
    """A TLS or account option is unusable; the message names the file and why."""


def _read(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DeviceTLSError(f"{what} {path}: {e.strerror or e}") from e
    if not data.strip():
        raise DeviceTLSError(f"{what} {path} is empty")
    return data


def _cert(data: bytes, what: str, path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as e:
        raise DeviceTLSError(f"{what} {path} is not a PEM certificate: {e}") from e


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def issue(dev: str, ca: Path, ca_key: Path) -> tuple[bytes, bytes]:
    """A device certificate and key from the broker CA (gateway.transport.broker.make_cert),
    made in a temporary directory that is removed."""
    from gateway.transport.broker import BrokerError, CertPair, make_cert

    with tempfile.TemporaryDirectory(prefix="ct-tls-") as d:
        try:
            pair = make_cert(CertPair(Path(ca), Path(ca_key)), d, name=dev, kind="device")
        except (BrokerError, ValueError, OSError) as e:
            raise DeviceTLSError(f"issuing a certificate for {dev} from {ca}: {e}") from e
        return pair.cert.read_bytes(), pair.key.read_bytes()


def tls_files(
    dev: str,
    ca: Path,
    cert: Path | None = None,
    key: Path | None = None,
    ca_key: Path | None = None,
    now: _dt.datetime | None = None,
) -> dict[str, bytes]:
    """{board path: data} for the CA and, if given or issued, the client certificate."""
    ca_pem = _read(ca, "--ca")
    ca_cert = _cert(ca_pem, "--ca", ca)
    try:
        bc = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise DeviceTLSError(f"--ca {ca} is not a CA certificate (basicConstraints CA:TRUE)")
    if (cert is None) != (key is None):
        raise DeviceTLSError("--client-cert and --client-key go together")
    if ca_key is not None and cert is not None:
        raise DeviceTLSError("--ca-key issues a certificate: leave out --client-cert/--client-key")
    files = {CA: ca_pem}
    if ca_key is not None:
        cert_pem, key_pem = issue(dev, ca, ca_key)
        cert = Path("(issued)")
    elif cert is not None and key is not None:
        cert_pem, key_pem = _read(cert, "--client-cert"), _read(key, "--client-key")
    else:
        return files
    c = _cert(cert_pem, "--client-cert", cert)
    try:
        c.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError) as e:
        raise DeviceTLSError(f"--client-cert {cert} was not issued by --ca {ca}: {e!r}") from e
    if _cn(c) != dev:
        raise DeviceTLSError(
            f"--client-cert {cert} is for {_cn(c)!r}, not {dev!r}: the broker takes the "
            "certificate's CN as the user name"
        )
    t = now or _dt.datetime.now(_dt.UTC)
    if not c.not_valid_before_utc <= t <= c.not_valid_after_utc:
        raise DeviceTLSError(
            f"--client-cert {cert} is valid {c.not_valid_before_utc:%Y-%m-%d} to "
            f"{c.not_valid_after_utc:%Y-%m-%d}, not now"
        )
    try:
        k = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError) as e:
        raise DeviceTLSError(f"--client-key {key}: not an unencrypted PEM private key") from e
    if not isinstance(k, ec.EllipticCurvePrivateKey) or k.public_key() != c.public_key():
        raise DeviceTLSError(f"--client-key {key} does not match --client-cert {cert}")
    files[CERT] = cert_pem
    files[KEY] = key_pem
    return files


def mqtt_settings(
    mqtt: dict[str, Any],
    dev: str,
    *,
    user: str | None = None,
    password_file: Path | None = None,
    tls: dict[str, bytes] | None = None,
    server_name: str | None = None,
) -> dict[str, Any]:
    """The board's ``mqtt`` object with the account and the TLS file paths."""
    out = dict(mqtt)
    if password_file is not None:
        pw = _read(password_file, "--mqtt-password-file").decode("utf-8").splitlines()[0]
        if not pw.strip():
            raise DeviceTLSError(f"--mqtt-password-file {password_file}: the first line is empty")
        out["user"] = user or dev
        out["password"] = pw
    elif user is not None:
        out["user"] = user
    if tls:
        t: dict[str, Any] = {"ca": CA}
        if CERT in tls:
            t["cert"], t["key"] = CERT, KEY
        if server_name:
            t["server_name"] = server_name
        out["tls"] = t
        if out.get("port") in (None, 1883):
            out["port"] = 8883
    elif server_name:
        raise DeviceTLSError("--server-name needs --ca (it names the broker's certificate)")
    return out


def clock_warning(cfg: dict[str, Any]) -> str | None:
    """TLS checks certificate dates, and a board's RTC is unset after power
    loss: without NTP the first handshake fails, and the gateway's time,
    which arrives over that connection, never comes."""
    if cfg.get("mqtt", {}).get("tls") and not cfg.get("ntp"):
        return (
            'WARNING: TLS without "ntp" in config.json: a board whose clock is unset '
            "(after power loss) fails the certificate date check and cannot connect"
        )
    return None
