"""The store's duty tables: copies' sources, label changes and acknowledgements, destruction
records, investigations, visits and the registers.

A duty's writes go in one transaction with their outbox rows, inventory entries and audit
records (:meth:`DutiesStore.commit`); a write that must not race (a label change) is a
conditional update that raises ``ConflictError`` when the row moved on meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, and_, func, insert, select, true, update

from gsomia.errors import ConflictError
from gsomia.store import _tables as t
from gsomia.store._federation import OUTBOX, OutboxRow, _outbox_row
from gsomia.store._store import (
    VISITS,
    AuditRow,
    InventoryEntry,
    ItemRow,
    NewItem,
    Store,
    allocate_added,
    among,
    bump,
)

__all__ = [
    "DestructionRow",
    "DutiesStore",
    "FeedbackRow",
    "IncidentRow",
    "LabelAckRow",
    "LabelChangeRow",
    "Op",
    "VisitRow",
]

Op = Callable[[Connection], None]


@dataclass(frozen=True, slots=True)
class LabelChangeRow:
    item_id: str
    version: int
    kind: str
    classification: str | None
    reason: str
    at_us: int
    jws: str
    applied_us: int


@dataclass(frozen=True, slots=True)
class LabelAckRow:
    item_id: str
    version: int
    party: str
    state: str
    at_us: int | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class DestructionRow:
    item_id: str
    holder: str
    at_us: int
    actor: str
    witness: str
    method: str
    jws: str
    sent_us: int | None = None


@dataclass(frozen=True, slots=True)
class PortionDestructionRow:
    """A holder's signed record that it destroyed one portion of an item in portions."""

    item_id: str
    portion: str
    holder: str
    at_us: int
    actor: str
    witness: str
    method: str
    jws: str
    sent_us: int | None = None


@dataclass(frozen=True, slots=True)
class IncidentRow:
    id: str
    item_id: str
    originator: str
    holder: str
    nature: str
    state: str
    steps: str
    jws: str
    updated_us: int


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    holder: str
    id: str
    item_id: str
    originator: str
    kind: str
    text: str
    cites: str
    actor: str
    at_us: int
    jws: str
    recorded_us: int


@dataclass(frozen=True, slots=True)
class VisitRow:
    id: str
    person_id: str
    highest: str
    starts_us: int
    ends_us: int
    purpose: str
    authorised_by: str


def _values(row: object) -> dict[str, object]:
    return {name: getattr(row, name) for name in row.__slots__}  # type: ignore[attr-defined]


class DutiesStore:
    """Duty tables over a :class:`Store`'s engine and transactions."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def commit(
        self,
        *,
        items: Sequence[NewItem] = (),
        ops: Sequence[Op] = (),
        outbox: Sequence[object] = (),
        inventory: Sequence[InventoryEntry] = (),
        audit: Sequence[AuditRow] = (),
    ) -> list[int]:
        """New items, then each op, outbox rows, inventory and audit: one transaction."""
        with self.store._begin() as conn:
            seqs = self.store._insert_items(conn, items) if items else []
            for op in ops:
                op(conn)
            if outbox:
                conn.execute(
                    insert(t.outbox), [{k: v for k, v in _values(r).items() if k != "seq"} for r in outbox]
                )
            self.store._inventory(conn, inventory, {})
            self.store._audit(conn, audit)
            return seqs

    # --- ops: writes for commit() ---

    @staticmethod
    def link_sources(item_id: str, sources: Sequence[tuple[str, str]]) -> Op:
        def run(conn: Connection) -> None:
            seq = conn.execute(select(t.items.c.seq).where(t.items.c.id == item_id)).scalar_one()
            conn.execute(
                insert(t.item_sources),
                [{"item_seq": seq, "source_id": s, "kind": k} for s, k in sources],
            )

        return run

    @staticmethod
    def relabel(
        item_id: str,
        expected_version: int,
        version: int,
        label: str,
        classification: str,
        payload: bytes,
        origin_jws: bytes | None,
        at_us: int = 0,
        expected_label: str | None = None,
        portions: tuple[str, int] | None = None,
        payload_size: int | None = None,
    ) -> Op:
        """Replace label and sealed payload together, only if the item still has ``expected_version``
        (and, given ``expected_label``, still that label: this node's level applied to a received
        item changes the label, not the originator's version).

        A new label is a new version of the item: it gets a new date-added (TAXII readers see it).
        ``portions``: of an item in portions, the marks of the portions now held and their size;
        ``payload_size``: of an item sealed again with another payload (a copy without a portion)."""
        more: dict[str, object] = (
            {} if portions is None else {"portions": portions[0], "payload_size": portions[1]}
        )
        if payload_size is not None:
            more["payload_size"] = payload_size

        def run(conn: Connection) -> None:
            added = allocate_added(conn, 1, at_us)
            done = conn.execute(
                update(t.items)
                .where(
                    and_(
                        t.items.c.id == item_id,
                        t.items.c.label_version == expected_version,
                        t.items.c.state == "held",
                        true() if expected_label is None else t.items.c.label == expected_label,
                    )
                )
                .values(
                    label=label,
                    classification=classification,
                    label_version=version,
                    payload=payload,
                    origin_jws=origin_jws,
                    added_us=added,
                    **more,
                )
            ).rowcount
            if not done:
                raise ConflictError(f"item {item_id} changed meanwhile (label version {expected_version})")

        return run

    @staticmethod
    def withdraw(item_id: str, state: str) -> Op:
        """The item is destroyed or recalled: the payload and the signed copy go, the record stays."""

        def run(conn: Connection) -> None:
            done = conn.execute(
                update(t.items)
                .where(and_(t.items.c.id == item_id, t.items.c.state == "held"))
                .values(state=state, payload=b"", origin_jws=None)
            ).rowcount
            if not done:
                raise ConflictError(f"item {item_id} is no longer held here")

        return run

    @staticmethod
    def put(table_name: str, row: object, *, replace_keys: Sequence[str] = ()) -> Op:
        """Insert ``row`` (a row dataclass or a dict) into a duty table, after deleting the row with
        the same ``replace_keys``."""
        table = t.metadata.tables[table_name]
        values = dict(row) if isinstance(row, dict) else _values(row)

        def run(conn: Connection) -> None:
            if replace_keys:
                conn.execute(table.delete().where(and_(*(table.c[k] == values[k] for k in replace_keys))))
            conn.execute(insert(table), values)
            if table_name == "visits":  # the kernel keeps visits read: every process reads them again
                bump(conn, VISITS)

        return run

    @staticmethod
    def end_visit(visit_id: str, was_us: int, ends_us: int) -> Op:
        """A visit ends earlier: at ``ends_us``, if it still ends at ``was_us`` (compare and set: two
        officers shortening it at once, the second is told); every process reads visits again."""

        def run(conn: Connection) -> None:
            table = t.visits
            moved = update(table).where(and_(table.c.id == visit_id, table.c.ends_us == was_us))
            done = conn.execute(moved.values(ends_us=ends_us)).rowcount
            if not done:
                raise ConflictError(f"visit {visit_id} was changed meanwhile: read it again")
            bump(conn, VISITS)

        return run

    @staticmethod
    def drop_label_change(item_id: str, version: int) -> Op:
        """Forget one kept change (a change kept for an item that has arrived, or kept too long)."""

        def run(conn: Connection) -> None:
            table = t.label_changes
            conn.execute(table.delete().where(and_(table.c.item_id == item_id, table.c.version == version)))

        return run

    @staticmethod
    def ack(item_id: str, version: int, party: str, state: str, at_us: int, detail: str) -> Op:
        """A holder's acknowledgement settles its pending row (a late or repeated one changes nothing)."""

        def run(conn: Connection) -> None:
            conn.execute(
                update(t.label_acks)
                .where(
                    and_(
                        t.label_acks.c.item_id == item_id,
                        t.label_acks.c.version == version,
                        t.label_acks.c.party == party,
                    )
                )
                .values(state=state, at_us=at_us, detail=detail)
            )

        return run

    @staticmethod
    def bump_version(item_id: str, expected_version: int, version: int) -> Op:
        """A new label version with the label unchanged (the originator's own item, after a recall)."""

        def run(conn: Connection) -> None:
            done = conn.execute(
                update(t.items)
                .where(and_(t.items.c.id == item_id, t.items.c.label_version == expected_version))
                .values(label_version=version)
            ).rowcount
            if not done:
                raise ConflictError(f"item {item_id} changed meanwhile (label version {expected_version})")

        return run

    @staticmethod
    def cancel(msg_id: str, reason: str, at_us: int) -> Op:
        """A queued message that must not leave any more: undeliverable, with the reason."""

        def run(conn: Connection) -> None:
            conn.execute(
                update(t.outbox)
                .where(and_(t.outbox.c.msg_id == msg_id, t.outbox.c.state == "pending"))
                .values(state="undeliverable", last_error=reason, updated_us=at_us)
            )

        return run

    @staticmethod
    def replace_envelope(msg_id: str, envelope: str) -> Op:
        """A queued release re-sealed (same message id) after its item's label changed."""

        def run(conn: Connection) -> None:
            conn.execute(
                update(t.outbox)
                .where(and_(t.outbox.c.msg_id == msg_id, t.outbox.c.state == "pending"))
                .values(envelope=envelope)
            )

        return run

    @staticmethod
    def mark_sent(item_id: str, holder: str, at_us: int) -> Op:
        def run(conn: Connection) -> None:
            conn.execute(
                update(t.destructions)
                .where(and_(t.destructions.c.item_id == item_id, t.destructions.c.holder == holder))
                .values(sent_us=at_us)
            )

        return run

    # --- reads ---

    def derived_from(self, source_id: str) -> list[tuple[str, str]]:
        """(item id, kind) of the copies and derivatives made directly from ``source_id``."""
        query = (
            select(t.items.c.id, t.item_sources.c.kind)
            .join(t.items, t.items.c.seq == t.item_sources.c.item_seq)
            .where(t.item_sources.c.source_id == source_id)
            .order_by(t.items.c.seq)
        )
        with self.store._read() as conn:
            return [(r[0], r[1]) for r in conn.execute(query)]

    def sources_of(self, item_id: str) -> list[tuple[str, str]]:
        query = (
            select(t.item_sources.c.source_id, t.item_sources.c.kind)
            .join(t.items, t.items.c.seq == t.item_sources.c.item_seq)
            .where(t.items.c.id == item_id)
            .order_by(t.item_sources.c.source_id)
        )
        with self.store._read() as conn:
            return [(r[0], r[1]) for r in conn.execute(query)]

    def sent_to(self, item_id: str) -> list[tuple[str, str]]:
        """(next hop, final recipient) for each delivery of ``item_id`` from this node."""
        query = (
            select(t.inventory.c.party, t.inventory.c.detail)
            .join(t.items, t.items.c.seq == t.inventory.c.item_seq)
            .where(and_(t.items.c.id == item_id, t.inventory.c.kind == "sent"))
            .order_by(t.inventory.c.seq)
        )
        with self.store._read() as conn:
            rows = conn.execute(query).all()
        out: list[tuple[str, str]] = []
        for party, detail in rows:
            pair = (str(party), str(json.loads(detail).get("final_recipient") or party))
            if pair not in out:
                out.append(pair)
        return out

    def pending_releases(self, item_id: str) -> list[OutboxRow]:
        """Releases of ``item_id`` queued here and not yet delivered: waiting or being sent
        (``pending``), or gone by file and not yet signed for (``exported``)."""
        query = OUTBOX.where(
            and_(
                t.outbox.c.state.in_(("pending", "exported")),
                t.outbox.c.kind == "item",
                t.outbox.c.item_id == item_id,
            )
        )
        with self.store._read() as conn:
            return [_outbox_row(r._mapping) for r in conn.execute(query.order_by(t.outbox.c.seq))]

    def duty_messages(self, item_id: str) -> list[OutboxRow]:
        """Duty messages about ``item_id`` queued here (any state), oldest first."""
        query = OUTBOX.where(and_(t.outbox.c.kind == "duty", t.outbox.c.item_id == item_id))
        with self.store._read() as conn:
            return [_outbox_row(r._mapping) for r in conn.execute(query.order_by(t.outbox.c.seq))]

    def items_with_label_changes(self, item_ids: Sequence[str]) -> set[str]:
        """Which of ``item_ids`` have label changes kept here (a few queries for many ids)."""
        wanted = list(dict.fromkeys(item_ids))
        found: set[str] = set()
        with self.store._read() as conn:  # each chunk's statement its own snapshot, as in READ COMMITTED
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                query = (
                    select(t.label_changes.c.item_id)
                    .where(among(conn, t.label_changes.c.item_id, chunk))
                    .distinct()
                )
                found |= {r[0] for r in conn.execute(query)}
        return found

    def waiting_changes(self, prefix: str) -> list[LabelChangeRow]:
        """The changes kept under keys starting with ``prefix`` (an originator's changes kept for
        items not yet held here), oldest received first."""
        table = t.label_changes
        query = select(table).where(table.c.item_id.startswith(prefix, autoescape=True))
        with self.store._read() as conn:
            return [LabelChangeRow(**r._mapping) for r in conn.execute(query.order_by(table.c.applied_us))]

    def label_changes(self, item_id: str) -> list[LabelChangeRow]:
        query = select(t.label_changes).where(t.label_changes.c.item_id == item_id)
        with self.store._read() as conn:
            return [
                LabelChangeRow(**r._mapping) for r in conn.execute(query.order_by(t.label_changes.c.version))
            ]

    def acks(self, item_id: str) -> list[LabelAckRow]:
        query = select(t.label_acks).where(t.label_acks.c.item_id == item_id)
        with self.store._read() as conn:
            return [
                LabelAckRow(**r._mapping)
                for r in conn.execute(query.order_by(t.label_acks.c.version, t.label_acks.c.party))
            ]

    def all_acks(self) -> list[LabelAckRow]:
        with self.store._read() as conn:
            return [LabelAckRow(**r._mapping) for r in conn.execute(select(t.label_acks))]

    def pending_acks(self) -> list[LabelAckRow]:
        query = select(t.label_acks).where(t.label_acks.c.state == "pending")
        with self.store._read() as conn:
            return [
                LabelAckRow(**r._mapping)
                for r in conn.execute(query.order_by(t.label_acks.c.item_id, t.label_acks.c.version))
            ]

    def destruction(self, item_id: str, holder: str) -> DestructionRow | None:
        query = select(t.destructions).where(
            and_(t.destructions.c.item_id == item_id, t.destructions.c.holder == holder)
        )
        with self.store._read() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else DestructionRow(**row._mapping)

    def purpose_ends(self) -> dict[str, dict[str, object]]:
        """item id -> the holder's record that the item's purpose has ended."""
        with self.store._read() as conn:
            return {r.item_id: dict(r._mapping) for r in conn.execute(select(t.purpose_ends))}

    def destructions(self, item_id: str | None = None) -> list[DestructionRow]:
        query = select(t.destructions)
        if item_id is not None:
            query = query.where(t.destructions.c.item_id == item_id)
        with self.store._read() as conn:
            return [
                DestructionRow(**r._mapping) for r in conn.execute(query.order_by(t.destructions.c.at_us))
            ]

    def portion_destructions(self, item_id: str | None = None) -> list[PortionDestructionRow]:
        query = select(t.portion_destructions)
        if item_id is not None:
            query = query.where(t.portion_destructions.c.item_id == item_id)
        with self.store._read() as conn:
            rows = conn.execute(query.order_by(t.portion_destructions.c.at_us))
            return [PortionDestructionRow(**r._mapping) for r in rows]

    def incident(self, incident_id: str) -> IncidentRow | None:
        with self.store._read() as conn:
            row = conn.execute(select(t.incidents).where(t.incidents.c.id == incident_id)).one_or_none()
        return None if row is None else IncidentRow(**row._mapping)

    def incidents(self) -> list[IncidentRow]:
        with self.store._read() as conn:
            return [
                IncidentRow(**r._mapping)
                for r in conn.execute(select(t.incidents).order_by(t.incidents.c.updated_us))
            ]

    def feedback(self, item_id: str) -> list[FeedbackRow]:
        """The feedback about ``item_id`` kept here, oldest first."""
        query = select(t.feedback).where(t.feedback.c.item_id == item_id).order_by(t.feedback.c.at_us)
        with self.store._read() as conn:
            return [FeedbackRow(**r._mapping) for r in conn.execute(query)]

    def feedback_entry(self, holder: str, feedback_id: str) -> FeedbackRow | None:
        query = select(t.feedback).where(and_(t.feedback.c.holder == holder, t.feedback.c.id == feedback_id))
        with self.store._read() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else FeedbackRow(**row._mapping)

    def feedback_count(self, item_id: str, holder: str) -> int:
        query = select(func.count()).where(
            and_(t.feedback.c.item_id == item_id, t.feedback.c.holder == holder)
        )
        with self.store._read() as conn:
            return int(conn.execute(query).scalar_one())

    def visits_of(self, person_id: str) -> list[VisitRow]:
        query = select(t.visits).where(t.visits.c.person_id == person_id).order_by(t.visits.c.starts_us)
        with self.store._read() as conn:
            return [VisitRow(**r._mapping) for r in conn.execute(query)]

    def visit(self, visit_id: str) -> VisitRow | None:
        with self.store._read() as conn:
            row = conn.execute(select(t.visits).where(t.visits.c.id == visit_id)).one_or_none()
        return None if row is None else VisitRow(**row._mapping)

    def visits(self) -> list[VisitRow]:
        with self.store._read() as conn:
            return [
                VisitRow(**r._mapping) for r in conn.execute(select(t.visits).order_by(t.visits.c.starts_us))
            ]

    def authorities(self, party: str | None = None) -> list[dict[str, object]]:
        query = select(t.authorities)
        if party is not None:
            query = query.where(t.authorities.c.party == party)
        with self.store._read() as conn:
            rows = conn.execute(query.order_by(t.authorities.c.party, t.authorities.c.id))
            return [dict(r._mapping) for r in rows]

    def rules(self, party: str | None = None) -> list[dict[str, object]]:
        query = select(t.national_rules)
        if party is not None:
            query = query.where(t.national_rules.c.party == party)
        with self.store._read() as conn:
            rows = conn.execute(query.order_by(t.national_rules.c.party, t.national_rules.c.version))
            return [dict(r._mapping) for r in rows]

    def last_rules_version(self, party: str) -> int:
        with self.store._read() as conn:
            found = conn.execute(
                select(func.max(t.national_rules.c.version)).where(t.national_rules.c.party == party)
            ).scalar_one()
        return int(found or 0)

    def flags(self, item_id: str | None = None) -> list[dict[str, object]]:
        query = select(t.item_flags)
        if item_id is not None:
            query = query.where(t.item_flags.c.item_id == item_id)
        with self.store._read() as conn:
            rows = conn.execute(query.order_by(t.item_flags.c.at_us, t.item_flags.c.item_id))
            return [dict(r._mapping) for r in rows]

    def items_where(self, *, originator: str | None = None, state: str | None = None) -> list[ItemRow]:
        """Item rows without payloads (for reports and flags): a full scan, in ``seq`` order."""
        columns = [c for c in t.items.c if c.name not in ("payload", "origin_jws")]
        query = select(*columns)
        if originator is not None:
            query = query.where(t.items.c.originator == originator)
        if state is not None:
            query = query.where(t.items.c.state == state)
        with self.store._read() as conn:
            return [ItemRow(**r._mapping, payload=b"") for r in conn.execute(query.order_by(t.items.c.seq))]

    def sent_by_party(self) -> dict[str, list[tuple[str, str]]]:
        """Per final recipient: (item id, next hop) for every item this node sent."""
        query = (
            select(t.items.c.id, t.inventory.c.party, t.inventory.c.detail)
            .join(t.items, t.items.c.seq == t.inventory.c.item_seq)
            .where(t.inventory.c.kind == "sent")
            .order_by(t.inventory.c.seq)
        )
        out: dict[str, list[tuple[str, str]]] = {}
        with self.store._read() as conn:
            for item_id, hop, detail in conn.execute(query):
                final = str(json.loads(detail).get("final_recipient") or hop)
                for party in {hop, final}:
                    pair = (str(item_id), str(hop))
                    if pair not in out.setdefault(party, []):
                        out[party].append(pair)
        return out
