"""``coldtrace cloud``: set up, administer and serve the cloud (docs/cloud.md §6).

    coldtrace cloud init --dir D [--database URL] [--witness-name N] [--public-url U]
    coldtrace cloud serve --dir D [--listen HOST:PORT]
    coldtrace cloud org add --dir D NAME [--display TEXT]
    coldtrace cloud token add --dir D ORG --scopes read,admin [--label L]
    coldtrace cloud log add --dir D ORG VKEY
    coldtrace cloud registry add --dir D ORG --id ID --key B64
        [--devices P ...] [--places P ...] [--gtins P ...]
    coldtrace cloud ledger add --dir D ORG --id ID --key B64
    coldtrace cloud ledger add-evm --dir D ORG --chain-id N --contract 0x…
    coldtrace cloud witness add --dir D ORG VKEY
    coldtrace cloud trust --dir D            # the trust file of what this cloud pins

The administration commands work on the database directly (the operator's
own machine); the same is in the API for an operator's token.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _engine(args: argparse.Namespace) -> Any:
    from cloud import db
    from cloud.config import load_config

    cfg = load_config(args.dir)
    return cfg, db.connect(cfg.database_url)


def cmd_init(args: argparse.Namespace) -> int:
    from cloud import db, orgs
    from cloud.config import FILE, CloudConfig
    from cloud.witness import load_or_create_witness

    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    if (d / FILE).exists():
        print(f"coldtrace cloud: {d / FILE} exists; nothing done", file=sys.stderr)
        return 2
    cfg = CloudConfig(
        d,
        database=args.database or "cloud.db",
        witness_name=args.witness_name,
        public_url=args.public_url,
        listen=args.listen,
        quorum=args.quorum,
    )
    engine = db.connect(cfg.database_url)
    witness = load_or_create_witness(cfg.witness_key, cfg.witness_name)
    with engine.begin() as conn:
        orgs.add_org(conn, None, "operator", "the cloud's operator", operator=True)
        _, token = orgs.new_token(conn, None, "operator", ["read", "admin"], "init")
    engine.dispose()
    (d / FILE).write_text(cfg.text())
    tok = d / "operator.token"
    fd = os.open(tok, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    print(f"cloud initialised in {d}")
    print(f"  database        {cfg.database_url}")
    print(f"  witness key     {witness.vkey}")
    print(f"  operator token  {tok} (mode 0600)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from cloud.app import create_app
    from cloud.config import load_config

    cfg = load_config(args.dir)
    listen = args.listen or cfg.listen
    host, _, port = listen.rpartition(":")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    app = create_app(cfg)

    def stopped(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the
    # handler that was there before: this one, so a stop asked for is a clean exit
    signal.signal(signal.SIGTERM, stopped)
    uvicorn.run(
        app, host=host or "127.0.0.1", port=int(port), log_level="warning", access_log=False
    )
    return 0


def _admin(args: argparse.Namespace, fn: Any) -> int:
    from cloud.orgs import OrgError

    _, engine = _engine(args)
    try:
        with engine.begin() as conn:
            out = fn(conn)
    except OrgError as e:
        print(f"coldtrace cloud: {e}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if out is not None:
        print(out)
    return 0


def cmd_org_add(args: argparse.Namespace) -> int:
    from cloud import orgs

    return _admin(args, lambda c: orgs.add_org(c, None, args.name, args.display) and None)


def cmd_token_add(args: argparse.Namespace) -> int:
    from cloud import orgs

    scopes = [s for s in args.scopes.split(",") if s]
    return _admin(args, lambda c: orgs.new_token(c, None, args.org, scopes, args.label)[1])


def cmd_log_add(args: argparse.Namespace) -> int:
    from cloud import orgs

    return _admin(args, lambda c: orgs.add_log(c, None, args.org, args.vkey) and None)


def cmd_registry_add(args: argparse.Namespace) -> int:
    from cloud import orgs

    scopes = {"devices": args.devices, "places": args.places, "gtins": args.gtins}
    return _admin(args, lambda c: orgs.add_registry(c, None, args.org, args.id, args.key, scopes))


def cmd_ledger_add(args: argparse.Namespace) -> int:
    from cloud import orgs

    return _admin(args, lambda c: orgs.add_ledger(c, None, args.org, args.id, args.key))


def cmd_ledger_add_evm(args: argparse.Namespace) -> int:
    from cloud import orgs

    return _admin(
        args, lambda c: orgs.add_evm_ledger(c, None, args.org, args.chain_id, args.contract)
    )


def cmd_witness_add(args: argparse.Namespace) -> int:
    from cloud import orgs

    return _admin(args, lambda c: orgs.add_witness(c, None, args.org, args.vkey) and None)


def cmd_trust(args: argparse.Namespace) -> int:
    from cloud.logs import trust_document
    from cloud.witness import load_or_create_witness

    cfg, engine = _engine(args)
    witness = load_or_create_witness(cfg.witness_key, cfg.witness_name)
    with engine.connect() as conn:
        doc = trust_document(conn, [witness.verifier()], cfg.quorum)  # as /v1/trust (D23)
    engine.dispose()
    print(json.dumps(doc, indent=1))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("cloud", help="the cloud service: init, serve, organisations and keys")
    cs = p.add_subparsers(dest="cloud_command", required=True)

    def with_dir(q: argparse.ArgumentParser) -> argparse.ArgumentParser:
        q.add_argument("--dir", required=True, help="the cloud's data directory")
        return q

    q = with_dir(cs.add_parser("init", help="create the data directory, database and witness key"))
    q.add_argument("--database", help="SQLite file or postgresql+psycopg:// URL (default cloud.db)")
    q.add_argument("--witness-name", default="witness.cloud.example")
    q.add_argument("--public-url", default="http://127.0.0.1:8600")
    q.add_argument("--listen", default="127.0.0.1:8600")
    q.add_argument("--quorum", type=int, default=1)
    q.set_defaults(func=cmd_init)

    q = with_dir(cs.add_parser("serve", help="run the service (uvicorn)"))
    q.add_argument("--listen", help="HOST:PORT (default from cloud.toml)")
    q.set_defaults(func=cmd_serve)

    q = with_dir(cs.add_parser("trust", help="print the trust file of what this cloud pins"))
    q.set_defaults(func=cmd_trust)

    org = cs.add_parser("org", help="organisations").add_subparsers(dest="org_cmd", required=True)
    q = with_dir(org.add_parser("add"))
    q.add_argument("name")
    q.add_argument("--display", default="")
    q.set_defaults(func=cmd_org_add)

    tok = cs.add_parser("token", help="API tokens").add_subparsers(dest="tok_cmd", required=True)
    q = with_dir(tok.add_parser("add", help="print a new token (kept only hashed)"))
    q.add_argument("org")
    q.add_argument("--scopes", default="read", help="comma-separated: read,push,admin")
    q.add_argument("--label", default="")
    q.set_defaults(func=cmd_token_add)

    lg = cs.add_parser("log", help="gateway logs").add_subparsers(dest="log_cmd", required=True)
    q = with_dir(lg.add_parser("add", help="pin a gateway log's verifier key"))
    q.add_argument("org")
    q.add_argument("vkey")
    q.set_defaults(func=cmd_log_add)

    rg = cs.add_parser("registry", help="registry keys").add_subparsers(
        dest="reg_cmd", required=True
    )
    q = with_dir(rg.add_parser("add", help="pin a registry key with its scopes"))
    q.add_argument("org")
    q.add_argument("--id", required=True)
    q.add_argument("--key", required=True, help="base64 SEC1 P-256 public key")
    q.add_argument("--devices", nargs="*", default=[])
    q.add_argument("--places", nargs="*", default=[])
    q.add_argument("--gtins", nargs="*", default=[])
    q.set_defaults(func=cmd_registry_add)

    ld = cs.add_parser("ledger", help="ledger keys").add_subparsers(dest="led_cmd", required=True)
    q = with_dir(ld.add_parser("add", help="pin a local ledger's key"))
    q.add_argument("org")
    q.add_argument("--id", required=True)
    q.add_argument("--key", required=True, help="base64 Ed25519 public key")
    q.set_defaults(func=cmd_ledger_add)
    q = with_dir(ld.add_parser("add-evm", help="pin an EVM anchor contract (docs/evm.md)"))
    q.add_argument("org")
    q.add_argument("--chain-id", type=int, required=True)
    q.add_argument("--contract", required=True, help="0x and 40 hex digits")
    q.set_defaults(func=cmd_ledger_add_evm)

    wt = cs.add_parser("witness", help="witness keys").add_subparsers(dest="wit_cmd", required=True)
    q = with_dir(wt.add_parser("add", help="register a peer witness's cosigning key"))
    q.add_argument("org")
    q.add_argument("vkey")
    q.set_defaults(func=cmd_witness_add)
