"""A release decision shared by many outbox rows stored once (issue 18): an officer's selection of
1,000 items is decided once for the items whose requests differ only in the item's id, and each of
their outbox rows held the same ~1.4 KB decision text. The text now goes once in ``decisions`` under
its SHA-256, named by each row's ``decision_id`` (its own ``decision`` then empty), as batch receipts
are (0025). Rows with a decision of their own keep it in ``decision`` as before; every reader gets
the text either way.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("decision", sa.Text, nullable=False),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("decision_id", sa.String(64), nullable=True))


def downgrade() -> None:
    # the shared texts back into their rows first: nothing a row was released under is lost
    op.execute(
        "UPDATE outbox SET decision = (SELECT d.decision FROM decisions d WHERE d.id = outbox.decision_id) "
        "WHERE decision_id IS NOT NULL"
    )
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("decision_id")
    op.drop_table("decisions")
