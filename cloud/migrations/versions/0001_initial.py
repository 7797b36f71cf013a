"""The first schema of the cloud database.

Revision ID: 0001
Revises:

The initial revision creates the tables of cloud/db.py as they are at this
revision. A later change to the schema gets its own revision with explicit
operations (op.add_column ...), never an edit here (docs/decisions.md D20).
"""

from alembic import op

from cloud.db import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
