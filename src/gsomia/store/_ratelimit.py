"""Rate-limit counters in the node's store: a storage backend for the ``limits`` library.

``limits`` ships the strategies (fixed window, ...) and the rate notation (``600/minute``) but only
in-memory and network-cache backends; a node may run as several processes on one database, and
the store is the truth, so the counters live in the ``rate_counters`` table (migration 0020):
every process upserts the same row in one statement, and the count a process reads back is the
node's. Windows end at the node's clock (``now_us``), so a test's clock moves them too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from limits.storage import Storage
from sqlalchemy import case, delete, func, select

from gsomia.errors import StoreError
from gsomia.store import _tables as t
from gsomia.store._store import Store

__all__ = ["RateCounters"]

_US = 1_000_000


def _upsert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(t.rate_counters)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(t.rate_counters)


class RateCounters(Storage):
    """Fixed-window counters shared by every process of the node (``limits``' ``Storage``)."""

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
