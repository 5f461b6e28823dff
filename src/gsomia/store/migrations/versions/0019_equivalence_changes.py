"""Equivalence changes: a party's signed update of its side of an agreement's equivalence table.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "equivalence_changes",
        sa.Column("agreement", sa.String(128), primary_key=True),
        sa.Column("party", sa.String(8), primary_key=True),
        sa.Column("sequence", sa.BigInteger, primary_key=True),
        sa.Column("effective_us", sa.BigInteger, nullable=False),
        sa.Column("applies_us", sa.BigInteger, nullable=False),
        sa.Column("change", sa.Text, nullable=False),
        sa.Column("proposed_by", sa.String(128)),
        sa.Column("received_from", sa.String(8)),
        sa.Column("recorded_us", sa.BigInteger, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("equivalence_changes")
