"""The first schema of the cloud database.

Revision ID: 0001
Revises:

The initial revision creates the tables of cloud/db.py as they were at this
revision (``V1_TABLES``, by name: later tables are their own revisions'). A
later change to the schema gets its own revision with explicit operations
(op.create_table, op.add_column ...), never an edit here (docs/decisions.md D20).
"""

from alembic import op

from cloud.db import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

V1_TABLES = (
    "orgs",
    "tokens",
    "logs",
    "registries",
    "ledgers",
    "witness_keys",
    "records",
    "checkpoints",
    "cosignatures",
    "anchors",
    "alarms",
    "rejected",
    "audit",
)


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=[metadata.tables[n] for n in V1_TABLES])


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=[metadata.tables[n] for n in V1_TABLES])
