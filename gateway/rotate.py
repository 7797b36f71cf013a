"""``coldtrace gateway rotate log|ledger``: a new log key or local ledger key.

A trust file pins one key per log origin and one key per local ledger id
(docs/protocol.md §10), and every bundle already handed out is checked
against the key that signed it. A new key therefore comes with a new name:

- **log**: a new ``[log] origin`` with a new Ed25519 note key. The Merkle tree
  goes on (the same leaves, the next checkpoint consistent with the last one
  signed under the old origin); checkpoints from now on carry the new origin.
- **ledger**: a new ``[ledger] id`` with a new Ed25519 key and a new ledger file
  (entries from index 0); the old file stays for the receipts already issued.

The command makes the key (0600, beside the old one), rewrites those lines of
gateway.toml (the old file is kept beside it), keeps the witness key's name
when it followed the old origin, and writes ``trust.json`` pinning the new key
*and* the old one, so bundles made before and after both verify
(:func:`merge_trust`). The gateway must be stopped. Reasons: docs/decisions.md
D31; the whole procedure: docs/operations.md, "Key rotation".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from gateway.backup import gateway_running
from gateway.config import ConfigError, GatewayConfig, load_config, set_toml_keys

__all__ = [
    "RotateError",
    "merge_trust",
    "own_trust",
    "register_rotate_commands",
    "rotate",
]


class RotateError(Exception):
    """The rotation cannot be done; nothing was changed."""


def merge_trust(new: dict[str, Any], *older: dict[str, Any]) -> dict[str, Any]:
    """``new`` plus the entries of ``older`` trust documents it does not pin already
    (logs by origin, registries and devices by id, ledgers by id or contract,
    witnesses by vkey); ``new``'s quorum stays."""
    keys = {
        "logs": lambda e: e.get("origin"),
        "registries": lambda e: e.get("id"),
        "devices": lambda e: e.get("id"),
        "ledgers": lambda e: (e.get("type"), e.get("id"), e.get("chain_id"), e.get("contract")),
        "witnesses": lambda e: e.get("vkey"),
    }
    out = json.loads(json.dumps(new))
    for old in older:
        for name, key in keys.items():
            have = {key(e) for e in out.get(name, [])}
            for entry in old.get(name, []):
                if key(entry) not in have:
                    out.setdefault(name, []).append(entry)
                    have.add(key(entry))
    return out


def own_trust(cfg: GatewayConfig) -> dict[str, Any]:
    """The trust document of this gateway's current keys, plus the keys it signed with
    before a rotation: those ``trust.json`` beside gateway.toml pins (as ``rotate``
    wrote it). An unreadable or invalid trust.json adds nothing."""
    from gateway.service import trust_document
    from protocol.errors import VerificationError
    from protocol.trust import parse_trust

    doc = trust_document(cfg)
    if cfg.path is None:
        return doc
    try:
        kept = json.loads((cfg.path.resolve().parent / "trust.json").read_text(encoding="utf-8"))
        merged = merge_trust(doc, kept)
        parse_trust(merged)
    except (OSError, ValueError, AttributeError, TypeError, VerificationError):
        return doc
    return merged


def _free(path: Path, stem: str, suffix: str) -> Path:
    n = 2
    while (path.parent / f"{stem}-{n}{suffix}").exists():
        n += 1
    return path.parent / f"{stem}-{n}{suffix}"


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def rotate(cfg: GatewayConfig, what: str, new_name: str) -> dict[str, Any]:
    """Rotate the log key (``what`` = "log", ``new_name`` the new origin) or the local
    ledger key ("ledger", the new ledger id); return what was written."""
    from gateway.service import trust_document
    from protocol.checkpoint import check_origin
    from protocol.errors import VerificationError
    from protocol.keys import generate_ed25519, save_private_key
    from protocol.note import NoteSigner

    if cfg.path is None:
        raise RotateError("the configuration has no file to rewrite")
    try:
        check_origin(new_name)
    except VerificationError as exc:
        raise RotateError(f"{new_name!r} is not a name of the origin syntax: {exc}") from None
    if gateway_running(cfg):
        raise RotateError("the gateway is running: stop it first (rotation takes effect at start)")
    base = cfg.path.resolve().parent
    old_trust = [trust_document(cfg)]
    trust_path = base / "trust.json"
    if trust_path.exists():  # it may pin keys of earlier rotations: they stay pinned
        try:
            old_trust.append(json.loads(trust_path.read_text(encoding="utf-8")))
        except ValueError as exc:
            raise RotateError(f"{trust_path} is not JSON ({exc}): move it aside first") from None
    text = cfg.path.read_text(encoding="utf-8")
    if what == "log":
        if cfg.cloud is not None:
            raise RotateError(
                "this gateway pushes its log to [cloud]: pushing a rotated log (a new origin "
                "over the same tree) is not supported yet, the push would offer the cloud "
                "checkpoints of the old origin (docs/operations.md, Key rotation)"
            )
        if new_name == cfg.log.origin:
            raise RotateError(f"{new_name!r} is the current origin: a new key needs a new origin")
        key = _free(cfg.log.key_file, "log", ".skey")
        new_text = set_toml_keys(
            text, "log", {"origin": new_name, "key_file": _relative(key, base)}
        )
        if re.search(r"(?m)^\s*\[witness\]", text) is None or cfg.witness.name == (
            f"{cfg.log.origin}/witness"
        ):
            new_text = set_toml_keys(new_text, "witness", {"name": cfg.witness.name})
        secret = NoteSigner.generate(new_name).skey + "\n"
    elif what == "ledger":
        if cfg.ledger.backend != "local":
            raise RotateError(
                "[ledger] backend is evm: change the anchoring account instead "
                "(docs/operations.md, Key rotation)"
            )
        if new_name == cfg.ledger.id:
            raise RotateError(f"{new_name!r} is the current ledger id: a new key needs a new id")
        key = _free(cfg.ledger.key_file, "ledger", ".pem")
        db = _free(cfg.ledger_path, "ledger", ".db")
        new_text = set_toml_keys(
            text,
            "ledger",
            {"id": new_name, "key_file": _relative(key, base), "path": _relative(db, base)},
        )
        secret = None
    else:
        raise RotateError(f"rotate log or ledger, not {what!r}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = cfg.path.with_name(f"{cfg.path.name}.before-{what}-rotation-{stamp}")
    shutil.copy2(cfg.path, kept)
    key.parent.mkdir(parents=True, exist_ok=True)
    if secret is not None:
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secret)
    else:
        save_private_key(generate_ed25519(), key)
    tmp = cfg.path.with_name(f".{cfg.path.name}.tmp")
    tmp.write_text(new_text, encoding="utf-8")
    try:
        new_cfg = load_config(tmp)
        new_cfg.path = cfg.path
        trust = merge_trust(trust_document(new_cfg), *old_trust)
    except (ConfigError, OSError, ValueError) as exc:
        tmp.unlink()
        key.unlink()
        kept.unlink()
        raise RotateError(
            f"the rotated configuration does not load ({exc}); nothing changed"
        ) from None
    os.replace(tmp, cfg.path)
    if trust_path.exists():
        shutil.copy2(trust_path, base / f"trust.json.before-{what}-rotation-{stamp}")
    trust_path.write_text(json.dumps(trust, indent=1) + "\n", encoding="utf-8")
    return {"key": key, "config_kept": kept, "trust": trust_path, "trust_doc": trust}


def _cmd_rotate(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
        done = rotate(cfg, args.what, args.name)
    except (ConfigError, RotateError) as exc:
        print(f"coldtrace gateway: {exc}", file=sys.stderr)
        return 2
    print(
        f"new {args.what} key {done['key']} ({args.name}); {args.config} updated (the old one "
        f"is {done['config_kept']}); {done['trust']} pins the new key and the old one: hand it "
        "to the verifiers. Start the gateway to use the new key."
    )
    return 0


def _cmd_trust_merge(args: argparse.Namespace) -> int:
    """``coldtrace gateway trust --keep OLD``: the current trust file plus old entries."""
    from gateway.service import trust_document

    try:
        cfg = load_config(args.config)
        older = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.keep]
        doc = merge_trust(trust_document(cfg), *older)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"coldtrace gateway: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(doc, indent=1) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


def register_rotate_commands(sub: Any, config_arg: Any) -> None:
    """Add ``rotate`` to the ``coldtrace gateway`` subcommands."""
    p = sub.add_parser(
        "rotate",
        help="a new log key (new origin) or local ledger key (new ledger id)",
        description="Make a new log or local ledger key under a new name, point "
        "gateway.toml at it and write trust.json pinning both the new and the old key "
        "(docs/operations.md, Key rotation). The gateway must be stopped.",
    )
    config_arg(p)
    p.add_argument("what", choices=("log", "ledger"))
    p.add_argument("name", help="the new log origin, or the new ledger id")
    p.set_defaults(func=_cmd_rotate)
