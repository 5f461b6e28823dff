"""Link hellos answered: a stream link's first handshake message, once answered by any process of
the node, is refused as a replay by every process (not only by the one that saw it).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "link_hellos",
        sa.Column("digest", sa.String(64), primary_key=True),  # SHA-256 of the first message, hex
        sa.Column("seen_us", sa.BigInteger, nullable=False),
        sa.Index("ix_link_hellos_seen_us", "seen_us"),
    )


def downgrade() -> None:
    op.drop_table("link_hellos")
