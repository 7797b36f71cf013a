"""The cloud's schema: Alembic brings an empty database to the head revision on SQLite and
on a real PostgreSQL, again without harm, and the result is exactly cloud/db.py's tables."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from cloud import db
from tests.cloud.cloudkit import OPEN


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "cloud.db")


def test_migrations_create_the_schema_of_the_code(url: str) -> None:
    engine = db.connect(url)
    OPEN.append(engine)
    db.upgrade(engine)  # a second time: nothing to do
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0003"
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []
    tables = set(inspect(engine).get_table_names())
    assert set(db.metadata.tables) <= tables


def test_the_same_statements_run_on_both_engines(url: str) -> None:
    from cloud import orgs

    engine = db.connect(url)
    OPEN.append(engine)
    with engine.begin() as conn:
        orgs.add_org(conn, None, "acme", "Acme")
        _, token = orgs.new_token(conn, None, "acme", ["read"])
    with engine.connect() as conn:
        who = orgs.authenticate(conn, token)
        assert who is not None and who.org == "acme" and who.scopes == {"read"}
        assert orgs.authenticate(conn, token + "x") is None
        assert orgs.authenticate(conn, "not a token") is None


def test_a_database_at_0001_upgrades_to_the_tags_table(url: str) -> None:
    """0001 keeps meaning the first schema (no ``tags``); 0002 adds it, 0003 the EVM
    ledgers, and the result is cloud/db.py's tables exactly."""
    from alembic import command
    from alembic.config import Config

    engine = db.connect(url, migrate=False)
    OPEN.append(engine)
    cfg = Config()
    cfg.set_main_option("script_location", str(db._MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    tables = set(inspect(engine).get_table_names())
    assert "orgs" in tables and "tags" not in tables
    db.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0003"
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
    assert {"tags", "evm_ledgers"} <= set(inspect(engine).get_table_names())
