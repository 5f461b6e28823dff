"""Two-person release: the node's policy and the releases waiting for a second officer.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "release_policy",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_release_policy_one_row"),
    )
    op.create_table(
        "release_requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("requester", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("requested_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
        sa.Column("decided_by", sa.String(128)),
        sa.Column("decided_us", sa.BigInteger),
        sa.Column("approval", sa.Text),
        sa.Column("note", sa.Text),
        sa.Column("msg_id", sa.String(64)),
    )
    op.create_index("ix_release_requests_state", "release_requests", ["state", "requested_us"])


def downgrade() -> None:
    op.drop_index("ix_release_requests_state", "release_requests")
    op.drop_table("release_requests")
    op.drop_table("release_policy")
