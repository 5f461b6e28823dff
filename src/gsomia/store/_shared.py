"""State every process of a node shares and watches: the generation counters and the key ring.

A process that keeps a copy of shared state (the key ring, the peer directory) remembers the
generation it read; a writer bumps the generation in the transaction that changes the state, so
reading the counters (one small query) tells every process whether its copy is still the store's.
On PostgreSQL the move is also announced (``_notify``): :meth:`SharedState.listen` hears it in
every process the moment it commits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import insert, select, update

from gsomia.store import _tables as t
from gsomia.store._notify import ChangeListener
from gsomia.store._store import PEOPLE, TOKENS, VISITS, AuditRow, Store, bump, moved

__all__ = ["CONSENTS", "KEYS", "PEERS", "PEOPLE", "TOKENS", "VISITS", "SharedState", "bump"]

KEYS = "keys"
PEERS = "peers"
CONSENTS = "consents"  # standing consents (the stream's relay plans)


class SharedState:
    """The generation counters and the node's sealed key ring, over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def generations(self) -> dict[str, int]:
        """Every kind of shared state's generation (one query)."""
        with self.store._read() as conn:
            return {r.name: int(r.value) for r in conn.execute(select(t.generations))}

    def listen(self, on_change: Callable[[str | None], None]) -> ChangeListener | None:
        """A started thread that calls ``on_change(name)`` the moment another process commits a
        move of generation ``name``, and ``on_change(None)`` when it (re)connects (anything may
        have moved meanwhile); :meth:`ChangeListener.stop` ends it. ``None`` where the store has
        no such push: SQLite (one process), or PostgreSQL through a driver other than psycopg."""
        engine = self.store.engine
        if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
            return None
        listener = ChangeListener(engine, on_change)
        listener.start()
        return listener

    def queued_elsewhere(self) -> None:
        """Another process told that it queued outbox entries: wake this one's delivery workers."""
        self.store.queued_elsewhere()

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
            swapped = conn.execute(
                update(t.generations)
                .where(t.generations.c.name == KEYS, t.generations.c.value == expected)
                .values(value=expected + 1)
            ).rowcount
            if not swapped:
                return False
            moved(conn, KEYS)
            conn.execute(
                update(t.key_ring).where(t.key_ring.c.id == 1).values(sealed=sealed, updated_us=now_us)
            )
            self.store._audit(conn, audit)
            return True
