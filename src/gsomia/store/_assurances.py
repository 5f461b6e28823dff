"""The recipients' assurances before provision (Art. 7(5)) in the store: this node's own and its
partners', each with its signed document; watched by generation, so every process of the node
decides with the same assurances within a second of a change.

An assurance is stored once (by id); a revocation is written once (compare-and-set on
``revoked_us`` being empty), so two processes cannot both revoke it, nor revive it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from gsomia.store import _tables as t
from gsomia.store._duties import Op
from gsomia.store._federation import _values
from gsomia.store._shared import bump
from gsomia.store._store import Store

__all__ = ["ASSURANCES", "AssuranceRow", "AssuranceStore"]

ASSURANCES = "assurances"  # the generation every process watches for the assurances on file


@dataclass(frozen=True, slots=True)
class AssuranceRow:
    id: str
    agreement: str
    party: str
    given_us: int
    reference: str
    jws: str
    revoked_us: int | None = None
    revocation: str | None = None


class AssuranceStore:
    """The assurances on file over a :class:`Store`; writes are ops for one transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def all(self) -> list[AssuranceRow]:
        query = select(t.assurances).order_by(
            t.assurances.c.agreement, t.assurances.c.party, t.assurances.c.id
        )
        with self.store._read() as conn:
            return [AssuranceRow(**r._mapping) for r in conn.execute(query)]

    def get(self, assurance_id: str) -> AssuranceRow | None:
        query = select(t.assurances).where(t.assurances.c.id == assurance_id)
        with self.store._read() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else AssuranceRow(**row._mapping)

    @staticmethod
    def put(row: AssuranceRow) -> Op:
        """Store an assurance unless one with its id is on file already (a repeat changes nothing)."""

        def run(conn: Connection) -> None:
            if conn.execute(select(t.assurances.c.id).where(t.assurances.c.id == row.id)).first() is None:
                conn.execute(insert(t.assurances), _values(row))
                bump(conn, ASSURANCES)

        return run

    @staticmethod
    def revoke(assurance_id: str, revoked_us: int, revocation: str) -> Op:
        """Revoke an assurance once; a repeat (or a revocation of an unknown one) changes nothing."""

        def run(conn: Connection) -> None:
            done = conn.execute(
                update(t.assurances)
                .where(t.assurances.c.id == assurance_id, t.assurances.c.revoked_us.is_(None))
                .values(revoked_us=revoked_us, revocation=revocation)
            ).rowcount
            if done:
                bump(conn, ASSURANCES)

        return run
