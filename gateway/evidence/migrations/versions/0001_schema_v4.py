"""The gateway database as schema version 4 left it (the last pre-Alembic version).

Revision ID: 0001
Revises:

Creates the tables of gateway/evidence/schema.py named in ``V4_TABLES``, the
append-only triggers of the dialect, and ``meta.schema = 4``. A database made
by the old code (``meta.schema`` 1-4, no ``alembic_version``) is brought to
version 4 by gateway/evidence/migrate.py and stamped with this revision. A
later change gets its own revision, never an edit here (docs/decisions.md D27).
"""

from alembic import op

from gateway.evidence.schema import V4_TABLES, append_only_ddl, metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    metadata.create_all(bind, tables=[metadata.tables[n] for n in V4_TABLES])
    for ddl in append_only_ddl(bind.dialect.name):
        op.execute(ddl)
    op.execute("INSERT INTO meta (key, value) VALUES ('schema', '4')")


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=[metadata.tables[n] for n in V4_TABLES])
