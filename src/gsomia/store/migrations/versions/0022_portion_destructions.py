"""A holder's destruction of one portion of an item in portions (issue 20 §2, Art. 13): its signed
record, kept by the holder and by the originator.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portion_destructions",
        sa.Column("item_id", sa.String(128), primary_key=True),
        sa.Column("portion", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(3), primary_key=True),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("witness", sa.String(128), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
        sa.Column("sent_us", sa.BigInteger),
    )


def downgrade() -> None:
    op.drop_table("portion_destructions")
