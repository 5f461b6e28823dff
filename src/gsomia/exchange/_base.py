"""What every part of the exchange shares: the node's kernel, its keys and federation store,
the sealed outbox row (:meth:`ExchangeBase.queue`), the signed receipt
(:meth:`ExchangeBase.receipt`), the batch a receive writes (:class:`Batch`) and the table of
handlers by message kind that other services register with (:meth:`ExchangeBase.register`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from gsomia._codec import DecisionTexts, canonical, decision_json
from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.core.policy import ReleaseDecision
from gsomia.crypto.envelope import Opened, seal, sign_origin
from gsomia.crypto.keys import PeerIdentity
from gsomia.exchange._messages import batch_receipt_content, message_id, receipt_content
from gsomia.kernel import NodeContext
from gsomia.store import (
    AuditRow,
    ConsentRequestRow,
    ConsentRow,
    InboxRow,
    InventoryEntry,
    ItemRow,
    NewItem,
    Op,
    OutboxRow,
)

__all__ = ["CONSENT_READERS", "OUTBOX_READERS", "ArrivalHook", "Batch", "ExchangeBase", "Handler"]

# Who may read what the node sent and the consent requests (docs/API.md's table).
OUTBOX_READERS = (Role.RELEASE_OFFICER, Role.SECURITY_OFFICER, Role.ADMINISTRATOR)
CONSENT_READERS = (Role.RELEASE_OFFICER, Role.SECURITY_OFFICER)

# A message kind's handler: (the opened envelope, now, the batch) -> the result for the sender
# ({"status", "receipt", "reason"}); what it writes goes into the batch, one transaction.
_BODY = "outbox-body"  # the at-rest binding of a queued message's body

Handler = Callable[[Opened, datetime, "Batch"], dict[str, Any]]
# Told of an item the batch is about to store (its id): may rewrite it in the batch (the duties
# apply a label change that reached this node before the item did).
ArrivalHook = Callable[[str, datetime, "Batch"], None]


class ExchangeBase:
    """The state a node's exchange holds and the helpers its parts share."""

    def __init__(
        self,
        kernel: NodeContext,
        *,
        ttl: timedelta = timedelta(hours=24),
        skew: timedelta = timedelta(minutes=5),
    ) -> None:
        self.kernel = kernel
        self.ring = kernel.ring
        self.fed = kernel.fed
        self.ttl = ttl
        self.skew = skew
        self._handlers: dict[str, Handler] = {}
        self._arrival_hooks: list[ArrivalHook] = []

    @property
    def party(self) -> str:
        return self.kernel.party

    def _now(self) -> datetime:
        return self.kernel.clock()

    def _identities(self, party: str) -> PeerIdentity | None:
        return self.kernel.peers.peer(party)

    def register(self, kind: str, handler: Handler) -> None:
        """Let another service answer the inbox's ``kind`` messages (wired where the node is built)."""
        if kind in self._handlers:
            raise ValueError(f"a handler for {kind!r} messages is registered already")
        self._handlers[kind] = handler

    def on_arrival(self, hook: ArrivalHook) -> None:
        """Let another service see each item the inbox is about to store (wired where the node is built)."""
        self._arrival_hooks.append(hook)

    def enqueue(
        self,
        rows: Sequence[OutboxRow],
        audit: Sequence[AuditRow] = (),
        inventory: Sequence[InventoryEntry] = (),
        consents: Sequence[ConsentRow] = (),
    ) -> None:
        """Write outbox rows (with their audit records, inventory entries, consents) in one transaction."""
        self.fed.enqueue(rows, audit, inventory, consents)

    def outbox(self, actor: Person | None, *, state: str | None = None, limit: int = 1000) -> list[OutboxRow]:
        """What this node sent or is sending, oldest first (release and security officers,
        administrators; ``None``: the node's operator)."""
        self.kernel.require_any(actor, OUTBOX_READERS, "outbox.read")
        return self.fed.outbox(state=state, limit=limit)

    def outbox_seen_by(
        self, actor: Person, *, state: str | None = None, limit: int = 1000, every: bool = False
    ) -> list[OutboxRow]:
        """The outbox as ``actor`` may see it: an entry about an item they may not read is left
        out, and nothing counts it (issue 14 §6). ``every`` is the security officer's explicit
        view of all of it, audited (``outbox.read_all``)."""
        self.kernel.require_any(actor, OUTBOX_READERS, "outbox.read")
        if every:
            self.kernel.require_any(actor, (Role.SECURITY_OFFICER,), "outbox.read_all")
            rows = self.fed.outbox(state=state, limit=limit)
            self.kernel.record("outbox.read_all", actor.id, None, "allowed", state=state, returned=len(rows))
            return rows
        shown: list[OutboxRow] = []
        after = 0
        while len(shown) < limit:
            rows = self.fed.outbox(state=state, after_seq=after, limit=limit)
            # an entry about an item in portions names its portions: shown to readers of all of them
            ids = {r.item_id for r in rows if r.item_id is not None}
            seen = self.kernel.readable_ids(actor, ids, whole=True)
            shown.extend(r for r in rows if r.item_id is None or r.item_id in seen)
            if len(rows) < limit:
                break
            after = rows[-1].seq
        return shown[:limit]

    def outbox_entry(self, msg_id: str) -> OutboxRow | None:
        return self.fed.outbox_entry(msg_id)

    def consent_requests(self, actor: Person | None, state: str | None = None) -> list[ConsentRequestRow]:
        """Consent requests this node made or must answer, oldest first (release and security
        officers; ``None``: the node's operator)."""
        self.kernel.require_any(actor, CONSENT_READERS, "consent.read")
        return self.fed.consent_requests(state)

    def queue(
        self,
        peer: PeerIdentity,
        body: dict[str, Any],
        kind: str,
        item_id: str | None,
        now: datetime,
        *,
        final_recipient: str | None = None,
        spec: dict[str, Any] | None = None,
        decision: ReleaseDecision | None = None,
        ttl: timedelta | None = None,
        state: str = "pending",
        seal_now: bool = True,
        texts: DecisionTexts | None = None,
    ) -> OutboxRow:
        """A sealed envelope for ``peer``, as an outbox row (written by the caller's transaction).

        ``seal_now=False`` (an item of a released selection): no envelope yet (``""``). Delivery builds
        the item message again under the decision it takes at the instant of sending and sends it in
        a batch envelope, or seals it in one of its own when it goes alone: an envelope sealed here
        would be thrown away unread (issue 18: half the CPU of a release went into it).

        A message that is not an item (a duty, a consent, a tree head) keeps its body sealed at rest
        under the node key in ``request``, so that a retry or an officer's resend goes with a fresh
        envelope and the body (the original inner signature) unchanged; an item is rebuilt from the
        store and decided again instead. ``texts``: the batch's decisions written once each."""
        msg_id = message_id(now)
        if spec is None and kind != "item":
            sealed = self.kernel.cipher.seal(msg_id, _BODY, canonical(body).encode())
            spec = {"sealed_body": base64.b64encode(sealed).decode()}
        return OutboxRow(
            msg_id=msg_id,
            kind=kind,
            item_id=item_id,
            recipient=peer.party,
            final_recipient=final_recipient or peer.party,
            request=canonical(spec or {}),
            decision="{}"
            if decision is None
            else texts.text(decision)
            if texts is not None
            else canonical(decision_json(decision)),
            envelope=seal(self.ring, peer, body, msg_id=msg_id, at=now, ttl=ttl or self.ttl)
            if seal_now or kind != "item"
            else "",
            state=state,
            attempts=0,
            next_attempt_us=epoch_us(now),
            created_us=epoch_us(now),
            updated_us=epoch_us(now),
        )

    def stored_body(self, entry: OutboxRow) -> dict[str, Any] | None:
        """The body of a queued message other than an item, as it was sealed at rest (``None`` if it
        has none: an item, or a message queued before bodies were kept)."""
        sealed = json.loads(entry.request).get("sealed_body") if entry.request else None
        if not isinstance(sealed, str):
            return None
        body = json.loads(self.kernel.cipher.open(entry.msg_id, _BODY, base64.b64decode(sealed)))
        return body if isinstance(body, dict) else None

    def receipt(
        self,
        opened: Opened,
        item_id: str | None,
        status: str,
        digest: str | None,
        now: datetime,
        log_entry: str | None = None,
    ) -> str:
        return sign_origin(
            self.ring,
            receipt_content(
                msg_id=opened.msg_id,
                item_id=item_id,
                receiver=self.party,
                sender=opened.sender,
                status=status,
                digest=digest,
                at=now,
                log_entry=log_entry,
            ),
            now,
        )

    def refused(
        self,
        accepted: Batch,
        kind: str,
        code: str,
        sender: str | None,
        subject: str | None,
        reason: str,
        public: str,
        **detail: Any,
    ) -> dict[str, Any]:
        """The answer refusing a message, its audit record (``reason`` and ``detail``) kept in
        ``accepted`` to be tallied with the batch's others (:meth:`tally_refused`): an authenticated
        sender's refusals are counted in bounded space, per sender, kind and ``code`` (a finite
        vocabulary naming the check that refused). Without a sender (an envelope that did not open,
        from no network source: the operator's own file) a record of its own, now."""
        if sender is None:
            self.kernel.record(kind, None, subject, "refused", reason=reason, **detail)
        else:
            row = self.kernel.audit_row(kind, sender, subject, "refused", reason=reason, **detail)
            accepted.refused.append((kind, sender, code, reason, row))
        return {"status": "refused", "reason": public, "receipt": None}

    def tally_refused(self, accepted: Batch) -> None:
        """Audit the refusals :meth:`refused` kept in ``accepted``, in bounded space: the kernel's
        tally (:meth:`NodeContext.tally`), once per sender, kind and code of the batch. Of a window,
        each sender's first :data:`~gsomia.kernel.NodeContext.REFUSALS_RECORDED` of a kind and code
        are records of their own (the reason, the message id, the decision, as before), the rest are
        counted, and one ``refusal.tally`` record gives the exact count once the window has closed.
        A partner with a valid link sending bad messages made one permanent record each."""
        groups: dict[tuple[str, str, str], list[tuple[str, AuditRow]]] = {}
        for kind, sender, code, reason, row in accepted.refused:
            groups.setdefault((kind, sender, code), []).append((reason, row))
        accepted.refused = []
        for (kind, sender, code), refusals in groups.items():

            def rows(
                _counted_as: str, _sender: str, own: int, of: list[tuple[str, AuditRow]] = refusals
            ) -> list[AuditRow]:
                return [row for _, row in of[:own]]

            self.kernel.tally(kind, sender, code, refusals[0][0], rows, count=len(refusals))

    def batch_receipt(self, batch: Opened, entries: Sequence[dict[str, Any]], now: datetime) -> str:
        """One signed receipt for the messages of the batch envelope ``batch`` this node took, each
        entry as :func:`batch_receipt_content` names it (issue 18: one signature for the batch)."""
        content = batch_receipt_content(
            batch=batch.msg_id, receiver=self.party, sender=batch.sender, at=now, entries=entries
        )
        return sign_origin(self.ring, content, now)


class Batch:
    """What a batch of envelopes will write, in one transaction (a handler adds to it)."""

    def __init__(self) -> None:
        self.items: list[NewItem] = []
        self.item_ids: set[str] = set()  # this node's references of the items the batch stores
        # the batch's items by (originator, the id the originator gave it): an item is that pair
        self.by_origin: dict[tuple[str, str], NewItem] = {}
        self.inbox: list[InboxRow] = []
        self.inbox_by_id: dict[str, InboxRow] = {}
        self.inventory: list[InventoryEntry] = []
        self.audit: list[AuditRow] = []
        self.outbox: list[OutboxRow] = []
        self.consents: list[ConsentRow] = []
        self.requests: list[ConsentRequestRow] = []
        self.answers: list[tuple[str, str, str]] = []
        self.ops: list[Op] = []  # the duties' writes (gsomia.duties), in the same transaction
        self.seen: dict[str, InboxRow] | None = None  # prefetched inbox rows of the batch
        # prefetched: the items already held among the (originator, id) the batch's item messages
        # claim, and which of the references such items would get are taken here
        self.held: dict[tuple[str, str], ItemRow] | None = None
        self.taken: set[str] | None = None
        self.asked: set[str] = set()  # the references ``taken`` answers for
        # the item ids the batch's item messages claim (read before verification, only to prefetch
        # in one query what each item's handlers would otherwise look up one by one); None: unknown
        self.claimed: set[str] | None = None  # a set: each arriving item asks whether it is among them
        self.pairs: list[tuple[str, str]] = []  # the same, with the originator each item's label names
        self.peeked: set[tuple[str, str]] = set()  # those pairs, for a look-up
        # what a handler or hook read once for the whole batch, by a name of its own
        self.prefetched: dict[str, Any] = {}
        # while the messages of a batch envelope are received: their receipt entries, signed once
        # for the batch afterwards (``ExchangeBase.batch_receipt``); None: each signs its own
        self.receipted: list[dict[str, Any]] | None = None
        # the refusals of authenticated senders' messages, tallied once the batch is settled
        # (``ExchangeBase.tally_refused``): (kind, sender, code, reason, the record of its own)
        self.refused: list[tuple[str, str, str, str, AuditRow]] = []

    def add_inbox(self, row: InboxRow) -> None:
        self.inbox.append(row)
        self.inbox_by_id[row.msg_id] = row

    def any(self) -> bool:
        return bool(self.inbox or self.audit)

    def mark(self) -> tuple[int, ...]:
        """Where the batch stands now, for :meth:`undo` (before a message is received into it)."""
        receipted = -1 if self.receipted is None else len(self.receipted)
        return (
            len(self.items),
            len(self.inbox),
            len(self.inventory),
            len(self.audit),
            len(self.outbox),
            len(self.consents),
            len(self.requests),
            len(self.answers),
            len(self.ops),
            receipted,
        )

    def undo(self, mark: tuple[int, ...]) -> None:
        """Forget everything added since ``mark``: a message refused part way through its handler
        (or a hook after it) leaves nothing of itself to be written with the others (no item, inbox
        row, "allowed" record, receipt entry, outbox entry or duty write); the rare path, so the
        look-ups kept beside the lists are mended by a scan."""
        items, inbox, inventory, audit, outbox, consents, requests, answers, ops, receipted = mark
        for new in self.items[items:]:
            self.item_ids.discard(new.id)
            for key in [k for k, v in self.by_origin.items() if v is new]:
                del self.by_origin[key]
        for row in self.inbox[inbox:]:
            if self.inbox_by_id.get(row.msg_id) is row:
                del self.inbox_by_id[row.msg_id]
        del self.items[items:], self.inbox[inbox:], self.inventory[inventory:], self.audit[audit:]
        del self.outbox[outbox:], self.consents[consents:], self.requests[requests:]
        del self.answers[answers:], self.ops[ops:]
        if self.receipted is not None and receipted >= 0:
            del self.receipted[receipted:]
