"""Heads partners gossip about each other, pending a proof, and the forks they show, kept as evidence.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "gossip_heads",
        sa.Column("party", sa.String(3), primary_key=True),
        sa.Column("size", sa.BigInteger, primary_key=True),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
        sa.Column("via", sa.String(3), nullable=False),
        sa.Column("received_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_gossip_heads_via", "gossip_heads", ["via"])
    op.create_table(
        "fork_evidence",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("party", sa.String(3), nullable=False),
        sa.Column("pair", sa.String(64), nullable=False, unique=True),
        sa.Column("first_size", sa.BigInteger, nullable=False),
        sa.Column("first_root", sa.LargeBinary, nullable=False),
        sa.Column("first_jws", sa.Text, nullable=False),
        sa.Column("second_size", sa.BigInteger, nullable=False),
        sa.Column("second_root", sa.LargeBinary, nullable=False),
        sa.Column("second_jws", sa.Text, nullable=False),
        sa.Column("shown_by", sa.String(3), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("found_us", sa.BigInteger, nullable=False),
        sa.Column("acknowledged_us", sa.BigInteger),
        sa.Column("acknowledged_by", sa.String(128)),
        sa.Column("note", sa.Text),
    )
    op.create_index("ix_fork_evidence_party", "fork_evidence", ["party", "acknowledged_us"])


def downgrade() -> None:
    op.drop_index("ix_fork_evidence_party", "fork_evidence")
    op.drop_table("fork_evidence")
    op.drop_index("ix_gossip_heads_via", "gossip_heads")
    op.drop_table("gossip_heads")
