"""Federation: peers, outbox, inbox, consents, consent requests; the originator's signature on items.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("origin_jws", sa.LargeBinary))
    op.create_table(
        "peers",
        sa.Column("party", sa.String(3), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("agreements", sa.Text, nullable=False),
        sa.Column("registered_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("msg_id", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(128)),
        sa.Column("recipient", sa.String(3), nullable=False),
        sa.Column("final_recipient", sa.String(3), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("receipt", sa.Text),
    )
    op.create_index("ix_outbox_due", "outbox", ["state", "next_attempt_us"])
    op.create_table(
        "inbox",
        sa.Column("msg_id", sa.String(64), primary_key=True),
        sa.Column("sender", sa.String(3), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(128)),
        sa.Column("received_us", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("receipt", sa.Text, nullable=False),
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("originator", sa.String(3), nullable=False),
        sa.Column("recipient", sa.String(3), nullable=False),
        sa.Column("item_id", sa.String(128)),
        sa.Column("holder", sa.String(3)),
        sa.Column("hub", sa.String(3)),
        sa.Column("given_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger),
        sa.Column("reference", sa.Text, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
    )
    op.create_index("ix_consents_item", "consents", ["originator", "item_id"])
    op.create_table(
        "consent_requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("originator", sa.String(3), nullable=False),
        sa.Column("holder", sa.String(3), nullable=False),
        sa.Column("third_party", sa.String(3), nullable=False),
        sa.Column("purpose", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("decided_us", sa.BigInteger),
        sa.Column("decided_by", sa.String(128)),
        sa.Column("answer", sa.Text),
    )


def downgrade() -> None:
    for table in ("consent_requests", "consents", "inbox", "outbox", "peers"):
        op.drop_table(table)
    with op.batch_alter_table("items") as batch:
        batch.drop_column("origin_jws")
