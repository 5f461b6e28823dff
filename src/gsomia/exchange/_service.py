"""The exchange between nodes: peers, the transactional outbox, delivery, the inbox, consents.

- ``release`` decides now and, if allowed, writes the sealed envelope and the decision
  in one transaction (the outbox). Nothing leaves on a refusal.
- ``deliver_due`` decides again at the instant of sending (a termination in between
  makes the entry undeliverable, with the reason), pushes batches to each peer's
  ``/inbox`` over HTTP and keeps the signed receipts as proof of delivery; transport
  failures retry with exponential backoff.
- ``receive`` opens each envelope (one opaque error to the sender, the detail to the
  audit records), accepts only registered government-to-government links, verifies the
  originator's signature, decides on its own side, stores the item with the
  originator's label plus its own equivalent, and signs a receipt. A message id seen
  before returns the same receipt: exactly-once effect. A hub relays what the
  originator authorised, and only that.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from gsomia._codec import canonical, decision_json, label_to_dict
from gsomia.audit._log import parse_head
from gsomia.core.access import Person, Role
from gsomia.core.merkle import leaf_hash, verify_inclusion
from gsomia.core.policy import Consent, ConsentKind, ReleaseDecision, ReleaseRequest
from gsomia.core.tlp import is_tlp_red
from gsomia.crypto.envelope import EnvelopeError, Opened, open_envelope, seal, sign_origin, verify_origin
from gsomia.duties._messages import DUTY_KIND
from gsomia.duties._receive import receive_duty
from gsomia.errors import (
    AgreementError,
    GsomiaError,
    InvalidInputError,
    NotFoundError,
    ProofError,
)
from gsomia.exchange._base import _Accepted, _us
from gsomia.exchange._messages import (
    consent_content,
    consent_from_content,
    item_content,
    parse_item_content,
)
from gsomia.exchange._peers import Peers
from gsomia.store import (
    AuditRow,
    ConsentRequestRow,
    ConsentRow,
    InboxRow,
    ItemRow,
    NewItem,
    OutboxRow,
)

if TYPE_CHECKING:
    pass

__all__ = ["Delivery", "Exchange", "PreparedRelease"]

_MAX_BACKOFF_S = 60.0
_BATCH = 100


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one delivery attempt did with one outbox entry."""

    msg_id: str
    recipient: str
    state: str  # delivered | pending (retry) | undeliverable
    detail: str


@dataclass(frozen=True, slots=True)
class PreparedRelease:
    """A release decided and sealed, not yet written: the outbox row, its audit record, new consents."""

    entry: OutboxRow
    audit: AuditRow
    consents: tuple[ConsentRow, ...]


class Exchange(Peers):
    """A node's side of the federation."""

    # --- consents on file ---

    def consents_for(self, originator: str, item_id: str) -> tuple[Consent, ...]:
        return self._consents(self.fed.consents_for(originator, item_id))

    def _consents(self, rows: Sequence[ConsentRow]) -> tuple[Consent, ...]:
        """Consents on file, each re-verified against its originator's signature before use."""
        out = []
        for row in rows:
            _, consent = consent_from_content(
                verify_origin(row.jws, self._identities, self._now(), own=self.ring)[1], row.originator
            )
            out.append(consent)
        return tuple(out)

    def _sign_consent(self, consent: Consent) -> tuple[ConsentRow, str]:
        consent_id = uuid.uuid4().hex
        jws = sign_origin(self.ring, consent_content(consent, consent_id), self._now())
        return self._consent_row(consent_id, consent, jws), jws

    @staticmethod
    def _consent_row(consent_id: str, consent: Consent, jws: str) -> ConsentRow:
        return ConsentRow(
            id=consent_id,
            kind=consent.kind.value,
            originator=consent.originator,
            recipient=consent.recipient,
            item_id=consent.item,
            holder=consent.holder,
            hub=consent.hub,
            given_us=_us(consent.given_at),
            expires_us=None if consent.expires is None else _us(consent.expires),
            reference=consent.reference,
            jws=jws,
        )

    # --- release: the transactional outbox ---

    def _row_of(self, item_id: str) -> ItemRow:
        row = self.node.store.get_item(item_id)
        if row is None:
            raise NotFoundError(f"no item {item_id!r} at this node")
        return row

    def _origin_jws(self, item_id: str, row: ItemRow | None = None) -> str:
        """The originator's signed item: stored at receipt, or signed now for our own item."""
        row = row or self._row_of(item_id)
        if row.origin_jws is not None:
            return self.node.cipher.open(row.id, row.label, row.origin_jws).decode()
        item = self.node._from_row(row)
        if item.label.originator != self.party:
            raise InvalidInputError(
                f"item {item_id} carries no signature of its originator {item.label.originator}"
            )
        payload = self.node.cipher.open(row.id, row.label, row.payload)
        return sign_origin(
            self.ring, item_content(row.id, item.label, row.payload_type, payload), self._now()
        )

    def _item_body(
        self,
        spec: dict[str, Any],
        decision: ReleaseDecision,
        extra_consents: Sequence[str] = (),
        *,
        row: ItemRow | None = None,
        on_file: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The item message: the originator's signed item, the route and the consents that justify it."""
        item_id = spec["item"]
        row = row or self._row_of(item_id)
        consents = (
            list(on_file)
            if on_file is not None
            else [c.jws for c in self.fed.consents_for(row.originator, item_id)]
        )
        return {
            "kind": "item",
            "origin": self._origin_jws(item_id, row),
            "purpose": spec["purpose"],
            "agreement": decision.agreement,
            "route": {"sender": spec["sender"], "via": spec["via"], "recipient": spec["recipient"]},
            "consents": consents + [c for c in extra_consents if c not in consents],
        }

    def _request(self, spec: dict[str, Any]) -> ReleaseRequest:
        """Rebuild a release request from what the outbox stored, with the consents on file now."""
        row = self._row_of(spec["item"])
        if row.state != "held":  # destroyed or recalled after it was queued: it does not go
            raise InvalidInputError(f"item {row.id} was {row.state} after it was queued")
        label = self.node._from_row(row).label
        return ReleaseRequest(
            label,
            spec["sender"],
            spec["recipient"],
            spec["purpose"],
            tuple(spec["via"]),
            row.id,
            self.consents_for(label.originator, row.id),
        )

    def release(
        self,
        actor: Person,
        item_id: str,
        recipient: str,
        *,
        via: str | None = None,
        purpose: str | None = None,
        authorise_relay: bool = False,
    ) -> OutboxRow:
        """Decide now; if allowed, queue the sealed envelope and the decision in one transaction."""
        who = actor.id
        try:
            self.node.require_any(actor, (Role.RELEASE_OFFICER,), "item.release")
            prepared = self.prepare_release(
                actor,
                self._row_of(item_id),
                recipient,
                via=via,
                purpose=purpose,
                authorise_relay=authorise_relay,
                now=self._now(),
            )
            self.fed.enqueue([prepared.entry], [prepared.audit], consents=prepared.consents)
        except GsomiaError as exc:
            raise self.node._refuse("item.release", who, item_id, exc) from None
        return prepared.entry

    def prepare_release(
        self,
        actor: Person,
        row: ItemRow,
        recipient: str,
        *,
        via: str | None,
        purpose: str | None,
        authorise_relay: bool,
        now: datetime,
        ttl: timedelta | None = None,
        state: str = "pending",
        detail: Mapping[str, Any] | None = None,
    ) -> PreparedRelease:
        """One release decided at ``now`` and sealed, not yet written: raises on a refusal.

        :meth:`release` writes it to the outbox; a transfer by file (``gsomia.exchange._transfer``)
        writes many at once with ``state`` ``exported`` so the network sender leaves them alone.
        """
        item_id = row.id
        label = self.node._from_row(row).label
        if row.state != "held":
            raise InvalidInputError(f"item {item_id} was {row.state}: it cannot be released")
        access = self.node.decide_read(actor, label).raise_if_refused()
        if row.payload_type == "json" and is_tlp_red(
            json.loads(self.node.cipher.open(row.id, row.label, row.payload))
        ):
            raise InvalidInputError(f"item {item_id} is marked TLP:RED: it never leaves this node")
        recipient = self.node.catalogue.party(recipient).code
        hub = self.node.catalogue.party(via).code if via else None
        new_consents: list[ConsentRow] = []
        fresh: tuple[Consent, ...] = ()
        if authorise_relay:
            if hub is None or label.originator != self.party:
                raise InvalidInputError("only the originator authorises a hub relay, and only with --via")
            authorisation = Consent(
                ConsentKind.HUB_RELAY,
                self.party,
                recipient,
                now,
                f"relay authorised by {actor.id}",
                item=item_id,
                hub=hub,
            )
            consent_row, _ = self._sign_consent(authorisation)
            new_consents.append(consent_row)
            fresh = (authorisation,)
        use = purpose or label.purpose
        hops = [hub] if hub else []
        spec: dict[str, Any] = {
            "item": item_id,
            "sender": self.party,
            "recipient": recipient,
            "via": hops,
            "purpose": use,
        }
        on_file = self.fed.consents_for(label.originator, item_id)
        request = ReleaseRequest(
            label, self.party, recipient, use, tuple(hops), item_id, self._consents(on_file) + fresh
        )
        decision = self.node.engine.authorise(request, at=now)
        peer = self._link(hub or recipient, decision)
        body = self._item_body(
            spec, decision, [c.jws for c in new_consents], row=row, on_file=[c.jws for c in on_file]
        )
        entry = self._queue(
            peer,
            body,
            "item",
            item_id,
            now,
            final_recipient=recipient,
            spec=spec,
            decision=decision,
            ttl=ttl,
            state=state,
        )
        audit = self._row(
            "item.release",
            actor.id,
            item_id,
            "allowed",
            msg_id=entry.msg_id,
            decision=decision_json(decision),
            access=[{"rule": c.rule, "passed": c.passed, "reason": c.reason} for c in access.checks],
            **(detail or {}),
        )
        return PreparedRelease(entry, audit, tuple(new_consents))

    # --- delivery ---

    def deliver_due(self, client: httpx.Client, limit: int = 1000) -> list[Delivery]:
        """Send what is due: decide again now, push batches per peer, keep the signed receipts."""
        now = self._now()
        due = self.fed.due(_us(now), limit)
        results: list[Delivery] = []
        by_peer: dict[str, list[tuple[OutboxRow, str]]] = {}
        for entry in due:
            refusal, decision = self._recheck(entry, now)
            envelope = entry.envelope
            if refusal is None and self._expired(envelope, now):
                try:
                    envelope = self._reseal(entry, decision, now)
                except GsomiaError as exc:
                    refusal = f"the envelope expired before delivery and could not be resealed: {exc}"
            if refusal is not None:
                self.fed.settle(
                    entry.msg_id,
                    state="undeliverable",
                    now_us=_us(now),
                    attempts=entry.attempts,
                    next_attempt_us=entry.next_attempt_us,
                    last_error=refusal,
                    audit=[
                        self._row(
                            "envelope.undeliverable",
                            None,
                            entry.item_id,
                            "refused",
                            msg_id=entry.msg_id,
                            reason=refusal,
                        )
                    ],
                )
                results.append(Delivery(entry.msg_id, entry.recipient, "undeliverable", refusal))
                continue
            by_peer.setdefault(entry.recipient, []).append((entry, envelope))
        for party, batch in by_peer.items():
            for start in range(0, len(batch), _BATCH):
                results += self._push(client, party, batch[start : start + _BATCH], now)
        return results

    def _reseal(self, entry: OutboxRow, decision: ReleaseDecision | None, now: datetime) -> str:
        """A fresh envelope, same message id: the body is rebuilt from the store, never kept in clear."""
        if entry.kind != "item" or decision is None:
            raise InvalidInputError(f"a {entry.kind} message is not rebuilt")
        peer = self._link(entry.recipient, decision)
        body = self._item_body(json.loads(entry.request), decision)
        return seal(self.ring, peer, body, msg_id=entry.msg_id, at=now, ttl=self.ttl)

    def _expired(self, envelope: str, now: datetime) -> bool:
        return _envelope_exp(envelope) <= now.timestamp()

    def _recheck(self, entry: OutboxRow, now: datetime) -> tuple[str | None, ReleaseDecision | None]:
        """The release decision again, at the instant of sending: (refusal or None, decision)."""
        if entry.kind != "item":
            return None, None
        try:
            decision = self.node.engine.decide(self._request(json.loads(entry.request)), at=now)
        except GsomiaError as exc:
            return str(exc), None
        if decision.allowed:
            return None, decision
        return "; ".join(f"{c.rule}: {c.reason}" for c in decision.failed()), decision

    def _push(
        self, client: httpx.Client, party: str, batch: Sequence[tuple[OutboxRow, str]], now: datetime
    ) -> list[Delivery]:
        peer = self.peer(party)
        endpoint = peer.endpoint if peer else ""
        try:
            response = client.post(f"{endpoint.rstrip('/')}/inbox", json={"envelopes": [e for _, e in batch]})
            response.raise_for_status()
            answers = response.json()["results"]
            if len(answers) != len(batch):
                raise InvalidInputError(f"{party} answered {len(answers)} results for {len(batch)} envelopes")
        except (httpx.HTTPError, ValueError, KeyError, TypeError, GsomiaError) as exc:
            answers = None
            reason = f"{type(exc).__name__}: {exc}"
        sink: list[dict[str, Any]] = []
        if answers is None:
            done = [self._retry(entry, now, reason, sink) for entry, _ in batch]
        else:
            done = [
                self._settle(entry, envelope, answer, now, sink)
                for (entry, envelope), answer in zip(batch, answers, strict=True)
            ]
        self.fed.settle_many(sink, now_us=_us(now))  # one transaction for the whole batch
        return done

    def _retry(self, entry: OutboxRow, now: datetime, reason: str, sink: list[dict[str, Any]]) -> Delivery:
        attempts = entry.attempts + 1
        delay = min(_MAX_BACKOFF_S, 0.2 * 2**attempts) * (1 + random.random() * 0.2)  # noqa: S311 - jitter
        sink.append(
            dict(
                msg_id=entry.msg_id,
                state="pending",
                now_us=_us(now),
                attempts=attempts,
                next_attempt_us=_us(now) + int(delay * 1_000_000),
                last_error=reason,
            )
        )
        return Delivery(entry.msg_id, entry.recipient, "pending", reason)

    def _settle(
        self, entry: OutboxRow, envelope: str, answer: Any, now: datetime, sink: list[dict[str, Any]]
    ) -> Delivery:
        status = answer.get("status") if isinstance(answer, dict) else None
        if status == "refused":
            reason = str(answer.get("reason") or "refused by the receiver")
            sink.append(
                dict(
                    msg_id=entry.msg_id,
                    state="undeliverable",
                    now_us=_us(now),
                    attempts=entry.attempts + 1,
                    next_attempt_us=entry.next_attempt_us,
                    last_error=f"{entry.recipient} refused: {reason}",
                    envelope=envelope,
                    audit=[
                        self._row(
                            "envelope.refused-by-peer",
                            None,
                            entry.item_id,
                            "refused",
                            msg_id=entry.msg_id,
                            peer=entry.recipient,
                            reason=reason,
                        )
                    ],
                )
            )
            return Delivery(entry.msg_id, entry.recipient, "undeliverable", reason)
        receipt = answer.get("receipt") if isinstance(answer, dict) else None
        try:
            if not isinstance(receipt, str):
                raise InvalidInputError("no receipt")
            signer, content = verify_origin(receipt, self._identities, now)
            data = json.loads(content)
            if (
                signer != entry.recipient
                or data.get("msg_id") != entry.msg_id
                or data.get("kind") != "receipt"
            ):
                raise InvalidInputError("the receipt does not acknowledge this message")
        except (GsomiaError, ValueError) as exc:
            return self._retry(entry, now, f"bad receipt from {entry.recipient}: {exc}", sink)
        inventory = []
        if entry.item_id is not None and entry.kind == "item":  # the item itself went: count the copy
            inventory.append(
                (
                    entry.item_id,
                    _us(now),
                    "sent",
                    entry.recipient,
                    None,
                    canonical(
                        {
                            "msg_id": entry.msg_id,
                            "final_recipient": entry.final_recipient,
                            "status": data.get("status"),
                        }
                    ),
                )
            )
        sink.append(
            dict(
                msg_id=entry.msg_id,
                state="delivered",
                now_us=_us(now),
                attempts=entry.attempts + 1,
                next_attempt_us=entry.next_attempt_us,
                receipt=receipt,
                envelope=envelope,
                audit=[
                    self._row(
                        "envelope.delivered",
                        None,
                        entry.item_id,
                        "allowed",
                        msg_id=entry.msg_id,
                        peer=entry.recipient,
                        status=data.get("status"),
                    )
                ],
                inventory=inventory,
            )
        )
        return Delivery(entry.msg_id, entry.recipient, "delivered", str(data.get("status")))

    # --- receiving ---

    def receive(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Open, check, decide and store a batch of envelopes; one result per envelope, in order."""
        now = self._now()
        results: list[dict[str, Any]] = []
        accepted = _Accepted()
        opened: list[Opened | EnvelopeError] = []
        for text in texts:
            try:
                opened.append(open_envelope(self.ring, text, self._identities, now, self.skew))
            except EnvelopeError as exc:
                opened.append(exc)
        # one look-up each for the batch's message ids and item ids, not two queries per envelope
        accepted.seen = self.fed.inbox_entries([o.msg_id for o in opened if isinstance(o, Opened)])
        accepted.held = self.node.store.existing_items(
            [i for o in opened if isinstance(o, Opened) for i in [_peek_item(o.body)] if i]
        )
        for text, first in zip(texts, opened, strict=True):
            try:
                results.append(self._receive_one(text, now, accepted, first))
            except GsomiaError as exc:  # a bug-free path never gets here; fail closed all the same
                results.append({"status": "refused", "reason": str(exc), "receipt": None})
        if accepted.any():
            try:
                self._commit(accepted)
            except GsomiaError:
                # a concurrent delivery of the same message or item: settle one by one
                return [self._receive_one_committed(text, now) for text in texts]
        return results

    def _receive_one_committed(self, text: str, now: datetime) -> dict[str, Any]:
        accepted = _Accepted()
        result = self._receive_one(text, now, accepted)
        if accepted.any():
            self._commit(accepted)
        return result

    def _commit(self, accepted: _Accepted) -> None:
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

    def _refused(
        self, kind: str, sender: str | None, subject: str | None, reason: str, public: str, **detail: Any
    ) -> dict[str, Any]:
        self._audit(kind, sender, subject, "refused", reason=reason, **detail)
        return {"status": "refused", "reason": public, "receipt": None}

    def _receive_one(
        self, text: str, now: datetime, accepted: _Accepted, first: Opened | EnvelopeError | None = None
    ) -> dict[str, Any]:
        try:
            if isinstance(first, EnvelopeError):
                raise first
            opened = first or open_envelope(self.ring, text, self._identities, now, self.skew)
        except EnvelopeError as exc:
            note = {"note": exc.note} if exc.note else {}
            return self._refused("envelope.refused", None, None, exc.detail, "envelope refused", **note)
        if accepted.seen is not None:
            seen = accepted.seen.get(opened.msg_id) or accepted.inbox_by_id.get(opened.msg_id)
        else:
            seen = self.fed.inbox_entry(opened.msg_id) or accepted.inbox_by_id.get(opened.msg_id)
        if seen is not None:
            self._audit("envelope.duplicate", opened.sender, seen.item_id, "allowed", msg_id=opened.msg_id)
            return {"status": "duplicate", "receipt": seen.receipt, "reason": None}
        kind = opened.body.get("kind")
        try:
            if kind == "item":
                return self._receive_item(opened, now, accepted)
            if kind == "consent-request":
                return self._receive_consent_request(opened, now, accepted)
            if kind == "consent":
                return self._receive_consent(opened, now, accepted)
            if kind == "tree-head":
                return self._receive_head(opened, now, accepted)
            if kind == DUTY_KIND:  # the duties after release: gsomia.duties
                return receive_duty(self.node.duties, self, opened, now, accepted)
        except EnvelopeError as exc:
            return self._refused(
                "envelope.refused", opened.sender, None, exc.detail, "envelope refused", msg_id=opened.msg_id
            )
        except GsomiaError as exc:
            return self._refused(
                "envelope.refused", opened.sender, None, str(exc), str(exc), msg_id=opened.msg_id
            )
        return self._refused(
            "envelope.refused",
            opened.sender,
            None,
            f"unknown message kind {kind!r}",
            "unknown message kind",
            msg_id=opened.msg_id,
        )

    def _receive_head(self, opened: Opened, now: datetime, accepted: _Accepted) -> dict[str, Any]:
        """A partner's signed tree head, kept for the consistency check (gsomia.audit)."""
        if not self.links(opened.sender):
            raise AgreementError(f"no registered link with {opened.sender}")
        status = self.node.audit.receive_head(opened.sender, str(opened.body.get("head")), self._identities)
        receipt = self._receipt(opened, None, status, None, now)
        accepted.add_inbox(
            InboxRow(opened.msg_id, opened.sender, "tree-head", None, _us(now), "recorded", receipt)
        )
        return {"status": "recorded", "receipt": receipt, "reason": None}

    def share_head(self) -> int:
        """Queue this node's latest signed head for every peer that has not had it; how many queued."""
        head = self.node.audit.sign_head()
        now = self._now()
        rows = []
        for peer, _links in self.peers():
            key = f"audit.sent.{peer.party}"
            if int(self.node.store.meta(key) or -1) >= head.size:
                continue
            rows.append(self._queue(peer, {"kind": "tree-head", "head": head.jws}, "tree-head", None, now))
            self.node.store.put_meta(key, str(head.size))
        if rows:
            self.fed.enqueue(rows)
        return len(rows)

    def delivery_proof(self, msg_id: str, client: httpx.Client) -> dict[str, Any]:
        """Prove a delivery: the receiver's signed receipt names its log entry; fetch and check the
        inclusion proof of that entry in the receiver's signed tree head."""
        entry = self.fed.outbox_entry(msg_id)
        if entry is None or entry.receipt is None:
            raise NotFoundError(f"no delivered message {msg_id!r}")
        now = self._now()
        signer, content = verify_origin(entry.receipt, self._identities, now)
        receipt = json.loads(content)
        log_entry = receipt.get("log_entry")
        if not isinstance(log_entry, str):
            raise InvalidInputError(f"the receipt for {msg_id} names no log entry")
        peer = self.peer(signer)
        if peer is None:
            raise AgreementError(f"{signer} is not a registered peer")
        response = client.get(f"{peer.endpoint.rstrip('/')}/audit/inclusion", params={"entry": log_entry})
        response.raise_for_status()
        proof = response.json()
        head_signer, head_content = verify_origin(proof["head"], self._identities, now)
        party, size, root, _ = parse_head(head_content)
        if head_signer != signer or party != signer or size != proof["size"]:
            raise ProofError("the tree head is not the receiver's")
        entry_data = proof["leaf_data"].encode()
        if json.loads(entry_data).get("entry") != log_entry:
            raise ProofError("the proof is for another entry")
        verify_inclusion(
            leaf_hash(entry_data),
            int(proof["leaf_index"]),
            size,
            [bytes.fromhex(h) for h in proof["proof"]],
            root,
        )
        return {
            "msg_id": msg_id,
            "receiver": signer,
            "log_entry": log_entry,
            "leaf_index": proof["leaf_index"],
            "size": size,
            "root": root.hex(),
            "entry": json.loads(entry_data),
        }

    def _receive_item(self, opened: Opened, now: datetime, accepted: _Accepted) -> dict[str, Any]:
        body = opened.body
        origin = body.get("origin")
        route = body.get("route")
        if not isinstance(origin, str) or not isinstance(route, dict):
            raise InvalidInputError("item message: origin and route are required")
        originator, content = verify_origin(origin, self._identities, now, own=self.ring)
        item = parse_item_content(content, self.node.catalogue)
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
            item.label, sender, recipient, purpose, tuple(via), item.item_id, tuple(consents)
        )
        decision = self.node.engine.decide(request, at=now)
        if not decision.allowed:
            reasons = "; ".join(f"{c.rule}: {c.reason}" for c in decision.failed())
            return self._refused(
                "envelope.refused",
                opened.sender,
                item.item_id,
                reasons,
                reasons,
                msg_id=opened.msg_id,
                decision=decision_json(decision),
            )
        if decision.agreement not in self.links(opened.sender):
            reason = f"the link with {opened.sender} is not registered for {decision.agreement} (Art. 9)"
            return self._refused(
                "envelope.refused", opened.sender, item.item_id, reason, reason, msg_id=opened.msg_id
            )
        digest = hashlib.sha256(origin.encode()).hexdigest()
        if accepted.held is not None:
            held = item.item_id in accepted.held or item.item_id in accepted.item_ids
        else:
            held = self.node.store.get_item(item.item_id) is not None or item.item_id in accepted.item_ids
        status = "relayed" if relaying else ("already-held" if held else "stored")
        log_entry = uuid.uuid4().hex  # the audit record below; the receipt names it
        receipt = self._receipt(opened, item.item_id, status, digest, now, log_entry)
        accepted.add_inbox(
            InboxRow(opened.msg_id, opened.sender, "item", item.item_id, _us(now), status, receipt)
        )
        known = {c.id for c in accepted.consents}
        accepted.consents += [c for c in consent_rows if c.id not in known and not self._has_consent(c.id)]
        accepted.audit.append(
            self._row(
                "envelope.received",
                opened.sender,
                item.item_id,
                "allowed",
                entry_id=log_entry,
                msg_id=opened.msg_id,
                status=status,
                decision=decision_json(decision),
            )
        )
        if not held:
            accepted.items.append(self._new_item(item, origin, opened.sender, decision, now))
            accepted.item_ids.add(item.item_id)
            accepted.inventory.append(
                (
                    item.item_id,
                    _us(now),
                    "received",
                    opened.sender,
                    None,
                    canonical({"msg_id": opened.msg_id, "agreement": decision.agreement, "route": route}),
                )
            )
        if relaying:
            accepted.outbox.append(
                self._relay(item.item_id, origin, body, recipient, sender, hub, decision, now)
            )
        return {"status": status, "receipt": receipt, "reason": None}

    def _has_consent(self, consent_id: str) -> bool:
        return self.fed.has_consent(consent_id)

    def _new_item(
        self, item: Any, origin: str, received_from: str, decision: ReleaseDecision, now: datetime
    ) -> NewItem:
        if decision.agreement is None:  # an allowed decision always names its agreement
            raise AgreementError("an allowed decision without an agreement")
        label = self.node._received_label(item.label, received_from, decision.agreement)
        label_json = canonical(label_to_dict(label))
        return NewItem(
            id=item.item_id,
            originator=label.originator,
            classification=label.classification,
            label=label_json,
            topics=label.topics,
            received_from=received_from,
            agreement=decision.agreement,
            created_us=_us(label.created),
            ingested_us=_us(now),
            ingested_by=f"exchange:{received_from}",
            payload_type=item.payload_type,
            payload_size=len(item.payload),
            payload=self.node.cipher.seal(item.item_id, label_json, item.payload),
            origin_jws=self.node.cipher.seal(item.item_id, label_json, origin.encode()),
        )

    def _relay(
        self,
        item_id: str,
        origin: str,
        body: dict[str, Any],
        recipient: str,
        sender: str,
        hub: str | None,
        decision: ReleaseDecision,
        now: datetime,
    ) -> OutboxRow:
        peer = self._link(recipient, decision)
        spec = {
            "item": item_id,
            "sender": sender,
            "recipient": recipient,
            "via": [hub],
            "purpose": body["purpose"],
        }
        return self._queue(peer, body, "item", item_id, now, spec=spec, decision=decision)

    # --- the third-party consent workflow ---

    def request_consent(
        self, actor: Person, item_id: str, third_party: str, purpose: str, reason: str
    ) -> str:
        """A holder asks the originator for consent to pass ``item_id`` on to ``third_party``."""
        self.node.require_any(actor, (Role.RELEASE_OFFICER,), "consent.request")
        item, _ = self.node.read(actor, item_id)
        originator = item.label.originator
        if originator == self.party:
            raise InvalidInputError("this node originated the item: no consent is needed")
        third = self.node.catalogue.party(third_party).code
        peer = self.peer(originator)
        if peer is None:
            raise AgreementError(f"no registered link with {originator}, the originator")
        now = self._now()
        request_id = uuid.uuid4().hex
        body = {
            "kind": "consent-request",
            "id": request_id,
            "item": item_id,
            "third_party": third,
            "purpose": purpose,
            "reason": reason,
        }
        row = ConsentRequestRow(
            request_id, item_id, originator, self.party, third, purpose, reason, "pending", _us(now)
        )
        entry = self._queue(peer, body, "consent-request", item_id, now)
        self.fed.accept(
            requests=[row],
            outbox=[entry],
            audit=[
                self._row(
                    "consent.request",
                    actor.id,
                    item_id,
                    "allowed",
                    request=request_id,
                    originator=originator,
                    third_party=third,
                )
            ],
        )
        return request_id

    def _receive_consent_request(self, opened: Opened, now: datetime, accepted: _Accepted) -> dict[str, Any]:
        body = opened.body
        item_id, third, purpose, reason, request_id = (
            body.get(k) for k in ("item", "third_party", "purpose", "reason", "id")
        )
        if not all(isinstance(v, str) and v for v in (item_id, third, purpose, reason, request_id)):
            raise InvalidInputError("consent request: item, third_party, purpose, reason and id are required")
        if not self.links(opened.sender):
            raise AgreementError(f"no registered link with {opened.sender}")
        accepted.requests.append(
            ConsentRequestRow(
                str(request_id),
                str(item_id),
                self.party,
                opened.sender,
                str(third),
                str(purpose),
                str(reason),
                "pending",
                _us(now),
            )
        )
        receipt = self._receipt(opened, str(item_id), "recorded", None, now)
        accepted.add_inbox(
            InboxRow(
                opened.msg_id, opened.sender, "consent-request", str(item_id), _us(now), "recorded", receipt
            )
        )
        accepted.audit.append(
            self._row(
                "consent.requested",
                opened.sender,
                str(item_id),
                "allowed",
                request=request_id,
                third_party=third,
            )
        )
        return {"status": "recorded", "receipt": receipt, "reason": None}

    def answer_consent(
        self, actor: Person, request_id: str, *, grant: bool, reason: str, expires: datetime | None = None
    ) -> ConsentRequestRow:
        """The originator grants (a signed consent) or refuses a holder's request, once."""
        self.node.require_any(actor, (Role.RELEASE_OFFICER,), "consent.answer")
        request = self.fed.consent_request(request_id)
        if request is None or request.originator != self.party:
            raise NotFoundError(f"no consent request {request_id!r} awaiting this node's answer")
        peer = self.peer(request.holder)
        if peer is None:
            raise AgreementError(f"no registered link with {request.holder}")
        now = self._now()
        body: dict[str, Any] = {"kind": "consent", "request": request_id, "granted": grant, "reason": reason}
        consent_rows: list[ConsentRow] = []
        if grant:
            row, jws = self._sign_consent(
                Consent(
                    ConsentKind.THIRD_PARTY,
                    self.party,
                    request.third_party,
                    now,
                    reason or f"granted by {actor.id}",
                    item=request.item_id,
                    holder=request.holder,
                    expires=expires,
                )
            )
            consent_rows.append(row)
            body["consent"] = jws
        entry = self._queue(peer, body, "consent", request.item_id, now)
        state = "granted" if grant else "refused"
        done = self.fed.answer_request(
            request_id,
            state=state,
            now_us=_us(now),
            by=actor.id,
            answer=reason,
            outbox=[entry],
            consents=consent_rows,
            audit=[
                self._row(
                    "consent.answer",
                    actor.id,
                    request.item_id,
                    state,
                    request=request_id,
                    third_party=request.third_party,
                )
            ],
        )
        if not done:
            raise InvalidInputError(f"consent request {request_id} was already answered")
        answered = self.fed.consent_request(request_id)
        if answered is None:
            raise NotFoundError(f"consent request {request_id} vanished")
        return answered

    def _receive_consent(self, opened: Opened, now: datetime, accepted: _Accepted) -> dict[str, Any]:
        body = opened.body
        request_id = body.get("request")
        request = self.fed.consent_request(str(request_id))
        if request is None or request.holder != self.party or request.originator != opened.sender:
            raise InvalidInputError("a consent answer to no request of this node")
        if body.get("granted") is True:
            signer, raw = verify_origin(str(body.get("consent")), self._identities, now)
            consent_id, consent = consent_from_content(raw, signer)
            if consent.item != request.item_id or consent.recipient != request.third_party:
                raise InvalidInputError("the consent does not answer the request")
            accepted.consents.append(self._consent_row(consent_id, consent, str(body["consent"])))
        state = "granted" if body.get("granted") is True else "refused"
        accepted.answers.append((request.id, state, str(body.get("reason") or "")))
        receipt = self._receipt(opened, request.item_id, "recorded", None, now)
        accepted.add_inbox(
            InboxRow(opened.msg_id, opened.sender, "consent", request.item_id, _us(now), "recorded", receipt)
        )
        accepted.audit.append(
            self._row("consent.received", opened.sender, request.item_id, state, request=request.id)
        )
        return {"status": "recorded", "receipt": receipt, "reason": None}


def _peek_item(body: dict[str, Any]) -> str | None:
    """The item id an item message claims, read before verification, only to prefetch in one query."""
    origin = body.get("origin")
    if body.get("kind") != "item" or not isinstance(origin, str) or origin.count(".") != 2:
        return None
    try:
        payload = origin.split(".")[1]
        item = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("item")
    except (ValueError, AttributeError):
        return None
    return item if isinstance(item, str) else None


def _envelope_exp(envelope: str) -> float:
    """The expiry in the JWE protected header (read without decrypting; our own envelope)."""
    jwe = json.loads(envelope)["jwe"]
    header = jwe.split(".", 1)[0]
    data = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    return float(data["exp"])
