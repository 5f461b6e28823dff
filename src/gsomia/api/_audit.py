"""The audit log: signed heads, proofs, partners' heads, records.

Routes added by ``create_app``: each handler parses, calls one service method and
presents (``gsomia._present``); who may do what is decided by the service.

No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query

from gsomia._present import (
    audit_view,
)
from gsomia.api import _models as m
from gsomia.api._fields import MAX_INT, Party
from gsomia.core.access import Person
from gsomia.node import Node

__all__ = ["add_audit_routes"]


def add_audit_routes(app: FastAPI, node: Node, reader: Callable[..., Awaitable[Person]]) -> None:
    """Add the routes over ``node`` to ``app`` (on the app itself, so that its routes list names every
    method a path serves: the 405's ``Allow``); ``reader`` is the app's authentication dependency."""
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below

    # --- the audit log ---

    @app.get("/audit/head", tags=["audit"])
    def audit_head() -> dict[str, Any]:
        """The latest signed tree head (the node signs a new one within seconds of the log growing)."""
        head = node.audit.head()
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

    @app.get("/audit/partners", response_model=list[m.PartnerOut], tags=["audit"])
    def audit_partners(person: Caller) -> list[dict[str, Any]]:
        """Each partner's latest signed head and the status of its log: ``forked`` while a fork
        found (two heads it signed that cannot both be its log) awaits a security officer's
        acknowledgement, else the latest head's (``pending``, ``consistent``, ``inconsistent``)."""
        return node.audit.partners()

    @app.get("/audit/forks", response_model=list[m.ForkOut], tags=["audit"])
    def audit_forks(person: Caller, party: Party | None = None) -> list[dict[str, Any]]:
        """The forks found (security officers, administrators): both signed heads as received, whether
        they still verify against the party's key, who showed the second, the acknowledgement."""
        return node.audit.forks(person, party)

    @app.post("/audit/partners/{party}/acknowledge", response_model=m.ForkAcknowledgedOut, tags=["audit"])
    def audit_acknowledge(party: Party, body: m.ForkAcknowledgementIn, person: Caller) -> dict[str, Any]:
        """A security officer acknowledges the partner's open forks (up to evidence ``through``),
        saying why: its status is no longer ``forked``; the evidence stays. Audited."""
        return node.audit.acknowledge_fork(person, party, body.note, body.through)

    @app.get("/audit/log", tags=["audit"])
    def audit_log(
        person: Caller,
        since: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
        kind: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9._-]{0,63}$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Audit records after ``since`` (security officers and administrators)."""
        return [audit_view(r) for r in node.audit.records(person, since=since, kind=kind, limit=limit)]
