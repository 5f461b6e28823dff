"""State every process of a node shares: the node's key ring in the store (sealed under the node
key), and a generation counter per kind of shared state (the key ring, the peers) that a writer
bumps in the same transaction, so every process notices a change within a fraction of a second.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generations",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.get_bind().execute(sa.text("INSERT INTO generations (name, value) VALUES ('keys', 0), ('peers', 0)"))
    op.create_table(
        "key_ring",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_ring")
    op.drop_table("generations")
