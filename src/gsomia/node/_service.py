"""The node: builds one party's parts (catalogue, store, keys, clock, the kernel every service
shares, the exchange, the audit log, the duties) and wires them; its items and people.

The API and the CLI are thin shells over :class:`Node`. Every read of an item is decided by
the kernel's read decision (:meth:`NodeContext.decide_read`, with the visit window) and
recorded, allowed or refused, in the audit records. Every refusal raises a
:class:`~gsomia.errors.GsomiaError` after it is recorded.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gsomia._codec import canonical, label_from_dict, person_from_dict, person_to_dict
from gsomia._datafiles import load_catalogue
from gsomia.audit import GOSSIP_KIND, HEAD_KIND, AuditLog, TreeHeads
from gsomia.core.access import AccessDecision, Person, Role
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import epoch_us
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import ReleaseDecision, ReleaseEngine, ReleaseRequest
from gsomia.crypto.atrest import PayloadCipher
from gsomia.crypto.keys import KeyRing
from gsomia.duties import DUTY_KIND, Duties
from gsomia.errors import (
    ConfigError,
    GsomiaError,
    InvalidInputError,
    LabelError,
    PayloadTooLargeError,
)
from gsomia.exchange import Exchange, PeerTransport
from gsomia.kernel import (
    ChangeWatch,
    Clock,
    Item,
    NewPortion,
    NodeContext,
    StoreKeyRing,
    check_hold_as,
    check_item_id,
    check_payload_type,
    checks_json,
    system_clock,
)
from gsomia.node._config import KEYRING_FILE, NodeConfig, load_config
from gsomia.node._credentials import Credentials
from gsomia.node._feed import Feed
from gsomia.node._lease import Lease, process_holder
from gsomia.node._runtime import NodeRuntime
from gsomia.store import (
    AuditRow,
    InventoryEntry,
    InventoryRow,
    ItemFilter,
    LeaseStore,
    NewItem,
    SharedState,
    Store,
    TokenRow,
)

__all__ = ["Clock", "Item", "NewIngest", "Node", "Page", "PortionIngest", "ReadPage", "system_clock"]

MAX_PAGE = 1000
PEOPLE_READERS = (Role.ADMINISTRATOR, Role.SECURITY_OFFICER)  # who reads the register (docs/API.md)
METRICS_READERS = (Role.ADMINISTRATOR,)  # who reads the node's metrics
MAX_SEQ = 2**63 - 1  # the store's sequence numbers are signed 64-bit integers
_FITTED_STEP = 100


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
    if not re.fullmatch(("a" if by_added else "s") + r"\d{1,19}", cursor) or int(cursor[1:]) > MAX_SEQ:
        raise InvalidInputError(f"cursor {cursor!r} is not one this node issued")
    return int(cursor[1:])


class Node:
    """One party's node: it builds the parts and wires them; the services hold the kernel, not the node."""

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
        self._link_holder: str | None = None  # this process's name on its stream links' leases
        catalogue = catalogue if catalogue is not None else load_catalogue(config.data_dirs)
        if config.party not in catalogue.parties:
            raise ConfigError(f"node party {config.party} is not in the catalogue")
        self.party = config.party
        try:  # before anything is opened: a hold_as default the agreements do not offer
            check_hold_as(catalogue, config.party, config.hold_as)
        except GsomiaError as exc:
            raise ConfigError(f"{config.directory / 'node.toml'}: node.hold_as: {exc}") from None
        self.store = store if store is not None else Store(config.database_url)
        if migrate:
            self.store.migrate()
            self.store.claim(config.party, config.identity(), epoch_us(clock()))
        self.cipher = PayloadCipher(config.key())
        self.clock = clock
        # the keys and the peers are the store's: every process of the node sees a change within ~250 ms
        watch = ChangeWatch(SharedState(self.store))
        self.ring: KeyRing = StoreKeyRing.open(
            self.store,
            self.cipher,
            watch,
            party=self.party,
            at=clock(),
            legacy=config.directory / KEYRING_FILE,
        )
        self.kernel = NodeContext(
            party=self.party,
            catalogue=catalogue,
            store=self.store,
            ring=self.ring,
            cipher=self.cipher,
            engine=ReleaseEngine(catalogue),
            clock=clock,
            endpoint=config.endpoint,
            max_payload_bytes=config.max_payload_bytes,
            max_clock_skew=config.max_clock_skew,
            watch=watch,
            public_rate=config.public_rate_limit,
            rate_exempt=config.rate_limit_exempt,
            tls=config.tls,
            hold_as=config.hold_as,
        )
        self.credentials = Credentials(self.kernel)
        self.exchange = Exchange(self.kernel, ttl=config.envelope_lifetime, skew=config.max_clock_skew)
        self.audit = AuditLog(self.kernel)
        self.heads = TreeHeads(self.audit, self.exchange)
        self.duties = Duties(self.kernel, self.exchange)
        self.feed = Feed(self.kernel)
        # the inbox hands these kinds to the services that own them
        self.exchange.register(DUTY_KIND, self.duties.receive)
        self.exchange.register(HEAD_KIND, self.heads.receive)
        self.exchange.register(GOSSIP_KIND, self.heads.receive_gossip)
        # a label change that reached this node before its item applies when the item arrives
        self.exchange.on_arrival(self.duties.arriving)

    @property
    def catalogue(self) -> Catalogue:
        """The kernel's catalogue: the data files with the equivalence changes on file."""
        return self.kernel.catalogue

    @property
    def engine(self) -> ReleaseEngine:
        """The kernel's release engine, over :attr:`catalogue`."""
        return self.kernel.engine

    @classmethod
    def open(cls, directory: Path, **kwargs: Any) -> Node:
        """The node configured in ``directory`` (``node.toml``)."""
        return cls(load_config(directory), **kwargs)

    def schema_revision(self) -> str | None:
        """The database schema's migration revision (migrations run when the node opens; None: none yet)."""
        return self.store.revision()

    def close(self) -> None:
        self.store.close()

    # --- what a partner asks this node (PeerService: the routes and the in-memory transport) ---

    def inbox(self, envelopes: Sequence[str], source: str | None = None) -> list[dict[str, Any]]:
        """Envelopes from partner nodes: each opened, decided, stored once and receipted. ``source``:
        the sender's network address (envelopes that do not open are audited in bounded space).

        The envelopes are the caller's credentials: a delivery costs its source nothing of its
        budget (:class:`gsomia.kernel.Admission`), each envelope that does not open one unit, and
        once those have spent it the source's deliveries are refused (429) before any is opened."""
        wait = self.kernel.admission.check(source)
        if wait is not None:
            raise self.kernel.rate_limited(source, "inbox", wait)
        return self.exchange.receive(envelopes, source)

    def consistency_proof(self, first: int, second: int) -> dict[str, Any]:
        """The proof that this node's log of size ``second`` extends the one of size ``first``."""
        if first > second:
            raise InvalidInputError("first must not exceed second")
        return {"first": first, "second": second, "proof": self.audit.consistency(first, second)}

    def inclusion_proof(self, entry: str) -> dict[str, Any]:
        """An entry a partner may see (its own envelope's record) with its inclusion proof."""
        return self.audit.inclusion(entry, public=True)

    def runtime(
        self,
        transport: PeerTransport | None = None,
        *,
        interval: float = 0.2,
        head_every: float = 5.0,
        deliver: bool = True,
    ) -> NodeRuntime:
        """The background loops over ``transport`` (HTTP by default), not yet started; each kind of
        work under its lease (``lease_seconds`` in ``node.toml``); without ``deliver``, only the
        audit log's writer (integrate, sign)."""
        return NodeRuntime(
            self.exchange,
            self.audit,
            self.heads,
            transport,
            interval=interval,
            head_every=head_every,
            deliver=deliver,
            lease_ttl=self.config.lease_seconds,
            duties=self.duties,
        )

    def link_lease(self, party: str) -> Lease:
        """This process's hold on the lease of the node's outbound stream link to ``party``
        (``link:PARTY``; ``lease_seconds`` in ``node.toml``): one process of the node runs that link."""
        if self._link_holder is None:
            self._link_holder = process_holder()
        return Lease(
            LeaseStore(self.kernel.store), f"link:{party}", self._link_holder, ttl=self.config.lease_seconds
        )

    # --- the kernel's decisions, for the shells ---

    def record_refusal(
        self,
        kind: str,
        subject: str | None,
        status: int,
        reason: str,
        source: str | None = None,
        actor: str | None = None,
    ) -> int | None:
        """A refusal decided at the edge (a malformed request, an unknown route): audited all the same.
        A caller nobody authenticated is counted per network ``source`` (bounded space) and spends
        its budget (the seconds it must wait once spent, else ``None``); a known ``actor`` (the
        request carried their valid token) gets a record of its own."""
        return self.kernel.record_refusal(kind, subject, status, reason, None if actor else source, actor)

    def decide_read(self, actor: Person, label: SecurityLabel) -> AccessDecision:
        """The kernel's read decision (with the reader's visit authorisations, Art. 8)."""
        return self.kernel.decide_read(actor, label)

    def require_any(self, actor: Person | None, roles: Sequence[Role], what: str) -> None:
        """Refuse (and record) unless ``actor`` is the local operator or holds one of ``roles``."""
        self.kernel.require_any(actor, roles, what)

    def require_metrics_reader(self, actor: Person | None) -> None:
        """Refuse (and record) unless ``actor`` may read this node's metrics: administrators."""
        self.require_any(actor, METRICS_READERS, "metrics.read")

    # --- people and tokens ---

    def add_person(self, actor: Person | None, data: dict[str, Any]) -> Person:
        self.require_any(actor, (Role.ADMINISTRATOR,), "person.add")
        try:
            person = person_from_dict(data, self.catalogue)
            check_item_id(person.id, "person id")
            for topic in sorted(person.need_to_know):  # a new person's; people held keep theirs
                self.catalogue.topic(topic)
            record = canonical(person_to_dict(person))
            row = self.kernel.audit_row(
                "person.add", actor.id if actor else "operator", person.id, "allowed", person=record
            )
            self.store.add_person(person.id, record, epoch_us(self.clock()), [row])
        except GsomiaError as exc:
            raise self.kernel.refuse(
                "person.add", actor.id if actor else "operator", str(data.get("id")), exc
            ) from None
        return person

    def person(self, person_id: str) -> Person:
        return self.kernel.person(person_id)

    def people(self, actor: Person | None) -> list[Person]:
        """The register of people (administrators and security officers; ``None``: the operator)."""
        self.require_any(actor, PEOPLE_READERS, "person.list")
        return self._people()

    def _people(self) -> list[Person]:
        return [person_from_dict(json.loads(r), self.catalogue) for r in self.store.list_people()]

    def read_person(self, actor: Person | None, person_id: str) -> Person:
        """One person's record: one's own, or anyone's for administrators and security officers."""
        if actor is None or actor.id != person_id:
            self.require_any(actor, PEOPLE_READERS, "person.read")
        return self.person(person_id)

    def topics(self) -> list[str]:
        """The topics the agreements scope and this node's people hold need-to-know for (what a
        decision form offers; no person's record is shown)."""
        scoped = {t for a in self.catalogue.agreements.values() for t in (a.scope_topics or ())}
        held = {t for p in self._people() for t in p.need_to_know}
        return sorted(scoped | held)

    def set_active(self, actor: Person | None, person_id: str, active: bool) -> Person:
        """Enable or disable a person; disabling revokes all their tokens (see :class:`Credentials`)."""
        return self.credentials.set_active(actor, person_id, active)[0]

    def issue_token(
        self, actor: Person | None, person_id: str, days: int = 30, *, parent: TokenRow | None = None
    ) -> tuple[str, str, datetime]:
        """A new API token for ``person_id``: (token id, the token — shown once, expiry)."""
        return self.credentials.issue(actor, person_id, days, parent=parent)

    def revoke_token(self, actor: Person | None, token_id: str) -> None:
        """Revoke a token and every token minted from it."""
        self.credentials.revoke(actor, token_id)

    def authenticate(self, token: str | None, source: str | None = None) -> Person:
        """The person a bearer token belongs to; refuses unknown, expired, revoked or disabled."""
        return self.credentials.authenticate(token, source)

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
        """Store several items in one transaction: all of them, or (on any refusal) none."""
        who = actor.id if actor else "operator"
        subject: str | None = None
        prepared: list[tuple[NewItem, SecurityLabel]] = []
        inventory: list[InventoryEntry] = []
        audit: list[AuditRow] = []
        try:
            now = self.clock()
            now_us = epoch_us(now)
            for entry in batch:
                subject = entry.item_id
                new, parsed = self._prepare(actor, who, entry, now)
                subject = new.id
                prepared.append((new, parsed))
                kind = "received" if entry.received_from else "ingested"
                inventory.append(
                    InventoryEntry(
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
            raise self.kernel.refuse("item.ingest", who, subject, exc) from None
        return [self.kernel.items.item_of(new, parsed) for new, parsed in prepared]

    def _prepare(
        self, actor: Person | None, who: str, entry: NewIngest, now: datetime
    ) -> tuple[NewItem, SecurityLabel]:
        item_id = check_item_id(entry.item_id or str(uuid.uuid4()))
        if entry.portions:
            return self._prepare_portions(actor, who, item_id, entry, now)
        check_payload_type(entry.payload_type)
        size = len(entry.payload)
        if size > self.config.max_payload_bytes:
            raise PayloadTooLargeError(
                f"payload of {size} bytes exceeds this node's limit of {self.config.max_payload_bytes}"
            )
        label = label_from_dict(entry.label, self.catalogue)
        if actor is not None and label.originator != self.party:
            # a partner's item is the partner's only under its signature over label and payload, and
            # that arrives through the exchange (or a signed transfer file), never typed in here
            raise LabelError(
                f"an item originated by {label.originator} is stored as {label.originator}'s only "
                f"with {label.originator}'s signature: it arrives from {label.originator} through "
                f"the exchange, not by ingest at this node ({self.party})"
            )
        parsed = self.kernel.items.received_label(
            label, entry.received_from, entry.agreement, at=self.kernel.clock()
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
        self, actor: Person | None, who: str, item_id: str, entry: NewIngest, now: datetime
    ) -> tuple[NewItem, SecurityLabel]:
        """This node's item in portions: each portion's label checked (and readable by the one who
        ingests it), the root over the portions signed with the item's label."""
        if entry.label is not None or entry.payload or entry.received_from or entry.agreement:
            raise InvalidInputError(
                "an item in portions gives portions only: each its own label and payload; the item's "
                "label is the highest of theirs, and only this node's own items come in portions"
            )
        size = sum(len(p.payload) for p in entry.portions)
        if size > self.config.max_payload_bytes:
            raise PayloadTooLargeError(
                f"portions of {size} bytes exceed this node's limit of {self.config.max_payload_bytes}"
            )
        portions = []
        for portion in entry.portions:
            label = label_from_dict(portion.label, self.catalogue)
            if label.originator != self.party:
                raise LabelError(
                    f"portion {portion.id}: only this node's ({self.party}) own items are created in portions"
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

    def list_items(
        self, actor: Person, where: ItemFilter, cursor: str | None = None, limit: int = 100
    ) -> Page:
        """A page of the items ``actor`` may read, in ingest order; unreadable ones are withheld."""
        found, next_cursor, withheld = self._scan(actor, where, cursor, limit, "item.list")
        self.store.append_audit(
            [
                self.kernel.audit_row(
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
            self.kernel.audit_row(
                "item.read", actor.id, item.id, "allowed", channel=channel, checks=checks_json(d.checks)
            )
            for item, _, d in found
        ]
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
            after = _decode_cursor(cursor, where.by_added)
        except InvalidInputError as exc:
            raise self.kernel.refuse(kind, actor.id, None, exc) from None
        found: list[tuple[Item, bytes, AccessDecision]] = []
        last = after  # the scan key of the last item served
        withheld = 0
        gate = self.kernel.reader(actor)
        scanned_to = after
        more = False
        # a page that may fill before ``limit`` items (``fits``) reads the store in small steps
        size = limit + 1 if fits is None else min(limit + 1, _FITTED_STEP)
        while not more:
            rows = self.store.list_items(where, scanned_to, size, with_payload=keep is not None)
            for row in rows:
                key = (row.added_us or 0) if where.by_added else row.seq
                scanned_to = key
                if row.state != "held":  # destroyed or recalled: the record stays, there is nothing to read
                    continue
                item = self.kernel.items.item(row)
                payload = b""
                if keep is not None and not item.portions:
                    payload = self.cipher.open(row.id, row.label, row.payload)
                    if not keep(item, payload):
                        continue
                seen = gate.view(item)
                if seen.item is None:
                    withheld += 1
                    continue
                if seen.item.portions != item.portions and not _matches(where, seen.item):
                    # the store matched the whole item; what this reader sees of it must match too, or
                    # a filter on a level or topic of an unseen portion would tell them it is there
                    continue
                item, decision = seen.item, seen.decision
                if keep is not None and item.portions:  # only the portions this reader may read
                    payload = self.kernel.items.portions_payload(row, item.portions)
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
        return found, _encode_cursor(last, where.by_added) if more else None, withheld

    def view(self, actor: Person, item: Item) -> Item | None:
        """What ``actor`` may see of ``item`` (the kernel's read decision; of an item in portions, the
        portions they may read under the highest of their labels); ``None``: nothing. Not recorded:
        for shells that recorded the read already (a page that read the item's inventory)."""
        return self.kernel.view(actor, item).item

    def resolve_item(self, actor: Person | None, ref: str, originator: str | None = None) -> str:
        """This node's reference for the item a person names by ``ref`` (and, where two originators'
        items share the id here, ``originator``, or ``ref`` written ``ORIGINATOR:id``): issue 22 §4.
        Ambiguous among the items ``actor`` may read: :class:`ConflictError` asking whose."""
        code = self.catalogue.party(originator).code if originator is not None else None
        return self.kernel.resolve(actor, ref, code)

    def held(self, item_id: str) -> Item | None:
        """The item's metadata, without a read decision: for shells that must first find out which
        collection an item belongs to; they must still read it through :meth:`read`."""
        row = self.store.get_item(item_id)
        return None if row is None else self.kernel.items.item(row)

    def inventory(self, actor: Person, item_id: str) -> list[InventoryRow]:
        """Where the item came from, its copies and derivatives, where it went, its destruction.

        As classified as the item; kept after a destruction or recall (the record remains).
        """
        _, _, decision = self.kernel.readable(actor, item_id, "item.inventory")
        self.kernel.record(
            "item.inventory", actor.id, item_id, "allowed", checks=checks_json(decision.checks)
        )
        return self.store.inventory(item_id)

    # --- agreements and decisions ---

    def decide(self, request: ReleaseRequest, *, at: datetime) -> ReleaseDecision:
        return self.engine.decide(request, at=at)


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
