"""A full disk, told apart from every other failure: one clear message, one exit code.

When the disk (or a quota) under the gateway's data is full, SQLite answers
``database or disk is full`` (SQLITE_FULL), PostgreSQL ``could not extend
file`` (SQLSTATE 53100), SQLAlchemy wraps either in its ``OperationalError``,
and a file write raises ``OSError`` with ENOSPC. :func:`is_disk_full`
recognises all of them, through ``__cause__``/``__context__`` and
SQLAlchemy's ``orig``, so callers need not know which engine or layer
failed. The gateway then says :class:`DiskFull`'s sentence, closes the store
and the ledger, and exits with :data:`EXIT_DISK_FULL` (docs/operations.md):
nothing acknowledged is lost, since acks follow durable commits only.

:func:`limit_growth` is a test hook: SQLite's ``PRAGMA max_page_count`` gives
a genuine SQLITE_FULL without filling a real disk.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

__all__ = ["EXIT_DISK_FULL", "HOOK", "DiskFull", "growth_pages", "is_disk_full", "limit_growth"]

EXIT_DISK_FULL = 75  # sysexits EX_TEMPFAIL: free space, then start again
HOOK = "COLDTRACE_TEST_SQLITE_GROWTH"  # the test hook's variable (limit_growth)

_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"
_TEXTS = ("database or disk is full", "no space left on device", "disk quota exceeded")


class DiskFull(Exception):
    """The disk holding ``path`` is full (the operator's message is ``str(exc)``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(f"the disk holding {self.path} is full: free space and start again")


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) says the disk or a quota is full."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, DiskFull):
            return True
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        code = getattr(e, "sqlite_errorcode", None)
        if isinstance(e, sqlite3.Error) and isinstance(code, int) and code & 0xFF == _SQLITE_FULL:
            return True
        if _PG_DISK_FULL in (getattr(e, "sqlstate", None), getattr(e, "pgcode", None)):
            return True
        if isinstance(e, Exception) and any(t in str(e).lower() for t in _TEXTS):
            return True
        orig = getattr(e, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's
        todo += [orig if isinstance(orig, BaseException) else None, e.__cause__, e.__context__]
    return False


def growth_pages(name: str) -> int | None:
    """Test hook: the pages the SQLite file ``name`` may grow by under
    ``COLDTRACE_TEST_SQLITE_GROWTH="gateway.db=40,ledger.db=0"``; None when the
    variable does not name it (always, for operators)."""
    spec = os.environ.get(HOOK)
    if not spec:
        return None
    for part in spec.split(","):
        key, _, pages = part.partition("=")
        if key.strip() == name and pages.strip().isdigit():
            return int(pages)
    return None


def limit_growth(db: sqlite3.Connection, path: Path) -> None:
    """Test hook: with ``COLDTRACE_TEST_SQLITE_GROWTH="gateway.db=40,ledger.db=0"`` in
    the environment, the named SQLite file may grow by at most that many pages
    past its size when opened (``PRAGMA max_page_count``): a genuine SQLITE_FULL
    without filling a disk. Operators never set it."""
    pages = growth_pages(path.name)
    if pages is not None:
        have = int(db.execute("PRAGMA page_count").fetchone()[0])
        db.execute(f"PRAGMA max_page_count = {have + pages}")
