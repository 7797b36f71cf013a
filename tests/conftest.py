"""Fixtures shared by all tests: a real PostgreSQL server and a real EVM node on loopback.

``pg_server`` (session): one ``tests.pgserver.PgServer`` started on first use
and stopped, with its temporary directory removed, at the end of the session.
``pg_url`` (function): the SQLAlchemy URL (``postgresql+psycopg://...``) of a
fresh, empty database on that server, dropped after the test.

``anvil`` (function): a fresh Anvil node (tests/anvil.py) on loopback.

Missing PostgreSQL or Anvil fails the tests that use these fixtures, never
skips them: the real server is part of what they test (``make system``
installs them).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest

from demo.anvil import Anvil, AnvilError
from tests.pgserver import PgServer, PgServerError

_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer()
    try:
        server.start()
    except PgServerError as e:
        pytest.fail(f"PostgreSQL test server: {e}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower()).strip("_")
    name = f"t{next(_db_counter)}_{slug}"[:63]
    url = pg_server.new_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anvil]:
    """A fresh Anvil node (automine, chain id 31337) on loopback, stopped after the test."""
    node = Anvil(state=tmp_path_factory.mktemp("anvil") / "state.json")
    try:
        node.start()
    except AnvilError as e:
        pytest.fail(f"Anvil test node: {e}", pytrace=False)
    try:
        yield node
    finally:
        node.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Full-size variants (``@pytest.mark.soak``) run only under ``make soak``."""
    from tests.soak import SOAK

    if SOAK:
        return
    skip = pytest.mark.skip(reason="full-size variant: run by make soak (COLDTRACE_SOAK=1)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
