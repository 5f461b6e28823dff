"""One signed receipt for a batch envelope (issue 18): stored once in ``receipts`` under its SHA-256,
named by each inbox and outbox row it acknowledges (``receipt_id``), instead of the same receipt
copied into every row. Rows with a receipt of their own keep it in ``receipt`` as before.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "receipts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("receipt", sa.Text, nullable=False),
    )
    with op.batch_alter_table("inbox") as batch:
        batch.add_column(sa.Column("receipt_id", sa.String(64), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("receipt_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("receipt_id")
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("receipt_id")
    op.drop_table("receipts")
