"""Settling outbox entries: one module for every transport. A receiver's answer becomes the
entry's new state, its audit record and, for an item that went, its inventory entry; a verified
receipt is settled the same way whether it came back over the network, from a partner in this
process, or on a receipts file from an air-gapped site.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gsomia._codec import canonical
from gsomia.core.instants import epoch_us
from gsomia.crypto.envelope import verify_origin
from gsomia.errors import GsomiaError, InvalidInputError
from gsomia.exchange._messages import Receipted, receipt_entries, receipt_id
from gsomia.kernel import NodeContext
from gsomia.store import AuditRow, InventoryEntry, OutboxRow

__all__ = ["LONGEST_BACKOFF_US", "Delivery", "Settlement"]

_MAX_BACKOFF_S = 60.0
LONGEST_BACKOFF_US = int(_MAX_BACKOFF_S * 1.2 * 1_000_000) + 1_000_000  # with the jitter, and a second


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one delivery attempt did with one outbox entry."""

    msg_id: str
    recipient: str
    state: str  # delivered | pending (retry) | undeliverable
    detail: str


class Settlement:
    """Outcomes of delivery attempts, as ``FederationStore.settle_many`` writes them (one transaction
    per batch): each method appends to ``sink`` or returns one outcome. Each outcome carries the
    entry its attempt started from (``expected``): the store writes it only if the entry has not
    moved on meanwhile (a recall cancelled it, a label change re-sealed it)."""

    def __init__(self, kernel: NodeContext, *, retry_for: timedelta = timedelta(hours=24)) -> None:
        self.kernel = kernel
        self.retry_for = retry_for  # how long a message other than an item refused for now is retried

    def retry(
        self,
        entry: OutboxRow,
        now: datetime,
        reason: str,
        sink: list[dict[str, Any]],
        *,
        heard: list[AuditRow] | None = None,
    ) -> Delivery:
        """The entry waits for a later attempt, backing off exponentially (with jitter); ``heard``:
        the refusal of what the receiver answered, audited even if another process settled the
        entry meanwhile."""
        attempts = entry.attempts + 1
        delay = min(_MAX_BACKOFF_S, 0.2 * 2**attempts) * (1 + random.random() * 0.2)  # noqa: S311 - jitter
        sink.append(
            dict(
                msg_id=entry.msg_id,
                expected=entry,
                state="pending",
                now_us=epoch_us(now),
                attempts=attempts,
                next_attempt_us=epoch_us(now) + int(delay * 1_000_000),
                last_error=reason,
                heard=heard or [],
            )
        )
        return Delivery(entry.msg_id, entry.recipient, "pending", reason)

    def answer(
        self,
        entry: OutboxRow,
        envelope: str,
        answer: Any,
        now: datetime,
        sink: list[dict[str, Any]],
        *,
        shared: Any = None,
        digest: str | None = None,
        cache: dict[Any, Any] | None = None,
    ) -> Delivery:
        """The receiver's answer to one message: refused (undeliverable, with its reason), a receipt
        that verifies and names it (delivered), or anything else (retried; a receipt refused is
        audited). ``shared``: the one receipt of the batch envelope that carried it, which names
        the message if the receiver took it; ``digest``: the SHA-256 of the originator's signature
        sent, which the receipt must name; ``cache``: receipts already checked in this run."""
        status = answer.get("status") if isinstance(answer, dict) else None
        if status == "refused":
            reason = str(answer.get("reason") or "refused by the receiver")
            transient = answer.get("retry") is True and entry.kind != "item"
            if transient and epoch_us(now) - entry.created_us < self.retry_for.total_seconds() * 1e6:
                # refused for now (the clocks differ, the envelope expired on the way): the duty still
                # binds, so it goes again, in a fresh envelope, until it is accepted or too old
                return self.retry(entry, now, f"{entry.recipient} refused for now: {reason}", sink)
            sink.append(
                dict(
                    msg_id=entry.msg_id,
                    expected=entry,
                    state="undeliverable",
                    now_us=epoch_us(now),
                    attempts=entry.attempts + 1,
                    next_attempt_us=entry.next_attempt_us,
                    last_error=f"{entry.recipient} refused: {reason}",
                    envelope=envelope,
                    audit=[
                        self.kernel.audit_row(
                            "envelope.refused-by-peer",
                            None,
                            entry.item_id,
                            "refused",
                            msg_id=entry.msg_id,
                            peer=entry.recipient,
                            reason=reason,
                        )
                    ],
                )
            )
            return Delivery(entry.msg_id, entry.recipient, "undeliverable", reason)
        receipt = answer.get("receipt") if isinstance(answer, dict) else None
        if not isinstance(receipt, str) and isinstance(shared, str) and status is not None:
            receipt = shared  # taken in a batch envelope: the batch's one receipt names it
        if not isinstance(receipt, str):
            return self.retry(entry, now, f"bad receipt from {entry.recipient}: no receipt", sink)
        try:
            signer, batched, named = self.verified(receipt, now, cache)
            acknowledged = named.get(entry.msg_id)
            if signer != entry.recipient or acknowledged is None or acknowledged.sender != self.kernel.party:
                raise InvalidInputError("the receipt does not acknowledge this message")
            if digest is not None and acknowledged.digest != digest:
                raise InvalidInputError("the receipt names another item under this message")
        except GsomiaError as exc:
            reason = f"bad receipt from {entry.recipient}: {exc}"
            refused = self.kernel.audit_row(
                "envelope.receipt-refused", None, entry.item_id, "refused", msg_id=entry.msg_id,
                peer=entry.recipient, reason=str(exc),
            )  # fmt: skip
            return self.retry(entry, now, reason, sink, heard=[refused])
        shared_id = None
        if batched:  # the batch's one receipt: its key hashed once, however many entries it settles
            shared_id = cache.get((receipt, "id")) if cache is not None else None
            if shared_id is None:
                shared_id = receipt_id(receipt)
                if cache is not None:
                    cache[(receipt, "id")] = shared_id
        sink.append(
            self.delivered(entry, receipt, acknowledged.status, now, envelope=envelope, receipt_id=shared_id)
        )
        return Delivery(entry.msg_id, entry.recipient, "delivered", str(acknowledged.status))

    def verified(
        self, receipt: str, now: datetime, cache: dict[Any, Any] | None = None
    ) -> tuple[str, bool, dict[str, Receipted]]:
        """A receipt's signer (its signature checked), whether it is a batch's, and the messages it
        acknowledges by id (:func:`receipt_entries`); ``cache`` keeps what a batch's one receipt
        gave (or the refusal), so it is checked once however many entries it settles."""
        found = cache.get(receipt) if cache is not None else None
        if found is None:
            try:
                signer, content = verify_origin(receipt, self.kernel.peers.peer, now)
                found = (signer, *receipt_entries(content, signer))
            except GsomiaError as exc:
                found = exc
            if cache is not None:
                cache[receipt] = found
        if isinstance(found, GsomiaError):
            raise found
        signer, batched, named = found
        return signer, batched, named

    def unsent(
        self, receipt: str, sent: Collection[str], peer: str, now: datetime, cache: dict[Any, Any]
    ) -> list[AuditRow]:
        """A batch's receipt that also names messages not sent in that batch: nothing is settled from
        it for them (settling goes by the entries sent); the audit record says which it named."""
        try:
            _, _, named = self.verified(receipt, now, cache)
        except GsomiaError:
            return []  # refused for each entry it was to settle (audited there)
        extra = sorted(set(named) - set(sent))
        if not extra:
            return []
        reason = f"the batch receipt names {len(extra)} message(s) not sent in that batch"
        return [
            self.kernel.audit_row(
                "envelope.receipt-refused", None, None, "refused", peer=peer, reason=reason, named=extra[:20]
            )
        ]

    def delivered(
        self,
        entry: OutboxRow,
        receipt: str,
        status: Any,
        now: datetime,
        *,
        envelope: str | None = None,
        channel: str | None = None,
        receipt_id: str | None = None,
    ) -> dict[str, Any]:
        """The outcome of a verified receipt, for ``FederationStore.settle_many``: the entry
        delivered, an ``envelope.delivered`` audit record and, for an item, a ``sent`` inventory
        entry. The same for every transport (``channel`` names one that is not the network)."""
        via = {} if channel is None else {"channel": channel}
        inventory = []
        if entry.item_id is not None and entry.kind == "item":  # the item itself went: count the copy
            inventory.append(
                InventoryEntry(
                    entry.item_id,
                    epoch_us(now),
                    "sent",
                    entry.recipient,
                    None,
                    canonical(
                        {
                            "msg_id": entry.msg_id,
                            "final_recipient": entry.final_recipient,
                            "status": status,
                            **via,
                        }
                    ),
                )
            )
        outcome: dict[str, Any] = dict(
            msg_id=entry.msg_id,
            expected=entry,
            state="delivered",
            now_us=epoch_us(now),
            attempts=entry.attempts + 1,
            next_attempt_us=entry.next_attempt_us,
            receipt=receipt,
            receipt_id=receipt_id,  # a batch's receipt: stored once under this key
            audit=[
                self.kernel.audit_row(
                    "envelope.delivered",
                    None,
                    entry.item_id,
                    "allowed",
                    msg_id=entry.msg_id,
                    peer=entry.recipient,
                    status=status,
                    **via,
                )
            ],
            inventory=inventory,
        )
        if envelope is not None:
            outcome["envelope"] = envelope
        return outcome
