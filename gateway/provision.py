"""``coldtrace device provision``: put the firmware on a board and register it.

Steps (firmware/README.md explains them for a person):

1. copy ``firmware/lib/*.py``, ``boot.py`` and ``main.py`` to the board and
   write its ``config.json`` (id, role, board, place, network, sensors);
2. write the per-device **ack key** (32 random bytes, docs/protocol.md §5.2)
   to the board - it MACs the gateway's acks and commands;
3. have the board **generate its P-256 key** (``ct_provision.keygen()`` runs
   on the device, with the radio on so its RNG is a true RNG; the private key
   never crosses the wire) and read back the public key (SEC1, 65 bytes);
4. check it: the board signs a random challenge and the signature must verify
   under that public key (so a broken signer is found on the bench, not in a
   truck);
5. add the device to the **registration file** the gateway reads
   (``coldtrace gateway registry add --file``, gateway/evidence/registry.py
   ``load_provisioning``): ``{"devices": [{"device", "role", "key" (base64
   SEC1), "org", "place", "cal", "ack_key" (base64)}]}``. A device id is
   never reused with another key.

The board is driven through a :class:`Transport`; the real one runs
``mpremote`` (pip package ``mpremote``), tests use a fake. Every call has a
timeout.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from protocol.cose import ID_PATTERN
from protocol.keys import p256_public_from_sec1

__all__ = [
    "MpremoteTransport",
    "ProvisionError",
    "Transport",
    "device_config",
    "provision",
    "register",
]

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
ROLES = {"logger": 1, "reader": 2}
_PUB = re.compile(r"^CT-PUBKEY ([0-9a-f]{130})$", re.M)
_SIG = re.compile(r"^CT-SIG ([0-9a-f]{128})$", re.M)
_OK = re.compile(r"^CT-OK$", re.M)


class ProvisionError(Exception):
    """Provisioning stopped; the message says at which step and why."""


class Transport(Protocol):
    def put(self, data: bytes, remote: str) -> None: ...
    def put_files(self, files: Sequence[Path], remote_dir: str) -> None: ...
    def mkdir(self, remote: str) -> None: ...
    def exec(self, code: str, timeout: float = 60) -> str: ...
    def reset(self) -> None: ...


class MpremoteTransport:
    """Runs ``mpremote connect PORT ...`` once per operation."""

    def __init__(self, port: str, exe: Sequence[str] = ("mpremote",), timeout: float = 60):
        self.port = port
        self.exe = list(exe)
        self.timeout = timeout

    def _run(self, args: Sequence[str], timeout: float | None = None) -> str:
        cmd = [*self.exe, "connect", self.port, *args]
        try:
            p = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout or self.timeout, check=False
            )
        except FileNotFoundError as e:
            raise ProvisionError(
                f"{self.exe[0]} not found: pip install mpremote (or pass --mpremote)"
            ) from e
        except subprocess.TimeoutExpired as e:
            raise ProvisionError(f"timeout after {e.timeout} s: {shlex.join(cmd)}") from e
        if p.returncode != 0:
            raise ProvisionError(
                f"{shlex.join(cmd)} failed ({p.returncode}): {(p.stderr or p.stdout).strip()}"
            )
        return p.stdout

    def put(self, data: bytes, remote: str) -> None:
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(data)
        try:
            self._run(["fs", "cp", f.name, ":" + remote])
        finally:
            os.unlink(f.name)

    def put_files(self, files: Sequence[Path], remote_dir: str) -> None:
        """Copy several files into one board directory in one mpremote call."""
        if files:
            self._run(["fs", "cp", *(str(f) for f in files), ":" + remote_dir.rstrip("/") + "/"],
                      max(self.timeout, 5 * len(files)))

    def mkdir(self, remote: str) -> None:
        try:
            self._run(["exec", f"import os\ntry:\n os.mkdir({remote!r})\nexcept OSError:\n pass"])
        except ProvisionError as e:
            raise ProvisionError(f"mkdir {remote}: {e}") from e

    def exec(self, code: str, timeout: float = 60) -> str:
        return self._run(["exec", code], timeout)

    def reset(self) -> None:
        self._run(["reset"])


def firmware_files(fw: Path = FIRMWARE) -> list[tuple[Path, str]]:
    """(local file, path on the board) for everything the board runs."""
    out = [(p, "lib/" + p.name) for p in sorted((fw / "lib").glob("*.py"))]
    for name in ("boot.py", "main.py"):
        if (fw / name).exists():
            out.append((fw / name, name))
    if not out:
        raise ProvisionError(f"no firmware under {fw}")
    return out


def device_config(base: dict[str, Any], **over: Any) -> dict[str, Any]:
    """The board's config.json: the template with this device's values."""
    cfg = json.loads(json.dumps(base))
    for k, v in over.items():
        if v is not None:
            cfg[k] = v
    dev = cfg.get("id")
    if not isinstance(dev, str) or not ID_PATTERN.fullmatch(dev):
        raise ProvisionError(f"device id {dev!r} is not a protocol id (docs/protocol.md §1)")
    if cfg.get("role") not in ROLES:
        raise ProvisionError(f"role must be one of {sorted(ROLES)}")
    if cfg["role"] == "reader" and not cfg.get("place"):
        raise ProvisionError("a reader needs --place")
    return cfg


def _load_registry(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"devices": []}
    doc = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(doc, list):
        doc = {"devices": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list):
        raise ProvisionError(f"{path}: not a registration file")
    return doc


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)  # it holds ack keys


def _verify_challenge(pub: bytes, challenge: bytes, sig: bytes) -> None:
    key = p256_public_from_sec1(pub)
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), challenge, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise ProvisionError("the board's test signature does not verify: signer broken") from e


def provision(
    t: Transport,
    cfg: dict[str, Any],
    registry: Path,
    *,
    org: str,
    cal: int | None = None,
    config_only: bool = False,
    force_key: bool = False,
    fw: Path = FIRMWARE,
    say: Callable[[str], None] = lambda s: None,
    rand: Callable[[int], bytes] = secrets.token_bytes,
    extra_files: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """Provision one board; returns its registration entry (also saved).
    ``extra_files``: {board path: data} written with config.json (TLS, device_tls)."""
    dev = cfg["id"]
    doc = _load_registry(registry)
    known = [e for e in doc["devices"] if e.get("device", e.get("id")) == dev]
    if known and not config_only:
        raise ProvisionError(
            f"{dev} is already registered: ids are never reused for a new key "
            "(use --config-only to update the board's configuration)"
        )
    if config_only and not known:
        raise ProvisionError(f"{dev} is not registered yet: provision it fully first")
    if not config_only:
        say("copying firmware")
        t.mkdir("lib")
        by_dir: dict[str, list[Path]] = {}
        for local, remote in firmware_files(fw):
            by_dir.setdefault(remote.rpartition("/")[0], []).append(local)
        for remote_dir, files in by_dir.items():
            if remote_dir:
                t.put_files(files, remote_dir)
            else:
                for f in files:
                    t.put(f.read_bytes(), f.name)
    say("writing config.json")
    t.put((json.dumps(cfg, indent=1, sort_keys=True) + "\n").encode(), "config.json")
    for remote, data in sorted((extra_files or {}).items()):
        say(f"writing {remote}")
        if "/" in remote:
            t.mkdir(remote.rpartition("/")[0])
        t.put(data, remote)
    if config_only:
        entry = known[0]
        entry["place"] = cfg.get("place", entry.get("place"))
        if cal is not None:
            entry["cal"] = cal
        _write_atomic(registry, json.dumps(doc, indent=1) + "\n")
        return entry

    ack_key = rand(32)
    say("writing the ack key")
    out = t.exec(f"import ct_provision\nct_provision.set_ack_key({ack_key.hex()!r})", 30)
    if not _OK.search(out):
        raise ProvisionError(f"set_ack_key: unexpected answer {out.strip()!r}")
    say("generating the device key on the board")
    out = t.exec(f"import ct_provision\nct_provision.keygen(force={bool(force_key)})", 120)
    m = _PUB.search(out)
    if not m:
        raise ProvisionError(f"keygen: no public key in the answer {out.strip()!r}")
    pub = bytes.fromhex(m.group(1))
    try:
        p256_public_from_sec1(pub)
    except Exception as e:
        raise ProvisionError(f"keygen: the public key is not a P-256 point: {e}") from e
    challenge = hashlib.sha256(b"coldtrace-provision\n" + rand(32)).digest()
    say("checking a test signature")
    out = t.exec(f"import ct_provision\nct_provision.selftest({challenge.hex()!r})", 120)
    m = _SIG.search(out)
    if not m:
        raise ProvisionError(f"selftest: no signature in the answer {out.strip()!r}")
    _verify_challenge(pub, challenge, bytes.fromhex(m.group(1)))
    entry: dict[str, Any] = {
        "device": dev,
        "role": cfg["role"],
        "key": base64.b64encode(pub).decode(),
        "org": org,
        "ack_key": base64.b64encode(ack_key).decode(),
    }
    if cfg.get("place"):
        entry["place"] = cfg["place"]
    if cal is not None:
        entry["cal"] = cal
    doc["devices"].append(entry)
    _write_atomic(registry, json.dumps(doc, indent=1) + "\n")
    say(f"registered {dev} in {registry}")
    return entry


def broker_login(cfg: dict[str, Any], broker_dir: Path) -> dict[str, Any]:
    """The board's ``mqtt`` settings with its broker account: the account is made in the
    broker configuration at ``broker_dir`` (``coldtrace gateway broker --dir``) if it is
    not there, and its password goes into the board's config.json - nobody copies it."""
    from gateway.transport.broker import BrokerError, add_account

    try:
        password = add_account(broker_dir, cfg["id"], "device")
    except (BrokerError, OSError, ValueError) as e:
        raise ProvisionError(f"broker account for {cfg['id']} in {broker_dir}: {e}") from e
    return {**cfg.get("mqtt", {}), "user": cfg["id"], "password": password}


def _cmd_provision(args: argparse.Namespace) -> int:
    base_path = Path(args.config)
    try:
        base = json.loads(base_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"error: {base_path}: {e}", file=sys.stderr)
        return 2
    over: dict[str, Any] = {
        "id": args.id,
        "role": args.role,
        "board": args.board,
        "place": args.place,
    }
    if args.wifi_ssid:
        over["wifi"] = {"ssid": args.wifi_ssid, "key": args.wifi_key or ""}
    if args.mqtt_host:
        mq = dict(base.get("mqtt", {}))
        mq["host"] = args.mqtt_host
        if args.mqtt_port:
            mq["port"] = args.mqtt_port
        over["mqtt"] = mq
    if args.signer:
        over["signer"] = args.signer
    if args.atecc_slot is not None:
        over["atecc"] = {**base.get("atecc", {}), "slot": args.atecc_slot}
    from gateway.atecc import flash_warning
    from gateway.device_tls import DeviceTLSError, clock_warning, mqtt_settings, tls_files

    tls: dict[str, bytes] = {}
    try:
        if args.release_key:
            from gateway.ota import OtaError, release_pin

            try:
                over["ota"] = release_pin(Path(args.release_key), base.get("ota"))
            except OtaError as e:
                raise ProvisionError(str(e)) from e
        cfg = device_config(base, **over)
        if args.ca:
            tls = tls_files(cfg["id"], Path(args.ca), _opt_path(args.client_cert),
                            _opt_path(args.client_key), _opt_path(args.ca_key))
        elif args.client_cert or args.client_key or args.ca_key:
            raise ProvisionError("--client-cert/--client-key/--ca-key need --ca")
        cfg["mqtt"] = mqtt_settings(cfg.get("mqtt", {}), cfg["id"], user=args.mqtt_user,
                                    password_file=_opt_path(args.mqtt_password_file),
                                    tls=tls, server_name=args.server_name)
        if args.mqtt_port:
            cfg["mqtt"]["port"] = args.mqtt_port
        if args.broker_dir:
            cfg["mqtt"] = broker_login(cfg, Path(args.broker_dir))
        if clock_warning(cfg):
            print(clock_warning(cfg), file=sys.stderr)
        t = MpremoteTransport(args.port, shlex.split(args.mpremote))
        entry = provision(
            t,
            cfg,
            Path(args.registry),
            org=args.org,
            cal=args.cal,
            config_only=args.config_only,
            force_key=args.force_key,
            say=lambda s: print(f"  {s}", flush=True),
            extra_files=tls,
        )
        warn = None if args.config_only else flash_warning(t, cfg, args.flash_encrypted)
        if warn:
            print(warn, file=sys.stderr)
        if not args.no_reset:
            t.reset()
    except (ProvisionError, DeviceTLSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.broker_dir:
        print(
            f"broker account {cfg['id']} in {args.broker_dir}: reload the broker "
            "(systemctl reload mosquitto, or SIGHUP)"
        )
    print(json.dumps({k: v for k, v in entry.items() if k != "ack_key"}, indent=1))
    return 0


def _opt_path(p: str | None) -> Path | None:
    return Path(p) if p else None


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Entry point (``coldtrace.commands``): adds ``coldtrace device``."""
    p = subparsers.add_parser("device", help="provision ESP32 boards (firmware, key, registry)")
    sub = p.add_subparsers(dest="device_command", metavar="ACTION")
    pr = sub.add_parser("provision", help="flash the firmware, make the key, register the board")
    pr.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    pr.add_argument("--id", help="device id (overrides config.json), e.g. tl-7f3a21")
    pr.add_argument("--role", choices=sorted(ROLES), help="logger or reader")
    pr.add_argument("--board", choices=("esp32", "esp32s3"), help="pin map")
    pr.add_argument("--place", help="place id (GLN-based or operator-assigned)")
    pr.add_argument("--org", default="", help="owner organisation for the registration")
    pr.add_argument("--cal", type=int, help="calibration id in force")
    pr.add_argument(
        "--config",
        default=str(FIRMWARE / "config.json"),
        help="config template (default firmware/config.json)",
    )
    pr.add_argument(
        "--registry", default="var/provisioned.json", help="registration file to add the device to"
    )
    pr.add_argument("--wifi-ssid")
    pr.add_argument("--wifi-key")
    pr.add_argument("--mqtt-host")
    pr.add_argument("--mqtt-port", type=int)
    pr.add_argument(
        "--broker-dir",
        help="the broker configuration (coldtrace gateway broker --dir): give the device an "
        "account there and write its password into the board's config.json; reload the "
        "broker afterwards",
    )
    pr.add_argument(
        "--release-key",
        help="PEM key whose signed firmware releases the board accepts (public half pinned "
        "in config.json, docs/protocol.md §5.4)",
    )
    pr.add_argument("--mqtt-user", help="broker user name (default: the device id)")
    pr.add_argument("--mqtt-password-file", help="file whose first line is the broker password")
    pr.add_argument("--ca", help="broker CA certificate (PEM): turns on TLS (mqtt.tls)")
    pr.add_argument("--client-cert", help="the device's TLS certificate (PEM, CN = device id)")
    pr.add_argument("--client-key", help="its private key (PEM, unencrypted)")
    pr.add_argument(
        "--ca-key",
        help="the broker CA's key: issue the device's TLS certificate here instead of "
        "--client-cert/--client-key (the key goes to the board only)",
    )
    pr.add_argument("--server-name", help="the name in the broker's certificate, if --mqtt-host "
                    "is an IP address")
    pr.add_argument("--signer", choices=("p256", "atecc"), help="where the device key lives")
    pr.add_argument("--atecc-slot", type=int, help="ATECC608 key slot (coldtrace device "
                    "atecc-setup)")
    pr.add_argument("--flash-encrypted", action="store_true",
                    help="flash encryption is on (no warning about a key in flash)")
    pr.add_argument("--mpremote", default="mpremote", help="mpremote command")
    pr.add_argument(
        "--config-only",
        action="store_true",
        help="only rewrite config.json (and the registry's place/cal)",
    )
    pr.add_argument(
        "--force-key",
        action="store_true",
        help="let the board replace a key it already holds (a board being "
        "re-provisioned under a new id)",
    )
    pr.add_argument("--no-reset", action="store_true", help="do not reset the board at the end")
    pr.set_defaults(func=_cmd_provision)

    def _help(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=_help)
    pr.set_defaults(func=_cmd_provision)

    from gateway.ota import register_release_command

    register_release_command(sub)
    from gateway.atecc import register_commands

    register_commands(sub)
