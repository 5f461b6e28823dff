"""Peers and keys: partners' identity documents pinned to the agreements each G2G link
serves (Art. 9), this node's key rotation, and revocation of a partner's key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from gsomia._codec import canonical
from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.core.policy import ReleaseDecision
from gsomia.crypto.keys import PeerIdentity
from gsomia.errors import AgreementError, ConflictError, GsomiaError, InvalidInputError, NotFoundError
from gsomia.exchange._base import ExchangeBase
from gsomia.store import PeerRow

__all__ = ["KeyRevocation", "Peers"]


@dataclasses.dataclass(frozen=True, slots=True)
class KeyRevocation:
    """A partner's key revoked (:meth:`Peers.revoke_peer_key`): the registration as it stands after,
    the agreements its link serves, the key, the instant it is refused from, and whether this call
    changed anything (``False``: it was revoked at that instant or earlier already)."""

    peer: PeerIdentity
    links: frozenset[str]
    kid: str
    revoked_at: datetime
    changed: bool


def _revoked_at(identity: PeerIdentity, kid: str, asked: datetime) -> datetime:
    """When ``kid`` is refused from, as ``identity`` holds it (``asked`` if it is not revoked)."""
    entry = next(e for e in identity.keys if e.kid == kid)
    return asked if entry.revoked_at is None else entry.revoked_at


# how many times a registration or a revocation decides again when another process changed the
# registrations between its read and its write (compare-and-set on the peers' generation)
_ATTEMPTS = 5
_CHANGED = "the registered peers kept changing meanwhile (another process writing them): try again"


class Peers(ExchangeBase):
    """Who this node exchanges with, under which agreements, with which keys."""

    def identity(self, pins: Sequence[str] = ()) -> dict[str, Any]:
        """This node's identity document, signed now by its signing keys (a JWS in the general JSON
        serialization, :meth:`KeyRing.signed_identity`), to hand to partners out of band; naming
        the pin of the certificate it serves and ``pins`` (a certificate rotation's next one)."""
        tls = self.kernel.tls
        served = () if tls is None else (tls.pin(),)
        named = tuple(dict.fromkeys((*served, *pins)))
        return self.ring.signed_identity(self.kernel.endpoint, self._now(), named)

    def peer(self, party: str) -> PeerIdentity | None:
        return self.kernel.peers.peer(party)

    def links(self, party: str) -> frozenset[str]:
        """The agreements the G2G link with ``party`` is registered for (Art. 9)."""
        return self.kernel.peers.links(party)

    def peers(self) -> list[tuple[PeerIdentity, frozenset[str]]]:
        return self.kernel.peers.all()

    def register_peer(
        self, actor: Person | None, document: Any, agreements: Sequence[str], *, replace: bool = False
    ) -> PeerIdentity:
        """Import a partner's signed identity document and pin it to the agreements the link serves.

        The document must be signed by the keys it names (:meth:`PeerIdentity.from_signed`); for a
        party already registered, also by one of its registered keys valid now, and issued later
        than the registered document. ``replace`` takes a registered party's document afresh, as a
        first registration (its succession not checked: an administrator checked it out of band,
        when the partner's registered keys have all ended, say); it is audited as such."""
        self.kernel.require_any(actor, (Role.ADMINISTRATOR,), "peer.register")
        who = actor.id if actor else "operator"
        try:
            for _ in range(_ATTEMPTS):
                identity = self._register_once(who, document, agreements, replace)
                if identity is not None:
                    break
            else:
                raise ConflictError(_CHANGED)
        except GsomiaError as exc:
            raise self.kernel.refuse("peer.register", who, None, exc) from None
        self.kernel.peers.invalidate()
        return identity

    def _register_once(
        self, who: str, document: Any, agreements: Sequence[str], replace: bool
    ) -> PeerIdentity | None:
        """One decision on what the store holds now, written only if it still holds it (``None``:
        another process changed the registrations meanwhile, decide again)."""
        self.kernel.peers.invalidate()  # what the store holds now, not what this process read last
        read: dict[str, tuple[int, PeerIdentity | None, frozenset[str]]] = {}

        def registered(party: str) -> PeerIdentity | None:
            read[party] = self.kernel.peers.peer_at(party)
            return read[party][1]

        identity = PeerIdentity.from_signed(
            document, self._now(), (lambda _party: None) if replace else registered
        )
        # the registration checked against, and the generation it was read at: the write compares it
        generation, known, _ = read.get(identity.party) or self.kernel.peers.peer_at(identity.party)
        if known is not None:  # a key this node revoked stays revoked, whatever the new document says
            named = {k.kid for k in identity.keys}
            for entry in known.keys:
                if entry.revoked_at is not None and entry.kid in named:
                    identity = identity.with_revoked(entry.kid, entry.revoked_at)
            # and one the new document leaves out is kept, revoked, so that no later document
            # (taken afresh with replace, say) names it back into use
            dropped = tuple(e for e in known.keys if e.revoked_at is not None and e.kid not in named)
            identity = dataclasses.replace(identity, keys=identity.keys + dropped)
        if identity.party == self.party:
            raise InvalidInputError("an identity document of this node's own party is not a peer")
        for pin in identity.tls:  # a certificate names one node: the pin says who connected
            holder = self.kernel.peers.by_certificate(pin)
            if holder is not None and holder.party != identity.party:
                raise InvalidInputError(
                    f"tls: certificate {pin} is named by {holder.party}'s identity already"
                )
        if not agreements:
            raise InvalidInputError("name at least one agreement the link is registered for")
        for agreement_id in agreements:
            agreement = self.kernel.catalogue.agreement(agreement_id)
            if self.party not in agreement.parties or identity.party not in agreement.parties:
                raise AgreementError(
                    f"{agreement_id} is not an agreement between {self.party} and {identity.party}"
                )
        now = epoch_us(self._now())
        row = PeerRow(
            identity.party,
            canonical(identity.to_document()),
            canonical(sorted(set(agreements))),
            now,
            now,
        )
        pins: dict[str, Any] = {"tls": list(identity.tls)} if identity.tls else {}
        audit = self.kernel.audit_row(
            "peer.register",
            who,
            identity.party,
            "allowed",
            agreements=sorted(set(agreements)),
            keys=[k.kid for k in identity.keys],
            issued=None if identity.issued is None else identity.issued.isoformat(),
            replaced=replace and known is not None,  # taken afresh, its succession not checked
            **pins,
        )
        return identity if self.fed.put_peer(row, generation, [audit]) else None

    def rotate_keys(self, actor: Person | None, overlap: timedelta) -> dict[str, Any]:
        """New signing and encryption keys from now; the old ones stay valid for ``overlap``.

        Partners need the new identity document (out of band) before the overlap ends.
        """
        self.kernel.require_any(actor, (Role.ADMINISTRATOR, Role.SECURITY_OFFICER), "key.rotate")
        now = self._now()
        self.ring.rotate(now, overlap)
        identity = self.identity()
        self.kernel.record(
            "key.rotate",
            actor.id if actor else "operator",
            self.party,
            "allowed",
            keys=[entry.kid for entry in self.ring.entries],
            overlap_s=overlap.total_seconds(),
        )
        return identity

    def revoke_peer_key(self, actor: Person | None, party: str, kid: str, at: datetime) -> KeyRevocation:
        """Refuse a partner's key from ``at`` on (told through the diplomatic channel): security
        officers, or the local operator. Written with compare-and-set on the peers' generation, so
        a registration racing it in another process neither writes over it nor is written over.

        Idempotent: a key already revoked at ``at`` or earlier is left as it is, nothing written and
        nothing audited (``changed`` false); an earlier ``at`` moves the revocation earlier. Refusals
        (the role, an unknown party or key) are audited as ``key.revoke`` refused."""
        self.kernel.require_any(actor, (Role.SECURITY_OFFICER,), "key.revoke")
        who = actor.id if actor else "operator"
        try:
            for _ in range(_ATTEMPTS):
                self.kernel.peers.invalidate()  # what the store holds now, not what this process read last
                generation, identity, links = self.kernel.peers.peer_at(party)
                if identity is None:
                    raise NotFoundError(f"{party} is not a registered peer")
                revoked = identity.with_revoked(kid, at)
                if revoked is identity:  # revoked already, from ``at`` or earlier: nothing to change
                    return KeyRevocation(identity, links, kid, _revoked_at(identity, kid, at), changed=False)
                now = epoch_us(self._now())
                row = PeerRow(party, canonical(revoked.to_document()), canonical(sorted(links)), now, now)
                audit = self.kernel.audit_row("key.revoke", who, party, "allowed", kid=kid, at=at.isoformat())
                if self.fed.put_peer(row, generation, [audit]):  # else another write came first: again
                    break
            else:
                raise ConflictError(_CHANGED)
        except GsomiaError as exc:
            raise self.kernel.refuse("key.revoke", who, party, exc) from None
        self.kernel.peers.invalidate()
        return KeyRevocation(revoked, links, kid, at, changed=True)

    def _link(self, party: str, decision: ReleaseDecision) -> PeerIdentity:
        """The registered peer for the next hop, if its link serves the deciding agreement (Art. 9)."""
        peer = self.peer(party)
        if peer is None:
            raise AgreementError(f"no registered link with {party}: import its identity document first")
        if decision.agreement not in self.links(party):
            raise AgreementError(f"the link with {party} is not registered for {decision.agreement} (Art. 9)")
        return peer
