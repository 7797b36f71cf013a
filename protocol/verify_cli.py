"""`coldtrace verify BUNDLE --trust TRUST`: the independent verifier.

Needs nothing but the bundle and the pinned keys (and, for EVM anchors, an RPC
URL). Exit status 0 only when everything verified; 1 when a check failed; 2
when the bundle or trust file could not be read at all.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from protocol.bundle import loads_bundle
from protocol.errors import VerificationError
from protocol.trust import load_trust
from protocol.verify import Report, verify_bundle


def register(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="verify a trace bundle against pinned keys",
        description="Verify a ColdTrace trace bundle: record signatures, hash chains, "
        "inclusion in signed checkpoints, checkpoint consistency and anchors.",
    )
    p.add_argument("bundle", type=Path, help="bundle JSON file")
    p.add_argument(
        "--trust", type=Path, required=True, help="trust file with the pinned keys (JSON)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--evm-rpc", metavar="URL", help="JSON-RPC endpoint to check EVM anchors")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="list every check, not just failures"
    )
    p.set_defaults(func=run)


def _temp(centi: int | None) -> str:
    return "-" if centi is None else f"{centi / 100:.2f} °C"


def render(report: Report, *, verbose: bool = False) -> str:
    s = report.summary
    lines = ["ColdTrace bundle verification", ""]
    lines.append(
        f"  records   {s.get('records_verified', 0)} of {s.get('records', 0)} verified "
        f"({s.get('readings', 0)} readings, {s.get('scans', 0)} scans) "
        f"from {len(s.get('devices', []))} signers"
    )
    lines.append(
        f"  logs      {s.get('checkpoints', 0)} checkpoints, "
        f"{s.get('anchored_checkpoints', 0)} anchored or consistent with an anchor"
    )
    if s.get("temp_min_centi") is not None:
        lines.append(
            f"  readings  min {_temp(s['temp_min_centi'])}, max {_temp(s['temp_max_centi'])}"
        )
    counts = Counter(c.check for c in report.checks if c.ok)
    lines.append("  passed    " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    if verbose:
        lines.append("")
        for c in report.checks:
            mark = "ok  " if c.ok else "FAIL"
            lines.append(f"  {mark} {c.check:<24} {c.subject}")
    failures = report.failures
    if failures:
        lines.append("")
        lines.append(f"  {len(failures)} check(s) FAILED:")
        for c in failures:
            detail = f"  [want {c.expected}, got {c.found}]" if c.expected or c.found else ""
            lines.append(f"    {c.code:<24} {c.check} {c.subject}: {c.message}{detail}")
    lines.append("")
    if report.ok:
        lines.append("VERIFIED: every record is signed, chained, logged and anchored.")
    elif not failures:
        lines.append("NOT VERIFIED: the bundle holds no verifiable record.")
    else:
        lines.append("NOT VERIFIED: see the failures above.")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    rpc = None
    try:
        trust = load_trust(args.trust)
        bundle = loads_bundle(Path(args.bundle).read_bytes())
        if args.evm_rpc:
            from protocol.rpc import json_rpc

            rpc = json_rpc(args.evm_rpc)
    except (OSError, VerificationError) as err:
        code = getattr(err, "code", "io_error")
        if args.json:
            import json

            print(json.dumps({"ok": False, "error": code, "message": str(err)}))
        else:
            print(f"coldtrace verify: {code}: {err}", file=sys.stderr)
        return 2
    report = verify_bundle(bundle, trust, rpc=rpc)
    sys.stdout.write(report.dumps() if args.json else render(report, verbose=args.verbose))
    return 0 if report.ok else 1
