"""``coldtrace gateway trace``: one item's bundle, exactly what an honest bundle holds.

docs/protocol.md §9 ("What an honest bundle holds") and §13.3. What the
bundle holds is chosen by :func:`protocol.assemble.plan` - the one copy of
that logic, which a cloud service also runs over several organisations'
logs - from :class:`gateway.trace_source.StoreSource`: this gateway's store
as of one anchored checkpoint (the log prefix of ``upto`` leaves, so
everything chosen can be proven). Who speaks for a place or a GTIN is this
gateway's registry (its places scope) or, for a GTIN, another authority of
``[[registry.authorities]]`` (a brand owner, ``coldtrace profile``):
:func:`gateway.trace_source.gateway_authorities`.

A run that does not reach its interval's end is *open* (the verdict would
say ``binding_unproven`` or ``no_profile``): :func:`run_trace` restates such
chains (gateway/evidence/registry.py, §4.2) and waits for the running gateway to log
the restatements and anchor a checkpoint that covers them, then plans again.
Another authority's chain cannot be restated here (the gateway does not hold
its key): the command says whom to ask (``coldtrace profile sign`` with the
same values, then ``registry import-statement``) and writes the bundle.
:func:`gateway.evidence.proofs.prove` adds the checkpoint, one multiproof (verified)
and the anchor receipt. The command prints the verifier's report of the
bundle (``protocol.verify``) and exits with its §13.2 status.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.evidence.proofs import ProofUnavailable, TreeReader, covering_checkpoint, prove
from gateway.evidence.registry import RegistryError, Scopes
from gateway.evidence.store import SqlStore
from gateway.trace_source import StoreSource, gateway_authorities
from gateway.units import format_time
from protocol import assemble
from protocol.assemble import LegPlan, Plan, Run, TraceError, chain_label
from protocol.bundle import Bundle, Subject
from protocol.reasons import fmt_centi, fmt_duration
from protocol.record import ProductProfile, open_record

__all__ = [
    "LegPlan",
    "Plan",
    "Run",
    "TraceError",
    "build",
    "find_uid",
    "plan",
    "register_trace_command",
    "run_trace",
]


def plan(
    store: SqlStore,
    uid: bytes,
    *,
    registry: str,
    scopes: Scopes,
    upto: int,
    origin: str = "",
) -> Plan:
    """What the bundle of tag ``uid`` holds, from the log's first ``upto`` leaves:
    :func:`protocol.assemble.plan` over the store (entries of log ``origin``), with
    this gateway's authorities."""
    source = StoreSource(store, origin, upto)
    return assemble.plan(source, uid, gateway_authorities(registry, scopes))


def find_uid(store: SqlStore, what: str, *, upto: int | None = None) -> tuple[bytes, str | None]:
    """The tag UID for ``what`` (:func:`protocol.assemble.find_uid`), from the log's
    first ``upto`` leaves (None: all of them)."""
    return assemble.find_uid(StoreSource(store, "", upto), what)


def build(store: SqlStore, tree_dir: Path, origin: str, p: Plan, upto: int) -> Bundle:
    """The bundle of plan ``p`` (made from this log's first ``upto`` leaves), proven in
    the anchored checkpoint of ``upto`` leaves."""
    cp = store.checkpoint_at(upto)
    if cp is None:
        raise TraceError(f"no checkpoint of size {upto}")
    leaves = [index for _, index in p.entries()]
    tree = TreeReader(tree_dir, cp.size)
    try:
        return prove(store, tree, origin, leaves, Subject(p.uid, p.item))
    finally:
        tree.close()


# --- the command ------------------------------------------------------------------------------


def _anchored(store: SqlStore) -> int:
    """The size of the latest anchored checkpoint (0: none)."""
    try:
        cp, _ = covering_checkpoint(store, 0)
    except ProofUnavailable:
        return 0
    return cp.size


def gateway_running(store: SqlStore) -> bool:
    live = json.loads(store.get_meta("status") or "{}")
    return bool(live) and not live.get("stopped") and time.time() - float(live.get("time", 0)) < 10


def _say(text: str) -> None:
    print(text, flush=True)


def _span(a: int, b: int) -> str:
    """``06 Dec 01:05 → 08:55 (7 h 50 min)`` (UTC)."""
    first = time.strftime("%d %b %H:%M", time.gmtime(a))
    day = "%H:%M" if time.gmtime(a)[:3] == time.gmtime(b)[:3] else "%d %b %H:%M"
    length = f" ({fmt_duration(b - a)})" if b > a else ""
    return f"{first} → {time.strftime(day, time.gmtime(b))}{length}"


def describe(p: Plan, say: Callable[[str], None] = _say) -> None:
    """What the plan holds, one line per leg."""
    n = len(p.custody.scans)
    say(f"tag {p.uid.hex()} ({p.item or 'no commission scan'}): {n} custody scan(s)")
    for lp in p.legs:
        leg = lp.leg
        span = _span(leg.start, leg.end)
        where = leg.location or "-"
        if lp.run is None or not lp.run.records:
            watch = lp.why_none or "-"
        elif not lp.run.closed:
            watch = "binding not closed (no statement at or after the leg's end)"
        else:
            devs = sorted({d for d, _, _ in lp.monitors})
            counts = [f"{d} ({len(p.devices.get(d, []))} records)" for d in devs]
            watch = ", ".join(counts) or "no device bound"
        say(f"  leg {leg.index}  {where:<27} {span:<36} {watch}")
    if p.profile is not None and p.profile.records:
        last = open_record(p.profile.records[-1].raw).payload
        assert isinstance(last, ProductProfile)
        shut = "" if p.profile.closed else "; not closed (no statement after commissioning)"
        say(
            f"  profile {chain_label(p.profile.key)[11:]}: {last.name or 'unnamed'}, "
            f"cseq {last.cseq}{shut}"
        )
    elif p.profile_note:
        say(f"  profile: {p.profile_note}")


def run_trace(
    cfg: Any,
    what: str,
    output: Path,
    *,
    restate: bool = True,
    wait: float = 60.0,
    say: Callable[[str], None] = _say,
) -> tuple[Bundle, Plan]:
    """Plan, restate and wait if needed (see the module docstring), build and write."""
    from gateway.evidence.store import open_store
    from gateway.service import registry_scopes, registry_signer

    store = open_store(cfg)
    try:
        upto = _caught_up(store, wait, say)
        if upto == 0:
            raise TraceError("no anchored checkpoint yet: is the gateway running?")
        scopes = registry_scopes(cfg)
        uid, _ = find_uid(store, what)
        if not store.scans_of(uid=uid, upto=upto) and store.scans_of(uid=uid):
            raise TraceError(
                f"the scans of tag {uid.hex()} are logged but not yet in an anchored "
                "checkpoint: is the gateway running?"
            )
        origin = cfg.log.origin
        p = plan(store, uid, registry=cfg.registry.id, scopes=scopes, upto=upto, origin=origin)
        p, upto = _close(store, cfg, p, upto, uid, scopes, restate, wait, say, registry_signer)
        describe(p, say)
        bundle = build(store, cfg.tree_dir, origin, p, upto)
    finally:
        store.close()
    text = bundle.dumps()
    output.write_text(text, encoding="utf-8")
    say(
        f"wrote {output}: {len(bundle.records)} records, one multiproof of "
        f"{len(bundle.proofs[0].nodes)} nodes in checkpoint {upto} "
        f"({'anchored' if bundle.anchors else 'NOT anchored'}), {len(text.encode()) // 1024} KiB"
    )
    return bundle, p


def _caught_up(store: SqlStore, wait: float, say: Callable[[str], None]) -> int:
    """The latest anchored checkpoint's size, after waiting (up to ``wait`` s, while
    the gateway runs) for one that covers every record logged now, and the
    records waiting in the outbox (e.g. a brand's imported profile) first."""
    start = time.monotonic()
    while store.outbox_pending() and gateway_running(store) and time.monotonic() - start < wait:
        time.sleep(0.2)
    target = store.leaf_count()
    upto = _anchored(store)
    if upto >= target or not gateway_running(store):
        return upto
    note = start + 2.0
    while upto < target and time.monotonic() - start < wait:
        time.sleep(0.2)
        upto = _anchored(store)
        if time.monotonic() >= note and upto < target:
            note += 2.0
            say(
                f"  waiting for the gateway to anchor a checkpoint of {target} leaves "
                f"({time.monotonic() - start:.0f} s)"
            )
    return upto


def _ask_them(run: Run) -> str:
    """What to tell the operator when another authority's chain is not closed."""
    if not run.records:
        return (
            f"not closed: {chain_label(run.key)}: no statement of {run.signer} is logged here; "
            "import theirs: coldtrace gateway registry import-statement FILE"
        )
    last = open_record(run.records[-1].raw).payload
    assert isinstance(last, ProductProfile)
    args = [f"--id {run.signer} --key BRAND.key --state BRAND-STATE.json {last.gtin}"]
    if last.lot is not None:
        args.append(f"--lot {shlex.quote(last.lot)}")
    for flag, value in (("--low", last.low), ("--high", last.high), ("--mkt", last.mkt)):
        if value is not None:
            args.append(f"{flag}={fmt_centi(value).removesuffix(' °C')}")
    args.append(f"--delay {last.delay}s --gap {last.gap}s")
    if last.cumul is not None:
        args.append(f"--cumul {last.cumul}s")
    if last.name is not None:
        args.append(f"--name {shlex.quote(last.name)}")
    args += [f for f, on in (("--lots", last.lots), ("--links", last.links)) if on]
    return (
        f"not closed: {chain_label(run.key)} (its last statement, {format_time(run.last_time)}, "
        f"is before {format_time(run.until)}). The profile of GTIN {last.gtin} is signed by "
        f"{run.signer}, not by this gateway: ask them to restate it: coldtrace profile sign "
        f"{' '.join(args)} -o profile.cose (same values), and import it: coldtrace gateway "
        "registry import-statement profile.cose"
    )


def _close(
    store: SqlStore,
    cfg: Any,
    p: Plan,
    at: int,
    uid: bytes,
    scopes: Scopes,
    restate: bool,
    wait: float,
    say: Callable[[str], None],
    make_signer: Callable[..., Any],
) -> tuple[Plan, int]:
    """Restate the plan's open chains (``p``, made from the first ``at`` leaves) and
    wait until they are closed in an anchored checkpoint; return the plan at that
    checkpoint and its size (or the old ones, said plainly)."""

    def replan(upto: int) -> Plan:
        return plan(
            store, uid, registry=cfg.registry.id, scopes=scopes, upto=upto, origin=cfg.log.origin
        )

    needed = p.open_runs
    theirs = [r for r in needed if r.signer != cfg.registry.id]
    for run in theirs:
        say(_ask_them(run))
    if theirs:
        say("the verdict will be INCOMPLETE (no_profile) until then")
    needed = [r for r in needed if r.signer == cfg.registry.id]
    if not needed:
        return p, at
    names = ", ".join(chain_label(r.key) for r in needed)
    if not restate:
        say(f"not closed: {names} (--no-restate: the verdict will say so)")
        return p, at
    signer = make_signer(cfg, store)
    if signer is None:
        say(f"not closed: {names}; without [registry] key_file they cannot be restated")
        return p, at
    heads = signer.chains()
    for run in needed:
        head = heads.get(run.key)
        if head is not None and head.time >= run.until:
            continue  # a later statement is logged or queued already
        try:
            signer.restate(run.key)
        except RegistryError as exc:
            say(f"cannot restate {chain_label(run.key)}: {exc}")
            continue
        say(
            f"restated {chain_label(run.key)} (its last statement, "
            f"{format_time(run.last_time)}, is before {format_time(run.until)})"
        )
    if not gateway_running(store):
        say(
            "the gateway is not running: the restatements wait in its outbox and this "
            "bundle is written without them (verdict INCOMPLETE: binding_unproven or "
            "no_profile)"
        )
        return p, at
    want = {r.key for r in needed}
    start = time.monotonic()
    next_note = start + 2.0
    while True:
        upto = _anchored(store)
        if upto > at:
            q = replan(upto)
            if not ({r.key for r in q.open_runs} & want):
                took = time.monotonic() - start
                say(f"checkpoint {upto} anchored: the restated chains are closed ({took:.1f} s)")
                return q, upto
        now = time.monotonic()
        if now - start > wait:
            say(
                f"gave up after {wait:.0f} s waiting for the gateway to log and anchor the "
                "restatements; the bundle is written as the log stands (verdict INCOMPLETE)"
            )
            if upto > at:
                return replan(upto), upto
            return p, at
        if now >= next_note:
            next_note = now + 2.0
            say(
                "  waiting for the gateway to log the restatements and anchor a checkpoint "
                f"({now - start:.0f} s)"
            )
        time.sleep(0.2)


def register_trace_command(sub: Any, config_arg: Callable[[Any], None]) -> None:
    p = sub.add_parser(
        "trace",
        help="write an item's trace bundle (docs/protocol.md §9, §13.3) and print its verdict",
        description="Write the bundle of one item - by tag UID or GS1 Digital Link - holding "
        "exactly what docs/protocol.md §9 says an honest bundle holds, restating binding and "
        "profile chains whose interval is not closed yet, and print the verifier's report. "
        "Exit status as `coldtrace verify` (§13.2).",
    )
    config_arg(p)
    p.add_argument("item", metavar="TAG_UID|DIGITAL_LINK")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument(
        "--no-restate",
        action="store_true",
        help="never sign restatements (the verdict may then be INCOMPLETE)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=60.0,
        help="seconds to wait for the gateway to log and anchor restatements",
    )
    p.set_defaults(func=cmd_trace)


def cmd_trace(args: argparse.Namespace) -> int:
    from gateway.cli import _load
    from protocol.trust import parse_trust
    from protocol.verify import verify_bundle
    from protocol.verify_cli import exit_status, render

    cfg = _load(args)
    if not cfg.db_path.exists():
        print(f"coldtrace gateway: no database at {cfg.db_path}", file=sys.stderr)
        return 2
    try:
        bundle, _ = run_trace(
            cfg, args.item, args.output, restate=not args.no_restate, wait=args.wait
        )
    except (TraceError, ProofUnavailable) as exc:
        print(f"coldtrace gateway: {exc}", file=sys.stderr)
        return 1
    from gateway.rotate import own_trust

    rpc = None  # an EVM receipt is checked on the gateway's own node (docs/evm.md)
    if cfg.ledger.backend == "evm" and cfg.ledger.evm is not None:
        from protocol.rpc import json_rpc

        rpc = json_rpc(cfg.ledger.evm.rpc_url, timeout=cfg.ledger.evm.timeout)
    report = verify_bundle(bundle, parse_trust(own_trust(cfg)), rpc=rpc)
    sys.stdout.write(render(report))
    return exit_status(report)
