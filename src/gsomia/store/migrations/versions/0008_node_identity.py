"""A database belongs to one node: the node's identity is recorded in it on first start.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_identity",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1: one node
        sa.Column("party", sa.String(3), nullable=False),
        sa.Column("identity", sa.String(64), nullable=False),
        sa.Column("claimed_us", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_node_identity_one_row"),
    )


def downgrade() -> None:
    op.drop_table("node_identity")
