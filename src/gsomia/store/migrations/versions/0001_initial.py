"""The node's first schema: items, topics, inventory, people, tokens, audit records.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(128), nullable=False, unique=True),
        sa.Column("originator", sa.String(3), nullable=False),
        sa.Column("classification", sa.String(64), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("received_from", sa.String(3)),
        sa.Column("agreement", sa.String(128)),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("ingested_us", sa.BigInteger, nullable=False),
        sa.Column("ingested_by", sa.String(128), nullable=False),
        sa.Column("payload_type", sa.String(16), nullable=False),
        sa.Column("payload_size", sa.Integer, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_items_originator_seq", "items", ["originator", "seq"])
    op.create_index("ix_items_classification_seq", "items", ["classification", "seq"])
    op.create_index("ix_items_received_from_seq", "items", ["received_from", "seq"])
    op.create_index("ix_items_created_seq", "items", ["created_us", "seq"])
    op.create_table(
        "item_topics",
        sa.Column("topic", sa.String(128), primary_key=True),
        sa.Column("item_seq", SEQ, sa.ForeignKey("items.seq"), primary_key=True),
    )
    op.create_table(
        "inventory",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("item_seq", SEQ, sa.ForeignKey("items.seq"), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("party", sa.String(3)),
        sa.Column("actor", sa.String(128)),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_inventory_item", "inventory", ["item_seq", "seq"])
    op.create_table(
        "people",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("person_id", sa.String(128), sa.ForeignKey("people.id"), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_us", sa.BigInteger),
    )
    op.create_table(
        "audit_records",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128)),
        sa.Column("subject", sa.String(256)),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_kind_seq", "audit_records", ["kind", "seq"])
    op.create_table(
        "node_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("node_meta", "audit_records", "tokens", "people", "inventory", "item_topics", "items"):
        op.drop_table(table)
