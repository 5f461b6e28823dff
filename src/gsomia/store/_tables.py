"""The node's tables (SQLAlchemy Core). Instants are integer microseconds since the epoch (UTC)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a million-item store.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")

items = Table(
    "items",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("id", String(128), nullable=False, unique=True),
    Column("originator", String(3), nullable=False),
    Column("classification", String(64), nullable=False),
    Column("label", Text, nullable=False),  # canonical JSON of the SecurityLabel
    Column("received_from", String(3)),
    Column("agreement", String(128)),
    Column("created_us", BigInteger, nullable=False),
    Column("ingested_us", BigInteger, nullable=False),
    Column("ingested_by", String(128), nullable=False),
    Column("payload_type", String(16), nullable=False),
    Column("payload_size", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),  # AES-GCM nonce || ciphertext under the node key
    Index("ix_items_originator_seq", "originator", "seq"),
    Index("ix_items_classification_seq", "classification", "seq"),
    Index("ix_items_received_from_seq", "received_from", "seq"),
    Index("ix_items_created_seq", "created_us", "seq"),
)

item_topics = Table(
    "item_topics",
    metadata,
    Column("topic", String(128), primary_key=True),
    Column("item_seq", _SEQ, ForeignKey("items.seq"), primary_key=True),
)

inventory = Table(
    "inventory",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("item_seq", _SEQ, ForeignKey("items.seq"), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),  # ingested | received | sent | copy | ...
    Column("party", String(3)),
    Column("actor", String(128)),
    Column("detail", Text, nullable=False),
    Index("ix_inventory_item", "item_seq", "seq"),
)

people = Table(
    "people",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("record", Text, nullable=False),  # canonical JSON of the Person
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("person_id", String(128), ForeignKey("people.id"), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),  # SHA-256 of the whole token
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger),
)

audit_records = Table(
    "audit_records",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("at_us", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("actor", String(128)),
    Column("subject", String(256)),
    Column("outcome", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_audit_kind_seq", "kind", "seq"),
)

node_meta = Table(
    "node_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
