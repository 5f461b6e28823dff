"""The TAXII server's own table: status resources, in the database so that every process of a
node answers the same and they survive a restart, stored compactly (counts in columns; the
per-object ids, versions and reasons as zlib-compressed JSON), a bounded number per person."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from gsomia.store import _tables as t
from gsomia.store._store import AuditRow, Store

__all__ = ["StatusRow", "TaxiiStore"]

KEPT_PER_PERSON = 1000
_MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One POST's outcome: who posted, where, when, and per object (id, version[, reason])."""

    id: str
    owner: str
    collection: str
    requested_us: int
    successes: tuple[tuple[str, str], ...]
    failures: tuple[tuple[str, str, str], ...]

    @property
    def total(self) -> int:
        return len(self.successes) + len(self.failures)


def _pack(row: StatusRow) -> bytes:
    data: dict[str, Any] = {
        "s": [list(s) for s in row.successes],
        "f": [[i, v, r[:_MAX_REASON]] for i, v, r in row.failures],
    }
    return zlib.compress(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode(), 6)


def _unpack(blob: bytes) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str, str], ...]]:
    data = json.loads(zlib.decompress(blob))
    return tuple((i, v) for i, v in data["s"]), tuple((i, v, r) for i, v, r in data["f"])


class TaxiiStore:
    """Status resources over a :class:`Store`'s engine and transactions."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def put_status(self, row: StatusRow, audit: tuple[AuditRow, ...] = ()) -> None:
        """Keep ``row`` (and its audit records); the poster's oldest beyond the bound are dropped."""
        with self.store._begin() as conn:
            conn.execute(
                insert(t.taxii_statuses),
                {
                    "id": row.id,
                    "owner": row.owner,
                    "collection": row.collection,
                    "requested_us": row.requested_us,
                    "total": row.total,
                    "successes": len(row.successes),
                    "failures": len(row.failures),
                    "details": _pack(row),
                },
            )
            kept = (
                select(t.taxii_statuses.c.id)
                .where(t.taxii_statuses.c.owner == row.owner)
                .order_by(t.taxii_statuses.c.requested_us.desc(), t.taxii_statuses.c.id.desc())
                .limit(KEPT_PER_PERSON)
            )
            conn.execute(
                delete(t.taxii_statuses).where(
                    t.taxii_statuses.c.owner == row.owner,
                    t.taxii_statuses.c.id.not_in(kept.scalar_subquery()),
                )
            )
            self.store._audit(conn, audit)

    def status(self, status_id: str) -> StatusRow | None:
        with self.store._read() as conn:
            found = conn.execute(
                select(t.taxii_statuses).where(t.taxii_statuses.c.id == status_id)
            ).one_or_none()
        if found is None:
            return None
        successes, failures = _unpack(found.details)
        return StatusRow(found.id, found.owner, found.collection, found.requested_us, successes, failures)
