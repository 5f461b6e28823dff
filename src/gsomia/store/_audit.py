"""The store's side of the audit log: records integrated as leaves, tree nodes, signed and partner heads."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from gsomia.store import _tables as t
from gsomia.store._store import AuditRow, Store

__all__ = ["AuditStore", "HeadRow", "PartnerHeadRow"]


# fixed statements for the driver's executemany, by its parameter style (values never enter the text)
_SQL = {
    "qmark": (
        "UPDATE audit_records SET leaf_index = ?, leaf = ? WHERE seq = ?",
        "INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)",
    ),
    "format": (
        "UPDATE audit_records SET leaf_index = %s, leaf = %s WHERE seq = %s",
        "INSERT INTO merkle_nodes (level, idx, hash) VALUES (%s, %s, %s)",
    ),
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


# the database lock held by the one writer of the tree (a PostgreSQL advisory lock key; SQLite has one)
TREE_LOCK = 0x6E5A_0A0D_17_7E7E


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
        with self.store._exclusive(TREE_LOCK) as conn:
            yield AuditStore(self.store, conn)

    @contextmanager
    def snapshot(self) -> Iterator[AuditStore]:
        """This store bound to one read-only transaction: the tree as it was when it began, however
        the writer goes on meanwhile (what ``verify`` needs to compare records, nodes and frontier)."""
        with self.store._snapshot() as conn:
            yield AuditStore(self.store, conn)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
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
        query = (
            select(t.audit_records)
            .where(t.audit_records.c.leaf_index.is_(None))
            .order_by(t.audit_records.c.seq)
            .limit(limit)
        )
        with self._read() as conn:
            return [_row(r) for r in conn.execute(query)]

    def pending(self) -> int:
        """How many records wait to be integrated."""
        unintegrated = t.audit_records.c.leaf_index.is_(None)
        query = select(func.count()).select_from(t.audit_records).where(unintegrated)
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def integrate(
        self, leaves: Sequence[tuple[int, int, bytes]], nodes: Sequence[tuple[int, int, bytes]], frontier: str
    ) -> None:
        """Record leaves (seq, leaf index, leaf hash), completed subtrees and the new frontier, at once
        (only in the writer's transaction, which read the pending records and the frontier)."""
        conn = self._bound()
        # straight to the driver's executemany: SQLAlchemy's per-row parameter building cost more
        # than the writes themselves for the ~3 rows each entry produces
        update_sql, insert_sql = _SQL["qmark" if conn.dialect.paramstyle == "qmark" else "format"]
        conn.exec_driver_sql(update_sql, [(i, h, s) for s, i, h in leaves])
        if nodes:
            conn.exec_driver_sql(insert_sql, list(nodes))
        conn.execute(delete(t.node_meta).where(t.node_meta.c.key == "audit.frontier"))
        conn.execute(insert(t.node_meta), {"key": "audit.frontier", "value": frontier})

    def nodes_of_level(self, level: int, chunk: int = 50_000) -> Iterator[tuple[int, bytes]]:
        """Every stored subtree hash of one level, in index order, a chunk at a time."""
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
        with self._read() as conn:
            return conn.execute(
                select(t.node_meta.c.value).where(t.node_meta.c.key == "audit.frontier")
            ).scalar_one_or_none()

    def nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        if not keys:
            return {}
        # an OR of primary-key look-ups: SQLite plans a row-value IN (VALUES ...) as a full table scan
        match = or_(*(and_(t.merkle_nodes.c.level == lv, t.merkle_nodes.c.idx == ix) for lv, ix in keys))
        query = select(t.merkle_nodes).where(match)
        with self._read() as conn:
            return {(r.level, r.idx): r.hash for r in conn.execute(query)}

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
