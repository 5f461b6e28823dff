"""The duties after release: versioned labels and item state, copies' sources, label changes and
acknowledgements, destruction records, loss/compromise investigations, visits, registers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "items", sa.Column("label_version", sa.Integer, nullable=False, server_default=sa.text("1"))
    )
    op.add_column(
        "items", sa.Column("state", sa.String(16), nullable=False, server_default=sa.text("'held'"))
    )
    op.create_table(
        "item_sources",
        sa.Column("item_seq", _SEQ, sa.ForeignKey("items.seq"), primary_key=True),
        sa.Column("source_id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
    )
    op.create_index("ix_item_sources_source", "item_sources", ["source_id"])
    op.create_table(
        "label_changes",
        sa.Column("item_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("classification", sa.String(64)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
        sa.Column("applied_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "label_acks",
        sa.Column("item_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("party", sa.String(3), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at_us", sa.BigInteger),
        sa.Column("detail", sa.Text),
    )
    op.create_table(
        "destructions",
        sa.Column("item_id", sa.String(128), primary_key=True),
        sa.Column("holder", sa.String(3), primary_key=True),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("witness", sa.String(128), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
        sa.Column("sent_us", sa.BigInteger),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("originator", sa.String(3), nullable=False),
        sa.Column("holder", sa.String(3), nullable=False),
        sa.Column("nature", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("steps", sa.Text, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "visits",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("person_id", sa.String(128), sa.ForeignKey("people.id"), nullable=False),
        sa.Column("highest", sa.String(64), nullable=False),
        sa.Column("starts_us", sa.BigInteger, nullable=False),
        sa.Column("ends_us", sa.BigInteger, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("authorised_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_visits_person", "visits", ["person_id"])
    op.create_table(
        "authorities",
        sa.Column("party", sa.String(3), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("function", sa.Text, nullable=False),
        sa.Column("recorded_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "national_rules",
        sa.Column("party", sa.String(3), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("levels", sa.Text, nullable=False),
        sa.Column("effective_us", sa.BigInteger, nullable=False),
        sa.Column("recorded_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "item_flags",
        sa.Column("item_id", sa.String(128), primary_key=True),
        sa.Column("party", sa.String(3), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "item_flags",
        "national_rules",
        "authorities",
        "visits",
        "incidents",
        "destructions",
        "label_acks",
        "label_changes",
        "item_sources",
    ):
        op.drop_table(table)
    with op.batch_alter_table("items") as batch:
        batch.drop_column("state")
        batch.drop_column("label_version")
