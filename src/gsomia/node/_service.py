"""The node service: one party's items, people and decisions, over the store and the core.

The API and the CLI are thin shells over :class:`Node`. Every read of an item is
decided by :func:`gsomia.core.access.decide_read` and recorded, allowed or refused,
in the audit records (the seam the audit log will build on). Every refusal raises
a :class:`~gsomia.errors.GsomiaError` after it is recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gsomia._codec import canonical, label_from_dict, label_to_dict, person_from_dict, person_to_dict
from gsomia._datafiles import load_catalogue
from gsomia.audit._log import AuditLog
from gsomia.core.access import AccessDecision, Person, Role, decide_read
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import epoch_us
from gsomia.core.labels import AlternativeLabel, SecurityLabel
from gsomia.core.policy import Check, ReleaseDecision, ReleaseEngine, ReleaseRequest
from gsomia.crypto.atrest import PayloadCipher
from gsomia.crypto.envelope import sign_origin
from gsomia.crypto.keys import KeyRing
from gsomia.duties._service import Duties
from gsomia.errors import (
    AccessDenied,
    AuthenticationError,
    ConfigError,
    GsomiaError,
    InvalidInputError,
    ItemGoneError,
    LabelError,
    NotFoundError,
    PayloadTooLargeError,
)
from gsomia.exchange._messages import item_content
from gsomia.exchange._service import Exchange
from gsomia.node._config import KEYRING_FILE, NodeConfig, load_config
from gsomia.store import AuditRow, InventoryRow, ItemFilter, ItemRow, NewItem, Store, TokenRow

__all__ = ["Clock", "Item", "NewIngest", "Node", "Page", "ReadPage", "system_clock"]

Clock = Callable[[], datetime]
_ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_PAYLOAD_TYPES = frozenset({"json", "bytes"})
MAX_PAGE = 1000
MAX_TOKEN_DAYS = 365
_LABEL_CACHE = 4096


def system_clock() -> datetime:
    """The only clock read in a node (tests pass a fake one)."""
    return datetime.now(UTC)


def _from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


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
class NewIngest:
    """One item to ingest: a label (boundary dict form), the payload and, if received, its origin."""

    label: Any
    payload: bytes
    payload_type: str = "json"
    item_id: str | None = None
    received_from: str | None = None
    agreement: str | None = None


@dataclass(frozen=True, slots=True)
class ReadPage:
    """One page of items with their payloads (see :meth:`Node.read_page`)."""

    items: tuple[tuple[Item, bytes], ...]
    next_cursor: str | None
    withheld: int


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; ``next_cursor`` is ``None`` at the end."""

    items: tuple[Item, ...]
    next_cursor: str | None
    withheld: int


def _encode_cursor(key: int, by_added: bool = False) -> str:
    return f"{'a' if by_added else 's'}{key}"


def _decode_cursor(cursor: str | None, by_added: bool = False) -> int:
    """The key a cursor continues after: the store's sequence (``s``) or a date-added (``a``, TAXII)."""
    if not cursor:
        return 0
    if not re.fullmatch(("a" if by_added else "s") + r"\d{1,19}", cursor):
        raise InvalidInputError(f"cursor {cursor!r} is not one this node issued")
    return int(cursor[1:])


class Node:
    """One party's node: a catalogue, a release engine, a store, a payload key and a clock."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        catalogue: Catalogue | None = None,
        store: Store | None = None,
        clock: Clock = system_clock,
        migrate: bool = True,
    ) -> None:
        self.config = config
        self.catalogue = catalogue if catalogue is not None else load_catalogue(config.data_dirs)
        if config.party not in self.catalogue.parties:
            raise ConfigError(f"node party {config.party} is not in the catalogue")
        self.party = config.party
        self.store = store if store is not None else Store(config.database_url)
        if migrate:
            self.store.migrate()
        self.cipher = PayloadCipher(config.key())
        self.engine = ReleaseEngine(self.catalogue)
        self.clock = clock
        self._labels: dict[str, SecurityLabel] = {}
        ring_path = config.directory / KEYRING_FILE
        self.ring = (
            KeyRing.load(ring_path)
            if ring_path.exists()
            else KeyRing.create(ring_path, self.party, f"{self.party.lower()}-node", clock())
        )
        self.exchange = Exchange(self, self.ring, skew=config.max_clock_skew)
        self.audit = AuditLog(self)
        self.duties = Duties(self)

    @classmethod
    def open(cls, directory: Path, **kwargs: Any) -> Node:
        """The node configured in ``directory`` (``node.toml``)."""
        return cls(load_config(directory), **kwargs)

    def close(self) -> None:
        self.store.close()

    # --- audit seam ---

    def _row(
        self, kind: str, actor: str | None, subject: str | None, outcome: str, **detail: Any
    ) -> AuditRow:
        return AuditRow(epoch_us(self.clock()), kind, actor, subject, outcome, canonical(detail))

    def _refuse(self, kind: str, actor: str | None, subject: str | None, error: GsomiaError) -> GsomiaError:
        """Record a refusal (once) and hand the error back to raise."""
        if getattr(error, "audited", False):
            return error
        detail: dict[str, Any] = {"error": type(error).__name__, "reason": str(error)}
        if isinstance(error, AccessDenied):
            detail["checks"] = _checks(error.decision.checks)
        self.store.append_audit([self._row(kind, actor, subject, "refused", **detail)])
        error.audited = True  # type: ignore[attr-defined]  # the API's handlers must not record it twice
        return error

    def record_refusal(self, kind: str, subject: str | None, status: int, reason: str) -> None:
        """A refusal decided at the edge (a malformed request, an unknown route): audited all the same."""
        self.store.append_audit([self._row(kind, None, subject, "refused", status=status, reason=reason)])

    # --- access ---

    def decide_read(self, actor: Person, label: SecurityLabel) -> AccessDecision:
        """``decide_read`` with the reader's visit authorisations (Art. 8) at this instant."""
        return decide_read(
            actor, label, self.catalogue, visit=self.duties.visit_scope(actor.id, self.clock())
        )

    # --- people and tokens ---

    def require_any(self, actor: Person | None, roles: Sequence[Role], what: str) -> None:
        """Refuse (and record) unless ``actor`` is the local operator or holds one of ``roles``."""
        if actor is None or (actor.active and actor.roles.intersection(roles)):
            return
        names = " or ".join(r.value for r in roles)
        decision = AccessDecision(False, actor.id, (Check("role", False, f"{what} needs the {names} role"),))
        raise self._refuse(f"authz.{what}", actor.id, None, AccessDenied(decision))

    def add_person(self, actor: Person | None, data: dict[str, Any]) -> Person:
        self.require_any(actor, (Role.ADMINISTRATOR,), "person.add")
        try:
            person = person_from_dict(data, self.catalogue)
            if not _ITEM_ID.match(person.id):
                raise InvalidInputError(f"person id {person.id!r} must be 1-128 letters, digits or ._:-")
            record = canonical(person_to_dict(person))
            row = self._row(
                "person.add", actor.id if actor else "operator", person.id, "allowed", person=record
            )
            self.store.add_person(person.id, record, epoch_us(self.clock()), [row])
        except GsomiaError as exc:
            raise self._refuse(
                "person.add", actor.id if actor else "operator", str(data.get("id")), exc
            ) from None
        return person

    def person(self, person_id: str) -> Person:
        record = self.store.get_person(person_id)
        if record is None:
            raise NotFoundError(f"no person {person_id!r} at this node")
        return person_from_dict(json.loads(record), self.catalogue)

    def people(self) -> list[Person]:
        return [person_from_dict(json.loads(r), self.catalogue) for r in self.store.list_people()]

    def set_active(self, actor: Person | None, person_id: str, active: bool) -> Person:
        self.require_any(actor, (Role.ADMINISTRATOR,), "person.update")
        person = replace(self.person(person_id), active=active)
        record = canonical(person_to_dict(person))
        row = self._row(
            "person.update", actor.id if actor else "operator", person_id, "allowed", active=active
        )
        self.store.update_person(person_id, record, epoch_us(self.clock()), [row])
        return person

    def issue_token(self, actor: Person | None, person_id: str, days: int = 30) -> tuple[str, str, datetime]:
        """A new API token for ``person_id``: (token id, the token — shown once, expiry)."""
        if actor is None or actor.id != person_id:
            self.require_any(actor, (Role.ADMINISTRATOR,), "token.issue")
        if not 0 < days <= MAX_TOKEN_DAYS:
            raise InvalidInputError(f"a token lives 1 to {MAX_TOKEN_DAYS} days, not {days}")
        self.person(person_id)
        token_id = secrets.token_hex(8)
        token = f"gsm_{token_id}_{secrets.token_urlsafe(32)}"
        now = self.clock()
        expires = now + timedelta(days=days)
        row = TokenRow(token_id, person_id, epoch_us(now), epoch_us(expires), None)
        audit = self._row(
            "token.issue",
            actor.id if actor else "operator",
            person_id,
            "allowed",
            token=token_id,
            expires=expires.isoformat(),
        )
        self.store.add_token(row, hashlib.sha256(token.encode()).hexdigest(), [audit])
        return token_id, token, expires

    def revoke_token(self, actor: Person | None, token_id: str) -> None:
        row = self._token_by_id(token_id)
        if actor is None or actor.id != row:
            self.require_any(actor, (Role.ADMINISTRATOR,), "token.revoke")
        audit = self._row("token.revoke", actor.id if actor else "operator", token_id, "allowed")
        if not self.store.revoke_token(token_id, epoch_us(self.clock()), [audit]):
            raise NotFoundError(f"token {token_id} is already revoked")

    def _token_by_id(self, token_id: str) -> str:
        row = self.store.token(token_id)
        if row is None:
            raise NotFoundError(f"no token {token_id!r}")
        return row.person_id

    def authenticate(self, token: str | None) -> Person:
        """The person a bearer token belongs to; refuses unknown, expired, revoked or disabled."""
        try:
            if not token:
                raise AuthenticationError("no bearer token: send 'Authorization: Bearer <token>'")
            row = self.store.find_token(hashlib.sha256(token.encode()).hexdigest())
            if row is None:
                raise AuthenticationError("unknown token")
            now = epoch_us(self.clock())
            if row.revoked_us is not None:
                raise AuthenticationError(
                    f"token {row.id} was revoked at {_from_us(row.revoked_us).isoformat()}"
                )
            if now >= row.expires_us:
                raise AuthenticationError(f"token {row.id} expired at {_from_us(row.expires_us).isoformat()}")
            person = self.person(row.person_id)
            if not person.active:
                raise AuthenticationError(f"the account {person.id} is disabled")
            return person
        except AuthenticationError as exc:
            raise self._refuse("auth", None, None, exc) from None

    # --- items ---

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
    ) -> Item:
        """Store a labelled item; the payload is sealed under the node key with the label bound in."""
        return self.ingest_many(
            actor, [NewIngest(label, payload, payload_type, item_id, received_from, agreement)]
        )[0]

    def ingest_many(self, actor: Person | None, batch: Sequence[NewIngest]) -> list[Item]:
        """Store several items in one transaction: all of them, or (on any refusal) none."""
        who = actor.id if actor else "operator"
        subject: str | None = None
        prepared: list[tuple[NewItem, SecurityLabel]] = []
        inventory: list[tuple[str, int, str, str | None, str | None, str]] = []
        audit: list[AuditRow] = []
        try:
            now = self.clock()
            now_us = epoch_us(now)
            for entry in batch:
                subject = entry.item_id
                new, parsed = self._prepare(actor, who, entry, now_us)
                subject = new.id
                prepared.append((new, parsed))
                kind = "received" if entry.received_from else "ingested"
                inventory.append(
                    (
                        new.id,
                        now_us,
                        kind,
                        entry.received_from or self.party,
                        who,
                        canonical({"agreement": entry.agreement}),
                    )
                )
                audit.append(
                    AuditRow(
                        now_us,
                        "item.ingest",
                        who,
                        new.id,
                        "allowed",
                        canonical({"label": json.loads(new.label)}),
                    )
                )
            self.store.insert_items([new for new, _ in prepared], inventory, audit)
        except GsomiaError as exc:
            raise self._refuse("item.ingest", who, subject, exc) from None
        return [
            self._item(
                new.id,
                parsed,
                new.received_from,
                new.agreement,
                new.ingested_us,
                who,
                new.payload_type,
                new.payload_size,
            )
            for new, parsed in prepared
        ]

    def _prepare(
        self, actor: Person | None, who: str, entry: NewIngest, now_us: int
    ) -> tuple[NewItem, SecurityLabel]:
        item_id = entry.item_id or str(uuid.uuid4())
        if not _ITEM_ID.match(item_id):
            raise InvalidInputError(f"item id {item_id!r} must be 1-128 letters, digits or ._:-")
        if entry.payload_type not in _PAYLOAD_TYPES:
            raise InvalidInputError(f"payload_type must be one of {', '.join(sorted(_PAYLOAD_TYPES))}")
        size = len(entry.payload)
        if size > self.config.max_payload_bytes:
            raise PayloadTooLargeError(
                f"payload of {size} bytes exceeds this node's limit of {self.config.max_payload_bytes}"
            )
        parsed = self._received_label(
            label_from_dict(entry.label, self.catalogue), entry.received_from, entry.agreement
        )
        if actor is not None:
            self.decide_read(actor, parsed).raise_if_refused()
        label_json = canonical(label_to_dict(parsed))
        origin = None
        if parsed.originator == self.party:  # the originator signs label and payload together (ADatP-4778)
            jws = sign_origin(
                self.ring, item_content(item_id, parsed, entry.payload_type, entry.payload), self.clock()
            )
            origin = self.cipher.seal(item_id, label_json, jws.encode())
        new = NewItem(
            id=item_id,
            originator=parsed.originator,
            classification=parsed.classification,
            label=label_json,
            topics=parsed.topics,
            received_from=entry.received_from,
            agreement=entry.agreement,
            created_us=epoch_us(parsed.created),
            ingested_us=now_us,
            ingested_by=who,
            payload_type=entry.payload_type,
            payload_size=size,
            payload=self.cipher.seal(item_id, label_json, entry.payload),
            origin_jws=origin,
        )
        return new, parsed

    def _received_label(
        self, label: SecurityLabel, received_from: str | None, agreement: str | None
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
        level = governing.equivalence.map(label.originator, label.classification, self.party)
        if level is None:
            raise LabelError(
                f"{label.originator} {label.classification} has no {self.party} equivalent under "
                f"{agreement}: it cannot be held here"
            )
        return label.with_alternative(AlternativeLabel(self.party, level, agreement))

    def _item(
        self,
        item_id: str,
        label: SecurityLabel,
        received_from: str | None,
        agreement: str | None,
        ingested_us: int,
        by: str,
        payload_type: str,
        size: int,
    ) -> Item:
        return Item(item_id, label, received_from, agreement, _from_us(ingested_us), by, payload_type, size)

    def _stored_label(self, text: str) -> SecurityLabel:
        """A stored label, parsed once: labels repeat across items and are immutable values.

        The cache is keyed by the exact stored text, so an altered row is parsed (and checked) anew.
        """
        found = self._labels.get(text)
        if found is None:
            if len(self._labels) >= _LABEL_CACHE:
                self._labels.clear()
            found = self._labels[text] = label_from_dict(json.loads(text), self.catalogue)
        return found

    def _from_row(self, row: ItemRow) -> Item:
        label = self._stored_label(row.label)
        return Item(
            row.id,
            label,
            row.received_from,
            row.agreement,
            _from_us(row.ingested_us),
            row.ingested_by,
            row.payload_type,
            row.payload_size,
            row.label_version,
            row.added_us,
        )

    def read(self, actor: Person, item_id: str) -> tuple[Item, bytes]:
        """The item and its payload, if ``actor`` may read it (the read is recorded either way)."""
        try:
            row = self.store.get_item(item_id)
            if row is None:
                raise NotFoundError(f"no item {item_id!r} at this node")
            item = self._from_row(row)
            decision = self.decide_read(actor, item.label).raise_if_refused()
            if row.state != "held":
                raise ItemGoneError(
                    f"item {item_id} was {row.state}: its record remains, its payload is gone"
                )
            payload = self.cipher.open(row.id, row.label, row.payload)
        except GsomiaError as exc:
            raise self._refuse("item.read", actor.id, item_id, exc) from None
        self.store.append_audit(
            [self._row("item.read", actor.id, item_id, "allowed", checks=_checks(decision.checks))]
        )
        return item, payload

    def list_items(
        self, actor: Person, where: ItemFilter, cursor: str | None = None, limit: int = 100
    ) -> Page:
        """A page of the items ``actor`` may read, in ingest order; unreadable ones are withheld."""
        found, next_cursor, withheld = self._scan(actor, where, cursor, limit, "item.list")
        self.store.append_audit(
            [
                self._row(
                    "item.list",
                    actor.id,
                    None,
                    "allowed",
                    returned=len(found),
                    withheld=withheld,
                    filter=_filter_dict(where),
                )
            ]
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
        record naming ``channel``; the items ``keep`` accepted but the reader may not read are
        counted as withheld, in one ``item.list`` record. ``fits``, asked of each item about to be
        served, ends the page before that item when it says no (the shell's page is full).
        """
        found, next_cursor, withheld = self._scan(actor, where, cursor, limit, f"{channel}.list", keep, fits)
        rows = [
            self._row("item.read", actor.id, item.id, "allowed", channel=channel, checks=_checks(d.checks))
            for item, _, d in found
        ]
        rows.append(
            self._row(
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
        self.store.append_audit(rows)
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
        """Keyset scan from ``cursor``: up to ``limit`` readable items (payloads only with ``keep``)."""
        if not 0 < limit <= MAX_PAGE:
            raise self._refuse(kind, actor.id, None, InvalidInputError(f"limit must be 1 to {MAX_PAGE}"))
        try:
            after = _decode_cursor(cursor, where.by_added)
        except InvalidInputError as exc:
            raise self._refuse(kind, actor.id, None, exc) from None
        found: list[tuple[Item, bytes, AccessDecision]] = []
        withheld = 0
        visit = self.duties.visit_scope(actor.id, self.clock())
        scanned_to = after
        exhausted = full = False
        budget = limit * 10  # bound the scan so a reader who may see little still gets an answer
        while len(found) < limit and budget > 0 and not full:
            size = min(limit, budget)
            rows = self.store.list_items(where, scanned_to, size, with_payload=keep is not None)
            budget -= len(rows)
            consumed = 0
            for row in rows:
                before = scanned_to
                scanned_to = (row.added_us or 0) if where.by_added else row.seq
                consumed += 1
                if row.state != "held":  # destroyed or recalled: the record stays, there is nothing to read
                    continue
                item = self._from_row(row)
                payload = b""
                if keep is not None:
                    payload = self.cipher.open(row.id, row.label, row.payload)
                    if not keep(item, payload):
                        continue
                decision = decide_read(actor, item.label, self.catalogue, visit=visit)
                if decision.allowed:
                    if fits is not None and not fits(item):  # the page is full: this item starts the next
                        scanned_to, full = before, True
                        break
                    found.append((item, payload, decision))
                    if len(found) == limit:
                        break
                else:
                    withheld += 1
            if not full and len(rows) < size and consumed == len(rows):  # nothing past the last row seen
                exhausted = True
                break
        more = full or (not exhausted and (len(found) == limit or budget <= 0))
        return found, _encode_cursor(scanned_to, where.by_added) if more else None, withheld

    def held(self, item_id: str) -> Item | None:
        """The item's metadata, without a read decision: for shells that must first find out which
        collection an item belongs to; they must still read it through :meth:`read`."""
        row = self.store.get_item(item_id)
        return None if row is None else self._from_row(row)

    def inventory(self, actor: Person, item_id: str) -> list[InventoryRow]:
        """Where the item came from, its copies and derivatives, where it went, its destruction.

        As classified as the item; kept after a destruction or recall (the record remains).
        """
        try:
            row = self.store.get_item(item_id)
            if row is None:
                raise NotFoundError(f"no item {item_id!r} at this node")
            decision = self.decide_read(actor, self._from_row(row).label).raise_if_refused()
        except GsomiaError as exc:
            raise self._refuse("item.inventory", actor.id, item_id, exc) from None
        self.store.append_audit(
            [self._row("item.inventory", actor.id, item_id, "allowed", checks=_checks(decision.checks))]
        )
        return self.store.inventory(item_id)

    # --- agreements and decisions ---

    def decide(self, request: ReleaseRequest, *, at: datetime) -> ReleaseDecision:
        return self.engine.decide(request, at=at)


def _checks(checks: Sequence[Check]) -> list[dict[str, Any]]:
    return [{"rule": c.rule, "passed": c.passed, "reason": c.reason} for c in checks]


def _filter_dict(where: ItemFilter) -> dict[str, Any]:
    return {k: getattr(where, k) for k in where.__slots__ if getattr(where, k) is not None}
