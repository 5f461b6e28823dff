"""What travels between nodes, as canonical JSON: consents and receipts (the originator's signed
item, ``item_content``, is the kernel's: every service that stores an item signs or checks it).

Consents and receipts are signed by the node that gives them. All parsing here is at
the boundary and raises ``InvalidInputError`` naming the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gsomia._codec import canonical, consent_content, consent_from_content
from gsomia.core.instants import epoch_us
from gsomia.crypto.envelope import envelope_routing as _routing
from gsomia.errors import InvalidInputError
from gsomia.kernel import ItemContent, item_content, parse_item_content
from gsomia.store import uuid7_hex

__all__ = [
    "BATCH_RECEIPT_KIND",
    "MAX_RECEIPT_ENTRIES",
    "ItemContent",
    "Receipted",
    "batch_receipt_content",
    "consent_content",
    "consent_from_content",
    "envelope_routing",
    "item_content",
    "message_id",
    "parse_item_content",
    "receipt_content",
    "receipt_entries",
    "receipt_id",
]

# One receipt for a batch envelope (issue 18): one signature naming every message it acknowledges.
BATCH_RECEIPT_KIND = "batch-receipt"
MAX_RECEIPT_ENTRIES = 1000  # as many as a batch envelope carries messages
_ENTRY = frozenset({"msg_id", "item", "status", "digest", "log_entry"})


def message_id(now: datetime) -> str:
    """A new message's (or receipted record's) id: a UUIDv7 of ``now`` as 32 hex digits (74 random
    bits, an id no one guesses), as items and audit records are named. ``uuid.uuid4().hex`` cost
    5-8 µs a call at load (the UUID object's checks and its int), this ~2; and the unique indexes
    the ids go in (the outbox's and the inbox's ``msg_id``, the audit records' ``entry_id``) grow at
    their right edge instead of taking each insert at a random leaf (issue 18)."""
    return uuid7_hex(epoch_us(now) // 1000)


def receipt_content(
    *,
    msg_id: str,
    item_id: str | None,
    receiver: str,
    sender: str,
    status: str,
    digest: str | None,
    at: datetime,
    log_entry: str | None = None,
) -> bytes:
    """A signed receipt names the receiver's audit-log entry, so either side can later prove it."""
    return canonical(
        {
            "v": 1,
            "kind": "receipt",
            "msg_id": msg_id,
            "item": item_id,
            "receiver": receiver,
            "sender": sender,
            "status": status,
            "digest": digest,
            "at": at.isoformat(),
            "log_entry": log_entry,
        }
    ).encode()


def batch_receipt_content(
    *, batch: str, receiver: str, sender: str, at: datetime, entries: Sequence[dict[str, Any]]
) -> bytes:
    """One signed receipt for the messages of a batch envelope (``batch``, its message id) that the
    receiver took: each entry names a message (``msg_id``), its item, the status, the SHA-256 of
    the item's originator signature (``digest``) and the receiver's audit-log entry for it."""
    return canonical(
        {
            "v": 1,
            "kind": BATCH_RECEIPT_KIND,
            "batch": batch,
            "receiver": receiver,
            "sender": sender,
            "at": at.isoformat(),
            "entries": [{name: entry.get(name) for name in sorted(_ENTRY)} for entry in entries],
        }
    ).encode()


@dataclass(frozen=True, slots=True)
class Receipted:
    """One message a verified receipt acknowledges, as the receiver signed it."""

    msg_id: str
    item: str | None
    receiver: str
    sender: str
    status: Any
    digest: str | None
    log_entry: str | None


def receipt_entries(content: bytes, signer: str) -> tuple[bool, dict[str, Receipted]]:
    """The messages a receipt whose signature verified (by ``signer``) acknowledges, by message id,
    and whether it is a batch receipt (one receipt shared by many messages). A receipt of one
    message (``receipt_content``, as every receipt stored before batch receipts) names one; a batch
    receipt each of its entries. ``InvalidInputError`` if it is neither, if its receiver is not its
    signer, or if a batch receipt names a message twice."""
    try:
        data = json.loads(content)
    except ValueError:
        raise InvalidInputError("a receipt is canonical JSON") from None
    if not isinstance(data, dict) or data.get("receiver") != signer:
        raise InvalidInputError(f"not a receipt given by {signer}")
    if not isinstance(data.get("sender"), str):
        raise InvalidInputError(f"not a receipt given by {signer}")
    sender = data["sender"]
    if data.get("kind") == "receipt":
        msg_id = data.get("msg_id")
        if not isinstance(msg_id, str):
            raise InvalidInputError("a receipt names its message")
        one = Receipted(
            msg_id, data.get("item"), signer, sender, data.get("status"), data.get("digest"),
            data.get("log_entry"),
        )  # fmt: skip
        return False, {msg_id: one}
    entries = data.get("entries")
    if data.get("kind") != BATCH_RECEIPT_KIND or not isinstance(entries, list):
        raise InvalidInputError("not a receipt")
    if not 0 < len(entries) <= MAX_RECEIPT_ENTRIES:
        raise InvalidInputError(f"a batch receipt names 1 to {MAX_RECEIPT_ENTRIES} messages")
    named: dict[str, Receipted] = {}
    for entry in entries:
        msg_id = entry.get("msg_id") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or entry.keys() != _ENTRY or not isinstance(msg_id, str):
            raise InvalidInputError("a batch receipt's entry names a message, its item, status and digest")
        if msg_id in named:
            raise InvalidInputError(f"a batch receipt names message {msg_id} twice")
        named[msg_id] = Receipted(
            msg_id, entry["item"], signer, sender, entry["status"], entry["digest"], entry["log_entry"]
        )
    return True, named


def receipt_id(receipt: str) -> str:
    """The key a receipt shared by many messages is stored under, once (its SHA-256)."""
    return hashlib.sha256(receipt.encode("ascii")).hexdigest()


def envelope_routing(envelope: str) -> dict[str, Any]:
    """The routing of an envelope (``jti`` the message id, ``exp`` its expiry, ``aud`` the next hop),
    read without decrypting, in either format (:func:`gsomia.crypto.envelope.envelope_routing`):
    only for this node's own envelopes."""
    return _routing(envelope)
