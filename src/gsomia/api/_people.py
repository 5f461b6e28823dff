"""People and their tokens.

Routes added by ``create_app``: each handler parses, calls one service method and
presents (``gsomia._present``); who may do what is decided by the service.

No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Response
from fastapi.security import HTTPAuthorizationCredentials

from gsomia._codec import (
    person_to_dict,
)
from gsomia._present import (
    token_view,
)
from gsomia.api import _models as m
from gsomia.api._fields import BEARER, Id
from gsomia.core.access import Person
from gsomia.node import Node

__all__ = ["add_people_routes"]


def add_people_routes(app: FastAPI, node: Node, reader: Callable[..., Awaitable[Person]]) -> None:
    """Add the routes over ``node`` to ``app`` (on the app itself, so that its routes list names every
    method a path serves: the 405's ``Allow``); ``reader`` is the app's authentication dependency."""
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below

    # --- people and tokens ---

    @app.post("/people", status_code=201, response_model=m.PersonOut, tags=["people"])
    def add_person(body: m.PersonIn, person: Caller) -> dict[str, Any]:
        """Register a person (administrators only)."""
        return person_to_dict(node.people.add_person(person, body.model_dump()))

    @app.get("/people", response_model=list[m.PersonOut], tags=["people"])
    def people(person: Caller) -> list[dict[str, Any]]:
        """The register of people (administrators and security officers)."""
        return [person_to_dict(p) for p in node.people.list_people(person)]

    @app.get("/people/{person_id}", response_model=m.PersonOut, tags=["people"])
    def get_person(person_id: Id, person: Caller) -> dict[str, Any]:
        """One person: yourself, or anyone for administrators and security officers."""
        return person_to_dict(node.people.read_person(person, person_id))

    @app.post("/people/{person_id}/disable", response_model=m.PersonDisabledOut, tags=["people"])
    def disable_person(person_id: str, person: Caller) -> dict[str, Any]:
        """Disable a person (administrators): every token and session of theirs, and every token
        minted from them, is revoked at once; they can no longer authenticate."""
        disabled, revoked = node.people.set_active(person, person_id, False)
        return {"person": person_to_dict(disabled), "revoked": revoked}

    @app.post("/people/{person_id}/enable", response_model=m.PersonDisabledOut, tags=["people"])
    def enable_person(person_id: str, person: Caller) -> dict[str, Any]:
        """Enable a person again (administrators); their revoked tokens stay revoked."""
        enabled, revoked = node.people.set_active(person, person_id, True)
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
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> dict[str, Any]:
        """A new token for yourself, or for anyone (administrators), minted by the caller's token: it
        expires no later, and revoking the caller's token revokes it. Shown once."""
        _, parent = node.credentials.authenticate_row(credentials.credentials if credentials else None)
        token_id, token, expires = node.credentials.issue(person, person_id, body.days, parent=parent)
        return {"id": token_id, "token": token, "expires": expires.isoformat()}

    @app.delete("/tokens/{token_id}", status_code=204, tags=["people"])
    def revoke_token(token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")], person: Caller) -> Response:
        """Revoke a token, and every token minted from it: your own, or anyone's (administrators)."""
        node.credentials.revoke(person, token_id)
        return Response(status_code=204)
