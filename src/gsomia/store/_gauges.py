"""What an operator watches, read from the store (so every process of a node reports the same):
the outbox's backlog per peer, the audit records not yet in the Merkle log, when each partner's
tree head was last received. Each is one small aggregate query over an index."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from gsomia.store import _tables as t
from gsomia.store._store import Store

__all__ = ["Backlog", "Gauges"]


@dataclass(frozen=True, slots=True)
class Backlog:
    """How many entries wait, and since when the oldest has waited (µs; ``None`` when none waits)."""

    count: int
    oldest_us: int | None


class Gauges:
    """The store's gauges, over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def outbox(self) -> dict[str, Backlog]:
        """Per next hop: the pending outbox entries and the oldest one's creation."""
        o = t.outbox.c
        query = (
            select(o.recipient, func.count(), func.min(o.created_us))
            .where(o.state == "pending")
            .group_by(o.recipient)
        )
        with self.store._read() as conn:
            return {r[0]: Backlog(int(r[1]), r[2]) for r in conn.execute(query)}

    def unintegrated(self) -> Backlog:
        """The audit records not yet integrated into the Merkle log, and the oldest one's instant."""
        a = t.audit_records.c
        query = select(func.count(), func.min(a.at_us)).where(a.leaf_index.is_(None))
        with self.store._read() as conn:
            count, oldest = conn.execute(query).one()
        return Backlog(int(count), oldest)

    def partner_heads(self) -> dict[str, int]:
        """Per partner: when its newest tree head was received (µs)."""
        h = t.partner_heads.c
        query = select(h.party, func.max(h.received_us)).group_by(h.party)
        with self.store._read() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(query)}
