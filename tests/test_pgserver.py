"""The PostgreSQL test fixtures: a real server, a fresh empty database per test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.pgserver import PgServer, PgServerError

_seen: dict[str, str] = {}


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_real_postgresql(pg_url: str) -> None:
    assert pg_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("SELECT version()")).scalar_one()
            encoding = conn.execute(sa.text("SHOW server_encoding")).scalar_one()
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()
    assert version.startswith("PostgreSQL"), version
    assert encoding == "UTF8"


def test_create_insert_select(pg_url: str) -> None:
    meta = sa.MetaData()
    t = sa.Table(
        "reading",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("temp_c", sa.Numeric(5, 2), nullable=False),
    )
    engine = sa.create_engine(pg_url)
    try:
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                t.insert(), [{"device": "d1", "temp_c": "4.25"}, {"device": "d2", "temp_c": "-18"}]
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.device, t.c.temp_c).order_by(t.c.id)).all()
    finally:
        engine.dispose()
    assert [(r.device, str(r.temp_c)) for r in rows] == [("d1", "4.25"), ("d2", "-18.00")]


@pytest.mark.parametrize("n", [1, 2])
def test_each_test_gets_a_fresh_empty_database(pg_url: str, n: int) -> None:
    assert _tables(pg_url) == []
    assert pg_url not in _seen.values()
    _seen[str(n)] = pg_url
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE leftover (x int)"))
    finally:
        engine.dispose()
    if n == 2:
        assert _seen["1"] != _seen["2"]


def test_new_database_and_drop(pg_server: PgServer) -> None:
    url = pg_server.new_database("explicit_db")
    assert url.endswith(f"127.0.0.1:{pg_server.port}/explicit_db")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "explicit_db"
        # Dropping closes connections still open to the database.
        held = engine.connect()
        pg_server.drop_database("explicit_db")
        held.invalidate()
        held.close()
    finally:
        engine.dispose()
    with pytest.raises(ValueError):
        pg_server.new_database("bad name; drop")


def test_own_server_starts_and_cleans_up() -> None:
    with PgServer(dbname="own") as pg:
        base = pg.base
        assert base is not None and (base / "data" / "PG_VERSION").is_file()
        assert pg.url.endswith("/own")
        engine = sa.create_engine(pg.url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        finally:
            engine.dispose()
    assert not base.exists()
    assert not pg.running
    with pytest.raises(PgServerError):
        _ = pg.url


def test_missing_binaries_error_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDTRACE_PG_BINDIR", str(tmp_path))
    with pytest.raises(PgServerError, match="lacks initdb, pg_ctl, postgres"):
        PgServer().start()


def test_failed_start_cleans_up_and_shows_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    pg = PgServer()
    real = PgServer._write_conf

    def broken(self: PgServer, port: int) -> None:
        real(self, port)
        with open(self.datadir / "coldtrace-test.conf", "a", encoding="utf-8") as f:
            f.write("no_such_setting_xyz = 1\n")

    monkeypatch.setattr(PgServer, "_write_conf", broken)
    seen: list[Path] = []
    monkeypatch.setattr(PgServer, "_initdb", _spy(PgServer._initdb, seen))
    with pytest.raises(PgServerError, match="no_such_setting_xyz"):
        pg.start()
    assert seen and not seen[0].exists()
    assert pg.base is None and not pg.running


def _spy(fn: Any, seen: list[Path]) -> Any:
    def wrapped(self: PgServer, bindir: Path) -> None:
        assert self.base is not None
        seen.append(self.base)
        fn(self, bindir)

    return wrapped
