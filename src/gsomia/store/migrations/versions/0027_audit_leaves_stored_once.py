"""A leaf's hash is stored once, with its record (``audit_records.leaf``), not again as a level-0 row
of ``merkle_nodes`` (issue 18): the writer inserted two node rows a record where one is needed, and
proofs read a leaf by the records' unique ``leaf_index`` as they read a subtree by its key.

Only a level-0 row equal to its record's leaf hash is removed: one that differs (or has no record)
stays, and ``AuditLog.verify`` reports it, as it reported such a row before. Downgrade puts every
integrated record's leaf hash back as a level-0 row.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM merkle_nodes WHERE level = 0 AND EXISTS (SELECT 1 FROM audit_records AS a "
        "WHERE a.leaf_index = merkle_nodes.idx AND a.leaf = merkle_nodes.hash)"
    )


def downgrade() -> None:
    op.execute(
        "INSERT INTO merkle_nodes (level, idx, hash) SELECT 0, leaf_index, leaf FROM audit_records "
        "WHERE leaf_index IS NOT NULL AND leaf IS NOT NULL AND NOT EXISTS (SELECT 1 FROM merkle_nodes AS m "
        "WHERE m.level = 0 AND m.idx = audit_records.leaf_index)"
    )
