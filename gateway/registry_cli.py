"""``coldtrace gateway registry ...``: devices, bindings and product profiles.

    registry add DEVICE --key K --org O [--role R] [--place P] [--cal N] [--at T]
    registry add --file PROVISIONING.json         (as import)
    registry update DEVICE [--cal N] [--place P] [--at T]
    registry revoke DEVICE                         (unbinds it everywhere first)
    registry list [--json]
    registry import PROVISIONING.json [--at T]     (loggers with a place are bound too)
    registry bind TARGET DEVICE... [--at T]        (adds to the target's current set)
    registry unbind TARGET DEVICE... [--at T]      (removes; none left: no device)
    registry bindings [TARGET] [--json]            (current sets and their history)
    registry profile set GTIN [--lot L] --low C --high C --delay D --gap D
                              [--cumul D] [--mkt C] [--name N] [--lots] [--links] [--at T]
    registry profile list [--json]
    registry restate (TARGET|GTIN [--lot L] | --all)
    registry import-statement FILE...              (a profile signed by another
                                                    authority, e.g. a brand owner)

Temperatures are °C with at most two decimals (``--high 4`` or ``4.00``),
durations ``30m``, ``2h``, ``1800s``, times Unix seconds or UTC
``2026-06-01T08:00:00Z`` (gateway/units.py). Every signing command signs
with ``[registry] key_file`` and queues the record in the store's outbox;
the running gateway logs it within a second (docs/protocol.md §2.5-§2.7, §4.2).
``import-statement`` queues a record signed by an authority of
``[[registry.authorities]]`` (``coldtrace profile sign``) unchanged: it is
never re-signed; ingest checks its scope and chains like any registry record.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import units
from protocol.reasons import fmt_centi, fmt_duration
from protocol.verdict import profile_document

__all__ = ["register_registry_commands"]


def _unit(parse: Callable[[str], int]) -> Callable[[str], int]:
    """An argparse type that shows the parser's own message."""

    def convert(text: str) -> int:
        try:
            return parse(text)
        except units.UnitError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


CENTI = _unit(units.parse_centi)
DURATION = _unit(units.parse_duration)
WHEN = _unit(units.parse_time)


def register_registry_commands(sub: Any, config_arg: Callable[[Any], None]) -> None:
    """Add ``registry`` and its subcommands to the ``coldtrace gateway`` parser."""
    reg = sub.add_parser(
        "registry",
        help="the registry: devices, bindings, product profiles",
        description="The registry: device registrations, which devices monitor which "
        "place (bindings), and product temperature profiles - signed registry records "
        "in the log.",
    )
    reg.set_defaults(func=lambda args: (reg.print_help(), 2)[1])
    rsub = reg.add_subparsers(dest="registry_command", metavar="COMMAND")

    def cmd(name: str, help: str, func: Any, parent: Any = rsub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        config_arg(p)
        return p

    def at_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--at",
            type=WHEN,
            default=None,
            help="effective time (Unix s or UTC ISO 8601; default now; never before the "
            "chain's previous statement)",
        )

    p = cmd("add", "register a device (or every device of a provisioning file with --file)", _add)
    p.add_argument("device", nargs="?")
    p.add_argument("--file", type=Path, default=None, help="provisioning JSON (as `import`)")
    p.add_argument("--key", help="SEC1 P-256 public key: base64, hex or @file.pem")
    p.add_argument("--role", default="logger", help="logger (1) or reader (2)")
    p.add_argument("--org")
    p.add_argument("--place", default=None, help="bind the device to this place as well")
    p.add_argument("--cal", type=int, default=None)
    p.add_argument("--ack-key", default=None, help="32-byte ack key (hex); generated if absent")
    at_arg(p)
    p = cmd("update", "record a device's new calibration, or move it to another place", _update)
    p.add_argument("device")
    p.add_argument("--place", default=None, help="unbind it where it is, bind it here")
    p.add_argument("--cal", type=int, default=None)
    at_arg(p)
    p = cmd("revoke", "revoke a device (unbinds it; earlier records stay valid)", _revoke)
    p.add_argument("device")
    p = cmd("list", "list registered devices and where they are bound", _list)
    p.add_argument("--json", action="store_true")
    p = cmd("import", "register devices from a provisioning JSON file (and bind loggers)", _import)
    p.add_argument("file", type=Path)
    at_arg(p)

    p = cmd("bind", "add devices to the set monitoring a place, vehicle or container", _bind)
    p.add_argument("target", help="place, vehicle or container id")
    p.add_argument("devices", nargs="+", metavar="DEVICE")
    at_arg(p)
    p = cmd("unbind", "remove devices from the set monitoring a target", _unbind)
    p.add_argument("target")
    p.add_argument("devices", nargs="+", metavar="DEVICE")
    at_arg(p)
    p = cmd("bindings", "which devices monitor each target now, and since when", _bindings)
    p.add_argument("target", nargs="?", default=None)
    p.add_argument("--json", action="store_true")

    prof = rsub.add_parser(
        "profile",
        help="product temperature profiles (kind 6)",
        description="Product temperature profiles.",
    )
    prof.set_defaults(func=lambda args: (prof.print_help(), 2)[1])
    psub = prof.add_subparsers(dest="profile_command", metavar="COMMAND")
    p = cmd(
        "set", "sign the profile of a GTIN (or of one lot) in force from --at", _profile_set, psub
    )
    p.add_argument("gtin", help="GTIN-14 (14 digits, valid check digit)")
    add_profile_arguments(p)
    at_arg(p)
    p = cmd("list", "product profiles in force, and their history", _profile_list, psub)
    p.add_argument("--json", action="store_true")

    p = cmd("restate", "sign a statement chain's state again, now (closes an interval)", _restate)
    p.add_argument("target", nargs="?", default=None, help="a bound target or a GTIN")
    p.add_argument("--lot", default=None, help="with a GTIN: the lot's chain")
    p.add_argument("--all", action="store_true", help="every binding and profile chain")

    p = cmd(
        "import-statement",
        "queue product profiles signed by a [[registry.authorities]] key (a brand owner), "
        "unchanged",
        _import_statement,
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="signed records (.cose)")


# --- helpers ----------------------------------------------------------------------------


def _err(text: str) -> None:
    print(f"coldtrace gateway: {text}", file=sys.stderr)


def _with_signer(args: argparse.Namespace, action: Callable[[Any], Any]) -> tuple[bool, Any]:
    """Run ``action(registry signer)`` on the gateway's store; a RegistryError is
    printed and gives ``(False, None)``."""
    from gateway.cli import _load
    from gateway.evidence.registry import RegistryError
    from gateway.evidence.store import open_store
    from gateway.service import registry_signer

    cfg = _load(args)
    store = open_store(cfg)
    try:
        signer = registry_signer(cfg, store)
        if signer is None:
            _err("[registry] key_file is needed to sign registry records")
            raise SystemExit(2)
        return True, action(signer)
    except RegistryError as exc:
        _err(str(exc))
        return False, None
    finally:
        store.close()


def _key_arg(text: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    from gateway.evidence.registry import _key_bytes
    from protocol.keys import p256_public_to_sec1

    if text.startswith("@"):
        data = Path(text[1:]).read_bytes()
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            key = serialization.load_pem_private_key(data, None).public_key()
        return p256_public_to_sec1(key)  # type: ignore[arg-type]
    return _key_bytes(text, "key", 65)


_QUEUED = "queued for the log (the running gateway logs it within a second)"


def _said(raws: list[bytes]) -> None:
    """One line per signed record: what it is."""
    from protocol.record import Binding, ProductProfile, Registration, open_record

    for raw in raws:
        p = open_record(raw).payload
        if isinstance(p, Registration):
            state = "revocation" if p.state == 2 else "registration"
            print(f"{p.device}: {state} (registry seq {p.seq}) {_QUEUED}")
        elif isinstance(p, Binding):
            devs = p.devices or "no device"
            print(
                f"{p.target}: monitored by {devs} from {units.format_time(p.time)} "
                f"(binding cseq {p.cseq}) {_QUEUED}"
            )
        elif isinstance(p, ProductProfile):
            what = p.gtin + (f" lot {p.lot}" if p.lot else "")
            print(f"{what}: profile from {units.format_time(p.time)} (cseq {p.cseq}) {_QUEUED}")


# --- devices ------------------------------------------------------------------------------


def _add(args: argparse.Namespace) -> int:
    from gateway.evidence.registry import _key_bytes, parse_role

    if args.file is not None:
        return _import(args)
    if not (args.device and args.key and args.org):
        _err("registry add needs DEVICE --key --org (or --file)")
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
            at=args.at,
        ),
    )
    if not ok:
        return 1
    raw, ack_key = result
    doc = {"device": args.device, "ack_key": ack_key.hex(), "registration_bytes": len(raw)}
    if args.place:
        doc["place"] = args.place
    print(json.dumps(doc))
    return 0


def _update(args: argparse.Namespace) -> int:
    ok, raws = _with_signer(
        args, lambda s: s.update(args.device, place=args.place, cal=args.cal, at=args.at)
    )
    if ok:
        _said(raws)
    return 0 if ok else 1


def _revoke(args: argparse.Namespace) -> int:
    ok, raws = _with_signer(args, lambda s: s.revoke(args.device))
    if ok:
        _said(raws)
        print(f"{args.device}: records logged before the revocation stay valid")
    return 0 if ok else 1


def _list(args: argparse.Namespace) -> int:
    from gateway.cli import _load, _store
    from gateway.evidence.registry import Registry, device_json, statement_history

    cfg = _load(args)
    store = _store(cfg)
    try:
        view = Registry({}, store.devices(), store.statement_heads())
        places = view.places_of()
        rows = [
            device_json(d, places.get(d.id))
            for d in sorted(store.devices().values(), key=lambda d: d.id)
        ]
        pending = len(store.outbox_pending())
        unlogged = sum(1 for e in statement_history(store) if e.leaf is None)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"devices": rows, "pending_registrations": pending}, indent=1))
        return 0
    for d in rows:
        print(
            f"{d['device']:<24} {d['role']:<7} {d['state']:<8} {d['org']:<20} "
            f"{d['place'] or '-':<28} leaf {d['registered_leaf']}"
        )
    if pending:
        print(
            f"({pending} registry record(s) waiting for the gateway to log them"
            + (f", {unlogged} of them statements" if unlogged else "")
            + ")"
        )
    return 0


def _import(args: argparse.Namespace) -> int:
    from gateway.evidence.registry import RegistryError, load_provisioning, parse_role

    try:
        entries = load_provisioning(args.file)
    except (OSError, ValueError, RegistryError) as exc:
        _err(f"{args.file}: {exc}")
        return 1
    ok, done = _with_signer(args, lambda s: s.import_entries(entries, at=args.at))
    if ok:
        bound = sum(1 for e in entries if e.get("place") and parse_role(e.get("role", 1)) == 1)
        print(
            f"registered {len(done)} device(s): {', '.join(done)}"
            + (f"; bound {bound} to their places" if bound else "")
        )
    return 0 if ok else 1


# --- bindings ------------------------------------------------------------------------------


def _bind(args: argparse.Namespace) -> int:
    ok, raw = _with_signer(args, lambda s: s.bind(args.target, args.devices, at=args.at))
    if ok:
        _said([raw])
    return 0 if ok else 1


def _unbind(args: argparse.Namespace) -> int:
    ok, raw = _with_signer(args, lambda s: s.unbind(args.target, args.devices, at=args.at))
    if ok:
        _said([raw])
    return 0 if ok else 1


def _where(leaf: int | None) -> str:
    return "pending" if leaf is None else f"leaf {leaf}"


def _bindings(args: argparse.Namespace) -> int:
    from gateway.cli import _load, _store
    from gateway.evidence.registry import statement_history
    from protocol.record import KIND_BINDING, Binding

    cfg = _load(args)
    store = _store(cfg)
    try:
        history = statement_history(store, KIND_BINDING)
    finally:
        store.close()
    chains: dict[str, list[Any]] = {}
    for e in history:
        if args.target is None or e.key[1] == args.target:
            chains.setdefault(e.key[1], []).append(e)
    if args.json:
        doc = {
            target: {
                "devices": list(es[-1].payload.device_list),
                "history": [
                    {
                        "cseq": e.cseq,
                        "time": e.time,
                        "devices": list(e.payload.device_list),
                        "leaf": e.leaf,
                        "signer": e.signer,
                    }
                    for e in es
                ],
            }
            for target, es in chains.items()
        }
        print(json.dumps(doc, indent=1))
        return 0
    if not chains:
        print("no bindings" + (f" of {args.target}" if args.target else ""))
        return 0 if args.target is None else 1
    for target, es in chains.items():
        last = es[-1].payload
        assert isinstance(last, Binding)
        now = ", ".join(last.device_list) or "no device"
        print(f"{target}: {now} (since {units.format_time(last.time)})")
        for e in es:
            devs = " ".join(e.payload.device_list) or "-"
            print(
                f"    cseq {e.cseq:<4} from {units.format_time(e.time)}  {devs:<40} "
                f"{_where(e.leaf)}"
            )
    return 0


def add_profile_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a profile's own fields (§2.7), shared with ``coldtrace profile sign``."""
    p.add_argument("--lot", default=None, help="a lot-specific profile (GS1 AI 10)")
    p.add_argument("--low", type=CENTI, default=None, help="lowest allowed °C (inclusive)")
    p.add_argument("--high", type=CENTI, default=None, help="highest allowed °C (inclusive)")
    p.add_argument("--delay", type=DURATION, required=True, help="alarm delay (e.g. 30m)")
    p.add_argument(
        "--gap",
        type=DURATION,
        required=True,
        help="the longest a reading stands for (60 s ... 24 h)",
    )
    p.add_argument("--cumul", type=DURATION, default=None, help="cumulative limit (e.g. 2h)")
    p.add_argument("--mkt", type=CENTI, default=None, help="highest allowed MKT, °C")
    p.add_argument("--name", default=None, help="display name, e.g. 'chilled 0-4 °C'")
    p.add_argument("--lots", action="store_true", help="lot-specific profiles exist")
    p.add_argument("--links", action="store_true", help="custody scans must carry links")


def profile_values(args: argparse.Namespace) -> dict[str, Any]:
    """The profile fields given on the command line (see :func:`add_profile_arguments`)."""
    from gateway.evidence.registry import PROFILE_FIELDS

    return {f: getattr(args, f) for f in PROFILE_FIELDS}


# --- profiles --------------------------------------------------------------------------------


def _profile_set(args: argparse.Namespace) -> int:
    if args.low is None and args.high is None:
        _err("profile set needs --low, --high or both")
        return 2
    ok, raw = _with_signer(
        args,
        lambda s: s.set_profile(args.gtin, at=args.at, **profile_values(args)),
    )
    if ok:
        _said([raw])
    return 0 if ok else 1


def _centi(c: int | None) -> str:
    return "-" if c is None else fmt_centi(c)


def _profile_text(p: Any) -> str:
    rng = f"{_centi(p.low)} … {_centi(p.high)}"
    parts = [rng, f"delay {fmt_duration(p.delay)}", f"gap {fmt_duration(p.gap)}"]
    if p.cumul is not None:
        parts.append(f"cumulative {fmt_duration(p.cumul)}")
    if p.mkt is not None:
        parts.append(f"MKT ≤ {fmt_centi(p.mkt)}")
    if p.lots:
        parts.append("lot profiles exist")
    if p.links:
        parts.append("custody links required")
    return (f"{p.name!r}: " if p.name else "") + ", ".join(parts)


def _profile_list(args: argparse.Namespace) -> int:
    from gateway.cli import _load, _store
    from gateway.evidence.registry import chain_label, statement_history
    from protocol.record import KIND_PROFILE

    cfg = _load(args)
    store = _store(cfg)
    try:
        history = statement_history(store, KIND_PROFILE)
    finally:
        store.close()
    chains: dict[Any, list[Any]] = {}
    for e in history:  # one chain per signer (a brand owner's are its own, §4.2)
        chains.setdefault((e.key, e.signer), []).append(e)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        **profile_document(es[-1].signer, es[-1].payload),
                        "history": [
                            {**profile_document(e.signer, e.payload), "leaf": e.leaf} for e in es
                        ],
                    }
                    for es in chains.values()
                ],
                indent=1,
            )
        )
        return 0
    if not chains:
        print("no product profiles")
    for (key, signer), es in chains.items():
        by = "" if signer == cfg.registry.id else f" (signed by {signer})"
        print(f"{chain_label(key)}{by}: {_profile_text(es[-1].payload)}")
        for e in es:
            print(
                f"    cseq {e.cseq:<4} from {units.format_time(e.time)}  "
                f"{_profile_text(e.payload)}  {_where(e.leaf)}"
            )
    return 0


# --- restating -------------------------------------------------------------------------------


def _restate(args: argparse.Namespace) -> int:
    from gateway.evidence.registry import RegistryError, chain_label
    from protocol.record import KIND_BINDING, KIND_PROFILE

    if args.all == (args.target is not None):
        _err("restate needs a TARGET (a bound target or a GTIN) or --all")
        return 2

    def act(signer: Any) -> list[bytes]:
        chains = signer.chains()
        if args.all:
            keys = sorted(chains)
        else:
            name = args.target if args.lot is None else f"{args.target} {args.lot}"
            keys = [k for k in ((KIND_BINDING, args.target), (KIND_PROFILE, name)) if k in chains]
            if args.lot is not None:
                keys = [k for k in keys if k[0] == KIND_PROFILE]
            if not keys:
                raise RegistryError(f"no binding or profile chain named {name!r}")
        out = []
        for key in keys:
            out.append(signer.restate(key))
            print(f"{chain_label(key)}: restated")
        return out

    ok, raws = _with_signer(args, act)
    if ok:
        _said(raws)
    return 0 if ok else 1


# --- statements signed by other authorities ---------------------------------------------------


def _import_statement(args: argparse.Namespace) -> int:
    """Queue each file's record in the outbox as it is (never re-signed). Checked here:
    what needs only the record and the configuration (a profile, from a configured
    authority, its signature); the running gateway checks scope and chains."""
    from gateway.cli import _load
    from gateway.evidence.store import open_store
    from gateway.service import authority_keys
    from protocol.cose import verify_sign1
    from protocol.errors import VerificationError
    from protocol.record import ProductProfile, open_record

    cfg = _load(args)
    keys = authority_keys(cfg)
    store = open_store(cfg)
    failed = 0
    try:
        for path in args.files:
            try:
                raw = path.read_bytes()
            except OSError as exc:
                _err(f"{path}: {exc.strerror or exc}")
                failed += 1
                continue
            why: str | None = None
            rec = None
            if len(raw) > 1024:
                why = f"{len(raw)} bytes: not a record (at most 1024)"
            else:
                try:
                    rec = open_record(raw)
                except VerificationError as exc:
                    why = f"not a signed record: {exc}"
            if rec is not None and why is None:
                if not isinstance(rec.payload, ProductProfile):
                    why = f"a kind {rec.payload.kind} record: authorities sign profiles only"
                elif rec.signer == cfg.registry.id:
                    why = f"signed by this gateway's registry {rec.signer!r}: sign it here"
                elif rec.signer not in keys:
                    why = (
                        f"unknown_key: signed by {rec.signer!r}, which is not a "
                        "[[registry.authorities]] entry of the configuration"
                    )
                else:
                    try:
                        verify_sign1(raw, keys[rec.signer])
                    except VerificationError as exc:
                        why = (
                            f"bad_signature: not signed by {rec.signer}'s configured key "
                            f"(altered or re-signed?): {exc}"
                        )
            if why is not None or rec is None:
                _err(f"{path}: refused, nothing queued: {why}")
                failed += 1
                continue
            seq = rec.payload.seq
            logged = store.record_by_seq(rec.signer, seq)
            if logged is not None:
                if logged.raw == raw:
                    print(f"{path}: already logged (leaf {logged.leaf})")
                else:
                    _err(f"{path}: refused: {rec.signer} seq {seq} is logged as another record")
                    failed += 1
                continue
            queued = store.outbox_entry(rec.signer, seq)
            if queued is not None:
                if queued[0] != raw:
                    _err(
                        f"{path}: refused: another record of {rec.signer} seq {seq} was "
                        "imported before (two records for one seq: a fork of its chain)"
                    )
                    failed += 1
                elif not queued[1]:
                    print(f"{path}: already queued ({rec.signer} seq {seq})")
                else:  # refused when it was logged (see `coldtrace gateway rejects`)
                    store.outbox_requeue(rec.signer, seq)
                    print(f"{path}: refused before; queued again ({rec.signer} seq {seq})")
                continue
            store.outbox_add(rec.signer, seq, raw)
            p = rec.payload
            what = p.gtin + (f" lot {p.lot}" if p.lot else "")
            print(
                f"{path}: {what}: profile from {units.format_time(p.time)} signed by "
                f"{rec.signer} (cseq {p.cseq}) {_QUEUED}"
            )
    finally:
        store.close()
    return 1 if failed else 0
