"""A TAXII page of a party's collection (``originator = ?`` ordered by date-added) walks an index in
that order instead of sorting every item of the party: ``(originator, added_us)`` (issue 18). Without
it a first page at 100,000 items sorted all 100,000 (SQLite's plan: ix_items_originator_seq, then a
temporary B-tree for the ORDER BY), and the page's time grew with the store.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_originator_added", "items", ["originator", "added_us"])


def downgrade() -> None:
    op.drop_index("ix_items_originator_added", table_name="items")
