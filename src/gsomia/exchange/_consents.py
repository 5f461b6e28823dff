"""Consents: those on file (re-verified before use), and the third-party consent workflow
(a holder asks the originator; the originator grants a signed consent or refuses, once).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.core.policy import Consent, ConsentKind
from gsomia.crypto.envelope import Opened, sign_origin, verify_origin
from gsomia.errors import AgreementError, GsomiaError, InvalidInputError, NotFoundError
from gsomia.exchange._assurances import Assurances
from gsomia.exchange._base import CONSENT_READERS, Batch
from gsomia.exchange._messages import consent_content, consent_from_content
from gsomia.store import ConsentRequestRow, ConsentRow, InboxRow

__all__ = ["MAX_PENDING_REQUESTS", "Consents"]

MAX_PENDING_REQUESTS = 100  # a partner's consent requests awaiting an answer at this node, at most
_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def _scoped(holder: str, nonce: str) -> str:
    """A consent request's id on both sides: the holder's nonce (the ``id`` on the wire) bound to the
    holder. Another party that learns the nonce (a hub relaying the request sees it) and sends it
    first makes a request of its own under another id: it cannot take the holder's id away."""
    return hashlib.sha256(f"gsomia-consent-request\x00{holder}\x00{nonce}".encode()).hexdigest()[:32]


_GIVEN = frozenset(
    {"delivered", "exported"}
)  # an item message that reached (or left by file for) its recipient


class Consents(Assurances):
    """Consents on file and the workflow that asks for and answers them."""

    def consents_for(self, originator: str, item_id: str) -> tuple[Consent, ...]:
        return self.verified_consents(self.fed.consents_for(originator, item_id))

    def consent_rows(self, originator: str, item_id: str) -> list[ConsentRow]:
        """The signed consents on file of ``originator`` naming ``item_id``, and its standing ones."""
        return self.fed.consents_for(originator, item_id)

    def verified_consents(
        self, rows: Sequence[ConsentRow], verified: dict[str, Consent] | None = None
    ) -> tuple[Consent, ...]:
        """Consents on file, each re-verified against its originator's signature before use.

        ``verified`` carries the consents one batch (a release of many items, one delivery run)
        verified already, by row id: a standing consent is then verified once per batch, not
        once per item."""
        out = []
        for row in rows:
            consent = verified.get(row.id) if verified is not None else None
            if consent is None:
                _, consent = consent_from_content(
                    verify_origin(row.jws, self._identities, self._now(), own=self.ring)[1], row.originator
                )
                if verified is not None:
                    verified[row.id] = consent
            out.append(consent)
        return tuple(out)

    def sign_consent(self, consent: Consent) -> tuple[ConsentRow, str]:
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
            given_us=epoch_us(consent.given_at),
            expires_us=None if consent.expires is None else epoch_us(consent.expires),
            reference=consent.reference,
            jws=jws,
        )

    def _has_consent(self, consent_id: str) -> bool:
        return self.fed.has_consent(consent_id)

    def consent_requests_seen_by(
        self,
        actor: Person,
        state: str | None = None,
        *,
        after: str | None = None,
        limit: int = 100,
    ) -> list[ConsentRequestRow]:
        """A page of the consent requests (made and to answer) about items ``actor`` may read, oldest
        first, from the one after the request ``after`` (the last of the previous page); those about
        items they may not read are left out and counted nowhere."""
        self.kernel.require_any(actor, CONSENT_READERS, "consent.read")
        key = None
        if after is not None:
            last = self.fed.consent_request(after)
            if last is None:
                raise NotFoundError(f"after: no consent request {after}")
            key = (last.created_us, last.id)
        shown: list[ConsentRequestRow] = []
        while len(shown) < limit:
            rows = self.fed.consent_requests(state, after=key, limit=limit)
            seen = self.kernel.readable_ids(actor, {r.item_id for r in rows}, whole=True)
            shown.extend(r for r in rows if r.item_id in seen)
            if len(rows) < limit:
                break
            key = (rows[-1].created_us, rows[-1].id)
        return shown[:limit]

    def request_consent(
        self, actor: Person, item_id: str, third_party: str, purpose: str, reason: str
    ) -> str:
        """A holder asks the originator for consent to pass ``item_id`` on to ``third_party``."""
        self.kernel.require_any(actor, (Role.RELEASE_OFFICER,), "consent.request")
        item, _ = self.kernel.read_item(actor, item_id)
        originator = item.label.originator  # asked of the item as its originator named it (item.name)
        if originator == self.party:
            raise InvalidInputError("this node originated the item: no consent is needed")
        third = self.kernel.catalogue.party(third_party).code
        peer = self.peer(originator)
        if peer is None:
            raise AgreementError(f"no registered link with {originator}, the originator")
        now = self._now()
        nonce = uuid.uuid4().hex
        request_id = _scoped(self.party, nonce)
        body = {
            "kind": "consent-request",
            "id": nonce,
            "item": item.name,
            "third_party": third,
            "purpose": purpose,
            "reason": reason,
        }
        row = ConsentRequestRow(
            request_id, item_id, originator, self.party, third, purpose, reason, "pending", epoch_us(now)
        )
        entry = self.queue(peer, body, "consent-request", item_id, now)
        self.fed.accept(
            requests=[row],
            outbox=[entry],
            audit=[
                self.kernel.audit_row(
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

    def _receive_consent_request(self, opened: Opened, now: datetime, accepted: Batch) -> dict[str, Any]:
        body = opened.body
        item_id, third, purpose, reason, nonce = (
            body.get(k) for k in ("item", "third_party", "purpose", "reason", "id")
        )
        if not all(isinstance(v, str) and v for v in (item_id, third, purpose, reason, nonce)):
            raise InvalidInputError("consent request: item, third_party, purpose, reason and id are required")
        if not self.links(opened.sender):
            raise AgreementError(f"no registered link with {opened.sender}")
        if not _REQUEST_ID.match(str(nonce)):
            raise InvalidInputError("consent request: the id must be 32 lower-case hex digits")
        request_id = _scoped(opened.sender, str(nonce))
        self._check_request(opened.sender, request_id, str(item_id), str(third), accepted)
        accepted.requests.append(
            ConsentRequestRow(
                request_id,
                str(item_id),
                self.party,
                opened.sender,
                str(third),
                str(purpose),
                str(reason),
                "pending",
                epoch_us(now),
            )
        )
        receipt = self.receipt(opened, str(item_id), "recorded", None, now)
        accepted.add_inbox(
            InboxRow(
                opened.msg_id,
                opened.sender,
                "consent-request",
                str(item_id),
                epoch_us(now),
                "recorded",
                receipt,
            )
        )
        accepted.audit.append(
            self.kernel.audit_row(
                "consent.requested",
                opened.sender,
                str(item_id),
                "allowed",
                request=request_id,
                third_party=third,
            )
        )
        return {"status": "recorded", "receipt": receipt, "reason": None}

    def _check_request(self, holder: str, request_id: str, item_id: str, third: str, accepted: Batch) -> None:
        """A request is recorded only if it can be answered: a fresh id, for an item this node
        originated and gave ``holder``, naming a party of the catalogue other than the two, within
        the per-partner bound of pending requests. Raises (the inbox answers this one message
        refused and goes on with the rest of the batch)."""
        if self.fed.consent_request(request_id) is not None or any(
            r.id == request_id for r in accepted.requests
        ):
            raise InvalidInputError(f"consent request {request_id}: that id is taken")
        row = self.kernel.store.item_of(self.party, item_id)
        given = (
            row is not None
            and row.originator == self.party
            and any(
                e.final_recipient == holder and e.state in _GIVEN for e in self.fed.item_messages(item_id)
            )
        )
        if not given:
            raise InvalidInputError(f"consent request: {self.party} gave {holder} no item {item_id!r}")
        known = self.kernel.catalogue.parties
        if third not in known or third in (holder, self.party):
            raise InvalidInputError(f"consent request: {third!r} is no third party to this item")
        pending = self.fed.pending_requests_from(holder, self.party) + sum(
            1 for r in accepted.requests if r.holder == holder
        )
        if pending >= MAX_PENDING_REQUESTS:
            raise InvalidInputError(
                f"consent request: {holder} has {MAX_PENDING_REQUESTS} requests awaiting an answer already"
            )

    def answer_consent(
        self, actor: Person, request_id: str, *, grant: bool, reason: str, expires: datetime | None = None
    ) -> ConsentRequestRow:
        """The originator grants (a signed consent) or refuses a holder's request, once."""
        self.kernel.require_any(actor, (Role.RELEASE_OFFICER,), "consent.answer")
        request = self.fed.consent_request(request_id)
        if request is None or request.originator != self.party:
            raise NotFoundError(f"no consent request {request_id!r} awaiting this node's answer")
        # only one who may read the item answers for it (the visit window included); to anyone
        # else the item is unknown (the refusal, with its checks, is in the audit records)
        self.kernel.readable(actor, request.item_id, "consent.answer")
        peer = self.peer(request.holder)
        if peer is None:
            raise AgreementError(f"no registered link with {request.holder}")
        now = self._now()
        body: dict[str, Any] = {"kind": "consent", "request": request_id, "granted": grant, "reason": reason}
        consent_rows: list[ConsentRow] = []
        if grant:
            row, jws = self.sign_consent(
                Consent(
                    ConsentKind.THIRD_PARTY,
                    self.party,
                    request.third_party,
                    now,
                    reason or f"granted by {actor.id}",
                    item=request.item_id,
                    holder=request.holder,
                    expires=expires,
                    purpose=request.purpose,
                )
            )
            consent_rows.append(row)
            body["consent"] = jws
        entry = self.queue(peer, body, "consent", request.item_id, now)
        state = "granted" if grant else "refused"
        done = self.fed.answer_request(
            request_id,
            state=state,
            now_us=epoch_us(now),
            by=actor.id,
            answer=reason,
            outbox=[entry],
            consents=consent_rows,
            audit=[
                self.kernel.audit_row(
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

    def grant_purpose(
        self,
        actor: Person,
        item_id: str,
        holder: str,
        purpose: str,
        reason: str,
        *,
        expires: datetime | None = None,
    ) -> ConsentRow:
        """As originator, consent to ``holder`` using ``item_id`` for ``purpose`` besides the one it
        was provided for (Art. 6(b)): a signed ``new_purpose`` consent, kept here and sent to the
        holder. It unlocks reads for that purpose, by that holder, of that item, and nothing else."""
        self.kernel.require_any(actor, (Role.RELEASE_OFFICER,), "consent.purpose")
        _, item, _ = self.kernel.readable(actor, item_id, "consent.purpose")
        try:
            if item.label.originator != self.party:
                raise InvalidInputError(
                    f"only the originator {item.label.originator} consents to a new purpose"
                )
            to = self.kernel.catalogue.party(holder).code
            if to == self.party or not any(
                e.final_recipient == to and e.state in _GIVEN for e in self.fed.item_messages(item_id)
            ):
                raise InvalidInputError(f"{self.party} gave {to} no item {item_id!r}")
            if not purpose.strip() or not reason.strip():
                raise InvalidInputError("name the purpose and the reason")
            if purpose == item.label.purpose:
                raise InvalidInputError(f"item {item_id} was provided for {purpose!r} already")
            peer = self.peer(to)
            if peer is None:
                raise AgreementError(f"no registered link with {to}, the holder")
            now = self._now()
            consent = Consent(
                ConsentKind.NEW_PURPOSE,
                self.party,
                to,
                now,
                reason,
                item=item_id,
                expires=expires,
                purpose=purpose,
            )
            consent_row, jws = self.sign_consent(consent)
            entry = self.queue(
                peer, {"kind": "purpose-consent", "consent": jws}, "purpose-consent", item_id, now
            )
            audit = self.kernel.audit_row(
                "consent.purpose",
                actor.id,
                item_id,
                "allowed",
                holder=to,
                purpose=purpose,
                consent=consent_row.id,
            )
            self.fed.enqueue([entry], [audit], consents=[consent_row])
        except GsomiaError as exc:
            raise self.kernel.refuse("consent.purpose", actor.id, item_id, exc) from None
        return consent_row

    def _receive_purpose_consent(self, opened: Opened, now: datetime, accepted: Batch) -> dict[str, Any]:
        """The originator's consent to a new purpose for an item held here (Art. 6(b)): stored only if
        the originator signed it and sent it itself, for this node, about an item of its held here."""
        jws = opened.body.get("consent")
        if not isinstance(jws, str):
            raise InvalidInputError("purpose consent: the signed consent is required")
        signer, raw = verify_origin(jws, self._identities, now, own=self.ring)
        consent_id, consent = consent_from_content(raw, signer)  # the signer is the originator it names
        if signer != opened.sender:
            raise InvalidInputError(
                f"{opened.sender} passed on {signer}'s consent: the originator sends its own"
            )
        if (
            consent.kind is not ConsentKind.NEW_PURPOSE
            or consent.recipient != self.party
            or consent.item is None
        ):
            raise InvalidInputError("purpose consent: not a consent to a new purpose for an item held here")
        row = self.kernel.store.item_of(signer, consent.item)  # an item is (originator, id)
        if row is None or row.originator != signer:
            raise InvalidInputError(
                f"purpose consent: {signer} originated no item {consent.item!r} held here"
            )
        if not self._has_consent(consent_id) and all(c.id != consent_id for c in accepted.consents):
            accepted.consents.append(self._consent_row(consent_id, consent, jws))
        receipt = self.receipt(opened, consent.item, "recorded", None, now)
        accepted.add_inbox(
            InboxRow(
                opened.msg_id,
                opened.sender,
                "purpose-consent",
                consent.item,
                epoch_us(now),
                "recorded",
                receipt,
            )
        )
        accepted.audit.append(
            self.kernel.audit_row(
                "consent.purpose-received", opened.sender, consent.item, "allowed", purpose=consent.purpose
            )
        )
        return {"status": "recorded", "receipt": receipt, "reason": None}

    def _receive_consent(self, opened: Opened, now: datetime, accepted: Batch) -> dict[str, Any]:
        body = opened.body
        request_id = body.get("request")
        request = self.fed.consent_request(str(request_id))
        if request is None or request.holder != self.party or request.originator != opened.sender:
            raise InvalidInputError("a consent answer to no request of this node")
        if body.get("granted") is True:
            signer, raw = verify_origin(str(body.get("consent")), self._identities, now)
            consent_id, consent = consent_from_content(raw, signer)
            asked = self.kernel.store.get_item(request.item_id)  # the holder's reference for it
            if consent.item != (asked.name if asked else None) or consent.recipient != request.third_party:
                raise InvalidInputError("the consent does not answer the request")
            accepted.consents.append(self._consent_row(consent_id, consent, str(body["consent"])))
        state = "granted" if body.get("granted") is True else "refused"
        accepted.answers.append((request.id, state, str(body.get("reason") or "")))
        receipt = self.receipt(opened, request.item_id, "recorded", None, now)
        accepted.add_inbox(
            InboxRow(
                opened.msg_id, opened.sender, "consent", request.item_id, epoch_us(now), "recorded", receipt
            )
        )
        accepted.audit.append(
            self.kernel.audit_row(
                "consent.received", opened.sender, request.item_id, state, request=request.id
            )
        )
        return {"status": "recorded", "receipt": receipt, "reason": None}
