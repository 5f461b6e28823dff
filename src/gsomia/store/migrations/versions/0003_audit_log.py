"""The tamper-evident audit log: leaf hashes and entry ids on audit records, tree nodes, signed heads.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("entry_id", sa.String(32)))
        batch.add_column(sa.Column("leaf_index", sa.BigInteger))
        batch.add_column(sa.Column("leaf", sa.LargeBinary))
        batch.create_unique_constraint("uq_audit_records_entry_id", ["entry_id"])
        batch.create_unique_constraint("uq_audit_records_leaf_index", ["leaf_index"])
    # records written before the log existed get an id derived from their sequence number
    op.execute(
        "UPDATE audit_records SET entry_id = 'legacy-' || CAST(seq AS VARCHAR(24)) WHERE entry_id IS NULL"
    )
    op.create_index(
        "ix_audit_unintegrated",
        "audit_records",
        ["seq"],
        sqlite_where=sa.text("leaf_index IS NULL"),
        postgresql_where=sa.text("leaf_index IS NULL"),
    )
    op.create_table(
        "merkle_nodes",
        sa.Column("level", sa.Integer, primary_key=True),
        sa.Column("idx", sa.BigInteger, primary_key=True),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "tree_heads",
        sa.Column("size", sa.BigInteger, primary_key=True),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
    )
    op.create_table(
        "partner_heads",
        sa.Column("party", sa.String(3), primary_key=True),
        sa.Column("size", sa.BigInteger, primary_key=True),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
        sa.Column("received_us", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text),
    )


def downgrade() -> None:
    for table in ("partner_heads", "tree_heads", "merkle_nodes"):
        op.drop_table(table)
    op.drop_index("ix_audit_unintegrated", "audit_records")
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_constraint("uq_audit_records_leaf_index", type_="unique")
        batch.drop_constraint("uq_audit_records_entry_id", type_="unique")
        batch.drop_column("leaf")
        batch.drop_column("leaf_index")
        batch.drop_column("entry_id")
