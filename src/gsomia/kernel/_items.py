"""The item view every service shares: a stored row as an :class:`Item`, the label parsing
cache, the label a received item is held under (worked out here and nowhere else), and the
one way a new item is sealed for the store.

The originator signs ``item_content`` (label and payload together, so neither can be swapped:
the ADatP-4778 idea); that signature travels unchanged through every hop.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from gsomia._codec import canonical, json_object, label_from_dict, label_to_dict, text_field
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import epoch_us
from gsomia.core.labels import AlternativeLabel, SecurityLabel
from gsomia.crypto.atrest import PayloadCipher
from gsomia.crypto.envelope import sign_origin
from gsomia.crypto.keys import KeyRing
from gsomia.errors import GsomiaError, InvalidInputError, LabelError, NotFoundError
from gsomia.store import ItemRow, NewItem, Store

__all__ = [
    "ITEM_ID",
    "PAYLOAD_TYPES",
    "Item",
    "ItemContent",
    "Items",
    "check_item_id",
    "check_payload_type",
    "from_us",
    "item_content",
    "parse_item_content",
    "unknown_item",
]

ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
PAYLOAD_TYPES = frozenset({"json", "bytes"})
_CACHE_LIMIT = 4096


def from_us(value: int) -> datetime:
    """An instant from the store's microseconds since the epoch (UTC)."""
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def unknown_item(item_id: str) -> str:
    """What a reader is told of an item this node does not hold, and of one they may not read:
    the same words for both (issue 14 §6)."""
    return f"no item {item_id!r} at this node"


def check_item_id(item_id: str, what: str = "item id") -> str:
    """``item_id`` if it is 1-128 letters, digits or ``._:-`` (starting with a letter or digit)."""
    if not ITEM_ID.match(item_id):
        raise InvalidInputError(f"{what} {item_id!r} must be 1-128 letters, digits or ._:-")
    return item_id


def check_payload_type(payload_type: str) -> str:
    if payload_type not in PAYLOAD_TYPES:
        raise InvalidInputError(f"payload_type must be one of {', '.join(sorted(PAYLOAD_TYPES))}")
    return payload_type


@dataclass(frozen=True, slots=True)
class Item:
    """An item as a reader sees it (payload separate)."""

    id: str
    label: SecurityLabel
    received_from: str | None
    agreement: str | None
    ingested: datetime
    ingested_by: str
    payload_type: str
    payload_size: int
    label_version: int = 1
    added_us: int | None = None  # when this version was added (TAXII's date-added, exact); None until stored


@dataclass(frozen=True, slots=True)
class ItemContent:
    """The originator's signed content: item id, the originator's label, the payload."""

    item_id: str
    label: SecurityLabel
    payload_type: str
    payload: bytes
    label_version: int = 1  # the originator's label version (1: the label as created)


def _originator_label(label: SecurityLabel) -> dict[str, Any]:
    data = label_to_dict(label)
    data["alternatives"] = []  # receivers' equivalents are theirs, never part of what the originator signed
    return data


def item_content(
    item_id: str, label: SecurityLabel, payload_type: str, payload: bytes, label_version: int = 1
) -> bytes:
    """What the originator signs: the item with its label and, once changed, the label's version (so
    every holder starts at the version the originator released, and an older change is stale)."""
    content: dict[str, Any] = {
        "v": 1,
        "kind": "item",
        "item": item_id,
        "label": _originator_label(label),
        "payload_type": payload_type,
        "payload": base64.b64encode(payload).decode(),
    }
    if label_version != 1:
        content["label_version"] = label_version
    return canonical(content).encode()


def parse_item_content(content: bytes, catalogue: Catalogue) -> ItemContent:
    data = json_object(content, "item")
    if data.get("v") != 1 or data.get("kind") != "item":
        raise InvalidInputError("item: not a version 1 item")
    try:
        payload = base64.b64decode(text_field(data, "payload", "item"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError("item.payload: not base64") from exc
    try:
        label = label_from_dict(data.get("label"), catalogue)
    except GsomiaError as exc:
        raise InvalidInputError(f"item.label: {exc}") from exc
    version = data.get("label_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidInputError("item.label_version: expected a whole number from 1")
    return ItemContent(
        text_field(data, "item", "item"), label, text_field(data, "payload_type", "item"), payload, version
    )


class Items:
    """Rows to items, labels parsed once, the receiver's label, and new items sealed for the store.

    The caches hold immutable values keyed by exactly what was parsed, so an altered row is
    parsed (and checked) anew; each is bounded and simply emptied when full.
    """

    def __init__(
        self,
        party: str,
        catalogue: Callable[[], Catalogue],
        store: Store,
        cipher: PayloadCipher,
        ring: KeyRing,
    ) -> None:
        self.party = party
        self._catalogue = catalogue  # the kernel's: the data files with the equivalence changes on file
        self.store = store
        self.cipher = cipher
        self.ring = ring
        self._stored: dict[str, SecurityLabel] = {}
        self._parsed: dict[bytes, SecurityLabel] = {}
        self._received: dict[tuple[SecurityLabel, str | None, str | None, str | None], SecurityLabel] = {}

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue()

    # --- labels ---

    def stored_label(self, text: str) -> SecurityLabel:
        """A stored label (canonical JSON), parsed once: labels repeat across items."""
        found = self._stored.get(text)
        if found is None:
            if len(self._stored) >= _CACHE_LIMIT:
                self._stored.clear()
            found = self._stored[text] = label_from_dict(json.loads(text), self.catalogue, held=True)
        return found

    def parse_label(self, data: Any) -> SecurityLabel:
        """A label in its boundary (dict) form, parsed and checked once per distinct content."""
        key = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        found = self._parsed.get(key)
        if found is None:
            found = label_from_dict(data, self.catalogue)
            if len(self._parsed) >= _CACHE_LIMIT:
                self._parsed.clear()
            self._parsed[key] = found
        return found

    def received_label(
        self,
        label: SecurityLabel,
        received_from: str | None,
        agreement: str | None,
        at: datetime | None = None,
    ) -> SecurityLabel:
        """The label this node holds an item under: the originator's, plus, for a received item,
        this node's equivalent level under the agreement it came by (Art. 4), as the table maps it
        at ``at`` (the instant of receipt; ``None``: the table's latest rows). The one place the
        receiver's label is worked out: ingest, the inbox, the duties and the stream all ask here.
        Raises :class:`LabelError` when the item cannot be held here."""
        governing = self.catalogue.agreements.get(agreement) if agreement else None
        level = (
            None
            if governing is None
            else governing.equivalence.map(label.originator, label.classification, self.party, at)
        )
        key = (label, received_from, agreement, level)
        found = self._received.get(key)
        if found is None:
            found = self._receive(label, received_from, agreement, level)
            if len(self._received) >= _CACHE_LIMIT:
                self._received.clear()
            self._received[key] = found
        return found

    def _receive(
        self, label: SecurityLabel, received_from: str | None, agreement: str | None, level: str | None
    ) -> SecurityLabel:
        if label.alternatives:
            raise LabelError(
                "label.alternatives: the node adds alternative labels on receipt; do not send them"
            )
        if label.originator == self.party:
            if received_from or agreement:
                raise LabelError(f"an item originated by {self.party} was not received from anyone")
            return label
        if self.party not in label.releasable_to or "NOFORN" in label.caveats:
            raise LabelError(
                f"the label does not make this {label.originator} item releasable to {self.party}: "
                "it cannot be held here"
            )
        if not received_from or not agreement:
            raise LabelError(
                f"an item originated by {label.originator} needs received_from and the agreement "
                "it came under"
            )
        source = self.catalogue.party(received_from).code
        governing = self.catalogue.agreement(agreement)
        if self.party not in governing.parties or source not in governing.parties:
            raise LabelError(f"{agreement} does not cover a transfer from {source} to {self.party}")
        if level is None:
            raise LabelError(
                f"{label.originator} {label.classification} has no {self.party} equivalent under "
                f"{agreement}: it cannot be held here"
            )
        return label.with_alternative(AlternativeLabel(self.party, level, agreement))

    # --- rows ---

    def item(self, row: ItemRow) -> Item:
        """The stored row as a reader sees it (the payload stays sealed)."""
        return Item(
            row.id,
            self.stored_label(row.label),
            row.received_from,
            row.agreement,
            from_us(row.ingested_us),
            row.ingested_by,
            row.payload_type,
            row.payload_size,
            row.label_version,
            row.added_us,
        )

    def item_of(self, new: NewItem, label: SecurityLabel) -> Item:
        """An item just sealed (``label`` is the one it was sealed under), as a reader sees it."""
        return Item(
            new.id,
            label,
            new.received_from,
            new.agreement,
            from_us(new.ingested_us),
            new.ingested_by,
            new.payload_type,
            new.payload_size,
        )

    def row(self, item_id: str) -> ItemRow:
        """The stored row of ``item_id``; :class:`NotFoundError` if this node has none."""
        row = self.store.get_item(item_id)
        if row is None:
            raise NotFoundError(unknown_item(item_id))
        return row

    def payload(self, row: ItemRow) -> bytes:
        """The row's payload, opened (its label is the AAD: a swapped label does not open)."""
        return self.cipher.open(row.id, row.label, row.payload)

    def origin(self, row: ItemRow) -> str | None:
        """The originator's signed item kept with the row, opened; ``None`` if none was kept."""
        if row.origin_jws is None:
            return None
        return self.cipher.open(row.id, row.label, row.origin_jws).decode()

    def seal(
        self,
        item_id: str,
        label: SecurityLabel,
        payload_type: str,
        payload: bytes,
        *,
        now: datetime,
        by: str,
        received_from: str | None = None,
        agreement: str | None = None,
        origin: str | None = None,
        label_version: int = 1,
    ) -> NewItem:
        """A new item for the store: payload (and the originator's signed item) sealed under the
        node key with the label bound in. This node's own item is signed here when no ``origin``
        is given (the originator signs label and payload together, ADatP-4778)."""
        label_json = canonical(label_to_dict(label))
        if origin is None and label.originator == self.party:
            origin = sign_origin(self.ring, item_content(item_id, label, payload_type, payload), now)
        return NewItem(
            id=item_id,
            originator=label.originator,
            classification=label.classification,
            label=label_json,
            topics=label.topics,
            received_from=received_from,
            agreement=agreement,
            created_us=epoch_us(label.created),
            ingested_us=epoch_us(now),
            ingested_by=by,
            payload_type=payload_type,
            payload_size=len(payload),
            payload=self.cipher.seal(item_id, label_json, payload),
            origin_jws=None if origin is None else self.cipher.seal(item_id, label_json, origin.encode()),
            label_version=label_version,
        )
