"""``coldtrace gateway trace``: one item's bundle, exactly what an honest bundle holds.

docs/protocol.md §9 ("What an honest bundle holds") and §13.3. From the
gateway's store, as of one anchored checkpoint (the log prefix of ``upto``
leaves, so everything chosen can be proven), :func:`plan` chooses:

1. **the custody**: the tag's scans, dated (``protocol.verdict.date_records``)
   and put in order by ``protocol.verdict.custody`` - the verifier's own code,
   so the gateway and the verdict agree on the legs;
2. **for each leg** with a duration and a location in the registry's places
   scope: the run of the location's binding chain that spans the leg (§12.5:
   from the last statement in force at its start to the first at or after its
   end), and from it each device's monitoring intervals;
3. **the profile**: the run of the lot's profile chain (or, without one, the
   GTIN's) that spans [c, c + 1) for the commission date c, signed by the
   GTIN's authority (§10): this gateway's registry, or another authority of
   ``[[registry.authorities]]`` (a brand owner, ``coldtrace profile``);
4. **for each monitoring device**: its records from the last one dated at or
   before its monitoring start to the first dated at or after its end, every
   seq in between, and each status record that declares a loss there; a
   record whose clock was not set pulls in the records up to the next set
   clock, so the verifier can date it as the gateway did;
5. **the registrations** of every device in the bundle, all of them.

A run that does not reach its interval's end is *open* (the verdict would
say ``binding_unproven`` or ``no_profile``): :func:`run_trace` restates such
chains (gateway/registry.py, §4.2) and waits for the running gateway to log
the restatements and anchor a checkpoint that covers them, then plans again.
Another authority's chain cannot be restated here (the gateway does not hold
its key): the command says whom to ask (``coldtrace profile sign`` with the
same values, then ``registry import-statement``) and writes the bundle.
:func:`gateway.proofs.prove` adds the checkpoint, one multiproof (verified)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.proofs import ProofUnavailable, TreeReader, covering_checkpoint, prove
from gateway.registry import ChainKey, RegistryError, Scopes, chain_label
from gateway.store import SQLiteStore, StoredRecord
from gateway.units import format_time
from protocol.bundle import Bundle, Subject
from protocol.reasons import fmt_centi, fmt_duration
from protocol.record import (
    KIND_BINDING,
    KIND_PROFILE,
    Binding,
    ProductProfile,
    open_record,
)
from protocol.verdict import Custody, Leg, chain_state, custody, date_records, parse_item

__all__ = ["Plan", "TraceError", "find_uid", "plan", "register_trace_command", "run_trace"]

UNSET = 0  # tq of a record made before the device's clock was set


class TraceError(Exception):
    """The item cannot be traced (unknown tag, no checkpoint...)."""


@dataclass
class Run:
    """The part of a statement chain that must span [start, until) (§12.5)."""

    key: ChainKey
    start: int
    until: int
    records: list[StoredRecord]  # consecutive cseqs
    closed: bool  # the last one is in force from ``until`` or later
    signer: str = ""  # the registry whose chain it is (an authority's: not restated here)

    @property
    def last_time(self) -> int | None:
        return None if not self.records else open_record(self.records[-1].raw).payload.time


@dataclass
class LegPlan:
    leg: Leg
    run: Run | None
    why_none: str | None  # why the leg has no binding run
    monitors: list[tuple[str, int, int]] = field(default_factory=list)  # device, from, to


@dataclass
class Plan:
    uid: bytes
    item: str | None
    custody: Custody
    scans: list[StoredRecord]
    legs: list[LegPlan]
    profile: Run | None
    profile_note: str | None
    devices: dict[str, list[StoredRecord]]
    registrations: list[StoredRecord]
    upto: int

    @property
    def runs(self) -> list[Run]:
        runs = [lp.run for lp in self.legs if lp.run is not None]
        return runs + ([self.profile] if self.profile is not None else [])

    @property
    def open_runs(self) -> list[Run]:
        """Open runs, one per chain (a chain spanning two legs is restated once)."""
        seen: dict[ChainKey, Run] = {}
        for run in self.runs:
            if not run.closed and (run.key not in seen or run.until > seen[run.key].until):
                seen[run.key] = run
        return list(seen.values())

    def leaves(self) -> list[int]:
        out = {r.leaf for r in self.scans}
        for run in self.runs:
            out.update(r.leaf for r in run.records)
        for recs in self.devices.values():
            out.update(r.leaf for r in recs)
        out.update(r.leaf for r in self.registrations)
        return sorted(out)


# --- the subject --------------------------------------------------------------------------


def _digital_link_path(text: str) -> str | None:
    i = text.find("/01/")
    if i < 0:
        return None
    path = text[i:]
    for sep in "?#":
        path = path.split(sep, 1)[0]
    return path.rstrip("/")


def find_uid(store: SQLiteStore, what: str, *, upto: int | None = None) -> tuple[bytes, str | None]:
    """The tag UID for ``what``: a tag UID in hex (``04a23c5a1b6f80``, colons allowed) or a
    GS1 Digital Link (a URL or path) of the item a commission scan gave a tag."""
    hexed = what.replace(":", "").replace(" ", "").lower()
    if len(hexed) in (8, 14, 20) and all(c in "0123456789abcdef" for c in hexed):
        return bytes.fromhex(hexed), None
    path = _digital_link_path(what)
    if path is None:
        raise TraceError(
            f"{what!r} is neither a tag UID (8, 14 or 20 hex digits) nor a GS1 Digital Link"
        )
    recs = store.scans_of(item=path, upto=upto)
    if not recs:
        want = parse_item(path)
        if want is None:
            raise TraceError(f"{path!r} is not a GS1 Digital Link path (/01/{{gtin}}/...)")
        raise TraceError(f"no commission scan in this gateway's log names the item {path}")
    uids = []
    for rec in recs:
        uid = open_record(rec.raw).payload.uid  # type: ignore[union-attr]
        if uid not in uids:
            uids.append(uid)
    if len(uids) > 1:
        listed = ", ".join(u.hex() for u in uids)
        raise TraceError(f"the item {path} was commissioned on {len(uids)} tags ({listed})")
    return uids[0], path


# --- planning -------------------------------------------------------------------------------


def _run(store: SQLiteStore, key: ChainKey, signer: str, a: int, b: int, upto: int) -> Run:
    """The run of chain ``key`` spanning [a, b), as logged below leaf ``upto`` (§12.5)."""
    kind, name = key
    rows = [
        r for r in store.statements(kind=kind, chain=name) if r.signer == signer and r.leaf < upto
    ]
    rows.sort(key=lambda r: r.cseq)
    if not rows:
        return Run(key, a, b, [], False, signer)
    first = 0
    for i, r in enumerate(rows):
        if r.time <= a:
            first = i  # the highest cseq in force at a (times never go back)
    chosen = []
    closed = False
    for r in rows[first:]:
        if chosen and r.cseq != chosen[-1].cseq + 1:
            break  # cannot happen: ingest logs a chain without gaps
        chosen.append(r)
        if r.time >= b:
            closed = True
            break
    recs = []
    for r in chosen:
        rec = store.record(r.leaf)
        if rec is None:
            raise TraceError(f"{chain_label(key)}: leaf {r.leaf} is not stored")
        recs.append(rec)
    return Run(key, a, b, recs, closed, signer)


def _monitors(run: Run, a: int, b: int) -> list[tuple[str, int, int]]:
    """Device monitoring intervals over [a, b) from the pieces of the run's state."""
    state = chain_state([open_record(r.raw) for r in run.records], a, b)
    spans: dict[str, list[list[int]]] = {}
    for stmt, start, end in state.pieces:
        if stmt is None or not isinstance(stmt.payload, Binding):
            continue
        for dev in stmt.payload.device_list:
            mine = spans.setdefault(dev, [])
            if mine and mine[-1][1] == start:
                mine[-1][1] = end
            else:
                mine.append([start, end])
    return [(dev, x, y) for dev, ivs in sorted(spans.items()) for x, y in ivs]


def _dating_tail(store: SQLiteStore, recs: list[StoredRecord], upto: int) -> list[StoredRecord]:
    """``recs`` (one signer, ascending seq) with the records after the last one up to
    and including the first with a set clock, when the last has none (§12.2)."""
    out = list(recs)
    while out and out[-1].tq == UNSET:
        nxt = store.records_of(out[-1].signer, out[-1].seq + 1, out[-1].seq + 1, upto=upto)
        if not nxt:
            break
        out.append(nxt[0])
    return out


def _device_records(
    store: SQLiteStore, device: str, spans: list[tuple[int, int]], upto: int
) -> list[StoredRecord]:
    """Every record of ``device`` a verifier needs over its monitoring ``spans``."""
    chosen: dict[int, StoredRecord] = {}
    for x, y in spans:
        window = store.seq_window(device, x, y, upto=upto)
        if window is None:
            continue  # no records at all: the verdict says records_missing
        recs = _dating_tail(store, store.records_of(device, *window, upto=upto), upto)
        dates = date_records(open_record(r.raw) for r in recs)
        dated = [(r, dates.get(r.raw)) for r in recs]
        lo = max((r.seq for r, d in dated if d is not None and d <= x), default=window[0])
        hi = min(
            (r.seq for r, d in dated if r.seq >= lo and d is not None and d >= y),
            default=window[1],
        )
        keep = [r for r in recs if lo <= r.seq <= hi]
        for r in _dating_tail(store, keep, upto):
            chosen[r.seq] = r
        for loss in store.declared_losses(device, limit=1_000_000):
            if loss.status_leaf < upto and loss.seq_from <= hi and loss.seq_to >= lo:
                status = store.record(loss.status_leaf)
                if status is not None:
                    chosen[status.seq] = status
    return [chosen[s] for s in sorted(chosen)]


def plan(store: SQLiteStore, uid: bytes, *, registry: str, scopes: Scopes, upto: int) -> Plan:
    """What the bundle of tag ``uid`` holds, from the log's first ``upto`` leaves."""
    scans = store.scans_of(uid=uid, upto=upto)
    if not scans:
        raise TraceError(f"no scans of tag {uid.hex()} in this gateway's log")
    readers: dict[str, list[StoredRecord]] = {}
    for rec in scans:
        readers.setdefault(rec.signer, []).append(rec)
    scan_recs: list[StoredRecord] = []
    for recs in readers.values():  # each scan with what dates it
        for rec in recs:
            scan_recs += _dating_tail(store, [rec], upto)
    opened = [open_record(r.raw) for r in scan_recs]
    cust = custody(opened, date_records(opened), uid)
    custody_raws = {r.raw for r in cust.scans}
    kept = [r for r in scan_recs if r.raw in custody_raws]
    for r in list(kept):  # and their dating tails
        kept += [t for t in _dating_tail(store, [r], upto) if t not in kept]

    legs: list[LegPlan] = []
    for leg in cust.legs:
        if leg.end <= leg.start:
            legs.append(LegPlan(leg, None, "no duration"))
            continue
        if leg.location is None:
            legs.append(LegPlan(leg, None, "a load without a vehicle (no ref)"))
            continue
        if not scopes.matches("places", leg.location):
            why = f"{leg.location} is outside this registry's places scope"
            legs.append(LegPlan(leg, None, why))
            continue
        run = _run(store, (KIND_BINDING, leg.location), registry, leg.start, leg.end, upto)
        lp = LegPlan(leg, run, None if run.records else f"{leg.location} was never bound")
        if run.records:
            lp.monitors = _monitors(run, leg.start, leg.end)
        legs.append(lp)

    item = None
    profile, note = None, None
    if cust.commission is not None:
        p = cust.commission.payload
        item = getattr(p, "item", None)
        parsed = parse_item(item) if item else None
        c = next(leg.start for leg in cust.legs)
        owner = None if parsed is None else scopes.authority_for(parsed.gtin)
        if parsed is None:
            note = "the item has no GTIN: no product profile applies"
        elif owner is None:
            note = (
                f"GTIN {parsed.gtin} has no authority here (outside every gtins scope of "
                "[registry] and [[registry.authorities]])"
            )
        else:
            signer = owner or registry  # SELF ("") is this gateway's registry
            key: ChainKey = (KIND_PROFILE, parsed.gtin)
            if parsed.lot is not None:
                lot_key: ChainKey = (KIND_PROFILE, f"{parsed.gtin} {parsed.lot}")
                if any(
                    r.leaf < upto and r.signer == signer
                    for r in store.statements(kind=KIND_PROFILE, chain=lot_key[1])
                ):
                    key = lot_key
            profile = _run(store, key, signer, c, c + 1, upto)
            if not profile.records:
                by = "" if signer == registry else f" by {signer}"
                note = f"no profile for GTIN {parsed.gtin} was ever signed{by}"

    spans: dict[str, list[tuple[int, int]]] = {}
    for lp in legs:
        for dev, x, y in lp.monitors:
            spans.setdefault(dev, []).append((x, y))
    devices = {dev: _device_records(store, dev, sp, upto) for dev, sp in spans.items()}

    named = set(readers) | set(devices)
    for lp in legs:
        if lp.run is not None:
            for rec in lp.run.records:
                p = open_record(rec.raw).payload
                if isinstance(p, Binding):
                    named.update(p.device_list)
    registrations = []
    for dev in sorted(named):
        for leaf, *_ in store.placements(dev):
            rec = store.record(leaf)
            if rec is not None and leaf < upto:
                registrations.append(rec)
    return Plan(uid, item, cust, kept, legs, profile, note, devices, registrations, upto)


def build(store: SQLiteStore, tree_dir: Path, origin: str, p: Plan) -> Bundle:
    """The bundle of plan ``p``, proven in the anchored checkpoint of ``p.upto`` leaves."""
    cp = store.checkpoint_at(p.upto)
    if cp is None:
        raise TraceError(f"no checkpoint of size {p.upto}")
    tree = TreeReader(tree_dir, cp.size)
    try:
        return prove(store, tree, origin, p.leaves(), Subject(p.uid, p.item))
    finally:
        tree.close()


# --- the command ------------------------------------------------------------------------------


def _anchored(store: SQLiteStore) -> int:
    """The size of the latest anchored checkpoint (0: none)."""
    try:
        cp, _ = covering_checkpoint(store, 0)
    except ProofUnavailable:
        return 0
    return cp.size


def gateway_running(store: SQLiteStore) -> bool:
    live = json.loads(store.get_meta("status") or "{}")
    return (
        bool(live) and not live.get("stopped") and time.time() - float(live.get("time", 0)) < 10
    )


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
    from gateway.service import registry_scopes, registry_signer
    from gateway.store import open_store

    store = open_store(cfg.db_path)
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
        p = plan(store, uid, registry=cfg.registry.id, scopes=scopes, upto=upto)
        p = _close(store, cfg, p, uid, scopes, restate, wait, say, registry_signer)
        describe(p, say)
        bundle = build(store, cfg.tree_dir, cfg.log.origin, p)
    finally:
        store.close()
    text = bundle.dumps()
    output.write_text(text, encoding="utf-8")
    say(
        f"wrote {output}: {len(bundle.records)} records, one multiproof of "
        f"{len(bundle.proofs[0].nodes)} nodes in checkpoint {p.upto} "
        f"({'anchored' if bundle.anchors else 'NOT anchored'}), {len(text.encode()) // 1024} KiB"
    )
    return bundle, p


def _caught_up(store: SQLiteStore, wait: float, say: Callable[[str], None]) -> int:
    """The latest anchored checkpoint's size, after waiting (up to ``wait`` s, while
    the gateway runs) for one that covers every record logged now, and the
    records waiting in the outbox (e.g. a brand's imported profile) first."""
    start = time.monotonic()
    while (
        store.outbox_pending() and gateway_running(store) and time.monotonic() - start < wait
    ):
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
    store: SQLiteStore,
    cfg: Any,
    p: Plan,
    uid: bytes,
    scopes: Scopes,
    restate: bool,
    wait: float,
    say: Callable[[str], None],
    make_signer: Callable[..., Any],
) -> Plan:
    """Restate the plan's open chains and wait until they are closed in an anchored
    checkpoint; return the plan at that checkpoint (or the old one, said plainly)."""
    needed = p.open_runs
    theirs = [r for r in needed if r.signer != cfg.registry.id]
    for run in theirs:
        say(_ask_them(run))
    if theirs:
        say("the verdict will be INCOMPLETE (no_profile) until then")
    needed = [r for r in needed if r.signer == cfg.registry.id]
    if not needed:
        return p
    names = ", ".join(chain_label(r.key) for r in needed)
    if not restate:
        say(f"not closed: {names} (--no-restate: the verdict will say so)")
        return p
    signer = make_signer(cfg, store)
    if signer is None:
        say(f"not closed: {names}; without [registry] key_file they cannot be restated")
        return p
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
        return p
    want = {r.key for r in needed}
    start = time.monotonic()
    next_note = start + 2.0
    while True:
        upto = _anchored(store)
        if upto > p.upto:
            q = plan(store, uid, registry=cfg.registry.id, scopes=scopes, upto=upto)
            if not ({r.key for r in q.open_runs} & want):
                took = time.monotonic() - start
                say(f"checkpoint {upto} anchored: the restated chains are closed ({took:.1f} s)")
                return q
        now = time.monotonic()
        if now - start > wait:
            say(
                f"gave up after {wait:.0f} s waiting for the gateway to log and anchor the "
                "restatements; the bundle is written as the log stands (verdict INCOMPLETE)"
            )
            if upto > p.upto:
                return plan(store, uid, registry=cfg.registry.id, scopes=scopes, upto=upto)
            return p
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
    from gateway.service import trust_document
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
    report = verify_bundle(bundle, parse_trust(trust_document(cfg)))
    sys.stdout.write(render(report))
    return exit_status(report)
