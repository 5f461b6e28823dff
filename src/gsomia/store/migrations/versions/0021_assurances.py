"""The recipients' assurances before provision (Art. 7(5)): signed, dated, revocable.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assurances",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("agreement", sa.String(64), nullable=False),
        sa.Column("party", sa.String(3), nullable=False),
        sa.Column("given_us", sa.BigInteger, nullable=False),
        sa.Column("reference", sa.Text, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
        sa.Column("revoked_us", sa.BigInteger),
        sa.Column("revocation", sa.Text),
    )
    op.create_index("ix_assurances_agreement", "assurances", ["agreement", "party"])


def downgrade() -> None:
    op.drop_index("ix_assurances_agreement", table_name="assurances")
    op.drop_table("assurances")
