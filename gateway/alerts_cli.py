"""``coldtrace gateway alerts``: the open and recent alerts, from the store.

It reads the gateway's store directly (the ``alerts`` table gateway/alerts.py
fills, acknowledgements included), so it works whether the gateway runs or
not. One line per alert, newest first::

    ID   DEVICE / PLACE   KIND   REASON   START   END (or "open")   ACKED BY

``--open`` keeps the alarms still open, ``--since`` those open at or after a
time (``2h``, ``30m``, ``1d``, ``90s``, or a date ``2026-12-07`` /
``2026-12-07T10:00:00Z``), ``--json`` prints the rows as JSON (each with the
latest ``event`` as published).

Interface::

    register(subparsers)          # adds `alerts` to `coldtrace gateway`
    parse_since(text, now) -> int # ValueError with a plain sentence
    rows(store, open_only=False, since=None, limit=50) -> list[dict]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

__all__ = ["parse_since", "register", "rows"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_AGO = re.compile(r"(\d+)\s*([smhd])")


def register(sub: Any) -> None:
    """Add ``alerts`` to the ``coldtrace gateway`` subcommands."""
    p = sub.add_parser(
        "alerts",
        help="list open and recent alerts (reads the store: the gateway may run or not)",
        description="List the gateway's open and recent alerts: excursions, sensor faults, "
        "offline devices and the gateway's own alarms, with who acknowledged them.",
    )
    p.add_argument(
        "--config",
        "-c",
        default="gateway.toml",
        help="gateway configuration (default: gateway.toml)",
    )
    p.add_argument("--open", action="store_true", help="only the alarms still open")
    p.add_argument(
        "--since",
        default=None,
        help="only alerts open at or after this: 2h, 30m, 1d, or a date (2026-12-07[T10:00Z])",
    )
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="the rows as JSON")
    p.set_defaults(func=_alerts)


def parse_since(text: str, now: int) -> int:
    """Unix seconds from ``2h`` / ``30m`` / ``1d`` / ``90s`` ago, or an ISO date (UTC)."""
    m = _AGO.fullmatch(text.strip())
    if m:
        return now - int(m.group(1)) * _UNITS[m.group(2)]
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r} is neither a duration (2h, 30m, 1d) nor a date (2026-12-07)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def rows(
    store: Any, *, open_only: bool = False, since: int | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The store's alerts, newest first: open ones only, or those open at or after
    ``since`` (not ended before it)."""
    out = []
    for row in store.alerts(limit=100_000, open_only=open_only):
        if open_only and row["ended"] is not None:
            continue  # open_only in the store also means "not yet acknowledged"
        if since is not None and row["ended"] is not None and row["ended"] < since:
            continue
        out.append(row)
        if len(out) >= limit:
            break
    return out


def _when(t: int | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _reason(row: dict[str, Any]) -> str:
    e = row["event"]
    kind = row["kind"]
    if kind == "excursion":
        text = f"{e.get('side')} ({e.get('reason')})"
    elif kind == "sensor_fault":
        text = f"fault code {e.get('fault')}"
    elif kind == "offline":
        text = f"no upload (every {e.get('interval')} s)" if e.get("interval") else "offline"
    else:
        text = str(e.get("reason") or "")
    if e.get("clock_unset"):
        text += ", device clock unset"
    if row["ended"] is not None and e.get("cause"):
        text += f"; ended: {e['cause']}"
    return text


def _table(found: list[dict[str, Any]]) -> str:
    head = ("ID", "DEVICE / PLACE", "KIND", "REASON", "START", "END", "ACKED BY")
    lines = [
        (
            r["id"],
            r["device"] + (f" / {r['place']}" if r["place"] else ""),
            r["kind"],
            _reason(r),
            _when(r["start"]),
            "open" if r["ended"] is None else _when(r["ended"]),
            r["acked_by"] or "-",
        )
        for r in found
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines, strict=False)]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in (head, *lines)
    )


def _alerts(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.cli import _load, _store

    args.config = Path(args.config)
    if args.limit < 1:
        print("coldtrace gateway alerts: --limit must be 1 or more", file=sys.stderr)
        return 2
    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since, int(time.time()))
        except ValueError as exc:
            print(f"coldtrace gateway alerts: {exc}", file=sys.stderr)
            return 2
    cfg = _load(args)
    store = _store(cfg)
    try:
        found = rows(store, open_only=args.open, since=since, limit=args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps(found, indent=1, sort_keys=True))
        return 0
    if not found:
        what = "open alerts" if args.open else "alerts"
        print(f"No {what}" + (f" since {_when(since)}." if since is not None else "."))
        return 0
    print(_table(found))
    n_open = sum(1 for r in found if r["ended"] is None)
    print(f"\n{len(found)} alert(s), {n_open} open.")
    return 0
