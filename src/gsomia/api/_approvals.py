"""Two-person release over HTTP: the node's policy, the officers' queue of release requests, and
approve, refuse, withdraw (a router mounted by ``create_app``).

Thin over :class:`gsomia.exchange.Exchange`'s approvals; errors become RFC 9457 problems through
the app's handlers. No ``from __future__ import annotations``: FastAPI reads the annotations.
"""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from gsomia._present import outbox_view, release_request_view
from gsomia.api._fields import Bool, Classification, Id, Party, Words, whole_number
from gsomia.api._models import OutboxOut, ReleaseIn
from gsomia.api._refs import item_ref
from gsomia.core.access import Person
from gsomia.node import Node

__all__ = ["approvals_router"]

_MAX_HOURS = 7 * 24


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PolicyIn(_In):
    above: dict[Party, Classification] = Field(
        default_factory=dict,
        max_length=20,
        description="Per party, a level of its scheme: releases of its items above it need two officers",
    )
    hub_relay: Bool = Field(default=False, description="Releases relayed through a hub need two officers")
    relay_authorisations: Bool = Field(
        default=False, description="Releases that authorise a hub to pass the item on need two officers"
    )
    validity_hours: Annotated[
        int,
        Field(ge=1, le=_MAX_HOURS, description="How long a request waits and an approval lasts, in hours"),
        BeforeValidator(whole_number),  # JSON's 24.0 is 24 (JSON Schema says so); true and "24" are not
        Field(strict=False),
    ] = 24


class PolicyOut(BaseModel):
    above: dict[str, str]
    hub_relay: bool
    relay_authorisations: bool
    validity_seconds: int


class NoteIn(_In):
    reason: Words


class WithdrawIn(_In):
    reason: Annotated[str, Field(max_length=2000)] = ""


class RequestOut(BaseModel):
    id: str
    item_id: str
    originator: str
    classification: str
    route: list[str]
    purpose: str
    authorise_relay: bool
    requester: str
    state: str
    needs: str = Field(description="Why the node's policy asks a second officer")
    requested_at: str
    expires_at: str
    decided_by: str | None
    decided_at: str | None
    note: str | None
    msg_id: str | None
    portions: list[str] | None = Field(
        default=None, description="An item in portions: the portions the approval releases, and no other"
    )


class ApprovedOut(BaseModel):
    request: RequestOut
    outbox: OutboxOut


def approvals_router(node: Node, reader: Callable[..., Awaitable[Person]]) -> APIRouter:
    """The two-person release routes, authenticated by ``reader``."""
    router = APIRouter(tags=["two-person release"])
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below
    ItemRef = Annotated[str, Depends(item_ref(node, reader))]  # noqa: N806 - the path's item (issue 22 §4)
    exchange = node.exchange

    @router.get("/release-policy", response_model=PolicyOut)
    def policy(person: Caller) -> dict[str, Any]:
        """The node's two-person policy (officers and administrators)."""
        return exchange.two_person_view(person)

    @router.put("/release-policy", response_model=PolicyOut)
    def set_policy(body: PolicyIn, person: Caller) -> dict[str, Any]:
        """Replace the node's two-person policy (security officers, administrators); audited."""
        return exchange.set_two_person(
            person,
            above=body.above,
            hub_relay=body.hub_relay,
            relay_authorisations=body.relay_authorisations,
            validity=timedelta(hours=body.validity_hours),
        ).as_data()

    @router.post("/items/{item_id}/release-requests", status_code=201, response_model=RequestOut)
    def request(item_id: ItemRef, body: ReleaseIn, person: Caller) -> dict[str, Any]:
        """Ask a second release officer to approve a release; nothing is queued until approved."""
        row = exchange.request_release(
            person,
            item_id,
            body.recipient,
            via=body.via,
            purpose=body.purpose,
            authorise_relay=body.authorise_relay,
        )
        return release_request_view(row)

    @router.get("/release-requests", response_model=list[RequestOut])
    def queue(
        person: Caller,
        state: Literal["requested", "approved", "refused", "withdrawn"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """The officers' queue: requests whose items the caller may read, oldest first."""
        return [release_request_view(r) for r in exchange.release_requests(person, state=state)[:limit]]

    @router.get("/release-requests/{request_id}", response_model=RequestOut)
    def one(request_id: Id, person: Caller) -> dict[str, Any]:
        """One release request (404 to an officer who may not read its item)."""
        return release_request_view(exchange.release_request(person, request_id))

    @router.post("/release-requests/{request_id}/approve", status_code=202, response_model=ApprovedOut)
    def approve(request_id: Id, person: Caller) -> dict[str, Any]:
        """A second officer approves: the approval is signed and the release queued at once."""
        row, entry = exchange.approve_release(person, request_id)
        return {"request": release_request_view(row), "outbox": outbox_view(entry)}

    @router.post("/release-requests/{request_id}/refuse", response_model=RequestOut)
    def refuse(request_id: Id, body: NoteIn, person: Caller) -> dict[str, Any]:
        """A second officer refuses, with a reason the requester reads; nothing is sent."""
        return release_request_view(exchange.refuse_release(person, request_id, body.reason))

    @router.post("/release-requests/{request_id}/withdraw", response_model=RequestOut)
    def withdraw(request_id: Id, body: WithdrawIn, person: Caller) -> dict[str, Any]:
        """The requester withdraws their request; nothing is sent."""
        return release_request_view(exchange.withdraw_release(person, request_id, body.reason))

    return router
