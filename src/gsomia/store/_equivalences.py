"""Equivalence changes in the store: this node's own and its partners', one row per (agreement,
party, sequence). A change is written only if its sequence number is newer than every one on file
for its (agreement, party), checked in the transaction that writes it after the ``equivalences``
generation counter moved (the counter's row is locked until the end: writers take turns), so a
replayed or stale change can never be written, even by two processes at once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select

from gsomia.errors import ConflictError
from gsomia.store import _tables as t
from gsomia.store._federation import _values
from gsomia.store._store import Store, bump

__all__ = ["EQUIVALENCES", "EquivalenceChangeRow", "EquivalenceStore"]

EQUIVALENCES = "equivalences"  # the generation counter: every process rebuilds its catalogue


@dataclass(frozen=True, slots=True)
class EquivalenceChangeRow:
    agreement: str
    party: str
    sequence: int
    effective_us: int
    applies_us: int
    change: str
    proposed_by: str | None
    received_from: str | None
    recorded_us: int
    jws: str


def _latest(conn: Connection, agreement: str, party: str) -> int:
    query = select(func.max(t.equivalence_changes.c.sequence)).where(
        t.equivalence_changes.c.agreement == agreement, t.equivalence_changes.c.party == party
    )
    return int(conn.execute(query).scalar_one_or_none() or 0)


class EquivalenceStore:
    """The equivalence changes over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def changes(
        self, *, agreement: str | None = None, limit: int | None = None
    ) -> list[EquivalenceChangeRow]:
        """The changes on file, by agreement, party and sequence."""
        c = t.equivalence_changes.c
        query = select(t.equivalence_changes).order_by(c.agreement, c.party, c.sequence)
        if agreement is not None:
            query = query.where(c.agreement == agreement)
        if limit is not None:
            query = query.limit(limit)
        with self.store._read() as conn:
            return [EquivalenceChangeRow(**r._mapping) for r in conn.execute(query)]

    def count(self, agreement: str, party: str) -> int:
        """How many changes of (``agreement``, ``party``) are on file."""
        c = t.equivalence_changes.c
        query = select(func.count()).where(c.agreement == agreement, c.party == party)
        with self.store._read() as conn:
            return int(conn.execute(query).scalar_one())

    def latest(self, agreement: str, party: str) -> int:
        """The highest sequence number on file for (``agreement``, ``party``); 0 if none."""
        with self.store._read() as conn:
            return _latest(conn, agreement, party)

    @staticmethod
    def insert(row: EquivalenceChangeRow) -> Callable[[Connection], None]:
        """The write of ``row``, for a transaction (an op of the inbox's batch or of a proposal):
        raises ``ConflictError`` if a change of the same or a later sequence is on file by then."""

        def op(conn: Connection) -> None:
            bump(conn, EQUIVALENCES)  # first: the counter's row is locked, proposals take turns
            latest = _latest(conn, row.agreement, row.party)
            if row.sequence <= latest:
                raise ConflictError(
                    f"{row.party}'s equivalence change {row.sequence} to {row.agreement} is not newer "
                    f"than change {latest} on file"
                )
            conn.execute(insert(t.equivalence_changes), _values(row))

        return op
