"""EVM anchor contracts pinned per organisation (docs/evm.md, the EVM ledger).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evm_ledgers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("contract", sa.String(42), nullable=False),
        sa.UniqueConstraint("chain_id", "contract"),
    )


def downgrade() -> None:
    op.drop_table("evm_ledgers")
