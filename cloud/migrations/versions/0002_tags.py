"""NTAG 424 DNA tags (cloud/tags.py, docs/cloud.md "Tags: NTAG 424 DNA SUN").

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uid", sa.LargeBinary(10), nullable=False),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("item", sa.String(128), nullable=False),
        sa.Column("sealed_keys", sa.LargeBinary(), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=True),
        sa.Column("last_seen", sa.BigInteger(), nullable=True),
        sa.Column("commissioned", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("uid"),
    )


def downgrade() -> None:
    op.drop_table("tags")
