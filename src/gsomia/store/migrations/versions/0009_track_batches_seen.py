"""The leaves of originator-signed track batches received, so a relayed batch cannot be replayed.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "track_batches_seen",
        sa.Column("batch", sa.String(64), primary_key=True),
        sa.Column("leaf", sa.Integer, primary_key=True),
        sa.Column("originator", sa.String(3), nullable=False),
        sa.Column("seen_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_track_batches_seen_seen_us", "track_batches_seen", ["seen_us"])


def downgrade() -> None:
    op.drop_index("ix_track_batches_seen_seen_us", table_name="track_batches_seen")
    op.drop_table("track_batches_seen")
