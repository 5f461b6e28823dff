"""The last hop, told back to the sender (issue 14 §3): a hub that relayed an item passes the final
recipient's signed receipt back to the node that released it through the hub (the originator, or a
holder releasing onward), so its inventory names every party the item reached, each on the
recipient's own signature.

The hub forwards the receipt it settled its relay on (``relay-receipt``), in the same transaction
that records the relay delivered. The sender accepts it only from the hub it released the item
through, for that item and final recipient, with the receipt signed by that recipient and naming
the hub as its sender; it records a ``reached`` inventory entry once per receipt. A hub can withhold
a receipt (the originator then sees only the hub), never forge one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gsomia._codec import canonical, unstorable
from gsomia.core.instants import epoch_us
from gsomia.crypto.envelope import Opened, verify_origin
from gsomia.crypto.keys import PeerIdentity
from gsomia.errors import GsomiaError, InvalidInputError
from gsomia.exchange._base import Batch
from gsomia.exchange._consents import Consents
from gsomia.exchange._messages import Receipted, receipt_entries
from gsomia.store import InboxRow, InventoryEntry, InventoryRow, ItemRow, OutboxRow

__all__ = ["RELAY_RECEIPT", "Hops"]

RELAY_RECEIPT = "relay-receipt"
_RELAYED = "hops.relayed-receipts"  # Batch.prefetched: the receipts relay receipts passed on, as read
_READS = "hops.reads"  # Batch.prefetched: what a push's relay receipts look up (_RelayReads)


class _RelayReads:
    """The look-ups of a push's relay receipts, read at once (:meth:`Hops.prefetch_relayed`)."""

    __slots__ = ("asked", "messages", "reached", "refs", "rows")

    def __init__(self) -> None:
        self.asked: set[Any] = set()  # (originator, id) pairs and bare ids asked for
        self.rows: dict[Any, ItemRow] = {}  # the items held among them, by what was asked
        self.refs: set[str] = set()  # those items' references here
        self.messages: dict[str, list[OutboxRow]] = {}  # this node's item messages, by reference
        self.reached: dict[str, list[InventoryRow]] = {}  # the "reached" entries, by reference


class Hops(Consents):
    """Both ends of a relay's receipt. Part of :class:`gsomia.exchange.Exchange`."""

    def relay_receipts(self, outcomes: list[dict[str, Any]], now: datetime) -> None:
        """For each relay this node settled as delivered in ``outcomes``, the final recipient's
        receipt queued for the release's sender, written with the outcome (``outbox``)."""
        relays: list[tuple[dict[str, Any], OutboxRow, PeerIdentity]] = []
        for outcome in outcomes:
            entry: OutboxRow = outcome["expected"]
            if outcome["state"] != "delivered" or entry.kind != "item" or entry.item_id is None:
                continue
            spec = json.loads(entry.request or "{}")
            originator = spec.get("sender")
            if spec.get("via") != [self.party] or not isinstance(originator, str) or originator == self.party:
                continue  # not a relay of this node's
            peer = self.peer(originator)
            if peer is None:
                continue  # no link back: the originator sees the hub only
            relays.append((outcome, entry, peer))
        # the relayed items' rows read at once for the batch, not one query a relay (issue 18)
        rows = self.kernel.store.get_items([str(e.item_id) for _, e, _ in relays]) if relays else {}
        for outcome, entry, peer in relays:
            # named as the originator named it (issue 22 §4: the reference here may be another)
            row = rows.get(str(entry.item_id))
            body = {"kind": RELAY_RECEIPT, "item": entry.item_id, "receipt": outcome["receipt"]}
            if row is not None:
                body |= {"item": row.name, "originator": row.originator}
            outcome["outbox"] = [self.queue(peer, body, RELAY_RECEIPT, entry.item_id, now)]

    def _receive_relay_receipt(self, opened: Opened, now: datetime, accepted: Batch) -> dict[str, Any]:
        """At the sender: the final recipient's receipt for an item this node released through the
        hub that passes it on; anything else is refused (and audited by the inbox)."""
        body = opened.body
        item_id, receipt = body.get("item"), body.get("receipt")
        if not isinstance(item_id, str) or not isinstance(receipt, str):
            raise InvalidInputError("relay receipt: 'item' and 'receipt' are required")
        originator = body.get("originator")
        reads: _RelayReads | None = accepted.prefetched.get(_READS)
        key = (originator, item_id) if isinstance(originator, str) else item_id
        if reads is not None and key in reads.asked:
            row = reads.rows.get(key)
        elif isinstance(originator, str):
            row = self.kernel.store.item_of(originator, item_id)
        else:
            row = self.kernel.store.get_item(item_id)
        if row is None:
            raise InvalidInputError(f"relay receipt for {item_id!r}, which is not held here")
        ref = row.id  # this node's reference for the item (issue 22 §4)
        signer, entries = self._relayed_receipt(receipt, now, accepted)
        # a receipt of one message, or a batch's receipt: the entry naming this item
        named = entries.get(item_id, [])
        if reads is not None and ref in reads.refs:
            messages = reads.messages.get(ref, [])
            reached = reads.reached.setdefault(ref, [])
        else:
            messages = self.fed.item_messages(ref)
            reached = [r for r in self.kernel.store.inventory(ref) if r.kind == "reached"]
        released = {
            e.final_recipient
            for e in messages
            if e.kind == "item" and e.recipient == opened.sender and e.final_recipient != opened.sender
        }
        if len(named) != 1 or named[0].sender != opened.sender or signer not in released:
            raise InvalidInputError(
                f"relay receipt from {opened.sender}: not {item_id}'s receipt from a party this node "
                f"released it to through {opened.sender}"
            )
        data = named[0]
        kept = {json.loads(r.detail or "{}").get("msg_id") for r in reached if r.party == signer}
        if data.msg_id not in kept:
            entry = InventoryEntry(
                ref,
                epoch_us(now),
                "reached",
                signer,
                None,
                canonical({"via": opened.sender, "msg_id": data.msg_id, "status": data.status}),
            )
            accepted.inventory.append(entry)
            if reads is not None and ref in reads.refs:  # the same receipt later in this push: kept once
                reached.append(InventoryRow(ref, entry.at_us, "reached", signer, None, entry.detail))
        answer = self.receipt(opened, item_id, "recorded", None, now)
        accepted.add_inbox(
            InboxRow(opened.msg_id, opened.sender, RELAY_RECEIPT, ref, epoch_us(now), "recorded", answer)
        )
        accepted.audit.append(
            self.kernel.audit_row(
                "envelope.reached",
                opened.sender,
                ref,
                "allowed",
                receiver=signer,
                status=data.status,
            )
        )
        return {"status": "recorded", "receipt": answer, "reason": None}

    def prefetch_relayed(self, bodies: Sequence[dict[str, Any]], accepted: Batch) -> None:
        """What the relay receipts among ``bodies`` (a push's messages) look up, read at once: the
        items they name, this node's item messages of those items and their ``reached`` entries (per
        relay receipt, three queries were most of its cost, issue 18). Read as the one-by-one
        look-ups would be, before anything of the push is written; those of an item this push
        records a receipt for are kept up to date by :meth:`_receive_relay_receipt`."""
        named = [
            (b.get("originator"), b["item"])
            for b in bodies
            if b.get("kind") == RELAY_RECEIPT
            and isinstance(b.get("item"), str)
            # text no store holds is not looked up (the message is refused, unstorable, before)
            and unstorable([b.get("originator"), b["item"]], "") is None
        ]
        if not named:
            return
        store = self.kernel.store
        pairs = [(o, i) for o, i in named if isinstance(o, str)]
        ids = [i for o, i in named if not isinstance(o, str)]
        reads = _RelayReads()
        reads.asked = {*pairs, *ids}
        reads.rows = {**store.items_of(pairs), **store.get_items(ids)}
        reads.refs = {r.id for r in reads.rows.values()}
        reads.messages = self.fed.item_messages_of(sorted(reads.refs))
        reads.reached = store.inventories(sorted(reads.refs), "reached")
        accepted.prefetched[_READS] = reads

    def _relayed_receipt(
        self, receipt: str, now: datetime, accepted: Batch
    ) -> tuple[str, dict[str, list[Receipted]]]:
        """The final recipient's receipt a relay receipt passes on: its signer (the signature checked
        against the signer's registered key) and its entries by the item they name. A hub passes on
        the recipient's one batch receipt with each item it relayed in that batch, so the same text
        comes once per item: it is verified and read once per push (``accepted``, one instant), not
        once per item (250 Ed25519 verifications and readings of a 250-entry receipt for a batch of
        250). Kept by its exact text: any other text, a forged one too, is verified on its own. A
        receipt that does not verify raises the same error for each relay receipt that carries it."""
        held: dict[str, tuple[str, dict[str, list[Receipted]]] | GsomiaError] = (
            accepted.prefetched.setdefault(_RELAYED, {})
        )
        found = held.get(receipt)
        if found is None:
            try:
                signer, content = verify_origin(receipt, self.kernel.peers.peer, now)
                by_item: dict[str, list[Receipted]] = {}
                for entry in receipt_entries(content, signer)[1].values():
                    if isinstance(entry.item, str):  # what names no item by its id names none asked for
                        by_item.setdefault(entry.item, []).append(entry)
                found = (signer, by_item)
            except GsomiaError as exc:
                found = exc
            held[receipt] = found
        if isinstance(found, GsomiaError):
            raise found.with_traceback(None)
        return found
