"""Agreements, their status at an instant, and release decisions.

Routes added by ``create_app``: each handler parses, calls one service method and
presents (``gsomia._present``); who may do what is decided by the service.

No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query

from gsomia._codec import (
    agreement_json,
    decision_json,
    label_from_dict,
    state_json,
)
from gsomia._present import equivalence_change_view
from gsomia.api import _models as m
from gsomia.api._fields import AgreementId, Instant
from gsomia.core.access import Person
from gsomia.core.equivalences import Remap
from gsomia.core.instants import parse_instant
from gsomia.core.policy import Consent, ConsentKind, ReleaseRequest
from gsomia.errors import InvalidInputError, NotFoundError, UnknownNameError
from gsomia.node import Node

__all__ = ["add_agreements_routes"]


def add_agreements_routes(app: FastAPI, node: Node, reader: Callable[..., Awaitable[Person]]) -> None:
    """Add the routes over ``node`` to ``app`` (on the app itself, so that its routes list names every
    method a path serves: the 405's ``Allow``); ``reader`` is the app's authentication dependency."""
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below

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

    @app.get(
        "/agreements/{agreement_id}/equivalence-changes",
        response_model=list[m.EquivalenceChangeOut],
        tags=["agreements"],
    )
    def equivalence_changes(agreement_id: AgreementId, person: Caller) -> list[dict[str, Any]]:
        """The equivalence changes on file for the agreement: this node's own and its partners'
        (security and release officers, administrators)."""
        subject = _agreement(agreement_id)
        return [equivalence_change_view(r) for r in node.exchange.equivalence_changes(person, subject.id)]

    @app.post(
        "/agreements/{agreement_id}/equivalence-changes",
        response_model=m.EquivalenceChangeOut,
        status_code=201,
        tags=["agreements"],
    )
    def propose_equivalence(
        agreement_id: AgreementId, body: m.EquivalenceChangeIn, person: Caller
    ) -> dict[str, Any]:
        """Change this node's side of the agreement's equivalence table from an instant (now or
        later): signed and sent to each partner, which applies it from that instant (security officers)."""
        subject = _agreement(agreement_id)
        remaps = [Remap(node.party, r.level, r.partner, r.partner_level) for r in body.remaps]
        effective = parse_instant(body.effective, subject.timezone)
        row, _ = node.exchange.propose_equivalence(person, subject.id, remaps, effective, body.reason)
        return equivalence_change_view(row)

    @app.post("/decisions", response_model=m.DecisionOut, tags=["decisions"])
    def decide(body: m.DecisionIn, person: Caller) -> dict[str, Any]:
        """Decide a release as the core would, explaining every check (nothing is sent); the
        recipients' assurances (Art. 7(5)) are those on file at this node."""
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
            assurances=node.exchange.assurances_on_file(),  # the recipients' assurances on file here
        )
        decision = node.engine.decide(request, at=at)
        behind = node.catalogue.assumptions_behind(decision.agreement, decision.at, decision.route)
        return decision_json(decision, behind)
