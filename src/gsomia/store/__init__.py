"""The node's persistent store (SQLite by default, PostgreSQL in production) and its migrations."""

from gsomia.store._store import AuditRow, InventoryRow, ItemFilter, ItemRow, NewItem, Store, TokenRow

__all__ = ["AuditRow", "InventoryRow", "ItemFilter", "ItemRow", "NewItem", "Store", "TokenRow"]
