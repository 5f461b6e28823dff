"""The inbox: open each envelope (one opaque error to the sender, the detail to the audit
records), accept only registered government-to-government links, verify the originator's
signature, decide on this side, store the item with the originator's label plus this
node's equivalent, and sign a receipt. A message id seen before from the same sender returns
the same receipt: exactly-once effect; from another sender it is refused. A binding's message id
(from its digest) is of a namespace no envelope may use, since a binding is not addressed and a
partner holding the same one could otherwise take its id first. A hub relays what the
originator authorised, and only that.

The inbox dispatches by message kind through the exchange's handler table: ``item``,
``consent-request``, ``consent`` and ``equivalence-change`` are its own; other services
register theirs where the node is built (the duties ``duty``, the audit log ``tree-head``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from gsomia._canonical import loads, storable_json
from gsomia._codec import (
    DecisionTexts,
    Encoded,
    canonical,
    decision_json,
    json_object,
    unstorable,
)
from gsomia.core.instants import epoch_us
from gsomia.core.policy import Assurance, Consent, ReleaseDecision, ReleaseRequest
from gsomia.core.portions import banner
from gsomia.crypto.envelope import (
    EnvelopeError,
    Opened,
    UnverifiedOrigin,
    open_envelope,
    read_origin,
    verify_origin,
)
from gsomia.errors import AgreementError, GsomiaError, InvalidInputError
from gsomia.exchange._base import Batch
from gsomia.exchange._equivalences import EQUIVALENCE_KIND
from gsomia.exchange._hops import RELAY_RECEIPT
from gsomia.exchange._messages import consent_from_content, message_id, receipt_id
from gsomia.exchange._versions import EnvelopeVersions
from gsomia.kernel import (
    ItemContent,
    PortionedContent,
    SignedPortion,
    item_ref,
    parse_item_content,
    parse_portioned_content,
    signed_portions,
)
from gsomia.store import ConsentRow, InboxRow, InventoryEntry, ItemRow, NewItem, OutboxRow

__all__ = ["BATCHED_KINDS", "BATCH_KIND", "MAX_BATCH_MESSAGES", "Inbox"]

# A batch envelope: many messages under one hop signature and one encryption (issue 18); each message
# keeps its own id (received exactly once) and, an item, its originator's signature.
BATCH_KIND = "batch"
BATCHED_KINDS = frozenset({"item"})  # what a batch may carry
MAX_BATCH_MESSAGES = 1000
_MAX_ID = 200  # as an envelope's own message id
_ASSURED = "inbox.assurances"  # Batch.prefetched: the assurances on file at the batch's instant
_BOUND = "bdo-"  # the message ids of ADatP-4778 bindings (receive_bound): no envelope's may start so

_REFUSED = "envelope.refused"  # the audit kind of a message refused (tallied per sender and code)
_DUPLICATE = "envelope.duplicate"  # of a message received before (tallied per sender, as refusals)

# refusals of the envelope alone, not of what it carries: the clocks differ, or it expired on the way
_FOR_NOW = ("not-yet-valid", "expired")

# an envelope that did not open and whose refusal is already counted (Inbox._tally_unopened)
_UNOPENED = EnvelopeError("tallied")
_UNOPENED_FOR_NOW = EnvelopeError("tallied-for-now")  # the same, of a code in _FOR_NOW (retry)


class Inbox(EnvelopeVersions):
    """Envelopes arriving from peers, a batch in one transaction."""

    def _register_own(self) -> None:
        self.register("item", self._receive_item)
        self.register("consent-request", self._receive_consent_request)
        self.register("consent", self._receive_consent)
        self.register("assurance", self._receive_assurance)
        self.register("purpose-consent", self._receive_purpose_consent)
        self.register(EQUIVALENCE_KIND, self._receive_equivalence)
        self.register(RELAY_RECEIPT, self._receive_relay_receipt)

    def receive(self, texts: Sequence[str], source: str | None = None) -> list[dict[str, Any]]:
        """Open, check, decide and store a batch of envelopes; one result per envelope, in order.

        An envelope that does not open (malformed, not for this node, a signature that does not
        verify) comes from nobody anyone can name: from a network ``source``, such refusals are
        audited in bounded space (:meth:`NodeContext.tally_refusal`, per refusal code), not one
        record each; 1,000 junk envelopes cost the log a handful of records and a count. So are the
        messages refused of a sender whose envelope did open (a partner with a valid link, sending
        what this node refuses): per sender and code (:meth:`tally_refused`), whatever the source.
        """
        now = self._now()
        results: list[dict[str, Any]] = []
        accepted = Batch()
        opened: list[Opened | EnvelopeError] = []
        accepts = self._accepts(now)  # the envelope versions this node still opens, from whom
        for text in texts:
            try:
                opened.append(
                    _checked(
                        open_envelope(self.ring, text, self._identities, now, self.skew, accepts=accepts)
                    )
                )
            except EnvelopeError as exc:
                opened.append(exc)
        if source is not None:
            opened = self._tally_unopened(opened, source)
        # a batch envelope (many item messages under one hop signature and encryption): each of its
        # messages is received on its own, exactly as if it had come in an envelope of its own
        units = [
            self._unpacked(o, accepted) if isinstance(o, Opened) and o.body.get("kind") == BATCH_KIND else o
            for o in opened
        ]
        messages = [
            m for u in units for m in (u[1] if isinstance(u, tuple) else [u]) if isinstance(m, Opened)
        ]
        # one look-up each for the batch's message ids and item ids, not two queries per envelope
        accepted.seen = held = self.fed.inbox_entries(
            [
                o.msg_id for o in messages if o.storable or unstorable(o.msg_id, "") is None
            ]  # the rest refused below
        )
        # the envelope versions: raised only by an envelope bringing a message not held already
        # (a replayed duplicate raises nothing)
        taken = [
            (isinstance(u, Opened) and u.msg_id not in held)
            or (isinstance(u, tuple) and any(m.msg_id not in held for m in u[1]))
            for u in units
        ]
        self._note_versions(opened, taken, now)
        self.prefetch_relayed([o.body for o in messages], accepted)  # relay receipts' look-ups, at once
        # each item message's signed content as read (unverified) to prefetch, kept so that the one
        # that verifies below is not decoded and parsed again (issue 18)
        peeked = accepted.prefetched.setdefault("contents", {})
        pairs = [i for o in messages for i in [_peek_item(o.body, peeked)] if i]
        accepted.claimed = {item_id for _, item_id in pairs}
        accepted.pairs = pairs
        accepted.peeked = set(pairs)
        accepted.held = self.kernel.store.items_of(pairs)
        accepted.asked = {r for o, i in pairs for r in (i, f"{o}:{i}")}
        accepted.taken = self.kernel.store.existing_items(sorted(accepted.asked))
        for text, unit in zip(texts, units, strict=True):
            if isinstance(unit, tuple):
                results.append(self._receive_batch(*unit, now, accepted))
            elif isinstance(unit, dict):  # a batch refused whole (audited)
                results.append(unit)
            else:
                results.append(self._receive_guarded(text, now, accepted, unit))
        if accepted.any():
            try:
                self._commit(accepted)
            except GsomiaError:
                # a concurrent delivery of the same message or item: settle one by one (each refusal
                # is tallied there, once: this pass's are dropped, not counted twice)
                return [self._receive_one_committed(t, now, o) for t, o in zip(texts, opened, strict=True)]
        self.tally_refused(accepted)
        return results

    def _receive_guarded(
        self, text: str, now: datetime, accepted: Batch, first: Opened | EnvelopeError
    ) -> dict[str, Any]:
        mark = accepted.mark()
        try:
            return self._receive_one(text, now, accepted, first)
        except GsomiaError as exc:  # a bug-free path never gets here; fail closed all the same
            accepted.undo(mark)
            return {"status": "refused", "reason": str(exc), "receipt": None}

    def _unpacked(self, batch: Opened, accepted: Batch) -> tuple[Opened, list[Opened]] | dict[str, Any]:
        """The batch envelope and its messages (:meth:`_unpack`), or the refusal of the whole batch."""
        unit = self._unpack(batch, accepted)
        return unit if isinstance(unit, dict) else (batch, unit)

    def _unpack(self, batch: Opened, accepted: Batch) -> list[Opened] | dict[str, Any]:
        """The messages of a batch envelope, each as an envelope of its own would have opened (the
        same sender, recipient, lifetime and hop key; its own message id, so each is received
        exactly once); or the refusal of the whole batch, audited, if it is not a well-formed list of
        1 to ``MAX_BATCH_MESSAGES`` item messages with distinct ids."""
        messages = batch.body.get("messages")
        reason: str | None = None
        inner: list[Opened] = []
        if batch.body.keys() != {"kind", "messages"} or not isinstance(messages, list):
            reason = "batch: expected exactly 'kind' and a list of 'messages'"
        elif not 0 < len(messages) <= MAX_BATCH_MESSAGES:
            reason = f"batch: 1 to {MAX_BATCH_MESSAGES} messages, not {len(messages)}"
        else:
            ids: set[str] = set()
            for index, message in enumerate(messages):
                msg_id = message.get("msg_id") if isinstance(message, dict) else None
                body = message.get("body") if isinstance(message, dict) else None
                if (
                    not isinstance(message, dict)
                    or message.keys() != {"msg_id", "body"}
                    or not isinstance(msg_id, str)
                    or not 0 < len(msg_id) <= _MAX_ID
                    or msg_id in ids
                    or not isinstance(body, dict)
                    or body.get("kind") not in BATCHED_KINDS
                ):
                    reason = f"batch: message {index} is not an item message with an id of its own"
                    break
                ids.add(msg_id)
                inner.append(
                    Opened(
                        batch.sender,
                        batch.recipient,
                        msg_id,
                        batch.issued_at,
                        batch.expires_at,
                        body,
                        batch.sender_kid,
                        batch.version,
                        batch.storable,  # the batch's claims, this message's text among them
                    )
                )
        if reason is not None:
            return self.refused(
                accepted,
                _REFUSED,
                "batch",
                batch.sender,
                None,
                reason,
                "envelope refused",
                msg_id=batch.msg_id,
            )
        return inner

    def _tally_unopened(
        self, opened: list[Opened | EnvelopeError], source: str
    ) -> list[Opened | EnvelopeError]:
        """Audit the envelopes that did not open, by code, in bounded space; they are answered
        "envelope refused" (``_UNOPENED``) without a record each."""
        codes: dict[str, tuple[int, EnvelopeError]] = {}
        for o in opened:
            if isinstance(o, EnvelopeError):
                count, first = codes.get(o.detail, (0, o))
                codes[o.detail] = (count + 1, first)
        for code, (count, first) in codes.items():
            note = {"note": first.note} if first.note else {}
            self.kernel.tally_refusal(
                "envelope.refused", source, code, None, first.detail, count=count, **note
            )
        return [
            (_UNOPENED_FOR_NOW if o.detail in _FOR_NOW else _UNOPENED) if isinstance(o, EnvelopeError) else o
            for o in opened
        ]

    def _receive_one_committed(
        self, text: str, now: datetime, opened: Opened | EnvelopeError
    ) -> dict[str, Any]:
        """``text`` (``opened`` as the first pass opened it) received in a transaction of its own."""
        if isinstance(opened, Opened) and opened.body.get("kind") == BATCH_KIND:
            refusing = Batch()
            unit = self._unpack(opened, refusing)
            self.tally_refused(refusing)
            if isinstance(unit, dict):
                return unit
            # one by one, each with a receipt of its own: the rare path after a concurrent delivery
            inner = [self._committed(m, now) for m in unit]
            return {"status": BATCH_KIND, "receipt": None, "reason": None, "results": inner}
        return self._committed(opened, now, text)

    def _receive_batch(
        self, batch: Opened, messages: list[Opened], now: datetime, accepted: Batch
    ) -> dict[str, Any]:
        """The messages of a batch envelope, each received on its own (decided, stored, audited), and
        ONE signed receipt naming every message taken (``receipt``; issue 18): each result then
        carries no receipt of its own, its inbox row keeps the batch's (stored once). A duplicate
        is answered with the receipt it had the first time; a refusal with none."""
        accepted.receipted = []
        try:
            inner = [self._receive_guarded("", now, accepted, m) for m in messages]
            receipted = accepted.receipted
        finally:
            accepted.receipted = None
        receipt = self.batch_receipt(batch, receipted, now) if receipted else None
        if receipt is not None:
            rid = receipt_id(receipt)
            named = {e["msg_id"] for e in receipted}
            for index, row in enumerate(accepted.inbox):
                if row.msg_id in named and not row.receipt:
                    accepted.inbox[index] = replace(row, receipt=receipt, receipt_id=rid)
                    accepted.inbox_by_id[row.msg_id] = accepted.inbox[index]
        answer: dict[str, Any] = {"status": BATCH_KIND, "receipt": receipt, "reason": None, "results": inner}
        kept = _receipts_once(inner)
        if kept:
            answer["receipts"] = kept
        return answer

    def _committed(self, opened: Opened | EnvelopeError, now: datetime, text: str = "") -> dict[str, Any]:
        accepted = Batch()
        result = self._receive_guarded(text, now, accepted, opened)
        if accepted.any():
            self._commit(accepted)
        self.tally_refused(accepted)
        return result

    def receive_bound(self, sender: str, origin: str, purpose: str) -> dict[str, Any]:
        """An item a verified ADatP-4778 binding brought, bound by ``sender`` (the caller checked the
        binding's signature and chain, :mod:`gsomia.standards`): decided, checked against the
        registered link and stored exactly as if ``sender`` had delivered it in an envelope (the
        same release decision, receipt and records). The message is named by what it brings (the
        binder, the originator's signed item and the purpose), not by the binding's bytes: the same
        binding imported twice, reformatted, or in its other form (XML or JSON) is a duplicate."""
        now = self._now()
        body = {
            "kind": "item",
            "origin": origin,
            "route": {"sender": sender, "recipient": self.party, "via": []},
            "purpose": purpose,
            "consents": [],
        }
        msg_id = f"{_BOUND}{hashlib.sha256(canonical(body).encode()).hexdigest()[:48]}"
        opened = Opened(sender, self.party, msg_id, now, now + timedelta(hours=1), body, "bdo")
        accepted = Batch()
        result = self._receive_one("", now, accepted, opened, bound=True)
        if accepted.any():
            self._commit(accepted)
        self.tally_refused(accepted)
        return result

    def _commit(self, accepted: Batch) -> None:
        self.fed.accept(
            items=accepted.items,
            inbox=accepted.inbox,
            inventory=accepted.inventory,
            audit=accepted.audit,
            outbox=accepted.outbox,
            consents=accepted.consents,
            requests=accepted.requests,
            answers=accepted.answers,
            ops=accepted.ops,
        )

    def _receive_one(
        self,
        text: str,
        now: datetime,
        accepted: Batch,
        first: Opened | EnvelopeError | None = None,
        *,
        bound: bool = False,
    ) -> dict[str, Any]:
        if first is _UNOPENED or first is _UNOPENED_FOR_NOW:  # tallied already
            answer: dict[str, Any] = {"status": "refused", "reason": "envelope refused", "receipt": None}
            if first is _UNOPENED_FOR_NOW:
                answer["retry"] = True  # the sender may try again in a fresh envelope (nothing more said)
            return answer
        try:
            if isinstance(first, EnvelopeError):
                raise first
            opened = first or _checked(
                open_envelope(self.ring, text, self._identities, now, self.skew, accepts=self._accepts(now))
            )
        except EnvelopeError as exc:
            note = {"note": exc.note} if exc.note else {}
            refused = self.refused(
                accepted, _REFUSED, exc.detail, None, None, exc.detail, "envelope refused", **note
            )
            if exc.detail in _FOR_NOW:
                refused["retry"] = True  # the sender may try again in a fresh envelope (nothing more said)
            return refused
        # the message itself (its id, route, purpose, ...) holding text no store can hold: this
        # message refused, audited, before its id is looked up; a batch's others are received. The
        # signed contents it carries are checked where they are parsed (json_object)
        found = (
            None if opened.storable else unstorable({"msg_id": opened.msg_id, "body": opened.body}, "message")
        )
        if found is not None:
            reason = f"{found[0]}: {found[1]}"
            return self.refused(
                accepted, _REFUSED, "unstorable", opened.sender, None, reason, reason, msg_id=opened.msg_id
            )
        if accepted.seen is not None:
            seen = accepted.seen.get(opened.msg_id) or accepted.inbox_by_id.get(opened.msg_id)
        else:
            seen = self.fed.inbox_entry(opened.msg_id) or accepted.inbox_by_id.get(opened.msg_id)
        if opened.msg_id.startswith(_BOUND) != bound:
            # the ids a binding's digest names are the bindings' own: a partner holding the same
            # (unaddressed) binding would otherwise take its id first and have it refused here
            return self.refused(
                accepted,
                _REFUSED,
                "reserved-id",
                opened.sender,
                None,
                "message id reserved for ADatP-4778 bindings",
                "envelope refused",
                msg_id=opened.msg_id,
            )
        if seen is not None and seen.sender != opened.sender:
            # a message id is the sender's own: another party naming it learns nothing of it (not
            # the receipt this node signed for its sender) and stores nothing
            return self.refused(
                accepted,
                _REFUSED,
                "other-sender",
                opened.sender,
                None,
                "message id of another sender",
                "envelope refused",
                msg_id=opened.msg_id,
            )
        if seen is not None:
            # answered with the stored receipt; audited in bounded space as the refusals are (per
            # sender and minute, the first 10 a record each, the rest counted: :meth:`tally_refused`):
            # a partner resending one envelope thousands of times made one permanent record each
            row = self.kernel.audit_row(
                _DUPLICATE, opened.sender, seen.item_id, "allowed", msg_id=opened.msg_id
            )
            accepted.refused.append((_DUPLICATE, opened.sender, "duplicate", "sent again", row))
            return {"status": "duplicate", "receipt": seen.receipt, "reason": None}
        kind = opened.body.get("kind")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        mark = accepted.mark()
        try:
            if handler is not None:
                return handler(opened, now, accepted)
        except EnvelopeError as exc:
            accepted.undo(mark)  # refused part way: nothing of this message is written
            return self.refused(
                accepted,
                _REFUSED,
                exc.detail,
                opened.sender,
                None,
                exc.detail,
                "envelope refused",
                msg_id=opened.msg_id,
            )
        except GsomiaError as exc:
            accepted.undo(mark)
            return self.refused(
                accepted,
                _REFUSED,
                type(exc).__name__,
                opened.sender,
                None,
                str(exc),
                str(exc),
                msg_id=opened.msg_id,
            )
        return self.refused(
            accepted,
            _REFUSED,
            "unknown-kind",
            opened.sender,
            None,
            f"unknown message kind {kind!r}",
            "unknown message kind",
            msg_id=opened.msg_id,
        )

    def _receive_item(self, opened: Opened, now: datetime, accepted: Batch) -> dict[str, Any]:
        body = opened.body
        origin = body.get("origin")
        route = body.get("route")
        if not isinstance(origin, str) or not isinstance(route, dict):
            raise InvalidInputError("item message: origin and route are required")
        # the signed text as the prefetch read it (not read again), verified now; and the JSON the
        # prefetch parsed, which is of exactly the content that just verified
        peeked = accepted.prefetched.get("contents", {}).get(origin)
        originator, content = verify_origin(
            origin if peeked is None else peeked[0], self._identities, now, own=self.ring
        )
        parsed = peeked[1] if peeked is not None else json_object(content, "item")
        item: ItemContent | PortionedContent
        portions: tuple[SignedPortion, ...] = ()
        portioned = parse_portioned_content(content, self.kernel.catalogue, parsed=parsed)
        if portioned is None:
            if "portions" in body:
                raise InvalidInputError("item message: portions of an item signed whole")
            item = parse_item_content(
                content,
                self.kernel.catalogue,
                accepted.prefetched.setdefault("labels", {}),
                parsed=parsed,
            )
            label = item.label
        else:
            # each portion checked against the originator's signed root before anything else: one
            # added, swapped or altered on the way (by a hub, by anyone) refuses the envelope
            item = portioned
            portions = signed_portions(body.get("portions"), portioned, self.kernel.catalogue)
            label = banner([p.label for p in portions], self.kernel.catalogue)
        if item.label.originator != originator:
            raise EnvelopeError("bad-origin-signature")  # signed by one party, labelled as another's
        sender, recipient = route.get("sender"), route.get("recipient")
        via = route.get("via") or []
        if (
            not isinstance(sender, str)
            or not isinstance(recipient, str)
            or not isinstance(via, list)
            or len(via) > 1
        ):
            raise InvalidInputError("item message: malformed route")
        hub = via[0] if via else None
        relaying = recipient != self.party
        if relaying and (hub != self.party or sender != opened.sender):
            raise InvalidInputError(
                f"misrouted: this node ({self.party}) is neither the recipient nor the hub"
            )
        if not relaying and (opened.sender != (hub or sender)):
            raise InvalidInputError(f"the route says {hub or sender} delivers, but {opened.sender} did")
        consent_rows: list[ConsentRow] = []
        consents: list[Consent] = []
        for jws in body.get("consents") or []:
            signer, raw = verify_origin(jws, self._identities, now, own=self.ring)
            consent_id, consent = consent_from_content(raw, signer)
            consents.append(consent)
            consent_rows.append(self._consent_row(consent_id, consent, jws))
        purpose = body.get("purpose")
        if not isinstance(purpose, str):
            raise InvalidInputError("item message: purpose is required")
        request = ReleaseRequest(
            label,
            sender,
            recipient,
            purpose,
            tuple(via),
            item.item_id,
            tuple(consents),
            assurances=self._assured_at(now, accepted),
        )
        decision = self.kernel.engine.decide(
            request, at=now, memo=accepted.prefetched.setdefault("decided", {})
        )
        if not decision.allowed:
            reasons = "; ".join(f"{c.rule}: {c.reason}" for c in decision.failed())
            return self.refused(
                accepted,
                _REFUSED,
                "decision",
                opened.sender,
                item.item_id,
                reasons,
                reasons,
                msg_id=opened.msg_id,
                decision=decision_json(decision),
            )
        if decision.agreement not in self.links(opened.sender):
            reason = f"the link with {opened.sender} is not registered for {decision.agreement} (Art. 9)"
            return self.refused(
                accepted,
                _REFUSED,
                "unlinked",
                opened.sender,
                item.item_id,
                reason,
                reason,
                msg_id=opened.msg_id,
            )
        if relaying:  # and the onward link, before anything of the item is kept here or receipted
            try:
                self._link(recipient, decision)
            except GsomiaError as exc:
                return self.refused(
                    accepted,
                    _REFUSED,
                    "onward-link",
                    opened.sender,
                    item.item_id,
                    str(exc),
                    str(exc),
                    msg_id=opened.msg_id,
                )
        digest = hashlib.sha256(origin.encode()).hexdigest()
        # an item is (originator, id): only the same signed item of the same originator is held already;
        # another originator's item under the same id is another item, stored under its own reference
        found = self._held_as(originator, item.item_id, accepted)
        held = found is not None
        if found is not None:
            self._same_item(item, found, portions)
            ref = found.id
        else:
            ref = item_ref(originator, item.item_id, lambda r: self._taken(r, accepted))
        status = "relayed" if relaying else ("already-held" if held else "stored")
        log_entry = message_id(now)  # the audit record below; the receipt names it
        if accepted.receipted is not None:  # in a batch envelope: named by the batch's one receipt
            accepted.receipted.append(
                {"msg_id": opened.msg_id, "item": item.item_id, "status": status, "digest": digest,
                 "log_entry": log_entry}
            )  # fmt: skip
            receipt = ""
        else:
            receipt = self.receipt(opened, item.item_id, status, digest, now, log_entry)
        accepted.add_inbox(
            InboxRow(opened.msg_id, opened.sender, "item", ref, epoch_us(now), status, receipt)
        )
        known = {c.id for c in accepted.consents}
        accepted.consents += [c for c in consent_rows if c.id not in known and not self._has_consent(c.id)]
        accepted.audit.append(
            self.kernel.audit_row(
                "envelope.received",
                opened.sender,
                ref,
                "allowed",
                entry_id=log_entry,
                msg_id=opened.msg_id,
                status=status,
                # the batch's decision shared by its items (the engine's memo): its JSON written once
                decision=Encoded(accepted.prefetched.setdefault("texts", DecisionTexts()).text(decision)),
            )
        )
        if not held:
            new = self._new_item(item, origin, opened.sender, decision, now, portions, ref)
            accepted.items.append(new)
            accepted.item_ids.add(ref)
            accepted.by_origin[(originator, item.item_id)] = new
            accepted.inventory.append(
                InventoryEntry(
                    ref,
                    epoch_us(now),
                    "received",
                    opened.sender,
                    None,
                    canonical({"msg_id": opened.msg_id, "agreement": decision.agreement, "route": route}),
                )
            )
        if relaying:
            relayed = [p.id for p in portions] if isinstance(item, PortionedContent) else None
            accepted.outbox.append(self._relay(ref, body, recipient, sender, hub, decision, now, relayed))
        if not held:
            for hook in self._arrival_hooks:
                hook(ref, now, accepted)
        return {"status": status, "receipt": receipt or None, "reason": None}

    def _assured_at(self, now: datetime, accepted: Batch) -> tuple[Assurance, ...]:
        """The assurances on file at ``now`` (the instant every message of this receipt is decided
        at), read once for the whole batch: per item, the look-up's generation checks were as much
        as the decision they fed (issue 18)."""
        held = accepted.prefetched.get(_ASSURED)
        if held is None:
            held = accepted.prefetched[_ASSURED] = self.assurances_on_file(now)
        assured: tuple[Assurance, ...] = held
        return assured

    def _held_as(self, originator: str, item_id: str, accepted: Batch) -> NewItem | ItemRow | None:
        """The item ``originator`` gave the id ``item_id``, if held here or stored by an earlier
        message of this batch."""
        arriving = accepted.by_origin.get((originator, item_id))
        if arriving is not None:
            return arriving
        if accepted.held is not None and (originator, item_id) in accepted.peeked:
            return accepted.held.get((originator, item_id))
        return self.kernel.store.item_of(originator, item_id)

    def _taken(self, ref: str, accepted: Batch) -> bool:
        """Whether ``ref`` is the reference of an item here or of one this batch stores."""
        if ref in accepted.item_ids:
            return True
        if accepted.taken is not None and ref in accepted.asked:
            return ref in accepted.taken
        return self.kernel.store.get_item(ref) is not None

    def _same_item(
        self, item: ItemContent | PortionedContent, held: NewItem | ItemRow, portions: Sequence[SignedPortion]
    ) -> None:
        """The originator's item under this id is held here already: only the same signed content is
        "already held"; another item of the same originator under the id is refused with the reason,
        never answered "already held" (which would mark it delivered). Where the payload is gone
        (destroyed, recalled), the instant the originator signed as the item's creation still tells
        another item apart. (Another originator's item under the same id is another item: stored.)

        An item in portions is the same when its signed root is (a hub may send fewer portions), or
        when what arrives is exactly the portions held here, leaf for leaf, under another root: the
        originator changed a portion this node does not hold (and was rightly not told), so the
        root moved while nothing held here did."""
        sealed = (held.label, held.payload)
        portioned = held.portions is not None
        if isinstance(item, PortionedContent):
            same = portioned and (
                self._same_portions(item, held, portions)
                if held.state == "held"
                else held.created_us <= epoch_us(item.label.created)
            )
        else:
            same = (
                not portioned
                and held.created_us == epoch_us(item.label.created)
                and (held.state != "held" or self.kernel.cipher.open(held.id, *sealed) == item.payload)
            )
        if not same:
            raise InvalidInputError(
                f"item id {item.item_id} is held here as a different item of "
                f"{item.label.originator}: not stored"
            )

    def _same_portions(
        self, item: PortionedContent, held: NewItem | ItemRow, portions: Sequence[SignedPortion]
    ) -> bool:
        items = self.kernel.items
        if items.signed_root(held.id, held.label, held.payload) == item:
            return True
        arriving = {p.id: p.leaf for p in portions}
        return bool(arriving) and items.held_leaves(held.id, held.label, held.payload) == arriving

    def _new_item(
        self,
        item: ItemContent | PortionedContent,
        origin: str,
        received_from: str,
        decision: ReleaseDecision,
        now: datetime,
        portions: tuple[SignedPortion, ...] = (),
        ref: str | None = None,
    ) -> NewItem:
        if decision.agreement is None:  # an allowed decision always names its agreement
            raise AgreementError("an allowed decision without an agreement")
        if isinstance(item, PortionedContent):
            return self.kernel.items.seal_portions(
                item,
                portions,
                origin=origin,
                now=now,
                by=f"exchange:{received_from}",
                received_from=received_from,
                agreement=decision.agreement,
                ref=ref,
            )
        label = self.kernel.items.received_label(item.label, received_from, decision.agreement, at=now)
        return self.kernel.items.seal(
            item.item_id,
            label,
            item.payload_type,
            item.payload,
            now=now,
            by=f"exchange:{received_from}",
            received_from=received_from,
            agreement=decision.agreement,
            origin=origin,
            label_version=item.label_version,
            ref=ref,
        )

    def _relay(
        self,
        item_id: str,
        body: dict[str, Any],
        recipient: str,
        sender: str,
        hub: str | None,
        decision: ReleaseDecision,
        now: datetime,
        portions: list[str] | None,
    ) -> OutboxRow:
        """The onward message, queued unsealed: delivery builds it from what this node holds of the
        item at the instant of sending, under the decision it takes then (as it does an item released
        in a selection). The originator's signed item as this hub holds it then: a label change of
        the item or of a portion it carries, applied here after the item came (or before, having
        overtaken it, applied on its arrival), goes on with it, never the copy that came in.
        ``portions``: of an item in portions, those the hub passes on (the ones it received)."""
        peer = self._link(recipient, decision)
        spec: dict[str, Any] = {
            "item": item_id,
            "sender": sender,
            "recipient": recipient,
            "via": [hub],
            "purpose": body["purpose"],
        }
        if portions is not None:
            spec["portions"] = portions
        return self.queue(peer, body, "item", item_id, now, spec=spec, decision=decision, seal_now=False)


def _receipts_once(results: list[dict[str, Any]]) -> list[str]:
    """The receipts the duplicates of a batch envelope are answered with, each given once: a
    duplicate's result then names its receipt by position (``receipt_of``) instead of repeating it
    (a whole batch sent again would otherwise carry its batch receipt once per message, ~3 MB for
    100). Only duplicates carry a receipt here, and only those of this envelope's sender: a message
    id of another sender is refused without one (``_receive_one``)."""
    kept: dict[str, int] = {}
    for index, result in enumerate(results):
        receipt = result.get("receipt")
        if result.get("status") == "duplicate" and isinstance(receipt, str):
            position = kept.setdefault(receipt, len(kept))
            results[index] = {"status": "duplicate", "receipt": None, "reason": None, "receipt_of": position}
    return list(kept)


def _checked(opened: Opened) -> Opened:
    """``opened`` marked storable where its signed claims' bytes show it (:func:`storable_json`: one
    pass over the bytes, where a batch's 100 messages would each be walked by ``unstorable``);
    else as opened (``storable`` False: every message is walked). Asked here, where the answer is
    used, not in every :func:`open_envelope` (issue 18: the envelope ratio)."""
    if opened.claims is None or not storable_json(opened.claims):
        return opened
    return replace(opened, storable=True)


def _peek_item(
    body: dict[str, Any], peeked: dict[str, tuple[UnverifiedOrigin, dict[str, Any]]]
) -> tuple[str, str] | None:
    """The (originator, item id) an item message claims, read before verification, only to prefetch
    in one query; the signed text as read (:func:`read_origin`, as :func:`verify_origin` reads it)
    and its content's JSON object kept in ``peeked`` by the signed text (used only once that
    signature has verified)."""
    origin = body.get("origin")
    if body.get("kind") != "item" or not isinstance(origin, str):
        return None
    try:
        token = read_origin(origin)  # what verify_origin refuses as malformed is not looked up
    except EnvelopeError:
        return None
    raw = token.payload
    try:
        content = loads(raw)  # json.loads's value, by orjson where the two agree (issue 18)
        if not storable_json(raw) and unstorable(content, "item") is not None:
            return None  # not looked up, nor kept: json_object refuses it below, naming the place
        if isinstance(content, dict):
            peeked[origin] = (token, content)
        item, label = content.get("item"), content.get("label")
        originator = label.get("originator") if isinstance(label, dict) else None
    except (ValueError, AttributeError):
        return None
    return (originator, item) if isinstance(item, str) and isinstance(originator, str) else None
