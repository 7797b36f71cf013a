"""``coldtrace gateway backup DEST`` and ``coldtrace gateway restore SRC``.

A gateway's evidence is its SQLite store (records, checkpoints, anchors,
registry) and its local ledger, both written while the gateway runs. A file
copy of a live SQLite database in WAL mode can be torn; the backup uses
SQLite's online backup API (Python's ``sqlite3.Connection.backup``), which
copies a consistent snapshot of each database while the gateway keeps
writing.

The two databases are two snapshots, so they are taken in the order that
makes the pair a state the gateway can be in after a crash (docs/decisions.md
D31): the gateway commits a checkpoint to the store, then anchors it on the
ledger, then records the anchor in the store. The ledger is copied first and
the store second, so every ledger entry names a checkpoint the store copy
holds; anchor rows of the store copy whose ledger entry came after the ledger
copy are removed from the copy, and the gateway anchors those checkpoints
again at its next start (as after a crash between the two writes). The
Merkle tree directory is not copied: it is a cache of the store, rebuilt at
start (gateway/evidence/log.py ``recover``).

``restore`` checks the copies (SQLite integrity check, the manifest's
SHA-256 of each file), moves whatever is in the data directory aside (never
deletes it), puts the copies in place and runs the gateway's own start-up
checks (log recovery, checkpoint roots, ledger chain). PostgreSQL stores are
backed up with ``pg_dump`` (docs/operations.md, "Backups").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, GatewayConfig

__all__ = ["BackupError", "backup", "register_backup_commands", "restore"]

MANIFEST = "backup.json"
FORMAT = "coldtrace-gateway-backup"


class BackupError(Exception):
    """The backup or restore cannot be done; the message says why and what to do."""


def _sqlite_copy(src: Path, dst: Path) -> None:
    """A consistent snapshot of ``src`` in ``dst`` (SQLite online backup API)."""
    if not src.exists():
        raise BackupError(f"no database at {src} (has the gateway run?)")
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
    except sqlite3.Error as exc:
        raise BackupError(f"copying {src}: {exc}") from None
    finally:
        target.close()
        source.close()
    os.chmod(dst, 0o600)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _postgres(cfg: GatewayConfig) -> bool:
    """Whether ``[store] url`` puts the store on PostgreSQL."""
    return bool(getattr(getattr(cfg, "store", None), "url", None))


def _ledger_file(cfg: GatewayConfig) -> tuple[str, Path]:
    """The ledger's SQLite file: the local ledger, or the EVM backend's anchoring state."""
    if cfg.ledger.backend == "local":
        return "ledger.db", cfg.ledger_path
    path = cfg.ledger.path if cfg.ledger.path is not None else cfg.data_dir / "evm-ledger.db"
    return "evm-ledger.db", path


def _key_files(cfg: GatewayConfig) -> list[Path]:
    files = [cfg.log.key_file, cfg.ledger.key_file, cfg.registry.key_file, cfg.witness.key_file]
    files.append(cfg.mqtt.password_file)
    files.append(getattr(getattr(cfg.ledger, "evm", None), "key_file", None))  # anchoring account
    files.append(getattr(getattr(cfg, "store", None), "password_file", None))  # PostgreSQL
    return [p for p in files if p is not None and p.exists()]


def backup(cfg: GatewayConfig, dest: Path, *, keys: bool = True) -> dict[str, Any]:
    """Copy the store, the local ledger, gateway.toml and (``keys``) the key files the
    configuration names into the new directory ``dest``; return the manifest."""
    if _postgres(cfg):
        raise BackupError(
            "the store is PostgreSQL: back it up with pg_dump (docs/operations.md, Backups)"
        )
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not an empty directory: give a new one")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    files: dict[str, str] = {}
    local = cfg.ledger.backend == "local"
    ledger_hashes: set[str] | None = None
    ledger_name, ledger_path = _ledger_file(cfg)
    if not local and ledger_path.exists():  # the EVM backend's queue and transactions
        _sqlite_copy(ledger_path, dest / ledger_name)
    if local:  # the ledger first: every entry it holds names a checkpoint the store copy has
        _sqlite_copy(ledger_path, dest / "ledger.db")
        db = sqlite3.connect(dest / "ledger.db")
        try:
            ledger_hashes = {
                bytes(r[0]).hex() for r in db.execute("SELECT checkpoint_hash FROM entries")
            }
        finally:
            db.close()
    _sqlite_copy(cfg.db_path, dest / "gateway.db")
    dropped = 0
    db = sqlite3.connect(dest / "gateway.db")
    try:
        if ledger_hashes is not None:
            for row_id, receipt in db.execute(
                "SELECT id, receipt FROM anchors WHERE backend = 'local'"
            ).fetchall():
                r = json.loads(receipt)  # receipts of a ledger rotated out stay (D31)
                if (
                    r.get("ledger") == cfg.ledger.id
                    and r.get("checkpoint_hash") not in ledger_hashes
                ):
                    db.execute("DELETE FROM anchors WHERE id = ?", (row_id,))
                    dropped += 1
            db.commit()
        leaves = db.execute("SELECT count(*) FROM records").fetchone()[0]
        cp = db.execute("SELECT max(size) FROM checkpoints").fetchone()[0] or 0
    finally:
        db.close()
    for name in ("ledger.db", "evm-ledger.db", "gateway.db"):
        if (dest / name).exists():
            files[name] = _sha256(dest / name)
    if cfg.path is not None:
        shutil.copy2(cfg.path, dest / "gateway.toml")
        files["gateway.toml"] = _sha256(dest / "gateway.toml")
    if keys:
        (dest / "keys").mkdir(mode=0o700, exist_ok=True)
        for key in _key_files(cfg):
            target = dest / "keys" / key.name
            if target.exists():
                raise BackupError(f"two key files are named {key.name}: back them up by hand")
            shutil.copy2(key, target)
            os.chmod(target, 0o600)
            files[f"keys/{key.name}"] = _sha256(target)
    manifest = {
        "format": FORMAT,
        "version": 1,
        "time": int(time.time()),
        "gateway": cfg.id,
        "origin": cfg.log.origin,
        "ledger": cfg.ledger.id if local else None,
        "leaves": leaves,
        "checkpoint": cp,
        "anchors_to_redo": dropped,
        "files": files,
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def _read_manifest(src: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{src} is not a gateway backup (no {MANIFEST})") from None
    except ValueError as exc:
        raise BackupError(f"{src / MANIFEST} is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{src / MANIFEST} is not a {FORMAT} manifest")
    for name, digest in manifest.get("files", {}).items():
        path = src / name
        if not path.exists():
            raise BackupError(f"the backup lacks {name}")
        if _sha256(path) != digest:
            raise BackupError(f"{path} changed since the backup was made (SHA-256 differs)")
    for name in ("gateway.db", "ledger.db", "evm-ledger.db"):
        if name in manifest["files"]:
            db = sqlite3.connect(f"file:{src / name}?mode=ro", uri=True)
            try:
                ok = db.execute("PRAGMA integrity_check").fetchone()[0]
            except sqlite3.Error as exc:
                ok = str(exc)
            finally:
                db.close()
            if ok != "ok":
                raise BackupError(f"{src / name} fails SQLite's integrity check: {ok}")
    return manifest


def gateway_running(cfg: GatewayConfig) -> bool:
    """A gateway runs on ``cfg``'s store: its live status is fresh and not stopped
    (read-only, without opening or migrating the store)."""
    if not cfg.db_path.exists():
        return False
    db = sqlite3.connect(f"file:{cfg.db_path}?mode=ro", uri=True, timeout=30)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()
    except sqlite3.Error:
        return False
    finally:
        db.close()
    live = json.loads(row[0]) if row else {}
    return bool(live) and not live.get("stopped") and time.time() - live.get("time", 0) < 10


def restore(cfg: GatewayConfig, src: Path) -> dict[str, Any]:
    """Put the backup in ``src`` in place of the gateway's store and ledger; check it as
    the gateway does at start. What was there is moved to ``<data_dir>/replaced-<time>``."""
    manifest = _read_manifest(src)
    if manifest.get("origin") != cfg.log.origin:
        raise BackupError(
            f"the backup is of log {manifest.get('origin')!r}, this gateway's [log] origin is "
            f"{cfg.log.origin!r}"
        )
    if gateway_running(cfg):
        raise BackupError("the gateway is running: stop it before restoring")
    if _postgres(cfg):
        raise BackupError("the store is PostgreSQL: restore it with pg_restore or psql")
    ledger_name, ledger_path = _ledger_file(cfg)
    targets = [cfg.db_path, cfg.tree_dir]
    if ledger_name in manifest["files"]:
        targets.append(ledger_path)
    aside = cfg.data_dir / time.strftime("replaced-%Y%m%dT%H%M%SZ", time.gmtime())
    moved = []
    for target in targets:
        for path in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
            if path.exists():
                aside.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), str(aside / path.name))
                moved.append(path.name)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "gateway.db", cfg.db_path)
    if ledger_name in manifest["files"]:
        ledger_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / ledger_name, ledger_path)
    report = {
        "leaves": manifest["leaves"],
        "checkpoint": manifest["checkpoint"],
        "moved_aside": str(aside) if moved else None,
    }
    if cfg.ledger.backend == "local":
        report.update(check(cfg))
    return report


def check(cfg: GatewayConfig) -> dict[str, Any]:
    """The gateway's start-up checks on its data directory, without starting it: the tree
    rebuilt from the store, the signed roots, the ledger against the store, the ledger's
    chain of signatures; the last checkpoint anchored."""
    from gateway.evidence.ledger import LedgerError
    from gateway.evidence.log import GatewayLog, LogError
    from gateway.evidence.store import open_store
    from gateway.service import load_log_signer, open_ledger

    store = open_store(cfg)
    try:
        ledger = open_ledger(cfg)
        try:
            entries = ledger.verify()
            glog = GatewayLog(store, cfg.tree_dir, load_log_signer(cfg), ledger=ledger)
            glog.close()
        finally:
            ledger.close()
        anchor = store.latest_anchor()
        return {
            "size": store.leaf_count(),
            "ledger_entries": entries,
            "anchored": None if anchor is None else anchor.size,
        }
    except (LogError, LedgerError) as exc:
        raise BackupError(f"the restored data fails the gateway's start-up checks: {exc}") from None
    finally:
        store.close()


def _load(path: Path) -> GatewayConfig:
    from gateway.config import load_config

    return load_config(path)


def _cmd_backup(args: argparse.Namespace) -> int:
    m = backup(_load(args.config), args.dest, keys=not args.no_keys)
    redo = f"; {m['anchors_to_redo']} anchor(s) redone at restore" if m["anchors_to_redo"] else ""
    print(
        f"backed up gateway {m['gateway']} to {args.dest}: {m['leaves']} records, "
        f"checkpoint {m['checkpoint']}{redo}; files: {', '.join(m['files'])}"
    )
    if not args.no_keys:
        print(f"{args.dest}/keys holds private keys: store the backup as safely as the keys")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    r = restore(_load(args.config), args.src)
    if r.get("moved_aside"):
        print(f"moved the replaced files to {r['moved_aside']}")
    line = f"restored {r['leaves']} records, checkpoint {r['checkpoint']}"
    if "size" in r:
        line += (
            f"; start-up checks passed: log of {r['size']} leaves, ledger of "
            f"{r['ledger_entries']} entries, last anchored checkpoint {r['anchored']}"
        )
    print(line)
    return 0


def _wrap(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except (BackupError, ConfigError) as exc:
            print(f"coldtrace gateway: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"coldtrace gateway: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
            return 1

    return run


def register_backup_commands(sub: Any, config_arg: Any) -> None:
    """Add ``backup`` and ``restore`` to the ``coldtrace gateway`` subcommands."""
    p = sub.add_parser(
        "backup",
        help="copy the store, ledger, config and keys while the gateway runs",
        description="An online, consistent copy of the gateway's SQLite store and local "
        "ledger (SQLite backup API), its gateway.toml and key files, into a new directory.",
    )
    config_arg(p)
    p.add_argument("dest", type=Path, metavar="DEST", help="a new (or empty) directory")
    p.add_argument("--no-keys", action="store_true", help="leave the private keys out")
    p.set_defaults(func=_wrap(_cmd_backup))
    p = sub.add_parser(
        "restore",
        help="put a backup in place of the store and ledger (gateway stopped)",
        description="Check a backup made by `coldtrace gateway backup`, move the current "
        "store, ledger and tree aside, put the backup in place and run the gateway's "
        "start-up checks. Keys and gateway.toml are not touched: copy them back by hand "
        "if they were lost.",
    )
    config_arg(p)
    p.add_argument("src", type=Path, metavar="SRC", help="the backup directory")
    p.set_defaults(func=_wrap(_cmd_restore))
