"""The duties after release over HTTP: copies, reclassification and recall, destruction, loss or
compromise, the termination report, visits and the registers (a router mounted by ``create_app``).

Thin over :class:`gsomia.duties.Duties`; errors become RFC 9457 problems through the app's handlers.
No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
"""

import base64
import binascii
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from gsomia.api._models import instant_in, item_out
from gsomia.core.access import Person
from gsomia.errors import InvalidInputError
from gsomia.node import Node
from gsomia.store import LabelChangeRow

__all__ = ["duties_router"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeriveIn(_In):
    kind: Literal["copy", "translation", "derivative"]
    also: list[str] = Field(default_factory=list, description="Further sources of a derivative.")
    id: str | None = None
    payload: Any = None
    payload_base64: str | None = None


class ReclassifyIn(_In):
    classification: str = Field(min_length=1, description="The new level, in the originator's scheme.")
    reason: str = Field(min_length=1)


class RecallIn(_In):
    reason: str = Field(min_length=1)


class DestroyIn(_In):
    method: str = Field(description="crypto-erase, shredding, incineration, pulverisation or returned")
    witness: str = Field(min_length=1, description="A registered person cleared for the item.")
    reason: str = Field(min_length=1)
    notify_originator: bool = False


class DestructionRequestIn(_In):
    holder: str = Field(min_length=3, max_length=3, description="The holder asked for its record.")


class IncidentIn(_In):
    nature: Literal["loss", "compromise", "possible-compromise"]
    text: str = Field(min_length=1)


class StepIn(_In):
    state: Literal["findings", "measures", "closed"]
    text: str = Field(min_length=1)


class VisitIn(_In):
    person: str = Field(min_length=1)
    highest: str = Field(min_length=1, description="The highest level (host's scheme) the visitor may see.")
    starts: str
    ends: str
    purpose: str = Field(min_length=1)


class AuthorityIn(_In):
    party: str = Field(min_length=3, max_length=3)
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1)
    function: str = ""


class RulesIn(_In):
    party: str = Field(min_length=3, max_length=3)
    title: str = Field(min_length=1)
    summary: str = ""
    levels: list[str] = Field(default_factory=list, description="Levels touched; empty: all.")
    effective: str


def _change_json(row: LabelChangeRow) -> dict[str, Any]:
    return {
        "item": row.item_id,
        "version": row.version,
        "kind": row.kind,
        "classification": row.classification,
        "reason": row.reason,
        "signed": row.jws,
    }


def duties_router(node: Node, reader: Callable[..., Person]) -> APIRouter:
    """The routes of the duties after release, authenticated by ``reader``."""
    router = APIRouter(tags=["duties"])
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below
    duties = node.duties

    @router.post("/items/{item_id}/derive", status_code=201)
    def derive(item_id: str, body: DeriveIn, person: Caller) -> dict[str, Any]:
        """A copy, translation or derivative (Art. 11, 14, 15): the strictest label of its sources."""
        payload: bytes | None = None
        kind: str | None = None
        if body.payload is not None and body.payload_base64 is not None:
            raise InvalidInputError("give at most one of payload (JSON) or payload_base64 (bytes)")
        if body.payload_base64 is not None:
            try:
                payload, kind = base64.b64decode(body.payload_base64, validate=True), "bytes"
            except (binascii.Error, ValueError) as exc:
                raise InvalidInputError(f"payload_base64 is not valid base64: {exc}") from exc
        elif body.payload is not None:
            payload, kind = json.dumps(body.payload, ensure_ascii=False).encode(), "json"
        item = duties.derive(
            person, body.kind, [item_id, *body.also], payload=payload, payload_type=kind, item_id=body.id
        )
        return item_out(item)

    @router.post("/items/{item_id}/reclassify", status_code=202)
    def reclassify(item_id: str, body: ReclassifyIn, person: Caller) -> dict[str, Any]:
        """The originator's new level, applied here and sent to every holder downstream."""
        return _change_json(duties.reclassify(person, item_id, body.classification, body.reason))

    @router.post("/items/{item_id}/recall", status_code=202)
    def recall(item_id: str, body: RecallIn, person: Caller) -> dict[str, Any]:
        """The originator withdraws its item, here and at every holder downstream."""
        return _change_json(duties.recall(person, item_id, body.reason))

    @router.get("/items/{item_id}/label-status")
    def label_status(item_id: str, person: Caller) -> dict[str, Any]:
        """The item's label changes and which holders applied each (and which have not)."""
        return duties.label_status(person, item_id)

    @router.post("/items/{item_id}/destroy", status_code=201)
    def destroy(item_id: str, body: DestroyIn, person: Caller) -> dict[str, Any]:
        """Destroy the item: a record signed by the node key; the payload gone, the record kept."""
        return duties.destroy(
            person,
            item_id,
            method=body.method,
            witness=body.witness,
            reason=body.reason,
            notify=body.notify_originator,
        )

    @router.post("/items/{item_id}/destruction/send", status_code=202)
    def send_destruction(item_id: str, person: Caller) -> dict[str, Any]:
        """Send this node's destruction record of the item to its originator (on request)."""
        return duties.send_destruction_record(person, item_id)

    @router.post("/items/{item_id}/destruction/request", status_code=202)
    def request_destruction(item_id: str, body: DestructionRequestIn, person: Caller) -> dict[str, str]:
        """As originator, ask a holder for its destruction record (sent back if it destroyed the item)."""
        return {"msg_id": duties.request_destruction_record(person, item_id, body.holder)}

    @router.get("/destructions")
    def destructions(person: Caller, item: str | None = None) -> list[dict[str, Any]]:
        """Destruction records: this node's, and those holders sent it as originator."""
        return duties.destructions(person, item)

    @router.post("/items/{item_id}/incidents", status_code=201)
    def report(item_id: str, body: IncidentIn, person: Caller) -> dict[str, Any]:
        """Report a loss or (possible) compromise: the originator is told at once (Art. 17)."""
        return duties.report_incident(person, item_id, body.nature, body.text)

    @router.post("/incidents/{incident_id}/steps")
    def advance(incident_id: str, body: StepIn, person: Caller) -> dict[str, Any]:
        """The holder's investigation moves to its next step; the originator sees it."""
        return duties.advance_incident(person, incident_id, body.state, body.text)

    @router.get("/incidents")
    def incidents(person: Caller) -> list[dict[str, Any]]:
        """Investigations this node runs as holder, and those of its items held elsewhere."""
        return duties.incidents(person)

    @router.get("/termination-report")
    def termination_report(person: Caller, at: str | None = None) -> dict[str, Any]:
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

    @router.post("/registers/authorities", status_code=201)
    def add_authority(body: AuthorityIn, person: Caller) -> dict[str, Any]:
        """Record a party's competent authority (Art. 2)."""
        return duties.add_authority(person, body.party, body.id, body.name, body.function)

    @router.get("/registers/authorities")
    def authorities(person: Caller, party: str | None = None) -> list[dict[str, Any]]:
        return duties.authorities(party)

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
    def rules(person: Caller, party: str | None = None) -> list[dict[str, Any]]:
        return duties.rules(party)

    @router.get("/registers/flags")
    def flags(person: Caller, item: str | None = None) -> list[dict[str, Any]]:
        """Items flagged by a recorded change of protection rules."""
        return duties.flags(item)

    return router
