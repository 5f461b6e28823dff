"""Scheduled downgrades in the store: declared by the originator, claimed once when due
(compare-and-set), then marked applied or failed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select, update

from gsomia.store import _tables as t
from gsomia.store._federation import _values
from gsomia.store._store import AuditRow, Store

__all__ = ["ScheduleStore", "ScheduledRow"]

_DUE_SQL = (  # ScheduledRow's field order; the index ix_scheduled_changes_due (state, at_us) serves it
    "SELECT id, item_id, classification, at_us, reason, scheduled_by, created_us, state, done_us, note "
    "FROM scheduled_changes WHERE state = 'pending' AND at_us <= {mark} ORDER BY at_us, id LIMIT {mark}"
)
_DUE = {"qmark": _DUE_SQL.format(mark="?"), "format": _DUE_SQL.format(mark="%s")}


@dataclass(frozen=True, slots=True)
class ScheduledRow:
    id: str
    item_id: str
    classification: str
    at_us: int
    reason: str
    scheduled_by: str
    created_us: int
    state: str  # pending | applying | applied | failed | cancelled
    done_us: int | None = None
    note: str | None = None


class ScheduleStore:
    """The scheduled downgrades over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, row: ScheduledRow, audit: Sequence[AuditRow] = ()) -> None:
        with self.store._begin() as conn:
            conn.execute(insert(t.scheduled_changes), _values(row))
            self.store._audit(conn, audit)

    def rows(
        self, *, item_id: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[ScheduledRow]:
        query = select(t.scheduled_changes)
        if item_id is not None:
            query = query.where(t.scheduled_changes.c.item_id == item_id)
        if state is not None:
            query = query.where(t.scheduled_changes.c.state == state)
        query = query.order_by(t.scheduled_changes.c.at_us, t.scheduled_changes.c.id).limit(limit)
        with self.store._read() as conn:
            return [ScheduledRow(**r._mapping) for r in conn.execute(query)]

    def due(self, now_us: int, limit: int = 100) -> list[ScheduledRow]:
        """The pending downgrades due at ``now_us``, oldest first (at most ``limit``). Every round of
        the node's background work asks (five a second): the statement is written once, as the driver
        takes it, and its rows are read as plain tuples; the SQLAlchemy form built and keyed for its
        cache each time was 6 % of a receiving node's CPU while the stream ran flat out."""
        with self.store._read() as conn:
            sql = _DUE["qmark" if conn.dialect.paramstyle == "qmark" else "format"]
            return [ScheduledRow(*r) for r in conn.exec_driver_sql(sql, (int(now_us), int(limit))).all()]

    def move(
        self,
        row_id: str,
        expected: str,
        state: str,
        now_us: int,
        note: str | None = None,
        audit: Sequence[AuditRow] = (),
    ) -> bool:
        """``expected`` -> ``state`` (compare-and-set); ``False``, nothing written, if it moved already."""
        with self.store._begin() as conn:
            moved = conn.execute(
                update(t.scheduled_changes)
                .where(t.scheduled_changes.c.id == row_id, t.scheduled_changes.c.state == expected)
                .values(state=state, done_us=now_us, note=note)
            ).rowcount
            if moved:
                self.store._audit(conn, audit)
            return bool(moved)
