"""`coldtrace verify BUNDLE --trust TRUST`: the independent verifier and its verdict.

Needs nothing but the bundle and the pinned keys (and, for EVM anchors, an RPC
URL). It prints the subject from signed data, the legs of the custody, the
temperatures per leg, the excursions and the verdict with its reasons
(docs/protocol.md §13.2); ``--json`` prints the report of §13.1.

A product without a temperature profile gets the provenance verdict instead
(§12.10): GENUINE, SUSPECT or UNCONFIRMED. ``--tag`` gives the result of
authenticating the tag at the tap (the bundle cannot hold it); without it the
tag counts as not checked, and the verdict is at best UNCONFIRMED.

Exit status (§13.2): 0 verified and PASS or GENUINE, 1 internal error, 2
unreadable input or usage error, 3 not verified, 4 FAIL, 5 INCOMPLETE, 6
SUSPECT, 7 UNCONFIRMED.

Every string that came from the bundle is escaped and cut before it is shown
(:func:`safe`), so a bundle cannot write control sequences to a terminal or
flood it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from protocol.bundle import load_bundle
from protocol.errors import VerificationError
from protocol.provenance import TAG_VALUES
from protocol.reasons import fmt_centi, fmt_duration
from protocol.trust import load_trust
from protocol.verify import Report, verify_bundle

__all__ = [
    "EXIT_FAIL",
    "EXIT_INCOMPLETE",
    "EXIT_INTERNAL",
    "EXIT_NOT_VERIFIED",
    "EXIT_PASS",
    "EXIT_SUSPECT",
    "EXIT_UNCONFIRMED",
    "EXIT_UNREADABLE",
    "exit_status",
    "register",
    "render",
    "safe",
]

EXIT_PASS = 0
EXIT_INTERNAL = 1
EXIT_UNREADABLE = 2
EXIT_NOT_VERIFIED = 3
EXIT_FAIL = 4
EXIT_INCOMPLETE = 5
EXIT_SUSPECT = 6
EXIT_UNCONFIRMED = 7

MAX_SHOWN = 200


def register(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="verify a trace bundle against pinned keys and judge the cold chain",
        description="Verify a ColdTrace trace bundle (record signatures, chains, inclusion in "
        "signed checkpoints, checkpoint consistency, anchors) and compute its verdict: PASS, "
        "FAIL or INCOMPLETE; a product without a temperature profile gets the provenance "
        "verdict instead: GENUINE, SUSPECT or UNCONFIRMED. Exit status: 0 PASS or GENUINE, "
        "1 internal error, 2 unreadable input, 3 not verified, 4 FAIL, 5 INCOMPLETE, "
        "6 SUSPECT, 7 UNCONFIRMED.",
    )
    p.add_argument("bundle", type=Path, help="bundle JSON file")
    p.add_argument(
        "--trust", type=Path, required=True, help="trust file with the pinned keys (JSON)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON (§13.1)")
    p.add_argument("--evm-rpc", metavar="URL", help="JSON-RPC endpoint to check EVM anchors")
    p.add_argument(
        "--tag",
        choices=TAG_VALUES,
        default="unknown",
        help="the tag's authentication at the tap (NTAG 424 DNA SUN, checked by the cloud), "
        "for the provenance verdict of a product without a temperature profile; default "
        "unknown: not checked, so the verdict is at best UNCONFIRMED",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="list every check, not just failures"
    )
    p.set_defaults(func=run)


# --- safe output ---------------------------------------------------------------------


def safe(value: object, limit: int = MAX_SHOWN) -> str:
    """``value`` as printable text: non-printable characters escaped, cut to ``limit``."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit * 4:
        text = text[: limit * 4]
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch.isprintable() and not 0xD800 <= code <= 0xDFFF:
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    shown = "".join(out)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _clip(doc: Any) -> Any:
    """Cut every string in a JSON-able document to the shown limit (keeps the structure)."""
    if isinstance(doc, str):
        return doc if len(doc) <= MAX_SHOWN else doc[: MAX_SHOWN - 1] + "…"
    if isinstance(doc, list):
        return [_clip(v) for v in doc]
    if isinstance(doc, dict):
        return {k: _clip(v) for k, v in doc.items()}
    return doc


# --- formatting (the §12.9 formatters, for the table) --------------------------------------


def _t(t: int | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


def _c(c: int | None) -> str:
    return "-" if c is None else fmt_centi(c).removesuffix(" °C")


def _d(s: int | None) -> str:
    return "-" if s is None else fmt_duration(s)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _table(rows: list[list[str]], indent: str = "   ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _subject_lines(subject: Mapping[str, Any] | None) -> list[str]:
    if not subject:
        return []
    lines = [
        f"  Subject   {safe(subject.get('item') or '(no signed item)')}  "
        f"(tag {safe(subject.get('uid'))})"
    ]
    if subject.get("gtin"):
        parts = [f"GTIN {safe(subject['gtin'])}"]
        if subject.get("lot"):
            parts.append(f"lot {safe(subject['lot'])}")
        if subject.get("serial"):
            parts.append(f"serial {safe(subject['serial'])}")
        lines.append("            " + ", ".join(parts))
    if subject.get("commissioned") is not None:
        lines.append(
            f"            commissioned {_t(subject['commissioned'])} UTC at "
            f"{safe(subject.get('place'))} by {safe(subject.get('reader'))}"
        )
    return lines


def _profile_line(profile: Mapping[str, Any] | None) -> list[str]:
    if not profile:
        return ["  Profile   none shown"]
    band = []
    if profile.get("low") is not None:
        band.append(f"≥ {_c(profile['low'])} °C")
    if profile.get("high") is not None:
        band.append(f"≤ {_c(profile['high'])} °C")
    rules = [" and ".join(band), f"alarm delay {_d(profile['delay'])}"]
    if profile.get("cumul") is not None:
        rules.append(f"cumulative {_d(profile['cumul'])}")
    if profile.get("mkt") is not None:
        rules.append(f"MKT ≤ {_c(profile['mkt'])} °C")
    rules.append(f"readings stand ≤ {_d(profile['gap'])}")
    name = f"{safe(profile['name'])}: " if profile.get("name") else ""
    return [
        f"  Profile   {name}{', '.join(rules)}",
        f"            (GTIN {safe(profile.get('gtin'))}"
        + (f" lot {safe(profile['lot'])}" if profile.get("lot") else "")
        + f", signed by {safe(profile.get('signer'))}, statement #{profile.get('cseq')})",
    ]


def _provenance_lines(prov: Mapping[str, Any]) -> list[str]:
    """The provenance verdict's custody (§12.10): who held the item, and where its life closed."""
    tag = {
        "genuine": "authenticated at the tap",
        "replayed": "REPLAYED authentication message",
        "unauthenticated": "did NOT authenticate",
        "unknown": "not checked (use --tag with the result of the tap)",
    }.get(prov.get("tag", ""), "?")
    lines = [
        "  Profile   none: provenance verdict (temperatures are not judged)",
        f"  Brand     {safe(prov.get('brand'))} (the registry for the item's GTIN)",
        f"  Tag       {tag}",
        "",
        "  Custody (UTC)",
    ]
    rows = [["#", "at", "action", "place", "reader", "registered by"]]
    for e in prov.get("custody", []):
        who = e["registry"] if e["registry"] is not None else "(no registration)"
        if e.get("org"):
            who = f"{who} ({e['org']})"
        rows.append(
            [
                str(e["index"]),
                _t(e["at"]),
                str(e["action"]),
                safe(e["place"], 40),
                f"{safe(e['device'], 32)}#{e['seq']}",
                safe(who, 60),
            ]
        )
    lines += _table(rows)
    closed = prov.get("closed")
    if closed:
        what = "sold" if closed["action"] == "sell" else "installed"
        lines.append(
            f"   life closed: {what} {_t(closed['at'])} UTC at {safe(closed['place'])} "
            f"by {safe(closed['device'], 32)}#{closed['seq']}"
        )
    return lines


def render(report: Report, *, verbose: bool = False) -> str:
    """The text report (§13.2)."""
    doc = report.verdict_document()
    s = report.summary
    lines = ["ColdTrace verification", ""]
    lines += _subject_lines(doc["subject"])
    provenance = doc.get("provenance")
    if doc["verified"] and provenance is None:
        lines += _profile_line(doc["profile"])
    lines.append(
        f"  Evidence  {s.get('records_verified', 0)} of {s.get('records', 0)} records verified "
        f"({s.get('readings', 0)} readings, {s.get('scans', 0)} scans, "
        f"{s.get('statements', 0)} statements) from {len(s.get('devices', []))} devices; "
        f"{_n(s.get('checkpoints', 0), 'checkpoint')}, "
        f"{s.get('anchored_checkpoints', 0)} anchored"
    )
    if provenance is not None:
        lines += _provenance_lines(provenance)
    legs = doc["legs"]
    if legs:
        lines += ["", "  Legs (UTC)"]
        rows = [["#", "location", "from", "to", "opened by", "monitored by"]]
        for leg in legs:
            scan = leg["scan"]
            where = leg["location"] if leg["location"] is not None else "(unknown vehicle)"
            monitors = ", ".join(sorted({m["device"] for m in leg["monitors"]})) or "-"
            end = "(end of trace)" if leg["to"] == leg["from"] else _t(leg["to"])
            rows.append(
                [
                    str(leg["index"]),
                    safe(where, 40),
                    _t(leg["from"]),
                    end,
                    f"{scan['action']} by {safe(scan['device'], 32)}#{scan['seq']}",
                    safe(monitors, 60),
                ]
            )
        lines += _table(rows)
        lines += ["", "  Temperatures (°C)"]
        rows = [["#", "readings", "covered", "min", "max", "mean", "MKT", "out of range"]]
        for leg in legs:
            if leg["to"] == leg["from"]:
                continue
            rows.append(
                [
                    str(leg["index"]),
                    str(leg["readings"]),
                    f"{_d(leg['covered'])} of {_d(leg['to'] - leg['from'])}",
                    _c(leg["min"]),
                    _c(leg["max"]),
                    _c(leg["mean"]),
                    _c(leg["mkt"]),
                    _d(leg["tor"]),
                ]
            )
        totals = doc["totals"] or {}
        if totals:
            rows.append(
                [
                    "all",
                    str(totals.get("readings", 0)),
                    f"{_d(totals.get('covered'))} of "
                    f"{_d((totals.get('to') or 0) - (totals.get('from') or 0))}",
                    _c(totals.get("min")),
                    _c(totals.get("max")),
                    _c(totals.get("mean")),
                    _c(totals.get("mkt")),
                    _d(totals.get("tor")),
                ]
            )
        lines += _table(rows)
    if doc["excursions"]:
        lines += ["", "  Excursions"]
        for x in doc["excursions"]:
            mark = "ALARM" if x["alarm"] else "within the delay"
            lines.append(
                f"   {x['side']:<4} {_t(x['from'])} → {_t(x['to'])} ({_d(x['duration'])}), "
                f"peak {_c(x['peak'])} °C, {_c(x['degree_minutes'])} °C·min, "
                f"{safe(', '.join(x['devices']), 60)}: {mark}"
            )
    if verbose:
        lines += ["", "  Checks passed"]
        for name, n in sorted(report.passed_counts.items()):
            lines.append(f"   {name:<26} x{n}")
        for c in report.checks:
            mark = "ok  " if c.ok else "FAIL"
            lines.append(f"   {mark} {c.check:<24} {safe(c.subject, 80)}")
    failures = report.failures
    if failures:
        by_code: dict[str, list[Any]] = {}
        for c in failures:
            by_code.setdefault(c.code or "?", []).append(c)
        summary = ", ".join(f"{code} x{len(cs)}" for code, cs in by_code.items())
        lines += ["", f"  {len(failures)} check(s) FAILED: {summary}"]
        shown = 0
        for code, cs in by_code.items():
            for c in cs[: 200 if verbose else 5]:
                detail = (
                    f"  [want {safe(c.expected, 80)}, got {safe(c.found, 80)}]"
                    if c.expected or c.found
                    else ""
                )
                lines.append(
                    f"    {code:<24} {c.check} {safe(c.subject, 80)}: "
                    f"{safe(c.message or '')}{detail}"
                )
                shown += 1
            if len(cs) > (200 if verbose else 5):
                lines.append(f"    {'':<24} … and {len(cs) - (200 if verbose else 5)} more {code}")
        if shown < len(failures):
            lines.append("    (-v shows up to 200 of each kind, --json all of them)")
    lines.append("")
    if not doc["verified"]:
        if not failures:
            lines.append("NOT VERIFIED: the bundle holds no verifiable record.")
        else:
            lines.append("NOT VERIFIED: see the failures above. No verdict.")
        return "\n".join(lines) + "\n"
    verdict = doc["verdict"]
    meaning = {
        "PASS": "the signed evidence covers the whole trace and the product was kept "
        "within its profile",
        "FAIL": "the signed evidence shows the product's profile was broken",
        "INCOMPLETE": "no breach is shown, but the evidence does not cover the whole trace",
        "GENUINE": "the tag authenticated, and the signed custody starts at the brand "
        "owner's commissioning with no contradiction",
        "SUSPECT": "the tag or the signed custody shows signs of a copy or a counterfeit",
        "UNCONFIRMED": "nothing suspect is shown, but genuineness is not established",
    }[verdict]
    lines.append(f"VERDICT: {verdict} — {meaning}.")
    order = {"fail": 0, "suspect": 0, "incomplete": 1, "unconfirmed": 1, "note": 2}
    width = 11 if provenance is not None else 10
    for r in sorted(doc["reasons"], key=lambda r: order[r["severity"]]):
        lines.append(f"  {r['severity']:<{width}} {safe(r['text'], 300)}")
    return "\n".join(lines) + "\n"


def exit_status(report: Report) -> int:
    """The §13.2 exit status of a report."""
    if not report.verified or report.verdict is None:
        return EXIT_NOT_VERIFIED
    verdict = report.verdict_document()["verdict"]
    return {
        "PASS": EXIT_PASS,
        "GENUINE": EXIT_PASS,
        "FAIL": EXIT_FAIL,
        "SUSPECT": EXIT_SUSPECT,
        "UNCONFIRMED": EXIT_UNCONFIRMED,
    }.get(verdict, EXIT_INCOMPLETE)


def _unreadable(args: argparse.Namespace, code: str, message: str) -> int:
    if args.json:
        doc = {"verified": False, "verdict": None, "error": code, "message": safe(message)}
        print(json.dumps(doc, ensure_ascii=True))
    else:
        print(f"coldtrace verify: {code}: {safe(message)}", file=sys.stderr)
    return EXIT_UNREADABLE


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except Exception as exc:  # a bug: never a traceback for the user, never a verdict
        if os.environ.get("COLDTRACE_DEBUG"):
            raise
        print(
            f"coldtrace verify: internal error ({type(exc).__name__}: {safe(exc, 120)}); "
            "please report it (set COLDTRACE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _run(args: argparse.Namespace) -> int:
    rpc = None
    try:
        trust = load_trust(args.trust)
        bundle = load_bundle(args.bundle)
        if args.evm_rpc:
            from protocol.rpc import json_rpc

            rpc = json_rpc(args.evm_rpc)
    except VerificationError as err:
        return _unreadable(args, err.code, str(err))
    except OSError as err:
        return _unreadable(args, "io_error", f"{err.strerror or err}: {err.filename or ''}")
    report = verify_bundle(bundle, trust, rpc=rpc, detail=args.verbose, tag=args.tag)
    if args.json:
        doc = report.to_json()
        # The verdict members come from signed records (bounded by §2); failure
        # messages may echo anything the bundle holds: cut those.
        for key in ("failures", "checks", "summary"):
            if key in doc:
                doc[key] = _clip(doc[key])
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=True) + "\n")
    else:
        sys.stdout.write(render(report, verbose=args.verbose))
    return exit_status(report)
