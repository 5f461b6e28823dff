"""PostgreSQL: how the long values of the exchange's rows are stored (issue 18). Nothing changes on
SQLite, and nothing in any row's value: only how the server compresses what it writes from now on.

The server CPU of a delivery, measured per statement (benchmarks/JOURNAL.md, "PostgreSQL's server
CPU per item"), went mostly to compressing what the exchange writes: every release's audit record
(~2.5 KB of JSON) and outbox decision (~1.8 KB) by pglz, each batch's receipt (~40 KB), and, on
every item stored, a pglz attempt on the sealed payload and the originator's sealed signature,
AES-GCM ciphertext that never compresses, before it goes out of line anyway. So:

- the ciphertext columns (``items.payload``, ``items.origin_jws``) are ``STORAGE EXTERNAL``: out of
  line when the row is long, as before, without the attempt to compress them;
- the JSON columns written per item or per batch are compressed by LZ4 (PostgreSQL 14 and later,
  when the server is built with it): several times faster than pglz at a similar ratio here.
  A server without LZ4 keeps pglz (the step is skipped, not failed). Values already stored keep
  their compression; the server reads both.
"""

from alembic import op
from sqlalchemy.exc import DBAPIError

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

CIPHERTEXT = (("items", "payload"), ("items", "origin_jws"))
JSON_TEXT = (
    ("audit_records", "detail"),
    ("outbox", "request"),
    ("outbox", "decision"),
    ("outbox", "envelope"),
    ("outbox", "receipt"),
    ("inbox", "receipt"),
    ("receipts", "receipt"),
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, column in CIPHERTEXT:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTERNAL")
    if (bind.dialect.server_version_info or (0,)) < (14,):
        return  # no per-column compression before PostgreSQL 14
    try:
        with bind.begin_nested():  # a savepoint: a server built without LZ4 refuses, and keeps pglz
            table, column = JSON_TEXT[0]
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")
    except DBAPIError:
        return
    for table, column in JSON_TEXT[1:]:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, column in CIPHERTEXT:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTENDED")
    if (bind.dialect.server_version_info or (0,)) >= (14,):
        for table, column in JSON_TEXT:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION DEFAULT")
