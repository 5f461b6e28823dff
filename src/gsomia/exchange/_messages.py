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

from gsomia._codec import canonical, instant_from_json, json_object, text_field
from gsomia.core.policy import Consent, ConsentKind
from gsomia.errors import InvalidInputError
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


def consent_content(consent: Consent, consent_id: str) -> bytes:
    purpose = {} if consent.purpose is None else {"purpose": consent.purpose}
    return canonical(
        {
            **purpose,
            "v": 1,
            "kind": "consent",
            "id": consent_id,
            "consent_kind": consent.kind.value,
            "originator": consent.originator,
            "recipient": consent.recipient,
            "item": consent.item,
            "holder": consent.holder,
            "hub": consent.hub,
            "given_at": consent.given_at.isoformat(),
            "expires": None if consent.expires is None else consent.expires.isoformat(),
            "reference": consent.reference,
        }
    ).encode()


def consent_from_content(content: bytes, signer: str) -> tuple[str, Consent]:
    """(consent id, consent); the signer must be the originator the consent speaks for."""
    data = json_object(content, "consent")
    if data.get("v") != 1 or data.get("kind") != "consent":
        raise InvalidInputError("consent: not a version 1 consent")
    originator = text_field(data, "originator", "consent")
    if originator != signer:
        raise InvalidInputError(f"consent: signed by {signer}, but speaks for {originator}")
    try:
        kind = ConsentKind(str(data.get("consent_kind")))
    except ValueError as exc:
        raise InvalidInputError("consent.consent_kind: third_party, hub_relay or track_relay") from exc
    expires = data.get("expires")
    consent = Consent(
        kind=kind,
        originator=originator,
        recipient=text_field(data, "recipient", "consent"),
        given_at=instant_from_json(data.get("given_at"), "consent.given_at"),
        reference=text_field(data, "reference", "consent"),
        item=text_field(data, "item", "consent", optional=True),
        holder=text_field(data, "holder", "consent", optional=True),
        hub=text_field(data, "hub", "consent", optional=True),
        expires=None if expires is None else instant_from_json(expires, "consent.expires"),
        purpose=text_field(data, "purpose", "consent", optional=True),
    )
    return text_field(data, "id", "consent"), consent


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
