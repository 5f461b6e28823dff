"""The envelope versions this node opens, per partner: the JOSE hop (``gsomia-envelope/1``) stops being
opened from a partner once an envelope of its in COSE has opened, or from every partner after an
instant an administrator sets (``gsomia peer envelopes``). Kept in the store so every process of the
node refuses the same envelopes.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "envelope_versions",
        sa.Column("party", sa.String(8), primary_key=True),
        sa.Column("lowest", sa.Integer, nullable=False),
        sa.Column("since_us", sa.BigInteger, nullable=False),
        sa.Column("pending", sa.Integer, nullable=False),
        sa.Column("cause", sa.String(8), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("envelope_versions")
