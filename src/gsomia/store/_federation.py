"""The store's federation tables: peers, the transactional outbox, the inbox, consents.

Writes that belong together happen in one transaction with their audit rows and
inventory entries (a release writes the envelope and the decision at once; a
receipt stores the item, the inbox row and the audit records at once).
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    Integer,
    Select,
    Text,
    Update,
    and_,
    bindparam,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)

from gsomia.store import _tables as t
from gsomia.store._shared import CONSENTS, PEERS, bump
from gsomia.store._store import (
    AuditRow,
    InventoryEntry,
    NewItem,
    Store,
    _insert_new,
    among,
    insert_rows,
    moved,
    queued,
)

__all__ = ["ConsentRequestRow", "ConsentRow", "FederationStore", "InboxRow", "OutboxRow", "PeerRow"]


@dataclass(frozen=True, slots=True)
class PeerRow:
    party: str
    document: str
    agreements: str
    registered_us: int
    updated_us: int


@dataclass(frozen=True, slots=True)
class OutboxRow:
    msg_id: str
    kind: str
    item_id: str | None
    recipient: str
    final_recipient: str
    request: str
    decision: str
    envelope: str
    state: str
    attempts: int
    next_attempt_us: int
    created_us: int
    updated_us: int
    last_error: str | None = None
    receipt: str | None = None
    seq: int = 0


@dataclass(frozen=True, slots=True)
class InboxRow:
    msg_id: str
    sender: str
    kind: str
    item_id: str | None
    received_us: int
    status: str
    receipt: str
    receipt_id: str | None = None  # a batch's receipt, stored once in ``receipts`` under this key


@dataclass(frozen=True, slots=True)
class ConsentRow:
    id: str
    kind: str
    originator: str
    recipient: str
    item_id: str | None
    holder: str | None
    hub: str | None
    given_us: int
    expires_us: int | None
    reference: str
    jws: str


@dataclass(frozen=True, slots=True)
class ConsentRequestRow:
    id: str
    item_id: str
    originator: str
    holder: str
    third_party: str
    purpose: str
    reason: str
    state: str
    created_us: int
    decided_us: int | None = None
    decided_by: str | None = None
    answer: str | None = None


_IN_CHUNK = 500  # ids per IN (...) list


def _insert_consents(conn: Connection, consents: Sequence[ConsentRow]) -> None:
    """Store consents; a standing one (no item: the stream's relay plans read them) moves the
    consents generation on, so every process of the node plans again with it."""
    conn.execute(insert(t.consents), [_values(c) for c in consents])
    if any(c.item_id is None for c in consents):
        bump(conn, CONSENTS)


_INBOX_COLUMNS = ("msg_id", "sender", "kind", "item_id", "received_us", "status", "receipt", "receipt_id")


def _inbox_values(r: InboxRow) -> tuple[Any, ...]:
    """An inbox row's values in ``_INBOX_COLUMNS``' order; a batch's receipt is stored once (in
    ``receipts``), its rows name it by ``receipt_id`` and keep an empty ``receipt``."""
    receipt = "" if r.receipt_id else r.receipt
    return (r.msg_id, r.sender, r.kind, r.item_id, r.received_us, r.status, receipt, r.receipt_id)


def _values(row: object) -> dict[str, object]:
    return {name: getattr(row, name) for name in row.__slots__ if name != "seq"}  # type: ignore[attr-defined]


_OUTBOX_FIELDS = tuple(c.name for c in t.outbox.c if c.name not in ("seq", "receipt_id", "decision_id"))
# a row's values in ``_OUTBOX_FIELDS``' order, read in one call (a generator of getattr a column
# cost a release of 1,000 items more than its insert's statement: issue 18)
_outbox_values = operator.attrgetter(*_OUTBOX_FIELDS)
_DECISION_AT = _OUTBOX_FIELDS.index("decision")
# what ``_insert_outbox`` writes: the fields, the decision's among them (empty where it is shared), and
# the key of the shared decision
_OUTBOX_COLUMNS = (*_OUTBOX_FIELDS, "decision_id")
# a decision text longer than its key is stored once (``decisions``): every release decision is
_SHARED_DECISION = 64


def _insert_outbox(conn: Connection, rows: Sequence[OutboxRow]) -> None:
    """Queue ``rows``: one statement for a release's selection (``insert_rows``; issue 18). Each
    release decision goes once into ``decisions`` under the SHA-256 of its text, the rows naming it
    by ``decision_id`` with an empty ``decision`` (a selection's items decided alike share one text of
    ~1.4 KB: it was written, checkpointed and read back once a row); readers get the text either way."""
    if not rows:
        return
    keys: dict[str, str] = {}  # by text: a selection's rows share the text object, hashed once
    values: list[tuple[Any, ...]] = []
    for r in rows:
        row = _outbox_values(r)
        text = r.decision
        if len(text) <= _SHARED_DECISION:
            values.append((*row, None))
            continue
        key = keys.get(text)
        if key is None:
            key = keys[text] = hashlib.sha256(text.encode()).hexdigest()
        values.append((*row[:_DECISION_AT], "", *row[_DECISION_AT + 1 :], key))
    if keys:
        conn.execute(_insert_new(conn, t.decisions), [{"id": k, "decision": d} for d, k in keys.items()])
    insert_rows(conn, t.outbox, values, _OUTBOX_COLUMNS)
    queued(conn)  # the delivery worker is woken by this commit, not at the end of its pause


def _shared_receipt(table: Any) -> Select[Any]:
    """``table``'s rows (inbox or outbox) with each one's receipt: its own, or the batch receipt
    its ``receipt_id`` names (stored once in ``receipts``)."""
    columns = [c for c in table.c if c.name != "receipt"]
    receipt = func.coalesce(t.receipts.c.receipt, table.c.receipt).label("receipt")
    return select(*columns, receipt).select_from(
        table.outerjoin(t.receipts, t.receipts.c.id == table.c.receipt_id)
    )


def _shared_decision(query: Select[Any]) -> Select[Any]:
    """``query`` of the outbox (``_shared_receipt``) with each row's decision: its own, or the shared
    one its ``decision_id`` names (stored once in ``decisions``)."""
    decision = func.coalesce(t.decisions.c.decision, t.outbox.c.decision).label("decision")
    columns = [c if c.name != "decision" else decision for c in query.selected_columns]
    return query.with_only_columns(*columns).outerjoin(
        t.decisions, t.decisions.c.id == t.outbox.c.decision_id
    )


# select(t.outbox) with every row's receipt and decision
OUTBOX = _shared_decision(_shared_receipt(t.outbox))
INBOX = _shared_receipt(t.inbox)


# What a delivery round reads of each entry due (``FederationStore.due``), in ``OutboxRow``'s field
# order: every column but the decision taken at release, which a delivery never reads (it decides
# anew at the instant of sending) and which is most of a row (~2.4 KB), and the receipt, which a
# pending entry has none of (issue 18: a round read 1,000 whole rows, joined to the receipts)
_DUE_COLUMNS = [
    literal("").label("decision")
    if f.name == "decision"
    else null().label("receipt")
    if f.name == "receipt"
    else t.outbox.c[f.name]
    for f in fields(OutboxRow)
]


def _due_query(after_latest: bool, to_recipients: bool, after_seq: bool = False) -> Select[Any]:
    """``FederationStore.due``'s query, built once for each of its eight shapes and executed with
    its values: the node's delivery loop asks it every round (five times a second, most finding
    nothing), where building the expression and its cache key each time cost more than the
    database's own work (benchmarks/JOURNAL.md, bench_stream)."""
    o = t.outbox.c
    when = o.next_attempt_us <= bindparam("now_us")
    if after_latest:
        when = or_(when, o.next_attempt_us > bindparam("latest_us"))
    if to_recipients:
        when = and_(when, o.recipient.in_(bindparam("recipients", expanding=True)))
    if after_seq:
        when = and_(when, o.seq > bindparam("after_seq", type_=Integer))
    return (
        select(*_DUE_COLUMNS)
        .where(and_(o.state == "pending", when))
        .order_by(o.seq)
        .limit(bindparam("due_limit", type_=Integer))
    )


_DUE = {
    (latest, recipients, after): _due_query(latest, recipients, after)
    for latest in (False, True)
    for recipients in (False, True)
    for after in (False, True)
}


def _outbox_row(mapping: Any) -> OutboxRow:
    return OutboxRow(**{k: v for k, v in mapping.items() if k not in ("receipt_id", "decision_id")})


def _store_receipts(conn: Connection, shared: dict[str, str]) -> None:
    """Batch receipts, once each (one already stored, by an earlier delivery, is left as it is)."""
    if shared:
        conn.execute(_insert_new(conn, t.receipts), [{"id": k, "receipt": v} for k, v in shared.items()])


_o = t.outbox.c
# The outcome of a delivery attempt (FederationStore.settle_many), built once and executed per entry.
# ``checked``: a compare-and-set on the state, attempt count and envelope the attempt started from.
_SETTLE = (
    update(t.outbox)
    .where(
        and_(
            _o.msg_id == bindparam("m_id"),
            or_(
                bindparam("checked", type_=Integer) == 0,
                and_(
                    _o.state == bindparam("e_state"),
                    _o.attempts == bindparam("e_attempts"),
                    _o.envelope == bindparam("e_envelope"),
                ),
            ),
        )
    )
    .values(
        state=bindparam("n_state"),
        updated_us=bindparam("n_updated_us"),
        attempts=bindparam("n_attempts"),
        next_attempt_us=bindparam("n_next_attempt_us"),
        last_error=bindparam("n_last_error"),
        receipt=func.coalesce(bindparam("n_receipt", type_=Text), _o.receipt),
        receipt_id=func.coalesce(bindparam("n_receipt_id", type_=Text), _o.receipt_id),
        envelope=func.coalesce(bindparam("n_envelope", type_=Text), _o.envelope),
    )
)
# a receipt for an entry that moved on in flight: delivered all the same, keeping its reason
_SETTLE_LATE = (
    update(t.outbox)
    .where(and_(_o.msg_id == bindparam("m_id"), _o.state != "delivered"))
    .values(
        state=bindparam("n_state"),
        updated_us=bindparam("n_updated_us"),
        attempts=bindparam("n_attempts"),
        next_attempt_us=bindparam("n_next_attempt_us"),
        receipt=func.coalesce(bindparam("n_receipt", type_=Text), _o.receipt),
        receipt_id=func.coalesce(bindparam("n_receipt_id", type_=Text), _o.receipt_id),
    )
)


# PostgreSQL: ``_SETTLE`` for a whole batch in one statement, its values as one array per parameter
_SETTLE_NAMES = (
    "m_id", "checked", "e_state", "e_attempts", "e_envelope", "n_state", "n_updated_us", "n_attempts",
    "n_next_attempt_us", "n_last_error", "n_receipt", "n_receipt_id", "n_envelope",
)  # fmt: skip
_SETTLE_MANY = (
    "UPDATE outbox SET state = v.n_state, updated_us = v.n_updated_us, attempts = v.n_attempts, "
    "next_attempt_us = v.n_next_attempt_us, last_error = v.n_last_error, "
    "receipt = coalesce(v.n_receipt, outbox.receipt), "
    "receipt_id = coalesce(v.n_receipt_id, outbox.receipt_id), "
    "envelope = coalesce(v.n_envelope, outbox.envelope) "
    "FROM unnest(%b::text[], %b::int[], %b::text[], %b::int[], %b::text[], %b::text[], %b::bigint[], "
    "%b::int[], %b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[]) "
    "AS v(m_id, checked, e_state, e_attempts, e_envelope, n_state, n_updated_us, n_attempts, "
    "n_next_attempt_us, n_last_error, n_receipt, n_receipt_id, n_envelope) "
    "WHERE outbox.msg_id = v.m_id AND (v.checked = 0 OR (outbox.state = v.e_state "
    "AND outbox.attempts = v.e_attempts AND outbox.envelope = v.e_envelope)) "
    "RETURNING outbox.msg_id"
)


def _settle_arrays(params: Sequence[dict[str, Any]]) -> tuple[list[Any], ...]:
    return tuple([p[name] for p in params] for name in _SETTLE_NAMES)


# SQLite: the same statement over the batch's rows as a ``VALUES`` list (UPDATE ... FROM and RETURNING,
# SQLite 3.35), at most ``_SQLITE_SETTLE_ROWS`` rows a statement (13 placeholders a row)
_SQLITE_SETTLE_ROWS = 500
_SQLITE_ROW = "(" + ",".join("?" * len(_SETTLE_NAMES)) + ")"


def _sqlite_settle_many(rows: int) -> str:
    """``_SETTLE_MANY`` for SQLite, for ``rows`` rows of ``_SETTLE_NAMES``."""
    head = f"WITH v({', '.join(_SETTLE_NAMES)}) AS (VALUES {','.join([_SQLITE_ROW] * rows)}) "
    return head + (  # noqa: S608 - fixed names and "?" marks only
        "UPDATE outbox SET state = v.n_state, updated_us = v.n_updated_us, attempts = v.n_attempts, "
        "next_attempt_us = v.n_next_attempt_us, last_error = v.n_last_error, "
        "receipt = coalesce(v.n_receipt, outbox.receipt), "
        "receipt_id = coalesce(v.n_receipt_id, outbox.receipt_id), "
        "envelope = coalesce(v.n_envelope, outbox.envelope) "
        "FROM v WHERE outbox.msg_id = v.m_id AND (v.checked = 0 OR (outbox.state = v.e_state "
        "AND outbox.attempts = v.e_attempts AND outbox.envelope = v.e_envelope)) "
        "RETURNING msg_id"
    )


_DRIVER_SQL: dict[tuple[int, str], tuple[str, tuple[str, ...], dict[str, Any]]] = {}


def _driver_sql(statement: Update, dialect: Dialect) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """``statement`` compiled once for ``dialect``'s driver: its SQL text, its parameters' names in
    the order of its positional placeholders, and the values of the literals it binds itself."""
    key = (id(statement), dialect.name)
    found = _DRIVER_SQL.get(key)
    if found is None:
        compiled = statement.compile(dialect=dialect)
        found = (compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params))
        _DRIVER_SQL[key] = found
    return found


def _settle_params(outcome: dict[str, Any], now_us: int) -> dict[str, Any]:
    expected: OutboxRow | None = outcome.get("expected")
    return {
        "m_id": outcome["msg_id"],
        "checked": int(expected is not None),
        "e_state": expected.state if expected is not None else "",
        "e_attempts": expected.attempts if expected is not None else 0,
        "e_envelope": expected.envelope if expected is not None else "",
        "n_state": outcome["state"],
        "n_updated_us": now_us,
        "n_attempts": outcome["attempts"],
        "n_next_attempt_us": outcome["next_attempt_us"],
        "n_last_error": outcome.get("last_error"),
        # a batch's receipt is stored once (``receipts``) and named by its key
        "n_receipt": None if outcome.get("receipt_id") else outcome.get("receipt"),
        "n_receipt_id": outcome.get("receipt_id"),
        "n_envelope": outcome.get("envelope"),
    }


class FederationStore:
    """Federation tables over a :class:`Store`'s engine and transactions."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- peers ---

    def put_peer(self, row: PeerRow, expected: int, audit: Sequence[AuditRow] = ()) -> bool:
        """Store a partner's registration if the registrations are still those the caller read at
        generation ``expected`` of the peers (compare-and-set): ``False``, with nothing written, if
        any process changed one since (a revocation, another document), so the caller decides again
        on what is there now instead of writing over it."""
        with self.store._begin() as conn:
            swapped = conn.execute(
                update(t.generations)
                .where(t.generations.c.name == PEERS, t.generations.c.value == expected)
                .values(value=expected + 1)
            ).rowcount
            if not swapped:
                return False
            moved(conn, PEERS)  # every process of the node reads its peers again
            conn.execute(t.peers.delete().where(t.peers.c.party == row.party))
            conn.execute(insert(t.peers), _values(row))
            self.store._audit(conn, audit)
            return True

    def peers(self) -> list[PeerRow]:
        with self.store._read() as conn:
            return [PeerRow(**r._mapping) for r in conn.execute(select(t.peers).order_by(t.peers.c.party))]

    # --- outbox ---

    def enqueue(
        self,
        rows: Sequence[OutboxRow],
        audit: Sequence[AuditRow] = (),
        inventory: Sequence[InventoryEntry] = (),
        consents: Sequence[ConsentRow] = (),
    ) -> None:
        """Write outbox rows (and what goes with them) in one transaction."""
        with self.store._begin() as conn:
            if consents:
                _insert_consents(conn, consents)
            _insert_outbox(conn, rows)
            self.store._inventory(conn, inventory, {})
            # last: a selection's records are leaves as written (PostgreSQL), under the tree's lock
            self.store._audit_leaves(conn, audit)

    def due(
        self,
        now_us: int,
        limit: int,
        *,
        latest_us: int | None = None,
        recipients: Collection[str] | None = None,
        after_seq: int = 0,
    ) -> list[OutboxRow]:
        """Pending entries due at ``now_us``; with ``latest_us``, also those set for after it (no
        retry is ever set that far ahead: the clock was put back since, and they are due now);
        with ``recipients``, only those whose next hop is one of them (the peers whose delivery
        this process holds); with ``after_seq``, only those queued after that entry (a delivery
        run reading what was queued since it read last, its own entries on their way left out).
        Each row's ``decision`` is left empty (``_DUE_COLUMNS``): the delivery decides again, and
        the compare-and-set of its outcome does not look at it."""
        if recipients is not None and not recipients:
            return []
        query = _DUE[(latest_us is not None, recipients is not None, bool(after_seq))]
        values: dict[str, Any] = {
            "now_us": now_us, "latest_us": latest_us, "due_limit": limit, "after_seq": after_seq
        }  # fmt: skip
        if recipients is not None:
            values["recipients"] = sorted(recipients)
        with self.store._read() as conn:
            return [OutboxRow(*r) for r in conn.execute(query, values)]

    def pending_recipients(self) -> set[str]:
        """The next hops that pending entries wait for (each one's delivery is leased apart)."""
        query = select(t.outbox.c.recipient).where(t.outbox.c.state == "pending").distinct()
        with self.store._read() as conn:
            return {r[0] for r in conn.execute(query)}

    def outbox(self, *, state: str | None = None, after_seq: int = 0, limit: int = 1000) -> list[OutboxRow]:
        query = OUTBOX.where(t.outbox.c.seq > after_seq)
        if state is not None:
            query = query.where(t.outbox.c.state == state)
        with self.store._read() as conn:
            return [
                _outbox_row(r._mapping) for r in conn.execute(query.order_by(t.outbox.c.seq).limit(limit))
            ]

    def item_messages(self, item_id: str) -> list[OutboxRow]:
        """This node's item messages (releases and relays) of ``item_id``, oldest first."""
        query = OUTBOX.where(and_(t.outbox.c.item_id == item_id, t.outbox.c.kind == "item"))
        with self.store._read() as conn:
            return [_outbox_row(r._mapping) for r in conn.execute(query.order_by(t.outbox.c.seq))]

    def item_messages_of(self, item_ids: Sequence[str]) -> dict[str, list[OutboxRow]]:
        """:meth:`item_messages` of many items at once, by item id (an item without any is missing)."""
        found: dict[str, list[OutboxRow]] = {}
        ids = list(dict.fromkeys(item_ids))
        with self.store._read() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                query = OUTBOX.where(and_(among(conn, t.outbox.c.item_id, chunk), t.outbox.c.kind == "item"))
                for r in conn.execute(query.order_by(t.outbox.c.seq)):
                    row = _outbox_row(r._mapping)
                    found.setdefault(str(row.item_id), []).append(row)
        return found

    def outbox_entry(self, msg_id: str) -> OutboxRow | None:
        with self.store._read() as conn:
            row = conn.execute(OUTBOX.where(t.outbox.c.msg_id == msg_id)).one_or_none()
        return None if row is None else _outbox_row(row._mapping)

    def settle(
        self,
        msg_id: str,
        *,
        state: str,
        now_us: int,
        attempts: int,
        next_attempt_us: int,
        last_error: str | None = None,
        receipt: str | None = None,
        envelope: str | None = None,
        audit: Sequence[AuditRow] = (),
        inventory: Sequence[InventoryEntry] = (),
        expected: OutboxRow | None = None,
    ) -> bool:
        """Record the outcome of a delivery attempt (with its audit and inventory) in one transaction;
        with ``expected``, only if the entry is still as it was read then (see :meth:`settle_many`).
        Whether it was written."""
        outcome: dict[str, Any] = dict(
            msg_id=msg_id,
            state=state,
            attempts=attempts,
            next_attempt_us=next_attempt_us,
            last_error=last_error,
            receipt=receipt,
            envelope=envelope,
            audit=audit,
            inventory=inventory,
        )
        if expected is not None:
            outcome["expected"] = expected
        return bool(self.settle_many([outcome], now_us=now_us))

    def settle_many(
        self,
        outcomes: Sequence[dict[str, Any]],
        *,
        now_us: int,
        then: Callable[[Sequence[str]], Sequence[AuditRow]] | None = None,
    ) -> list[str]:
        """Several :meth:`settle` outcomes (keyword dicts without ``now_us``) in one transaction; the
        message ids whose outcome was written.

        An outcome with ``expected`` (the :class:`OutboxRow` its attempt started from) is a
        compare-and-set: it is written only if the entry still has that state, attempt count and
        envelope. An entry a recall cancelled, or a label change re-sealed, while it was being sent
        is not put back to ``pending`` nor re-sent; only a verified receipt is still recorded (the
        receiver holds the item: the entry becomes ``delivered``, keeping the reason it was
        cancelled, and the copy is counted so that every later change reaches that holder).

        An outcome's ``audit`` records settle the entry: they are written only with its new state,
        so an entry another process settled first is not audited again by this one (a second
        ``envelope.delivered`` would read, to a partner checking the log, as a second delivery). Its
        ``heard`` records (a receipt refused: what the receiver answered this attempt) are written
        whether or not its compare-and-set won. ``then``, given the message ids written, makes the
        records that count them (a receipts file's summary), written in the same transaction: what
        this process settled, not what it tried (another process may have settled some first)."""
        written: list[str] = []
        if not outcomes:
            return written
        with self.store._begin() as conn:
            done = self._settled(conn, outcomes, now_us)
            inventory: list[InventoryEntry] = []
            shared: dict[str, str] = {}
            for outcome in outcomes:
                if outcome["msg_id"] not in done:
                    continue
                written.append(outcome["msg_id"])
                if outcome.get("receipt_id"):
                    shared[outcome["receipt_id"]] = outcome["receipt"]
                inventory += outcome.get("inventory", ())
                if outcome.get("outbox"):  # what the outcome sends on (a relay's receipt)
                    conn.execute(insert(t.outbox), [_values(r) for r in outcome["outbox"]])
                    queued(conn)
            _store_receipts(conn, shared)
            self.store._inventory(conn, inventory, {})
            # last: a batch's records are leaves as written (PostgreSQL), under the tree's lock
            self.store._audit_leaves(
                conn,
                [
                    a
                    for o in outcomes
                    for a in (*(o.get("audit", ()) if o["msg_id"] in done else ()), *o.get("heard", ()))
                ]
                + list(then(written) if then is not None else ()),
            )
        return written

    def _settled(self, conn: Connection, outcomes: Sequence[dict[str, Any]], now_us: int) -> set[str]:
        """Write the outcomes' new states; the message ids written. Each statement is built once
        (``_SETTLE``, ``_SETTLE_LATE``) and executed with each outcome's values; a batch naming each
        entry once goes as ONE statement, each row its own compare-and-set, whose ``RETURNING`` names
        the entries written (PostgreSQL: over arrays, ``_SETTLE_MANY``; SQLite: over a ``VALUES``
        list, ``_sqlite_settle_many``); an entry not named moved on in flight and goes on alone to
        the late receipt's update, as it would one by one."""
        params = [_settle_params(o, now_us) for o in outcomes]
        dialect = conn.dialect
        done: set[str] = set()
        distinct = len({p["m_id"] for p in params}) == len(params)
        if len(params) > 1 and dialect.name == "postgresql" and distinct:
            # one statement for the batch: each entry's compare-and-set is its own row's condition, and
            # RETURNING names the entries written; one that moved on is not named, and only it goes on
            # to the late receipt's update below, as it would one by one (issue 18)
            done = {row[0] for row in conn.exec_driver_sql(_SETTLE_MANY, _settle_arrays(params))}
            for p, outcome in zip(params, outcomes, strict=True):
                if p["m_id"] in done or not (p["checked"] and outcome["state"] == "delivered"):
                    continue
                if conn.execute(_SETTLE_LATE, p).rowcount:
                    done.add(p["m_id"])
            return done
        if dialect.name == "sqlite":
            # straight on the driver's cursor (the same connection, so the same transaction), without
            # SQLAlchemy's work per statement; a batch of distinct entries in one statement as on
            # PostgreSQL (its RETURNING names the entries written), else each entry's on its own
            settle, late = _driver_sql(_SETTLE, dialect), _driver_sql(_SETTLE_LATE, dialect)
            driver = conn.connection.driver_connection
            cursor = driver.cursor()  # type: ignore[union-attr]
            try:
                batch = len(params) > 1 and distinct
                if batch:
                    if not driver.in_transaction:  # type: ignore[union-attr]
                        # Python's sqlite3 opens its implicit transaction before a statement that
                        # begins INSERT, UPDATE, DELETE or REPLACE only: this one begins WITH, and
                        # alone it committed at once, the entries delivered before (and without)
                        # the batch receipt, inventory and audit written after it; a SIGKILL or a
                        # failure between left a delivered entry with no receipt stored
                        cursor.execute("BEGIN")
                    for start in range(0, len(params), _SQLITE_SETTLE_ROWS):
                        part = params[start : start + _SQLITE_SETTLE_ROWS]
                        flat = [p[name] for p in part for name in _SETTLE_NAMES]
                        done |= {row[0] for row in cursor.execute(_sqlite_settle_many(len(part)), flat)}
                for p, outcome in zip(params, outcomes, strict=True):
                    count = 0
                    if batch:
                        if p["m_id"] in done:
                            continue  # written by the batch's statement
                    else:
                        values = settle[2] | p
                        count = cursor.execute(settle[0], [values[k] for k in settle[1]]).rowcount
                    if not count and p["checked"] and outcome["state"] == "delivered":
                        # moved on while in flight, but the receiver signed for it: it holds the item
                        values = late[2] | p
                        count = cursor.execute(late[0], [values[k] for k in late[1]]).rowcount
                    if count:
                        done.add(p["m_id"])
            finally:
                cursor.close()
            return done
        for p, outcome in zip(params, outcomes, strict=True):
            count = conn.execute(_SETTLE, p).rowcount
            if not count and p["checked"] and outcome["state"] == "delivered":
                # moved on while in flight, but the receiver signed for it: it holds the item
                count = conn.execute(_SETTLE_LATE, p).rowcount
            if count:
                done.add(p["m_id"])
        return done

    def resend(self, entry: OutboxRow, envelope: str, note: str, now_us: int, audit: AuditRow) -> bool:
        """An undeliverable entry queued again with a fresh envelope, if it is still as ``entry`` was
        read (compare-and-set); with its audit record. Whether it was."""
        with self.store._begin() as conn:
            done = conn.execute(
                update(t.outbox)
                .where(
                    and_(
                        t.outbox.c.msg_id == entry.msg_id,
                        t.outbox.c.state == "undeliverable",
                        t.outbox.c.attempts == entry.attempts,
                    )
                )
                .values(
                    state="pending",
                    envelope=envelope,
                    next_attempt_us=now_us,
                    updated_us=now_us,
                    created_us=now_us,
                    last_error=note,
                )
            ).rowcount
            if done:
                self.store._audit(conn, [audit])
                queued(conn)
        return bool(done)

    # --- inbox ---

    def inbox_entries(self, msg_ids: Sequence[str]) -> dict[str, InboxRow]:
        if not msg_ids:
            return {}
        with self.store._read() as conn:
            rows = conn.execute(INBOX.where(among(conn, t.inbox.c.msg_id, msg_ids)))
            return {r.msg_id: InboxRow(**r._mapping) for r in rows}

    def inbox_entry(self, msg_id: str) -> InboxRow | None:
        with self.store._read() as conn:
            row = conn.execute(INBOX.where(t.inbox.c.msg_id == msg_id)).one_or_none()
        return None if row is None else InboxRow(**row._mapping)

    def accept(
        self,
        *,
        items: Sequence[NewItem] = (),
        inbox: Sequence[InboxRow] = (),
        inventory: Sequence[InventoryEntry] = (),
        audit: Sequence[AuditRow] = (),
        outbox: Sequence[OutboxRow] = (),
        consents: Sequence[ConsentRow] = (),
        requests: Sequence[ConsentRequestRow] = (),
        answers: Sequence[tuple[str, str, str]] = (),
        ops: Sequence[Callable[[Connection], None]] = (),
    ) -> None:
        """Everything a batch of accepted envelopes leaves behind, in one transaction.

        ``answers`` settle this node's own consent requests: (request id, state, reason);
        ``ops`` are further writes (the duties') run in the same transaction.
        """
        with self.store._begin() as conn:
            by_id: dict[str, int] = {}
            if items:
                seqs = self.store._insert_items(conn, items)
                by_id = {item.id: seq for item, seq in zip(items, seqs, strict=True)}
            if inbox:
                _store_receipts(conn, {r.receipt_id: r.receipt for r in inbox if r.receipt_id})
                insert_rows(
                    conn,
                    t.inbox,
                    [_inbox_values(r) for r in inbox],
                    _INBOX_COLUMNS,
                )
            for op in ops:
                op(conn)
            if consents:
                _insert_consents(conn, consents)
            if requests:
                conn.execute(insert(t.consent_requests), [_values(r) for r in requests])
            _insert_outbox(conn, outbox)
            for request_id, state, reason in answers:
                conn.execute(
                    update(t.consent_requests)
                    .where(t.consent_requests.c.id == request_id)
                    .values(state=state, answer=reason)
                )
            self.store._inventory(conn, inventory, by_id)
            # last: a received batch's records are leaves as written (PostgreSQL), under the tree's lock
            self.store._audit_leaves(conn, audit)

    # --- consents ---

    def has_consent(self, consent_id: str) -> bool:
        with self.store._read() as conn:
            return (
                conn.execute(select(t.consents.c.id).where(t.consents.c.id == consent_id)).first() is not None
            )

    def consents_for(self, originator: str, item_id: str) -> list[ConsentRow]:
        """Consents of ``originator`` naming ``item_id``, and its standing ones (no item)."""
        query = select(t.consents).where(
            and_(
                t.consents.c.originator == originator,
                (t.consents.c.item_id == item_id) | t.consents.c.item_id.is_(None),
            )
        )
        with self.store._read() as conn:
            return [ConsentRow(**r._mapping) for r in conn.execute(query.order_by(t.consents.c.given_us))]

    def consents_for_many(self, wanted: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[ConsentRow]]:
        """:meth:`consents_for` of every (originator, item id) in ``wanted``, in a few queries."""
        pairs = list(dict.fromkeys(wanted))
        if not pairs:
            return {}
        originators = sorted({o for o, _ in pairs})
        found: dict[str, ConsentRow] = {}
        with self.store._read() as conn:
            standing = select(t.consents).where(
                and_(t.consents.c.originator.in_(originators), t.consents.c.item_id.is_(None))
            )
            found |= {r.id: ConsentRow(**r._mapping) for r in conn.execute(standing)}
            ids = list(dict.fromkeys(i for _, i in pairs))
            for start in range(0, len(ids), _IN_CHUNK):
                named = select(t.consents).where(
                    and_(
                        t.consents.c.originator.in_(originators),
                        among(conn, t.consents.c.item_id, ids[start : start + _IN_CHUNK]),
                    )
                )
                found |= {r.id: ConsentRow(**r._mapping) for r in conn.execute(named)}
        by_key: dict[tuple[str, str | None], list[ConsentRow]] = {}
        for row in sorted(found.values(), key=lambda r: r.given_us):  # as consents_for orders them
            by_key.setdefault((row.originator, row.item_id), []).append(row)
        return {
            (originator, item_id): sorted(
                by_key.get((originator, item_id), []) + by_key.get((originator, None), []),
                key=lambda r: r.given_us,
            )
            for originator, item_id in pairs
        }

    def consent_request(self, request_id: str) -> ConsentRequestRow | None:
        with self.store._read() as conn:
            row = conn.execute(
                select(t.consent_requests).where(t.consent_requests.c.id == request_id)
            ).one_or_none()
        return None if row is None else ConsentRequestRow(**row._mapping)

    def consent_requests(
        self, state: str | None = None, *, after: tuple[int, str] | None = None, limit: int | None = None
    ) -> list[ConsentRequestRow]:
        """Requests oldest first (by creation, then id), from after the key ``after``, at most ``limit``."""
        c = t.consent_requests.c
        query = select(t.consent_requests)
        if state is not None:
            query = query.where(c.state == state)
        if after is not None:
            query = query.where((c.created_us > after[0]) | and_(c.created_us == after[0], c.id > after[1]))
        query = query.order_by(c.created_us, c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.store._read() as conn:
            return [ConsentRequestRow(**r._mapping) for r in conn.execute(query)]

    def pending_requests_from(self, holder: str, originator: str) -> int:
        """How many consent requests ``holder`` made of ``originator`` (this node) await an answer."""
        c = t.consent_requests.c
        query = select(func.count()).where(
            and_(c.holder == holder, c.originator == originator, c.state == "pending")
        )
        with self.store._read() as conn:
            return int(conn.execute(query).scalar_one())

    def answer_request(
        self,
        request_id: str,
        *,
        state: str,
        now_us: int,
        by: str,
        answer: str,
        outbox: Sequence[OutboxRow] = (),
        consents: Sequence[ConsentRow] = (),
        audit: Sequence[AuditRow] = (),
    ) -> bool:
        """Settle a pending request and queue the answer, once (a second answer changes nothing)."""
        with self.store._begin() as conn:
            done = conn.execute(
                update(t.consent_requests)
                .where(and_(t.consent_requests.c.id == request_id, t.consent_requests.c.state == "pending"))
                .values(state=state, decided_us=now_us, decided_by=by, answer=answer)
            ).rowcount
            if not done:
                return False
            if consents:
                _insert_consents(conn, consents)
            if outbox:
                conn.execute(insert(t.outbox), [_values(r) for r in outbox])
                queued(conn)
            self.store._audit(conn, audit)
            return True
