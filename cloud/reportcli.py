"""`coldtrace report BUNDLE --trust TRUST -o report.pdf [--url URL] [--quantity N]`.

Verifies the bundle (docs/protocol.md §11) and writes the shipment release
report (:func:`cloud.report.render_report`; docs/cloud.md, "Shipment release
report"). Exit status: 0 written, 1 internal error, 2 unreadable input or usage
error, 3 not verified (nothing is written: a release report is never made on
evidence that does not verify). The verdict (PASS, FAIL or INCOMPLETE) does not
change the status: it is in the report.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from protocol.verify_cli import EXIT_INTERNAL, EXIT_NOT_VERIFIED, EXIT_UNREADABLE, safe

__all__ = ["register", "run"]

EXIT_OK = 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write the shipment release report (PDF) of a verified trace bundle",
        description="Verify a trace bundle and write its shipment release report, the PDF a "
        "quality manager signs to release or reject the shipment: product, lot and quantity, "
        "custody chain, a temperature chart and the statistics per leg, the verdict and its "
        "reasons, the proof fingerprints, a verification URL with its QR code and a "
        "signature block. An unverified bundle is refused. Exit status: 0 written, "
        "1 internal error, 2 unreadable input or bad option, 3 not verified.",
    )
    p.add_argument("bundle", type=Path, help="bundle JSON file")
    p.add_argument(
        "--trust", type=Path, required=True, help="trust file with the pinned keys (JSON)"
    )
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="FILE", help="the PDF to write"
    )
    p.add_argument(
        "--url",
        metavar="URL",
        help="where readers verify the trace (printed and as a QR code); without it the "
        "QR code holds the bundle's SHA-256",
    )
    p.add_argument(
        "--quantity",
        metavar="N",
        help="the quantity shipped (default: the signed item's GS1 AI 30, else a blank)",
    )
    p.add_argument("--evm-rpc", metavar="URL", help="JSON-RPC endpoint to check EVM anchors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except Exception as exc:  # a bug: no traceback for the user, no report
        if os.environ.get("COLDTRACE_DEBUG"):
            raise
        print(
            f"coldtrace report: internal error ({type(exc).__name__}: {safe(exc, 120)}); "
            "please report it (set COLDTRACE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _run(args: argparse.Namespace) -> int:
    from cloud.exports.cli import _write
    from cloud.report import NotVerified, ReportError, render_report

    quantity = args.quantity
    if quantity is not None and not (quantity.strip() and len(quantity) <= 40):
        print("coldtrace report: --quantity is 1 to 40 characters", file=sys.stderr)
        return EXIT_UNREADABLE
    url = args.url
    if url is not None and not 1 <= len(url) <= 1000:
        print("coldtrace report: --url is 1 to 1000 characters", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        data = args.bundle.read_bytes()
        trust = args.trust.read_bytes()
        rpc = None
        if args.evm_rpc:
            from protocol.rpc import json_rpc

            rpc = json_rpc(args.evm_rpc)
        pdf = render_report(
            data, trust, verification_url=url, quantity=quantity, name=args.bundle.name, rpc=rpc
        )
    except NotVerified as err:
        print(f"coldtrace report: refused: {err}", file=sys.stderr)
        return EXIT_NOT_VERIFIED
    except ReportError as err:
        print(f"coldtrace report: {safe(str(err), 300)}", file=sys.stderr)
        return EXIT_UNREADABLE
    except OSError as err:
        print(
            f"coldtrace report: io_error: {safe(err.strerror or err)}: {safe(err.filename or '')}",
            file=sys.stderr,
        )
        return EXIT_UNREADABLE
    try:
        _write(args.output, pdf)
    except OSError as err:
        print(
            f"coldtrace report: io_error: {safe(err.strerror or err)}: {safe(args.output)}",
            file=sys.stderr,
        )
        return EXIT_UNREADABLE
    print(f"coldtrace report: wrote {args.output} ({len(pdf)} bytes)", file=sys.stderr)
    return EXIT_OK
