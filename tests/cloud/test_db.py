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
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0001"
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
