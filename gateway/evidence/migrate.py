"""Create or upgrade the gateway database: Alembic, plus the pre-Alembic SQLite steps.

:func:`upgrade` brings a database to Alembic's head revision
(gateway/evidence/migrations), in one transaction that excludes other
writers: ``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on
PostgreSQL (so that several processes opening one database at once, such as
a gateway fleet starting, migrate it once).

Databases made before Alembic (SQLite only, ``meta.schema`` 1 to 5, no
``alembic_version`` table) are first brought to version 4 as the old code
did - the missing tables, the scans of version 2, the triggers of versions 3
and 4 - and stamped with revision 0001, which is version 4 (a version-5
database: 0002, which is version 5); Alembic then takes them to the head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event, inspect, text

from gateway.evidence.schema import V4_TABLES, append_only_ddl, metadata

__all__ = ["LEGACY_VERSION", "SchemaError", "upgrade"]

_MIGRATIONS = Path(__file__).parent / "migrations"
LEGACY_VERSION = 5  # the last ``meta.schema`` version before Alembic (= revision 0002)
_STAMP = {4: "0001", 5: "0002"}  # the revision a pre-Alembic version is
_LOCK_KEY = 0x436F6C6454  # pg_advisory_xact_lock key: "ColdT"


class SchemaError(RuntimeError):
    """The database's schema is newer than this gateway's, or unknown."""


def _sqlite_immediate(engine: Engine) -> None:
    """Let SQLAlchemy's BEGIN be SQLite's BEGIN IMMEDIATE (the pysqlite recipe)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(engine: Engine, *, schema: str | None = None) -> None:
    """Bring the database (PostgreSQL: ``schema``, created if missing) to the head revision."""
    from alembic import command
    from alembic.config import Config
    from alembic.util.exc import CommandError

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            if schema:
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        cfg.attributes["connection"] = conn
        try:
            legacy = _legacy(conn)
            if legacy is not None:
                command.stamp(cfg, legacy)
            command.upgrade(cfg, "head")
        except CommandError as exc:  # e.g. a revision this gateway does not know
            raise SchemaError(
                f"the gateway database was made by a newer gateway ({exc}); upgrade the gateway"
            ) from None


def _legacy(conn: Connection) -> str | None:
    """Bring a pre-Alembic SQLite database to version 4 (or leave it at 5) and return
    the revision to stamp it with; None if it is not one."""
    tables = set(inspect(conn).get_table_names())
    if "meta" not in tables or "alembic_version" in tables:
        return None
    row = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    have = int(row[0]) if row is not None else 1
    if have > LEGACY_VERSION:
        raise SchemaError(
            f"schema version {have} is newer than this gateway's ({LEGACY_VERSION});"
            " upgrade the gateway"
        )
    metadata.create_all(conn, tables=[metadata.tables[n] for n in V4_TABLES], checkfirst=True)
    if have < 2:
        _index_scans(conn)
    for ddl in append_only_ddl("sqlite", replace=True):  # versions 3 and 4
        conn.exec_driver_sql(ddl)
    have = max(have, 4)
    conn.exec_driver_sql(
        "INSERT INTO meta (key, value) VALUES ('schema', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(have),),
    )
    return _STAMP[have]


def _index_scans(conn: Connection) -> None:
    """Version 2: the scans of the records already stored. Version-1 registrations
    carried a place (field 44), which version 2 refuses; the column is emptied
    (where a device watches is a binding now). Nothing was deployed with version 1."""
    from protocol.cose import parse_sign1
    from protocol.errors import VerificationError
    from protocol.record import Scan, decode_payload

    conn.exec_driver_sql("UPDATE devices SET place = NULL")
    rows = conn.exec_driver_sql("SELECT leaf, raw FROM records WHERE kind = 2").fetchall()
    for leaf, raw in rows:
        try:
            p = decode_payload(parse_sign1(bytes(raw)).payload)
        except VerificationError:
            continue
        if isinstance(p, Scan):
            conn.exec_driver_sql(
                "INSERT OR IGNORE INTO scans VALUES (?,?,?,?)", (leaf, p.uid, p.action, p.item)
            )
