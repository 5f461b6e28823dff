"""What every duty shares: the node's kernel and exchange, the duty tables, item look-ups and how a
duty message is queued."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.core.parties import Scheme
from gsomia.crypto.envelope import sign_origin
from gsomia.duties._messages import DUTY_KIND
from gsomia.errors import AgreementError, GsomiaError, ItemGoneError
from gsomia.exchange import Exchange
from gsomia.kernel import NodeContext, from_us
from gsomia.store import DutiesStore, ItemRow, NewItem, Op, OutboxRow

__all__ = ["DutyBase"]

HANDLERS = (Role.SECURITY_OFFICER, Role.RELEASE_OFFICER)


class DutyBase:
    """The kernel, the exchange (duty messages travel over it) and the duty tables."""

    def __init__(self, kernel: NodeContext, exchange: Exchange) -> None:
        self.kernel = kernel
        self.exchange = exchange
        self.db = DutiesStore(kernel.store)

    @property
    def party(self) -> str:
        return self.kernel.party

    def _schemes(self) -> dict[str, Scheme]:
        return {code: p.scheme for code, p in self.kernel.catalogue.parties.items()}

    def _held(self, item_id: str) -> ItemRow:
        row = self.kernel.items.row(item_id)
        if row.state != "held":
            raise ItemGoneError(f"item {item_id} was {row.state}: its record remains, its payload is gone")
        return row

    def _known(self, item_id: str) -> ItemRow:
        return self.kernel.items.row(item_id)

    def _may_read(self, actor: Person, row: ItemRow | None) -> bool:
        """Whether ``actor`` may read the item of ``row`` (the node's one read decision): a duty view
        about an item is as classified as the item. Unknown or unreadable: no (fail closed)."""
        if row is None:
            return False
        try:
            label = self.kernel.items.item(row).label
        except GsomiaError:
            return False
        return self.kernel.decide_read(actor, label, row.name).allowed

    def _cleared_for(self, actor: Person, classification: str) -> bool:
        """Whether ``actor`` (of this node's nationality, handling items) is cleared for this node's
        ``classification``: for a record about an item not held here (a copy a holder made of ours),
        judged by the level the holder's signed record names. Anything else: no (fail closed)."""
        scheme = self.kernel.catalogue.party(self.party).scheme
        if not actor.active or actor.nationality != self.party or actor.clearance is None:
            return False
        if (
            not (actor.roles & set(HANDLERS))
            or not scheme.has(classification)
            or not scheme.has(actor.clearance)
        ):
            return False
        return scheme.level(actor.clearance).rank >= scheme.level(classification).rank

    def _may_read_copy(self, actor: Person, item_id: str, sources: list[str]) -> bool:
        """For a record a holder sent about a copy it made of this node's items (``item_id`` is not
        known here): whether ``actor`` may read every item of this node the copy was made from (a copy
        is as classified as the strictest of them). No sources named, or the id known here: no."""
        if not sources or self.kernel.store.get_item(item_id) is not None:
            return False
        return all(self._may_read(actor, self.kernel.store.get_item(s)) for s in sources)

    def _readable(self, actor: Person, item_ids: set[str]) -> set[str]:
        """The ids among ``item_ids`` whose items ``actor`` may read here."""
        return {i for i in item_ids if self._may_read(actor, self.kernel.store.get_item(i))}

    def _duty(self, to: str, hop: str, content: bytes, item_id: str | None, now: datetime) -> OutboxRow:
        """A signed duty message for ``to``, queued for the next hop ``hop``."""
        peer = self.kernel.peers.peer(hop)
        if peer is None:
            raise AgreementError(f"no registered link with {hop}: import its identity document first")
        jws = sign_origin(self.kernel.ring, content, now)
        body = {"kind": DUTY_KIND, "to": to, "duty": jws}
        return self.exchange.queue(peer, body, DUTY_KIND, item_id, now, final_recipient=to)

    def _originals(self, row: ItemRow) -> list[str]:
        """For a copy, translation or derivative made here: the items it was made from, through copies
        of copies, that were not made here (the originator's items this node received). Empty for an
        item that was not made here. A record about a copy names them: the originator never saw the
        copy's id and accepts the record only if each of these went to this node."""
        if not self.db.sources_of(row.id):
            return []
        originals: set[str] = set()
        seen: set[str] = set()
        todo = [row.id]
        while todo:
            item_id = todo.pop()
            if item_id in seen:
                continue
            seen.add(item_id)
            sources = [s for s, _ in self.db.sources_of(item_id)]
            if not sources and item_id != row.id:
                originals.add(item_id)
            todo += sources
        return sorted(originals)

    def _names(self, refs: list[str]) -> list[str]:
        """The ids the originators gave the items of these references here (what a message names:
        issue 22 §4, a reference may be ``ORIGINATOR:id``)."""
        rows = self.kernel.store.get_items(refs)
        return sorted(rows[r].name if r in rows else r for r in refs)

    def _resealed(self, row: ItemRow, sealed: NewItem, version: int, now: datetime) -> tuple[Op, ItemRow]:
        """An item in portions sealed again (a portion relabelled or destroyed): the store's
        compare-and-set relabel from the row as read, and the row as it will be after it."""
        op = self.db.relabel(
            row.id,
            row.label_version,
            version,
            sealed.label,
            sealed.classification,
            sealed.payload,
            sealed.origin_jws,
            at_us=epoch_us(now),
            expected_label=row.label,
            portions=(str(sealed.portions), sealed.payload_size),
        )
        after = replace(
            row,
            label=sealed.label,
            classification=sealed.classification,
            label_version=version,
            payload=sealed.payload,
            origin_jws=sealed.origin_jws,
            portions=sealed.portions,
            payload_size=sealed.payload_size,
        )
        return op, after

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
