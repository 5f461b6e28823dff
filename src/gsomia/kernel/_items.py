"""The item view every service shares: a stored row as an :class:`Item`, the label parsing
cache, the label a received item is held under (worked out here and nowhere else), and the
one way a new item is sealed for the store.

The originator signs ``item_content`` (label and payload together, so neither can be swapped:
the ADatP-4778 idea); that signature travels unchanged through every hop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from gsomia._codec import (
    canonical,
    canonical_built,
    json_object,
    label_created_at,
    label_from_dict,
    label_to_dict,
    text_field,
)
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import epoch_us
from gsomia.core.labels import AlternativeLabel, SecurityLabel
from gsomia.core.portions import MAX_PORTIONS, PORTION_ID, banner, check_portion, check_within, portion_tree
from gsomia.crypto.atrest import PayloadCipher
from gsomia.crypto.envelope import sign_origin
from gsomia.crypto.keys import KeyRing
from gsomia.errors import EnvelopeError, GsomiaError, InvalidInputError, LabelError, NotFoundError, ProofError
from gsomia.store import ItemRow, NewItem, Store, uuid7_hex

__all__ = [
    "ITEM_ID",
    "PAYLOAD_TYPES",
    "PORTIONS",
    "HoldAs",
    "Item",
    "ItemContent",
    "Items",
    "NewPortion",
    "PortionMark",
    "PortionedContent",
    "SignedPortion",
    "check_item_id",
    "check_payload_type",
    "from_us",
    "item_content",
    "item_ref",
    "new_item_id",
    "parse_item_content",
    "parse_portioned_content",
    "portioned_content",
    "relabelled_leaf",
    "signed_portions",
    "unknown_item",
]

ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
PAYLOAD_TYPES = frozenset({"json", "bytes"})
PORTIONS = "portions"  # the payload type of an item in portions (what a reader gets: the portions seen)
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


def new_item_id(now: datetime) -> str:
    """An id for an item this node names (ingest, a copy): a UUIDv7 (RFC 9562) of the instant ``now``
    and 74 random bits, in the usual 8-4-4-4-12 form. Ids this node makes grow with its clock, so
    the unique indexes on ``items.id`` and ``items.origin_id`` take them at their right edge instead
    of at a random leaf page each (a UUIDv4 did: at 200,000 items a batch of 1,000 dirtied ~3,600
    pages of the SQLite store, most of them index pages, issue 18)."""
    digits = uuid7_hex(epoch_us(now) // 1000)  # str(uuid.UUID(int=...)) without the object
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def item_ref(originator: str, item_id: str, taken: Callable[[str], bool]) -> str:
    """This node's reference for ``originator``'s item ``item_id`` arriving here (issue 22 §4): the id
    itself if no item here has it as its reference; else ``ORIGINATOR:id``; else (that too is taken,
    by an item whose own id is written so, or it would be too long) ``ORIGINATOR:~`` and a digest of
    the id, which no id can be (``~`` is not in one) and only this item gets. An item is (originator,
    id): another originator's item under the same id never keeps this one out."""
    for ref in (item_id, f"{originator}:{item_id}"):
        if len(ref) <= 128 and not taken(ref):
            return ref
    return f"{originator}:~{hashlib.sha256(item_id.encode()).hexdigest()[:48]}"


def check_payload_type(payload_type: str) -> str:
    if payload_type not in PAYLOAD_TYPES:
        raise InvalidInputError(f"payload_type must be one of {', '.join(sorted(PAYLOAD_TYPES))}")
    return payload_type


HoldAs = Mapping[tuple[str, str, str], str]
"""The node's default level for a partner's level where the agreement offers a choice (Art. 4.2):
(agreement, originator, originator's level) -> this node's level."""


@dataclass(frozen=True, slots=True)
class PortionMark:
    """One portion of an item as held here: its id, place in the originator's tree, label (with this
    node's equivalent for a received item) and payload size. What a reader sees of a portion they
    may read; the dashboard's portion mark."""

    id: str
    index: int
    label: SecurityLabel
    size: int


@dataclass(frozen=True, slots=True)
class Item:
    """An item as a reader sees it (payload separate). An item in portions carries the marks of the
    portions the reader may see (all of them as stored), and its label is the highest of theirs."""

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
    portions: tuple[PortionMark, ...] = ()
    origin_id: str | None = None  # the id its originator gave it, when it is not ``id`` (issue 22 §4)

    @property
    def name(self) -> str:
        """The id the originator gave the item; ``id`` is this node's reference for it (the same,
        unless another originator's item held that id here first: then ``ORIGINATOR:id``)."""
        return self.origin_id or self.id


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
    item_id: str,
    label: SecurityLabel,
    payload_type: str,
    payload: bytes,
    label_version: int = 1,
    *,
    label_dict: dict[str, Any] | None = None,
) -> bytes:
    """What the originator signs: the item with its label and, once changed, the label's version (so
    every holder starts at the version the originator released, and an older change is stale).
    ``label_dict``: ``label_to_dict(label)`` where the caller made it already (not changed here)."""
    content: dict[str, Any] = {
        "v": 1,
        "kind": "item",
        "item": item_id,
        "label": _originator_label(label) if label_dict is None else {**label_dict, "alternatives": []},
        "payload_type": payload_type,
        "payload": base64.b64encode(payload).decode(),
    }
    if label_version != 1:
        content["label_version"] = label_version
    return canonical_built(content).encode()  # strings, integers and label_to_dict's label


def parse_item_content(
    content: bytes,
    catalogue: Catalogue,
    labels: dict[bytes, tuple[Catalogue, SecurityLabel]] | None = None,
    *,
    parsed: dict[str, Any] | None = None,
) -> ItemContent:
    """An originator's signed item content, checked. ``labels``: the labels a batch parsed already, by
    their exact JSON (a batch's items mostly share one label: parsed and checked against the scheme
    once, issue 18); the same JSON under the same catalogue is the same label. ``parsed``: what
    ``json.loads(content)`` gave the caller already, if it did (not parsed again)."""
    data = json_object(content, "item") if parsed is None else parsed
    if data.get("v") != 1 or data.get("kind") != "item":
        raise InvalidInputError("item: not a version 1 item")
    try:
        payload = base64.b64decode(text_field(data, "payload", "item"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError("item.payload: not base64") from exc
    raw = data.get("label")
    key = None
    if labels is not None and isinstance(raw, dict):
        try:
            key = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # past orjson (an integer past 64 bits): parsed on its own
            key = None
    found = labels.get(key) if labels is not None and key is not None else None
    # only under the very catalogue it was checked against (the scheme may change between batches)
    label = found[1] if found is not None and found[0] is catalogue else None
    if label is None:
        try:
            label = label_from_dict(raw, catalogue)
        except GsomiaError as exc:
            raise InvalidInputError(f"item.label: {exc}") from exc
        if labels is not None and key is not None:
            labels[key] = (catalogue, label)
    version = data.get("label_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidInputError("item.label_version: expected a whole number from 1")
    return ItemContent(
        text_field(data, "item", "item"), label, text_field(data, "payload_type", "item"), payload, version
    )


@dataclass(frozen=True, slots=True)
class NewPortion:
    """A portion of an item being created here: its id, the originator's label, the payload."""

    id: str
    label: SecurityLabel
    payload_type: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SignedPortion:
    """A portion as it travels and is stored: the leaf the originator's root covers (``leaf``, the
    canonical bytes), its place and inclusion proof, and what the leaf says (checked)."""

    id: str
    index: int
    proof: tuple[bytes, ...]
    leaf: bytes
    label: SecurityLabel  # the originator's label of this portion
    payload_type: str
    payload: bytes

    def wire(self) -> dict[str, Any]:
        """The portion in an item message and in the store's sealed document."""
        return {
            "index": self.index,
            "leaf": base64.b64encode(self.leaf).decode(),
            "proof": [p.hex() for p in self.proof],
        }


@dataclass(frozen=True, slots=True)
class PortionedContent:
    """The originator's signed item in portions: the item's label and the root over its portions."""

    item_id: str
    label: SecurityLabel
    root: bytes
    size: int
    label_version: int = 1


def portion_leaf(item_id: str, portion: NewPortion) -> bytes:
    """What one leaf of the originator's tree is: the item, the portion, its label and payload."""
    return canonical(
        {
            "v": 1,
            "kind": "portion",
            "item": item_id,
            "portion": portion.id,
            "label": _originator_label(portion.label),
            "payload_type": portion.payload_type,
            "payload": base64.b64encode(portion.payload).decode(),
        }
    ).encode()


def portioned_content(
    item_id: str, label: SecurityLabel, root: bytes, size: int, label_version: int = 1
) -> bytes:
    """What the originator signs for an item in portions: its id, its label (the highest of the
    portions') and the RFC 9162 root over the portions' leaves with the tree's size; once a portion
    was reclassified, the label's version (an older change is stale)."""
    content: dict[str, Any] = {
        "v": 1,
        "kind": "portioned-item",
        "item": item_id,
        "label": _originator_label(label),
        "root": root.hex(),
        "size": size,
    }
    if label_version != 1:
        content["label_version"] = label_version
    return canonical(content).encode()


def relabelled_leaf(leaf: bytes, label: SecurityLabel) -> bytes:
    """A portion's leaf with the originator's new ``label`` (a reclassification of that portion):
    what a holder rebuilds from the leaf it holds and checks against the originator's new root."""
    data = json_object(leaf, "portion")
    data["label"] = _originator_label(label)
    return canonical(data).encode()


def parse_portioned_content(
    content: bytes, catalogue: Catalogue, *, parsed: dict[str, Any] | None = None
) -> PortionedContent | None:
    """The signed item in portions, or ``None`` for an item signed whole (:func:`parse_item_content`).
    ``parsed``: what ``json.loads(content)`` gave the caller already, if it did (not parsed again)."""
    data = json_object(content, "item") if parsed is None else parsed
    if data.get("kind") != "portioned-item":
        return None
    size = data.get("size")
    root = data.get("root")
    if data.get("v") != 1 or type(size) is not int or not 0 < size <= MAX_PORTIONS:
        raise InvalidInputError("item: not a version 1 item in portions")
    try:
        label = label_from_dict(data.get("label"), catalogue)
        digest = bytes.fromhex(root) if isinstance(root, str) else b""
    except GsomiaError as exc:
        raise InvalidInputError(f"item.label: {exc}") from exc
    except ValueError as exc:
        raise InvalidInputError("item.root: not hex") from exc
    if len(digest) != 32:
        raise InvalidInputError("item.root: not a SHA-256 digest")
    version = data.get("label_version", 1)
    if type(version) is not int or version < 1:
        raise InvalidInputError("item.label_version: expected a whole number from 1")
    return PortionedContent(text_field(data, "item", "item"), label, digest, size, version)


def _signed_portion(entry: Any, item: PortionedContent, catalogue: Catalogue) -> SignedPortion:
    """One portion of a message or of the store, checked against the originator's root: the proof,
    then what the leaf says. Raises ``EnvelopeError`` (``bad-portion``) when it is not the
    originator's portion (added, swapped or altered on the way), ``InvalidInputError`` when malformed."""
    if not isinstance(entry, dict) or entry.keys() != {"index", "leaf", "proof"}:
        raise InvalidInputError("item.portions: each portion is {index, leaf, proof}")
    index, leaf_text, proof_text = entry["index"], entry["leaf"], entry["proof"]
    if type(index) is not int or not isinstance(leaf_text, str) or not isinstance(proof_text, list):
        raise InvalidInputError("item.portions: each portion is {index, leaf, proof}")
    try:
        leaf = base64.b64decode(leaf_text, validate=True)
        proof = tuple(bytes.fromhex(p) for p in proof_text if isinstance(p, str))
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError("item.portions: a leaf or proof is not encoded as it should be") from exc
    if len(proof) != len(proof_text) or len(proof) > 8:
        raise InvalidInputError("item.portions: malformed proof")
    try:
        check_portion(leaf, index, item.size, proof, item.root)
    except ProofError as exc:
        raise EnvelopeError("bad-portion") from exc
    data = json_object(leaf, "portion")
    if data.get("v") != 1 or data.get("kind") != "portion" or data.get("item") != item.item_id:
        raise EnvelopeError("bad-portion")  # signed, but not a portion of this item
    portion_id = text_field(data, "portion", "portion")
    if not PORTION_ID.match(portion_id):
        raise InvalidInputError("portion: malformed id")
    try:
        label = label_from_dict(data.get("label"), catalogue)
        check_within(label, item.label, catalogue)
        payload = base64.b64decode(text_field(data, "payload", "portion"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"portion {portion_id}: {exc}") from exc
    payload_type = check_payload_type(text_field(data, "payload_type", "portion"))
    return SignedPortion(portion_id, index, proof, leaf, label, payload_type, payload)


def signed_portions(entries: Any, item: PortionedContent, catalogue: Catalogue) -> tuple[SignedPortion, ...]:
    """The portions a message or the store holds, each checked against the originator's root; at
    least one, none twice (by place or by id), in the originator's order."""
    if not isinstance(entries, list) or not 0 < len(entries) <= item.size:
        raise InvalidInputError("item.portions: 1 to the tree's size of portions")
    found = sorted((_signed_portion(e, item, catalogue) for e in entries), key=lambda p: p.index)
    if len({p.index for p in found}) != len(found) or len({p.id for p in found}) != len(found):
        raise EnvelopeError("bad-portion")  # one portion sent twice, or two with one id
    return tuple(found)


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
        hold_as: HoldAs | None = None,
    ) -> None:
        self.party = party
        self._catalogue = catalogue  # the kernel's: the data files with the equivalence changes on file
        self.store = store
        self.cipher = cipher
        self.ring = ring
        self.hold_as = check_hold_as(catalogue(), party, hold_as or {})
        self._stored: dict[str, SecurityLabel] = {}
        # a stored label but for its creation instant (sorted JSON) -> one such label parsed whole
        self._templates: dict[bytes, SecurityLabel] = {}
        # a boundary label (sorted JSON; one with a creation instant in text: the rest's sorted JSON and
        # that text), and one but for its creation instant -> the label parsed and checked, under the
        # catalogue it was checked against
        self._parsed: dict[bytes | tuple[bytes, str], tuple[Catalogue, SecurityLabel]] = {}
        self._parsed_but_instant: dict[bytes, tuple[Catalogue, SecurityLabel]] = {}
        # (label, received from, agreement) -> the label checked, and whether it gets this node's level
        # (originator, level, releasable to, caveats, alternatives, received from, agreement) -> whether
        # this node adds its equivalent level (the checks of _receive passed)
        self._received: dict[tuple[Any, ...], bool] = {}
        self._received_for: Catalogue | None = None  # the catalogue those were checked against
        # (label, received from, agreement, instant, preferred level) -> the label held, this node's
        # level beside it: a stream's tracks are received at the instant of one cached decision, and
        # each would otherwise build the same label anew (issue 18)
        self._held: dict[
            tuple[SecurityLabel, str | None, str | None, datetime | None, str | None], SecurityLabel
        ] = {}
        self._marks: dict[str, tuple[PortionMark, ...]] = {}
        # a label sealed with -> its canonical JSON, by identity (the label kept beside it, so an id
        # reused by another object is a miss): the items of a received batch share the one label
        # ``received_label`` held for them, written once, not once an item (issue 18)
        self._label_texts: dict[int, tuple[SecurityLabel, str]] = {}
        # the instant items were last sealed at and its microseconds (a batch's items share one)
        self._last_instant: tuple[datetime | None, int] = (None, 0)

    def _label_json(self, label: SecurityLabel) -> tuple[str, dict[str, Any] | None]:
        """``canonical(label_to_dict(label))``, written once per label object held; with the dict
        where it was made just now (``None``: the text was held)."""
        held = self._label_texts.get(id(label))
        if held is not None and held[0] is label:
            return held[1], None
        made = label_to_dict(label)
        text = canonical_built(made)  # label_to_dict's: strings, lists, dicts, None
        if len(self._label_texts) >= _CACHE_LIMIT:
            self._label_texts.clear()
        self._label_texts[id(label)] = (label, text)
        return text, made

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue()

    # --- labels ---

    def stored_label(self, text: str) -> SecurityLabel:
        """A stored label (canonical JSON), parsed once: labels repeat across items. Labels that differ
        only in their creation instant (most of a store's: every item is created at its own instant)
        are parsed once too: the first is parsed whole, the others take its parts and their own
        instant (:func:`label_created_at`), keyed by everything else the stored form says."""
        found = self._stored.get(text)
        if found is None:
            if len(self._stored) >= _CACHE_LIMIT:
                self._stored.clear()
            found = self._stored[text] = self._parse_stored(text)
        return found

    def _parse_stored(self, text: str) -> SecurityLabel:
        data = json.loads(text)
        key = None
        if isinstance(data, dict) and "created" in data:
            try:
                key = orjson.dumps(
                    {k: v for k, v in data.items() if k != "created"}, option=orjson.OPT_SORT_KEYS
                )
            except orjson.JSONEncodeError:  # past orjson (an integer past 64 bits): parsed whole
                key = None
            template = self._templates.get(key) if key is not None else None
            if template is not None:
                return label_created_at(template, data["created"])
        label = label_from_dict(data, self.catalogue, held=True)
        if key is not None:
            if len(self._templates) >= _CACHE_LIMIT:
                self._templates.clear()
            self._templates[key] = label
        return label

    def parse_label(self, data: Any, catalogue: Catalogue | None = None) -> SecurityLabel:
        """A label in its boundary (dict) form, parsed and checked once per distinct content, and once
        per distinct content but for its creation instant: a batch's labels mostly differ in nothing
        else, and the instant is checked on its own as :func:`label_from_dict` checks it
        (:func:`label_created_at`; issue 18). Checked again under a changed catalogue. ``catalogue``:
        the kernel's as the caller read it for a whole batch (``None``: read now).

        A label with a creation instant in text form is keyed by the rest of it (sorted JSON, written
        once) and that text: one encoding an item, where the whole and then the rest took two."""
        catalogue = self.catalogue if catalogue is None else catalogue
        created = data.get("created") if isinstance(data, dict) else None
        try:
            if isinstance(created, str):
                rest = orjson.dumps(
                    {k: v for k, v in data.items() if k != "created"}, option=orjson.OPT_SORT_KEYS
                )
                key: bytes | tuple[bytes, str] = (rest, created)
            else:
                rest, key = None, orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # past orjson (an integer past 64 bits): checked on its own
            return label_from_dict(data, catalogue)
        found = self._parsed.get(key)
        if found is not None and found[0] is catalogue:
            return found[1]
        if rest is not None:
            template = self._parsed_but_instant.get(rest)
            if template is not None and template[0] is catalogue:
                label = label_created_at(template[1], created)
                self._keep(self._parsed, key, (catalogue, label))
                return label
        label = label_from_dict(data, catalogue)
        self._keep(self._parsed, key, (catalogue, label))
        if rest is not None:
            self._keep(self._parsed_but_instant, rest, (catalogue, label))
        return label

    @staticmethod
    def _keep(
        cache: dict[Any, tuple[Catalogue, SecurityLabel]],
        key: Any,
        value: tuple[Catalogue, SecurityLabel],
    ) -> None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value

    def received_label(
        self,
        label: SecurityLabel,
        received_from: str | None,
        agreement: str | None,
        *,
        at: datetime | None = None,
        prefer: str | None = None,
        catalogue: Catalogue | None = None,
    ) -> SecurityLabel:
        """The label this node holds an item under: the originator's, plus, for a received item,
        this node's equivalent level under the agreement it came by (Art. 4), as the table maps it
        at ``at`` (the instant of receipt; ``None``: the table's latest rows). The one place the
        receiver's label is worked out: ingest, the inbox, the duties and the stream all ask here.

        Where the agreement offers this node a choice of level (Art. 4.2: Korean Class II is
        "極秘/特定秘密" in Japan), the level applied is ``prefer`` (the level an officer applied to
        the item before, kept through a reclassification), else the node's default for the
        agreement (``hold_as``), else the agreement's first row; a choice whose row does not apply
        at ``at`` is passed over. Raises :class:`LabelError` when the item cannot be held here.
        ``catalogue``: the kernel's as the caller read it for a whole batch (``None``: read now)."""
        catalogue = self.catalogue if catalogue is None else catalogue
        if catalogue is not self._received_for:  # an equivalence change on file: check again
            self._received.clear()
            self._held.clear()
            self._received_for = catalogue
        memo = (label, received_from, agreement, at, prefer)
        held_here = self._held.get(memo)
        if held_here is not None:  # the same answer as below, worked out before under this catalogue
            return held_here
        # keyed by what _receive reads of the label (not its instants, topics or purpose: every item
        # has its own creation instant, and a key with it missed for each item of a batch, issue 18);
        # a field _receive comes to read goes into the key too (tests/node/test_ingest_batch.py)
        key = (
            label.originator,
            label.classification,
            label.releasable_to,
            label.caveats,
            label.alternatives,
            received_from,
            agreement,
        )
        marked = self._received.get(key)
        if marked is None:
            marked = self._receive(label, received_from, agreement, catalogue)
            if len(self._received) >= _CACHE_LIMIT:
                self._received.clear()
            self._received[key] = marked
        held = label
        if not marked:
            return held
        table = catalogue.agreement(str(agreement)).equivalence
        choices = table.choices(label.originator, label.classification, self.party, at)
        if not choices:
            raise LabelError(
                f"{label.originator} {label.classification} has no {self.party} equivalent under "
                f"{agreement} at this instant: it cannot be held here"
            )
        level = choices[0]
        if len(choices) > 1:
            default = self.hold_as.get((str(agreement), label.originator, label.classification))
            level = next((c for c in (prefer, default) if c is not None and c in choices), level)
        held_here = held.with_alternative(AlternativeLabel(self.party, level, str(agreement)))
        if len(self._held) >= _CACHE_LIMIT:
            self._held.clear()
        self._held[memo] = held_here
        return held_here

    def applied(self, label_text: str) -> str | None:
        """The level this node applied to a stored item (its alternative label); ``None`` for its own."""
        alternative = self.stored_label(label_text).alternative_for(self.party)
        return None if alternative is None else alternative.classification

    def level_choices(self, label: SecurityLabel, agreement: str, at: datetime) -> tuple[str, ...]:
        """The levels this node may hold a received item under at ``at``, the default first."""
        table = self.catalogue.agreement(agreement).equivalence
        return table.choices(label.originator, label.classification, self.party, at)

    def _receive(
        self, label: SecurityLabel, received_from: str | None, agreement: str | None, catalogue: Catalogue
    ) -> bool:
        """Whether this node holds ``label`` with an equivalent level of its own (a received item) or as
        it is (its own); :class:`LabelError` where it cannot hold it. Reads the label's originator,
        classification, releasable_to, caveats and alternatives only (``received_label``'s key)."""
        if label.alternatives:
            raise LabelError(
                "label.alternatives: the node adds alternative labels on receipt; do not send them"
            )
        if label.originator == self.party:
            if received_from or agreement:
                raise LabelError(f"an item originated by {self.party} was not received from anyone")
            return False
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
        source = catalogue.party(received_from).code
        governing = catalogue.agreement(agreement)
        if self.party not in governing.parties or source not in governing.parties:
            raise LabelError(f"{agreement} does not cover a transfer from {source} to {self.party}")
        if not governing.equivalence.choices(label.originator, label.classification, self.party):
            raise LabelError(
                f"{label.originator} {label.classification} has no {self.party} equivalent under "
                f"{agreement}: it cannot be held here"
            )
        return True

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
            self.marks(row.portions) if row.portions else (),
            None if row.name == row.id else row.name,
        )

    # --- portions ---

    def marks(self, text: str) -> tuple[PortionMark, ...]:
        """The stored portion marks (canonical JSON), parsed once."""
        found = self._marks.get(text)
        if found is None:
            if len(self._marks) >= _CACHE_LIMIT:
                self._marks.clear()
            found = self._marks[text] = tuple(
                PortionMark(m["id"], m["index"], self.stored_label(canonical(m["label"])), m["size"])
                for m in json.loads(text)
            )
        return found

    def shown(self, item: Item, visible: Sequence[PortionMark]) -> Item:
        """``item`` as a reader who may read only the portions ``visible`` sees it: those portions'
        marks, and the highest of their labels (with this node's equivalent) as its label."""
        if tuple(visible) == item.portions:
            return item
        label = self._banner([m.label for m in visible], item.received_from, item.agreement)
        return replace(item, label=label, portions=tuple(visible), payload_size=sum(m.size for m in visible))

    def _banner(
        self, held: Sequence[SecurityLabel], received_from: str | None, agreement: str | None
    ) -> SecurityLabel:
        """The highest of portions' labels as held here: the originator's banner, with the level this
        node applied to the highest portion as its equivalent (Art. 4.2's choice kept)."""
        top = banner([replace(label, alternatives=()) for label in held], self.catalogue)
        highest = next(label for label in held if label.classification == top.classification)
        applied = highest.alternative_for(self.party)
        prefer = None if applied is None else applied.classification
        return self.received_label(top, received_from, agreement, prefer=prefer)

    def signed(self, row: ItemRow) -> tuple[PortionedContent, tuple[SignedPortion, ...]]:
        """The originator's signed item in portions and the portions held, from the sealed document
        (each portion checked against the root again)."""
        return self.signed_sealed(row.id, row.label, row.payload)

    def signed_sealed(
        self, item_id: str, label_json: str, sealed: bytes
    ) -> tuple[PortionedContent, tuple[SignedPortion, ...]]:
        """:meth:`signed` of a sealed document not stored yet (an item arriving in a batch)."""
        document = json.loads(self.cipher.open(item_id, label_json, sealed))
        content = self._content(item_id, document)
        return content, signed_portions(document["portions"], content, self.catalogue)

    def signed_root(self, item_id: str, label_json: str, sealed: bytes) -> PortionedContent:
        """The originator's signed item in portions kept in a sealed document (a row's, or one
        being stored)."""
        return self._content(item_id, json.loads(self.cipher.open(item_id, label_json, sealed)))

    def held_leaves(self, item_id: str, label_json: str, sealed: bytes) -> dict[str, bytes]:
        """The leaves of the portions a sealed document holds (a row's, or one being stored), by
        portion id: what this node holds of the originator's item, whatever root it came under."""
        document = json.loads(self.cipher.open(item_id, label_json, sealed))
        content = self._content(item_id, document)
        return {p.id: p.leaf for p in signed_portions(document["portions"], content, self.catalogue)}

    def _content(self, item_id: str, document: Any) -> PortionedContent:
        if not isinstance(document, dict) or not isinstance(document.get("content"), str):
            raise InvalidInputError(f"item {item_id} is not in portions")
        content = parse_portioned_content(base64.b64decode(document["content"]), self.catalogue)
        if content is None:
            raise InvalidInputError(f"item {item_id} is not in portions")
        return content

    def portions_payload(self, row: ItemRow, visible: Sequence[PortionMark]) -> bytes:
        """What a reader gets of an item in portions: only the portions ``visible`` (those the read
        decision let them read), each with its label as held here and its payload."""
        wanted = {m.id: m for m in visible}
        _, held = self.signed(row)
        out = []
        for portion in held:
            mark = wanted.get(portion.id)
            if mark is None:
                continue
            entry: dict[str, Any] = {"id": portion.id, "label": label_to_dict(mark.label)}
            entry["payload_type"] = portion.payload_type
            if portion.payload_type == "json":
                entry["payload"] = json.loads(portion.payload)
            else:
                entry["payload_base64"] = base64.b64encode(portion.payload).decode()
            out.append(entry)
        return canonical({"portions": out}).encode()

    def sign_portions(
        self, item_id: str, portions: Sequence[NewPortion], now: datetime, label_version: int = 1
    ) -> tuple[str, PortionedContent, tuple[SignedPortion, ...]]:
        """This node's item in portions signed: the leaves, the RFC 9162 root over them signed with
        the item's label (the highest of the portions'), each portion with its inclusion proof."""
        if not 0 < len(portions) <= MAX_PORTIONS:
            raise InvalidInputError(f"an item has 1 to {MAX_PORTIONS} portions, not {len(portions)}")
        ids = [p.id for p in portions]
        if len(set(ids)) != len(ids):
            raise InvalidInputError("portion ids must differ within an item")
        for p in portions:
            if not PORTION_ID.match(p.id):
                raise InvalidInputError(f"portion id {p.id!r} must be 1-64 letters, digits or ._-")
            check_payload_type(p.payload_type)
            if p.label.originator != self.party:
                raise LabelError(f"portion {p.id}: this node ({self.party}) signs only its own items")
        label = banner([p.label for p in portions], self.catalogue)
        leaves = [portion_leaf(item_id, p) for p in portions]
        tree = portion_tree(leaves)
        content = PortionedContent(item_id, label, tree.root, tree.size, label_version)
        origin = sign_origin(
            self.ring, portioned_content(item_id, label, tree.root, tree.size, label_version), now
        )
        signed = tuple(
            SignedPortion(p.id, i, tree.proofs[i], leaves[i], p.label, p.payload_type, p.payload)
            for i, p in enumerate(portions)
        )
        return origin, content, signed

    def seal_portions(
        self,
        content: PortionedContent,
        portions: Sequence[SignedPortion],
        *,
        origin: str,
        now: datetime,
        by: str,
        received_from: str | None = None,
        agreement: str | None = None,
        prefer: Mapping[str, str | None] | None = None,
        ref: str | None = None,
    ) -> NewItem:
        """An item in portions for the store: the portions held (each checked against the
        originator's root by the caller), their marks, and the item's label here, the highest of
        the held portions' labels (with this node's equivalent; ``prefer``: per portion, the level
        an officer applied before, kept); the originator's signed root kept with them. A portion
        this node may not hold (not releasable to it) refuses the item."""
        chosen = prefer or {}
        held = [
            self.received_label(p.label, received_from, agreement, at=now, prefer=chosen.get(p.id))
            for p in portions
        ]
        marks = [
            {"id": p.id, "index": p.index, "label": label_to_dict(h), "size": len(p.payload)}
            for p, h in zip(portions, held, strict=True)
        ]
        label = self._banner(held, received_from, agreement)
        document = canonical(
            {
                "content": base64.b64encode(
                    portioned_content(
                        content.item_id, content.label, content.root, content.size, content.label_version
                    )
                ).decode(),
                "portions": [p.wire() for p in portions],
            }
        ).encode()
        new = self.seal(
            content.item_id,
            label,
            PORTIONS,
            document,
            now=now,
            by=by,
            received_from=received_from,
            agreement=agreement,
            origin=origin,
            label_version=content.label_version,
            ref=ref,
        )
        # its size is what the portions hold, not the document that carries them
        return replace(new, payload_size=sum(len(p.payload) for p in portions), portions=canonical(marks))

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
            portions=self.marks(new.portions) if new.portions else (),
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
        ref: str | None = None,
    ) -> NewItem:
        """A new item for the store: payload (and the originator's signed item) sealed under the
        node key with the label bound in. This node's own item is signed here when no ``origin``
        is given (the originator signs label and payload together, ADatP-4778). ``ref`` is this
        node's reference for a received item, when it is not ``item_id`` (:func:`item_ref`)."""
        label_json, label_dict = self._label_json(label)  # the dict, for the signed content too
        if origin is None and label.originator == self.party:
            label_dict = label_to_dict(label) if label_dict is None else label_dict
            content = item_content(item_id, label, payload_type, payload, label_dict=label_dict)
            origin = sign_origin(self.ring, content, now)
        origin_id = item_id
        item_id = ref or item_id  # the sealed payload is bound to the reference the row has
        if origin is None:
            sealed, sealed_origin = self.cipher.seal(item_id, label_json, payload), None
        else:
            sealed, sealed_origin = self.cipher.seal_with_origin(
                item_id, label_json, payload, origin.encode()
            )
        return NewItem(
            id=item_id,
            origin_id=origin_id,
            originator=label.originator,
            classification=label.classification,
            label=label_json,
            topics=label.topics,
            received_from=received_from,
            agreement=agreement,
            created_us=int(label.created_ts * 1_000_000),  # epoch_us(label.created): its timestamp, kept
            ingested_us=self._epoch_us(now),
            ingested_by=by,
            payload_type=payload_type,
            payload_size=len(payload),
            payload=sealed,
            origin_jws=sealed_origin,
            label_version=label_version,
        )

    def _epoch_us(self, at: datetime) -> int:
        """``epoch_us(at)``, worked out once for the instant a batch's items are all sealed at."""
        last = self._last_instant
        if last[0] is at:
            return last[1]
        found = epoch_us(at)
        self._last_instant = (at, found)
        return found


def check_hold_as(catalogue: Catalogue, party: str, hold_as: HoldAs) -> dict[tuple[str, str, str], str]:
    """The node's defaults, each checked: the agreement offers ``party`` that level for that level."""
    out: dict[tuple[str, str, str], str] = {}
    for (agreement, originator, level), target in hold_as.items():
        table = catalogue.agreement(agreement).equivalence
        offered = table.choices(originator, level, party)
        if target not in offered:
            raise LabelError(
                f"{agreement} does not let {party} hold {originator} {level} as {target!r} "
                f"(it offers: {', '.join(offered) or 'nothing'})"
            )
        out[(agreement, originator, level)] = target
    return out
