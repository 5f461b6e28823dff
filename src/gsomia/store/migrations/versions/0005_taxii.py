"""TAXII without deviations: a strictly increasing date-added per item version, and status
resources in the database (every process of a node answers the same, and they survive a restart).

``items.added_us`` is the instant the item's current version was added (its ingest, or its last
label change), unique and strictly increasing in commit order: ``item_clock`` holds the last one
given, and every writer takes it under that row's lock in the transaction that writes the item.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BATCH = 5000


def upgrade() -> None:
    op.add_column("items", sa.Column("added_us", sa.BigInteger, nullable=True))
    conn = op.get_bind()
    last = 0
    after = 0
    while True:  # existing items, in the order they were stored: the same instant or just after the last
        rows = conn.execute(
            sa.text("SELECT seq, ingested_us FROM items WHERE seq > :after ORDER BY seq LIMIT :n"),
            {"after": after, "n": _BATCH},
        ).all()
        if not rows:
            break
        values = []
        for seq, ingested_us in rows:
            last = max(last + 1, int(ingested_us))
            values.append({"seq": seq, "added": last})
            after = seq
        conn.execute(sa.text("UPDATE items SET added_us = :added WHERE seq = :seq"), values)
    op.create_index("ix_items_added", "items", ["added_us"], unique=True)
    op.create_table(
        "item_clock",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("added_us", sa.BigInteger, nullable=False),
    )
    conn.execute(sa.text("INSERT INTO item_clock (id, added_us) VALUES (1, :last)"), {"last": last})
    op.create_table(
        "taxii_statuses",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("collection", sa.String(36), nullable=False),
        sa.Column("requested_us", sa.BigInteger, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("successes", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("details", sa.LargeBinary, nullable=False),  # zlib of compact JSON: ids, versions, reasons
    )
    op.create_index("ix_taxii_statuses_owner", "taxii_statuses", ["owner", "requested_us"])


def downgrade() -> None:
    op.drop_index("ix_taxii_statuses_owner", "taxii_statuses")
    op.drop_table("taxii_statuses")
    op.drop_table("item_clock")
    op.drop_index("ix_items_added", "items")
    op.drop_column("items", "added_us")
