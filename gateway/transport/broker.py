"""The ColdTrace Mosquitto broker: configuration, credentials, certificates, process.

The gateway talks MQTT 3.1.1 to a Mosquitto 2.0 broker (docs/protocol.md §5).
This module writes the project's broker configuration from the templates in
``gateway/mosquitto/`` and starts it for development, tests and the demo; the
same rendered files are what an operator runs (docs/operations.md, "Broker").

Interface (used by the gateway core, the demo and the tests)::

    write_config(dir, *, port=1883, bind="127.0.0.1", tls=None, users=(),
                 gateway_id="local", queue=QueueLimits(), run_as=None,
                 log_dest="stderr") -> Path            # dir/mosquitto.conf
    read_credentials(dir) -> dict[str, str]            # generated passwords
    add_account(dir, name, role="device") -> str       # one more account, its password
    start_broker(conf, *, ready_timeout=10.0) -> BrokerProcess  # started, ready
    BrokerProcess: .start() .wait_ready() .stop() .kill() .restart() .reload()
                   .port .tls_port .host .running .log_text()   (context manager)
    make_ca(dir, *, name=...) -> CertPair              # dir/ca.pem, dir/ca.key
    make_cert(ca, dir, *, name, kind, hosts=()) -> CertPair
    free_port() -> int                                 # a free loopback port
    register_broker_commands(gateway_subparsers)

Notes for the gateway core (gateway/cli.py, gateway/transport/mqtt.py):

- ``register_broker_commands(gateway_subparsers)`` adds ``coldtrace gateway
  broker`` (write the configuration and run Mosquitto in the foreground, or
  ``--write-only``) and ``coldtrace gateway certs`` (make a CA and server,
  device and gateway certificates). Call it from gateway/cli.py with the
  subparsers object of the ``gateway`` command.
- Every listener sets ``use_username_as_clientid``: the broker replaces the
  client id with the user name (on the TLS listener: the certificate CN). The
  gateway's persistent session is therefore keyed by its user name; two
  gateway instances need two user names (they may share a ``$share/...``
  subscription).
- Gateway and monitor user names must NOT be valid device ids (§1): use a
  character outside ``[a-z0-9._-]``, conventionally ``gw@<site>``. This keeps
  the device patterns of the ACL from ever granting a device a gateway's
  rights, and ``make_cert`` from issuing a device certificate with a gateway's
  name.
- ``QueueLimits.max_inflight_messages`` (default 1000) caps how many QoS 1
  messages the broker sends the gateway before it PUBACKs: keep the gateway's
  commit batch at or below it.
- The gateway user may read ``ct/v1/+/rec`` and ``ct/v1/+/state`` (also as
  ``$share/<group>/...``), read and write ``ct/v1/+/ack``, write ``ct/v1/+/cmd``
  and ``ct/v1/gw/<gateway_id>/alerts``, and read ``$SYS/broker/#``: in
  particular ``$SYS/broker/publish/messages/dropped`` (retained, updated every
  10 s), the count of messages the broker dropped for lack of queue space,
  which gateway/metrics.py exports as ``broker_dropped``.

Errors raise ``BrokerError``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "BrokerError",
    "BrokerProcess",
    "BrokerUser",
    "CertPair",
    "QueueLimits",
    "TLSListener",
    "add_account",
    "free_port",
    "is_device_id",
    "make_ca",
    "make_cert",
    "read_credentials",
    "register_broker_commands",
    "start_broker",
    "write_config",
]

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "mosquitto"

Role = Literal["device", "gateway", "monitor"]
ROLES: tuple[str, ...] = ("device", "gateway", "monitor")

_DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
# Gateway/monitor names: printable, no MQTT wildcards or separators, no ':'
# (the password file separator), no spaces; and not a device id.
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")


class BrokerError(Exception):
    """The broker could not be configured, started or stopped."""


def is_device_id(name: str) -> bool:
    """True if ``name`` is a device id by docs/protocol.md §1."""
    return _DEVICE_ID.fullmatch(name) is not None


def _check_name(name: str, role: str) -> None:
    if role not in ROLES:
        raise BrokerError(f"unknown role {role!r} (want one of {', '.join(ROLES)})")
    if role == "device":
        if not is_device_id(name):
            raise BrokerError(f"{name!r} is not a device id (§1: 1-32 of [a-z0-9._-])")
        return
    if _ACCOUNT_NAME.fullmatch(name) is None:
        raise BrokerError(f"{role} name {name!r} must be 1-64 of [A-Za-z0-9._@-]")
    if is_device_id(name):
        raise BrokerError(
            f"{role} name {name!r} is also a valid device id; use a character outside "
            "[a-z0-9._-], e.g. 'gw@site', so no device can ever hold a gateway's rights"
        )


# --- Configuration -------------------------------------------------------------


@dataclass(frozen=True)
class QueueLimits:
    """Per-client queue limits (docs/operations.md, "Queue limits").

    ``max_queued_messages`` and ``max_queued_bytes`` bound the QoS 1 messages
    held for one client beyond those in flight; beyond either bound Mosquitto
    drops new messages for that client. ``max_inflight_messages`` bounds the
    unacknowledged messages sent to one client (the gateway's batch size).
    """

    max_queued_messages: int = 100_000
    max_queued_bytes: int = 64 * 1024 * 1024
    max_inflight_messages: int = 1000

    def __post_init__(self) -> None:
        for name in ("max_queued_messages", "max_queued_bytes", "max_inflight_messages"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                # 0 would mean "no limit" to Mosquitto: never write that by accident.
                raise BrokerError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TLSListener:
    """A TLS listener; with client certificates the CN is the user name."""

    cafile: Path
    certfile: Path
    keyfile: Path
    port: int = 8883
    bind: str = "0.0.0.0"
    require_certificate: bool = True
    crlfile: Path | None = None


@dataclass(frozen=True)
class BrokerUser:
    """A broker account: its ACL rights by ``role``, and how it logs in.

    ``password=None`` generates a password (kept in credentials.json).
    ``certificate_only`` accounts get no password-file entry: they log in on
    the TLS listener with a client certificate whose CN is ``name``. Devices
    need no entry at all for certificate login (the ACL patterns cover every
    device id); gateways and monitors need one for their ACL section.
    """

    name: str
    role: Role = "device"
    password: str | None = None
    certificate_only: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name, self.role)
        if self.password is not None and ("\n" in self.password or not self.password):
            raise BrokerError(f"password for {self.name!r} is empty or has a newline")


def _render(template: str, values: dict[str, str]) -> str:
    missing = {m.group(1) for m in _PLACEHOLDER.finditer(template)} - values.keys()
    if missing:
        raise BrokerError(f"template placeholders without values: {sorted(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _listener_block(port: int | None, bind: str, tls: TLSListener | None) -> str:
    blocks: list[str] = []
    if port is not None:
        blocks.append(
            "# Plain MQTT with password authentication. Bound to loopback for\n"
            "# development and the demo; in production prefer the TLS listener.\n"
            f"listener {port} {bind}\n"
            "use_username_as_clientid true\n"
        )
    if tls is not None:
        lines = [
            "# MQTT over TLS. With require_certificate and use_identity_as_username the\n"
            "# client certificate's CN is the user name (a device id, or gw@site for\n"
            "# a gateway) and the password file is not consulted.",
            f"listener {tls.port} {tls.bind}",
            f"cafile {Path(tls.cafile).resolve()}",
            f"certfile {Path(tls.certfile).resolve()}",
            f"keyfile {Path(tls.keyfile).resolve()}",
            "tls_version tlsv1.2",
            f"require_certificate {'true' if tls.require_certificate else 'false'}",
            f"use_identity_as_username {'true' if tls.require_certificate else 'false'}",
            "use_username_as_clientid true",
        ]
        if tls.crlfile is not None:
            lines.append(f"crlfile {Path(tls.crlfile).resolve()}")
        blocks.append("\n".join(lines) + "\n")
    if not blocks:
        raise BrokerError("no listener: give a plain port, a TLS listener, or both")
    return "\n".join(blocks)


def _acl_users(users: Sequence[BrokerUser], gateway_id: str) -> str:
    out: list[str] = []
    for user in users:
        if user.role == "gateway":
            out += [
                f"user {user.name}",
                "topic read ct/v1/+/rec",
                "topic read ct/v1/+/state",
                "topic readwrite ct/v1/+/ack",
                "topic write ct/v1/+/cmd",
                f"topic write ct/v1/gw/{gateway_id}/alerts",
                "topic read $SYS/broker/#",
                "topic read ct/v1/+/fwreq",
                "topic write ct/v1/+/fw",
                "",
            ]
        elif user.role == "monitor":
            out += [
                f"user {user.name}",
                "topic read ct/v1/gw/+/alerts",
                "topic read ct/v1/+/state",
                "topic read $SYS/broker/#",
                "",
            ]
    return "\n".join(out) if out else "# (no gateway or monitor users)\n"


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_text(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_password_file(path: Path, passwords: dict[str, str]) -> Path:
    """Write a Mosquitto password file (PBKDF2-SHA512 hashes, mode 0600).

    Plain ``name:password`` lines go to a private temporary file that
    ``mosquitto_passwd -U`` hashes in place; passwords never appear on a
    command line.
    """
    path = Path(path)
    if not passwords:  # e.g. TLS only; mosquitto_passwd refuses an empty file
        _write_private(path, b"")
        return path
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise BrokerError("mosquitto_passwd not found: install the 'mosquitto' package")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for name, password in passwords.items():
                if ":" in name or "\n" in name or "\n" in password:
                    raise BrokerError(f"user name or password unusable for {name!r}")
                f.write(f"{name}:{password}\n")
        done = subprocess.run(
            [tool, "-U", tmp], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise BrokerError(f"mosquitto_passwd failed: {done.stderr.strip() or done.stdout}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def read_credentials(dir: Path | str) -> dict[str, str]:
    """Passwords that ``write_config`` generated, by user name (dir/credentials.json)."""
    path = Path(dir) / "credentials.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: entry["password"] for name, entry in data.get("users", {}).items()}


def add_account(dir: Path | str, name: str, role: Role = "device") -> str:
    """Give ``name`` an account on the broker configured in ``dir`` (by ``write_config``),
    with a generated password, and return the password; an existing account's password
    is returned unchanged. The hash is appended to ``passwd`` and the password kept in
    ``credentials.json``, so the next ``coldtrace gateway broker`` keeps the account.
    A running broker reads the new account on reload (SIGHUP)."""
    dir = Path(dir)
    user = BrokerUser(name, role)
    earlier = read_credentials(dir)
    if name in earlier:
        return earlier[name]
    passwd = dir / "passwd"
    if not passwd.exists():
        raise BrokerError(
            f"no broker configuration in {dir}: write it first (coldtrace gateway broker)"
        )
    password = secrets.token_urlsafe(18)
    line = Path(write_password_file(dir / f".{name}.passwd", {name: password}))
    try:
        hashed = line.read_bytes()
    finally:
        line.unlink()
    old = passwd.read_bytes()
    _write_private(passwd, old + (b"" if not old or old.endswith(b"\n") else b"\n") + hashed)
    doc = json.loads((dir / "credentials.json").read_text(encoding="utf-8"))
    doc.setdefault("users", {})[name] = {"role": user.role, "password": password}
    _write_private(dir / "credentials.json", json.dumps(doc, indent=2).encode() + b"\n")
    return password


def _current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def write_config(
    dir: Path | str,
    *,
    port: int | None = 1883,
    bind: str = "127.0.0.1",
    tls: TLSListener | None = None,
    users: Iterable[BrokerUser] = (),
    gateway_id: str = "local",
    queue: QueueLimits | None = None,
    run_as: str | None = None,
    log_dest: str = "stderr",
) -> Path:
    """Render the broker configuration into ``dir`` and return dir/mosquitto.conf.

    Writes ``mosquitto.conf``, ``acl``, ``passwd`` (hashed, 0600),
    ``credentials.json`` (0600, only the passwords generated here, for the
    demo and tests; delete it once the devices are provisioned) and the
    persistence directory ``data/``. Existing files are replaced; the
    persistence database is kept, and so is a password generated by an
    earlier call for the same user (``users`` must list every account: the
    password file is rewritten from it). A running broker picks up new
    accounts on ``BrokerProcess.reload()`` (SIGHUP).

    ``port=None`` disables the plain listener (TLS only; the password file
    stays empty and every user is certificate-only). ``run_as`` is the
    user Mosquitto drops to when started as root; by default the user
    running this function, so a development broker can read what it wrote.
    For a system service pass ``run_as="mosquitto"``: when called as root the
    files are then handed to that user.
    """
    dir = Path(dir).resolve()
    users = list(users)
    names = [u.name for u in users]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BrokerError(f"duplicate users: {dupes}")
    if not is_device_id(gateway_id):
        raise BrokerError(f"gateway id {gateway_id!r} must follow the id syntax of §1")
    queue = queue or QueueLimits()
    run_as = run_as or _current_user()
    dir.mkdir(parents=True, exist_ok=True)
    data_dir = dir / "data"
    data_dir.mkdir(exist_ok=True)

    generated: dict[str, dict[str, str]] = {}
    passwords: dict[str, str] = {}
    earlier = read_credentials(dir)  # a generated password stays the same on re-render
    for user in users:
        if user.certificate_only or port is None:  # no password listener: no passwords
            continue
        password = user.password
        if password is None:
            password = earlier.get(user.name) or secrets.token_urlsafe(18)
            generated[user.name] = {"role": user.role, "password": password}
        passwords[user.name] = password
    passwd = write_password_file(dir / "passwd", passwords)
    credentials = {
        "comment": "passwords generated by coldtrace gateway broker; development use",
        "users": generated,
    }
    _write_private(dir / "credentials.json", json.dumps(credentials, indent=2).encode() + b"\n")

    acl_text = _render(
        (TEMPLATE_DIR / "acl").read_text(encoding="utf-8"),
        {"users": _acl_users(users, gateway_id)},
    )
    _write_text(dir / "acl", acl_text, 0o640)
    conf_text = _render(
        (TEMPLATE_DIR / "mosquitto.conf").read_text(encoding="utf-8"),
        {
            "run_as": run_as,
            "data_dir": str(data_dir),
            "max_queued_messages": str(queue.max_queued_messages),
            "max_queued_bytes": str(queue.max_queued_bytes),
            "max_inflight_messages": str(queue.max_inflight_messages),
            "password_file": str(passwd),
            "acl_file": str(dir / "acl"),
            "log_dest": log_dest,
            "listeners": _listener_block(port, bind, tls),
        },
    )
    conf = dir / "mosquitto.conf"
    _write_text(conf, conf_text, 0o644)
    if os.geteuid() == 0 and run_as != "root":
        for path in (passwd, dir / "acl", data_dir):
            shutil.chown(path, user=run_as)
        # Mosquitto 2.0 drops privileges before it reads these (TLS files too).
        needed = [passwd, dir / "acl", data_dir]
        if tls is not None:
            needed += [Path(tls.cafile), Path(tls.certfile), Path(tls.keyfile)]
            if tls.crlfile is not None:
                needed.append(Path(tls.crlfile))
        for path in needed:
            problem = _unreadable_by(path.resolve(), run_as)
            if problem:
                raise BrokerError(
                    f"{problem}: Mosquitto runs as {run_as!r} and must read {path} "
                    "(chown the file to that user, keep keys 0600, and let it traverse "
                    "the directories above)"
                )
    return conf


def _unreadable_by(path: Path, user: str) -> str | None:
    """Why ``user`` cannot reach and read ``path`` (owner, group, mode bits), or None."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return f"no user {user!r}"
    groups = {pw.pw_gid, *os.getgrouplist(user, pw.pw_gid)}

    def allowed(p: Path, owner_bit: int) -> bool:
        st = p.stat()
        if st.st_uid == pw.pw_uid:
            return bool(st.st_mode & owner_bit)
        if st.st_gid in groups:
            return bool(st.st_mode & (owner_bit >> 3))
        return bool(st.st_mode & (owner_bit >> 6))

    try:
        for parent in reversed(path.parents):
            if not allowed(parent, 0o100):
                return f"{parent} is not searchable by {user!r}"
        if not allowed(path, 0o400):
            return f"{path} is not readable by {user!r}"
    except OSError as e:
        return str(e)
    return None


# --- Running Mosquitto --------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class _Listener:
    port: int
    host: str
    tls: bool


def _parse_listeners(conf_text: str) -> list[_Listener]:
    listeners: list[_Listener] = []
    for line in conf_text.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0] == "listener":
            host = parts[2] if len(parts) > 2 else "0.0.0.0"
            listeners.append(_Listener(int(parts[1]), host, False))
        elif parts[0] in ("certfile", "cafile") and listeners:
            listeners[-1].tls = True
    return listeners


@dataclass
class BrokerProcess:
    """A Mosquitto process running one configuration file.

    Output goes to ``<conf dir>/mosquitto.log``. ``stop()`` sends SIGTERM
    (Mosquitto saves its persistence database); ``kill()`` sends SIGKILL
    (what a crash looks like: the queue since the last autosave is lost).
    """

    conf: Path
    executable: str = "mosquitto"
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _listeners: list[_Listener] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.conf = Path(self.conf).resolve()
        self._listeners = _parse_listeners(self.conf.read_text(encoding="utf-8"))
        if not self._listeners:
            raise BrokerError(f"{self.conf} has no listener")

    @property
    def log_path(self) -> Path:
        return self.conf.parent / "mosquitto.log"

    @property
    def port(self) -> int | None:
        """The plain listener's port, or None."""
        return next((lst.port for lst in self._listeners if not lst.tls), None)

    @property
    def tls_port(self) -> int | None:
        return next((lst.port for lst in self._listeners if lst.tls), None)

    @property
    def host(self) -> str:
        host = self._listeners[0].host
        return "127.0.0.1" if host in ("0.0.0.0", "::") else host

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> BrokerProcess:
        if self.running:
            raise BrokerError("broker already running")
        exe = shutil.which(self.executable)
        if exe is None:
            raise BrokerError(
                f"{self.executable} not found: install the 'mosquitto' package "
                "(scripts/ensure-system.sh)"
            )
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [exe, "-c", str(self.conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 10.0) -> BrokerProcess:
        """Wait until every listener accepts TCP connections."""
        deadline = time.monotonic() + timeout
        pending = list(self._listeners)
        while pending:
            if self._proc is None or self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited during start-up:\n{self.log_text()[-2000:]}")
            lst = pending[0]
            host = "127.0.0.1" if lst.host in ("0.0.0.0", "::") else lst.host
            try:
                with socket.create_connection((host, lst.port), timeout=0.5):
                    pending.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"mosquitto not ready after {timeout} s:\n{self.log_text()[-2000:]}"
                )
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait (Mosquitto writes its persistence file), SIGKILL if it hangs."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        return proc.returncode

    def kill(self) -> int | None:
        """SIGKILL: a broker crash, without saving the persistence database."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        return proc.wait(10)

    def restart(self, timeout: float = 10.0) -> BrokerProcess:
        self.stop()
        return self.start().wait_ready(timeout)

    def reload(self) -> None:
        """SIGHUP: re-read the password and ACL files (after adding users)."""
        if not self.running or self._proc is None:
            raise BrokerError("broker not running")
        self._proc.send_signal(signal.SIGHUP)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> BrokerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_broker(
    conf: Path | str, *, ready_timeout: float = 10.0, executable: str = "mosquitto"
) -> BrokerProcess:
    """Start Mosquitto on ``conf`` and return once every listener accepts connections."""
    broker = BrokerProcess(Path(conf), executable)
    broker.start()
    try:
        broker.wait_ready(ready_timeout)
    except BaseException:
        broker.kill()
        raise
    return broker


# --- Certificates ---------------------------------------------------------------------


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its PEM private key (mode 0600)."""

    cert: Path
    key: Path

    def load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        key = serialization.load_pem_private_key(self.key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise BrokerError(f"{self.key} is not an EC private key")
        return cert, key


CertKind = Literal["device", "gateway", "monitor", "server"]


def _new_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key, pem


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _refuse_overwrite(paths: Sequence[Path], overwrite: bool) -> None:
    if overwrite:
        return
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise BrokerError(f"refusing to overwrite {', '.join(existing)} (pass overwrite=True)")


def _save(pair: CertPair, cert: x509.Certificate, key_pem: bytes) -> CertPair:
    _write_private(pair.key, key_pem)
    _write_text(pair.cert, cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), 0o644)
    return pair


def make_ca(
    dir: Path | str,
    *,
    name: str = "ColdTrace broker CA",
    days: int = 3650,
    stem: str = "ca",
    overwrite: bool = False,
) -> CertPair:
    """Make a self-signed P-256 CA for broker TLS: ``dir/<stem>.pem`` and ``.key`` (0600).

    This CA only authenticates MQTT connections; it has nothing to do with
    the keys that sign records. Keep its key off the broker host.
    """
    dir = Path(dir)
    pair = CertPair(dir / f"{stem}.pem", dir / f"{stem}.key")
    _refuse_overwrite([pair.cert, pair.key], overwrite)
    key, key_pem = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _save(pair, cert, key_pem)


def make_cert(
    ca: CertPair,
    dir: Path | str,
    *,
    name: str,
    kind: CertKind,
    hosts: Sequence[str] = (),
    days: int = 825,
    stem: str | None = None,
    overwrite: bool = False,
) -> CertPair:
    """Issue a P-256 certificate signed by ``ca`` into ``dir/<stem>.pem`` and ``.key`` (0600).

    ``kind`` "device", "gateway" or "monitor": a TLS client certificate whose
    CN is ``name``, the broker user name (device id for a device, checked as
    for ``BrokerUser``). ``kind`` "server": the broker's certificate; ``hosts``
    (DNS names or IP addresses, default ``name``) go in the subjectAltName.
    """
    if kind == "server":
        if not name or any(c.isspace() for c in name):
            raise BrokerError(f"server name {name!r} is not a host name")
    else:
        _check_name(name, kind)
    dir = Path(dir)
    pair = CertPair(dir / f"{stem or name}.pem", dir / f"{stem or name}.key")
    _refuse_overwrite([pair.cert, pair.key], overwrite)
    ca_cert, ca_key = ca.load()
    key, key_pem = _new_key()
    now = _dt.datetime.now(_dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if kind == "server":
        alt: list[x509.GeneralName] = []
        for host in hosts or (name,):
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        usage = ExtendedKeyUsageOID.SERVER_AUTH
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return _save(pair, builder.sign(ca_key, hashes.SHA256()), key_pem)


# --- Command line ---------------------------------------------------------------------------


def _load_users_file(path: str) -> list[BrokerUser]:
    """A JSON list of {"name", "role", "password"?} objects."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BrokerError(f"cannot read users file {path}: {e}") from e
    if not isinstance(entries, list):
        raise BrokerError(f"users file {path}: want a JSON list of objects")
    users = []
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry:
            raise BrokerError(f"users file {path}: bad entry {entry!r}")
        users.append(BrokerUser(entry["name"], entry.get("role", "device"), entry.get("password")))
    return users


def _gateway_account(path: str) -> tuple[BrokerUser, str, int]:
    """The gateway's broker account, its id and MQTT port from its gateway.toml: the
    password is the one `coldtrace gateway init` wrote to [mqtt] password_file."""
    from gateway.config import ConfigError, load_config

    try:
        cfg = load_config(path)
        password = cfg.mqtt.secret()
    except ConfigError as e:
        raise BrokerError(str(e)) from None
    except (OSError, IndexError) as e:
        raise BrokerError(f"{path}: cannot read [mqtt] password_file: {e}") from None
    if not cfg.mqtt.username or not password:
        raise BrokerError(f"{path}: [mqtt] needs username and password_file (or password)")
    return BrokerUser(cfg.mqtt.username, "gateway", password), cfg.id, cfg.mqtt.port


def _cmd_broker(args: argparse.Namespace) -> int:
    users: list[BrokerUser] = []
    port = args.port
    if args.gateway_config:
        account, gw_id, gw_port = _gateway_account(args.gateway_config)
        users.append(account)
        args.gateway_id = args.gateway_id or gw_id
        port = gw_port if port is None else port
    names = args.gateway or ([] if users else ["gw@local"])
    users += [BrokerUser(n, "gateway") for n in names]
    users += [BrokerUser(n, "monitor") for n in args.monitor or []]
    users += [BrokerUser(n, "device") for n in args.device or []]
    if args.users:
        users += _load_users_file(args.users)
    # Accounts made earlier (add_account, e.g. by `coldtrace device provision
    # --broker-dir`) stay: their passwords are on the boards.
    listed = {u.name for u in users}
    with contextlib.suppress(OSError, ValueError, KeyError):
        doc = json.loads((Path(args.dir) / "credentials.json").read_text(encoding="utf-8"))
        for name, entry in doc.get("users", {}).items():
            if name not in listed and entry.get("role") in ("device", "monitor", "gateway"):
                users.append(BrokerUser(name, entry["role"]))  # password kept by write_config
    args.gateway_id = args.gateway_id or "local"
    args.port = 1883 if port is None else port
    tls = None
    if args.tls_port is not None:
        certs = Path(args.tls_dir)
        tls = TLSListener(
            cafile=certs / "ca.pem",
            certfile=certs / "server.pem",
            keyfile=certs / "server.key",
            port=args.tls_port,
            bind=args.tls_bind,
        )
        missing = [str(p) for p in (tls.cafile, tls.certfile, tls.keyfile) if not p.exists()]
        if missing:
            raise BrokerError(
                f"missing {', '.join(missing)}: make them with "
                f"`coldtrace gateway certs --dir {certs} --server <host>`"
            )
    queue = QueueLimits(
        max_queued_messages=args.max_queued_messages,
        max_queued_bytes=args.max_queued_bytes,
        max_inflight_messages=args.max_inflight_messages,
    )
    conf = write_config(
        args.dir,
        port=None if args.no_plain else args.port,
        bind=args.bind,
        tls=tls,
        users=users,
        gateway_id=args.gateway_id,
        queue=queue,
        run_as=args.run_as,
    )
    print(f"broker configuration: {conf}")
    if read_credentials(args.dir):
        print(f"generated passwords:  {Path(args.dir) / 'credentials.json'} (0600)")
    if args.write_only:
        return 0
    exe = shutil.which("mosquitto")
    if exe is None:
        raise BrokerError("mosquitto not found: install the 'mosquitto' package")
    sys.stdout.flush()
    os.execv(exe, [exe, "-c", str(conf)])
    return 0  # not reached


def _cmd_certs(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    ca = CertPair(out / "ca.pem", out / "ca.key")
    if not ca.cert.exists():
        ca = make_ca(out, name=args.ca_name)
        print(f"CA:      {ca.cert} (key {ca.key}, keep it offline)")
    if args.server:
        pair = make_cert(
            ca,
            out,
            name=args.server[0],
            kind="server",
            hosts=args.server,
            stem="server",
            overwrite=args.overwrite,
        )
        print(f"server:  {pair.cert} for {', '.join(args.server)}")
    kinds: tuple[tuple[CertKind, list[str] | None], ...] = (
        ("gateway", args.gateway),
        ("monitor", args.monitor),
        ("device", args.device),
    )
    for kind, names in kinds:
        for name in names or []:
            pair = make_cert(ca, out, name=name, kind=kind, overwrite=args.overwrite)
            print(f"{kind + ':':8} {pair.cert}")
    return 0


def _wrap(func: object) -> object:
    def run(args: argparse.Namespace) -> int:
        try:
            status: int = func(args)  # type: ignore[operator]
            return status
        except BrokerError as e:
            print(f"coldtrace gateway: {e}", file=sys.stderr)
            return 1

    return run


def register_broker_commands(gateway_subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``broker`` and ``certs`` to the ``coldtrace gateway`` subcommands."""
    p = gateway_subparsers.add_parser(
        "broker",
        help="write the Mosquitto configuration and run the broker",
        description="Write the ColdTrace Mosquitto configuration (listeners, persistence, "
        "explicit queue limits, per-device ACL, password file) into --dir and run "
        "Mosquitto on it in the foreground. See docs/operations.md, 'Broker'.",
    )
    p.add_argument("--dir", default="var/mosquitto", help="configuration directory")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="plain (password) listener port (default: --gateway-config's [mqtt] port, or 1883)",
    )
    p.add_argument("--bind", default="127.0.0.1", help="plain listener address")
    p.add_argument("--no-plain", action="store_true", help="no plain listener (TLS only)")
    p.add_argument("--tls-port", type=int, help="add a TLS listener on this port")
    p.add_argument("--tls-bind", default="0.0.0.0", help="TLS listener address")
    p.add_argument(
        "--tls-dir",
        default="var/mosquitto/tls",
        help="ca.pem, server.pem and server.key (coldtrace gateway certs)",
    )
    p.add_argument("--device", action="append", metavar="ID", help="device user (repeat)")
    p.add_argument(
        "--gateway",
        action="append",
        metavar="NAME",
        help="gateway user, e.g. gw@site (repeat; default gw@local)",
    )
    p.add_argument(
        "--monitor", action="append", metavar="NAME", help="read-only alerts/state user (repeat)"
    )
    p.add_argument(
        "--users",
        metavar="FILE",
        help='JSON list of {"name", "role", "password"} (missing passwords are generated)',
    )
    p.add_argument(
        "--gateway-config",
        metavar="GATEWAY_TOML",
        help="take the gateway's account (its [mqtt] username and password_file), id and "
        "port from its gateway.toml",
    )
    p.add_argument(
        "--gateway-id",
        default=None,
        help="gateway id in ct/v1/gw/{id}/alerts (default: --gateway-config's id, or local)",
    )
    defaults = QueueLimits()
    p.add_argument("--max-queued-messages", type=int, default=defaults.max_queued_messages)
    p.add_argument("--max-queued-bytes", type=int, default=defaults.max_queued_bytes)
    p.add_argument("--max-inflight-messages", type=int, default=defaults.max_inflight_messages)
    p.add_argument(
        "--run-as",
        help="user Mosquitto drops to when started as root "
        "(default: the current user; 'mosquitto' for a service)",
    )
    p.add_argument("--write-only", action="store_true", help="write the files, do not start")
    p.set_defaults(func=_wrap(_cmd_broker))

    c = gateway_subparsers.add_parser(
        "certs",
        help="make a broker CA and TLS certificates",
        description="Make (if absent) a CA in --dir and issue P-256 certificates: the "
        "broker's server certificate and client certificates whose CN is the broker user "
        "name. Private keys are written 0600; never commit them.",
    )
    c.add_argument("--dir", default="var/mosquitto/tls", help="output directory")
    c.add_argument("--ca-name", default="ColdTrace broker CA")
    c.add_argument(
        "--server",
        action="append",
        metavar="HOST",
        help="server certificate for these host names / IPs (first is the CN)",
    )
    c.add_argument("--device", action="append", metavar="ID", help="device certificate")
    c.add_argument("--gateway", action="append", metavar="NAME", help="gateway certificate")
    c.add_argument("--monitor", action="append", metavar="NAME", help="monitor certificate")
    c.add_argument("--overwrite", action="store_true", help="replace existing leaf certificates")
    c.set_defaults(func=_wrap(_cmd_certs))
