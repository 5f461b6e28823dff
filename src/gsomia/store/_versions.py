"""The envelope versions this node opens from each partner (``envelope_versions``), in the store so that
every process of the node refuses the same envelopes (a process's copy is the store's while the
``envelopes`` generation holds; the refusing check itself reads the store).

A partner's row is only ever raised by the inbox (:meth:`EnvelopeVersionStore.raise_lowest`: one
conditional statement, so two processes raising it at once write it once); an administrator sets a
row (:meth:`EnvelopeVersionStore.put`), the row of every partner (``*``) possibly from a later
instant, which :meth:`EnvelopeVersionStore.reach` marks reached once the node's clock has passed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gsomia.store import _tables as t
from gsomia.store._store import AuditRow, Store, bump

__all__ = ["ENVELOPES", "EVERY_PARTNER", "EnvelopeVersionRow", "EnvelopeVersionStore"]

ENVELOPES = "envelopes"  # the generation counter of the rows: every process reads them again
EVERY_PARTNER = "*"  # the row that holds for every partner (an administrator's cut-off)


@dataclass(frozen=True, slots=True)
class EnvelopeVersionRow:
    """From ``party`` (``*``: every partner), envelope versions below ``lowest`` are not opened: from
    ``since_us`` while ``pending``, else already (``cause`` ``sent``: raised when an envelope of the
    partner's in that version or later opened, ``by`` its message id; ``set``: by ``by``)."""

    party: str
    lowest: int
    since_us: int
    pending: bool
    cause: str
    by: str
    updated_us: int


def _row(mapping: object) -> EnvelopeVersionRow:
    values = dict(mapping)  # type: ignore[call-overload]  # a SQLAlchemy row mapping
    values["pending"] = bool(values["pending"])
    return EnvelopeVersionRow(**values)


class EnvelopeVersionStore:
    """``envelope_versions`` over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def rows(self, parties: Sequence[str] | None = None) -> dict[str, EnvelopeVersionRow]:
        """The rows on file (of ``parties`` only, if given), by party: what the store holds now."""
        query = select(t.envelope_versions)
        if parties is not None:
            query = query.where(t.envelope_versions.c.party.in_(list(parties)))
        with self.store._read() as conn:
            return {r.party: _row(r._mapping) for r in conn.execute(query)}

    def raise_lowest(
        self, party: str, lowest: int, now_us: int, by: str, audit: Sequence[AuditRow], sealed_after_us: int
    ) -> bool:
        """``party``'s row raised to ``lowest`` from now, by what it sent, surely sealed after
        ``sealed_after_us`` (its issued_at less the allowed skew), unless it is that high already
        (never lowered) or an administrator set it at or after that instant (so a replay of an
        envelope from before a lowering does not undo it); ``audit`` written with it.
        Whether this call raised it (two processes raising it at once: one does, the other's
        statement changes nothing)."""
        c = t.envelope_versions.c
        values = {"lowest": lowest, "since_us": now_us, "pending": 0, "cause": "sent", "by": by[:200]}
        with self.store._begin() as conn:
            changed = conn.execute(
                update(t.envelope_versions)
                .where(
                    c.party == party, c.lowest < lowest, or_(c.cause != "set", c.since_us < sealed_after_us)
                )
                .values(**values, updated_us=now_us)
            ).rowcount
            if not changed:
                first = (postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert)(
                    t.envelope_versions
                )
                changed = conn.execute(
                    first.values(party=party, **values, updated_us=now_us).on_conflict_do_nothing(
                        index_elements=["party"]
                    )
                ).rowcount
            if changed:
                bump(conn, ENVELOPES)
                self.store._audit(conn, audit)
            return bool(changed)

    def put(self, row: EnvelopeVersionRow, audit: Sequence[AuditRow]) -> EnvelopeVersionRow | None:
        """Set ``row`` (an administrator's), replacing the party's; the row it replaced, if any."""
        with self.store._begin() as conn:
            bump(conn, ENVELOPES)  # first: writers of the rows take turns from here to the commit
            found = conn.execute(
                select(t.envelope_versions).where(t.envelope_versions.c.party == row.party)
            ).one_or_none()
            conn.execute(t.envelope_versions.delete().where(t.envelope_versions.c.party == row.party))
            values = {
                "party": row.party,
                "lowest": row.lowest,
                "since_us": row.since_us,
                "pending": int(row.pending),
                "cause": row.cause,
                "by": row.by[:200],
                "updated_us": row.updated_us,
            }
            conn.execute(insert(t.envelope_versions), values)
            self.store._audit(conn, audit)
            return None if found is None else _row(found._mapping)

    def reach(self, now_us: int, audit: Sequence[AuditRow]) -> int:
        """Every pending row whose instant is ``now_us`` or earlier marked reached, for good (a clock
        set back afterwards does not make it pending again); ``audit`` written if any was. How many."""
        c = t.envelope_versions.c
        with self.store._begin() as conn:
            reached = conn.execute(
                update(t.envelope_versions)
                .where(c.pending == 1, c.since_us <= now_us)
                .values(pending=0, updated_us=now_us)
            ).rowcount
            if reached:
                bump(conn, ENVELOPES)
                self.store._audit(conn, audit)
            return int(reached)
