"""Leases: the background work of a node (delivering the outbox, integrating the audit log,
sharing tree heads) is held by one process at a time through a row here, taken over by another
process when its holder stops renewing it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(160), nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),  # moves on with every new holder: a fence
        sa.Column("acquired_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
