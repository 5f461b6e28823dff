"""What every duty shares: the node, the duty tables, item look-ups and how a duty message is queued."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gsomia.core.access import Role
from gsomia.core.parties import Scheme
from gsomia.crypto.envelope import sign_origin
from gsomia.duties._messages import DUTY_KIND
from gsomia.errors import (
    AgreementError,
    ItemGoneError,
    NotFoundError,
)
from gsomia.store import ItemRow, OutboxRow
from gsomia.store._duties import DutiesStore

if TYPE_CHECKING:
    from gsomia.node._service import Node

__all__ = ["DutyBase"]

HANDLERS = (Role.SECURITY_OFFICER, Role.RELEASE_OFFICER)


def from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


class DutyBase:
    """The node and its duty tables; helpers the duties share."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.db = DutiesStore(node.store)

    @property
    def party(self) -> str:
        return self.node.party

    def _schemes(self) -> dict[str, Scheme]:
        return {code: p.scheme for code, p in self.node.catalogue.parties.items()}

    def _held(self, item_id: str) -> ItemRow:
        row = self.node.store.get_item(item_id)
        if row is None:
            raise NotFoundError(f"no item {item_id!r} at this node")
        if row.state != "held":
            raise ItemGoneError(f"item {item_id} was {row.state}: its record remains, its payload is gone")
        return row

    def _known(self, item_id: str) -> ItemRow:
        row = self.node.store.get_item(item_id)
        if row is None:
            raise NotFoundError(f"no item {item_id!r} at this node")
        return row

    def _duty(self, to: str, hop: str, content: bytes, item_id: str | None, now: datetime) -> OutboxRow:
        """A signed duty message for ``to``, queued for the next hop ``hop``."""
        peer = self.node.exchange.peer(hop)
        if peer is None:
            raise AgreementError(f"no registered link with {hop}: import its identity document first")
        jws = sign_origin(self.node.ring, content, now)
        body = {"kind": DUTY_KIND, "to": to, "duty": jws}
        return self.node.exchange._queue(peer, body, DUTY_KIND, item_id, now, final_recipient=to)

    def _upstream(self, row: ItemRow, content: bytes, now: datetime) -> OutboxRow:
        """A message for the item's originator, by the channel the item came in on (through a hub too)."""
        hop = row.received_from or row.originator
        return self._duty(row.originator, hop, content, row.id, now)


def dated(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if key.endswith("_us") and isinstance(value, int):
            out[key[:-3]] = from_us(value).isoformat()
        else:
            out[key] = value
    return out
