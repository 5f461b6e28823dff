"""The due scheduled downgrades, on SQLite and PostgreSQL: the statement written once for the
driver answers what the SQLAlchemy query it replaced answered (pending only, due only, oldest first,
ties by id, at most the limit), every field as stored."""

from __future__ import annotations

from sqlalchemy import select

from gsomia.store import Store
from gsomia.store import _tables as t
from gsomia.store._schedule import ScheduledRow, ScheduleStore


def _row(row_id: str, at_us: int, state: str = "pending", note: str | None = None) -> ScheduledRow:
    return ScheduledRow(
        id=row_id, item_id=f"item-{row_id}", classification="秘", at_us=at_us, reason="declassified 'now'",
        scheduled_by="officer", created_us=at_us - 10, state=state,
        done_us=None if state == "pending" else at_us + 1, note=note,
    )  # fmt: skip


def _reference(store: Store, now_us: int, limit: int) -> list[ScheduledRow]:
    """The query ``due`` made before (SQLAlchemy's, built each call)."""
    c = t.scheduled_changes.c
    query = (
        select(t.scheduled_changes)
        .where(c.state == "pending", c.at_us <= now_us)
        .order_by(c.at_us, c.id)
        .limit(limit)
    )
    with store._read() as conn:
        return [ScheduledRow(**r._mapping) for r in conn.execute(query)]


def test_due_answers_as_the_query_it_replaced(store: Store) -> None:
    schedule = ScheduleStore(store)
    rows = [
        _row("b", 100),
        _row("a", 100),  # the same instant: by id
        _row("c", 50, note="ノート"),
        _row("d", 101),  # not due at 100
        _row("e", 10, state="applied"),  # due, not pending
        _row("f", 20, state="cancelled"),
        _row("g", 30, state="failed", note="no author"),
        _row("h", 100, state="applying"),
        _row("i", -5),  # before the epoch
    ]
    for row in rows:
        schedule.add(row)
    for now_us, limit in ((100, 100), (100, 2), (49, 100), (101, 100), (-6, 100), (10**18, 1)):
        got = schedule.due(now_us, limit)
        assert got == _reference(store, now_us, limit)
    assert [r.id for r in schedule.due(100)] == ["i", "c", "a", "b"]
    assert schedule.due(100)[1] == rows[2]  # every field as stored
    assert schedule.due(100, 2) == [rows[8], rows[2]]
    assert [r.id for r in schedule.due(101)] == ["i", "c", "a", "b", "d"]
    # a row claimed (moved from pending) is no longer due
    assert schedule.move("a", "pending", "applying", 200)
    assert [r.id for r in schedule.due(100)] == ["i", "c", "b"]
