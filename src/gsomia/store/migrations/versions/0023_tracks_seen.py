"""The track updates a node received, by identity, so an update sent again under a new signature
(a stream link's new holder resending what the dead one had not confirmed) is kept once.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tracks_seen",
        sa.Column("track", sa.String(64), primary_key=True),
        sa.Column("originator", sa.String(3), nullable=False),
        sa.Column("seen_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_tracks_seen_seen_us", "tracks_seen", ["seen_us"])


def downgrade() -> None:
    op.drop_index("ix_tracks_seen_seen_us", table_name="tracks_seen")
    op.drop_table("tracks_seen")
