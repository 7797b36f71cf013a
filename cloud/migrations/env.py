"""Alembic environment for the cloud database (run by cloud.db.upgrade)."""

from __future__ import annotations

from alembic import context

from cloud.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only cloud.db.upgrade runs migrations
    raise RuntimeError("run migrations through cloud.db.upgrade (coldtrace cloud migrate)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
