"""``coldtrace device atecc-setup``: configure and lock a blank ATECC608B over
mpremote, and the check ``coldtrace device provision`` makes of a board that
keeps its key in flash.

    coldtrace device atecc-setup --port /dev/ttyUSB0 --board esp32 --slot 0
        reads the configuration zone and prints the plan; writes nothing
    coldtrace device atecc-setup --port /dev/ttyUSB0 --board esp32 --slot 0 --lock
        writes the slot's configuration, locks both zones (irreversible),
        has the chip generate its key and prints the public key
    coldtrace device provision --port /dev/ttyUSB0 --signer atecc --atecc-slot 0 ...
        registers that public key (the board reads it back with GenKey)

The procedure itself runs on the board (firmware/lib/ct_atecc_setup.py); this
side copies the firmware, runs it with the board's pin map, and parses its
``CT-`` lines. firmware/README.md "Secure element" explains it step by step.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from gateway.provision import (
    FIRMWARE,
    MpremoteTransport,
    ProvisionError,
    Transport,
    firmware_files,
)
from protocol.keys import p256_public_from_sec1

_CONFIG = re.compile(r"^CT-ATECC-CONFIG ([0-9a-f]{256})$", re.M)
_PLAN = re.compile(r"^CT-ATECC-PLAN ?(.*)$", re.M)
_LOCKED = re.compile(r"^CT-ATECC-LOCKED$", re.M)
_PUB = re.compile(r"^CT-PUBKEY ([0-9a-f]{130})$", re.M)
_FLASHENC = re.compile(r"^CT-FLASHENC ([01?])$", re.M)

FLASH_WARNING = (
    "WARNING: the device key is stored in flash and flash encryption is {state} on this board: "
    "anyone with a USB cable can read the key (mpremote cp :ct/key.p256 .) and sign as this "
    "device. Use a secure element (--signer atecc, coldtrace device atecc-setup) or enable "
    "flash encryption (firmware/README.md, 'Flash encryption and secure boot'); pass "
    "--flash-encrypted once it is on."
)


def _copy_firmware(t: Transport, fw: Path) -> None:
    t.mkdir("lib")
    libs = [p for p, remote in firmware_files(fw) if remote.startswith("lib/")]
    t.put_files(libs, "lib")


def describe(conf: bytes) -> dict[str, Any]:
    """What a person wants to see of a configuration zone (as read before any change)."""
    return {
        "serial": (conf[0:4] + conf[8:13]).hex(),
        "revision": conf[4:8].hex(),
        "config_locked": conf[87] != 0x55,
        "data_locked": conf[86] != 0x55,
        "i2c_address": conf[16] >> 1,
    }


def atecc_setup(
    t: Transport,
    cfg: dict[str, Any],
    *,
    slot: int = 0,
    lock: bool = False,
    new_key: bool = False,
    copy: bool = True,
    fw: Path = FIRMWARE,
) -> dict[str, Any]:
    """Run the procedure on the board; returns {"config": describe(), "plan": [...],
    "public_key": bytes or None}."""
    if not 0 <= slot <= 15:
        raise ProvisionError("--slot is 0..15")
    if copy:
        _copy_firmware(t, fw)
    board = {k: cfg[k] for k in ("board", "role", "atecc") if k in cfg}
    code = (
        "import ct_atecc_setup\n"
        f"ct_atecc_setup.run({slot}, {bool(lock)}, {bool(new_key)}, cfg={board!r})"
    )
    out = t.exec(code, 120)
    m = _CONFIG.search(out)
    if not m:
        raise ProvisionError(f"atecc-setup: no configuration zone in the answer {out.strip()!r}")
    result: dict[str, Any] = {
        "config": describe(bytes.fromhex(m.group(1))),
        "plan": [],
        "public_key": None,
    }
    p = _PLAN.search(out)
    if p:
        result["plan"] = p.group(1).split()
    pub = _PUB.search(out)
    if lock or pub:
        if not (_LOCKED.search(out) and pub):
            raise ProvisionError(f"atecc-setup: the chip did not lock or answer a key: {out!r}")
        key = bytes.fromhex(pub.group(1))
        try:
            p256_public_from_sec1(key)
        except Exception as e:
            raise ProvisionError(f"atecc-setup: the public key is not a P-256 point: {e}") from e
        result["public_key"] = key
    return result


def flash_check(t: Transport) -> str:
    """'1', '0' or '?' (ct_provision.flash_encrypted on the board)."""
    try:
        out = t.exec("import ct_provision\nct_provision.flash_encrypted()", 30)
    except ProvisionError:
        return "?"
    m = _FLASHENC.search(out)
    return m.group(1) if m else "?"


def flash_warning(t: Transport, cfg: dict[str, Any], stated: bool) -> str | None:
    """The warning to show, or None: a key in a secure element, or flash
    encryption on (read from the board's eFuses, or stated by the user)."""
    if cfg.get("signer") == "atecc" or stated:
        return None
    state = flash_check(t)
    if state == "1":
        return None
    return FLASH_WARNING.format(state="off" if state == "0" else "not known to be on")


def _cmd_atecc_setup(args: argparse.Namespace) -> int:
    cfg: dict[str, Any] = {
        "board": args.board,
        "role": args.role,
        "atecc": {"bus": args.bus, "addr": args.addr},
    }
    if args.sda is not None and args.scl is not None:
        cfg["atecc"].update(sda=args.sda, scl=args.scl)
    try:
        t = MpremoteTransport(args.port, shlex.split(args.mpremote))
        r = atecc_setup(
            t, cfg, slot=args.slot, lock=args.lock, new_key=args.new_key, copy=not args.no_copy
        )
    except ProvisionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    c = r["config"]
    print(
        f"ATECC608 serial {c['serial']} revision {c['revision']} at I2C 0x{c['i2c_address']:02x}"
        f"; configuration {'locked' if c['config_locked'] else 'unlocked'}, data "
        f"{'locked' if c['data_locked'] else 'unlocked'}"
    )
    if r["plan"]:
        print("plan (word:data): " + " ".join(r["plan"]))
    if r["public_key"] is None:
        print(
            "nothing written. Run again with --lock to write the slot configuration, lock the "
            "chip (irreversible) and generate the key."
        )
        return 0
    print(f"slot {args.slot} public key: {r['public_key'].hex()}")
    if args.out:
        Path(args.out).write_text(r["public_key"].hex() + "\n", encoding="utf-8")
    print(
        f"next: coldtrace device provision --port {args.port} --signer atecc "
        f"--atecc-slot {args.slot} ..."
    )
    return 0


def register_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds ``atecc-setup`` to ``coldtrace device``."""
    a = sub.add_parser("atecc-setup", help="configure and lock a blank ATECC608B (slot, key)")
    a.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    a.add_argument("--board", choices=("esp32", "esp32s3"), default="esp32s3", help="pin map")
    a.add_argument("--role", choices=("logger", "reader"), default="logger")
    a.add_argument("--slot", type=int, default=0, help="key slot (default 0)")
    a.add_argument("--bus", type=int, default=0, help="I2C bus id")
    a.add_argument("--addr", type=lambda s: int(s, 0), default=0x60, help="I2C address (0x60)")
    a.add_argument("--sda", type=int, help="override the pin map's I2C SDA")
    a.add_argument("--scl", type=int, help="override the pin map's I2C SCL")
    a.add_argument(
        "--lock",
        action="store_true",
        help="write the configuration and LOCK the chip (irreversible)",
    )
    a.add_argument(
        "--new-key",
        action="store_true",
        help="on a locked chip, replace the slot's key (a new device id)",
    )
    a.add_argument("--no-copy", action="store_true", help="the firmware is already on the board")
    a.add_argument("--out", help="also write the public key (hex) to this file")
    a.add_argument("--mpremote", default="mpremote", help="mpremote command")
    a.set_defaults(func=_cmd_atecc_setup)
