"""Alembic environment for the gateway database (run by gateway.evidence.migrate.upgrade)."""

from __future__ import annotations

from alembic import context

from gateway.evidence.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only gateway.evidence.migrate runs migrations
    raise RuntimeError("run migrations through gateway.evidence.migrate.upgrade")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
