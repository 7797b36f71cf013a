"""``coldtrace gateway ...``: the gateway's command line.

    coldtrace gateway init      --dir DIR          keys, gateway.toml, trust.json
    coldtrace gateway run       --config FILE      the gateway (until SIGINT/SIGTERM)
    coldtrace gateway status    --config FILE      rate, backlog, rejects, devices, checkpoint,
                                                   declared losses
    coldtrace gateway rejects   --config FILE      the quarantine, and what was counted
                                [--purge [--reason R] [--device D] [--before T]]
                                [--release [--reason R] [--device D]]
    coldtrace gateway registry  {add,list,update,revoke,import,bind,unbind,bindings,
                                 profile,restate,import-statement}
                                                   (gateway/registry_cli.py)
    coldtrace gateway checkpoints --config FILE    signed checkpoints and anchors
    coldtrace gateway proof     --config FILE --device D --seq N
    coldtrace gateway trace     --config FILE TAG_UID|DIGITAL_LINK -o FILE
                                [--no-restate] [--wait S]   (gateway/trace.py)
    coldtrace gateway trust     --config FILE      the trust file a verifier pins
    coldtrace gateway push      --config FILE [--wait S]   push the log to [cloud] url
                                                   (gateway/push.py; `run` does it too)
    coldtrace gateway witness   --config FILE [--once]     witness [[witness.peers]]
    coldtrace gateway witness-key --config FILE    the witness vkey to register with the cloud
    coldtrace gateway backup    --config FILE DEST  online copy of store, ledger, config, keys
    coldtrace gateway restore   --config FILE SRC   put a backup in place (gateway/backup.py)
    coldtrace gateway rotate    --config FILE {log,ledger} NEW_NAME   a new key (gateway/rotate.py)
    coldtrace gateway dashboard --config FILE [--listen HOST:PORT]
                                                   the operator's web page alone, against the
                                                   store (`run` serves it with [dashboard])

There is no device bundle any more: a version-2 bundle is about one item (its
``subject`` is a tag, docs/protocol.md §9); ``proof`` gives one record's
inclusion proof.

Broker commands (``broker``, ``certs``) and alert/metrics commands come from
their own modules (gateway/transport/broker.py, gateway/alerts.py, gateway/metrics.py)
through the registration functions they document.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import secrets
import sys
import time
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
    p.add_argument("--mqtt-username", default=None, help="broker account (default gw@<id>)")
    p.add_argument(
        "--mqtt-password-file",
        default=None,
        help="its password, first line (default: keys/mqtt.password, made here; "
        "`coldtrace gateway broker --gateway-config` gives the broker the same)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing gateway.toml")
    p.add_argument(
        "--profile",
        choices=_profile_names(),
        default=None,
        help="temperature profile that alarms for every place (asked on a terminal, "
        "else chilled; none: temperature alarms off)",
    )

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
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--purge",
        action="store_true",
        help="delete the quarantined messages that match --reason, --device, --before (all "
        "without them), leaving a count and digest per reason and device, and an audit line",
    )
    what.add_argument(
        "--release",
        action="store_true",
        help="send the matching quarantined messages back to the running gateway, which checks "
        "them again (e.g. after registering a device that was unknown)",
    )
    p.add_argument("--device", default=None, help="with --purge/--release: this device's only")
    p.add_argument(
        "--before",
        default=None,
        help="with --purge: last seen before this time (unix seconds or ISO 8601, UTC if no zone)",
    )

    p = cmd("checkpoints", "list signed checkpoints and their anchors", _checkpoints)
    config_arg(p)
    p.add_argument("--json", action="store_true")

    p = cmd("proof", "inclusion proof of a device record in a checkpoint", _proof)
    config_arg(p)
    p.add_argument("--device", required=True)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--checkpoint", type=int, default=None, help="tree size (default: latest)")

    from gateway.trace import register_trace_command

    register_trace_command(sub, config_arg)

    p = cmd("trust", "print the trust file that pins this gateway's keys", _trust)
    config_arg(p)
    p.add_argument("-o", "--output", type=Path, default=None)
    p.add_argument(
        "--keep",
        action="append",
        metavar="OLD_TRUST",
        help="also pin the keys of an earlier trust file (after a key rotation)",
    )

    p = cmd(
        "push",
        "push the log up to its latest checkpoint (and receipts) to the [cloud] url; "
        "exit 0 when the cloud holds it all",
        _push,
    )
    config_arg(p)
    p.add_argument("--wait", type=float, default=60.0, help="seconds to keep retrying (default 60)")

    p = cmd("witness", "check and cosign the peers' latest checkpoints from the cloud", _witness)
    config_arg(p)
    p.add_argument("--once", action="store_true", help="one round, then exit")

    p = cmd("witness-key", "print this gateway's witness vkey (made on first use)", _witness_key)
    config_arg(p)

    p = cmd(
        "dashboard",
        "serve the operator's dashboard against the gateway's store (gateway/dashboard.py)",
        _dashboard,
    )
    config_arg(p)
    p.add_argument(
        "--listen", default=None, help='HOST:PORT (default: [dashboard] listen, "127.0.0.1:8700")'
    )

    from gateway.registry_cli import register_registry_commands

    register_registry_commands(sub, config_arg)

    from gateway.calibrate import register_calibrate_command

    register_calibrate_command(sub, config_arg)

    from gateway.backup import register_backup_commands
    from gateway.rotate import register_rotate_commands

    register_backup_commands(sub, config_arg)
    register_rotate_commands(sub, config_arg)

    # Commands owned by the other gateway modules, through their documented hooks.
    for module, hook in (
        ("gateway.transport.broker", "register_broker_commands"),
        ("gateway.alerts", "register_alert_commands"),
        ("gateway.metrics", "register_metrics_commands"),
        ("gateway.ledger_cli", "register_ledger_commands"),
        ("gateway.ota", "register_ota_commands"),
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
    if cfg.store.url is None and not cfg.db_path.exists():
        print(
            f"coldtrace gateway: no database at {cfg.db_path} (has the gateway run?)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return _open_or_exit(cfg)


def _open_or_exit(cfg: Any) -> Any:
    """The store, or exit 2 with the reason in a sentence (e.g. PostgreSQL unreachable)."""
    from gateway.evidence.store import StoreError, open_store

    try:
        return open_store(cfg)
    except StoreError as exc:
        print(f"coldtrace gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


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
    profile = _choose_profile(args.profile)
    keys = d / "keys"
    keys.mkdir(exist_ok=True)
    origin = args.origin or f"coldtrace.local/{args.id}"
    log_key = keys / "log.skey"
    if not log_key.exists() or args.force:
        signer = NoteSigner.generate(origin)
        log_key.write_text(signer.skey + "\n", encoding="utf-8")
        log_key.chmod(0o600)
    for name, gen in (
        ("ledger.pem", generate_ed25519),
        ("registry.pem", generate_p256),
        ("witness.key", generate_ed25519),  # [witness] key_file: cosigns peers' logs
    ):
        path = keys / name
        if not path.exists() or args.force:
            save_private_key(gen(), path)
    password_file = args.mqtt_password_file
    if password_file is None:  # the broker reads it too: nobody copies a password by hand
        password_file = "keys/mqtt.password"
        secret = keys / "mqtt.password"
        if not secret.exists() or args.force:
            secret.touch(mode=0o600)
            secret.chmod(0o600)
            secret.write_text(secrets.token_urlsafe(24) + "\n", encoding="utf-8")
    text = render_config(
        {
            "gateway": {"id": args.id, "data_dir": "var"},
            "mqtt": {
                "host": args.mqtt_host,
                "port": args.mqtt_port,
                "username": args.mqtt_username or f"gw@{args.id}",
                "password_file": password_file,
            },
            "ingest": {"batch_size": 500, "verify_mode": "processes", "verify_workers": 2},
            "log": {
                "origin": origin,
                "key_file": "keys/log.skey",
                "checkpoint_interval": 10.0,
                "checkpoint_leaves": 10000,
            },
            "ledger": {"backend": "local", "id": f"{origin}/ledger", "key_file": "keys/ledger.pem"},
            "registry": {
                "id": args.registry_id,
                "key_file": "keys/registry.pem",
                # scopes the trust file pins: device ids, places, GTINs (patterns)
                "devices": ["*"],
                "places": ["*"],
                "gtins": ["*"],
                "restate_interval": 86400,
            },
            **({"alerts": {"default": profile}} if profile else {}),
        }
    )
    conf.write_text(text, encoding="utf-8")
    cfg = load_config(conf)
    (d / "trust.json").write_text(json.dumps(trust_document(cfg), indent=1) + "\n")
    print(f"wrote {conf}, keys in {keys}/ and {d / 'trust.json'}")
    print(_profile_note(profile))
    return 0


def _run(args: argparse.Namespace) -> int:
    from gateway.service import run as run_gateway

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from gateway.config import ConfigError
    from gateway.evidence.diskfull import EXIT_DISK_FULL, DiskFull
    from gateway.evidence.ledger import LedgerError
    from gateway.evidence.log import LogError
    from gateway.evidence.store import StoreError

    cfg = _load(args)
    try:
        # alerts (gateway/alerts.py), metrics, dashboard are wired inside; a lost
        # database connection is waited out (docs/decisions.md D38)
        return run_gateway(cfg)
    except (ConfigError, StoreError) as exc:
        print(f"coldtrace gateway: {exc}", file=sys.stderr)
        return 2
    except DiskFull as exc:  # at start: opening the store, recovering the log
        print(f"coldtrace gateway: {exc}", file=sys.stderr)
        return EXIT_DISK_FULL
    except (LogError, LedgerError) as exc:  # at start: the store, tree and ledger disagree
        print(f"coldtrace gateway: {exc} (see docs/operations.md, Backups)", file=sys.stderr)
        return 2


def _status(args: argparse.Namespace) -> int:
    from gateway.evidence.quarantine import disk_bytes
    from gateway.evidence.registry import Registry

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
        bound = Registry({}, devices, store.statement_heads()).places_of()
        losses = store.declared_losses(limit=20)
        q_rows, q_bytes = store.quarantine_usage()
        q_bytes = disk_bytes(q_rows, q_bytes)  # as the cap counts them
        q_dropped: dict[str, int] = {}
        for d in store.quarantine_dropped():
            q_dropped[d.cause] = q_dropped.get(d.cause, 0) + d.count
        report = {
            "gateway": cfg.id,
            "running": bool(live)
            and not live.get("stopped")
            and time.time() - live.get("time", 0) < 10,
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
                "bound": len(bound),
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
                "block_number": anchor.receipt.get("block_number"),  # an EVM anchor's
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
            "quarantine": {
                "rows": q_rows,
                "bytes": q_bytes,
                "max_rows": cfg.quarantine.max_rows,
                "max_bytes": cfg.quarantine.max_bytes,
                "dropped": q_dropped,
            },
            "verify_restarts": live.get("verify_restarts", 0),
            "store_outages": live.get("store_outages", 0),  # D38: waited out, not exits
            "store_outage_seconds": live.get("store_outage_seconds", 0),
        }
        if cfg.cloud is not None:
            frozen = store.get_meta("cloud.frozen") or ""
            report["cloud"] = {
                "url": cfg.cloud.url,
                "size": int(store.get_meta("cloud.size") or 0),
                "backlog": max(
                    0, (0 if cp is None else cp.size) - int(store.get_meta("cloud.size") or 0)
                ),
                "stopped": json.loads(frozen) if frozen else None,
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
    qr = report["quarantine"]
    print(
        f"  quarantine    {qr['rows']} of {qr['max_rows']} rows, {qr['bytes']} of "
        f"{qr['max_bytes']} bytes; counted, not stored: "
        + (", ".join(f"{n} {_CAUSES.get(c, c)}" for c, n in sorted(qr["dropped"].items())) or "0")
    )
    if report["verify_restarts"]:
        print(f"  workers       {report['verify_restarts']} verification process restart(s)")
    if report["store_outages"]:
        print(
            f"  database      {report['store_outages']} outage(s) waited out, "
            f"{report['store_outage_seconds']:.0f} s in all"
        )
    dv = report["devices"]
    print(
        f"  devices       {dv['registered']} registered, {dv['revoked']} revoked, "
        f"{dv['bound']} bound to a place; "
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
            else f"size {la['size']} on {la['backend']} "
            + (
                f"ledger entry {la['index']}, "
                if la.get("block_number") is None
                else f"block {la['block_number']}, "
            )
            + _ago(la["time"])
        )
    )
    cl = report.get("cloud")
    if cl is not None:
        line = f"  cloud         {cl['size']} records held by {cl['url']}, backlog {cl['backlog']}"
        if cl["stopped"]:
            line += f"; PUSHING STOPPED: {cl['stopped']['kind']}: {cl['stopped']['message']}"
        print(line)
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
    if args.purge or args.release:
        return _purge_or_release(args, cfg)
    if args.before is not None or args.device is not None:
        print("coldtrace gateway: --device and --before go with --purge", file=sys.stderr)
        return 2
    store = _store(cfg)
    try:
        rows = store.rejects(limit=args.limit, reason=args.reason)
        dropped = store.quarantine_dropped()
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
            if r.truncated:
                item["size"], item["kept"] = r.size, len(r.raw)
            if args.raw:
                item["raw"] = b64e(r.raw)
            out.append(item)
        print(json.dumps(out, indent=1))
        return 0
    if not rows:
        print("no rejected messages")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.received))
        who = f"{r.signer or '?'}#{'' if r.seq is None else r.seq}"
        times = f" x{r.count}" if r.count > 1 else ""
        cut = f" (first {len(r.raw)} of {r.size} bytes kept)" if r.truncated else ""
        print(f"{r.id:>6} {when}Z {r.reason:<16} {who:<24} {r.topic}{times}{cut}")
        print(f"       {r.detail}")
        if args.raw:
            print(f"       raw {b64e(r.raw)}")
    _print_dropped(dropped, args.reason)
    return 0


_CAUSES = {
    "rate": "over the device's rate limit",
    "full": "the quarantine was full",
    "purged": "purged by an operator",
}


def _print_dropped(dropped: list[Any], reason: str | None) -> None:
    """The counted-not-stored summaries (gateway/evidence/quarantine.py)."""
    dropped = [d for d in dropped if reason is None or d.reason == reason]
    if not dropped:
        return
    print("not stored one by one (count, bytes, first and last seen, digest chain):")
    for d in dropped:
        first = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.first_seen))
        last = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.last_seen))
        print(
            f"  {d.count:>8} {d.reason:<16} {d.device or '-':<24} {d.bytes} bytes, "
            f"{first}Z .. {last}Z; {_CAUSES.get(d.cause, d.cause)}\n"
            f"           digest {d.digest.hex()}"
        )


def _purge_or_release(args: argparse.Namespace, cfg: Any) -> int:
    """``rejects --purge`` / ``--release`` (the store writes the audit line)."""
    import getpass

    before = None
    if args.before is not None:
        if args.release:
            print("coldtrace gateway: --before goes with --purge", file=sys.stderr)
            return 2
        before = _parse_time(args.before)
        if before is None:
            print(
                f"coldtrace gateway: --before {args.before!r} is neither unix seconds nor an "
                "ISO 8601 time (e.g. 2026-12-01T00:00:00Z)",
                file=sys.stderr,
            )
            return 2
    actor = f"cli:{getpass.getuser()}"
    store = _store(cfg)
    try:
        if args.purge:
            done = store.purge_rejects(
                reason=args.reason, device=args.device, before=before, actor=actor
            )
        else:
            released, cut = store.release_rejects(
                reason=args.reason, device=args.device, actor=actor
            )
    finally:
        store.close()
    if args.purge:
        print(
            f"purged {done['rows']} quarantined message(s) ({done['messages']} received, "
            f"{done['bytes']} bytes); their count and digest are kept "
            "(`coldtrace gateway rejects` lists them as purged)"
        )
        return 0
    print(
        f"released {released} quarantined message(s): the running gateway checks them again "
        "within a second (or at its next start); each is accepted or quarantined again"
    )
    if cut:
        print(f"{cut} message(s) kept only in part (cut to keep_bytes) cannot be released")
    return 0


def _parse_time(text: str) -> int | None:
    from datetime import UTC, datetime

    if text.isdigit():
        return int(text)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp())


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
        if a and a.backend == "evm":
            where = f"anchored (evm block {a.receipt.get('block_number')})"
        print(f"{c.size:>10}  {c.root.hex()[:16]}…  {_ago(c.time):>12}  {where}")
    return 0


def _reader(cfg: Any, store: Any) -> Any:
    from gateway.evidence.proofs import TreeReader

    cp = store.latest_checkpoint()
    return TreeReader(cfg.tree_dir, 0 if cp is None else cp.size)


def _proof(args: argparse.Namespace) -> int:
    from gateway.evidence.proofs import ProofUnavailable, inclusion
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


def _trust(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError
    from gateway.service import trust_document

    if args.keep:
        from gateway.rotate import _cmd_trust_merge

        return _cmd_trust_merge(args)

    try:
        text = json.dumps(trust_document(_load(args)), indent=1) + "\n"
    except ConfigError as exc:  # e.g. an EVM ledger whose contract is not deployed yet
        print(f"coldtrace gateway: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _push(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError
    from gateway.push import Pusher, PushStopped
    from gateway.service import load_log_signer

    _logging()
    cfg = _load(args)
    if cfg.cloud is None:
        print(f"coldtrace gateway: {args.config} has no [cloud] section", file=sys.stderr)
        return 2
    try:
        signer = load_log_signer(cfg)
    except ConfigError as exc:
        print(f"coldtrace gateway: {exc}", file=sys.stderr)
        return 2
    store = _store(cfg)
    pusher = Pusher(cfg, store, signer)
    try:
        ok = pusher.push_all(time.monotonic() + max(0.0, args.wait))
        size = pusher.cloud_size()
    except PushStopped as exc:
        print(f"coldtrace gateway: ALARM: pushing stopped: {exc}", file=sys.stderr)
        return 3
    finally:
        pusher.stop()
        store.close()
    if not ok:
        failures = ", ".join(f"{k} x{n}" for k, n in sorted(pusher.stats.failures.items()))
        print(
            f"coldtrace gateway: the cloud holds {size} records; not everything was pushed "
            f"within {args.wait:g} s ({failures or 'no answer'})",
            file=sys.stderr,
        )
        return 1
    st = pusher.stats
    print(
        f"the cloud holds {size} records of {cfg.log.origin} "
        f"({st.records} pushed now in {st.batches} batch(es))"
    )
    return 0


def _witness(args: argparse.Namespace) -> int:
    from gateway.witness import Witness

    _logging()
    cfg = _load(args)
    if cfg.cloud is None or not cfg.witness.peers:
        print(
            f"coldtrace gateway: {args.config} needs [cloud] url and [[witness.peers]]",
            file=sys.stderr,
        )
        return 2
    store = open_store_rw(cfg)
    witness = Witness(cfg, store)
    try:
        if not args.once:
            witness.run()  # until interrupted
            return 0
        outcomes = witness.round()
    except KeyboardInterrupt:
        return 0
    finally:
        witness.stop()
        store.close()
    for origin, outcome in outcomes.items():
        print(f"{origin}: {outcome}")
    if any(o.startswith("inconsistent") for o in outcomes.values()):
        print(
            "coldtrace gateway: ALARM: a peer's log is inconsistent (not cosigned)", file=sys.stderr
        )
        return 3
    return 1 if any(o.startswith("error") for o in outcomes.values()) else 0


def _witness_key(args: argparse.Namespace) -> int:
    from gateway.witness import load_or_create_witness_key

    cfg = _load(args)
    print(load_or_create_witness_key(cfg).vkey)
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, DashboardConfig, _check_dashboard
    from gateway.dashboard import run_dashboard

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = _load(args)
    if cfg.dashboard is None:
        cfg.dashboard = DashboardConfig()
    try:
        if args.listen:
            cfg.dashboard.listen = args.listen
            _check_dashboard(cfg.dashboard)
        return run_dashboard(cfg)
    except ConfigError as exc:
        print(f"coldtrace gateway: {exc}", file=sys.stderr)
        return 2


def open_store_rw(cfg: Any) -> Any:
    """The store, made if absent (a witness-only gateway may never have run)."""
    return _open_or_exit(cfg)


# --- the temperature profile of a new gateway ------------------------------------------------

_DEFAULT_PROFILE = "chilled"


def _profile_names() -> list[str]:
    from gateway.profiles import BUILTIN

    return [p.name for p in BUILTIN] + ["none"]


def _choose_profile(given: str | None) -> str | None:
    """``--profile``, else asked on a terminal, else chilled; None for ``none``."""
    names = _profile_names()
    name = given
    if name is None and sys.stdin.isatty():
        from gateway.profiles import BUILTIN

        print("Temperature alarms: which profile applies to every place?")
        for p in BUILTIN:
            print(f"  {p.name:8} {_range(p)}")
        print("  none     no temperature alarms (sensor faults and offline still alarm)")
        while name is None:
            answer = input(f"profile [{_DEFAULT_PROFILE}]: ").strip().lower() or _DEFAULT_PROFILE
            if answer in names:
                name = answer
            else:
                print(f"Please answer one of: {', '.join(names)}.")
    name = name or _DEFAULT_PROFILE
    return None if name == "none" else name


def _range(p: Any) -> str:
    lo = "" if p.low is None else f"{p.low / 100:.2f}"
    hi = "" if p.high is None else f"{p.high / 100:.2f}"
    span = f"{lo} to {hi} °C" if lo and hi else (f"at most {hi} °C" if hi else f"at least {lo} °C")
    cumulative = f", or {p.cumulative // 60} min in {p.window // 3600} h" if p.cumulative else ""
    return f"{span}, alarm after {p.delay // 60} min out of range{cumulative}"


def _profile_note(name: str | None) -> str:
    """What the new gateway alarms on, and how to change it."""
    how = (
        "Change it with `default` under [alerts] in gateway.toml (frozen, chilled, pharma, "
        "or your own under [alerts.profiles]), or bind places to profiles under "
        "[alerts.places] (docs/operations.md §2.1)."
    )
    if name is None:
        return "Temperature alarms are OFF (--profile none). " + how
    from gateway.profiles import BUILTIN

    profile = next(p for p in BUILTIN if p.name == name)
    return f"Temperature alarms: profile {name} ({_range(profile)}) for every place. " + how
