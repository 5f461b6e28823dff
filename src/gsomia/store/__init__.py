"""The node's persistent store (SQLite by default, PostgreSQL in production) and its migrations."""

from gsomia.store._federation import (
    ConsentRequestRow,
    ConsentRow,
    FederationStore,
    InboxRow,
    OutboxRow,
    PeerRow,
)
from gsomia.store._store import AuditRow, InventoryRow, ItemFilter, ItemRow, NewItem, Store, TokenRow

__all__ = [
    "AuditRow",
    "ConsentRequestRow",
    "ConsentRow",
    "FederationStore",
    "InboxRow",
    "InventoryRow",
    "ItemFilter",
    "ItemRow",
    "NewItem",
    "OutboxRow",
    "PeerRow",
    "Store",
    "TokenRow",
]
