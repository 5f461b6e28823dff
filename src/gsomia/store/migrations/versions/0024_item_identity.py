"""An item is (originator, id) (issue 22 §4): the id its originator gave it, unique per originator.

``items.id`` stays the node's reference for the item (unique here; every table that names an item
names it by that). ``origin_id`` is the id the originator signed: equal to the reference, except for
an item that arrived under an id another originator's item already held here, whose reference is
then ``ORIGINATOR:id``. Existing items keep their id as both.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("origin_id", sa.String(128), nullable=True))
    op.execute("UPDATE items SET origin_id = id")
    op.create_index("ux_items_origin", "items", ["origin_id", "originator"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_items_origin", table_name="items")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("origin_id")
