"""Two-person release in the store: the node's policy (watched by generation) and the requests.

A request changes state only from the state it was read in (compare-and-set), and an approval
writes its outbox entry, consents and audit record in the same transaction as the state change,
so a release is queued exactly once, and only once approved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select, update

from gsomia.store import _tables as t
from gsomia.store._federation import ConsentRow, OutboxRow, _insert_consents, _values
from gsomia.store._shared import bump
from gsomia.store._store import AuditRow, Store

__all__ = ["RELEASE_POLICY", "ApprovalStore", "ReleaseRequestRow"]

RELEASE_POLICY = "release_policy"  # the generation every process watches for the policy


@dataclass(frozen=True, slots=True)
class ReleaseRequestRow:
    id: str
    item_id: str
    label: str
    spec: str
    requester: str
    state: str
    reason: str
    requested_us: int
    expires_us: int
    decided_by: str | None = None
    decided_us: int | None = None
    approval: str | None = None
    note: str | None = None
    msg_id: str | None = None


class ApprovalStore:
    """The two-person policy and the release requests over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def policy(self) -> str | None:
        """The policy document (JSON), or ``None``: the node has none."""
        with self.store._read() as conn:
            return conn.execute(select(t.release_policy.c.document)).scalar_one_or_none()

    def set_policy(self, document: str, by: str, now_us: int, audit: Sequence[AuditRow] = ()) -> None:
        with self.store._begin() as conn:
            conn.execute(t.release_policy.delete())
            conn.execute(
                insert(t.release_policy),
                {"id": 1, "document": document, "updated_us": now_us, "updated_by": by},
            )
            bump(conn, RELEASE_POLICY)
            self.store._audit(conn, audit)

    def add(self, row: ReleaseRequestRow, audit: Sequence[AuditRow] = ()) -> None:
        with self.store._begin() as conn:
            conn.execute(insert(t.release_requests), _values(row))
            self.store._audit(conn, audit)

    def get(self, request_id: str) -> ReleaseRequestRow | None:
        query = select(t.release_requests).where(t.release_requests.c.id == request_id)
        with self.store._read() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else ReleaseRequestRow(**row._mapping)

    def requests(self, *, state: str | None = None, limit: int = 1000) -> list[ReleaseRequestRow]:
        query = select(t.release_requests)
        if state is not None:
            query = query.where(t.release_requests.c.state == state)
        query = query.order_by(t.release_requests.c.requested_us, t.release_requests.c.id).limit(limit)
        with self.store._read() as conn:
            return [ReleaseRequestRow(**r._mapping) for r in conn.execute(query)]

    def decide(
        self,
        request_id: str,
        *,
        expected: str,
        state: str,
        by: str,
        now_us: int,
        approval: str | None = None,
        note: str | None = None,
        entry: OutboxRow | None = None,
        consents: Sequence[ConsentRow] = (),
        audit: Sequence[AuditRow] = (),
    ) -> bool:
        """Move a request from ``expected`` to ``state`` (compare-and-set) and write what goes with
        it in the same transaction; ``False``, with nothing written, if it was not in ``expected``."""
        with self.store._begin() as conn:
            moved = conn.execute(
                update(t.release_requests)
                .where(t.release_requests.c.id == request_id, t.release_requests.c.state == expected)
                .values(
                    state=state,
                    decided_by=by,
                    decided_us=now_us,
                    approval=approval,
                    note=note,
                    msg_id=entry.msg_id if entry is not None else None,
                )
            ).rowcount
            if not moved:
                return False
            if consents:  # through the one writer of consents (a standing one moves the generation)
                _insert_consents(conn, consents)
            if entry is not None:
                conn.execute(insert(t.outbox), _values(entry))
            self.store._audit(conn, audit)
            return True
