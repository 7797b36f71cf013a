"""The `coldtrace` command line.

Subcommands live with the package that owns them. ``protocol`` provides
``verify``; other packages register theirs through the ``coldtrace.commands``
entry-point group: each entry point is a function ``register(subparsers)``
that adds one subcommand whose parser sets ``func`` (a callable taking the
parsed arguments and returning the exit status). This keeps the dependency
rule: protocol imports neither gateway nor cloud.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from protocol import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coldtrace",
        description="ColdTrace: provable cold chains. Signed readings, a Merkle log, "
        "anchored checkpoints and an independent verifier.",
    )
    parser.add_argument("--version", action="version", version=f"coldtrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from protocol import verify_cli

    verify_cli.register(sub)
    for ep in sorted(entry_points(group="coldtrace.commands"), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    status: int = func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
