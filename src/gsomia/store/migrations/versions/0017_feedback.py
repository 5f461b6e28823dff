"""A holder's feedback to the originator about an item, kept at both ends with its signature.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("holder", sa.String(3), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("originator", sa.String(3), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("cites", sa.Text, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
        sa.Column("recorded_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_feedback_item", "feedback", ["item_id", "holder"])


def downgrade() -> None:
    op.drop_index("ix_feedback_item", table_name="feedback")
    op.drop_table("feedback")
