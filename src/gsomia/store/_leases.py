"""Leases: which process of a node holds a kind of background work, for how long.

A lease is one row: its holder, an epoch that moves on with every new holder (a fencing token:
work done under an older epoch is known to be stale) and when it expires. Every change is one
compare-and-set ``UPDATE``: a process takes a lease only if it already holds it or the lease has
expired, so two processes never both come out holding it. Time is the database's own clock, so
the machines of a node never disagree about when a lease ran out, whatever their clocks say.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    Update,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from gsomia.errors import ConflictError
from gsomia.store import _tables as t
from gsomia.store._store import Store

__all__ = ["LeaseRow", "LeaseStore"]

_L = t.leases.c
_CLAIMS: dict[str, Update] = {}  # the claim's statement, built once a dialect (its values bound at execution)


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A lease as stored: who holds it, under which epoch, and until when (database time, µs)."""

    name: str
    holder: str
    epoch: int
    acquired_us: int
    expires_us: int


class LeaseStore:
    """The leases of a node, over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _now_us(self) -> ColumnElement[int]:
        """The database's clock in microseconds since the epoch (evaluated in the statement)."""
        if self.store.engine.dialect.name == "postgresql":
            return cast(func.extract("epoch", func.clock_timestamp()) * 1_000_000, BigInteger)
        return cast((func.julianday("now") - 2440587.5) * 86_400_000_000, BigInteger)

    def claim(self, name: str, holder: str, ttl_us: int) -> int | None:
        """Take or renew ``name`` for ``ttl_us`` if ``holder`` holds it or it has expired: the epoch
        it is held under, or ``None`` (nothing written) while another holder's lease runs.

        Renewing keeps the epoch; taking it (from another holder, or back after it expired, since
        work done meanwhile by someone else may have come between) moves the epoch on."""
        values = {"lease_name": name, "lease_holder": holder, "lease_ttl_us": int(ttl_us)}
        with self.store._begin() as conn:
            epoch = conn.execute(self._claim(), values).scalar_one_or_none()
            if epoch is not None:
                return int(epoch)
            if conn.execute(select(_L.name).where(_L.name == name)).first() is not None:
                return None  # held by another, and running
        try:  # the first claim ever of this lease: whoever inserts first holds it
            with self.store._begin() as conn:
                conn.execute(
                    insert(t.leases).values(
                        name=name,
                        holder=holder,
                        epoch=1,
                        acquired_us=self._now_us(),
                        expires_us=self._now_us() + literal(ttl_us, BigInteger),
                    )
                )
        except ConflictError:
            return None
        return 1

    def _claim(self) -> Update:
        """:meth:`claim`'s compare-and-set, built once a dialect with its values bound at execution:
        the holders renew their leases every few seconds, and building the statement and its cache
        key each time cost about ten times the statement's execution."""
        dialect = self.store.engine.dialect.name
        query = _CLAIMS.get(dialect)
        if query is None:
            now = self._now_us()
            holder = bindparam("lease_holder", type_=String)
            kept = and_(_L.holder == holder, _L.expires_us > now)
            query = (
                update(t.leases)
                .where(
                    _L.name == bindparam("lease_name", type_=String),
                    or_(_L.holder == holder, _L.expires_us <= now),
                )
                .values(
                    holder=holder,
                    epoch=case((kept, _L.epoch), else_=_L.epoch + 1),
                    acquired_us=case((kept, _L.acquired_us), else_=now),
                    expires_us=now + bindparam("lease_ttl_us", type_=BigInteger),
                )
                .returning(_L.epoch)
            )
            _CLAIMS[dialect] = query
        return query

    def release(self, name: str, holder: str) -> bool:
        """End ``holder``'s lease on ``name`` now (another process may take it at once); ``False``
        if ``holder`` did not hold it."""
        with self.store._begin() as conn:
            done = conn.execute(
                update(t.leases).where(_L.name == name, _L.holder == holder).values(expires_us=self._now_us())
            ).rowcount
        return bool(done)

    def leases(self) -> list[LeaseRow]:
        """Every lease, with whether it runs judged by the caller against :meth:`now_us`."""
        with self.store._read() as conn:
            return [LeaseRow(*r) for r in conn.execute(select(t.leases).order_by(_L.name))]

    def now_us(self) -> int:
        """The database's clock (µs since the epoch): the clock leases expire by."""
        with self.store._read() as conn:
            return int(conn.execute(select(self._now_us())).scalar_one())

    def running(self, prefix: str) -> list[LeaseRow]:
        """The leases whose name starts with ``prefix`` and that run now (database time)."""
        query = select(t.leases).where(
            _L.name.startswith(prefix, autoescape=True), _L.expires_us > self._now_us()
        )
        with self.store._read() as conn:
            return [LeaseRow(*r) for r in conn.execute(query.order_by(_L.name))]

    def forget(self, prefix: str, ended_for_us: int) -> int:
        """Delete the leases named ``prefix``… that ended at least ``ended_for_us`` ago (a process's
        own lease, say, left behind when it died); how many."""
        cutoff = self._now_us() - literal(ended_for_us, BigInteger)
        query = delete(t.leases).where(_L.name.startswith(prefix, autoescape=True), _L.expires_us <= cutoff)
        with self.store._begin() as conn:
            return int(conn.execute(query).rowcount)
