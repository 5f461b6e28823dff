"""Equivalence changes between partners: a party's policy update of its side of an agreement's
equivalence table, signed by its node and applied by its partners from the stated instant.

The proposing node's security officer names the agreement, the remappings of its own levels onto
a partner's (or onto none), the instant and a reason; the node numbers it (one sequence per
agreement and party), signs it (``sign_origin``), stores it and queues it for each partner it has
a registered link with, in one transaction, like a label change. A partner's inbox verifies the
signature and that the signer is the party speaking, a party to the agreement, changing only its
own levels, with a sequence number newer than any on file (a replay or a stale change is refused
and audited), and that the table stays protective (classified to classified, monotonic) at every
instant; then it stores the change, which applies from the stated instant, or from its arrival
if that is later: decisions already made, and their audit records, are never rewritten.
Every process of either node rebuilds its catalogue and release engine from the store
(``NodeContext.catalogue``, the ``equivalences`` counter).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gsomia._codec import (
    canonical,
    equivalence_change_from_dict,
    equivalence_change_to_dict,
    json_object,
)
from gsomia.core.access import Person, Role
from gsomia.core.equivalences import AppliedChange, EquivalenceChange, Remap, check_change, with_changes
from gsomia.core.instants import epoch_us
from gsomia.crypto.envelope import EnvelopeError, Opened, sign_origin, verify_origin
from gsomia.errors import AgreementError, GsomiaError, InvalidInputError
from gsomia.exchange._base import Batch
from gsomia.exchange._hops import Hops
from gsomia.store import EquivalenceChangeRow, EquivalenceStore, InboxRow, OutboxRow

__all__ = ["EQUIVALENCE_KIND", "Equivalences"]

EQUIVALENCE_KIND = "equivalence-change"
# Who proposes a change: the security officer, who answers for how classified information is
# protected (the protection rules, incidents, visits); an administrator runs the node and its
# people, and need not be cleared for what the change governs.
PROPOSERS = (Role.SECURITY_OFFICER,)
READERS = (Role.SECURITY_OFFICER, Role.RELEASE_OFFICER, Role.ADMINISTRATOR)
_BATCH_SEEN = "equivalence-sequences"  # Batch.prefetched: the sequences a batch accepted so far
_BATCH_COUNT = "equivalence-counts"  # and how many it accepted, by (agreement, party)
# Changes kept per (agreement, party), at most: a policy update is rare (a few in a decade), and every
# change kept is applied again whenever a process rebuilds its tables, so a partner sending changes
# without end is refused rather than let slow every decision down.
MAX_CHANGES = 64


class Equivalences(Hops):
    """Equivalence changes: proposed here, received from partners, listed."""

    @property
    def _equivalences(self) -> EquivalenceStore:
        return EquivalenceStore(self.kernel.store)

    def equivalence_changes(
        self, actor: Person | None, agreement: str | None = None
    ) -> list[EquivalenceChangeRow]:
        """The changes on file (this node's own and its partners'), by agreement, party and
        sequence (security and release officers, administrators; ``None``: the node's operator)."""
        self.kernel.require_any(actor, READERS, "equivalence.read")
        if agreement is not None:
            agreement = self.kernel.catalogue.agreement(agreement).id
        return self._equivalences.changes(agreement=agreement)

    def propose_equivalence(
        self,
        actor: Person | None,
        agreement: str,
        remaps: Sequence[Remap],
        effective: datetime,
        reason: str,
    ) -> tuple[EquivalenceChangeRow, list[OutboxRow]]:
        """This node's change to its side of ``agreement``'s table from ``effective`` (now or later),
        signed, stored and queued for each partner with a registered link, in one transaction."""
        what = "equivalence.propose"
        actor_id = None if actor is None else actor.id
        try:
            self.kernel.require_any(actor, PROPOSERS, what)
            now = self._now()
            if effective < now:
                raise InvalidInputError(
                    f"an equivalence change takes effect now or later, not at {effective.isoformat()}: "
                    "decisions already made stand as they were made"
                )
            catalogue = self.kernel.catalogue
            subject = catalogue.agreement(agreement)
            self._room_for(subject.id, self.party)
            sequence = self._equivalences.latest(subject.id, self.party) + 1
            proposed = EquivalenceChange(
                subject.id, self.party, sequence, effective, tuple(remaps), reason, now
            )
            change = check_change(catalogue, proposed, self.party)
            with_changes(catalogue, [AppliedChange(change, effective)])  # the table stays protective
            content = canonical(equivalence_change_to_dict(change))
            jws = sign_origin(self.ring, content.encode(), now)
            outbox = []
            unlinked = []
            for partner in sorted(set(subject.parties) - {self.party}):
                peer = self.peer(partner)
                if peer is None:
                    unlinked.append(partner)
                    continue
                body = {"kind": EQUIVALENCE_KIND, "change": jws}
                outbox.append(self.queue(peer, body, EQUIVALENCE_KIND, None, now))
            row = EquivalenceChangeRow(
                subject.id,
                self.party,
                sequence,
                epoch_us(effective),
                epoch_us(effective),
                content,
                actor_id,
                None,
                epoch_us(now),
                jws,
            )
            audit = self.kernel.audit_row(
                what,
                actor_id,
                subject.id,
                "allowed",
                **_detail(change),
                sent_to=[e.recipient for e in outbox],
                no_link=unlinked,
            )
            self.fed.accept(outbox=outbox, audit=[audit], ops=[EquivalenceStore.insert(row)])
        except GsomiaError as exc:
            raise self.kernel.refuse(what, actor_id, agreement, exc) from None
        return row, outbox

    def _receive_equivalence(self, opened: Opened, now: datetime, accepted: Batch) -> dict[str, Any]:
        """A partner's signed change: verified, checked, stored (applies from its instant, or from
        now if that has passed), receipted; anything else refused and audited."""
        what = "equivalence.receive"
        subject = None
        try:
            jws = opened.body.get("change")
            if not isinstance(jws, str):
                raise InvalidInputError("equivalence-change message: 'change' is required")
            if not self.links(opened.sender):
                raise AgreementError(f"no registered link with {opened.sender}")
            signer, content = verify_origin(jws, self._identities, now, own=self.ring)
            if signer != opened.sender:
                raise AgreementError(
                    f"a change signed by {signer} delivered by {opened.sender}: a party sends its own"
                )
            change = equivalence_change_from_dict(json_object(content, "equivalence-change"))
            subject = change.agreement
            catalogue = self.kernel.catalogue
            change = check_change(catalogue, change, signer)
            if self.party not in catalogue.agreement(change.agreement).parties:
                raise AgreementError(f"{self.party} is not a party to {change.agreement}")
            seen: dict[tuple[str, str], int] = accepted.prefetched.setdefault(_BATCH_SEEN, {})
            key = (change.agreement, change.party)
            latest = max(self._equivalences.latest(*key), seen.get(key, 0))
            if change.sequence <= latest:
                raise AgreementError(
                    f"{change.name} is not newer than change {latest} on file: a replay or a stale "
                    "change is not applied"
                )
            self._room_for(*key, pending=accepted.prefetched.get(_BATCH_COUNT, {}).get(key, 0))
            applies = max(change.effective, now)
            with_changes(catalogue, [AppliedChange(change, applies)])  # protective at every instant
        except EnvelopeError as exc:
            return self._refuse_equivalence(
                accepted, exc.detail, opened, subject, exc.detail, "envelope refused"
            )
        except GsomiaError as exc:
            return self._refuse_equivalence(accepted, type(exc).__name__, opened, subject, str(exc), str(exc))
        seen[key] = change.sequence
        counts: dict[tuple[str, str], int] = accepted.prefetched.setdefault(_BATCH_COUNT, {})
        counts[key] = counts.get(key, 0) + 1
        row = EquivalenceChangeRow(
            change.agreement,
            change.party,
            change.sequence,
            epoch_us(change.effective),
            epoch_us(applies),
            canonical(equivalence_change_to_dict(change)),
            None,
            opened.sender,
            epoch_us(now),
            jws,
        )
        accepted.ops.append(EquivalenceStore.insert(row))
        receipt = self.receipt(opened, None, "applied", None, now)
        accepted.add_inbox(
            InboxRow(opened.msg_id, opened.sender, EQUIVALENCE_KIND, None, epoch_us(now), "applied", receipt)
        )
        late = {} if applies == change.effective else {"applies": applies.isoformat()}
        accepted.audit.append(
            self.kernel.audit_row(
                what,
                opened.sender,
                change.agreement,
                "allowed",
                msg_id=opened.msg_id,
                **_detail(change),
                **late,
            )
        )
        return {"status": "applied", "receipt": receipt, "reason": None}

    def _room_for(self, agreement: str, party: str, pending: int = 0) -> None:
        if self._equivalences.count(agreement, party) + pending >= MAX_CHANGES:
            raise AgreementError(
                f"{party} has {MAX_CHANGES} equivalence changes to {agreement} on file, the most this node "
                "keeps: the parties settle the table in their data files instead"
            )

    def _refuse_equivalence(
        self, accepted: Batch, code: str, opened: Opened, agreement: str | None, reason: str, public: str
    ) -> dict[str, Any]:
        """Refused, audited in bounded space per sender and ``code`` (:meth:`tally_refused`)."""
        return self.refused(
            accepted,
            "equivalence.receive",
            code,
            opened.sender,
            agreement,
            reason,
            public,
            msg_id=opened.msg_id,
        )


def _detail(change: EquivalenceChange) -> dict[str, Any]:
    return {
        "party": change.party,
        "sequence": change.sequence,
        "effective": change.effective.isoformat(),
        "remaps": equivalence_change_to_dict(change)["remaps"],
        "reason": change.reason,
    }
