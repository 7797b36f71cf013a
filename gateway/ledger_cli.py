"""``coldtrace gateway ledger deploy|status``: the EVM ledger's operator commands.

``deploy`` puts the ColdTraceAnchor contract (the committed, reproducible
artifact) on the chain of ``[ledger.evm]`` (or ``--rpc-url``), waits for its
confirmations, and writes ``contract`` and ``chain_id`` into the ``[ledger.evm]``
section of the configuration file itself - creating the section and setting
``[ledger] backend = "evm"`` when they are missing - so nothing is copied by
hand. Other lines and comments of the file are kept. A ``trust.json`` next to
the configuration (written by ``gateway init``) is rewritten to pin the new
(chain id, contract), as ``coldtrace gateway trust`` prints it.

``status`` reads the backend's state file (queued, pending, confirmed anchors,
the last error) and asks the node for the account's balance.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["register_ledger_commands"]


def register_ledger_commands(gateway_subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``ledger deploy`` and ``ledger status`` to the ``coldtrace gateway`` subcommands."""
    p = gateway_subparsers.add_parser(
        "ledger",
        help="the EVM ledger: deploy the anchor contract, show anchoring status",
        description="Operate the EVM ledger backend (docs/evm.md).",
    )
    sub = p.add_subparsers(dest="ledger_command", required=True)

    def config_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--config", "-c", type=Path, default=Path("gateway.toml"))

    d = sub.add_parser(
        "deploy",
        help="deploy ColdTraceAnchor and write its address into [ledger.evm]",
        description="Deploy the anchor contract, wait for its confirmations, and write "
        "contract and chain_id into the [ledger.evm] section of the configuration.",
    )
    config_arg(d)
    d.add_argument("--rpc-url", help="JSON-RPC endpoint (default: [ledger.evm] rpc_url)")
    d.add_argument("--key-file", type=Path, help="account key file, hex (default: [ledger.evm])")
    d.add_argument("--key-env", help="environment variable holding the account key")
    d.add_argument("--chain-id", type=int, help="expected chain id (default: [ledger.evm])")
    d.add_argument(
        "--confirmations", type=int, default=None, help="default: [ledger.evm] confirmations"
    )
    d.add_argument(
        "--force",
        action="store_true",
        help="deploy even though [ledger.evm] names a contract (its receipts then need "
        "the old contract pinned too)",
    )
    d.set_defaults(func=_deploy)

    s = sub.add_parser("status", help="queued, pending and confirmed anchors; balance; errors")
    config_arg(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)


def _fail(message: str) -> int:
    print(f"coldtrace gateway ledger: {message}", file=sys.stderr)
    return 2


def _raw_config(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(_fail(f"no configuration file {path}")) from None
    except tomllib.TOMLDecodeError as exc:
        raise SystemExit(_fail(f"{path}: {exc}")) from None


def _deploy(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, EvmLedgerConfig, load_config, set_toml_keys
    from gateway.evidence.evm import deploy_contract, load_account
    from gateway.evidence.ledger import LedgerError

    path: Path = args.config
    raw = _raw_config(path)
    section = dict(raw.get("ledger", {}).get("evm", {}))
    base = path.resolve().parent
    if section.get("contract") and not args.force:
        return _fail(
            f"[ledger.evm] already names contract {section['contract']}; receipts made with "
            "it are pinned by it. Use --force to deploy another (and keep the old one pinned)"
        )
    rpc_url = args.rpc_url or section.get("rpc_url")
    if not rpc_url:
        return _fail("no RPC endpoint: give --rpc-url or set [ledger.evm] rpc_url")
    key_file = args.key_file or (
        None if args.key_env or section.get("key_file") is None else Path(section["key_file"])
    )
    key_env = args.key_env or (None if key_file is not None else section.get("key_env"))
    if key_file is None and not key_env:
        return _fail("no account key: give --key-file or --key-env, or set them in [ledger.evm]")
    if key_file is not None and not key_file.is_absolute() and not args.key_file:
        key_file = base / key_file
    chain_id = args.chain_id or section.get("chain_id") or None
    confirmations = args.confirmations
    if confirmations is None:
        confirmations = min(int(section.get("confirmations", 12)), 12)
    ecfg = EvmLedgerConfig(rpc_url=rpc_url, key_file=key_file, key_env=key_env)
    try:
        account = load_account(ecfg)
        print(f"deploying ColdTraceAnchor from {account.address} via {rpc_url} …", flush=True)
        address, actual, gas = deploy_contract(
            rpc_url,
            account,
            chain_id=chain_id,
            confirmations=confirmations,
            max_fee_gwei=float(section.get("max_fee_gwei", 100.0)),
            priority_fee_gwei=float(section.get("priority_fee_gwei", 1.0)),
        )
    except LedgerError as exc:
        return _fail(str(exc))
    keys: dict[str, Any] = {"rpc_url": rpc_url, "chain_id": actual, "contract": address}
    if args.key_file:
        keys["key_file"] = str(args.key_file.resolve())
    if args.key_env:
        keys["key_env"] = args.key_env
    text = path.read_text(encoding="utf-8")
    text = set_toml_keys(text, "ledger.evm", keys)
    text = set_toml_keys(text, "ledger", {"backend": "evm"})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    print(f"contract {address} on chain {actual} ({gas} gas); written into {path} [ledger.evm]")
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        return _fail(f"the configuration does not load after the deployment: {exc}")
    trust = path.parent / "trust.json"
    if trust.exists():
        from gateway.service import trust_document

        trust.write_text(json.dumps(trust_document(cfg), indent=1) + "\n", encoding="utf-8")
        print(f"{trust} now pins chain {actual}, contract {address.lower()}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config
    from gateway.evidence.evm import open_state, status_report

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    if cfg.ledger.backend != "evm" or cfg.ledger.evm is None:
        return _fail(f'the ledger backend is {cfg.ledger.backend!r}, not "evm"')
    evm = cfg.ledger.evm
    path = cfg.ledger.path if cfg.ledger.path is not None else cfg.data_dir / "evm-ledger.db"
    if not path.exists():
        return _fail(f"no EVM ledger state at {path} (has the gateway run?)")
    db = open_state(path)
    try:
        report = status_report(db)
    finally:
        db.close()
    report["balance_wei"] = _balance(evm.rpc_url, report.get("account"), evm.timeout)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    bal = report["balance_wei"]
    print(f"chain {evm.chain_id}, contract {evm.contract}, account {report['account']}")
    print(
        "balance: " + ("unknown (the node does not answer)" if bal is None else f"{bal / 1e18:.6f}")
    )
    print(
        f"anchors: {report['queued']} queued, {report['pending']} pending, "
        f"{report['confirmed']} confirmed ({evm.confirmations} confirmations), "
        f"{report['superseded']} covered by a later one"
    )
    if report["in_flight"]:
        f = report["in_flight"]
        where = f"block {f['block_number']}" if f["block_number"] is not None else "not mined"
        print(f"in flight: checkpoint {f['size']}, tx {f['tx_hash']} ({where})")
    if report["last_final"]:
        f = report["last_final"]
        print(f"last confirmed: checkpoint {f['size']} in block {f['block_number']}")
    if report["status"] != "ok" and report["last_error"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report["last_error_at"] or 0))
        print(f"problem ({report['status']}, {when}): {report['last_error']}")
    else:
        print("status: ok")
    return 0


def _balance(rpc_url: str, account: str | None, timeout: float) -> int | None:
    if not account:
        return None
    from protocol.rpc import json_rpc

    try:
        return int(
            str(json_rpc(rpc_url, timeout=min(timeout, 5))("eth_getBalance", [account, "latest"])),
            16,
        )
    except Exception:
        return None
