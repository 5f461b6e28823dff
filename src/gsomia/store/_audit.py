"""The store's side of the audit log: records integrated as leaves, tree nodes, signed and partner heads."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from gsomia.store import _tables as t
from gsomia.store._store import TREE_LOCK, TREE_TABLE, AuditRow, Store, _copy, _copy_field, _driver_cursor

__all__ = ["AuditStore", "ForkEvidenceRow", "GossipHeadRow", "HeadRow", "PartnerHeadRow"]


# fixed statements (values never enter the text): SQLite, the driver's executemany; PostgreSQL, one
# statement each over arrays (one round trip for a whole batch instead of one per row)
_SQLITE_LEAVES = "UPDATE audit_records SET leaf_index = ?, leaf = ? WHERE seq = ?"
_SQLITE_NODES = "INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)"
# The hashes go as one hex text, made bytea once (a text's substr counts characters from its start).
# Two things keep this one statement linear in the round's size. The bytea is made in a
# MATERIALIZED CTE: psycopg prepares a statement it has run five times on a connection, and the
# server's generic plan for it folded a sub-select's decode($1) into the join and ran it again for
# every row (a 640,000-character hex text decoded 10,000 times a round: server CPU 5.0 s per 50,000
# records, 1.0 s with it made once). And the seq range bounds the join: the planner sees the split
# arrays' 10,000 elements and hashes them against audit_records, which without the range it read
# whole (a sequential scan that grew with the log), with it through the primary key's range.
_PG_LEAVES = (
    "WITH h AS MATERIALIZED (SELECT decode(%s, 'hex') AS b) "
    "UPDATE audit_records AS a SET leaf_index = v.i, leaf = substring(h.b FROM v.k::int * 32 - 31 FOR 32) "
    "FROM h, unnest(string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[]) "
    "WITH ORDINALITY AS v(s, i, k) WHERE a.seq = v.s AND a.seq BETWEEN %s AND %s"
)
_PG_COPY_NODES = "COPY merkle_nodes (level, idx, hash) FROM STDIN"
# records written as leaves at once (AuditStore.append_leaves): the record with its leaf index and hash
_SQLITE_LEAF_RECORDS = (
    "INSERT INTO audit_records (at_us, kind, actor, subject, outcome, detail, entry_id, leaf_index, leaf) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PG_COPY_LEAF_RECORDS = (
    "COPY audit_records (at_us, kind, actor, subject, outcome, detail, entry_id, leaf_index, leaf) FROM STDIN"
)
# a proof's subtree hashes: one fixed statement over two arrays, joined to the primary key (a nested
# loop of index look-ups), the same text every time so that the driver prepares it once per
# connection; an OR of ~2 log n key pairs is planned afresh for each proof (its text varies). The
# leaves (level 0) are the records' own leaf hashes (migration 0027: stored once, not again in
# merkle_nodes), found by the unique index on leaf_index in the same statement
# The keys go as three comma-separated texts the server splits (the driver dumps no array element by
# element), on the driver's own cursor (no SQLAlchemy result): 0.45 -> 0.33 ms a query at 50,000
# entries, client CPU 0.33 -> 0.2 ms (issue 18)
_PG_NODES_BY_KEY = (
    "SELECT m.level, m.idx, m.hash FROM unnest(string_to_array(%s, ',')::int[], "
    "string_to_array(%s, ',')::bigint[]) AS k(l, i) "
    "JOIN merkle_nodes AS m ON m.level = k.l AND m.idx = k.i "
    "UNION ALL SELECT 0, a.leaf_index, a.leaf FROM audit_records AS a "
    "WHERE a.leaf_index = ANY(string_to_array(%s, ',')::bigint[])"
)
# the new frontier, written in the writer's transaction (SQLite 3.24+ and PostgreSQL read the same upsert)
_FRONTIER = {
    "qmark": "INSERT INTO node_meta (key, value) VALUES ('audit.frontier', ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    "format": "INSERT INTO node_meta (key, value) VALUES ('audit.frontier', %s) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
}
# the frontier as the writer left it (one primary-key look-up; no parameter, the same text on both)
_FRONTIER_READ = "SELECT value FROM node_meta WHERE key = 'audit.frontier'"
# SQLite: the writer binds each hash as a bytearray, stored as the same BLOB. The driver binds an int,
# a str or a bytearray directly, but a bytes (or None) only after asking its adapter registry and the
# object's __conform__, a failed attribute look-up that raises and clears an AttributeError each time:
# raw sqlite3, 100,000 rows of three parameters, 1.5 us a row with a None and a bytes, 0.7 with a
# text and a bytearray; bytearray(h) costs 0.14 us (issue 18)
# the writer's read: only the fields a leaf commits to, as plain tuples, in leaf order
_PENDING_FIELDS = {
    "qmark": "SELECT seq, at_us, kind, actor, subject, outcome, detail, entry_id "
    "FROM audit_records WHERE leaf_index IS NULL ORDER BY seq LIMIT ?",
    "format": "SELECT seq, at_us, kind, actor, subject, outcome, detail, entry_id "
    "FROM audit_records WHERE leaf_index IS NULL ORDER BY seq LIMIT %s",
}
_ANY_PENDING = "SELECT 1 FROM audit_records WHERE leaf_index IS NULL LIMIT 1"
_PENDING = {  # AuditRow's field order
    "qmark": "SELECT at_us, kind, actor, subject, outcome, detail, seq, entry_id, leaf_index, leaf "
    "FROM audit_records WHERE leaf_index IS NULL ORDER BY seq LIMIT ?",
    "format": "SELECT at_us, kind, actor, subject, outcome, detail, seq, entry_id, leaf_index, leaf "
    "FROM audit_records WHERE leaf_index IS NULL ORDER BY seq LIMIT %s",
}


@dataclass(frozen=True, slots=True)
class HeadRow:
    size: int
    root: bytes
    at_us: int
    jws: str


@dataclass(frozen=True, slots=True)
class PartnerHeadRow:
    party: str
    size: int
    root: bytes
    at_us: int
    jws: str
    received_us: int
    status: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class GossipHeadRow:
    """A third party's signed head a partner (``via``) gossiped, waiting for a consistency proof."""

    party: str
    size: int
    root: bytes
    jws: str
    via: str
    received_us: int


@dataclass(frozen=True, slots=True)
class ForkEvidenceRow:
    """Two signed heads of one party that cannot both be its log (``seq`` is given by the store)."""

    party: str
    pair: str
    first_size: int
    first_root: bytes
    first_jws: str
    second_size: int
    second_root: bytes
    second_jws: str
    shown_by: str
    detail: str
    found_us: int
    seq: int | None = None
    acknowledged_us: int | None = None
    acknowledged_by: str | None = None
    note: str | None = None


def _row(r: object) -> AuditRow:
    m = r._mapping  # type: ignore[attr-defined]
    return AuditRow(
        m["at_us"],
        m["kind"],
        m["actor"],
        m["subject"],
        m["outcome"],
        m["detail"],
        m["seq"],
        m["entry_id"],
        m["leaf_index"],
        m["leaf"],
    )


class AuditStore:
    """Audit-log tables over a :class:`Store`'s engine.

    Unbound, each call is its own transaction. :meth:`writer` and :meth:`snapshot` give a view bound
    to one transaction: the tree's one writer (under the database lock), or a consistent reader.
    """

    def __init__(self, store: Store, conn: Connection | None = None) -> None:
        self.store = store
        self._conn = conn

    @contextmanager
    def writer(self) -> Iterator[AuditStore]:
        """This store bound to one transaction under the tree's lock: the only way the tree grows.

        Whatever is read through it (pending records, the frontier, the latest head) is the state the
        writes continue from; no other writer, in this process or another, runs in between.
        """
        with self.store._exclusive(TREE_LOCK, TREE_TABLE) as conn:
            yield AuditStore(self.store, conn)

    @contextmanager
    def snapshot(self) -> Iterator[AuditStore]:
        """This store bound to one read-only transaction: the tree as it was when it began, however
        the writer goes on meanwhile (what ``verify`` needs to compare records, nodes and frontier)."""
        with self.store._snapshot() as conn:
            yield AuditStore(self.store, conn)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """The bound transaction's connection (the writer's), else the store's reads (autocommit on
        PostgreSQL: each statement its own snapshot)."""
        if self._conn is not None:
            yield self._conn
        else:
            with self.store._read() as conn:
                yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._conn is not None:
            yield self._conn
        else:
            with self.store._begin() as conn:
                yield conn

    def _bound(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("the tree is written only through AuditStore.writer()")
        return self._conn

    def unintegrated(self, limit: int) -> list[AuditRow]:
        with self._read() as conn:
            sql = _PENDING["qmark" if conn.dialect.paramstyle == "qmark" else "format"]
            # plain tuples from the driver in AuditRow's field order: the writer reads thousands a batch
            return [AuditRow(*r) for r in conn.exec_driver_sql(sql, (int(limit),)).all()]

    def pending_fields(self, limit: int) -> list[tuple[Any, ...]]:
        """The oldest ``limit`` records not yet in the tree: (seq, at_us, kind, actor, subject, outcome,
        detail, entry_id) tuples straight from the driver's cursor (no result or row objects: the
        writer reads up to 10,000 at a time, and building them cost more than the read)."""
        with self._read() as conn:
            sql = _PENDING_FIELDS["qmark" if conn.dialect.paramstyle == "qmark" else "format"]
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql, (int(limit),))
                return list(cursor.fetchall())
            finally:
                cursor.close()

    def any_pending(self) -> bool:
        """Whether any record waits to be integrated: one row of the pending records' partial index,
        read without the tree's lock (the writer asks it before taking the lock, and an answer made
        stale by a commit just after it is the next round's, as a locked read a moment earlier
        would have been)."""
        with self._read() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(_ANY_PENDING)
                return cursor.fetchone() is not None
            finally:
                cursor.close()

    def pending(self) -> int:
        """How many records wait to be integrated."""
        unintegrated = t.audit_records.c.leaf_index.is_(None)
        query = select(func.count()).select_from(t.audit_records).where(unintegrated)
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def integrate(
        self,
        first: int,
        seqs: Sequence[int],
        digests: Sequence[bytes],
        nodes: Sequence[tuple[int, int, bytes]],
        frontier: str,
    ) -> None:
        """Record leaves (record ``seqs[k]`` is leaf ``first + k``, its hash ``digests[k]``), completed
        subtrees above the leaves and the new frontier, at once (only in the writer's transaction,
        which read the pending records and the frontier). A leaf's hash is stored once, with its
        record: ``merkle_nodes`` holds levels 1 and up (migration 0027)."""
        conn = self._bound()
        if len(seqs) != len(digests):
            raise ValueError(f"{len(seqs)} records and {len(digests)} leaf hashes")
        if any(level < 1 for level, _, _ in nodes):
            raise ValueError("the leaves are stored with their records, not in merkle_nodes")
        # straight to the driver: SQLAlchemy's per-row parameter building cost more than the writes
        # themselves for the ~3 rows each entry produces
        if conn.dialect.name == "postgresql":
            # psycopg (pure Python here) dumps a bytea[] element by element through a regex: the
            # leaves go as three text parameters split by the server, the nodes as COPY text
            if seqs:
                text = ",".join([str(s) for s in seqs])
                indexes = ",".join([str(i) for i in range(first, first + len(seqs))])
                hexes = b"".join(digests).hex()
                conn.exec_driver_sql(_PG_LEAVES, (hexes, text, indexes, min(seqs), max(seqs)))
        else:
            # the driver's own cursor takes the parameters as an iterator: no list of tuples a round;
            # each hash as a bytearray (see above)
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                leaves = (
                    (i, bytearray(h), s)
                    for i, h, s in zip(range(first, first + len(seqs)), digests, seqs, strict=True)
                )
                cursor.executemany(_SQLITE_LEAVES, leaves)  # type: ignore[arg-type]  # sqlite3 takes any iterable
            finally:
                cursor.close()
        self._grow(conn, nodes, frontier)

    def append_leaves(
        self,
        first: int,
        records: Sequence[tuple[Any, ...]],
        digests: Sequence[bytes],
        nodes: Sequence[tuple[int, int, bytes]],
        frontier: str,
    ) -> None:
        """Write new records as leaves at once (only in the writer's transaction, which read the
        frontier): record ``records[k]`` (at_us, kind, actor, subject, outcome, detail, entry_id, as
        stored) is leaf ``first + k`` with hash ``digests[k]``; then the completed subtrees and the new
        frontier, as :meth:`integrate` writes them. What ``integrate`` would have made of the same
        records, without writing each twice (an insert, then an ``UPDATE``) and reading it back."""
        conn = self._bound()
        if len(records) != len(digests):
            raise ValueError(f"{len(records)} records and {len(digests)} leaf hashes")
        if any(level < 1 for level, _, _ in nodes):
            raise ValueError("the leaves are stored with their records, not in merkle_nodes")
        if conn.dialect.name == "postgresql":
            text = "".join(
                [
                    f"{at_us}\t{_copy_field(kind)}\t{_copy_field(actor)}\t{_copy_field(subject)}\t"
                    f"{_copy_field(outcome)}\t{_copy_field(detail)}\t{_copy_field(entry)}\t{i}\t\\\\x{h.hex()}\n"
                    for i, (at_us, kind, actor, subject, outcome, detail, entry), h in zip(
                        range(first, first + len(records)), records, digests, strict=True
                    )
                ]
            )
            _copy(conn, _PG_COPY_LEAF_RECORDS, text)
        else:
            # the driver's cursor (its errors SQLAlchemy's: a duplicate entry id is the caller's
            # conflict), its parameters an iterator
            with _driver_cursor(conn, _SQLITE_LEAF_RECORDS) as cursor:
                rows = (
                    (*r, i, bytearray(h))
                    for i, r, h in zip(range(first, first + len(records)), records, digests, strict=True)
                )
                cursor.executemany(_SQLITE_LEAF_RECORDS, rows)
        self._grow(conn, nodes, frontier)

    @staticmethod
    def _grow(conn: Connection, nodes: Sequence[tuple[int, int, bytes]], frontier: str) -> None:
        """The subtrees completed above the leaves, and the new frontier."""
        if conn.dialect.name == "postgresql":
            if nodes:
                _copy(conn, _PG_COPY_NODES, "".join([f"{lv}\t{ix}\t\\\\x{h.hex()}\n" for lv, ix, h in nodes]))
        elif nodes:
            with _driver_cursor(conn, _SQLITE_NODES) as cursor:
                cursor.executemany(_SQLITE_NODES, ((lv, ix, bytearray(h)) for lv, ix, h in nodes))
        # one statement (an upsert on the key), not a DELETE then an INSERT: on PostgreSQL a round
        # trip fewer for every writer's transaction, the inbox's batches among them
        sql = _FRONTIER["qmark" if conn.dialect.paramstyle == "qmark" else "format"]
        conn.exec_driver_sql(sql, (frontier,))

    def nodes_of_level(self, level: int, chunk: int = 50_000) -> Iterator[tuple[int, bytes]]:
        """Every stored subtree hash of one level, in index order, a chunk at a time (level 0, the
        leaves, is the records' ``leaf``: ``merkle_nodes`` holds none since migration 0027, and this
        lists any found there all the same, for ``verify`` to report)."""
        after = -1
        while True:
            query = (
                select(t.merkle_nodes.c.idx, t.merkle_nodes.c.hash)
                .where(and_(t.merkle_nodes.c.level == level, t.merkle_nodes.c.idx > after))
                .order_by(t.merkle_nodes.c.idx)
                .limit(chunk)
            )
            with self._read() as conn:
                rows = [(int(r[0]), bytes(r[1])) for r in conn.execute(query)]
            yield from rows
            if len(rows) < chunk:
                return
            after = rows[-1][0]

    def frontier(self) -> str | None:
        # a fixed statement to the driver: every writer's transaction reads it, and building the
        # SQLAlchemy select and its result each time cost more than the look-up (issue 18)
        with self._read() as conn:
            row = conn.exec_driver_sql(_FRONTIER_READ).first()
        return None if row is None else str(row[0])

    def nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The hashes of the subtrees ``keys`` (level, index) found: levels 1 and up from
        ``merkle_nodes``, level 0 (a leaf) from its record's ``leaf``."""
        if not keys:
            return {}
        with self._read() as conn:
            if conn.dialect.name == "postgresql":
                inner = [k for k in keys if k[0] > 0]
                levels = ",".join([str(int(k[0])) for k in inner])
                idxs = ",".join([str(int(k[1])) for k in inner])
                leaves = ",".join([str(int(k[1])) for k in keys if k[0] == 0])
                with _driver_cursor(conn, _PG_NODES_BY_KEY) as cursor:
                    cursor.execute(_PG_NODES_BY_KEY, (levels, idxs, leaves))
                    rows = cursor.fetchall()
                return {(int(lv), int(ix)): bytes(h) for lv, ix, h in rows}
        return self.nodes_by_or(keys)

    def nodes_by_or(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The subtree hashes by an OR of primary-key look-ups: SQLite's way (it plans a row-value
        ``IN (VALUES ...)`` as a full table scan), and PostgreSQL's before the array join; the
        leaves by their records' unique ``leaf_index``."""
        if not keys:
            return {}
        found: dict[tuple[int, int], bytes] = {}
        inner = [(lv, ix) for lv, ix in keys if lv > 0]
        leaves = [ix for lv, ix in keys if lv == 0]
        with self._read() as conn:
            if inner:
                mn = t.merkle_nodes
                match = or_(*(and_(mn.c.level == lv, mn.c.idx == ix) for lv, ix in inner))
                found.update({(r.level, r.idx): bytes(r.hash) for r in conn.execute(select(mn).where(match))})
            if leaves:
                ar = t.audit_records
                query = select(ar.c.leaf_index, ar.c.leaf).where(ar.c.leaf_index.in_(leaves))
                found.update({(0, int(r[0])): bytes(r[1]) for r in conn.execute(query) if r[1] is not None})
        return found

    def entry(self, entry_id: str) -> AuditRow | None:
        with self._read() as conn:
            row = conn.execute(
                select(t.audit_records).where(t.audit_records.c.entry_id == entry_id)
            ).one_or_none()
        return None if row is None else _row(row)

    def by_leaf(self, leaf_index: int) -> AuditRow | None:
        with self._read() as conn:
            row = conn.execute(
                select(t.audit_records).where(t.audit_records.c.leaf_index == leaf_index)
            ).one_or_none()
        return None if row is None else _row(row)

    def leaves(self, chunk: int = 20_000) -> Iterator[AuditRow]:
        """Every integrated record in leaf order, read a chunk at a time."""
        after = -1
        while True:
            query = (
                select(t.audit_records)
                .where(and_(t.audit_records.c.leaf_index.is_not(None), t.audit_records.c.leaf_index > after))
                .order_by(t.audit_records.c.leaf_index)
                .limit(chunk)
            )
            with self._read() as conn:
                rows = [_row(r) for r in conn.execute(query)]
            yield from rows
            if len(rows) < chunk:
                return
            after = rows[-1].leaf_index or 0

    # --- signed tree heads ---

    def put_head(self, head: HeadRow) -> None:
        conn = self._bound()
        conn.execute(delete(t.tree_heads).where(t.tree_heads.c.size == head.size))
        conn.execute(
            insert(t.tree_heads),
            {"size": head.size, "root": head.root, "at_us": head.at_us, "jws": head.jws},
        )

    def heads(self) -> list[HeadRow]:
        with self._read() as conn:
            return [
                HeadRow(r.size, r.root, r.at_us, r.jws)
                for r in conn.execute(select(t.tree_heads).order_by(t.tree_heads.c.size))
            ]

    def heads_after(self, size: int, limit: int) -> list[HeadRow]:
        """The signed heads larger than ``size``, smallest first, at most ``limit``."""
        query = (
            select(t.tree_heads).where(t.tree_heads.c.size > size).order_by(t.tree_heads.c.size).limit(limit)
        )
        with self._read() as conn:
            return [HeadRow(r.size, r.root, r.at_us, r.jws) for r in conn.execute(query)]

    def latest_head(self) -> HeadRow | None:
        with self._read() as conn:
            r = conn.execute(select(t.tree_heads).order_by(t.tree_heads.c.size.desc()).limit(1)).one_or_none()
        return None if r is None else HeadRow(r.size, r.root, r.at_us, r.jws)

    # --- partners' heads ---

    def put_partner_head(self, row: PartnerHeadRow, audit: Sequence[AuditRow] = ()) -> bool:
        """Keep a partner's head once (a head already seen at that size is not replaced)."""
        with self._write() as conn:
            seen = conn.execute(
                select(t.partner_heads.c.root).where(
                    and_(t.partner_heads.c.party == row.party, t.partner_heads.c.size == row.size)
                )
            ).first()
            if seen is not None:  # False: the same size with another root, a fork the caller reports
                return bool(seen[0] == row.root)
            conn.execute(
                insert(t.partner_heads),
                {
                    "party": row.party,
                    "size": row.size,
                    "root": row.root,
                    "at_us": row.at_us,
                    "jws": row.jws,
                    "received_us": row.received_us,
                    "status": row.status,
                    "detail": row.detail,
                },
            )
            self.store._audit(conn, audit)
            return True

    def partner_heads(self, party: str | None = None, status: str | None = None) -> list[PartnerHeadRow]:
        query = select(t.partner_heads)
        if party is not None:
            query = query.where(t.partner_heads.c.party == party)
        if status is not None:
            query = query.where(t.partner_heads.c.status == status)
        query = query.order_by(t.partner_heads.c.party, t.partner_heads.c.size)
        with self._read() as conn:
            return [PartnerHeadRow(**r._mapping) for r in conn.execute(query)]

    def latest_partner_heads(self) -> list[PartnerHeadRow]:
        """Each party's head of the largest size held here (one row per party)."""
        largest = (
            select(t.partner_heads.c.party, func.max(t.partner_heads.c.size).label("size"))
            .group_by(t.partner_heads.c.party)
            .subquery()
        )
        query = (
            select(t.partner_heads)
            .join(
                largest,
                and_(t.partner_heads.c.party == largest.c.party, t.partner_heads.c.size == largest.c.size),
            )
            .order_by(t.partner_heads.c.party)
        )
        with self._read() as conn:
            return [PartnerHeadRow(**r._mapping) for r in conn.execute(query)]

    def settle_partner_head(
        self, party: str, size: int, status: str, detail: str, audit: Sequence[AuditRow] = ()
    ) -> None:
        with self._write() as conn:
            conn.execute(
                update(t.partner_heads)
                .where(and_(t.partner_heads.c.party == party, t.partner_heads.c.size == size))
                .values(status=status, detail=detail)
            )
            self.store._audit(conn, audit)

    # --- heads gossiped about third parties, and the forks found ---

    def held_root(self, party: str, size: int) -> tuple[bytes, str] | None:
        """The root and JWS of a head of ``party`` at ``size`` held here: received from the party
        itself, or gossiped and not yet settled (``None``: none)."""
        with self._read() as conn:
            for table in (t.partner_heads, t.gossip_heads):
                row = conn.execute(
                    select(table.c.root, table.c.jws).where(
                        and_(table.c.party == party, table.c.size == size)
                    )
                ).first()
                if row is not None:
                    return bytes(row[0]), str(row[1])
        return None

    def put_gossip_head(self, row: GossipHeadRow, cap: int) -> str:
        """Keep a gossiped head until it is settled: ``kept``; ``held`` if a head of that party and
        size is held already (the caller compared it); ``full`` if ``row.via`` has ``cap`` waiting."""
        with self._write() as conn:
            for table in (t.partner_heads, t.gossip_heads):
                held = conn.execute(
                    select(func.count())
                    .select_from(table)
                    .where(and_(table.c.party == row.party, table.c.size == row.size))
                ).scalar_one()
                if held:
                    return "held"
            waiting = conn.execute(
                select(func.count()).select_from(t.gossip_heads).where(t.gossip_heads.c.via == row.via)
            ).scalar_one()
            if waiting >= cap:
                return "full"
            conn.execute(
                insert(t.gossip_heads),
                {
                    "party": row.party,
                    "size": row.size,
                    "root": row.root,
                    "jws": row.jws,
                    "via": row.via,
                    "received_us": row.received_us,
                },
            )
            return "kept"

    def gossip_heads(self, limit: int = 1000) -> list[GossipHeadRow]:
        """Gossiped heads waiting for a proof, oldest first."""
        query = select(t.gossip_heads).order_by(t.gossip_heads.c.received_us).limit(limit)
        with self._read() as conn:
            return [GossipHeadRow(**r._mapping) for r in conn.execute(query)]

    def settle_gossip_head(self, row: GossipHeadRow, audit: Sequence[AuditRow] = ()) -> None:
        """A gossiped head checked (consistent, or kept as evidence): no longer waiting."""
        with self._write() as conn:
            conn.execute(
                delete(t.gossip_heads).where(
                    and_(t.gossip_heads.c.party == row.party, t.gossip_heads.c.size == row.size)
                )
            )
            self.store._audit(conn, audit)

    def put_fork_evidence(self, row: ForkEvidenceRow, cap: int, audit: Sequence[AuditRow] = ()) -> bool:
        """Keep two conflicting heads once (the same pair again is not a new fork), with the audit
        records of finding it; at most ``cap`` unacknowledged pairs per party (the party is forked
        already: more pairs prove nothing more). Whether it was kept."""
        with self._write() as conn:
            seen = conn.execute(
                select(func.count()).select_from(t.fork_evidence).where(t.fork_evidence.c.pair == row.pair)
            ).scalar_one()
            if seen:
                return False
            open_forks = conn.execute(
                select(func.count())
                .select_from(t.fork_evidence)
                .where(
                    and_(t.fork_evidence.c.party == row.party, t.fork_evidence.c.acknowledged_us.is_(None))
                )
            ).scalar_one()
            if open_forks >= cap:
                return False
            values = {
                "party": row.party,
                "pair": row.pair,
                "first_size": row.first_size,
                "first_root": row.first_root,
                "first_jws": row.first_jws,
                "second_size": row.second_size,
                "second_root": row.second_root,
                "second_jws": row.second_jws,
                "shown_by": row.shown_by,
                "detail": row.detail,
                "found_us": row.found_us,
            }
            conn.execute(insert(t.fork_evidence), values)
            self.store._audit(conn, audit)
            return True

    def fork_evidence(self, party: str | None = None, *, open_only: bool = False) -> list[ForkEvidenceRow]:
        """The forks found, oldest first: of one party or all, only those not yet acknowledged."""
        query = select(t.fork_evidence)
        if party is not None:
            query = query.where(t.fork_evidence.c.party == party)
        if open_only:
            query = query.where(t.fork_evidence.c.acknowledged_us.is_(None))
        with self._read() as conn:
            return [
                ForkEvidenceRow(**r._mapping) for r in conn.execute(query.order_by(t.fork_evidence.c.seq))
            ]

    def acknowledge_forks(
        self, party: str, through: int | None, by: str, note: str, at_us: int, audit: Sequence[AuditRow]
    ) -> list[int]:
        """Mark the open forks of ``party`` (up to evidence ``through`` if given) acknowledged, with the
        audit record, in one transaction (compare-and-set: a fork acknowledged meanwhile is not
        acknowledged twice); the evidence numbers acknowledged."""
        with self._write() as conn:
            match = and_(t.fork_evidence.c.party == party, t.fork_evidence.c.acknowledged_us.is_(None))
            if through is not None:
                match = and_(match, t.fork_evidence.c.seq <= through)
            seqs = [int(r[0]) for r in conn.execute(select(t.fork_evidence.c.seq).where(match))]
            if not seqs:
                return []
            conn.execute(
                update(t.fork_evidence)
                .where(and_(match, t.fork_evidence.c.seq.in_(seqs)))
                .values(acknowledged_us=at_us, acknowledged_by=by, note=note)
            )
            self.store._audit(conn, audit)
            return seqs
