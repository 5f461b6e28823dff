"""Federation: identity, inbox, release (one item or a selection), outbox, peers, consent requests.

Routes added by ``create_app``: each handler parses, calls one service method and
presents (``gsomia._present``); who may do what is decided by the service.

No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request, Response

from gsomia._present import (
    envelope_versions_view,
    outbox_view,
    peer_view,
    request_view,
)
from gsomia.api import _models as m
from gsomia.api._fields import Id, Party
from gsomia.api._items import ModelJson
from gsomia.api._refs import item_ref
from gsomia.core.access import Person
from gsomia.core.instants import parse_instant
from gsomia.node import Node
from gsomia.store import EVERY_PARTNER

__all__ = ["add_federation_routes"]

# a key id: the key's RFC 7638 thumbprint (base64url SHA-256, 43 characters), or a partner's own kid
Kid = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9_-]{1,100}$", description="The key's id (its JWK thumbprint).")
]
# whose envelope versions are set: a partner's trigraph, or every partner's cut-off
PartyOrAll = Annotated[
    str, Path(pattern=r"^([A-Z]{3}|all)$", description="A partner's trigraph, or `all`: every partner.")
]


def add_federation_routes(app: FastAPI, node: Node, reader: Callable[..., Awaitable[Person]]) -> None:
    """Add the routes over ``node`` to ``app`` (on the app itself, so that its routes list names every
    method a path serves: the 405's ``Allow``); ``reader`` is the app's authentication dependency."""
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below
    ItemRef = Annotated[str, Depends(item_ref(node, reader))]  # noqa: N806 - the path's item (issue 22 §4)

    # --- federation ---

    @app.get("/identity", tags=["federation"])
    def identity() -> dict[str, Any]:
        """This node's identity document (public keys, endpoint, TLS pins), signed now by its signing
        keys (a JWS in the general JSON serialization), to exchange out of band."""
        return node.exchange.identity()

    # ``retry`` appears only when set: the answer on the wire is the inbox's own, field for field
    @app.post("/inbox", response_model=m.InboxOut, response_model_exclude_defaults=True, tags=["federation"])
    def inbox(body: m.InboxIn, request: Request) -> dict[str, Any]:
        """Envelopes from partner nodes: each is opened, decided, stored once and receipted.

        Authentication is the envelope itself (signed by a registered peer), not a bearer token.
        """
        return {"results": node.inbox(body.envelopes, request.client.host if request.client else None)}

    @app.post("/items/{item_id}/release", status_code=202, response_model=m.OutboxOut, tags=["federation"])
    def release(item_id: ItemRef, body: m.ReleaseIn, person: Caller) -> dict[str, Any]:
        """Release an item to a partner (release officers): decided now and again when sent."""
        row = node.exchange.release(
            person,
            item_id,
            body.recipient,
            via=body.via,
            purpose=body.purpose,
            authorise_relay=body.authorise_relay,
        )
        return outbox_view(row)

    @app.post("/releases", status_code=202, response_model=m.ReleasesOut, tags=["federation"])
    def release_many(body: m.ReleasesIn, person: Caller) -> Response:
        """Release a selection to a partner (release officers), in one transaction: each item is
        decided now as one release is, and again when sent; those that may not go are listed with
        the reason (and audited), the rest are queued."""
        released = node.exchange.release_many(
            person,
            body.items,
            body.recipient,
            via=body.via,
            purpose=body.purpose,
            authorise_relay=body.authorise_relay,
        )
        decisions: dict[str, Any] = {}  # the selection's items share their decisions: each read once
        # written straight from the presenter's dict, in ``ReleasesOut``'s shape (``ModelJson``): FastAPI
        # validated 1,000 entries against the model and wrote each one's ~1.4 KB decision through its
        # serialiser and ``json`` (issue 18); the shared decision is walked once, written by orjson
        return ModelJson(
            {
                "queued": [outbox_view(r, decisions) for r in released.entries],
                "refused": [{"item": r.subject, "reason": r.reason} for r in released.refused],
            },
            status_code=202,
        )

    @app.get("/outbox", response_model=list[m.OutboxOut], tags=["federation"])
    def outbox(
        person: Caller,
        state: Literal["pending", "exported", "delivered", "undeliverable"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        every: Annotated[
            bool,
            Query(
                alias="all",
                description="Every entry, including those about items the caller may not read "
                "(security officers; audited).",
            ),
        ] = False,
    ) -> list[dict[str, Any]]:
        """What this node sent or is sending, with receipts and reasons: the entries about items
        the caller may read (and those about no item)."""
        rows = node.exchange.outbox_seen_by(person, state=state, limit=limit, every=every)
        decisions: dict[str, Any] = {}
        return [outbox_view(r, decisions) for r in rows]

    @app.post("/outbox/{msg_id}/resend", response_model=m.OutboxOut, tags=["federation"])
    def resend(msg_id: Id, person: Caller) -> dict[str, Any]:
        """Send an undeliverable message (a duty, a consent) again (release or security officers): a
        fresh envelope, the same signed body and message id. An item is released again instead."""
        return outbox_view(node.exchange.resend(person, msg_id))

    @app.get("/peers", response_model=list[m.PeerOut], tags=["federation"])
    def peers(person: Caller) -> list[dict[str, Any]]:
        """The registered partner nodes and the agreements each link serves."""
        return [peer_view(p, links) for p, links in node.exchange.peers()]

    @app.post("/peers", status_code=201, response_model=m.PeerOut, tags=["federation"])
    def add_peer(body: m.PeerIn, person: Caller) -> dict[str, Any]:
        """Register a partner's identity document for the named agreements (administrators)."""
        return peer_view(
            node.exchange.register_peer(person, body.document, body.agreements, replace=body.replace),
            body.agreements,
        )

    @app.get("/peers/envelopes", response_model=list[m.EnvelopeVersionOut], tags=["federation"])
    def envelope_versions(person: Caller) -> list[dict[str, Any]]:
        """The envelope versions this node opens from its partners: each row stored (a partner's, or
        `all`: a cut-off for every partner) with the lowest the inbox in fact opens now (`effective`)."""
        rows = node.exchange.envelope_versions()
        return envelope_versions_view(rows.values(), node.exchange.envelope_floors(rows))

    @app.put("/peers/envelopes/{party}", response_model=list[m.EnvelopeVersionOut], tags=["federation"])
    def set_envelope_versions(
        party: PartyOrAll, body: m.EnvelopeVersionIn, person: Caller
    ) -> list[dict[str, Any]]:
        """Set the lowest envelope version opened from a partner (`all`: from every partner, from an
        instant `from` on, a cut-off that holds after a clock is set back) (administrators and
        security officers). Lowering a partner's is allowed (a partner back on an older release); its
        own next COSE envelope, issued after the setting, raises it again. Audited as
        `envelope.versions`, refusals too. Answers every row as `GET /peers/envelopes` does."""
        since = parse_instant(body.since, node.kernel.timezone) if body.since else None
        who = EVERY_PARTNER if party == "all" else party
        node.exchange.set_envelope_versions(person, who, body.lowest, since)
        return envelope_versions(person)

    @app.post("/peers/{party}/keys/{kid}/revoke", response_model=m.KeyRevokedOut, tags=["federation"])
    def revoke_peer_key(party: Party, kid: Kid, body: m.KeyRevokeIn, person: Caller) -> dict[str, Any]:
        """Refuse a partner's key from an instant on (security officers), as told through the
        diplomatic channel: every process of this node refuses it within a second. Idempotent: a
        key revoked at that instant or earlier already is left as it is (``changed`` false, nothing
        audited); an unknown party or key is 404. Audited as ``key.revoke``, refusals too."""
        at = parse_instant(body.at, node.kernel.timezone) if body.at else node.clock()
        done = node.exchange.revoke_peer_key(person, party, kid, at)
        return {
            "peer": peer_view(done.peer, done.links),
            "kid": done.kid,
            "revoked_at": done.revoked_at.isoformat(),
            "changed": done.changed,
        }

    @app.post("/items/{item_id}/consent-requests", status_code=202, tags=["federation"])
    def request_consent(item_id: ItemRef, body: m.ConsentRequestIn, person: Caller) -> dict[str, str]:
        """Ask the originator for consent to pass the item on to a third party."""
        return {
            "id": node.exchange.request_consent(person, item_id, body.third_party, body.purpose, body.reason)
        }

    @app.get("/consent-requests", response_model=list[m.ConsentRequestOut], tags=["federation"])
    def consent_requests(
        person: Caller,
        state: Literal["pending", "granted", "refused"] | None = None,
        after: Annotated[
            str | None,
            Query(pattern=r"^[0-9a-f]{32}$", description="The id of the last request of the previous page."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Consent requests this node made or must answer, oldest first, a page at a time: those about
        items the caller may read."""
        rows = node.exchange.consent_requests_seen_by(person, state, after=after, limit=limit)
        return [request_view(r) for r in rows]

    @app.post("/items/{item_id}/purpose-consents", status_code=202, tags=["federation"])
    def grant_purpose(item_id: ItemRef, body: m.PurposeConsentIn, person: Caller) -> dict[str, str]:
        """As originator, consent to a holder using the item for another purpose (Art. 6(b)):
        signed, sent to the holder; it unlocks that purpose, for that holder, of that item only."""
        expires = parse_instant(body.expires, node.kernel.timezone) if body.expires else None
        row = node.exchange.grant_purpose(
            person, item_id, body.holder.upper(), body.purpose, body.reason, expires=expires
        )
        return {"consent": row.id, "holder": row.recipient, "purpose": body.purpose}

    @app.get("/assurances", response_model=list[m.AssuranceOut], tags=["federation"])
    def assurances(person: Caller) -> list[dict[str, Any]]:
        """The recipients' assurances before provision on file (Art. 7(5)): this node's and its
        partners', revoked or not, and whether each signature verifies (one that does not counts
        for nothing)."""
        return node.exchange.assurances_view(person)

    @app.post("/assurances", status_code=201, response_model=m.AssuranceOut, tags=["federation"])
    def give_assurance(body: m.AssuranceIn, person: Caller) -> dict[str, Any]:
        """Give this party's assurance under an agreement (clearance level, official purpose,
        equivalent protection): signed, stored, sent to every partner whose link serves it."""
        row = node.exchange.give_assurance(person, body.agreement, body.reference)
        return next(a for a in node.exchange.assurances_view(person) if a["id"] == row.id)

    @app.post("/assurances/{assurance_id}/revoke", response_model=m.AssuranceOut, tags=["federation"])
    def revoke_assurance(assurance_id: Id, body: m.AssuranceRevokeIn, person: Caller) -> dict[str, Any]:
        """Revoke this party's assurance, here and at every partner it went to."""
        row = node.exchange.revoke_assurance(person, assurance_id, body.reason)
        return next(a for a in node.exchange.assurances_view(person) if a["id"] == row.id)

    @app.post(
        "/consent-requests/{request_id}/answer", response_model=m.ConsentRequestOut, tags=["federation"]
    )
    def answer(
        request_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], body: m.ConsentAnswerIn, person: Caller
    ) -> dict[str, Any]:
        """As originator, grant (a signed consent) or refuse a holder's request."""
        tz = node.kernel.timezone
        expires = parse_instant(body.expires, tz) if body.expires else None
        return request_view(
            node.exchange.answer_consent(
                person, request_id, grant=body.grant, reason=body.reason, expires=expires
            )
        )
