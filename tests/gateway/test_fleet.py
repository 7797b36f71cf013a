"""A gateway fleet's configuration (docs/decisions.md D28): PostgreSQL only, one schema each.

The fleet at work - two instances as processes with a shared subscription,
one killed with ``kill -9`` mid-stream and restarted, every record stored
exactly once in one of the two logs - is a scenario of the fault suite:
tests/reliability/test_gateway_faults.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.evidence.store import StoreError


def test_a_fleet_needs_postgresql_and_its_own_schema(tmp_path: Path, make_broker) -> None:
    from tests.gateway.env import create_gateway_dir

    broker = make_broker([])
    with pytest.raises(ConfigError, match="needs the store on PostgreSQL"):
        create_gateway_dir(
            tmp_path / "x",
            broker,
            sections={"fleet": {"shared_schema": "fleet"}, "mqtt": {"share_group": "g"}},
        )
    env = create_gateway_dir(tmp_path / "y", broker)
    toml = (env.dir / "gateway.toml").read_text()
    (env.dir / "gateway.toml").write_text(
        toml + '\n[store]\nurl = "postgresql://gw@127.0.0.1/x"\nschema = "fleet"\n'
        '\n[fleet]\nshared_schema = "fleet"\n'
    )
    with pytest.raises(ConfigError, match="own \\[store\\] schema"):
        load_config(env.dir / "gateway.toml")


def test_the_fleet_store_refuses_sqlite(tmp_path: Path) -> None:
    from gateway.evidence.fleet import FleetStore
    from gateway.evidence.store import sqlite_url

    with pytest.raises(StoreError, match="PostgreSQL only"):
        FleetStore(sqlite_url(tmp_path / "g.db"), schema="a", shared_schema="f", origin="o")
