"""The recipients' assurances before provision (ROK–Japan GSOMIA Art. 7(5)).

Before information is provided, the recipient party assures that it will be given the clearance
level asked, used only for official purposes, and protected as the providing party protects it.
A node gives its party's assurance per agreement: signed by the node (JWS, like a consent), dated,
stored in its own store and sent, as an ``assurance`` message, to every partner whose link serves
that agreement; a partner that cannot be reached by the network imports the signed document from a
file. A revocation is signed the same way and travels the same paths; it is written once.

Every release decision (the sender's, the hub's, the recipient's on arrival, the stream's) asks
:meth:`Assurances.assurances_on_file`: the assurances in the store, each verified against its
party's key, read again when any process of the node changes them (the ``assurances`` generation).
An assurance that does not verify counts for nothing (the release engine then refuses).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from gsomia._codec import canonical, instant_from_json, json_object, text_field
from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.core.policy import Assurance
from gsomia.crypto.envelope import EnvelopeError, Opened, sign_origin, verify_origin, verify_origin_until
from gsomia.errors import AgreementError, GsomiaError, InvalidInputError, NotFoundError
from gsomia.exchange._base import Batch
from gsomia.exchange._peers import Peers
from gsomia.kernel import from_us
from gsomia.store import ASSURANCES, KEYS, PEERS, AssuranceRow, AssuranceStore, InboxRow, Op

__all__ = ["ASSURANCE_KIND", "ASSURES", "Assurances"]

ASSURANCE_KIND = "assurance"  # the inbox's message kind
ASSURES = ("clearance", "official-purpose", "equivalent-protection")  # what Art. 7(5) asks assured
_GIVERS = (Role.SECURITY_OFFICER, Role.ADMINISTRATOR)
_READERS = (Role.SECURITY_OFFICER, Role.RELEASE_OFFICER, Role.ADMINISTRATOR)


def assurance_content(assurance: Assurance) -> bytes:
    return canonical(
        {
            "v": 1,
            "kind": "assurance",
            "id": assurance.id,
            "agreement": assurance.agreement,
            "party": assurance.party,
            "given_at": assurance.given_at.isoformat(),
            "reference": assurance.reference,
            "assures": list(ASSURES),
        }
    ).encode()


def revocation_content(assurance_id: str, party: str, revoked_at: datetime, reason: str) -> bytes:
    return canonical(
        {
            "v": 1,
            "kind": "assurance-revocation",
            "id": assurance_id,
            "party": party,
            "revoked_at": revoked_at.isoformat(),
            "reason": reason,
        }
    ).encode()


def _assurance_from(content: bytes, signer: str) -> Assurance:
    data = json_object(content, "assurance")
    if data.get("v") != 1 or data.get("kind") != "assurance":
        raise InvalidInputError("assurance: not a version 1 assurance")
    party = text_field(data, "party", "assurance")
    if party != signer:
        raise InvalidInputError(f"assurance: signed by {signer}, but speaks for {party}")
    if data.get("assures") != list(ASSURES):
        raise InvalidInputError(f"assurance.assures: must be {', '.join(ASSURES)} (Art. 7(5))")
    return Assurance(
        text_field(data, "agreement", "assurance"),
        party,
        instant_from_json(data.get("given_at"), "assurance.given_at"),
        text_field(data, "reference", "assurance"),
        id=text_field(data, "id", "assurance"),
    )


def _revocation_from(content: bytes, signer: str) -> tuple[str, datetime]:
    data = json_object(content, "assurance revocation")
    if data.get("v") != 1 or data.get("kind") != "assurance-revocation":
        raise InvalidInputError("assurance revocation: not a version 1 revocation")
    if text_field(data, "party", "assurance revocation") != signer:
        raise InvalidInputError(f"assurance revocation: signed by {signer}, but speaks for another party")
    return (
        text_field(data, "id", "assurance revocation"),
        instant_from_json(data.get("revoked_at"), "assurance revocation.revoked_at"),
    )


class Assurances(Peers):
    """Assurances given by this node and received from partners; the ones on file, verified."""

    # (the generations read under, the assurances verified then, the first instant one of their
    # verifications stops holding: a signing key's end or revocation)
    _assured: tuple[tuple[int, int, int], tuple[Assurance, ...], float] | None = None

    @property
    def assurance_store(self) -> AssuranceStore:
        return AssuranceStore(self.kernel.store)

    # --- what every release decision reads ---

    def assurances_on_file(self, at: datetime | None = None) -> tuple[Assurance, ...]:
        """The assurances in the store, each verified against its signer's key at ``at`` (now by
        default; one that does not verify is left out: fail closed), read again when any process
        changes them or the keys, and once ``at`` reaches the end of a key one was verified with.
        Each carries that end (``Assurance.verified_until``), so a decision at a later instant on
        a tuple kept meanwhile does not count it either."""
        at = self._now() if at is None else at
        watch = self.kernel.watch
        generation = (watch.generation(ASSURANCES), watch.generation(PEERS), watch.generation(KEYS))
        held = self._assured
        if held is not None and held[0] == generation and at.timestamp() < held[2]:
            return held[1]
        out = []
        for row in self.assurance_store.all():
            try:
                out.append(self._verified(row, at))
            except (EnvelopeError, GsomiaError):
                continue
        found = tuple(out)
        ends = [a.verified_until.timestamp() for a in found if a.verified_until is not None]
        self._assured = (generation, found, min(ends, default=float("inf")))
        return found

    def _verified(self, row: AssuranceRow, now: datetime) -> Assurance:
        signer, raw, until = verify_origin_until(row.jws, self._identities, now, own=self.ring)
        assurance = _assurance_from(raw, signer)
        if (assurance.id, assurance.agreement, assurance.party) != (row.id, row.agreement, row.party):
            raise InvalidInputError("assurance: the stored row does not match its signed document")
        revoked_at = None
        if row.revoked_us is not None:
            revoked_at = from_us(row.revoked_us)
            if row.revocation is not None:
                revoker, raw, revocation_until = verify_origin_until(
                    row.revocation, self._identities, now, own=self.ring
                )
                assurance_id, revoked_at = _revocation_from(raw, revoker)
                if assurance_id != row.id or revoker != signer:
                    raise InvalidInputError("assurance: the stored revocation is not this assurance's")
                ends = [end for end in (until, revocation_until) if end is not None]
                until = min(ends, default=None)
        return Assurance(
            assurance.agreement,
            assurance.party,
            assurance.given_at,
            assurance.reference,
            revoked_at,
            assurance.id,
            verified_until=until,
        )

    # --- giving and revoking this node's assurance ---

    def give_assurance(
        self,
        actor: Person | None,
        agreement: str,
        reference: str,
        *,
        given_at: datetime | None = None,
        send: bool = True,
    ) -> AssuranceRow:
        """This party's assurance under ``agreement`` (Art. 7(5)), signed, stored and, with
        ``send``, queued for every partner whose link serves the agreement. ``given_at`` records an
        assurance given earlier (on paper): only the node's operator (``actor`` ``None``) backdates."""
        who = actor.id if actor is not None else "operator"
        try:
            self.kernel.require_any(actor, _GIVERS, "assurance.give")
            if not reference.strip():
                raise InvalidInputError("an assurance needs a reference (the instrument that gives it)")
            governing = self.kernel.catalogue.agreement(agreement)
            if self.party not in governing.parties:
                raise AgreementError(f"{self.party} is not a party to {governing.id}")
            now = self._now()
            if given_at is not None and actor is not None:
                raise InvalidInputError("only the node's operator records an assurance given earlier")
            assurance = Assurance(governing.id, self.party, given_at or now, reference, id=uuid.uuid4().hex)
            jws = sign_origin(self.ring, assurance_content(assurance), now)
            row = AssuranceRow(
                assurance.id, assurance.agreement, self.party, epoch_us(assurance.given_at), reference, jws
            )
            outbox = (
                self._to_partners(governing.id, {"kind": ASSURANCE_KIND, "assurance": jws}, now)
                if send
                else []
            )
            audit = self.kernel.audit_row(
                "assurance.give",
                who,
                governing.id,
                "allowed",
                assurance=assurance.id,
                given_at=assurance.given_at.isoformat(),
                reference=reference,
                sent_to=[e.recipient for e in outbox],
            )
            self.fed.accept(ops=[self.assurance_store.put(row)], outbox=outbox, audit=[audit])
        except GsomiaError as exc:
            raise self.kernel.refuse("assurance.give", who, agreement, exc) from None
        return row

    def revoke_assurance(self, actor: Person | None, assurance_id: str, reason: str) -> AssuranceRow:
        """Revoke this party's assurance, signed, here and at every partner it went to: from now
        on no release to this party under the agreement passes (Art. 7(5))."""
        who = actor.id if actor is not None else "operator"
        try:
            self.kernel.require_any(actor, _GIVERS, "assurance.revoke")
            if not reason.strip():
                raise InvalidInputError("give the reason for the revocation")
            row = self.assurance_store.get(assurance_id)
            if row is None or row.party != self.party:
                raise NotFoundError(f"no assurance {assurance_id!r} of {self.party} at this node")
            if row.revoked_us is not None:
                raise InvalidInputError(f"assurance {assurance_id} was revoked already")
            now = self._now()
            revocation = sign_origin(self.ring, revocation_content(row.id, self.party, now, reason), now)
            body = {"kind": ASSURANCE_KIND, "assurance": row.jws, "revocation": revocation}
            outbox = self._to_partners(row.agreement, body, now)
            audit = self.kernel.audit_row(
                "assurance.revoke", who, row.agreement, "allowed", assurance=row.id, reason=reason,
                sent_to=[e.recipient for e in outbox],
            )  # fmt: skip
            self.fed.accept(
                ops=[self.assurance_store.revoke(row.id, epoch_us(now), revocation)],
                outbox=outbox,
                audit=[audit],
            )
        except GsomiaError as exc:
            raise self.kernel.refuse("assurance.revoke", who, assurance_id, exc) from None
        revoked = self.assurance_store.get(assurance_id)
        if revoked is None:
            raise NotFoundError(f"assurance {assurance_id} vanished")
        return revoked

    def _to_partners(self, agreement: str, body: dict[str, Any], now: datetime) -> list[Any]:
        out = []
        for party in sorted(self.kernel.catalogue.agreement(agreement).parties):
            peer = self.peer(party) if party != self.party else None
            if peer is not None and agreement in self.links(party):
                out.append(self.queue(peer, body, ASSURANCE_KIND, None, now))
        return out

    # --- partners' assurances: by message or from a file ---

    def assurance_document(self, actor: Person | None, assurance_id: str) -> dict[str, Any]:
        """An assurance on file as the signed document a partner imports (with its revocation)."""
        self.kernel.require_any(actor, _READERS, "assurance.read")
        row = self.assurance_store.get(assurance_id)
        if row is None:
            raise NotFoundError(f"no assurance {assurance_id!r} at this node")
        document: dict[str, Any] = {"kind": ASSURANCE_KIND, "assurance": row.jws}
        if row.revocation is not None:
            document["revocation"] = row.revocation
        return document

    def import_assurance(self, actor: Person | None, document: Any) -> Assurance:
        """A partner's signed assurance (and revocation) brought by file; checked as the inbox checks one."""
        who = actor.id if actor is not None else "operator"
        try:
            self.kernel.require_any(actor, _GIVERS, "assurance.import")
            if not isinstance(document, dict):
                raise InvalidInputError("an assurance document is a JSON object")
            assurance, ops, revoked = self._accept(document, self._now(), sender=None)
            audit = self.kernel.audit_row(
                "assurance.import", who, assurance.agreement, "allowed",
                assurance=assurance.id, party=assurance.party, revoked=revoked,
            )  # fmt: skip
            self.fed.accept(ops=ops, audit=[audit])
        except GsomiaError as exc:
            raise self.kernel.refuse("assurance.import", who, None, exc) from None
        return assurance

    def _accept(
        self, document: dict[str, Any], now: datetime, sender: str | None
    ) -> tuple[Assurance, list[Op], bool]:
        jws = document.get("assurance")
        if not isinstance(jws, str):
            raise InvalidInputError("assurance: the signed assurance is required")
        signer, raw = verify_origin(jws, self._identities, now, own=self.ring)
        if signer == self.party:
            raise InvalidInputError("this node's own assurance is on file where it was given")
        if sender is not None and signer != sender:
            raise InvalidInputError(f"{sender} passed on {signer}'s assurance: a party gives its own")
        assurance = _assurance_from(raw, signer)
        governing = self.kernel.catalogue.agreement(assurance.agreement)
        if signer not in governing.parties or assurance.agreement not in self.links(signer):
            raise AgreementError(
                f"the link with {signer} is not registered for {assurance.agreement} (Art. 9)"
            )
        row = AssuranceRow(
            assurance.id, assurance.agreement, signer, epoch_us(assurance.given_at), assurance.reference, jws
        )
        ops = [self.assurance_store.put(row)]
        revocation = document.get("revocation")
        if revocation is None:
            return assurance, ops, False
        if not isinstance(revocation, str):
            raise InvalidInputError("assurance: the revocation is a signed document")
        revoker, raw = verify_origin(revocation, self._identities, now, own=self.ring)
        assurance_id, revoked_at = _revocation_from(raw, revoker)
        if revoker != signer or assurance_id != assurance.id:
            raise InvalidInputError("assurance: the revocation is not this assurance's, by its party")
        ops.append(self.assurance_store.revoke(assurance.id, epoch_us(revoked_at), revocation))
        return assurance, ops, True

    def _receive_assurance(self, opened: Opened, now: datetime, accepted: Batch) -> dict[str, Any]:
        assurance, ops, revoked = self._accept(opened.body, now, sender=opened.sender)
        accepted.ops += ops
        receipt = self.receipt(opened, None, "recorded", None, now)
        accepted.add_inbox(
            InboxRow(opened.msg_id, opened.sender, ASSURANCE_KIND, None, epoch_us(now), "recorded", receipt)
        )
        accepted.audit.append(
            self.kernel.audit_row(
                "assurance.received",
                opened.sender,
                assurance.agreement,
                "allowed",
                assurance=assurance.id,
                given_at=assurance.given_at.isoformat(),
                revoked=revoked,
            )
        )
        return {"status": "recorded", "receipt": receipt, "reason": None}

    def assurances_view(self, actor: Person | None) -> list[dict[str, Any]]:
        """The assurances on file, as people read them: whose, under what, since when, revoked when,
        and whether its signature verifies now."""
        self.kernel.require_any(actor, _READERS, "assurance.read")
        shown = []
        for row in self.assurance_store.all():
            try:
                self._verified(row, self._now())
                verified = True
            except (EnvelopeError, GsomiaError):
                verified = False
            shown.append(
                {
                    "id": row.id,
                    "agreement": row.agreement,
                    "party": row.party,
                    "given_at": from_us(row.given_us).isoformat(),
                    "reference": row.reference,
                    "revoked_at": None if row.revoked_us is None else from_us(row.revoked_us).isoformat(),
                    "verified": verified,
                }
            )
        return shown
