"""`coldtrace export epcis|fsma BUNDLE --trust TRUST [-o FILE]`.

Verifies the bundle first (docs/protocol.md §11) and exports only when it
verified. Exit status: 0 written, 1 internal error, 2 unreadable input or
usage error, 3 not verified (nothing is written). The verdict (PASS, FAIL or
INCOMPLETE) does not change the status: it is in the export.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from cloud.exports import epcis, fsma
from cloud.exports.evidence import Evidence, NotVerifiedError, load_evidence
from protocol.errors import VerificationError
from protocol.verify_cli import EXIT_INTERNAL, EXIT_NOT_VERIFIED, EXIT_UNREADABLE, safe

__all__ = ["register", "run"]

EXIT_OK = 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a verified trace bundle as GS1 EPCIS 2.0 or an FSMA 204 spreadsheet",
        description="Verify a trace bundle and export it: 'epcis' writes a GS1 EPCIS 2.0 "
        "JSON-LD document (one ObjectEvent per custody scan, per-leg temperature sensor "
        "reports), 'fsma' an FSMA 204 sortable spreadsheet (CSV, one row per Critical "
        "Tracking Event), both with proof references. An unverified bundle is refused. "
        "Exit status: 0 written, 1 internal error, 2 unreadable input, 3 not verified.",
    )
    p.add_argument("format", choices=("epcis", "fsma"), help="export format")
    p.add_argument("bundle", type=Path, help="bundle JSON file")
    p.add_argument(
        "--trust", type=Path, required=True, help="trust file with the pinned keys (JSON)"
    )
    p.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="output file (default: stdout)"
    )
    p.set_defaults(func=run)


def _render(fmt: str, ev: Evidence) -> str:
    if fmt == "epcis":
        return epcis.dumps(epcis.epcis_document(ev))
    return fsma.csv_text(ev)


def _write(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all (a temporary file, renamed)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
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


def _run(args: argparse.Namespace) -> int:
    try:
        ev = load_evidence(args.bundle, args.trust)
    except VerificationError as err:
        print(f"coldtrace export: {err.code}: {safe(str(err))}", file=sys.stderr)
        return EXIT_UNREADABLE
    except OSError as err:
        print(
            f"coldtrace export: io_error: {safe(err.strerror or err)}: {safe(err.filename or '')}",
            file=sys.stderr,
        )
        return EXIT_UNREADABLE
    except NotVerifiedError as err:
        print(
            f"coldtrace export: refused: {err} (run coldtrace verify for the details)",
            file=sys.stderr,
        )
        return EXIT_NOT_VERIFIED
    text = _render(args.format, ev)
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            _write(args.output, text)
        except OSError as err:
            print(
                f"coldtrace export: io_error: {safe(err.strerror or err)}: "
                f"{safe(err.filename or args.output)}",
                file=sys.stderr,
            )
            return EXIT_UNREADABLE
    return EXIT_OK
