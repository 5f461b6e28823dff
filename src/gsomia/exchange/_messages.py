"""What travels between nodes, as canonical JSON: consents and receipts (the originator's signed
item, ``item_content``, is the kernel's: every service that stores an item signs or checks it).

Consents and receipts are signed by the node that gives them. All parsing here is at
the boundary and raises ``InvalidInputError`` naming the field.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from gsomia._codec import canonical, consent_content, consent_from_content
from gsomia.kernel import ItemContent, item_content, parse_item_content

__all__ = [
    "ItemContent",
    "consent_content",
    "consent_from_content",
    "envelope_routing",
    "item_content",
    "parse_item_content",
    "receipt_content",
]


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


def envelope_routing(envelope: str) -> dict[str, Any]:
    """The routing in an envelope's JWE protected header (``jti`` the message id, ``exp`` its
    expiry, ``aud`` the next hop), read without decrypting: only for this node's own envelopes."""
    jwe = json.loads(envelope)["jwe"]
    header = jwe.split(".", 1)[0]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    return data
