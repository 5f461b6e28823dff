"""Per-source request budgets of unauthenticated callers: fixed-window counters every process shares.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_rate_counters_expires_us", "rate_counters", ["expires_us"])


def downgrade() -> None:
    op.drop_index("ix_rate_counters_expires_us", "rate_counters")
    op.drop_table("rate_counters")
