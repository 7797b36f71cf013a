"""Which store errors mean "the PostgreSQL server is gone for now" (docs/decisions.md D38).

The gateway waits out exactly those (gateway/service.py ``run``); anything
else still stops it. The end-to-end case - PostgreSQL restarted twice under
a running gateway - is in tests/reliability/test_gateway_faults.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from gateway.evidence.store import (
    SqlStore,
    StoreError,
    StoreUnavailable,
    connection_lost,
    sqlite_url,
)
from gateway.transport.broker import free_port


def test_a_refused_postgresql_connection_at_open_is_unavailable() -> None:
    url = f"postgresql+psycopg://coldtrace@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(StoreUnavailable, match="cannot open the gateway database") as err:
        SqlStore(url, schema="gw")
    assert connection_lost(err.value)


def test_an_unopenable_sqlite_file_is_not_an_outage(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()  # a directory where the file should be
    with pytest.raises(StoreError) as err:
        SqlStore(sqlite_url(tmp_path / "dir.db"))
    assert not isinstance(err.value, StoreUnavailable) and not connection_lost(err.value)


def test_driver_errors_lost_connection_or_not() -> None:
    gone = psycopg.OperationalError("server closed the connection unexpectedly")
    assert connection_lost(gone)
    assert connection_lost(OperationalError("COMMIT", {}, gone))
    try:  # raised while handling it (e.g. ROLLBACK after the failed batch)
        try:
            raise gone
        except psycopg.OperationalError:
            raise RuntimeError("abort failed") from None
    except RuntimeError as exc:
        assert not connection_lost(exc)  # "from None": the cause is hidden on purpose
    try:
        try:
            raise gone
        except psycopg.OperationalError as exc:
            raise RuntimeError("abort failed") from exc
    except RuntimeError as exc:
        assert connection_lost(exc)
    assert not connection_lost(OperationalError("x", {}, sqlite3.OperationalError("locked")))
    assert not connection_lost(IntegrityError("x", {}, psycopg.IntegrityError("dup")))
    assert not connection_lost(ValueError("x"))
