"""The node's items: ingest (this node's own, in portions too, and what arrives by a signed file),
reads, listings and pages, what a reader sees of an item, and an item's inventory.

Every read is decided by the kernel's read decision (:meth:`NodeContext.decide_read`, with the
visit window) and recorded, allowed or refused, in the audit records; every refusal raises a
:class:`~gsomia.errors.GsomiaError` after it is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from types import FunctionType
from typing import Any

from gsomia._codec import canonical, label_from_dict
from gsomia.core.access import AccessDecision, Person
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import epoch_us
from gsomia.core.labels import SecurityLabel
from gsomia.errors import ConflictError, GsomiaError, InvalidInputError, LabelError, PayloadTooLargeError
from gsomia.kernel import (
    Item,
    NewPortion,
    NodeContext,
    check_item_id,
    check_payload_type,
    checks_json,
    new_item_id,
)
from gsomia.store import AuditRow, InventoryEntry, InventoryRow, ItemFilter, ItemPart, NewItem

__all__ = ["MAX_PAGE", "ItemService", "NewIngest", "Page", "PortionIngest", "ReadPage"]

MAX_PAGE = 1000
MAX_SEQ = 2**63 - 1  # the store's sequence numbers are signed 64-bit integers
_FITTED_STEP = 100
# ingest_many's part: the store writes one while the next is prepared (fewer, larger parts: fewer
# statements; more, smaller ones: less of the batch prepared or written with nothing beside it)
_PART = 200


@dataclass(frozen=True, slots=True)
class PortionIngest:
    """One portion of an item to ingest: its id, label (boundary dict form) and payload."""

    id: str
    label: Any
    payload: bytes
    payload_type: str = "json"


@dataclass(frozen=True, slots=True)
class NewIngest:
    """One item to ingest: a label (boundary dict form), the payload and, if received, its origin.
    An item in portions gives ``portions`` instead of a label and payload (issue 20 §2)."""

    label: Any
    payload: bytes
    payload_type: str = "json"
    item_id: str | None = None
    received_from: str | None = None
    agreement: str | None = None
    portions: tuple[PortionIngest, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadPage:
    """One page of items with their payloads (see :meth:`ItemService.read_page`)."""

    items: tuple[tuple[Item, bytes], ...]
    next_cursor: str | None
    withheld: int


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; ``next_cursor`` is ``None`` at the end."""

    items: tuple[Item, ...]
    next_cursor: str | None
    withheld: int


def _given_twice(batch: Sequence[NewIngest]) -> tuple[int, int] | None:
    """The places of the first item of a batch whose id an item before it gives too, and of that one."""
    first: dict[str, int] = {}
    for n, entry in enumerate(batch):
        if entry.item_id is not None and first.setdefault(entry.item_id, n) != n:
            return n, first[entry.item_id]
    return None


def _named(exc: GsomiaError, n: int, batch: Sequence[NewIngest]) -> GsomiaError:
    """``exc``, the refusal of item ``n`` of a batch of several, saying which item it refuses (the same
    class of error; one that carries more than its message, an access refusal, stays as it is)."""
    if len(batch) == 1 or isinstance(type(exc).__init__, FunctionType):
        return exc
    item_id = batch[n].item_id
    which = f"item {n + 1} of {len(batch)}" + (f" ({item_id!r})" if item_id is not None else "")
    named = type(exc)(f"{which}: {exc}; nothing of the batch was stored")
    named.__dict__.update(exc.__dict__)
    return named


def _encode_cursor(key: int, by_added: bool, seal: Callable[[int], str]) -> str:
    """A TAXII cursor names the date-added of the last object served (``a``: the page's own
    ``X-TAXII-Date-Added-Last``); any other the store's sequence, which counts the items the reader
    may not read too, sealed for the reader (``s``, :meth:`PayloadCipher.seal_cursor`)."""
    return f"a{key}" if by_added else f"s{seal(key)}"


def _decode_cursor(cursor: str | None, by_added: bool, unseal: Callable[[str], int | None]) -> int:
    """The key a cursor continues after: the store's sequence (``s``, sealed) or a date-added (``a``)."""
    if not cursor:
        return 0
    if by_added:
        found = int(cursor[1:]) if re.fullmatch(r"a\d{1,19}", cursor) else None
    else:
        found = unseal(cursor[1:]) if cursor.startswith("s") and cursor.isascii() else None
    if found is None or found > MAX_SEQ:
        raise InvalidInputError(f"cursor {cursor!r} is not one this node issued to this reader")
    return found


class ItemService:
    """A node's items over the kernel: its store, clock, item view and the one read decision."""

    def __init__(self, kernel: NodeContext) -> None:
        self.kernel = kernel

    def ingest(
        self,
        actor: Person | None,
        *,
        label: Any,
        payload: bytes,
        payload_type: str = "json",
        item_id: str | None = None,
        received_from: str | None = None,
        agreement: str | None = None,
        portions: Sequence[PortionIngest] = (),
    ) -> Item:
        """Store a labelled item; the payload is sealed under the node key with the label bound in.
        An item in portions (``portions``; no label or payload) is this node's own: each portion
        labelled on its own, the root over them signed with the item's label (the highest)."""
        return self.ingest_many(
            actor,
            [NewIngest(label, payload, payload_type, item_id, received_from, agreement, tuple(portions))],
        )[0]

    def ingest_many(self, actor: Person | None, batch: Sequence[NewIngest]) -> list[Item]:
        """Store several items in one transaction: all of them, or (on any refusal) none. A refusal
        of one item of several names it: its place in the batch and its id (if given).

        The batch is prepared (checked, signed, sealed) and written in parts of ``_PART`` items, in the
        one transaction: the store writes a part while the next is prepared (issue 18). The first
        refusal found ends the batch: an item refused, or an id held here already in a part written
        before it; nothing of the batch is stored either way."""
        who = actor.id if actor else "operator"
        subject: str | None = None
        prepared: list[tuple[NewItem, SecurityLabel]] = []
        agreements: dict[str | None, str] = {}  # the inventory's detail, written once per agreement

        def parts(now: datetime) -> Iterator[ItemPart]:
            nonlocal subject
            now_us = epoch_us(now)
            # the batch's one reading of the catalogue (the equivalence changes on file): each item
            # checked against it, not against whatever the store says at that item (issue 18)
            catalogue = self.kernel.catalogue
            for start in range(0, len(batch), _PART):
                news: list[NewItem] = []
                inventory: list[InventoryEntry] = []
                audit: list[AuditRow] = []
                for n in range(start, min(start + _PART, len(batch))):
                    entry = batch[n]
                    subject = entry.item_id
                    try:
                        new, parsed = self._prepare(actor, who, entry, now, catalogue)
                    except GsomiaError as exc:
                        raise _named(exc, n, batch) from None
                    subject = new.id
                    prepared.append((new, parsed))
                    news.append(new)
                    kind = "received" if entry.received_from else "ingested"
                    inventory.append(
                        InventoryEntry(
                            new.id,
                            now_us,
                            kind,
                            entry.received_from or self.kernel.party,
                            who,
                            agreements.get(entry.agreement)
                            or agreements.setdefault(
                                entry.agreement, canonical({"agreement": entry.agreement})
                            ),
                        )
                    )
                    # canonical({"label": <the stored label>}): the stored label is canonical JSON already
                    audit.append(
                        AuditRow(now_us, "item.ingest", who, new.id, "allowed", f'{{"label":{new.label}}}')
                    )
                yield news, inventory, audit

        try:
            twice = _given_twice(batch)
            if twice is not None:
                n, k = twice
                subject = batch[n].item_id
                raise ConflictError(
                    f"item {n + 1} of {len(batch)} ({subject!r}): item {k + 1} has this id too (one id "
                    "names one item); nothing of the batch was stored"
                )
            try:
                self.kernel.store.insert_item_parts(parts(self.kernel.clock()))
            except ConflictError:
                # which item is held already: asked only once refused (a batch ingested asks nothing)
                ids = [new.id for new, _ in prepared]
                held = self.kernel.store.existing_items(ids) if len(batch) > 1 else set()
                place = next((k for k, i in enumerate(ids) if i in held), None)
                if place is None:
                    raise
                subject = ids[place]
                raise ConflictError(
                    f"item {place + 1} of {len(batch)} ({subject!r}): an item with this id is held here "
                    "already; nothing of the batch was stored"
                ) from None
        except GsomiaError as exc:
            raise self.kernel.refuse("item.ingest", who, subject, exc) from None
        return [self.kernel.items.item_of(new, parsed) for new, parsed in prepared]

    def _prepare(
        self,
        actor: Person | None,
        who: str,
        entry: NewIngest,
        now: datetime,
        catalogue: Catalogue | None = None,
    ) -> tuple[NewItem, SecurityLabel]:
        """One item of a batch checked, signed (this node's own) and sealed for the store, received at
        ``now`` (the batch's instant), its label checked against ``catalogue`` (``None``: the
        kernel's, read now)."""
        catalogue = self.kernel.catalogue if catalogue is None else catalogue
        # an id given is checked; one this node makes (a UUIDv7) is of the form always
        item_id = check_item_id(entry.item_id) if entry.item_id else new_item_id(now)
        if entry.portions:
            return self._prepare_portions(actor, who, item_id, entry, now, catalogue)
        check_payload_type(entry.payload_type)
        size = len(entry.payload)
        if size > self.kernel.max_payload_bytes:
            raise PayloadTooLargeError(
                f"payload of {size} bytes exceeds this node's limit of {self.kernel.max_payload_bytes}"
            )
        # a batch's labels checked once (issue 18)
        label = self.kernel.items.parse_label(entry.label, catalogue)
        if actor is not None and label.originator != self.kernel.party:
            # a partner's item is the partner's only under its signature over label and payload, and
            # that arrives through the exchange (or a signed transfer file), never typed in here
            raise LabelError(
                f"an item originated by {label.originator} is stored as {label.originator}'s only "
                f"with {label.originator}'s signature: it arrives from {label.originator} through "
                f"the exchange, not by ingest at this node ({self.kernel.party})"
            )
        parsed = self.kernel.items.received_label(
            label, entry.received_from, entry.agreement, at=now, catalogue=catalogue
        )
        if actor is not None:
            self.kernel.decide_read(actor, parsed).raise_if_refused()
        new = self.kernel.items.seal(
            item_id,
            parsed,
            entry.payload_type,
            entry.payload,
            now=now,
            by=who,
            received_from=entry.received_from,
            agreement=entry.agreement,
        )
        return new, parsed

    def _prepare_portions(
        self,
        actor: Person | None,
        who: str,
        item_id: str,
        entry: NewIngest,
        now: datetime,
        catalogue: Catalogue,
    ) -> tuple[NewItem, SecurityLabel]:
        """This node's item in portions: each portion's label checked (and readable by the one who
        ingests it), the root over the portions signed with the item's label."""
        if entry.label is not None or entry.payload or entry.received_from or entry.agreement:
            raise InvalidInputError(
                "an item in portions gives portions only: each its own label and payload; the item's "
                "label is the highest of theirs, and only this node's own items come in portions"
            )
        size = sum(len(p.payload) for p in entry.portions)
        if size > self.kernel.max_payload_bytes:
            raise PayloadTooLargeError(
                f"portions of {size} bytes exceed this node's limit of {self.kernel.max_payload_bytes}"
            )
        portions = []
        for portion in entry.portions:
            label = label_from_dict(portion.label, catalogue)
            if label.originator != self.kernel.party:
                raise LabelError(
                    f"portion {portion.id}: only this node's ({self.kernel.party}) own items are created "
                    "in portions"
                )
            if actor is not None:
                self.kernel.decide_read(actor, label).raise_if_refused()
            portions.append(NewPortion(portion.id, label, portion.payload_type, portion.payload))
        origin, content, signed = self.kernel.items.sign_portions(item_id, portions, now)
        new = self.kernel.items.seal_portions(content, signed, origin=origin, now=now, by=who)
        return new, self.kernel.items.stored_label(new.label)

    def read(self, actor: Person, item_id: str) -> tuple[Item, bytes]:
        """The item and its payload, if ``actor`` may read it (the read is recorded either way)."""
        return self.kernel.read_item(actor, item_id)

    def read_named(self, actor: Person, ref: str, originator: str | None = None) -> tuple[Item, bytes]:
        """:meth:`read` of the item ``ref`` names (:meth:`resolve_item`): the row the resolution found
        is the row read, one query where resolving and then reading took two."""
        code = self.kernel.catalogue.party(originator).code if originator is not None else None
        item_id, row = self.kernel.resolve_row(actor, ref, code)
        return self.kernel.read_item(actor, item_id, row)

    def list_items(
        self, actor: Person, where: ItemFilter, cursor: str | None = None, limit: int = 100
    ) -> Page:
        """A page of the items ``actor`` may read, in ingest order; unreadable ones are withheld."""
        found, next_cursor, withheld = self._scan(actor, where, cursor, limit, "item.list")
        # in one transaction with the records of the requests answered at the same time
        self.kernel.record(
            "item.list",
            actor.id,
            None,
            "allowed",
            returned=len(found),
            withheld=withheld,
            filter=_filter_dict(where),
        )
        return Page(tuple(item for item, _, _ in found), next_cursor, withheld)

    def read_page(
        self,
        actor: Person,
        where: ItemFilter,
        *,
        cursor: str | None,
        limit: int,
        keep: Callable[[Item, bytes], bool],
        channel: str,
        fits: Callable[[Item], bool] | None = None,
    ) -> ReadPage:
        """A page of items with their payloads: those ``keep`` accepts and ``actor`` may read.

        For shells that serve payloads in bulk (TAXII): every item served is an ``item.read``
        record naming ``channel``; the items the reader may not read are counted as withheld, in one
        ``item.list`` record. ``keep`` is asked only of items the reader may read (the decision
        comes first: nothing of an unreadable item is opened or handed to the shell). ``fits``,
        asked of each item about to be served, ends the page before that item when it says no (the
        shell's page is full).
        """
        found, next_cursor, withheld = self._scan(actor, where, cursor, limit, f"{channel}.list", keep, fits)
        # the page's reads at one instant; a page's items share few decisions (OneInstant), and each
        # decision's record detail is written once
        at_us = epoch_us(self.kernel.clock())
        details: dict[int, str] = {}
        rows = []
        for item, _, decision in found:
            detail = details.get(id(decision))  # the decisions live in ``found`` while this runs
            if detail is None:
                detail = details[id(decision)] = canonical(
                    {"channel": channel, "checks": checks_json(decision.checks)}
                )
            rows.append(AuditRow(at_us, "item.read", actor.id, item.id, "allowed", detail))
        rows.append(
            self.kernel.audit_row(
                "item.list",
                actor.id,
                None,
                "allowed",
                channel=channel,
                returned=len(found),
                withheld=withheld,
                filter=_filter_dict(where),
            )
        )
        self.kernel.append_records(rows)  # grouped with concurrent requests' records, as a read's
        return ReadPage(tuple((item, payload) for item, payload, _ in found), next_cursor, withheld)

    def _scan(
        self,
        actor: Person,
        where: ItemFilter,
        cursor: str | None,
        limit: int,
        kind: str,
        keep: Callable[[Item, bytes], bool] | None = None,
        fits: Callable[[Item], bool] | None = None,
    ) -> tuple[list[tuple[Item, bytes, AccessDecision]], str | None, int]:
        """Keyset scan from ``cursor``: up to ``limit`` readable items (payloads only with ``keep``).

        Nothing in the page speaks of items the reader may not read (issue 14 §6): the scan goes
        on until it has found one readable item past the page (or the end), so ``next_cursor`` is
        there exactly when more readable items follow, and it names the last item served. The
        count of unreadable items passed over is returned for the audit record only.
        """
        if not 0 < limit <= MAX_PAGE:
            raise self.kernel.refuse(
                kind, actor.id, None, InvalidInputError(f"limit must be 1 to {MAX_PAGE}")
            )
        try:
            after = _decode_cursor(cursor, where.by_added, partial(self.kernel.cipher.open_cursor, actor.id))
        except InvalidInputError as exc:
            raise self.kernel.refuse(kind, actor.id, None, exc) from None
        found: list[tuple[Item, bytes, AccessDecision]] = []
        last = after  # the scan key of the last item served
        withheld = 0
        gate = self.kernel.reader(actor).at_one_instant()  # the page: one instant, each label decided once
        scanned_to = after
        more = False
        # a page that may fill before ``limit`` items (``fits``) reads the store in small steps
        size = limit + 1 if fits is None else min(limit + 1, _FITTED_STEP)
        while not more:
            rows = self.kernel.store.list_items(where, scanned_to, size, with_payload=keep is not None)
            for row in rows:
                key = (row.added_us or 0) if where.by_added else row.seq
                scanned_to = key
                if row.state != "held":  # destroyed or recalled: the record stays, there is nothing to read
                    continue
                item = self.kernel.items.item(row)
                # the one read decision, asked first: of an item the reader may not read nothing is
                # opened, parsed or built (``keep`` ran before it on whole items, so an unreadable
                # item's payload could fail the reader's page, or take time, for them to notice)
                seen = gate.view(item)
                if seen.item is None:
                    withheld += 1
                    continue
                if seen.item.portions != item.portions and not _matches(where, seen.item):
                    # the store matched the whole item; what this reader sees of it must match too, or
                    # a filter on a level or topic of an unseen portion would tell them it is there
                    continue
                item, decision = seen.item, seen.decision
                payload = b""
                if keep is not None:
                    if item.portions:  # only the portions this reader may read
                        payload = self.kernel.items.portions_payload(row, item.portions)
                    else:
                        payload = self.kernel.cipher.open(row.id, row.label, row.payload)
                    if not keep(item, payload):
                        continue
                # a readable item past the page, or one that does not fit: it starts the next page
                if len(found) == limit or (fits is not None and not fits(item)):
                    more = True
                    break
                found.append((item, payload, decision))
                last = key
            if len(rows) < size:  # nothing past the last row read
                break
        seal = partial(self.kernel.cipher.seal_cursor, actor.id)
        return found, _encode_cursor(last, where.by_added, seal) if more else None, withheld

    def view(self, actor: Person, item: Item) -> Item | None:
        """What ``actor`` may see of ``item`` (the kernel's read decision; of an item in portions, the
        portions they may read under the highest of their labels); ``None``: nothing. Not recorded:
        for shells that recorded the read already (a page that read the item's inventory)."""
        return self.kernel.view(actor, item).item

    def resolve_item(self, actor: Person | None, ref: str, originator: str | None = None) -> str:
        """This node's reference for the item a person names by ``ref`` (and, where two originators'
        items share the id here, ``originator``, or ``ref`` written ``ORIGINATOR:id``): issue 22 §4.
        Ambiguous among the items ``actor`` may read: :class:`ConflictError` asking whose."""
        code = self.kernel.catalogue.party(originator).code if originator is not None else None
        return self.kernel.resolve(actor, ref, code)

    def held(self, item_id: str) -> Item | None:
        """The item's metadata, without a read decision: for shells that must first find out which
        collection an item belongs to; they must still read it through :meth:`read`."""
        row = self.kernel.store.get_item(item_id)
        return None if row is None else self.kernel.items.item(row)

    def inventory(self, actor: Person, item_id: str) -> list[InventoryRow]:
        """Where the item came from, its copies and derivatives, where it went, its destruction.

        As classified as the item; kept after a destruction or recall (the record remains).
        """
        _, _, decision = self.kernel.readable(actor, item_id, "item.inventory")
        self.kernel.record(
            "item.inventory", actor.id, item_id, "allowed", checks=checks_json(decision.checks)
        )
        return self.kernel.store.inventory(item_id)


def _matches(where: ItemFilter, item: Item) -> bool:
    """Whether the part of an item in portions a reader sees matches the label filters on its own."""
    label = item.label
    created = epoch_us(label.created)
    return (
        (where.classification is None or label.classification == where.classification)
        and (where.topic is None or where.topic in label.topics)
        and (where.created_from_us is None or created >= where.created_from_us)
        and (where.created_before_us is None or created < where.created_before_us)
    )


def _filter_dict(where: ItemFilter) -> dict[str, Any]:
    return {k: getattr(where, k) for k in where.__slots__ if getattr(where, k) is not None}
