"""Token lineage and dashboard sessions: the token that minted each token, and its kind.

Revoking a token revokes every token minted from it (``parent_id``); a dashboard session is a
token of kind ``session`` (read-only, bound to the token it was opened with), so a second process
of the node accepts it and revoking the token ends it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tokens", sa.Column("parent_id", sa.String(32)))
    op.add_column("tokens", sa.Column("kind", sa.String(16), nullable=False, server_default="api"))
    op.create_index("ix_tokens_parent", "tokens", ["parent_id"])
    op.create_index("ix_tokens_person", "tokens", ["person_id"])


def downgrade() -> None:
    op.drop_index("ix_tokens_person", "tokens")
    op.drop_index("ix_tokens_parent", "tokens")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("kind")
        batch.drop_column("parent_id")
