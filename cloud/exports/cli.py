"""`coldtrace export epcis|fsma BUNDLE --trust TRUST [-o FILE] [--format csv|xlsx]
[--lot LOT] [--from DATE] [--to DATE]`.

Reads the two files and calls :func:`cloud.exports.api.render`, the function a
web API calls too: it verifies the bundle first (docs/protocol.md §11) and
exports only when it verified. Exit status: 0 written, 1 internal error, 2
unreadable input or usage error (a bad option, or a lot the bundle's item is
not of), 3 not verified (nothing is written). The verdict (PASS, FAIL or
INCOMPLETE) does not change the status: it is in the export.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from cloud.exports.api import render
from cloud.exports.evidence import ExportOptionError, NotVerifiedError, UnreadableInputError
from protocol.errors import VerificationError
from protocol.trust import load_trust
from protocol.verify_cli import EXIT_INTERNAL, EXIT_NOT_VERIFIED, EXIT_UNREADABLE, safe

__all__ = ["register", "run"]

EXIT_OK = 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a verified trace bundle as GS1 EPCIS 2.0 or an FSMA 204 spreadsheet",
        description="Verify a trace bundle and export it: 'epcis' writes a GS1 EPCIS 2.0 "
        "JSON-LD document (Object, Transaction and Aggregation events from the custody "
        "scans, per-leg sensor summaries), 'fsma' an FSMA 204 sortable spreadsheet (CSV or "
        "XLSX, one row per Critical Tracking Event, optionally for one lot and a date "
        "range), both with proof references. An unverified bundle is refused. "
        "Exit status: 0 written, 1 internal error, 2 unreadable input or bad option, "
        "3 not verified.",
    )
    p.add_argument("kind", choices=("epcis", "fsma"), help="export kind")
    p.add_argument("bundle", type=Path, help="bundle JSON file")
    p.add_argument(
        "--trust", type=Path, required=True, help="trust file with the pinned keys (JSON)"
    )
    p.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="output file (default: stdout)"
    )
    p.add_argument(
        "--format",
        choices=("csv", "xlsx"),
        help="fsma: csv (default) or xlsx; default xlsx when FILE ends in .xlsx",
    )
    p.add_argument("--lot", help="fsma: only if the item is of this lot (refused otherwise)")
    p.add_argument(
        "--from",
        dest="date_from",
        metavar="DATE",
        help="fsma: events from this ISO 8601 date or date-time (UTC unless an offset is given)",
    )
    p.add_argument(
        "--to",
        dest="date_to",
        metavar="DATE",
        help="fsma: events up to this ISO 8601 date (the whole day) or date-time, inclusive",
    )
    p.set_defaults(func=run)


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file, renamed)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except Exception as exc:  # a bug: no traceback for the user, no export
        if os.environ.get("COLDTRACE_DEBUG"):
            raise
        print(
            f"coldtrace export: internal error ({type(exc).__name__}: {safe(exc, 120)}); "
            "please report it (set COLDTRACE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _options(args: argparse.Namespace) -> dict[str, Any]:
    fmt = args.format
    if args.kind == "epcis":
        if fmt is not None:
            raise ExportOptionError("--format is for fsma (epcis is JSON-LD)")
        return {}
    if fmt is None and args.output is not None and args.output.suffix.lower() == ".xlsx":
        fmt = "xlsx"
    opts: dict[str, Any] = {"format": fmt or "csv"}
    for key in ("lot", "date_from", "date_to"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    return opts


def _io_error(err: OSError, default: object = "") -> int:
    print(
        f"coldtrace export: io_error: {safe(err.strerror or err)}: {safe(err.filename or default)}",
        file=sys.stderr,
    )
    return EXIT_UNREADABLE


def _run(args: argparse.Namespace) -> int:
    if args.kind == "epcis" and (args.lot or args.date_from or args.date_to):
        print("coldtrace export: --lot, --from and --to are for fsma", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        opts = _options(args)
        data = args.bundle.read_bytes()
        trust = load_trust(args.trust)
        rendered = render(args.kind, data, trust, name=args.bundle.name, **opts)
    except (ExportOptionError, UnreadableInputError) as err:
        print(f"coldtrace export: {safe(str(err))}", file=sys.stderr)
        return EXIT_UNREADABLE
    except VerificationError as err:  # the trust file
        print(f"coldtrace export: {err.code}: {safe(str(err))}", file=sys.stderr)
        return EXIT_UNREADABLE
    except OSError as err:
        return _io_error(err)
    except NotVerifiedError as err:
        print(
            f"coldtrace export: refused: {err} (run coldtrace verify for the details)",
            file=sys.stderr,
        )
        return EXIT_NOT_VERIFIED
    if args.output is None:
        if opts.get("format") == "xlsx" and sys.stdout.isatty():
            print("coldtrace export: an XLSX workbook is binary: use -o FILE", file=sys.stderr)
            return EXIT_UNREADABLE
        sys.stdout.flush()
        sys.stdout.buffer.write(rendered.content)
        sys.stdout.buffer.flush()
    else:
        try:
            _write(args.output, rendered.content)
        except OSError as err:
            return _io_error(err, args.output)
    return EXIT_OK
