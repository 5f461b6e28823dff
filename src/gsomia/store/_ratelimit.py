"""Rate-limit counters in the node's store: a storage backend for the ``limits`` library.

``limits`` ships the strategies (fixed window, sliding window counter, ...) and the rate notation
(``600/minute``) but only in-memory and network-cache backends; a node may run as several processes
on one database, and the store is the truth, so the counters live in the ``rate_counters`` table
(migration 0020): every process upserts the same row, and the count a process reads back is the
node's. Windows end at the node's clock (``now_us``), so a test's clock moves them too.

Both of ``limits``' bounded-space strategies are served: the fixed window (:meth:`RateCounters.incr`,
one upsert) and the sliding window counter (:meth:`RateCounters.acquire_sliding_window_entry`: a
row per key and clock-aligned window, the previous window's count weighted by how much of it the
last ``expiry`` seconds still cover, counted and added in one transaction that holds the current
window's row). :meth:`RateCounters.add_within` counts over a sliding window
(the last ``window_s`` seconds, whatever instant is asked): a fixed window lets a source spend its
budget twice across a window's edge, which a bound that must hold over any ``window_s`` (a hub's
duplicates, ``stream/_service.py``) cannot allow. :meth:`RateCounters.lower_within` keeps the least
of the values given within a window (a partner's inbox limit, learnt from its refusals: every
process of the node cuts its pushes to the same size, ``exchange/_delivery.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from limits.storage import Storage
from limits.storage.base import SlidingWindowCounterSupport
from sqlalchemy import case, delete, func, select, update

from gsomia.errors import StoreError
from gsomia.store import _tables as t
from gsomia.store._store import Store

__all__ = ["RateCounters"]

_US = 1_000_000
_SLICE_US = _US  # a sliding window is counted in slices of a second (one row each)


def _upsert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(t.rate_counters)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(t.rate_counters)


class RateCounters(Storage, SlidingWindowCounterSupport):
    """Rate counters shared by every process of the node (``limits``' ``Storage``, for its fixed
    window and sliding window counter strategies)."""

    STORAGE_SCHEME = None  # not reachable by URI: built over a node's own store

    def __init__(self, store: Store, now_us: Callable[[], int]) -> None:
        super().__init__()
        self.store = store
        self.now_us = now_us

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return StoreError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s count in one statement; a window that has ended starts again
        (at ``amount``, ending ``expiry`` seconds from now). The count after, all processes' together."""
        now = self.now_us()
        table = t.rate_counters
        with self.store._begin() as conn:
            statement = _upsert(conn.dialect.name).values(
                key=key, count=amount, expires_us=now + expiry * _US
            )
            ended = table.c.expires_us <= now
            statement = statement.on_conflict_do_update(
                index_elements=[table.c.key],
                set_={
                    "count": case((ended, amount), else_=table.c.count + amount),
                    "expires_us": case((ended, now + expiry * _US), else_=table.c.expires_us),
                },
            ).returning(table.c.count)
            return int(conn.execute(statement).scalar_one())

    def lower_within(self, key: str, value: int, window_s: int) -> int:
        """``key``'s count lowered to ``value`` (never raised: the least given is kept), its window
        (``window_s`` seconds from now) started again; a count whose window has ended is replaced.
        One statement, so two processes lowering it at once keep the lesser. The count after."""
        now = self.now_us()
        table = t.rate_counters
        with self.store._begin() as conn:
            statement = _upsert(conn.dialect.name).values(
                key=key, count=value, expires_us=now + window_s * _US
            )
            kept = (table.c.expires_us > now) & (table.c.count < value)
            statement = statement.on_conflict_do_update(
                index_elements=[table.c.key],
                set_={
                    "count": case((kept, table.c.count), else_=value),
                    "expires_us": statement.excluded.expires_us,
                },
            ).returning(table.c.count)
            return int(conn.execute(statement).scalar_one())

    def add_within(self, key: str, amount: int, window_s: int) -> int:
        """Add ``amount`` to ``key``'s count now; the count within the last ``window_s`` seconds
        after it, all processes' together (a sliding window: the bound it is held to holds over any
        ``window_s`` seconds, never twice that across the edge of a fixed window).

        Counted in slices of one second (a row ``key@second`` each, kept until the window has passed
        it): what the count covers is every slice the last ``window_s`` seconds touch, so at most
        ``window_s + 1`` seconds, never less than ``window_s``. One transaction, serialised per key:
        its first statement is a write that holds the key's writers one after the other until the
        commit (PostgreSQL: an upsert of the row ``key`` itself, that row's lock; SQLite: the
        slice's upsert, the database's write lock, taken before anything is read),
        so two processes adding at once, on either side of a slice's edge, both count and each reads
        a count that includes the other's if it committed first: no count is lost or read twice
        (``tests/stream/test_resend_bounds.py``, two processes on both backends)."""
        now = self.now_us()
        window_us = window_s * _US
        start = now - now % _SLICE_US
        table = t.rate_counters
        with self.store._begin() as conn:
            upsert = _upsert(conn.dialect.name)
            if conn.dialect.name != "sqlite":  # SQLite: the slice's upsert takes the write lock first
                head = upsert.values(key=key, count=0, expires_us=now + window_us)
                conn.execute(
                    head.on_conflict_do_update(
                        index_elements=[table.c.key], set_={"expires_us": head.excluded.expires_us}
                    )
                )
            piece = upsert.values(
                key=f"{key}@{start // _SLICE_US:012d}", count=amount, expires_us=start + _SLICE_US + window_us
            )
            conn.execute(
                piece.on_conflict_do_update(
                    index_elements=[table.c.key], set_={"count": table.c.count + piece.excluded.count}
                )
            )
            counted = select(func.coalesce(func.sum(table.c.count), 0)).where(
                table.c.key.startswith(f"{key}@", autoescape=True), table.c.expires_us > now
            )
            return int(conn.execute(counted).scalar_one())

    def _windows(self, key: str, expiry: int, now: int) -> tuple[str, str, int]:
        """The previous and the current window's rows of ``key`` at ``now`` (windows of ``expiry``
        seconds aligned on the epoch, as ``limits``' own storages), and when the current one ends."""
        length = expiry * _US
        index = now // length
        return f"{key}#{index - 1}", f"{key}#{index}", (index + 1) * length

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Add ``amount`` to ``key``'s current window if the weighted count (the previous window's
        count times the share of it the last ``expiry`` seconds cover, plus the current's, floored
        as ``limits``' storages do) stays within ``limit``; whether it did.

        One transaction whose first statement adds to the current window's row (PostgreSQL: that
        row's lock; SQLite: the database's write lock), so two processes spending at once are
        counted one after the other, each reading a count that includes the other's if it committed
        first; an addition past the limit is taken back in the same transaction (a refused request
        spends nothing, as in ``limits``' storages). The row is kept until it can no longer be the
        previous window (``prune``), so a key holds at most two."""
        if amount > limit:
            return False
        now = self.now_us()
        previous, current, ends = self._windows(key, expiry, now)
        table = t.rate_counters
        with self.store._begin() as conn:
            add = _upsert(conn.dialect.name).values(key=current, count=amount, expires_us=ends + expiry * _US)
            count = conn.execute(
                add.on_conflict_do_update(
                    index_elements=[table.c.key], set_={"count": table.c.count + add.excluded.count}
                ).returning(table.c.count)
            ).scalar_one()
            before = conn.execute(
                select(table.c.count).where(table.c.key == previous, table.c.expires_us > now)
            ).scalar()
            weighted = (before or 0) * (ends - now) / (expiry * _US) + int(count)
            if math.floor(weighted) <= limit:
                return True
            conn.execute(update(table).where(table.c.key == current).values(count=table.c.count - amount))
            return False

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        """The previous window's count and seconds left to weigh (0 without a count), the current
        window's count and seconds until it is the previous one no more (``limits``' contract)."""
        now = self.now_us()
        previous, current, ends = self._windows(key, expiry, now)
        table = t.rate_counters
        with self.store._read() as conn:
            rows = dict(
                conn.execute(
                    select(table.c.key, table.c.count).where(
                        table.c.key.in_((previous, current)), table.c.expires_us > now
                    )
                ).all()
            )
        before, count = int(rows.get(previous, 0)), int(rows.get(current, 0))
        left = (ends - now) / _US
        return before, (left if before else 0.0), count, left + expiry

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        previous, current, _ = self._windows(key, expiry, self.now_us())
        with self.store._begin() as conn:
            conn.execute(delete(t.rate_counters).where(t.rate_counters.c.key.in_((previous, current))))

    def _row(self, key: str) -> tuple[int, int] | None:
        table = t.rate_counters
        with self.store._read() as conn:
            row = conn.execute(
                select(table.c.count, table.c.expires_us).where(
                    table.c.key == key, table.c.expires_us > self.now_us()
                )
            ).first()
        return None if row is None else (int(row[0]), int(row[1]))

    def get(self, key: str) -> int:
        row = self._row(key)
        return 0 if row is None else row[0]

    def get_expiry(self, key: str) -> float:
        """When ``key``'s window ends, in seconds since the epoch (now, if it has none)."""
        row = self._row(key)
        return (row[1] if row is not None else self.now_us()) / _US

    def check(self) -> bool:
        try:
            with self.store._read() as conn:
                conn.execute(select(func.count()).select_from(t.rate_counters).limit(1))
        except StoreError:
            return False
        return True

    def reset(self) -> int | None:
        with self.store._begin() as conn:
            return int(conn.execute(delete(t.rate_counters)).rowcount)

    def clear(self, key: str) -> None:
        with self.store._begin() as conn:
            conn.execute(delete(t.rate_counters).where(t.rate_counters.c.key == key))

    def prune(self) -> int:
        """Forget the counters whose window has ended (the node's loop calls it); how many."""
        with self.store._begin() as conn:
            ended = t.rate_counters.c.expires_us <= self.now_us()
            return int(conn.execute(delete(t.rate_counters).where(ended)).rowcount)
