"""What travels between nodes, as canonical JSON: the originator's signed item, consents, receipts.

The originator signs ``item_content`` (label and payload together, so neither can be
swapped: the ADatP-4778 idea); that signature travels unchanged through every hop.
Consents and receipts are signed by the node that gives them. All parsing here is at
the boundary and raises ``InvalidInputError`` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gsomia._codec import canonical, instant_from_json, label_from_dict, label_to_dict
from gsomia.core.catalogue import Catalogue
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Consent, ConsentKind
from gsomia.errors import GsomiaError, InvalidInputError

__all__ = [
    "ItemContent",
    "consent_content",
    "consent_from_content",
    "item_content",
    "parse_item_content",
    "receipt_content",
]


@dataclass(frozen=True, slots=True)
class ItemContent:
    """The originator's signed content: item id, the originator's label, the payload."""

    item_id: str
    label: SecurityLabel
    payload_type: str
    payload: bytes


def _originator_label(label: SecurityLabel) -> dict[str, Any]:
    data = label_to_dict(label)
    data["alternatives"] = []  # receivers' equivalents are theirs, never part of what the originator signed
    return data


def item_content(item_id: str, label: SecurityLabel, payload_type: str, payload: bytes) -> bytes:
    return canonical(
        {
            "v": 1,
            "kind": "item",
            "item": item_id,
            "label": _originator_label(label),
            "payload_type": payload_type,
            "payload": base64.b64encode(payload).decode(),
        }
    ).encode()


def _json(content: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{what}: not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{what}: expected an object")
    return data


def _str(data: dict[str, Any], name: str, what: str, *, optional: bool = False) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{what}.{name}: expected a non-empty string")
    return value


def parse_item_content(content: bytes, catalogue: Catalogue) -> ItemContent:
    data = _json(content, "item")
    if data.get("v") != 1 or data.get("kind") != "item":
        raise InvalidInputError("item: not a version 1 item")
    try:
        payload = base64.b64decode(_str(data, "payload", "item"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError("item.payload: not base64") from exc
    try:
        label = label_from_dict(data.get("label"), catalogue)
    except GsomiaError as exc:
        raise InvalidInputError(f"item.label: {exc}") from exc
    return ItemContent(_str(data, "item", "item"), label, _str(data, "payload_type", "item"), payload)


def consent_content(consent: Consent, consent_id: str) -> bytes:
    return canonical(
        {
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
    data = _json(content, "consent")
    if data.get("v") != 1 or data.get("kind") != "consent":
        raise InvalidInputError("consent: not a version 1 consent")
    originator = _str(data, "originator", "consent")
    if originator != signer:
        raise InvalidInputError(f"consent: signed by {signer}, but speaks for {originator}")
    try:
        kind = ConsentKind(str(data.get("consent_kind")))
    except ValueError as exc:
        raise InvalidInputError("consent.consent_kind: third_party or hub_relay") from exc
    expires = data.get("expires")
    consent = Consent(
        kind=kind,
        originator=originator,
        recipient=_str(data, "recipient", "consent"),
        given_at=instant_from_json(data.get("given_at"), "consent.given_at"),
        reference=_str(data, "reference", "consent"),
        item=_str(data, "item", "consent", optional=True),
        holder=_str(data, "holder", "consent", optional=True),
        hub=_str(data, "hub", "consent", optional=True),
        expires=None if expires is None else instant_from_json(expires, "consent.expires"),
    )
    return _str(data, "id", "consent"), consent


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
