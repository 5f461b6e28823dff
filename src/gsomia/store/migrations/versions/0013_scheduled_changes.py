"""Scheduled downgrades: the originator's declared label changes that apply themselves when due.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduled_changes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("classification", sa.String(64), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("scheduled_by", sa.String(128), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("done_us", sa.BigInteger),
        sa.Column("note", sa.Text),
    )
    op.create_index("ix_scheduled_changes_due", "scheduled_changes", ["state", "at_us"])


def downgrade() -> None:
    op.drop_index("ix_scheduled_changes_due", "scheduled_changes")
    op.drop_table("scheduled_changes")
