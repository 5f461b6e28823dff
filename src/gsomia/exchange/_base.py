"""What every part of the exchange shares: the node, its keys and federation store, the
audit row, the sealed outbox row, the signed receipt, and the batch a receive writes.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gsomia._codec import canonical, decision_json
from gsomia.core.instants import epoch_us
from gsomia.core.policy import ReleaseDecision
from gsomia.crypto.envelope import Opened, seal, sign_origin
from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.exchange._messages import receipt_content
from gsomia.store import (
    AuditRow,
    ConsentRequestRow,
    ConsentRow,
    FederationStore,
    InboxRow,
    NewItem,
    OutboxRow,
)
from gsomia.store._duties import Op

if TYPE_CHECKING:
    from gsomia.node._service import Node

__all__ = ["ExchangeBase"]


class ExchangeBase:
    """The state a node's exchange holds and the helpers its parts share."""

    def __init__(
        self,
        node: Node,
        ring: KeyRing,
        *,
        ttl: timedelta = timedelta(hours=24),
        skew: timedelta = timedelta(minutes=5),
    ) -> None:
        self.node = node
        self.ring = ring
        self.fed = FederationStore(node.store)
        self.ttl = ttl
        self.skew = skew
        self._peers: dict[str, tuple[PeerIdentity, frozenset[str]]] | None = None

    @property
    def party(self) -> str:
        return self.node.party

    def _now(self) -> datetime:
        return self.node.clock()

    def _row(
        self,
        kind: str,
        actor: str | None,
        subject: str | None,
        outcome: str,
        *,
        entry_id: str = "",
        **detail: Any,
    ) -> AuditRow:
        return AuditRow(
            epoch_us(self._now()), kind, actor, subject, outcome, canonical(detail), entry_id=entry_id
        )

    def _audit(self, kind: str, actor: str | None, subject: str | None, outcome: str, **detail: Any) -> None:
        self.node.store.append_audit([self._row(kind, actor, subject, outcome, **detail)])

    def _queue(
        self,
        peer: PeerIdentity,
        body: dict[str, Any],
        kind: str,
        item_id: str | None,
        now: datetime,
        *,
        final_recipient: str | None = None,
        spec: dict[str, Any] | None = None,
        decision: ReleaseDecision | None = None,
        ttl: timedelta | None = None,
        state: str = "pending",
    ) -> OutboxRow:
        """A sealed envelope for ``peer``, as an outbox row (written by the caller's transaction)."""
        msg_id = uuid.uuid4().hex
        return OutboxRow(
            msg_id=msg_id,
            kind=kind,
            item_id=item_id,
            recipient=peer.party,
            final_recipient=final_recipient or peer.party,
            request=canonical(spec or {}),
            decision=canonical(decision_json(decision) if decision is not None else {}),
            envelope=seal(self.ring, peer, body, msg_id=msg_id, at=now, ttl=ttl or self.ttl),
            state=state,
            attempts=0,
            next_attempt_us=epoch_us(now),
            created_us=epoch_us(now),
            updated_us=epoch_us(now),
        )

    def _receipt(
        self,
        opened: Opened,
        item_id: str | None,
        status: str,
        digest: str | None,
        now: datetime,
        log_entry: str | None = None,
    ) -> str:
        return sign_origin(
            self.ring,
            receipt_content(
                msg_id=opened.msg_id,
                item_id=item_id,
                receiver=self.party,
                sender=opened.sender,
                status=status,
                digest=digest,
                at=now,
                log_entry=log_entry,
            ),
            now,
        )


class _Accepted:
    """What a batch of envelopes will write, in one transaction."""

    def __init__(self) -> None:
        self.items: list[NewItem] = []
        self.item_ids: set[str] = set()
        self.inbox: list[InboxRow] = []
        self.inbox_by_id: dict[str, InboxRow] = {}
        self.inventory: list[tuple[str, int, str, str | None, str | None, str]] = []
        self.audit: list[AuditRow] = []
        self.outbox: list[OutboxRow] = []
        self.consents: list[ConsentRow] = []
        self.requests: list[ConsentRequestRow] = []
        self.answers: list[tuple[str, str, str]] = []
        self.ops: list[Op] = []  # the duties' writes (gsomia.duties), in the same transaction
        self.seen: dict[str, InboxRow] | None = None  # prefetched inbox rows of the batch
        self.held: set[str] | None = None  # prefetched ids of items already held

    def add_inbox(self, row: InboxRow) -> None:
        self.inbox.append(row)
        self.inbox_by_id[row.msg_id] = row

    def any(self) -> bool:
        return bool(self.inbox or self.audit)
