"""The node's REST API: FastAPI over :class:`gsomia.node.Node`, problem details for every error.

Handlers are plain ``def`` so FastAPI runs them in its thread pool: the store is synchronous.
No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at
definition time, and ``Caller`` is local to :func:`create_app`.
"""

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from gsomia._codec import (
    agreement_json,
    decision_json,
    label_from_dict,
    label_to_dict,
    person_to_dict,
    state_json,
)
from gsomia.api import _models as m
from gsomia.api._problems import install, problem
from gsomia.core.access import Person, Role
from gsomia.core.instants import parse_instant
from gsomia.core.policy import Consent, ConsentKind, ReleaseRequest
from gsomia.errors import InvalidInputError, NotFoundError, UnknownNameError
from gsomia.node._service import Item, Node
from gsomia.store import ItemFilter

__all__ = ["create_app"]

_bearer = HTTPBearer(auto_error=False, description="An API token issued by the node")
_BODY_SLACK = 64 * 1024  # room for the label and JSON framing around the payload limit


class _BodyLimit:
    """Refuse a body larger than the node accepts before reading it (413), or of unknown size (411)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            response = None
            if length is None and headers.get(b"transfer-encoding"):
                response = problem(411, "length-required", "Length required", "send a Content-Length header")
            elif length is not None:
                try:
                    size = int(length)
                except ValueError:
                    size = -1
                if size < 0:
                    response = problem(400, "bad-request", "Bad request", "Content-Length is not a number")
                elif size > self.limit:
                    response = problem(
                        413,
                        "payload-too-large",
                        "Payload too large",
                        f"request body of {size} bytes exceeds this node's limit of {self.limit}",
                    )
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _item_out(item: Item) -> dict[str, Any]:
    return {
        "id": item.id,
        "label": label_to_dict(item.label),
        "received_from": item.received_from,
        "agreement": item.agreement,
        "ingested": item.ingested.isoformat(),
        "ingested_by": item.ingested_by,
        "payload_type": item.payload_type,
        "payload_size": item.payload_size,
    }


def _instant_param(node: Node, text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_instant(text, node.catalogue.agreements_of(node.party)[0].timezone)
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f"{name}: {exc}") from exc


def create_app(node: Node) -> FastAPI:
    """The ASGI app serving ``node``."""
    app = FastAPI(
        title=f"gsomia node ({node.party})",
        version="0.1.0",
        description="Items, people, agreements and release decisions of one party's gsomia node. "
        "Every error is an RFC 9457 problem document.",
        responses={
            code: {"model": m.Problem, "content": {"application/problem+json": {}}}
            for code in (401, 403, 404, 409, 413, 422)
        },
    )
    install(app)
    app.add_middleware(_BodyLimit, limit=node.config.max_payload_bytes * 2 + _BODY_SLACK)

    def reader(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Person:
        return node.authenticate(credentials.credentials if credentials else None)

    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below

    @app.get("/healthz", tags=["node"])
    def healthz() -> dict[str, str]:
        """Liveness: the node answers and knows its party."""
        return {"status": "ok", "party": node.party}

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
        return _item_out(item)

    @app.get("/items", response_model=m.PageOut, tags=["items"])
    def list_items(
        person: Caller,
        originator: str | None = None,
        classification: str | None = None,
        topic: str | None = None,
        received_from: str | None = None,
        created_from: Annotated[str | None, Query(description="ISO 8601 instant, inclusive")] = None,
        created_before: Annotated[str | None, Query(description="ISO 8601 instant, exclusive")] = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """The items the caller may read, oldest first, a page at a time (keyset cursor)."""
        lo = _instant_param(node, created_from, "created_from")
        hi = _instant_param(node, created_before, "created_before")
        where = ItemFilter(
            originator=originator.upper() if originator else None,
            classification=classification,
            topic=topic,
            received_from=received_from.upper() if received_from else None,
            created_from_us=None if lo is None else int(lo.timestamp() * 1_000_000),
            created_before_us=None if hi is None else int(hi.timestamp() * 1_000_000),
        )
        page = node.list_items(person, where, cursor, limit)
        return {
            "items": [_item_out(i) for i in page.items],
            "next_cursor": page.next_cursor,
            "withheld": page.withheld,
        }

    @app.get("/items/{item_id}", response_model=m.ItemContentOut, tags=["items"])
    def read_item(item_id: str, person: Caller) -> dict[str, Any]:
        """One item with its payload, if the caller may read it (the read is audited either way)."""
        item, payload = node.read(person, item_id)
        out = _item_out(item)
        if item.payload_type == "json":
            out["payload"] = json.loads(payload)
        else:
            out["payload_base64"] = base64.b64encode(payload).decode()
        return out

    @app.get("/items/{item_id}/inventory", response_model=list[m.InventoryOut], tags=["items"])
    def inventory(item_id: str, person: Caller) -> list[dict[str, Any]]:
        """Where the item came from, who holds copies, where it was sent."""
        return [
            {
                "at": datetime.fromtimestamp(r.at_us / 1e6).astimezone().isoformat(),
                "kind": r.kind,
                "party": r.party,
                "actor": r.actor,
                "detail": json.loads(r.detail),
            }
            for r in node.inventory(person, item_id)
        ]

    # --- people and tokens ---

    @app.post("/people", status_code=201, response_model=m.PersonOut, tags=["people"])
    def add_person(body: m.PersonIn, person: Caller) -> dict[str, Any]:
        """Register a person (administrators only)."""
        return person_to_dict(node.add_person(person, body.model_dump()))

    @app.get("/people", response_model=list[m.PersonOut], tags=["people"])
    def people(person: Caller) -> list[dict[str, Any]]:
        """The register of people (administrators and security officers)."""
        node.require_any(person, (Role.ADMINISTRATOR, Role.SECURITY_OFFICER), "person.list")
        return [person_to_dict(p) for p in node.people()]

    @app.get("/people/{person_id}", response_model=m.PersonOut, tags=["people"])
    def get_person(person_id: str, person: Caller) -> dict[str, Any]:
        """One person: yourself, or anyone for administrators and security officers."""
        if person_id != person.id:
            node.require_any(person, (Role.ADMINISTRATOR, Role.SECURITY_OFFICER), "person.read")
        return person_to_dict(node.person(person_id))

    @app.post("/people/{person_id}/tokens", status_code=201, response_model=m.TokenOut, tags=["people"])
    def issue_token(person_id: str, body: m.TokenIn, person: Caller) -> dict[str, Any]:
        """A new token for yourself, or for anyone (administrators). Shown once."""
        token_id, token, expires = node.issue_token(person, person_id, body.days)
        return {"id": token_id, "token": token, "expires": expires.isoformat()}

    @app.delete("/tokens/{token_id}", status_code=204, tags=["people"])
    def revoke_token(token_id: str, person: Caller) -> Response:
        """Revoke a token: your own, or anyone's (administrators)."""
        node.revoke_token(person, token_id)
        return Response(status_code=204)

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
    def agreement(agreement_id: str, person: Caller) -> dict[str, Any]:
        return agreement_json(_agreement(agreement_id))

    @app.get("/agreements/{agreement_id}/status", response_model=m.StatusOut, tags=["agreements"])
    def status(
        agreement_id: str,
        person: Caller,
        at: Annotated[
            str | None, Query(description="ISO 8601; a bare date is local midnight; default now")
        ] = None,
    ) -> dict[str, Any]:
        """The agreement's state at an instant, with its term end, next deadline and why."""
        subject = _agreement(agreement_id)
        instant = parse_instant(at, subject.timezone) if at else node.clock()
        return state_json(subject.state_at(instant))

    @app.post("/decisions", response_model=m.DecisionOut, tags=["decisions"])
    def decide(body: m.DecisionIn, person: Caller) -> dict[str, Any]:
        """Decide a release as the core would, explaining every check (nothing is sent)."""
        tz = node.catalogue.agreements_of(node.party)[0].timezone
        at = parse_instant(body.at, tz)
        consents = []
        for c in body.consents:
            try:
                kind = ConsentKind(c.kind)
            except ValueError as exc:
                raise InvalidInputError(f"consent kind {c.kind!r}: use third_party or hub_relay") from exc
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
