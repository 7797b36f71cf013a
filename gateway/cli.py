"""``coldtrace gateway ...``: the gateway's command line.

    coldtrace gateway init      --dir DIR          keys, gateway.toml, trust.json
    coldtrace gateway run       --config FILE      the gateway (until SIGINT/SIGTERM)
    coldtrace gateway status    --config FILE      rate, backlog, rejects, devices, checkpoint,
                                                   declared losses
    coldtrace gateway rejects   --config FILE      the quarantine
    coldtrace gateway registry  {add,list,update,revoke,import}
    coldtrace gateway checkpoints --config FILE    signed checkpoints and anchors
    coldtrace gateway proof     --config FILE --device D --seq N
    coldtrace gateway bundle    --config FILE --device D [--from N --to M] -o FILE
    coldtrace gateway trust     --config FILE      the trust file a verifier pins

Broker commands (``broker``, ``certs``) and alert/metrics commands come from
their own modules (gateway/broker.py, gateway/alerts.py, gateway/metrics.py)
through the registration functions they document.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``coldtrace gateway`` and its subcommands (the coldtrace.commands entry point)."""
    gw = subparsers.add_parser(
        "gateway",
        help="run and operate a gateway (MQTT ingest, log, checkpoints, ledger)",
        description="The ColdTrace gateway: verified MQTT ingest, a Merkle log with signed "
        "checkpoints, and the local ledger.",
    )
    gw.set_defaults(func=lambda args: (gw.print_help(), 2)[1])
    sub = gw.add_subparsers(dest="gateway_command", metavar="COMMAND")

    def cmd(name: str, help: str, func: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            "-c",
            type=Path,
            default=Path("gateway.toml"),
            help="gateway configuration (default: gateway.toml)",
        )

    p = cmd("init", "create keys, gateway.toml and trust.json for a new gateway", _init)
    p.add_argument("--dir", type=Path, default=Path("."), help="where to create them")
    p.add_argument("--id", default="gateway", help="gateway id (the kid of acks)")
    p.add_argument("--origin", default=None, help="log origin (default coldtrace.local/<id>)")
    p.add_argument("--registry-id", default="registry")
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--mqtt-username", default=None)
    p.add_argument("--mqtt-password-file", default=None)
    p.add_argument("--force", action="store_true", help="overwrite an existing gateway.toml")

    p = cmd("run", "run the gateway until interrupted", _run)
    config_arg(p)
    p.add_argument("-v", "--verbose", action="store_true")

    p = cmd("status", "ingest rate, backlog, rejects, devices, last checkpoint and anchor", _status)
    config_arg(p)
    p.add_argument("--json", action="store_true")

    p = cmd("rejects", "list quarantined (refused) messages", _rejects)
    config_arg(p)
    p.add_argument("--reason", default=None)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.add_argument("--raw", action="store_true", help="include the raw bytes (base64)")

    p = cmd("checkpoints", "list signed checkpoints and their anchors", _checkpoints)
    config_arg(p)
    p.add_argument("--json", action="store_true")

    p = cmd("proof", "inclusion proof of a device record in a checkpoint", _proof)
    config_arg(p)
    p.add_argument("--device", required=True)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--checkpoint", type=int, default=None, help="tree size (default: latest)")

    p = cmd("bundle", "write a trace bundle for a device's records", _bundle)
    config_arg(p)
    p.add_argument("--device", required=True)
    p.add_argument("--from", dest="seq_from", type=int, default=0)
    p.add_argument("--to", dest="seq_to", type=int, default=2**32 - 1)
    p.add_argument("-o", "--output", type=Path, required=True)

    p = cmd("trust", "print the trust file that pins this gateway's keys", _trust)
    config_arg(p)
    p.add_argument("-o", "--output", type=Path, default=None)

    reg = sub.add_parser("registry", help="the device registry", description="The device registry.")
    reg.set_defaults(func=lambda args: (reg.print_help(), 2)[1])
    rsub = reg.add_subparsers(dest="registry_command", metavar="COMMAND")
    p = rsub.add_parser(
        "add", help="register a device (or every device of a provisioning file with --file)"
    )
    p.set_defaults(func=_reg_add)
    config_arg(p)
    p.add_argument("device", nargs="?")
    p.add_argument("--file", type=Path, default=None, help="provisioning JSON (as `import`)")
    p.add_argument("--key", help="SEC1 P-256 public key: base64, hex or @file.pem")
    p.add_argument("--role", default="logger", help="logger (1) or reader (2)")
    p.add_argument("--org")
    p.add_argument("--place", default=None)
    p.add_argument("--cal", type=int, default=None)
    p.add_argument("--ack-key", default=None, help="32-byte ack key (hex); generated if absent")
    p = rsub.add_parser("update", help="record a device's new place or calibration")
    p.set_defaults(func=_reg_update)
    config_arg(p)
    p.add_argument("device")
    p.add_argument("--place", default=None)
    p.add_argument("--cal", type=int, default=None)
    p = rsub.add_parser("revoke", help="revoke a device (earlier records stay valid)")
    p.set_defaults(func=_reg_revoke)
    config_arg(p)
    p.add_argument("device")
    p = rsub.add_parser("list", help="list registered devices")
    p.set_defaults(func=_reg_list)
    config_arg(p)
    p.add_argument("--json", action="store_true")
    p = rsub.add_parser("import", help="register devices from a provisioning JSON file")
    p.set_defaults(func=_reg_import)
    config_arg(p)
    p.add_argument("file", type=Path)

    # Commands owned by the other gateway modules, through their documented hooks.
    for module, hook in (
        ("gateway.broker", "register_broker_commands"),
        ("gateway.alerts", "register_alert_commands"),
        ("gateway.metrics", "register_metrics_commands"),
    ):
        try:
            fn = getattr(importlib.import_module(module), hook, None)
        except ImportError:
            fn = None
        if fn is not None:
            fn(sub)


# --- helpers ---------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> Any:
    from gateway.config import ConfigError, load_config

    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"coldtrace gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _store(cfg: Any) -> Any:
    from gateway.store import open_store

    if not cfg.db_path.exists():
        print(
            f"coldtrace gateway: no database at {cfg.db_path} (has the gateway run?)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return open_store(cfg.db_path)


def _ago(t: int | None) -> str:
    if not t:
        return "never"
    d = int(time.time()) - int(t)
    return f"{d} s ago" if d < 120 else f"{d // 60} min ago"


# --- commands ------------------------------------------------------------------------------


def _init(args: argparse.Namespace) -> int:
    from gateway.config import load_config, render_config
    from gateway.service import trust_document
    from protocol.keys import generate_ed25519, generate_p256, save_private_key
    from protocol.note import NoteSigner

    d: Path = args.dir
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "gateway.toml"
    if conf.exists() and not args.force:
        print(f"coldtrace gateway: {conf} exists (use --force to overwrite)", file=sys.stderr)
        return 2
    keys = d / "keys"
    keys.mkdir(exist_ok=True)
    origin = args.origin or f"coldtrace.local/{args.id}"
    log_key = keys / "log.skey"
    if not log_key.exists() or args.force:
        signer = NoteSigner.generate(origin)
        log_key.write_text(signer.skey + "\n", encoding="utf-8")
        log_key.chmod(0o600)
    for name, gen in (("ledger.pem", generate_ed25519), ("registry.pem", generate_p256)):
        path = keys / name
        if not path.exists() or args.force:
            save_private_key(gen(), path)
    text = render_config(
        {
            "gateway": {"id": args.id, "data_dir": "var"},
            "mqtt": {
                "host": args.mqtt_host,
                "port": args.mqtt_port,
                "username": args.mqtt_username,
                "password_file": args.mqtt_password_file,
            },
            "ingest": {"batch_size": 500, "verify_mode": "processes", "verify_workers": 2},
            "log": {
                "origin": origin,
                "key_file": "keys/log.skey",
                "checkpoint_interval": 10.0,
                "checkpoint_leaves": 10000,
            },
            "ledger": {"backend": "local", "id": f"{origin}/ledger", "key_file": "keys/ledger.pem"},
            "registry": {"id": args.registry_id, "key_file": "keys/registry.pem"},
        }
    )
    conf.write_text(text, encoding="utf-8")
    cfg = load_config(conf)
    (d / "trust.json").write_text(json.dumps(trust_document(cfg), indent=1) + "\n")
    print(f"wrote {conf}, keys in {keys}/ and {d / 'trust.json'}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from gateway.service import Gateway

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cfg = _load(args)
    return Gateway(cfg).run()  # alerts (gateway/alerts.py) and metrics are wired inside


def _status(args: argparse.Namespace) -> int:
    cfg = _load(args)
    store = _store(cfg)
    try:
        live = json.loads(store.get_meta("status") or "{}")
        presence = store.presence()
        counters = store.counters()
        rejects = store.reject_counts()
        cp = store.latest_checkpoint()
        anchor = store.latest_anchor()
        devices = store.devices()
        losses = store.declared_losses(limit=20)
        report = {
            "gateway": cfg.id,
            "running": bool(live) and time.time() - live.get("time", 0) < 10,
            "connected": live.get("connected"),
            "ingest_rate": live.get("ingest_rate", 0.0),
            "backlog": live.get("backlog", 0),
            "records": store.leaf_count(),
            "accepted": counters.get("accepted", 0),
            "duplicates": counters.get("duplicates", 0),
            "rejects": rejects,
            "devices": {
                "registered": sum(1 for d in devices.values() if d.state == 1),
                "revoked": sum(1 for d in devices.values() if d.state == 2),
                "online": sorted(d for d, (s, _) in presence.items() if s == "online"),
                "offline": sorted(d for d, (s, _) in presence.items() if s == "offline"),
            },
            "last_checkpoint": None if cp is None else {"size": cp.size, "time": cp.time},
            "last_anchor": None
            if anchor is None
            else {
                "size": anchor.size,
                "time": anchor.time,
                "backend": anchor.backend,
                "index": anchor.receipt.get("index"),
            },
            "declared_lost": [
                {
                    "device": x.signer,
                    "from": x.seq_from,
                    "to": x.seq_to,
                    "status_seq": x.status_seq,
                    "time": x.time,
                }
                for x in losses
            ],
            "alarms": live.get("alarms", []),
        }
    finally:
        store.close()
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    state = "running" if report["running"] else "not running"
    conn = "connected" if report["connected"] else "not connected"
    print(f"gateway {cfg.id}: {state}, {conn} to the broker")
    print(f"  ingest rate   {report['ingest_rate']:.1f} records/s, backlog {report['backlog']}")
    print(f"  records       {report['records']} logged, {report['duplicates']} duplicates re-acked")
    total = sum(rejects.values())
    print(
        f"  rejects       {total}"
        + "".join(f"\n    {n:>8}  {r}" for r, n in sorted(rejects.items()))
    )
    dv = report["devices"]
    print(
        f"  devices       {dv['registered']} registered, {dv['revoked']} revoked; "
        f"{len(dv['online'])} online, {len(dv['offline'])} offline"
    )
    if dv["offline"]:
        print(f"    offline: {', '.join(dv['offline'][:20])}")
    lc, la = report["last_checkpoint"], report["last_anchor"]
    print("  checkpoint    " + ("none" if lc is None else f"size {lc['size']}, {_ago(lc['time'])}"))
    print(
        "  anchor        "
        + (
            "none"
            if la is None
            else f"size {la['size']} on {la['backend']} ledger entry {la['index']}, "
            f"{_ago(la['time'])}"
        )
    )
    if losses:
        print("  declared lost (status event 11, docs/protocol.md §5.2; newest first)")
        for x in losses:
            one = x.seq_from == x.seq_to
            seqs = f"seq {x.seq_from}" if one else f"seqs {x.seq_from}..{x.seq_to}"
            print(
                f"    {x.signer}: {seqs}, declared by its status record seq {x.status_seq}, "
                f"{_ago(x.time)}"
            )
    for alarm in report["alarms"]:
        print(f"  ALARM         {alarm}")
    return 0


def _rejects(args: argparse.Namespace) -> int:
    from protocol.keys import b64e

    cfg = _load(args)
    store = _store(cfg)
    try:
        rows = store.rejects(limit=args.limit, reason=args.reason)
    finally:
        store.close()
    if args.json:
        out = []
        for r in rows:
            item = {
                "id": r.id,
                "received": r.received,
                "last_seen": r.last_seen,
                "count": r.count,
                "topic": r.topic,
                "reason": r.reason,
                "detail": r.detail,
                "signer": r.signer,
                "seq": r.seq,
                "size": len(r.raw),
            }
            if args.raw:
                item["raw"] = b64e(r.raw)
            out.append(item)
        print(json.dumps(out, indent=1))
        return 0
    if not rows:
        print("no rejected messages")
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.received))
        who = f"{r.signer or '?'}#{'' if r.seq is None else r.seq}"
        times = f" x{r.count}" if r.count > 1 else ""
        print(f"{r.id:>6} {when}Z {r.reason:<16} {who:<24} {r.topic}{times}\n       {r.detail}")
        if args.raw:
            print(f"       raw {b64e(r.raw)}")
    return 0


def _checkpoints(args: argparse.Namespace) -> int:
    cfg = _load(args)
    store = _store(cfg)
    try:
        cps = store.checkpoints()
        anchors = {a.size: a for a in store.anchors()}
    finally:
        store.close()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "size": c.size,
                        "root": c.root.hex(),
                        "time": c.time,
                        "note": c.note,
                        "anchor": anchors[c.size].receipt if c.size in anchors else None,
                    }
                    for c in cps
                ],
                indent=1,
            )
        )
        return 0
    for c in cps:
        a = anchors.get(c.size)
        where = f"anchored ({a.backend} #{a.receipt.get('index')})" if a else "not anchored"
        print(f"{c.size:>10}  {c.root.hex()[:16]}…  {_ago(c.time):>12}  {where}")
    return 0


def _reader(cfg: Any, store: Any) -> Any:
    from gateway.proofs import TreeReader

    cp = store.latest_checkpoint()
    return TreeReader(cfg.tree_dir, 0 if cp is None else cp.size)


def _proof(args: argparse.Namespace) -> int:
    from gateway.proofs import ProofUnavailable, inclusion
    from protocol.keys import b64e

    cfg = _load(args)
    store = _store(cfg)
    try:
        rec = store.record_by_seq(args.device, args.seq)
        if rec is None:
            print(f"no record {args.device}#{args.seq}", file=sys.stderr)
            return 1
        tree = _reader(cfg, store)
        try:
            p = inclusion(store, tree, rec.leaf, args.checkpoint)
        except ProofUnavailable as exc:
            print(f"coldtrace gateway: {exc}", file=sys.stderr)
            return 1
        finally:
            tree.close()
    finally:
        store.close()
    print(
        json.dumps(
            {
                "log": cfg.log.origin,
                "index": p["index"],
                "tree_size": p["tree_size"],
                "path": [b64e(h) for h in p["path"]],
                "record": b64e(rec.raw),
                "checkpoint": p["checkpoint"],
            },
            indent=1,
        )
    )
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from gateway.proofs import ProofUnavailable, bundle_for_device

    cfg = _load(args)
    store = _store(cfg)
    try:
        tree = _reader(cfg, store)
        try:
            b = bundle_for_device(
                store, tree, cfg.log.origin, args.device, args.seq_from, args.seq_to
            )
        except ProofUnavailable as exc:
            print(f"coldtrace gateway: {exc}", file=sys.stderr)
            return 1
        finally:
            tree.close()
    finally:
        store.close()
    args.output.write_text(b.dumps(), encoding="utf-8")
    print(
        f"wrote {args.output}: {len(b.records)} records, checkpoint size "
        f"{b.inclusion[0].tree_size if b.inclusion else 0}, {len(b.anchors)} anchor(s)"
    )
    return 0


def _trust(args: argparse.Namespace) -> int:
    from gateway.service import trust_document

    text = json.dumps(trust_document(_load(args)), indent=1) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


def _signer(cfg: Any, store: Any) -> Any:
    from gateway.registry import RegistrySigner
    from protocol.keys import load_p256_private_key

    if cfg.registry.key_file is None or not cfg.registry.key_file.exists():
        print(
            "coldtrace gateway: [registry] key_file is needed to sign registrations",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return RegistrySigner(store, cfg.registry.id, load_p256_private_key(cfg.registry.key_file))


def _open_rw(cfg: Any) -> Any:
    from gateway.store import open_store

    return open_store(cfg.db_path)


def _key_arg(text: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    from gateway.registry import _key_bytes
    from protocol.keys import p256_public_to_sec1

    if text.startswith("@"):
        data = Path(text[1:]).read_bytes()
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            key = serialization.load_pem_private_key(data, None).public_key()
        return p256_public_to_sec1(key)  # type: ignore[arg-type]
    return _key_bytes(text, "key", 65)


def _reg_add(args: argparse.Namespace) -> int:
    from gateway.registry import _key_bytes, parse_role

    if args.file is not None:
        args.func = _reg_import
        return _reg_import(args)
    if not (args.device and args.key and args.org):
        print(
            "coldtrace gateway: registry add needs DEVICE --key --org (or --file)", file=sys.stderr
        )
        return 2
    ok, result = _with_signer(
        args,
        lambda s: s.add(
            args.device,
            _key_arg(args.key),
            role=parse_role(args.role),
            org=args.org,
            place=args.place,
            cal=args.cal,
            ack_key=None if args.ack_key is None else _key_bytes(args.ack_key, "ack key", 32),
        ),
    )
    if not ok:
        return 1
    raw, ack_key = result
    print(
        json.dumps(
            {"device": args.device, "ack_key": ack_key.hex(), "registration_bytes": len(raw)}
        )
    )
    return 0


def _with_signer(args: argparse.Namespace, action: Callable[[Any], Any]) -> tuple[bool, Any]:
    """Run ``action(registry signer)`` on the gateway's store; a RegistryError is
    printed and gives ``(False, None)``."""
    from gateway.registry import RegistryError

    cfg = _load(args)
    store = _open_rw(cfg)
    try:
        return True, action(_signer(cfg, store))
    except RegistryError as exc:
        print(f"coldtrace gateway: {exc}", file=sys.stderr)
        return False, None
    finally:
        store.close()


def _reg_update(args: argparse.Namespace) -> int:
    ok, _ = _with_signer(args, lambda s: s.update(args.device, place=args.place, cal=args.cal))
    if ok:
        print(f"{args.device}: update queued for the log")
    return 0 if ok else 1


def _reg_revoke(args: argparse.Namespace) -> int:
    ok, _ = _with_signer(args, lambda s: s.revoke(args.device))
    if ok:
        print(f"{args.device}: revocation queued for the log (earlier records stay valid)")
    return 0 if ok else 1


def _reg_list(args: argparse.Namespace) -> int:
    from gateway.registry import device_json

    cfg = _load(args)
    store = _store(cfg)
    try:
        rows = [device_json(d) for d in sorted(store.devices().values(), key=lambda d: d.id)]
        pending = len(store.outbox_pending())
    finally:
        store.close()
    if args.json:
        print(json.dumps({"devices": rows, "pending_registrations": pending}, indent=1))
        return 0
    for d in rows:
        print(
            f"{d['device']:<24} {d['role']:<7} {d['state']:<8} {d['org']:<20} "
            f"{d['place'] or '-':<20} leaf {d['registered_leaf']}"
        )
    if pending:
        print(f"({pending} registration(s) waiting for the gateway to log them)")
    return 0


def _reg_import(args: argparse.Namespace) -> int:
    from gateway.registry import load_provisioning

    ok, done = _with_signer(args, lambda s: s.import_entries(load_provisioning(args.file)))
    if ok:
        print(f"registered {len(done)} device(s): {', '.join(done)}")
    return 0 if ok else 1
