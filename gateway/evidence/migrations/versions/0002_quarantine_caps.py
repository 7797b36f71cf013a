"""The quarantine's caps (schema version 5, docs/decisions.md D29).

Revision ID: 0002
Revises: 0001

``quarantine.size`` (the full length of a message whose raw bytes were cut;
NULL: whole), the tables ``quarantine_dropped`` (refusals counted, not
stored) and ``released`` (quarantined messages sent back to ingest), and
``meta.schema = 5``. Revision 0001 creates ``quarantine`` from the current
table description, which already has ``size``: the column is added only
where it is missing (a database made at revision 0001 by an older gateway).
"""

import sqlalchemy as sa
from alembic import op

from gateway.evidence.schema import V5_TABLES, Int, metadata

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    columns = {c["name"] for c in sa.inspect(bind).get_columns("quarantine")}
    if "size" not in columns:
        op.add_column("quarantine", sa.Column("size", Int, nullable=True))
    metadata.create_all(bind, tables=[metadata.tables[n] for n in V5_TABLES], checkfirst=True)
    op.execute("UPDATE meta SET value = '5' WHERE key = 'schema'")


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=[metadata.tables[n] for n in V5_TABLES])
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("size")
