"""The duties after release over HTTP: copies, reclassification and recall, destruction, loss or
compromise, the termination report, visits and the registers (a router mounted by ``create_app``).

Thin over :class:`gsomia.duties.Duties`; errors become RFC 9457 problems through the app's handlers.
No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gsomia._present import item_view, scheduled_view
from gsomia.api._fields import Bool, Classification, Id, Instant, Party, Words
from gsomia.api._models import BASE64, instant_in, payload_in
from gsomia.api._refs import item_ref
from gsomia.core.access import Person
from gsomia.core.destruction import DestructionMethod
from gsomia.core.feedback import MAX_CITES
from gsomia.core.feedback import MAX_TEXT as MAX_FEEDBACK_TEXT
from gsomia.core.portions import PORTION_ID
from gsomia.node import Node
from gsomia.store import LabelChangeRow

__all__ = ["duties_router"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DeriveIn(_In):
    """A copy, translation or derivative: at most one of ``payload`` and ``payload_base64`` (neither
    keeps the source's payload)."""

    model_config = ConfigDict(json_schema_extra={"not": {"required": ["payload", "payload_base64"]}})

    kind: Literal["copy", "translation", "derivative"]
    also: list[Id] = Field(
        default_factory=list, max_length=100, description="Further sources of a derivative."
    )
    id: Id | None = None
    payload: Any = None
    payload_base64: Annotated[str, Field(pattern=BASE64)] | None = None


class ReclassifyIn(_In):
    classification: Classification = Field(description="The new level, in the originator's scheme.")
    reason: Words
    portion: Annotated[str, Field(pattern=PORTION_ID.pattern)] | None = Field(
        default=None,
        description="An item in portions: reclassify this portion alone (at every holder of it).",
    )


class HoldAsIn(_In):
    classification: Classification = Field(
        description="The level of this node's scheme to hold the received item under: one the agreement "
        "offers for the originator's level (Art. 4.2: 極秘 or 特定秘密 for Korean Class II)."
    )
    reason: Words


class RecallIn(_In):
    reason: Words
    portion: Annotated[str, Field(pattern=PORTION_ID.pattern)] | None = Field(
        default=None,
        description="An item in portions: recall this portion alone (every holder of it drops it).",
    )


class DowngradeIn(_In):
    classification: Classification = Field(description="The lower level, in the originator's scheme.")
    at: Instant = Field(description="When it applies (in the future)")
    reason: Words


class DestroyIn(_In):
    method: DestructionMethod = Field(
        strict=False,  # the value as JSON carries it (strict mode would want the Python enum)
        description="How: crypto-erase, shredding, incineration, pulverisation or returned",
    )
    witness: Id = Field(description="A registered person cleared for the item.")
    reason: Words
    notify_originator: Bool = False
    portion: Annotated[str, Field(pattern=PORTION_ID.pattern)] | None = Field(
        default=None, description="An item in portions: destroy this portion alone (the rest stays held)."
    )


class DestructionRequestIn(_In):
    holder: Party = Field(description="The holder asked for its record.")


class IncidentIn(_In):
    nature: Literal["loss", "compromise", "possible-compromise"]
    text: Words


class FeedbackIn(_In):
    """A sighting, question or proposed correction for the item's originator (issue 20 §4)."""

    kind: Literal["seen", "used-in-assessment", "corroborated", "false-positive", "question", "correction"]
    text: Annotated[str, StringConstraints(max_length=MAX_FEEDBACK_TEXT)] = Field(
        default="", description="What the holder says (needed for a question or a correction)."
    )
    cites: list[Id] = Field(
        default_factory=list,
        max_length=MAX_CITES,
        json_schema_extra={"uniqueItems": True},
        description="This node's own items it cites: each must have been released to the originator.",
    )


class StepIn(_In):
    state: Literal["findings", "measures", "closed"]
    text: Words


class VisitIn(_In):
    person: Id
    highest: Annotated[Classification, Field(json_schema_extra={"x-gsomia-vocabulary": "own-level"})] = Field(
        description="The highest level (host's scheme) the visitor may see."
    )
    starts: Instant
    ends: Instant
    purpose: Annotated[Words, Field(max_length=200)]


class VisitEndIn(_In):
    ends: Instant | None = Field(
        default=None,
        description="The earlier end; absent: now (revoked). Before the visit's start: it never begins.",
    )


class AuthorityIn(_In):
    party: Party
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
    name: Annotated[Words, Field(max_length=200)]
    function: Annotated[str, Field(max_length=200)] = ""


class RulesIn(_In):
    model_config = ConfigDict(json_schema_extra={"x-gsomia-shape": "rules"})

    party: Party
    title: Annotated[Words, Field(max_length=200)]
    summary: Annotated[str, Field(max_length=4000)] = ""
    levels: list[Classification] = Field(default_factory=list, description="Levels touched; empty: all.")
    effective: Instant


def _change_json(row: LabelChangeRow) -> dict[str, Any]:
    return {
        "item": row.item_id,
        "version": row.version,
        "kind": row.kind,
        "classification": row.classification,
        "reason": row.reason,
        "signed": row.jws,
    }


def duties_router(node: Node, reader: Callable[..., Awaitable[Person]]) -> APIRouter:
    """The routes of the duties after release, authenticated by ``reader``."""
    router = APIRouter(tags=["duties"])
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below
    ItemRef = Annotated[str, Depends(item_ref(node, reader))]  # noqa: N806 - the path's item (issue 22 §4)
    duties = node.duties

    @router.post("/items/{item_id}/derive", status_code=201)
    def derive(item_id: ItemRef, body: DeriveIn, person: Caller) -> dict[str, Any]:
        """A copy, translation or derivative (Art. 11, 14, 15): the strictest label of its sources."""
        payload, kind = payload_in(body.payload, body.payload_base64, required=False) or (None, None)
        item = duties.derive(
            person,
            body.kind,
            [item_id, *(node.items.resolve_item(person, also) for also in body.also)],
            payload=payload,
            payload_type=kind,
            item_id=body.id,
        )
        return item_view(item)

    @router.post("/items/{item_id}/reclassify", status_code=202)
    def reclassify(item_id: ItemRef, body: ReclassifyIn, person: Caller) -> dict[str, Any]:
        """The originator's new level, applied here and sent to every holder downstream."""
        return _change_json(
            duties.reclassify(person, item_id, body.classification, body.reason, portion=body.portion)
        )

    @router.post("/items/{item_id}/hold-as")
    def hold_as(item_id: ItemRef, body: HoldAsIn, person: Caller) -> dict[str, Any]:
        """A security or release officer applies another of the levels the agreement offers this node for a
        received item (re-sealed with its copies here; audited with the level before and after)."""
        return duties.hold_as(person, item_id, body.classification, body.reason)

    @router.post("/items/{item_id}/recall", status_code=202)
    def recall(item_id: ItemRef, body: RecallIn, person: Caller) -> dict[str, Any]:
        """The originator withdraws its item at every holder downstream (or, with ``portion``, that
        portion of it: each holder of it drops it and keeps the rest)."""
        return _change_json(duties.recall(person, item_id, body.reason, portion=body.portion))

    @router.get("/items/{item_id}/label-status")
    def label_status(item_id: ItemRef, person: Caller) -> dict[str, Any]:
        """The item's label changes and which holders applied each (and which have not)."""
        return duties.label_status(person, item_id)

    @router.post("/items/{item_id}/destroy", status_code=201)
    def destroy(item_id: ItemRef, body: DestroyIn, person: Caller) -> dict[str, Any]:
        """Destroy the item: a record signed by the node key; the payload gone, the record kept."""
        return duties.destroy(
            person,
            item_id,
            method=body.method.value,
            witness=body.witness,
            reason=body.reason,
            notify=body.notify_originator,
            portion=body.portion,
        )

    @router.post("/items/{item_id}/destruction/send", status_code=202)
    def send_destruction(item_id: ItemRef, person: Caller) -> dict[str, Any]:
        """Send this node's destruction record of the item to its originator (on request)."""
        return duties.send_destruction_record(person, item_id)

    @router.post("/items/{item_id}/destruction/request", status_code=202)
    def request_destruction(item_id: ItemRef, body: DestructionRequestIn, person: Caller) -> dict[str, str]:
        """As originator, ask a holder for its destruction record (sent back if it destroyed the item)."""
        return {"msg_id": duties.request_destruction_record(person, item_id, body.holder)}

    @router.get("/destructions")
    def destructions(person: Caller, item: Id | None = None) -> list[dict[str, Any]]:
        """Destruction records: this node's, and those holders sent it as originator."""
        return duties.destructions(person, item)

    @router.post("/items/{item_id}/incidents", status_code=201)
    def report(item_id: ItemRef, body: IncidentIn, person: Caller) -> dict[str, Any]:
        """Report a loss or (possible) compromise: the originator is told at once (Art. 17)."""
        return duties.report_incident(person, item_id, body.nature, body.text)

    @router.post("/items/{item_id}/feedback", status_code=201)
    def send_feedback(item_id: ItemRef, body: FeedbackIn, person: Caller) -> dict[str, Any]:
        """As a reader of a partner's item held here, send its originator signed feedback about it."""
        return duties.send_feedback(person, item_id, body.kind, body.text, body.cites)

    @router.get("/items/{item_id}/feedback")
    def feedback(item_id: ItemRef, person: Caller) -> list[dict[str, Any]]:
        """Feedback about the item kept here: received from holders (originator) or sent (holder)."""
        return duties.feedback(person, item_id)

    @router.post("/incidents/{incident_id}/steps")
    def advance(
        incident_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], body: StepIn, person: Caller
    ) -> dict[str, Any]:
        """The holder's investigation moves to its next step; the originator sees it."""
        return duties.advance_incident(person, incident_id, body.state, body.text)

    @router.get("/incidents")
    def incidents(person: Caller) -> list[dict[str, Any]]:
        """Investigations this node runs as holder, and those of its items held elsewhere."""
        return duties.incidents(person)

    @router.get("/termination-report")
    def termination_report(person: Caller, at: Instant | None = None) -> dict[str, Any]:
        """Per partner, the items held on each side and their status (Art. 21.4)."""
        return duties.termination_report(person, None if at is None else instant_in(node, at, "at"))

    @router.post("/visits", status_code=201)
    def authorise_visit(body: VisitIn, person: Caller) -> dict[str, Any]:
        """Authorise a visit: the highest level the visitor may see, and when (Art. 8)."""
        return duties.authorise_visit(
            person,
            body.person,
            highest=body.highest,
            starts=instant_in(node, body.starts, "starts"),
            ends=instant_in(node, body.ends, "ends"),
            purpose=body.purpose,
        )

    @router.get("/visits")
    def visits(person: Caller) -> list[dict[str, Any]]:
        return duties.visits(person)

    @router.post("/visits/{visit_id}/end")
    def end_visit(
        visit_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], body: VisitEndIn, person: Caller
    ) -> dict[str, Any]:
        """End a visit early: now (revoked) or at an earlier end (shortened); every process of the
        node, and an open stream of the visitor's, follows within about a second (Art. 8)."""
        ends = None if body.ends is None else instant_in(node, body.ends, "ends")
        return duties.end_visit(person, visit_id, ends)

    @router.post("/registers/authorities", status_code=201)
    def add_authority(body: AuthorityIn, person: Caller) -> dict[str, Any]:
        """Record a party's competent authority (Art. 2)."""
        return duties.add_authority(person, body.party, body.id, body.name, body.function)

    @router.get("/registers/authorities")
    def authorities(person: Caller, party: Party | None = None) -> list[dict[str, Any]]:
        return duties.authorities(None if party is None else node.catalogue.party(party).code)

    @router.post("/registers/rules", status_code=201)
    def record_rules(body: RulesIn, person: Caller) -> dict[str, Any]:
        """Record a new version of a party's protection rules (Art. 3); the affected items are flagged."""
        return duties.record_rules(
            person,
            body.party,
            title=body.title,
            summary=body.summary,
            levels=body.levels,
            effective=instant_in(node, body.effective, "effective"),
        )

    @router.get("/registers/rules")
    def rules(person: Caller, party: Party | None = None) -> list[dict[str, Any]]:
        return duties.rules(None if party is None else node.catalogue.party(party).code)

    @router.get("/registers/flags")
    def flags(person: Caller, item: Id | None = None) -> list[dict[str, Any]]:
        """Items flagged by a recorded change of protection rules."""
        return duties.flags(item)

    @router.get("/reviews")
    def reviews(person: Caller, at: Instant | None = None) -> list[dict[str, Any]]:
        """This node's own items whose label review is due (at ``at``, default now), soonest first."""
        when = None if at is None else instant_in(node, at, "at")
        return [item_view(i) for i in duties.reviews_due(person, when)]

    @router.post("/items/{item_id}/scheduled-downgrades", status_code=201)
    def schedule_downgrade(item_id: ItemRef, body: DowngradeIn, person: Caller) -> dict[str, Any]:
        """The originator declares a lower level from an instant on; it then applies itself here and
        at every holder, as a reclassification does."""
        row = duties.schedule_downgrade(
            person, item_id, body.classification, instant_in(node, body.at, "at"), body.reason
        )
        return scheduled_view(row)

    @router.get("/items/{item_id}/scheduled-downgrades")
    def scheduled(item_id: ItemRef, person: Caller) -> list[dict[str, Any]]:
        """The downgrades scheduled for an item: pending, applied, or failed with the reason."""
        return [scheduled_view(r) for r in duties.scheduled(person, item_id)]

    return router
