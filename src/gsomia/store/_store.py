"""The node's store: SQLite (embedded default, WAL) or PostgreSQL, through SQLAlchemy Core.

Every write is one transaction: an insert that fails (a duplicate id, a broken
constraint) leaves nothing behind. Driver exceptions become ``StoreError``,
``ConflictError`` or ``InvalidInputError`` here, at the adapter; their messages never carry
the SQL, its parameters or the driver's text (the SQL and the driver's text go to the
``gsomia.store`` log; the parameters, which may hold labels or sealed payloads, go nowhere).
"""

from __future__ import annotations

import itertools
import json
import logging
import operator
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, fields
from functools import cache, lru_cache
from importlib.resources import files
from operator import attrgetter
from typing import Any, NamedTuple

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    Select,
    Table,
    any_,
    bindparam,
    case,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import ArgumentError, DataError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection

from gsomia.errors import ConfigError, ConflictError, InvalidInputError, StoreError
from gsomia.store import _tables as t
from gsomia.store._checkpoints import Checkpointer
from gsomia.store._memoryfile import ReplayFile, ReplayFileBusy, boot_id
from gsomia.store._notify import announce

__all__ = [
    "OVERFLOW_SOURCE",
    "AuditRow",
    "InventoryEntry",
    "InventoryRow",
    "ItemFilter",
    "ItemPart",
    "ItemRow",
    "NewItem",
    "Remembered",
    "SignedArrival",
    "Store",
    "TallyRow",
    "TokenRow",
    "allocate_added",
    "among",
]


@dataclass(frozen=True, slots=True)
class NewItem:
    """An item ready to store: label as canonical JSON, payload already encrypted."""

    id: str
    originator: str
    classification: str
    label: str
    topics: frozenset[str]
    received_from: str | None
    agreement: str | None
    created_us: int
    ingested_us: int
    ingested_by: str
    payload_type: str
    payload_size: int
    payload: bytes
    origin_jws: bytes | None = None  # the originator's signed item, sealed under the node key
    label_version: int = 1
    state: str = "held"
    portions: str | None = None  # an item in portions: the portions' marks, canonical JSON
    origin_id: str | None = None  # the id the originator signed, when it is not ``id`` (issue 22 §4)


@dataclass(frozen=True, slots=True)
class ItemRow:
    seq: int
    id: str
    originator: str
    classification: str
    label: str
    received_from: str | None
    agreement: str | None
    created_us: int
    ingested_us: int
    ingested_by: str
    payload_type: str
    payload_size: int
    payload: bytes
    origin_jws: bytes | None = None
    label_version: int = 1
    state: str = "held"  # held | recalled | destroyed (a payload is gone once not held)
    added_us: int | None = None  # when this version was added (ingest or label change): unique, increasing
    portions: str | None = None  # an item in portions: the portions held here (marks), canonical JSON
    origin_id: str | None = None  # the id the originator signed; ``id`` is this node's reference for it

    @property
    def name(self) -> str:
        """The id the originator gave the item (what its messages name it by)."""
        return self.origin_id or self.id


_ROW_COLUMNS = [t.items.c[f.name] for f in fields(ItemRow)]
# PostgreSQL: the rows of the items whose ids are in one array, read by the driver in its binary
# format (``_binary_rows``)
_PG_ITEMS_BY_ID = f"SELECT {', '.join(c.name for c in _ROW_COLUMNS)} FROM items WHERE id = ANY(%s)"  # noqa: S608 - own names
# a page's rows without the sealed payload and signed original (an empty payload in their place)
_PAGE_COLUMNS = [
    literal(b"", LargeBinary).label("payload")
    if c.name == "payload"
    else null().label("origin_jws")
    if c.name == "origin_jws"
    else c
    for c in _ROW_COLUMNS
]


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """Search filters; ``None`` means any."""

    originator: str | None = None
    classification: str | None = None
    topic: str | None = None
    received_from: str | None = None
    created_from_us: int | None = None
    created_before_us: int | None = None
    ingested_after_us: int | None = None
    added_after_us: int | None = None
    by_added: bool = False  # keyset and order on the date-added (TAXII), not the store's sequence


# The SELECTs of an item by name and of a page, built once per shape and kept, their values bound at
# each call: building them anew (SQLAlchemy's coercions, cache key and compilation look-up) took
# two-thirds of a read by name's store time (issue 18, bench_load's profile). A shape is fixed by
# which filters are given, never by their values.
_REF: BindParameter[str] = bindparam("ref")
_AFTER: BindParameter[int] = bindparam("after")


@cache
def _named_query(prefixed: bool, by_originator: bool) -> Select[Any]:
    """``items_named``'s SELECT: ``ref`` as a reference or an originator's id, with ``prefixed`` also
    as ``head:rest`` (an originator and its id), with ``by_originator`` only ``originator``'s."""
    where = [t.items.c.id == _REF, t.items.c.origin_id == _REF]
    if prefixed:
        where.append((t.items.c.originator == bindparam("head")) & (t.items.c.origin_id == bindparam("rest")))
    query = select(*_ROW_COLUMNS).where(or_(*where))
    if by_originator:
        query = query.where(t.items.c.originator == bindparam("originator"))
    return query.order_by(t.items.c.seq)


@lru_cache(maxsize=512)
def _sqlite_sql(query: Select[Any], dialect: Dialect) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """A kept SELECT compiled for ``dialect`` (SQLite's: positional ``?``): its SQL, its parameters'
    names in their order, and the values it binds itself (the page's empty payload). Kept by the
    statement itself (the cache holds it, so it is never another statement's)."""
    compiled = query.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
    return compiled.string, names, fixed


# the filters of ``ItemFilter`` a page compares to a column: (its field and the bound value's name,
# the column, the comparison)
_ITEM_FILTERS = (
    ("originator", t.items.c.originator, operator.eq),
    ("classification", t.items.c.classification, operator.eq),
    ("received_from", t.items.c.received_from, operator.eq),
    ("created_from_us", t.items.c.created_us, operator.ge),
    ("created_before_us", t.items.c.created_us, operator.lt),
    ("ingested_after_us", t.items.c.ingested_us, operator.gt),
    ("added_after_us", t.items.c.added_us, operator.gt),
)


@lru_cache(maxsize=256)
def _page_query(
    present: tuple[str, ...], topic: bool, by_added: bool, walked: bool, with_payload: bool
) -> Select[Any]:
    """``list_items``'s SELECT for the filters ``present`` (names of ``_ITEM_FILTERS``), ``topic``
    given or not, keyed on the date-added or the sequence; ``walked``: the topic's index walked."""
    key = t.items.c.added_us if by_added else t.items.c.seq
    query = select(*(_ROW_COLUMNS if with_payload else _PAGE_COLUMNS))
    if walked:
        # on SQLite the topic's index walked in seq order from the cursor, stopping at the page's
        # end (an IN subquery made SQLite list the topic's every item past the cursor first: the
        # first page of a topic took 67 ms at 1,000,000 items, issue 18). PostgreSQL planned
        # this join badly for a page in the middle (289 ms median at 1,000,000, against 8 ms at
        # either end): it keeps the IN subquery below, bounded by the cursor
        key = t.item_topics.c.item_seq
        query = query.select_from(
            t.item_topics.join(t.items, t.items.c.seq == t.item_topics.c.item_seq)
        ).where(t.item_topics.c.topic == bindparam("topic"))
    query = query.where(key > _AFTER)
    for name, column, compare in _ITEM_FILTERS:
        if name in present:
            query = query.where(compare(column, bindparam(name)))
    if topic and not walked:
        topics = select(t.item_topics.c.item_seq).where(t.item_topics.c.topic == bindparam("topic"))
        if not by_added:  # the cursor bounds the topic index range too: deep pages stay fast
            topics = topics.where(t.item_topics.c.item_seq > _AFTER)
        query = query.where(t.items.c.seq.in_(topics))
    return query.order_by(key).limit(bindparam("limit", type_=Integer))


class InventoryEntry(NamedTuple):
    """One line of an item's inventory to write: where it came from, its copies, where it went.

    ``party`` is the other side (the sender, the recipient, the next hop), ``actor`` the person
    who acted (``None`` for the node itself), ``detail`` canonical JSON.
    """

    item_id: str
    at_us: int
    kind: str  # ingested | received | copy | translation | derivative | derived | sent | exported | reached
    party: str | None
    actor: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class InventoryRow:
    item_id: str
    at_us: int
    kind: str
    party: str | None
    actor: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A credential (never its secret, only stored hashed): an API token, or a dashboard session.

    ``parent_id`` is the token that minted it (``None``: issued by the node's operator); revoking a
    token revokes every token below it. ``kind`` is ``api`` (a bearer token) or ``session`` (the
    dashboard's cookie: read-only, never accepted as a bearer token).
    """

    id: str
    person_id: str
    created_us: int
    expires_us: int
    revoked_us: int | None
    parent_id: str | None = None
    kind: str = "api"


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One audit record. ``entry_id`` is made on insert when empty; receipts name it."""

    at_us: int
    kind: str
    actor: str | None
    subject: str | None
    outcome: str
    detail: str
    seq: int = 0
    entry_id: str = ""
    leaf_index: int | None = None
    leaf: bytes | None = None


ItemPart = tuple[Sequence[NewItem], Sequence[InventoryEntry], Sequence[AuditRow]]
"""A part of a batch of items to write (:meth:`Store.insert_item_parts`): its items, their
inventory entries and audit rows."""


@dataclass(frozen=True, slots=True)
class TallyRow:
    """Refusals of one kind, from one source, with one code, in one window: how many, when, a sample."""

    kind: str
    source: str
    code: str
    window_us: int
    count: int
    first_us: int
    last_us: int
    sample: str


OVERFLOW_SOURCE = "*"  # the sources of a window beyond its cap, counted together


_SQLITE_MARKS = 500  # values per IN (...) list, under SQLite's limit on bound parameters


@dataclass(frozen=True, slots=True)
class SignedArrival:
    """One verified group of an originator-signed batch, as it arrived at this node: the leaves of the
    batch it carries and the identities (hashed) of the track updates in them, at ``now_us``; the
    batch was signed at ``signed_us`` (a memory that started blind refuses what was signed before)."""

    batch: str  # SHA-256 of the signed batch content, hex
    originator: str
    leaves: tuple[int, ...]
    tracks: tuple[str, ...]
    now_us: int
    signed_us: int


class Remembered(NamedTuple):
    """What the replay memory said of one :class:`SignedArrival`: the leaves that had arrived before
    (a replay: nothing of it was recorded) and the updates that had (sent again under a new
    signature: the caller drops them)."""

    replayed: list[int]
    before: set[str]


def _chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _remember_sqlite(cursor: Any, arrivals: Sequence[SignedArrival]) -> list[Remembered]:
    """:meth:`Store.remember_signed_arrivals` on SQLite, on the driver's cursor inside a transaction
    holding the write lock: what arrived before is read with one query for both tables (per 500
    values of each), the arrivals are checked in order here, and what is new is written with one
    multi-row INSERT per table (per 500 values).

    Each statement's run on the driver lets go of the interpreter's lock (the GIL) several times
    (prepare, step, reset) and takes it back: a worker thread writing while the event loop is busy
    waits up to the interpreter's switch interval (5 ms) each time, so a commit costs a fixed few
    statements, not a few per track, and no SQLAlchemy work per statement (issue 18)."""
    batches = sorted({arrival.batch for arrival in arrivals})
    identities = sorted({track for arrival in arrivals for track in arrival.tracks})
    recorded: set[tuple[str, int]] = set()
    known: set[str] = set()
    batch_parts = list(_chunks(batches, _SQLITE_MARKS))
    track_parts = list(_chunks(identities, _SQLITE_MARKS))
    for n in range(max(len(batch_parts), len(track_parts))):
        # a leaf's row has its batch and leaf; an update's, its identity and no leaf (NULL)
        queries: list[str] = []
        values: list[str] = []
        if n < len(batch_parts):
            marks = ",".join("?" * len(batch_parts[n]))
            queries.append(f"SELECT batch, leaf FROM track_batches_seen WHERE batch IN ({marks})")  # noqa: S608 - only "?" marks
            values += batch_parts[n]
        if n < len(track_parts):
            marks = ",".join("?" * len(track_parts[n]))
            queries.append(f"SELECT track, NULL FROM tracks_seen WHERE track IN ({marks})")  # noqa: S608 - only "?" marks
            values += track_parts[n]
        for key, leaf in cursor.execute(" UNION ALL ".join(queries), values):
            if leaf is None:
                known.add(key)
            else:
                recorded.add((key, leaf))
    answers: list[Remembered] = []
    leaf_rows: list[tuple[str, int, str, int]] = []
    track_rows: list[tuple[str, str, int]] = []
    for arrival in arrivals:  # in order: each is checked against those before it as well
        wanted = sorted(set(arrival.leaves))
        replayed = [leaf for leaf in wanted if (arrival.batch, leaf) in recorded]
        if replayed:
            answers.append(Remembered(replayed, set()))  # nothing of a replay is recorded
            continue
        recorded.update((arrival.batch, leaf) for leaf in wanted)
        leaf_rows += [(arrival.batch, leaf, arrival.originator, arrival.now_us) for leaf in wanted]
        updates = set(arrival.tracks)
        before = updates & known
        fresh = sorted(updates - known)
        known.update(fresh)
        track_rows += [(track, arrival.originator, arrival.now_us) for track in fresh]
        answers.append(Remembered([], before))
    for rows in _chunks(leaf_rows, _SQLITE_MARKS // 4):
        values_sql = ",".join(["(?, ?, ?, ?)"] * len(rows))
        cursor.execute(
            f"INSERT INTO track_batches_seen (batch, leaf, originator, seen_us) VALUES {values_sql}",  # noqa: S608 - only "?" marks
            [value for row in rows for value in row],
        )
    for rows in _chunks(track_rows, _SQLITE_MARKS // 3):
        values_sql = ",".join(["(?, ?, ?)"] * len(rows))
        cursor.execute(
            f"INSERT INTO tracks_seen (track, originator, seen_us) VALUES {values_sql}",  # noqa: S608 - only "?" marks
            [value for row in rows for value in row],
        )
    return answers


def _forgetting(since_us: int, forget_before_us: int | None, fresh_us: int) -> int:
    """The replay memory's bound after a commit that forgets the rows seen before ``forget_before_us``
    (``None``: none): a batch signed before it is refused as a replay (:func:`_remember_since`). A
    batch is taken only while its signature is within ``fresh_us`` of this node's clock, so an earlier
    arrival of one signed at ``s`` was seen at ``s - fresh_us`` or later: once the rows seen before
    ``f`` are gone, a batch signed before ``f + fresh_us`` may have been among them. The bound is
    raised, never lowered: a clock set back afterwards (so that a forgotten batch's signature is fresh
    again) does not bring the forgotten rows back, and the bound holds them out."""
    if forget_before_us is None:
        return since_us
    return max(since_us, forget_before_us + fresh_us)


def _remember_since(
    arrivals: Sequence[SignedArrival],
    since_us: int,
    remember: Callable[[Sequence[SignedArrival]], list[Remembered]],
) -> list[Remembered]:
    """``remember`` (the store's check and record) of the arrivals signed at or after ``since_us``;
    each signed before it is a replay, nothing of it recorded: the memory cannot tell it (it started
    blind after that instant, or forgot the rows that would say), so it fails closed."""
    if all(arrival.signed_us >= since_us for arrival in arrivals):
        return remember(arrivals)
    given = iter(remember([a for a in arrivals if a.signed_us >= since_us]))
    return [
        next(given) if arrival.signed_us >= since_us else Remembered(sorted(set(arrival.leaves)), set())
        for arrival in arrivals
    ]


def uuid7_hex(ms: int) -> str:
    """A UUIDv7 (RFC 9562 §5.7) as 32 hex digits: the Unix milliseconds ``ms`` first and 74 random bits
    after (``os.urandom``: an id no one guesses). The one maker of the ids this node names in time
    order (messages, items, audit records): ids made in time order sort in that order, so a unique
    index on them grows at its right edge instead of taking each insert at a random leaf page (issue
    18). Written as the integer's hex, without a ``uuid.UUID`` object (its checks cost 5-8 µs a call
    at load, this about 1.4 with the clock's read)."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76  # version 7
        | (rand >> 62 & 0xFFF) << 64  # rand_a, 12 bits
        | 0b10 << 62  # the RFC 4122 / 9562 variant
        | rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b, 62 bits
    )
    return f"{value:032x}"


def new_entry_id() -> str:
    """A new audit record's id: a UUIDv7 as 32 hex digits (:func:`uuid7_hex`), an id no one guesses, as a
    public inclusion proof is asked for by it. Time-ordered, so the unique index on ``entry_id``
    grows at its right edge: the append's CPU a record at 200,000 to 400,000 records on SQLite
    16.6 -> 7.1 us with such ids (issue 18), and the gap grows with the log.
    """
    return uuid7_hex(time.time_ns() // 1_000_000)


# a hex digit's two low bits as the UUID variant's nibble: 0b10 then those two bits (RFC 9562 §4.1)
_VARIANT_NIBBLE = str.maketrans("0123456789abcdef", "89ab89ab89ab89ab")


def new_entry_ids(count: int) -> list[str]:
    """``count`` new audit record ids at once, each what :func:`new_entry_id` makes: a UUIDv7 of this
    millisecond, its 74 random bits its own (12 of ``rand_a``, 62 of ``rand_b``), from one
    ``os.urandom`` read for the batch rather than one a record. A batch's records share the
    millisecond, as records made within one do. Made as text from the random bytes' hex: an id a
    record cost 1.3 us made one by one, 0.26 in a batch of 10,000 (issue 18). One read of the random
    bytes for both parts: each ``os.urandom`` is a system call that lets go of the interpreter lock,
    which a served node's other threads then take (a read's audit record passes here)."""
    prefix = f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}7"  # the milliseconds, version 7
    random = os.urandom(9 * count + (count + 1) // 2)
    digits = random[: 9 * count].hex()  # 18 hex digits an id: rand_a, then rand_b's last 60 bits
    variant = random[9 * count :].hex().translate(_VARIANT_NIBBLE)  # rand_b's first 2 bits
    return [
        f"{prefix}{digits[k : k + 3]}{variant[n]}{digits[k + 3 : k + 18]}"
        for n, k in enumerate(range(0, 18 * count, 18))
    ]


def _audit_values(rows: Sequence[AuditRow]) -> list[tuple[Any, ...]]:
    """The parameters of ``_INSERT_AUDIT`` for ``rows``, in its columns' order: each text as
    :func:`_text` stores it (written inline: a call a field cost as much as the rest), the entry ids
    the rows lack made in one batch (:func:`new_entry_ids`)."""
    ids = iter(new_entry_ids(sum(1 for r in rows if not r.entry_id)))
    nul = "\x00"
    return [
        (
            r.at_us,
            kind if nul not in (kind := r.kind) else _text(kind),
            actor if (actor := r.actor) is None or nul not in actor else _text(actor),
            subject if (subject := r.subject) is None or nul not in subject else _text(subject),
            outcome if nul not in (outcome := r.outcome) else _text(outcome),
            r.detail,
            r.entry_id or next(ids),
        )
        for r in rows
    ]


def _remember_core(conn: Connection, arrival: SignedArrival) -> Remembered:
    """One arrival through SQLAlchemy Core (PostgreSQL): a leaf another process records at the same
    time makes the insert fail (a ``ConflictError``), an update it records returns nothing here."""
    table, seen_tracks = t.track_batches_seen, t.tracks_seen
    wanted = sorted(set(arrival.leaves))
    seen = (
        conn.execute(select(table.c.leaf).where(table.c.batch == arrival.batch, table.c.leaf.in_(wanted)))
        .scalars()
        .all()
    )
    if seen:
        return Remembered(sorted(seen), set())
    conn.execute(
        insert(table),
        [
            {"batch": arrival.batch, "leaf": n, "originator": arrival.originator, "seen_us": arrival.now_us}
            for n in wanted
        ],
    )
    fresh: set[str] = set()
    if arrival.tracks:
        fresh = set(
            conn.execute(
                _insert_new(conn, seen_tracks).returning(seen_tracks.c.track),
                [
                    {"track": track, "originator": arrival.originator, "seen_us": arrival.now_us}
                    for track in sorted(set(arrival.tracks))
                ],
            )
            .scalars()
            .all()
        )
    return Remembered([], set(arrival.tracks) - fresh)


def _raise_since(since_us: int) -> Any:
    """PostgreSQL: the replay memory's bound in ``node_meta`` set to ``since_us``, or raised to it,
    never lowered (two processes raising it at once: the higher stays)."""
    meta = t.node_meta
    statement = postgresql_insert(meta).values(key=_REPLAY_SINCE, value=str(since_us))
    return statement.on_conflict_do_update(
        index_elements=[meta.c.key],
        set_={"value": statement.excluded.value},
        where=cast(meta.c.value, BigInteger) < cast(statement.excluded.value, BigInteger),
    )


def _insert_new(conn: Connection, table: Any) -> Any:
    """An INSERT that does nothing where the row exists (a concurrent writer made it first)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


# what Store.insert_items writes of a NewItem, in the order of _NEW_ITEM_COLUMNS, which end with
# origin_id and added_us (worked out on insert)
_NEW_ITEM_NAMES = tuple(c.name for c in t.items.c if c.name not in ("seq", "added_us", "origin_id"))
_NEW_ITEM_FIELDS = attrgetter(*_NEW_ITEM_NAMES)
_NEW_ITEM_COLUMNS = (*_NEW_ITEM_NAMES, "origin_id", "added_us")


def allocate_added(conn: Connection, count: int, now_us: int) -> int:
    """The first of ``count`` date-added instants, each after every one given before (at least ``now_us``).

    One writer at a time: the update takes the one ``item_clock`` row's lock until the transaction
    ends, so instants are given in commit order and a reader polling with ``added_after`` never skips
    an item committed later with an earlier instant.
    """
    clock = t.item_clock.c.added_us
    last = conn.execute(
        update(t.item_clock)
        .where(t.item_clock.c.id == 1)
        .values(added_us=case((clock + count > now_us + count - 1, clock + count), else_=now_us + count - 1))
        .returning(clock)
    ).scalar_one()
    return int(last) - count + 1


_log = logging.getLogger("gsomia.store")
# Connections kept open, and opened beyond those under a burst: the API serves from a pool of 40
# worker threads, and a connection opened and closed per request (SQLite's pragmas, PostgreSQL's
# handshake) cost more than the request's own query (bench_load's profile, issue 18).
_POOL_SIZE = 20
_POOL_OVERFLOW = 20
_BUMPED = "gsomia.bumped"  # set on a connection whose transaction moved a generation counter
_QUEUED = "gsomia.queued"  # set on a connection whose transaction queued outbox entries
_AUDITED = "gsomia.audited"  # set on a connection whose transaction wrote audit records (not as leaves)
# Generation counters of what the kernel keeps read (see gsomia.store._shared): people's records,
# tokens (revocations) and visits; bumped in the transaction that changes them.
PEOPLE = "people"
TOKENS = "tokens"
VISITS = "visits"


def moved(conn: Connection, name: str) -> None:
    """Generation ``name`` moves in ``conn``'s transaction: this process's listeners and (on
    PostgreSQL, by ``pg_notify``) every other process of the node are told once it commits."""
    conn.info[_BUMPED] = True
    announce(conn, name)


QUEUED = "outbox_queued"  # the notification's name when outbox entries are queued (no counter's)


def queued(conn: Connection) -> None:
    """Outbox entries are queued in ``conn``'s transaction: this process's delivery workers
    (:meth:`Store.on_queued`) are woken once it commits and, on PostgreSQL, the node's other
    processes by the notification the commit sends (named :data:`QUEUED`). A wake is only a hint
    to read the outbox now rather than at the end of the worker's pause: what is due is read from
    the store, so a lost or forged one costs at most one read, or one pause."""
    conn.info[_QUEUED] = True
    announce(conn, QUEUED)


def bump(conn: Connection, name: str) -> int:
    """Move ``name``'s generation on, in the caller's transaction (the row stays locked until it
    ends, so writers of one kind of state take turns); the new generation. This process's
    listeners (:meth:`Store.on_bump`) are told once the transaction commits, the node's other
    processes (on PostgreSQL) by the notification the commit sends."""
    moved(conn, name)
    move = (
        update(t.generations)
        .where(t.generations.c.name == name)
        .values(value=t.generations.c.value + 1)
        .returning(t.generations.c.value)
    )
    value = conn.execute(move).scalar_one_or_none()
    if value is None:  # a kind of state first written after the migration: its counter starts here
        # (two processes may start it at once: the second's insert does nothing, then both move it)
        first = (postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert)(t.generations)
        conn.execute(first.values(name=name, value=0).on_conflict_do_nothing(index_elements=["name"]))
        value = conn.execute(move).scalar_one()
    return int(value)


# an item's inventory entries as ``InventoryRow``s, named by the item's id
_INVENTORY = select(
    t.items.c.id, *(t.inventory.c[name] for name in ("at_us", "kind", "party", "actor", "detail"))
).join(t.items, t.items.c.seq == t.inventory.c.item_seq)
# Whether a refusal tally's window has closed (``Store.close_tallies``'s read first), built once: the
# node's audit loop asks it every round, five times a second, and building the expression each time
# cost more than the database's answer (benchmarks/JOURNAL.md, bench_stream)
_ANY_CLOSED_TALLY = (
    select(t.refusal_tallies.c.window_us)
    .where(t.refusal_tallies.c.window_us < bindparam("before_us"))
    .limit(1)
)
_IN_CHUNK = 500  # ids per IN (...) list: well under every driver's bound on parameters

# the INSERT statement of a table's columns for a driver's paramstyle, written once
_DRIVER_INSERTS: dict[tuple[str, tuple[str, ...], str, tuple[str, ...]], str] = {}


def among(conn: Connection, column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """``column IN values`` (texts). On PostgreSQL ``column = ANY(array)`` with the values as ONE array
    parameter: the statement's text is the same whatever their number, so psycopg keeps its parsed
    form and the server a prepared plan, where an IN list of 100 placeholders is a new statement to
    split, parse and plan for each batch (issue 18: the exchange's look-ups per batch). On SQLite
    likewise ONE parameter, the values as a JSON array read back by ``json_each`` (``column IN
    (SELECT value FROM json_each(?))``, each value still looked up in ``column``'s index): SQLAlchemy
    coerced each value of an IN list, and rendered the list into a new statement for each
    execution, in Python, ~1 ms for the received batch's three look-ups of 250 values (issue 18).
    The text given is the values' as they are (``ensure_ascii=False``): one the driver cannot bind
    (a lone surrogate) fails as it did in the list. A value holding a NUL keeps the IN list:
    ``json_each`` gives SQLite's text up to its first NUL, so ``'held-1\\x00'`` would find
    ``'held-1'`` (tests/store/test_lookup_nul.py: the inbox's replay fence answering for another
    message)."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    if any("\x00" in value for value in values):
        return column.in_(list(values))  # type: ignore[no-any-return]
    listed = json.dumps(list(values), ensure_ascii=False)
    return column.in_(select(_JSON_VALUE).select_from(func.json_each(bindparam(None, listed))))  # type: ignore[no-any-return]


_JSON_VALUE: ColumnElement[str] = literal_column("value")  # json_each's column of each element's value


def insert_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[tuple[Any, ...]],
    columns: Sequence[str],
    returning: tuple[str, ...] = (),
) -> list[Any]:
    """``rows`` (tuples of ``columns``' values) into ``table`` in ``conn``'s transaction, one fixed
    statement: SQLAlchemy's building of the parameters, per row and column, cost about as much as
    the insert itself (issue 18). Only for columns whose values the driver takes as they are (text,
    integers, bytes, None: no type of SQLAlchemy's converts them); errors are SQLAlchemy's, as an
    ``execute``'s would be. The ``returning`` columns of the rows written, in no particular order.

    SQLite: the driver's executemany. PostgreSQL: ``INSERT ... SELECT * FROM unnest(one array per
    column)``, ONE execution whatever the number of rows (executemany ran the INSERT once a row;
    SQLAlchemy's multi-row VALUES was a new statement of one placeholder per value for the driver to
    split and the server to plan, every batch); the arrays go in the binary format (``%b``): the
    text format escapes every element of a text array in Python, 60 times the cost for 1,000 outbox
    rows of JSON."""
    if not rows:
        return []
    style = "array" if conn.dialect.name == "postgresql" else conn.dialect.paramstyle
    key = (table.name, tuple(columns), style, returning)
    sql = _DRIVER_INSERTS.get(key)
    if sql is None:
        found = [table.c[c] for c in columns]  # a KeyError for a column it does not have
        names = ", ".join(c.name for c in found)
        if style == "array":
            compile_type = conn.dialect.type_compiler_instance.process
            arrays = ", ".join(f"%b::{compile_type(c.type)}[]" for c in found)
            sql = f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays})"  # noqa: S608 - own names
        else:
            mark = "?" if style == "qmark" else "%s"
            marks = ", ".join(mark for _ in columns)
            sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608 - the table's own names
        if returning:
            sql += f" RETURNING {', '.join(table.c[c].name for c in returning)}"
        _DRIVER_INSERTS[key] = sql
    if style == "array":
        result = conn.exec_driver_sql(sql, tuple(list(column) for column in zip(*rows, strict=True)))
        return list(result) if returning else []
    if returning:
        raise ValueError("RETURNING from a driver's executemany: read the rows back instead")
    conn.exec_driver_sql(sql, list(rows))
    return []


def _unstorable(exc: BaseException) -> InvalidInputError:
    """A value the database cannot hold (a NUL in text, an integer beyond 64 bits): the caller's input."""
    text = str(getattr(exc, "orig", exc))
    if "NUL" in text or "\x00" in text:
        return InvalidInputError(
            "a text value contains a NUL character (U+0000), which this node does not store"
        )
    if isinstance(exc, OverflowError) or "out of range" in text:
        return InvalidInputError("a number is out of range (this node stores 64-bit integers)")
    return InvalidInputError("a value is not one this node can store")


_WRITER_WAIT_S = 5.0  # the sqlite3 driver's default busy timeout


class _WriterQueue:
    """The writers of one process to a SQLite store, one at a time, in a re-entrant lock (a write
    inside another of the same thread goes on): each waiting writer is woken as the one before it
    commits, where SQLite's busy handler would sleep out its next step (a lock held 3 ms cost the
    writer behind it 8: 1 + 2 + 5), and the replay memory's commit, on every track's path, waited
    so behind the node's background writes (benchmarks/JOURNAL.md, bench_stream)."""

    def __init__(self, wait_s: float = _WRITER_WAIT_S) -> None:
        self._lock = threading.RLock()
        self._wait_s = wait_s

    def __enter__(self) -> None:
        # as long as SQLite's busy handler would have waited (the driver's default timeout): a writer
        # held up longer fails, nothing written, as it did when SQLite said the database was locked
        if not self._lock.acquire(timeout=self._wait_s):
            raise StoreError("the store is busy: another writer held it too long; nothing was written")

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


@contextmanager
def _writing() -> Iterator[None]:
    """A write's database errors as the caller's: a constraint refused it (a conflict), a value the
    database cannot hold (bad input), anything else (the store failed; nothing was written)."""
    try:
        yield
    except IntegrityError as exc:
        _log.info("write refused by a constraint: %s", exc)
        raise ConflictError("already exists: a record with the same identifier is stored") from exc
    except (DataError, OverflowError) as exc:
        _log.info("write refused, a value cannot be stored: %s", exc)
        raise _unstorable(exc) from exc
    except SQLAlchemyError as exc:
        _log.warning("store failure: %s", exc)
        raise StoreError("the store failed; nothing was written") from exc


@contextmanager
def _reading() -> Iterator[None]:
    """A read's database errors as the caller's: a value that cannot be compared (bad input),
    anything else (the store failed to answer)."""
    try:
        yield
    except (DataError, OverflowError) as exc:
        _log.info("read refused, a value cannot be compared: %s", exc)
        raise _unstorable(exc) from exc
    except SQLAlchemyError as exc:
        _log.warning("store failure: %s", exc)
        raise StoreError("the store failed to answer") from exc


def _redacted(url: str) -> str:
    """``url`` without its password, to name a database in a message or a file."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(a malformed database URL)"


# PostgreSQL's lock of one writer (Store._exclusive): the two-int key space (apart from the one-bigint
# space), a class and the OID of the table the writer guards as the search path finds it
_ADVISORY_LOCK = "SELECT pg_advisory_xact_lock(%s, %s::regclass::oid::int)"

# the database lock held by the one writer of the audit tree: on PostgreSQL an advisory lock whose
# key is this class and the OID of the node's audit_records (one lock per node, whatever schema it is
# in); SQLite has one write lock per database file
TREE_LOCK = 0x6E5A_0A0D
TREE_TABLE = "audit_records"

LeafWriter = Callable[[Connection, list[tuple[Any, ...]]], None]
"""Writes records as leaves of the audit tree, in the transaction ``Connection`` that holds the tree's
lock: (at_us, kind, actor, subject, outcome, detail, entry_id) tuples, as stored."""

# a batch of this many records or more given to append_audit alone becomes leaves where it is written
# (Store.leaves_on_append); fewer (a request's records) wait for AuditLog.integrate
_LEAVES_FROM = 32

_INSERT_AUDIT = {
    "qmark": "INSERT INTO audit_records (at_us, kind, actor, subject, outcome, detail, entry_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)",
    "format": "INSERT INTO audit_records (at_us, kind, actor, subject, outcome, detail, entry_id) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
}


# PostgreSQL takes this many records or more in one COPY (fewer: executemany, one round trip)
_COPY_AUDIT_FROM = 32
_COPY_AUDIT = "COPY audit_records (at_us, kind, actor, subject, outcome, detail, entry_id) FROM STDIN"


def _copy_field(value: str | None) -> str:
    """``value`` as a field of COPY's text format: ``\\N`` for NULL, the backslash and the three
    characters that end a field or a row escaped (a NUL cannot be stored: the server refuses it)."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


@contextmanager
def _driver_cursor(conn: Connection, statement: str, **options: Any) -> Iterator[Any]:
    """The driver's own cursor on ``conn``'s connection, closed after: for a statement whose
    SQLAlchemy execution around it cost as much as the statement (issue 18). The driver's errors
    become SQLAlchemy's, as an ``execute``'s would (named by ``statement``, the parameters hidden),
    and so the caller's (``_writing``, ``_reading``): a duplicate key is the caller's conflict.
    ``options`` go to the driver's ``cursor()`` (psycopg's ``binary=True``)."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None  # noqa: S101 - a connection just checked out of the pool
    with _dbapi_cursor(dbapi, conn.dialect, statement, **options) as cursor:
        yield cursor


@contextmanager
def _dbapi_cursor(dbapi: Any, dialect: Dialect, statement: str, **options: Any) -> Iterator[Any]:
    """:func:`_driver_cursor` on the driver's connection ``dbapi`` of ``dialect``."""
    cursor = dbapi.cursor(**options)
    try:
        yield cursor
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            statement, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
        ) from exc
    finally:
        cursor.close()


def _binary_rows(conn: Connection, statement: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """PostgreSQL: the rows of ``statement`` read by psycopg in the binary format, as tuples. In the
    text format the server writes every ``bytea`` as hex and the driver decodes it back: of a release's
    read of 1,000 sealed items (~2.4 KB of ciphertext each) that was 40% of the server's CPU for the
    query (issue 18), with SQLAlchemy's result rows around it on the client."""
    with _driver_cursor(conn, statement, binary=True) as cursor:
        cursor.execute(statement, parameters)
        return cursor.fetchall()  # type: ignore[no-any-return]


@contextmanager
def _driver_transaction(conn: Connection, statement: str) -> Iterator[Any]:
    """:func:`_driver_cursor` in a SQLite transaction of its own: the write lock first (``BEGIN
    IMMEDIATE``: no writer between what it reads and what it writes), the commit after, a rollback
    on any failure (nothing half-written)."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None  # noqa: S101 - a connection just checked out of the pool
    with _dbapi_transaction(dbapi, conn.dialect, statement) as cursor:
        yield cursor


@contextmanager
def _dbapi_transaction(dbapi: Any, dialect: Dialect, statement: str) -> Iterator[Any]:
    """:func:`_driver_transaction` on the driver's connection ``dbapi`` of ``dialect``."""
    with _dbapi_cursor(dbapi, dialect, statement) as cursor:
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
            cursor.connection.commit()
        except BaseException:
            cursor.connection.rollback()
            raise


def _copy(conn: Connection, statement: str, text: str) -> None:
    """``COPY ... FROM STDIN`` of ``text`` in ``conn``'s transaction (PostgreSQL, psycopg)."""
    with _driver_cursor(conn, statement) as cursor, cursor.copy(statement) as copy:
        copy.write(text)


def _text(value: str | None) -> str | None:
    """Audit text as it can be stored anywhere: a NUL (which PostgreSQL refuses) written as ``\\x00``."""
    return value.replace("\x00", "\\x00") if value is not None and "\x00" in value else value


def _private_sqlite_file(database: str | None) -> None:
    """Create the SQLite file 0600 before SQLite does: its WAL and shared-memory files take its mode."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        fd = os.open(database, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open the database file {database} ({exc.strerror})") from exc
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _most_connections(options: dict[str, Any]) -> int | None:
    """The most connections a pool made with ``options`` holds at once (``None``: not bounded, or not
    known: another pool class than the queue this store sets up)."""
    size, overflow = options.get("pool_size"), options.get("max_overflow")
    if "poolclass" in options or type(size) is not int or type(overflow) is not int or overflow < 0:
        return None
    return max(1, size + overflow)


def _pooled(url: str) -> bool:
    """Whether ``url``'s engine keeps a queue of connections (not an in-memory SQLite's single one)."""
    parsed = make_url(url)
    return parsed.get_backend_name() != "sqlite" or parsed.database not in (None, "", ":memory:")


_WAL_PAGES = 16_384
# the replay memory forgets what is past its window when the bound has moved this much (0.1 s: about a
# hundred commits at 1,000 tracks/s, a hundred rows of each table forgotten together)
_FORGET_STEP_US = 100_000
_REPLAY_MEMORY = "replay_memory"  # node_meta: the token of the replay memory's file (_memoryfile)
# node_meta: where the replay memory is in the node's database, the instant a batch must be signed at
# or after to be told apart (raised only, by what the memory forgot: _forgetting)
_REPLAY_SINCE = "replay_memory_since"
_UNBOUNDED = -(2**63)  # a memory that never forgot: no batch refused for its instant


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: synced at each checkpoint, not each commit
    cursor.execute("PRAGMA foreign_keys=ON")
    # a checkpoint once the WAL holds 16,384 pages (64 MB), not SQLite's 1,000: a batch of 1,000 items
    # wrote 1,000-3,600 pages, so each commit ran a checkpoint (copy and two fsyncs); now one in several,
    # and a page written by several of them is copied once (issue 18: at 200,000 items, CPU per item
    # 91.5 -> 66.6 us for Store.insert_items)
    cursor.execute(f"PRAGMA wal_autocheckpoint={_WAL_PAGES}")
    cursor.close()


class Store:
    """One node's database. ``url`` is a SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://...``)."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        try:
            if _pooled(url):  # a served node's worker threads each hold a connection at once
                engine_options.setdefault("pool_size", _POOL_SIZE)
                engine_options.setdefault("max_overflow", _POOL_OVERFLOW)
            self.engine: Engine = create_engine(url, future=True, hide_parameters=True, **engine_options)
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise StoreError(f"cannot open store {_redacted(url)}: {exc}") from exc
        if self.engine.dialect.name == "sqlite":
            _private_sqlite_file(self.engine.url.database)
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.url = url
        self._bump_listeners: list[Callable[[], None]] = []
        self._queued_listeners: list[Callable[[], None]] = []
        self._audited_listeners: list[Callable[[], None]] = []
        self._forgotten_us = -(2**63)  # the replay memory's last bound (remember_signed_arrivals)
        # SQLite: this process's writers queue here, each woken as the one before commits, before
        # they take the database's write lock; SQLite's busy handler, which sleeps 1, 2, 5, 10, 15,
        # 20 ms... between tries, is left to a writer of another process (a CLI command beside the
        # node). Only a queue in front of SQLite's lock, which stays the one that orders writers.
        self._writers: AbstractContextManager[None] = (
            _WriterQueue() if self.engine.dialect.name == "sqlite" else nullcontext()
        )
        self._leaf_writer: LeafWriter | None = None
        self._part_writer: ThreadPoolExecutor | None = None  # insert_item_parts' writers, made at first use
        # as many as the transactions the pool's connections can hold at once (None: no bound is known,
        # so each batch its own thread): each batch has one part at a time with the writers
        self._part_threads = _most_connections(engine_options)
        self._threads = _pooled(url)
        self._writer_lock = threading.Lock()
        self._checkpointer: Checkpointer | None = None
        self._memory_file: ReplayFile | None = None  # the replay memory's own file, at first use
        # SQLite: the driver's connections the hottest statements take past the pool (_sqlite_driver)
        self._spare: list[PoolProxiedConnection] = []
        self._closed = False

    def close(self) -> None:
        self._closed = True
        while self._spare:
            self._spare.pop().close()  # detached from the pool: closed for good
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if self._memory_file is not None:
            self._memory_file.close()
        with self._writer_lock:
            writer, self._part_writer = self._part_writer, None
        if writer is not None:
            writer.shutdown()
        self.engine.dispose()

    def checkpoint_aside(self) -> None:
        """On a SQLite file, checkpoint the write-ahead log from a thread of its own from now on,
        so that no commit of this process carries a checkpoint's syncs (``_checkpoints``): for a
        writer on a latency path (the replay memory) or of many pages (a batch of items). Elsewhere,
        and when already asked, nothing (one thread a store, however many threads ask at once)."""
        if self._checkpointer is not None or self.engine.dialect.name != "sqlite" or not self._threads:
            return
        with self._writer_lock:
            if self._checkpointer is None:
                self._checkpointer = Checkpointer(self.engine, self._writers, self)

    def on_bump(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every transaction of this process that moved a generation counter
        (:func:`bump`): this process's caches then read the counters again at once."""
        self._bump_listeners.append(listener)

    def on_queued(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every transaction of this process that queued outbox entries
        (and, through :meth:`queued_elsewhere`, when another process's did): the delivery worker
        reads the outbox at once instead of at the end of its pause. It must not block."""
        self._queued_listeners.append(listener)

    def on_audited(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after a transaction of this process wrote audit records that wait to be
        integrated: the audit log's writer integrates them then, not at the end of its idle pause.
        A hint only (the pending records in the store are the truth; another process's are found
        by the writer's bounded pause). It must not block."""
        self._audited_listeners.append(listener)

    def _audited(self) -> None:
        for listener in self._audited_listeners:
            listener()

    def queued_elsewhere(self) -> None:
        """Another process of the node told (PostgreSQL's notification) that it queued outbox
        entries: wake this process's delivery workers as for a commit of its own."""
        for listener in self._queued_listeners:
            listener()

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        moved = queued = audited = False
        with _writing(), self._writers:
            with self.engine.begin() as conn:
                try:
                    yield conn
                finally:
                    moved = bool(conn.info.pop(_BUMPED, False))
                    queued = bool(conn.info.pop(_QUEUED, False))
                    audited = bool(conn.info.pop(_AUDITED, False))
            # after the commit (a rolled-back transaction raised out of the block above: no wake)
            if moved:
                for listener in self._bump_listeners:
                    listener()
            if queued:
                self.queued_elsewhere()
            if audited:
                self._audited()

    @contextmanager
    def _exclusive(self, lock: int, table: str) -> Iterator[Connection]:
        """One transaction that holds the lock ``lock`` over ``table`` from its first statement to its end.

        Where order matters (the audit log's tree), reading the state and writing the next one must
        be one step that no other thread or process interleaves: SQLite takes its write lock at
        ``BEGIN IMMEDIATE`` (another writer waits for it, up to the busy timeout); PostgreSQL a
        transaction-scoped advisory lock (``pg_advisory_xact_lock``), released at commit or rollback,
        whose key is ``lock`` (a 32-bit class) and the OID of ``table`` as this connection's search
        path finds it: the nodes of one database in two schemas have two tables, so two locks, and
        never wait for each other; the processes of one node share the table and so the lock.
        Everything read after it sees every commit made before it.
        """
        with _writing(), self._writers, self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # the driver opens no transaction before a read: open it ourselves, as the writer
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql(_ADVISORY_LOCK, (lock, table))
            try:
                yield conn
                conn.commit()
            finally:
                audited = bool(conn.info.pop(_AUDITED, False))
        if audited:  # committed (a failed transaction raised out of the block above)
            self._audited()

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """One read-only transaction that sees the database as it was at its first read, whatever
        commits meanwhile (SQLite WAL: a read transaction; PostgreSQL: REPEATABLE READ)."""
        with _reading(), self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN")
            else:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            try:
                yield conn
            finally:
                conn.rollback()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reads, each statement its own snapshot (as every statement is in
        PostgreSQL's READ COMMITTED, the store's level): on PostgreSQL outside a transaction
        (autocommit), so a statement is one round trip, where the driver's ``BEGIN`` and the pool's
        ``ROLLBACK`` around it made three. Nothing read here may rely on two statements sharing a
        snapshot (they never did: READ COMMITTED takes one a statement); what must, reads through
        :meth:`_snapshot`, and what writes, through :meth:`_begin` (issue 18: a serving node's
        delivery loop, background loops and API reads took ~400 read transactions for 3,000 items
        delivered, two round trips each that carried nothing)."""
        with _reading(), self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @contextmanager
    def _sqlite_driver(self) -> Iterator[Any]:
        """SQLite: a driver connection for one statement or one transaction of the driver's own
        (:meth:`_kept_rows`, :meth:`append_audit`), from this store's short list of them: each made
        by the engine's pool (the dialect's set-up and ``_sqlite_pragmas`` applied, as every pooled
        one) and then detached from it, so that taking one is a list's ``pop``. The pool's checkout
        and return around each such statement (its proxy, weak reference and events, the return's
        rollback) cost a served node's read threads more than the statement itself (issue 18,
        benchmarks/JOURNAL.md, bench_load's thirteenth pass). One is given back only as the pool's
        return would leave it, outside any transaction (rolled back otherwise); one whose use failed
        is closed, never given again. At most ``_POOL_SIZE`` are kept; ``close`` closes them. An
        in-memory database (one connection: its pool's) is used through the pool as before."""
        if not self._threads:
            with self.engine.connect() as conn:
                yield conn.connection.dbapi_connection
            return
        try:
            held = self._spare.pop()  # atomic: each thread takes its own
        except IndexError:
            held = self.engine.raw_connection()
            held.detach()  # this store's from now on, closed by it
        dbapi = held.dbapi_connection
        try:
            yield dbapi
            if dbapi is not None and dbapi.in_transaction:
                dbapi.rollback()  # nothing held between two uses
        except BaseException:
            held.close()
            raise
        if self._closed or len(self._spare) >= _POOL_SIZE:
            held.close()
        else:
            self._spare.append(held)

    # --- schema ---

    def migrate(self) -> None:
        """Apply every Alembic migration not yet applied (idempotent)."""
        config = Config()
        config.set_main_option("script_location", str(files("gsomia.store") / "migrations"))
        with self._begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def claim(self, party: str, identity: str, now_us: int) -> None:
        """Record that this database belongs to the node ``identity`` of ``party``, or refuse.

        The first node to start on an empty database claims it; any other node (another party,
        or another node of the same party, whose payload key differs) gets a ``ConfigError``
        naming whose database it is, and touches nothing.
        """
        table = t.node_identity
        query = select(table.c.party, table.c.identity).where(table.c.id == 1)
        with self._read() as conn:
            row = conn.execute(query).first()
        if row is None:
            try:
                with self._begin() as conn:
                    conn.execute(
                        insert(table).values(id=1, party=party, identity=identity, claimed_us=now_us)
                    )
                return
            except ConflictError:  # another process claimed it first: whose is it?
                with self._read() as conn:
                    row = conn.execute(query).one()
        if row.party != party or row.identity != identity:
            raise ConfigError(
                f"the database {self.name} belongs to another node ({row.party}, "
                f"{row.identity.split(':', 1)[-1][:12]}...), not to this {party} node "
                f"({identity.split(':', 1)[-1][:12]}...): give each node its own database or schema "
                "(gsomia net up --database-url gives each its own schema)"
            )

    def remember_signed_tracks(
        self,
        batch: str,
        originator: str,
        leaves: Sequence[int],
        now_us: int,
        forget_before_us: int,
        tracks: Sequence[str] = (),
        signed_us: int | None = None,
    ) -> tuple[list[int], set[str]]:
        """Record that the leaves ``leaves`` of the signed batch ``batch`` arrived, carrying the track
        updates ``tracks`` (their identities, hashed); returns the leaves that had arrived before (a
        replay: then nothing is recorded) and the updates that had (sent again under a new signature:
        the caller drops them). One :class:`SignedArrival` of :meth:`remember_signed_arrivals`; the
        batch signed at ``signed_us`` (by default as it arrived, ``now_us``)."""
        signed = now_us if signed_us is None else signed_us
        arrival = SignedArrival(batch, originator, tuple(leaves), tuple(tracks), now_us, signed)
        replayed, before = self.remember_signed_arrivals([arrival], forget_before_us)[0]
        return replayed, before

    def remember_signed_arrivals(
        self,
        arrivals: Sequence[SignedArrival],
        forget_before_us: int,
        audit: Sequence[AuditRow] = (),
        *,
        fresh_us: int = 0,
    ) -> list[Remembered]:
        """Record ``arrivals`` in order, in one transaction (one commit for them all: the receiver's
        group commit), and say of each what had arrived before: an arrival is checked against every
        one recorded before it, the earlier ones of ``arrivals`` included (a replay in the same
        commit as its original is a replay), and a replayed arrival records nothing. The audit
        records ``audit`` are appended in the same transaction.

        Rows seen before ``forget_before_us`` are forgotten first (a batch that old is refused as stale
        before it gets here), so the tables hold one window's worth: in a call whose bound is at least
        ``_FORGET_STEP_US`` past the last one this store forgot before (a call with an older bound,
        or one less than a step on, forgets nothing new), so a row is forgotten at most a step after
        the bound passed it, never before. Forgetting them blinds the memory to the batches signed
        before ``forget_before_us`` plus ``fresh_us`` (how far from this node's clock a batch's
        signature is taken as fresh: an earlier arrival of such a batch may be among the rows gone),
        so from that commit on, such a batch is a replay, nothing of it recorded, in every process of
        the node and whatever the clock reads after (a clock set back would make a forgotten batch's
        signature fresh again): the bound is kept in the store beside the memory and only raised
        (:func:`_forgetting`). The memory in a file of its own refuses so the batches signed before it
        started blind, too.
        On SQLite the transaction takes the database's write lock from its start (``BEGIN
        IMMEDIATE``), so no other writer comes between reading what arrived before and recording
        the rest. Two processes recording the same leaf at once: the second is told it is a replay;
        the same update at once: the second is told it arrived before. Where that shows as a
        conflict (PostgreSQL), the arrivals are recorded again one transaction each, so that one
        arrival's conflict is never another's.
        """
        table, seen_tracks = t.track_batches_seen, t.tracks_seen
        # a commit whose bound has not moved on (audit records alone) has nothing to forget; forgetting
        # once the bound moved a step, not in one bulk a second (that commit was the slowest in a
        # hundred) nor in every commit: each commit's forgetting rewrote the first pages of both
        # tables' time-ordered trees, 4.4 of the 13.8 pages a commit of one update wrote to the log
        prune = forget_before_us >= self._forgotten_us + _FORGET_STEP_US
        if prune:
            self._forgotten_us = forget_before_us
        forget = forget_before_us if prune else None
        memory = self._replay_file()
        if memory is not None:  # SQLite on a machine whose boot is known: the memory's own file
            answers = self._remember_in_file(memory, arrivals, forget, fresh_us)
            if audit:
                self.append_audit(audit)
            return answers
        try:
            if self.engine.dialect.name == "sqlite":
                with _writing(), self._writers, self.engine.connect() as conn:
                    answers = self._remember_on_sqlite(conn, arrivals, forget, fresh_us, audit)
                if audit:
                    self._audited()
                return answers
            with self._begin() as conn:
                meta = t.node_meta
                # read after nothing of this commit: another process's commit that forgot rows and
                # raised the bound either committed before this read (the bound is seen) or after
                # this commit's own reads of the rows (they were still there), under READ COMMITTED;
                # only a clock stepping back by minutes within those milliseconds falls between
                held = conn.execute(select(meta.c.value).where(meta.c.key == _REPLAY_SINCE)).scalar()
                since = _forgetting(_UNBOUNDED if held is None else int(held), forget, fresh_us)
                if forget is not None:
                    if held is None or since > int(held):
                        conn.execute(_raise_since(since))
                    conn.execute(table.delete().where(table.c.seen_us < forget))
                    conn.execute(seen_tracks.delete().where(seen_tracks.c.seen_us < forget))
                answers = _remember_since(
                    arrivals, since, lambda rest: [_remember_core(conn, arrival) for arrival in rest]
                )
                self._audit(conn, audit)
                return answers
        except ConflictError:
            if len(arrivals) > 1:
                answers = [
                    self.remember_signed_arrivals([arrival], forget_before_us, fresh_us=fresh_us)[0]
                    for arrival in arrivals
                ]
                self.append_audit(audit)
                return answers
            self.append_audit(audit)
            return [Remembered(sorted(set(arrival.leaves)), set()) for arrival in arrivals]

    def remember_signed_arrivals_at_once(
        self, arrivals: Sequence[SignedArrival], forget_before_us: int, *, fresh_us: int = 0
    ) -> list[Remembered] | None:
        """:meth:`remember_signed_arrivals` (no audit records), made only where it waits for nothing:
        in the memory's own file (never synced), open already, its write lock free in this process
        and in every other; ``None`` otherwise, nothing written and nothing forgotten (the caller
        makes it by :meth:`remember_signed_arrivals`, which may wait, from a thread). An event loop
        may call it: what it costs is the transaction's own work in the page cache."""
        memory = self._memory_file
        if memory is None:
            return None
        prune = forget_before_us >= self._forgotten_us + _FORGET_STEP_US
        try:
            answers = self._remember_in_file(
                memory, arrivals, forget_before_us if prune else None, fresh_us, wait=False
            )
        except ReplayFileBusy:
            return None
        if prune:
            self._forgotten_us = forget_before_us
        return answers

    @property
    def replay_memory_apart(self) -> bool:
        """Whether the replay memory's commits go to a file of their own (``_memoryfile``), not to
        this database: then its audit records are best committed apart from them."""
        return self._replay_file() is not None

    def _replay_file(self) -> ReplayFile | None:
        """The replay memory's own file (a file-backed SQLite store on a machine whose boot is known),
        made at first use; ``None``: the memory is in this database."""
        if self._memory_file is not None:
            return self._memory_file
        if self.engine.dialect.name != "sqlite" or not _pooled(self.url):
            return None
        boot = boot_id()
        database = self.engine.url.database
        if boot is None or not database or database.startswith("file:"):
            return None
        with self._writer_lock:
            if self._memory_file is None:
                self._memory_file = ReplayFile(
                    os.path.abspath(database),
                    boot,
                    self._memory_held_here,
                    lambda: self.meta(_REPLAY_MEMORY),
                    lambda token: self.put_meta(_REPLAY_MEMORY, token),
                )
        return self._memory_file

    def _memory_held_here(self) -> bool:
        """Whether this database holds rows of a replay memory (kept here before its own file)."""
        try:
            with self._read() as conn:
                return any(
                    conn.execute(select(table.c.seen_us).limit(1)).first() is not None
                    for table in (t.track_batches_seen, t.tracks_seen)
                )
        except SQLAlchemyError as exc:
            raise StoreError("the store failed to answer") from exc

    @staticmethod
    def _remember_in_file(
        memory: ReplayFile,
        arrivals: Sequence[SignedArrival],
        forget_before_us: int | None,
        fresh_us: int,
        *,
        wait: bool = True,
    ) -> list[Remembered]:
        """:meth:`remember_signed_arrivals` in the memory's own file: as in the database (the same
        statements), the bound the memory's own (``ReplayFile.since``: where it started blind, or
        raised by what it forgot). ``wait`` False: ``ReplayFileBusy`` (nothing written) rather than
        wait for a lock."""
        with memory.transaction(arrivals[0].now_us if arrivals else 0, wait=wait) as cursor:
            since = memory.since(cursor, lambda held: _forgetting(held, forget_before_us, fresh_us))
            if forget_before_us is not None:
                cursor.execute("DELETE FROM track_batches_seen WHERE seen_us < ?", (forget_before_us,))
                cursor.execute("DELETE FROM tracks_seen WHERE seen_us < ?", (forget_before_us,))
            return _remember_since(arrivals, since, lambda rest: _remember_sqlite(cursor, rest))

    @staticmethod
    def _remember_on_sqlite(
        conn: Connection,
        arrivals: Sequence[SignedArrival],
        forget_before_us: int | None,
        fresh_us: int,
        audit: Sequence[AuditRow],
    ) -> list[Remembered]:
        """The SQLite transaction of :meth:`remember_signed_arrivals`, on the driver's own cursor: the
        write lock first (``BEGIN IMMEDIATE``: no writer between reading and writing), the memory's
        bound read (and raised, with the rows seen before ``forget_before_us`` forgotten; ``None``:
        not in this commit), the arrivals, the audit records, the commit
        (:func:`_driver_transaction`)."""
        with _driver_transaction(conn, "remember_signed_arrivals") as cursor:
            held = cursor.execute("SELECT value FROM node_meta WHERE key = ?", (_REPLAY_SINCE,)).fetchone()
            since = _forgetting(_UNBOUNDED if held is None else int(held[0]), forget_before_us, fresh_us)
            if forget_before_us is not None:
                if held is None or since > int(held[0]):
                    cursor.execute(
                        "INSERT INTO node_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                        "SET value = excluded.value "
                        "WHERE CAST(node_meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)",
                        (_REPLAY_SINCE, str(since)),
                    )
                cursor.execute("DELETE FROM track_batches_seen WHERE seen_us < ?", (forget_before_us,))
                cursor.execute("DELETE FROM tracks_seen WHERE seen_us < ?", (forget_before_us,))
            answers = _remember_since(arrivals, since, lambda rest: _remember_sqlite(cursor, rest))
            if audit:
                cursor.executemany(_INSERT_AUDIT["qmark"], _audit_values(audit))
        return answers

    @property
    def name(self) -> str:
        """The database URL without its password, to name it in a message."""
        return _redacted(self.url)

    @staticmethod
    def head() -> str:
        """The newest migration this gsomia ships (what ``migrate`` brings a database to)."""
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(files("gsomia.store") / "migrations"))
        head = ScriptDirectory.from_config(config).get_current_head()
        assert head is not None  # noqa: S101 - the package ships its migrations
        return head

    def revision(self) -> str | None:
        with self._read() as conn:
            try:
                return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            except SQLAlchemyError:
                return None

    # --- items ---

    def insert_items(
        self,
        new: Sequence[NewItem],
        inventory: Sequence[InventoryEntry] = (),
        audit: Sequence[AuditRow] = (),
    ) -> list[int]:
        """Insert items, their topics, inventory entries (by item id) and audit rows in one transaction."""
        with self._begin() as conn:
            return self._write_items(conn, new, inventory, audit)

    def insert_item_parts(self, parts: Iterable[ItemPart]) -> list[int]:
        """:meth:`insert_items` of each part ``parts`` yields, all in ONE transaction: all of them, or
        (on any error, the iterator's own included) none. Each part is written by a writer thread of
        the store while the caller's iterator makes the next one, so a batch's row building (Python)
        and its writes (the driver's, which let go of the GIL in the database: SQLite's B-trees and
        WAL, PostgreSQL's round trips) run side by side on two cores (issue 18). The iterator runs in
        the calling thread; it may read the store (another connection) but must not write to it. Its
        first part is made before the transaction takes its connection (and, on SQLite, the process's
        writer queue): a read there, which asks the pool for a connection of its own, then holds
        none, so an ingest of one part (every single item a request ingests) holds nothing while it
        waits for one; the later parts are made inside the transaction, beside the writes. The first
        error found ends the batch and nothing is written: the iterator's (raised even when a part
        handed to the writer before it was refused too), or a part's write. The seqs of the items,
        in order."""
        # a batch of 1,000 items puts ~2,900 pages into a 1M-item SQLite store's log (the random ids'
        # and creation instants' index pages), so every fifth or sixth commit carried SQLite's own
        # checkpoint of 64 MB: ~70 ms CPU and two fsyncs (0.6-0.9 s wall on the shared machine),
        # with the write lock held. They run in the store's checkpoint thread instead (issue 18)
        self.checkpoint_aside()
        seqs: list[int] = []
        remaining = iter(parts)
        first = next(remaining, None)  # before the transaction: see above
        if first is None:
            return seqs
        with self._begin() as conn, self._writers_of_a_batch() as writers:
            pending: Future[list[int]] | None = None
            try:
                for new, inventory, audit in itertools.chain((first,), remaining):
                    if pending is not None:
                        seqs += pending.result()
                    if not self._threads:  # an in-memory SQLite's one connection is its thread's only
                        seqs += self._write_items(conn, new, inventory, audit)
                        continue
                    pending = writers(self._write_items, conn, new, inventory, audit)
                if pending is not None:
                    seqs += pending.result()
                    pending = None
            finally:
                if pending is not None:  # raising already: the write in flight ends before the rollback
                    wait([pending])
        return seqs

    @contextmanager
    def _writers_of_a_batch(self) -> Iterator[Callable[..., Future[list[int]]]]:
        """Where :meth:`insert_item_parts` hands a batch's parts (``submit``): the store's threads,
        one a batch at a time and as many as the transactions its pool's connections can hold at once,
        so a part always finds one. Fewer (033eaff had 20 for 40 connections) and a batch holding the
        ``item_clock`` row's lock could wait for a thread behind first parts waiting for that lock, for
        ever. Without a known bound on the connections, the batch's own thread."""
        if self._part_threads is None:
            with ThreadPoolExecutor(1, thread_name_prefix="gsomia-store-writer") as own:
                yield own.submit
            return
        with self._writer_lock:
            if self._part_writer is None:
                self._part_writer = ThreadPoolExecutor(
                    self._part_threads, thread_name_prefix="gsomia-store-writer"
                )
            writer = self._part_writer
        yield writer.submit

    def _write_items(
        self,
        conn: Connection,
        new: Sequence[NewItem],
        inventory: Sequence[InventoryEntry],
        audit: Sequence[AuditRow],
    ) -> list[int]:
        seqs = self._insert_items(conn, new)
        by_id = {item.id: s for item, s in zip(new, seqs, strict=True)}
        self._inventory(conn, inventory, by_id)
        self._audit(conn, audit)
        return seqs

    def _insert_items(self, conn: Connection, new: Sequence[NewItem]) -> list[int]:
        seqs: list[int] = []
        if new:
            first = allocate_added(conn, len(new), max(item.ingested_us for item in new))
            # plain tuples straight to the driver (insert_rows): SQLAlchemy's building of a batched
            # INSERT's parameters, per row and column, cost more than SQLite's insert (issue 18)
            fields = _NEW_ITEM_FIELDS
            rows = [(*fields(item), item.origin_id or item.id, first + n) for n, item in enumerate(new)]
            if conn.dialect.name == "sqlite":
                # the seqs given in the statement: the rowids SQLite would give (one past the largest,
                # ``seq`` being INTEGER PRIMARY KEY without AUTOINCREMENT), read under the write lock
                # allocate_added took, so no other writer comes between; reading each back by id took
                # 1,000 lookups in the random ids' index a batch (issue 18)
                top = conn.exec_driver_sql("SELECT max(seq) FROM items").scalar()
                base = (top or 0) + 1
                seqs = list(range(base, base + len(new)))
                insert_rows(
                    conn,
                    t.items,
                    [(*row, seq) for row, seq in zip(rows, seqs, strict=True)],
                    (*_NEW_ITEM_COLUMNS, "seq"),
                )
            else:
                # each new seq read back with its item's id (unique): one statement, one array per
                # column, takes the batch (issue 18)
                written = insert_rows(conn, t.items, rows, _NEW_ITEM_COLUMNS, ("id", "seq"))
                given = {row[0]: row[1] for row in written}
                seqs = [given[item.id] for item in new]
        topic_rows = [(tp, s) for item, s in zip(new, seqs, strict=True) for tp in item.topics]
        insert_rows(conn, t.item_topics, topic_rows, ("topic", "item_seq"))
        return seqs

    def _inventory(
        self,
        conn: Connection,
        entries: Sequence[InventoryEntry],
        by_id: dict[str, int],
    ) -> None:
        rows = []
        missing = list(dict.fromkeys(e[0] for e in entries if e[0] not in by_id))
        seqs = dict(by_id)
        for start in range(0, len(missing), _IN_CHUNK):  # the other items' seqs: one query per chunk
            chunk = missing[start : start + _IN_CHUNK]
            query = select(t.items.c.id, t.items.c.seq).where(among(conn, t.items.c.id, chunk))
            seqs |= {row[0]: row[1] for row in conn.execute(query)}
        for item_id, at_us, kind, party, actor, detail in entries:
            seq = seqs.get(item_id)
            if seq is None:
                raise StoreError(f"no item {item_id!r} for an inventory entry; nothing was written")
            rows.append((seq, at_us, kind, party, actor, detail))
        insert_rows(conn, t.inventory, rows, ("item_seq", "at_us", "kind", "party", "actor", "detail"))

    def add_inventory(self, entries: Sequence[InventoryEntry]) -> None:
        with self._begin() as conn:
            self._inventory(conn, entries, {})

    def get_item(self, item_id: str) -> ItemRow | None:
        with self._read() as conn:
            row = conn.execute(select(t.items).where(t.items.c.id == item_id)).one_or_none()
        return None if row is None else ItemRow(**row._mapping)

    def get_items(self, item_ids: Sequence[str]) -> dict[str, ItemRow]:
        """The stored rows of ``item_ids`` by id (absent ids are missing), a few queries for many ids."""
        found: dict[str, ItemRow] = {}
        wanted = list(dict.fromkeys(item_ids))
        if not wanted:
            return found
        with self._read() as conn:  # each chunk's statement its own snapshot, as in READ COMMITTED
            binary = conn.dialect.name == "postgresql"
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                # the row's values in ``ItemRow``'s field order, given positionally: a mapping a row
                # cost as much as the read itself (issue 18: a release, then its delivery, read each)
                if binary:
                    rows: Iterable[Any] = _binary_rows(conn, _PG_ITEMS_BY_ID, (chunk,))
                else:
                    rows = conn.execute(select(*_ROW_COLUMNS).where(among(conn, t.items.c.id, chunk)))
                for r in rows:
                    row = ItemRow(*r)
                    found[row.id] = row
        return found

    def item_of(self, originator: str, origin_id: str) -> ItemRow | None:
        """The item ``originator`` gave the id ``origin_id``, if held here (an item is (originator, id))."""
        with self._read() as conn:
            query = select(t.items).where(
                t.items.c.originator == originator, t.items.c.origin_id == origin_id
            )
            row = conn.execute(query).one_or_none()
        return None if row is None else ItemRow(**row._mapping)

    def items_of(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], ItemRow]:
        """The items held here among (originator, id) ``pairs``, by pair (a few queries for many)."""
        found: dict[tuple[str, str], ItemRow] = {}
        wanted = set(pairs)
        names = list(dict.fromkeys(name for _, name in wanted))
        with self._read() as conn:  # each chunk's statement its own snapshot, as in READ COMMITTED
            for start in range(0, len(names), _IN_CHUNK):
                chunk = names[start : start + _IN_CHUNK]
                for r in conn.execute(select(t.items).where(among(conn, t.items.c.origin_id, chunk))):
                    if (r.originator, r.origin_id) in wanted:
                        found[(r.originator, r.origin_id)] = ItemRow(**r._mapping)
        return found

    def items_named(self, ref: str, originator: str | None = None) -> list[ItemRow]:
        """Every item ``ref`` may name here: the item whose reference it is, the items whose originator
        gave them that id, and, for ``ORIGINATOR:id``, that originator's item ``id``; with
        ``originator``, only that originator's. In the store's order, each once."""
        head, sep, rest = ref.partition(":")
        prefixed = bool(sep and rest and len(head) == 3 and head.isalpha() and head.isupper())
        values = {"ref": ref, "head": head, "rest": rest, "originator": originator}
        return [ItemRow(*r) for r in self._kept_rows(_named_query(prefixed, originator is not None), values)]

    def existing_items(self, item_ids: Sequence[str]) -> set[str]:
        """Which of ``item_ids`` this store already holds (one query)."""
        if not item_ids:
            return set()
        with self._read() as conn:
            query = select(t.items.c.id).where(among(conn, t.items.c.id, item_ids))
            return {r[0] for r in conn.execute(query)}

    def item_topics(self, seq: int) -> list[str]:
        with self._read() as conn:
            rows = conn.execute(select(t.item_topics.c.topic).where(t.item_topics.c.item_seq == seq))
            return sorted(r[0] for r in rows)

    def list_items(
        self, where: ItemFilter, after_seq: int, limit: int, *, with_payload: bool = False
    ) -> list[ItemRow]:
        """Items after ``after_seq`` matching ``where``, in ``seq`` order (keyset: no OFFSET); with
        ``where.by_added`` the key is the date-added instead (``after_seq`` is then a date-added)."""
        walked = where.topic is not None and not where.by_added and self.engine.dialect.name == "sqlite"
        present = tuple(name for name, _, _ in _ITEM_FILTERS if getattr(where, name) is not None)
        query = _page_query(present, where.topic is not None, where.by_added, walked, with_payload)
        values = {name: getattr(where, name) for name in present}
        values |= {"after": after_seq, "limit": limit, "topic": where.topic}
        # the columns in ItemRow's order: no mapping built a row
        return [ItemRow(*r) for r in self._kept_rows(query, values)]

    def _kept_rows(self, query: Select[Any], values: dict[str, Any]) -> Sequence[Sequence[Any]]:
        """The rows of a kept SELECT (:func:`_named_query`, :func:`_page_query`) with ``values`` bound
        (names the statement does not use are left out). On SQLite on the driver's own cursor (of a
        connection past the pool: :meth:`_sqlite_driver`), the
        statement's SQL compiled once for this dialect (:func:`_sqlite_sql`): SQLAlchemy's execution
        around a page's or a read's one statement (its context, parameters and result) cost more than
        the statement (issue 18, bench_load's profile); the driver's errors become SQLAlchemy's, as
        an ``execute``'s would. Elsewhere through ``execute``, outside a transaction
        (:meth:`_read`: the one statement is its own snapshot), one round trip where the
        driver's ``BEGIN`` and the pool's ``ROLLBACK`` around it made three: a page's and a read's
        statement, under load on PostgreSQL (issue 18, bench_load's two processes)."""
        dialect = self.engine.dialect
        if dialect.name != "sqlite":
            with self._read() as conn:
                return conn.execute(query, values).all()
        sql, names, fixed = _sqlite_sql(query, dialect)
        with _reading(), self._sqlite_driver() as dbapi, _dbapi_cursor(dbapi, dialect, sql) as cursor:
            cursor.execute(sql, [values[n] if n in values else fixed[n] for n in names])
            return cursor.fetchall()  # type: ignore[no-any-return]

    def count_items(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(t.items)).scalar_one())

    def inventory(self, item_id: str) -> list[InventoryRow]:
        query = _INVENTORY.where(t.items.c.id == item_id).order_by(t.inventory.c.seq)
        with self._read() as conn:
            return [InventoryRow(*r) for r in conn.execute(query)]

    def inventories(self, item_ids: Sequence[str], kind: str) -> dict[str, list[InventoryRow]]:
        """The inventory entries of ``kind`` of many items at once (as :meth:`inventory` gives each
        item's, in its order), by item id; an item without any is missing."""
        found: dict[str, list[InventoryRow]] = {}
        wanted = list(dict.fromkeys(item_ids))
        with self._read() as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                query = (
                    _INVENTORY.where(among(conn, t.items.c.id, wanted[start : start + _IN_CHUNK]))
                    .where(t.inventory.c.kind == kind)
                    .order_by(t.inventory.c.seq)
                )
                for r in conn.execute(query):
                    row = InventoryRow(*r)
                    found.setdefault(row.item_id, []).append(row)
        return found

    # --- people and tokens ---

    def add_person(self, person_id: str, record: str, at_us: int, audit: Sequence[AuditRow] = ()) -> None:
        with self._begin() as conn:
            conn.execute(
                insert(t.people),
                {"id": person_id, "record": record, "created_us": at_us, "updated_us": at_us},
            )
            self._audit(conn, audit)

    def update_person(self, person_id: str, record: str, at_us: int, audit: Sequence[AuditRow] = ()) -> bool:
        with self._begin() as conn:
            done = conn.execute(
                update(t.people).where(t.people.c.id == person_id).values(record=record, updated_us=at_us)
            ).rowcount
            bump(conn, PEOPLE)
            self._audit(conn, audit)
            return bool(done)

    def get_person(self, person_id: str) -> str | None:
        with self._read() as conn:
            return conn.execute(
                select(t.people.c.record).where(t.people.c.id == person_id)
            ).scalar_one_or_none()

    def list_people(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute(select(t.people.c.record).order_by(t.people.c.id))]

    def add_token(self, row: TokenRow, digest: str, audit: Sequence[AuditRow] = ()) -> TokenRow:
        """Insert a token; one with a parent only while the parent is valid and outlives it.

        The parent's row is locked (PostgreSQL) for the transaction, and revoking a token updates
        its row first (:meth:`revoke_token`), so a token minted while its parent is being revoked is
        either refused here or found and revoked there: never left valid below a revoked parent.
        Raises ``ConflictError`` if the parent is revoked, expired by ``row.created_us``, or
        expires before ``row``.
        """
        with self._begin() as conn:
            if row.parent_id is not None:
                parent = conn.execute(
                    select(t.tokens.c.expires_us, t.tokens.c.revoked_us)
                    .where(t.tokens.c.id == row.parent_id)
                    .with_for_update()
                ).one_or_none()
                if parent is None or parent.revoked_us is not None or parent.expires_us <= row.created_us:
                    raise ConflictError(f"token {row.parent_id} is no longer valid: it can mint nothing")
                if row.expires_us > parent.expires_us:
                    raise ConflictError(f"a token minted by {row.parent_id} cannot outlive it")
            conn.execute(
                insert(t.tokens),
                {
                    "id": row.id,
                    "person_id": row.person_id,
                    "hash": digest,
                    "created_us": row.created_us,
                    "expires_us": row.expires_us,
                    "revoked_us": row.revoked_us,
                    "parent_id": row.parent_id,
                    "kind": row.kind,
                },
            )
            self._audit(conn, audit)
        return row

    _TOKEN_COLUMNS = (
        t.tokens.c.id,
        t.tokens.c.person_id,
        t.tokens.c.created_us,
        t.tokens.c.expires_us,
        t.tokens.c.revoked_us,
        t.tokens.c.parent_id,
        t.tokens.c.kind,
    )

    def _token_where(self, condition: Any) -> TokenRow | None:
        with self._read() as conn:
            row = conn.execute(select(*self._TOKEN_COLUMNS).where(condition)).one_or_none()
        return None if row is None else TokenRow(*row)

    def find_token(self, digest: str) -> TokenRow | None:
        """The token whose SHA-256 is ``digest`` (tokens are only ever stored hashed)."""
        return self._token_where(t.tokens.c.hash == digest)

    def token(self, token_id: str) -> TokenRow | None:
        return self._token_where(t.tokens.c.id == token_id)

    def tokens_of(self, person_id: str) -> list[TokenRow]:
        """A person's tokens and sessions, oldest first (their ids and lifetimes, no secrets)."""
        query = (
            select(*self._TOKEN_COLUMNS)
            .where(t.tokens.c.person_id == person_id)
            .order_by(t.tokens.c.created_us, t.tokens.c.id)
        )
        with self._read() as conn:
            return [TokenRow(*r) for r in conn.execute(query)]

    def _revoke_lineage(self, conn: Connection, roots: Sequence[str], at_us: int) -> list[str]:
        """Revoke ``roots`` and every token minted from them (at any depth); the ids newly revoked.

        Each root's row is updated first: a concurrent mint that locked it has committed its child
        by then, and the child is found below."""
        revoked: list[str] = []
        for root in roots:
            done = conn.execute(
                update(t.tokens)
                .where(t.tokens.c.id == root, t.tokens.c.revoked_us.is_(None))
                .values(revoked_us=at_us)
            ).rowcount
            if done:
                revoked.append(root)
        frontier = list(roots)
        while frontier:
            children = [
                r[0] for r in conn.execute(select(t.tokens.c.id).where(t.tokens.c.parent_id.in_(frontier)))
            ]
            live = [
                r[0]
                for r in conn.execute(
                    select(t.tokens.c.id).where(t.tokens.c.id.in_(children), t.tokens.c.revoked_us.is_(None))
                )
            ]
            if live:
                conn.execute(update(t.tokens).where(t.tokens.c.id.in_(live)).values(revoked_us=at_us))
                revoked += live
            frontier = children
        return revoked

    def revoke_token(
        self,
        token_id: str,
        at_us: int,
        audit: Callable[[list[str]], Sequence[AuditRow]] | Sequence[AuditRow] = (),
    ) -> list[str]:
        """Revoke a token and every token minted from it, in one transaction; the ids newly revoked
        (empty if the token was revoked already). ``audit`` may be rows, or made from those ids."""
        with self._begin() as conn:
            revoked = self._revoke_lineage(conn, [token_id], at_us)
            if revoked:
                bump(conn, TOKENS)
                self._audit(conn, audit(revoked) if callable(audit) else audit)
            return revoked

    def disable_person(
        self, person_id: str, record: str, at_us: int, audit: Callable[[list[str]], Sequence[AuditRow]]
    ) -> list[str]:
        """Store the person's record (disabled) and revoke all their tokens and sessions, and every
        token minted from them, in one transaction; the ids newly revoked."""
        with self._begin() as conn:
            conn.execute(
                update(t.people).where(t.people.c.id == person_id).values(record=record, updated_us=at_us)
            )
            own = [
                r[0]
                for r in conn.execute(
                    select(t.tokens.c.id).where(t.tokens.c.person_id == person_id).order_by(t.tokens.c.id)
                )
            ]
            revoked = self._revoke_lineage(conn, own, at_us)
            bump(conn, PEOPLE)
            bump(conn, TOKENS)
            self._audit(conn, audit(revoked))
            return revoked

    # --- audit seam ---

    def _audit(self, conn: Connection, rows: Sequence[AuditRow]) -> None:
        if rows:
            conn.info[_AUDITED] = True  # the writer told after the commit (``_begin``, ``_exclusive``)
        if len(rows) >= _COPY_AUDIT_FROM and conn.dialect.name == "postgresql":
            # many records at once (a batch, the tally of a busy window): one COPY, whose rows the
            # server takes in one pass, where executemany runs the INSERT once a row (issue 18: half
            # the server's CPU and a third of the client's per record)
            text = "".join(
                [
                    f"{r.at_us}\t{_copy_field(_text(r.kind))}\t{_copy_field(_text(r.actor))}\t"
                    f"{_copy_field(_text(r.subject))}\t{_copy_field(_text(r.outcome))}\t"
                    f"{_copy_field(r.detail)}\t{_copy_field(r.entry_id or new_entry_id())}\n"
                    for r in rows
                ]
            )
            _copy(conn, _COPY_AUDIT, text)
            return
        if rows:
            # one fixed statement straight to the driver's executemany: building SQLAlchemy's
            # parameters per row cost about as much as the insert itself (issue 18)
            sql = _INSERT_AUDIT["qmark" if conn.dialect.paramstyle == "qmark" else "format"]
            conn.exec_driver_sql(sql, _audit_values(rows))

    def _audit_leaves(self, conn: Connection, rows: Sequence[AuditRow]) -> None:
        """PostgreSQL: ``rows`` written by the transaction ``conn`` as leaves of the audit tree, in it,
        as its LAST writes: an exchange batch's records (a selection's ``item.release``, a settled
        batch's ``envelope.delivered``, a received batch's ``envelope.received``: 32 or more, once
        the audit log registered its writer) with their leaf index and hash as they are inserted, so
        that no ``UPDATE`` rewrites each ~2 KB record later to store its leaf (a new row version, its
        four index entries, the dead one left behind) and the writer reads none of them back. The
        tree's one-writer rule holds: from here to its commit the transaction holds the advisory lock
        ``AuditLog.integrate`` takes, and the frontier is read under it (READ COMMITTED: each
        statement sees every commit made before the lock was granted); the records still pending go
        first (``AuditLog._append_leaves``). Nothing may follow it in the transaction: after the
        lock it takes no lock another writer could hold while it waits for the tree's (a deadlock);
        the tree's writers take none of the exchange's (issue 18: ~20 us of the server's CPU a
        record). SQLite, fewer rows, or no writer: :meth:`_audit` (on SQLite the same change cost
        the exchange more than it saved: benchmarks/JOURNAL.md, "The receiver's audit records as
        leaves")."""
        writer = self._leaf_writer
        if writer is None or len(rows) < _LEAVES_FROM or conn.dialect.name != "postgresql":
            self._audit(conn, rows)
            return
        values = _audit_values(rows)  # the entry ids made now: a leaf commits to its record's id
        conn.exec_driver_sql(_ADVISORY_LOCK, (TREE_LOCK, TREE_TABLE))
        writer(conn, values)

    def leaves_on_append(self, writer: LeafWriter) -> None:
        """From now on :meth:`append_audit` hands a batch of 32 records or more to ``writer``, in one
        transaction under the audit tree's lock (the tree's one writer: SQLite's ``BEGIN IMMEDIATE``,
        PostgreSQL's advisory lock), which writes them as leaves of the tree at once: no ``UPDATE`` of
        each record later, no read of them back (issue 18). The audit log registers it; the store
        does not know how the tree is built. Smaller batches, and the records other transactions
        write with their own changes, wait for ``AuditLog.integrate`` as before."""
        self._leaf_writer = writer

    def append_audit(self, rows: Sequence[AuditRow]) -> None:
        """Append ``rows`` in one transaction. A batch of 32 or more, once the audit log registered
        its writer (:meth:`leaves_on_append`), becomes leaves of the tree in the same transaction.
        Otherwise on SQLite on the driver's own cursor (``BEGIN IMMEDIATE``, one ``executemany``, the
        commit), as :meth:`remember_signed_arrivals` does: every read's record (grouped with
        concurrent ones) is written here, and SQLAlchemy's transaction and execution around the one
        statement cost as much as the insert (issue 18, bench_load's profile). The driver's errors
        become SQLAlchemy's, then the caller's (``_writing``)."""
        if not rows:
            return
        writer = self._leaf_writer
        if writer is not None and len(rows) >= _LEAVES_FROM:
            values = _audit_values(rows)  # the entry ids made now: a leaf commits to its record's id
            with self._exclusive(TREE_LOCK, TREE_TABLE) as conn:
                writer(conn, values)
            return
        if self.engine.dialect.name != "sqlite":
            with self._begin() as conn:
                self._audit(conn, rows)
            return
        with (
            _writing(),
            self._writers,
            self._sqlite_driver() as dbapi,
            _dbapi_transaction(dbapi, self.engine.dialect, "append_audit") as cursor,
        ):
            cursor.executemany(_INSERT_AUDIT["qmark"], _audit_values(rows))
        self._audited()

    # --- refusals of unauthenticated callers, in bounded space ---

    def tally_refusals(
        self,
        key: tuple[str, str, str, int],
        at_us: int,
        count: int,
        sample: str,
        *,
        sources: int,
        recorded: int,
        rows: Callable[[str, int], Sequence[AuditRow]],
    ) -> int:
        """Count ``count`` refusals under ``key`` (kind, source, code, window start) in one transaction;
        how many of them get an audit record of their own (the rest are only counted).

        Of each key's refusals, the first ``recorded`` are written as records (``rows(source, n)``
        makes ``n`` of them); beyond that only the count grows. At most ``sources`` sources of a
        (kind, code, window) get their own row; the others share the row of source ``*``. Bounded: a
        window of a kind and code gives at most (sources + 1) * recorded records, whatever comes.
        """
        kind, source, code, window = key
        table = t.refusal_tallies
        with self._begin() as conn:

            def bump(where_source: str) -> int | None:
                row = conn.execute(
                    update(table)
                    .where(
                        table.c.kind == kind,
                        table.c.source == where_source,
                        table.c.code == code,
                        table.c.window_us == window,
                    )
                    .values(count=table.c.count + count, last_us=at_us)
                    .returning(table.c.count)
                ).first()
                return None if row is None else int(row[0])

            total = bump(source)
            if total is None:
                held = conn.execute(
                    select(func.count())
                    .select_from(table)
                    .where(table.c.kind == kind, table.c.code == code, table.c.window_us == window)
                ).scalar_one()
                if held >= sources:
                    source = OVERFLOW_SOURCE
                    total = bump(source)
            if total is None:
                made = conn.execute(
                    _insert_new(conn, table).values(
                        kind=kind,
                        source=source,
                        code=code,
                        window_us=window,
                        count=count,
                        first_us=at_us,
                        last_us=at_us,
                        sample=sample,
                    )
                ).rowcount
                total = count if made else bump(source)
            before = int(total or count) - count
            own = max(0, min(count, recorded - before))
            if own:
                self._audit(conn, rows(source, own))
            return own

    def close_tallies(
        self, before_us: int, rows: Callable[[list[TallyRow]], Sequence[AuditRow]]
    ) -> list[TallyRow]:
        """Remove the tallies of windows that started before ``before_us`` and write the records
        ``rows`` makes of them, in one transaction (a tally is closed once, whichever process asks).

        Asked by a read first: the node's loop calls this every round and most rounds find no closed
        window, where the ``DELETE`` took the database's write lock (SQLite: the one every writer
        waits for, the audit batches' too) for nothing. A window closing just after the read is
        closed by the next round, as one closing just after the transaction always was."""
        table = t.refusal_tallies
        with self._read() as conn:
            if conn.execute(_ANY_CLOSED_TALLY, {"before_us": before_us}).first() is None:
                return []
        with self._begin() as conn:
            found = [
                TallyRow(**r._mapping)
                for r in conn.execute(
                    delete(table)
                    .where(table.c.window_us < before_us)
                    .returning(
                        table.c.kind,
                        table.c.source,
                        table.c.code,
                        table.c.window_us,
                        table.c.count,
                        table.c.first_us,
                        table.c.last_us,
                        table.c.sample,
                    )
                )
            ]
            self._audit(conn, rows(found))
            return found

    def audit(self, *, after_seq: int = 0, kind: str | None = None, limit: int = 1000) -> list[AuditRow]:
        query = select(t.audit_records).where(t.audit_records.c.seq > after_seq)
        if kind is not None:
            query = query.where(t.audit_records.c.kind == kind)
        query = query.order_by(t.audit_records.c.seq).limit(limit)
        with self._read() as conn:
            return [AuditRow(**r._mapping) for r in conn.execute(query)]

    def audit_of_kinds(
        self, kinds: Sequence[str], *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditRow]:
        """Audit records of any of ``kinds`` after ``after_seq``, oldest first (the live feed's source)."""
        query = (
            select(t.audit_records)
            .where(t.audit_records.c.seq > after_seq, t.audit_records.c.kind.in_(list(kinds)))
            .order_by(t.audit_records.c.seq)
            .limit(limit)
        )
        with self._read() as conn:
            return [AuditRow(**r._mapping) for r in conn.execute(query)]

    def last_audit_seq(self) -> int:
        """The newest audit record's sequence number (0: none yet)."""
        with self._read() as conn:
            return int(conn.execute(select(func.max(t.audit_records.c.seq))).scalar_one() or 0)

    # --- node metadata ---

    def meta(self, key: str) -> str | None:
        with self._read() as conn:
            return conn.execute(
                select(t.node_meta.c.value).where(t.node_meta.c.key == key)
            ).scalar_one_or_none()

    def put_meta(self, key: str, value: str) -> None:
        """Set (or replace) one node metadata value."""
        with self._begin() as conn:
            conn.execute(t.node_meta.delete().where(t.node_meta.c.key == key))
            conn.execute(insert(t.node_meta), {"key": key, "value": value})
