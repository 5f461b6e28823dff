"""State every process of a node shares and watches: the generation counters and the key ring.

A process that keeps a copy of shared state (the key ring, the peer directory) remembers the
generation it read; a writer bumps the generation in the transaction that changes the state, so
reading the counters (one small query) tells every process whether its copy is still the store's.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, insert, select, update

from gsomia.store import _tables as t
from gsomia.store._store import AuditRow, Store

__all__ = ["CONSENTS", "KEYS", "PEERS", "SharedState", "bump"]

KEYS = "keys"
PEERS = "peers"
CONSENTS = "consents"  # standing consents (the stream's relay plans)


def bump(conn: Connection, name: str) -> int:
    """Move ``name``'s generation on, in the caller's transaction (the row stays locked until it
    ends, so writers of one kind of state take turns); the new generation."""
    value = conn.execute(
        update(t.generations)
        .where(t.generations.c.name == name)
        .values(value=t.generations.c.value + 1)
        .returning(t.generations.c.value)
    ).scalar_one_or_none()
    if value is None:  # a kind of state first written after the migration: its counter starts here
        conn.execute(insert(t.generations), {"name": name, "value": 1})
        return 1
    return int(value)


class SharedState:
    """The generation counters and the node's sealed key ring, over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def generations(self) -> dict[str, int]:
        """Every kind of shared state's generation (one query)."""
        with self.store._read() as conn:
            return {r.name: int(r.value) for r in conn.execute(select(t.generations))}

    def key_ring(self) -> tuple[int, bytes] | None:
        """(generation, sealed document) of the node's key ring, read together; ``None`` if the
        store holds no ring yet."""
        generation = select(t.generations.c.value).where(t.generations.c.name == KEYS).scalar_subquery()
        query = select(t.key_ring.c.sealed, generation).where(t.key_ring.c.id == 1)
        with self.store._read() as conn:  # one statement: one snapshot, on PostgreSQL too
            row = conn.execute(query).one_or_none()
        if row is None:
            return None
        sealed, generation = row
        return int(generation), bytes(sealed)

    def create_key_ring(self, sealed: bytes, now_us: int, audit: Sequence[AuditRow] = ()) -> bool:
        """Store the node's first key ring; ``False`` (nothing written) if another process stored
        one first."""
        with self.store._begin() as conn:
            if conn.execute(select(t.key_ring.c.id).where(t.key_ring.c.id == 1)).first() is not None:
                return False
            bump(conn, KEYS)
            conn.execute(insert(t.key_ring), {"id": 1, "sealed": sealed, "updated_us": now_us})
            self.store._audit(conn, audit)
            return True

    def replace_key_ring(
        self, sealed: bytes, expected: int, now_us: int, audit: Sequence[AuditRow] = ()
    ) -> bool:
        """Replace the key ring read at generation ``expected`` (compare-and-set): ``False``, with
        nothing written, if another writer changed it since."""
        with self.store._begin() as conn:
            moved = conn.execute(
                update(t.generations)
                .where(t.generations.c.name == KEYS, t.generations.c.value == expected)
                .values(value=expected + 1)
            ).rowcount
            if not moved:
                return False
            conn.execute(
                update(t.key_ring).where(t.key_ring.c.id == 1).values(sealed=sealed, updated_us=now_us)
            )
            self.store._audit(conn, audit)
            return True
