"""The node's REST API: FastAPI over :class:`gsomia.node.Node`, problem details for every error.

Handlers are plain ``def`` so FastAPI runs them in its thread pool: the store is synchronous.
No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at
definition time, and ``Caller`` is local to :func:`create_app`.
"""

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gsomia._codec import (
    agreement_json,
    decision_json,
    label_from_dict,
    person_to_dict,
    state_json,
)
from gsomia._present import (
    audit_view,
    inventory_view,
    item_view,
    outbox_view,
    peer_view,
    request_view,
    token_view,
)
from gsomia._web import dashboard_scope
from gsomia.api import _models as m
from gsomia.api._approvals import approvals_router
from gsomia.api._duties import duties_router
from gsomia.api._fields import MAX_INT, AgreementId, Classification, Id, Instant, Party, Text
from gsomia.api._observe import RequestObserver, metrics_registry, name_actor
from gsomia.api._openapi import refine
from gsomia.api._problems import TAXII_PREFIX, install, problem, taxii_error
from gsomia.api._standards import standards_router
from gsomia.api._stream import stream_router
from gsomia.core.access import Person
from gsomia.core.instants import epoch_us, parse_instant
from gsomia.core.policy import Consent, ConsentKind, ReleaseRequest
from gsomia.errors import InvalidInputError, NotFoundError, UnknownNameError
from gsomia.node import Node
from gsomia.store import ItemFilter
from gsomia.stream import StreamService
from gsomia.taxii import taxii_router
from gsomia.ui import ui_router

__all__ = ["create_app"]

_log = logging.getLogger("gsomia.sender")

_bearer = HTTPBearer(auto_error=False, description="An API token issued by the node")
_BODY_SLACK = 64 * 1024  # room for the label and JSON framing around the payload limit


class _BodyLimit:
    """Refuse a body larger than the node accepts before reading it (413), or of unknown size (411).

    Each refusal is audited through ``record`` like the problem handlers' (``api.refused``).
    """

    def __init__(self, app: ASGIApp, limit: int, record: Callable[[str, str | None, int, str], None]) -> None:
        self.app = app
        self.limit = limit
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            refusal = self._refusal(dict(scope["headers"]))
            if refusal is not None:
                status, slug, title, detail = refusal
                self.record("api.refused", scope.get("path"), status, detail)
                taxii = str(scope.get("path", "")).startswith(TAXII_PREFIX)
                render = taxii_error if taxii else problem
                await render(status, slug, title, detail)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, headers: dict[bytes, bytes]) -> tuple[int, str, str, str] | None:
        length = headers.get(b"content-length")
        if length is None:
            if headers.get(b"transfer-encoding"):
                return 411, "length-required", "Length required", "send a Content-Length header"
            return None
        try:
            size = int(length)
        except ValueError:
            size = -1
        if size < 0:
            return 400, "bad-request", "Bad request", "Content-Length is not a number"
        if size > self.limit:
            detail = f"request body of {size} bytes exceeds this node's limit of {self.limit}"
            return 413, "payload-too-large", "Payload too large", detail
        return None


_JSON_TYPES = (b"application/json", b"application/problem+json", b"application/taxii+json")


class _NoStoreJson:
    """``Cache-Control: no-store`` on every JSON response that does not set its own: what a node
    answers a person (items, labels, people, tokens) must not stay in a browser's or a proxy's cache."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                kind = next((value for name, value in headers if name.lower() == b"content-type"), b"")
                if b"cache-control" not in names and kind.split(b";")[0].strip().startswith(_JSON_TYPES):
                    headers.append((b"cache-control", b"no-store"))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


def _instant_param(node: Node, text: str | None, name: str) -> datetime | None:
    return None if text is None else m.instant_in(node, text, name)


def create_app(
    node: Node,
    *,
    sender: bool = False,
    sender_interval: float | None = None,
    head_every: float | None = None,
    stream: StreamService | None = None,
) -> FastAPI:
    """The ASGI app serving ``node``; with ``sender``, a background thread delivers the outbox.

    ``stream`` is the node's missile-track stream (by default over the in-process bus).
    """
    stream = stream if stream is not None else StreamService(node)
    # the loops' pace is the node's configuration (node.toml) unless a caller (a test) sets it
    sender_interval = node.config.sender_interval if sender_interval is None else sender_interval
    head_every = node.config.head_interval if head_every is None else head_every

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = node.runtime(interval=sender_interval, head_every=head_every) if sender else None
        app.state.runtime = runtime
        if runtime is not None:
            runtime.start()
        yield
        await stream.close()
        if runtime is not None:
            runtime.stop()
        app.state.runtime = None

    app = FastAPI(
        lifespan=lifespan,
        title=f"gsomia node ({node.party})",
        version="0.1.0",
        description="Items, people, agreements and release decisions of one party's gsomia node. "
        "Every error is an RFC 9457 problem document.",
        responses={
            code: {"model": m.Problem, "content": {"application/problem+json": {}}}
            for code in (400, 401, 403, 404, 409, 411, 413, 422)
        },
    )
    install(app, node.record_refusal, node.kernel.recorded)
    written = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document with this node's vocabularies and cross-field rules stated (once)."""
        if app.openapi_schema is None:
            app.openapi_schema = refine(written(), node.catalogue, node.party)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it
    app.add_middleware(
        _BodyLimit, limit=node.config.max_payload_bytes * 2 + _BODY_SLACK, record=node.record_refusal
    )
    app.add_middleware(_NoStoreJson)
    app.state.runtime = None
    registry, requests_seen = metrics_registry(node, stream, lambda: app.state.runtime)
    app.add_middleware(RequestObserver, histogram=requests_seen)  # the outermost: sees every answer
    dashboard = dashboard_scope(node.ring)

    def reader(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Person:
        """The caller: a bearer token, or (reading only, under the dashboard's path) its session.

        The session is never enough to change anything, so a cross-site request cannot act (CSRF).
        """
        if (
            credentials is None
            and request.method in ("GET", "HEAD")
            and request.url.path.startswith(dashboard.path + "/")
        ):
            person = node.credentials.session(request.cookies.get(dashboard.cookie))
        else:
            person = node.authenticate(credentials.credentials if credentials else None)
        name_actor(person.id)
        return person

    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below
    app.include_router(taxii_router(node, reader))
    app.include_router(ui_router(node, reader))
    app.include_router(duties_router(node, reader))
    app.include_router(approvals_router(node, reader))
    app.include_router(standards_router(node, reader))
    app.include_router(stream_router(stream, reader, dashboard=dashboard.path))
    app.state.stream = stream

    @app.get("/healthz", tags=["node"])
    def healthz() -> dict[str, Any]:
        """Liveness: the node answers and knows its party; ``degraded`` while the stream's bus is not
        connected (its state, and how much of its outage buffer is used, under ``bus``)."""
        bus = stream.bus.health()
        status = "ok" if bus.get("state") == "connected" else "degraded"
        return {"status": status, "party": node.party, "bus": bus}

    @app.get(
        "/metrics",
        tags=["node"],
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    def metrics(person: Caller) -> Response:
        """This process's Prometheus metrics (an administrator's token): the outbox's depth and
        delivery lag per peer, the audit log's integration lag, each partner's tree head's age,
        the leases' holders, stream and request counters, refusals by kind."""
        node.require_metrics_reader(person)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def _level_name(text: str | None) -> str | None:
        """A level given by name or alias, as the store keeps it (its national name)."""
        if text is None:
            return None
        for party in node.catalogue.parties.values():
            if party.scheme.has(text):
                return party.scheme.level(text).name
        raise UnknownNameError(f"no party's scheme has the classification {text!r}")

    # --- items ---

    @app.post("/items", status_code=201, response_model=m.ItemOut, tags=["items"])
    def ingest(body: m.ItemIn, person: Caller, response: Response) -> dict[str, Any]:
        """Ingest a labelled item; a received item names where it came from and under which agreement."""
        if (body.payload is None) == (body.payload_base64 is None):
            raise InvalidInputError("give exactly one of payload (JSON) or payload_base64 (bytes)")
        if body.payload_base64 is not None:
            try:
                payload, kind = base64.b64decode(body.payload_base64, validate=True), "bytes"
            except (binascii.Error, ValueError) as exc:
                raise InvalidInputError(f"payload_base64 is not valid base64: {exc}") from exc
        else:
            payload, kind = json.dumps(body.payload, ensure_ascii=False).encode(), "json"
        item = node.ingest(
            person,
            label=body.label,
            payload=payload,
            payload_type=kind,
            item_id=body.id,
            received_from=body.received_from,
            agreement=body.agreement,
        )
        response.headers["Location"] = f"/items/{item.id}"
        return item_view(item)

    @app.get("/items", response_model=m.PageOut, tags=["items"])
    def list_items(
        person: Caller,
        originator: Party | None = None,
        classification: Classification | None = None,
        topic: Text | None = None,
        received_from: Party | None = None,
        created_from: Annotated[Instant | None, Query(description="ISO 8601 instant, inclusive")] = None,
        created_before: Annotated[Instant | None, Query(description="ISO 8601 instant, exclusive")] = None,
        cursor: Annotated[str | None, Query(pattern=r"^s[0-9]{1,19}$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """The items the caller may read, oldest first, a page at a time (keyset cursor)."""
        lo = _instant_param(node, created_from, "created_from")
        hi = _instant_param(node, created_before, "created_before")
        where = ItemFilter(
            originator=node.catalogue.party(originator).code if originator else None,
            classification=_level_name(classification),
            topic=topic,
            received_from=node.catalogue.party(received_from).code if received_from else None,
            created_from_us=None if lo is None else epoch_us(lo),
            created_before_us=None if hi is None else epoch_us(hi),
        )
        page = node.list_items(person, where, cursor, limit)
        return {
            "items": [item_view(i) for i in page.items],
            "next_cursor": page.next_cursor,
        }

    @app.get("/items/{item_id}", response_model=m.ItemContentOut, tags=["items"])
    def read_item(item_id: Id, person: Caller) -> dict[str, Any]:
        """One item with its payload, if the caller may read it (the read is audited either way)."""
        return item_view(*node.read(person, item_id))

    @app.get("/items/{item_id}/inventory", response_model=list[m.InventoryOut], tags=["items"])
    def inventory(item_id: Id, person: Caller) -> list[dict[str, Any]]:
        """Where the item came from, who holds copies, where it was sent."""
        return [inventory_view(r) for r in node.inventory(person, item_id)]

    # --- people and tokens ---

    @app.post("/people", status_code=201, response_model=m.PersonOut, tags=["people"])
    def add_person(body: m.PersonIn, person: Caller) -> dict[str, Any]:
        """Register a person (administrators only)."""
        return person_to_dict(node.add_person(person, body.model_dump()))

    @app.get("/people", response_model=list[m.PersonOut], tags=["people"])
    def people(person: Caller) -> list[dict[str, Any]]:
        """The register of people (administrators and security officers)."""
        return [person_to_dict(p) for p in node.people(person)]

    @app.get("/people/{person_id}", response_model=m.PersonOut, tags=["people"])
    def get_person(person_id: Id, person: Caller) -> dict[str, Any]:
        """One person: yourself, or anyone for administrators and security officers."""
        return person_to_dict(node.read_person(person, person_id))

    @app.post("/people/{person_id}/disable", response_model=m.PersonDisabledOut, tags=["people"])
    def disable_person(person_id: str, person: Caller) -> dict[str, Any]:
        """Disable a person (administrators): every token and session of theirs, and every token
        minted from them, is revoked at once; they can no longer authenticate."""
        disabled, revoked = node.credentials.set_active(person, person_id, False)
        return {"person": person_to_dict(disabled), "revoked": revoked}

    @app.post("/people/{person_id}/enable", response_model=m.PersonDisabledOut, tags=["people"])
    def enable_person(person_id: str, person: Caller) -> dict[str, Any]:
        """Enable a person again (administrators); their revoked tokens stay revoked."""
        enabled, revoked = node.credentials.set_active(person, person_id, True)
        return {"person": person_to_dict(enabled), "revoked": revoked}

    @app.get("/people/{person_id}/tokens", response_model=list[m.TokenInfoOut], tags=["people"])
    def person_tokens(person_id: str, person: Caller) -> list[dict[str, Any]]:
        """A person's tokens and dashboard sessions, never their secrets: yourself, or anyone's
        (administrators)."""
        return [token_view(r) for r in node.credentials.of(person, person_id)]

    @app.post("/people/{person_id}/tokens", status_code=201, response_model=m.TokenOut, tags=["people"])
    def issue_token(
        person_id: Id,
        body: m.TokenIn,
        person: Caller,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> dict[str, Any]:
        """A new token for yourself, or for anyone (administrators), minted by the caller's token: it
        expires no later, and revoking the caller's token revokes it. Shown once."""
        _, parent = node.credentials.authenticate_row(credentials.credentials if credentials else None)
        token_id, token, expires = node.issue_token(person, person_id, body.days, parent=parent)
        return {"id": token_id, "token": token, "expires": expires.isoformat()}

    @app.delete("/tokens/{token_id}", status_code=204, tags=["people"])
    def revoke_token(token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")], person: Caller) -> Response:
        """Revoke a token, and every token minted from it: your own, or anyone's (administrators)."""
        node.revoke_token(person, token_id)
        return Response(status_code=204)

    # --- federation ---

    @app.get("/identity", tags=["federation"])
    def identity() -> dict[str, Any]:
        """This node's identity document (public keys, endpoint), to exchange out of band."""
        return node.exchange.identity()

    @app.post("/inbox", response_model=m.InboxOut, tags=["federation"])
    def inbox(body: m.InboxIn) -> dict[str, Any]:
        """Envelopes from partner nodes: each is opened, decided, stored once and receipted.

        Authentication is the envelope itself (signed by a registered peer), not a bearer token.
        """
        return {"results": node.inbox(body.envelopes)}

    @app.post("/items/{item_id}/release", status_code=202, response_model=m.OutboxOut, tags=["federation"])
    def release(item_id: Id, body: m.ReleaseIn, person: Caller) -> dict[str, Any]:
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
        return [outbox_view(r) for r in rows]

    @app.get("/peers", response_model=list[m.PeerOut], tags=["federation"])
    def peers(person: Caller) -> list[dict[str, Any]]:
        """The registered partner nodes and the agreements each link serves."""
        return [peer_view(p, links) for p, links in node.exchange.peers()]

    @app.post("/peers", status_code=201, response_model=m.PeerOut, tags=["federation"])
    def add_peer(body: m.PeerIn, person: Caller) -> dict[str, Any]:
        """Register a partner's identity document for the named agreements (administrators)."""
        return peer_view(node.exchange.register_peer(person, body.document, body.agreements), body.agreements)

    @app.post("/items/{item_id}/consent-requests", status_code=202, tags=["federation"])
    def request_consent(item_id: Id, body: m.ConsentRequestIn, person: Caller) -> dict[str, str]:
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
        key = None
        if after is not None:
            last = node.exchange.fed.consent_request(after)
            if last is None:
                raise NotFoundError(f"after: no consent request {after}")
            key = (last.created_us, last.id)
        rows = node.exchange.consent_requests_seen_by(person, state, after=key, limit=limit)
        return [request_view(r) for r in rows]

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

    # --- the audit log ---

    @app.get("/audit/head", tags=["audit"])
    def audit_head() -> dict[str, Any]:
        """The latest signed tree head (signed now if the log grew)."""
        head = node.audit.sign_head()
        return {"size": head.size, "root": head.root.hex(), "jws": head.jws}

    @app.get("/audit/inclusion", tags=["audit"])
    def audit_inclusion(entry: Annotated[str, Query(pattern=r"^[0-9a-f]{32}$")]) -> dict[str, Any]:
        """An entry, its leaf index and its inclusion proof in the latest signed head (hashes only
        beyond the entry itself: a partner proves a delivery without seeing other entries)."""
        return node.inclusion_proof(entry)

    @app.get("/audit/consistency", tags=["audit"])
    def audit_consistency(
        first: Annotated[int, Query(ge=1, le=MAX_INT)], second: Annotated[int, Query(ge=1, le=MAX_INT)]
    ) -> dict[str, Any]:
        """The proof that the log of size ``second`` extends the log of size ``first``."""
        return node.consistency_proof(first, second)

    @app.get("/audit/partners", tags=["audit"])
    def audit_partners(person: Caller) -> list[dict[str, Any]]:
        """Each partner's latest signed head and whether its log stayed consistent."""
        return node.audit.partners()

    @app.get("/audit/log", tags=["audit"])
    def audit_log(
        person: Caller,
        since: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
        kind: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9._-]{0,63}$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Audit records after ``since`` (security officers and administrators)."""
        return [audit_view(r) for r in node.audit.records(person, since=since, kind=kind, limit=limit)]

    # --- agreements and decisions ---

    @app.get("/agreements", response_model=list[m.AgreementOut], tags=["agreements"])
    def agreements(person: Caller) -> list[dict[str, Any]]:
        """The agreements this node's party is in."""
        return [agreement_json(a) for a in node.catalogue.agreements_of(node.party)]

    def _agreement(agreement_id: str) -> Any:
        try:
            return node.catalogue.agreement(agreement_id)
        except UnknownNameError as exc:
            raise NotFoundError(str(exc)) from exc

    @app.get("/agreements/{agreement_id}", response_model=m.AgreementOut, tags=["agreements"])
    def agreement(agreement_id: AgreementId, person: Caller) -> dict[str, Any]:
        return agreement_json(_agreement(agreement_id))

    @app.get("/agreements/{agreement_id}/status", response_model=m.StatusOut, tags=["agreements"])
    def status(
        agreement_id: AgreementId,
        person: Caller,
        at: Annotated[
            Instant | None, Query(description="ISO 8601; a bare date is local midnight; default now")
        ] = None,
    ) -> dict[str, Any]:
        """The agreement's state at an instant, with its term end, next deadline and why."""
        subject = _agreement(agreement_id)
        instant = parse_instant(at, subject.timezone) if at else node.clock()
        return state_json(subject.state_at(instant))

    @app.post("/decisions", response_model=m.DecisionOut, tags=["decisions"])
    def decide(body: m.DecisionIn, person: Caller) -> dict[str, Any]:
        """Decide a release as the core would, explaining every check (nothing is sent)."""
        tz = node.kernel.timezone
        at = parse_instant(body.at, tz)
        consents = []
        for c in body.consents:
            try:
                kind = ConsentKind(c.kind)
            except ValueError as exc:
                raise InvalidInputError(
                    f"consent kind {c.kind!r}: use third_party, hub_relay or track_relay"
                ) from exc
            consents.append(
                Consent(
                    kind,
                    c.originator.upper(),
                    c.recipient.upper(),
                    parse_instant(c.given_at, tz),
                    c.reference,
                    c.item,
                    c.holder,
                    c.hub,
                    parse_instant(c.expires, tz) if c.expires else None,
                )
            )
        request = ReleaseRequest(
            label_from_dict(body.label, node.catalogue),
            body.sender.upper(),
            body.recipient.upper(),
            body.purpose,
            tuple(v.upper() for v in body.via),
            body.item,
            tuple(consents),
        )
        return decision_json(node.decide(request, at=at))

    return app
