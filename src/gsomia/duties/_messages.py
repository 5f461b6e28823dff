"""The signed contents of the duty messages, as canonical JSON, and their parsing at the boundary.

- ``label-change``: the originator's reclassification or recall (with, for a reclassification,
  the originator's newly signed item so holders can pass it on with a valid signature);
- ``label-ack``: a holder applied (or could not apply) a change;
- ``destruction-record``: a holder's record of destruction (Art. 13);
- ``destruction-request``: the originator asks a holder for that record;
- ``incident``: a holder's report of loss or compromise and its investigation (Art. 17);
- ``feedback``: a holder's sighting, question or proposed correction about an item (issue 20 §4).

Each is signed by the node that speaks (``sign_origin``) and travels inside the ordinary
envelopes as ``{"kind": "duty", "to": <party>, "duty": <JWS>}``; a hub passes it on unchanged.
Parsing raises ``InvalidInputError`` naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gsomia._codec import canonical, instant_from_json, json_object
from gsomia.core.destruction import DestructionMethod, DestructionRecord
from gsomia.core.feedback import Feedback, make_feedback
from gsomia.core.investigation import (
    IncidentNature,
    Investigation,
    InvestigationState,
    InvestigationStep,
)
from gsomia.core.recall import ChangeKind, LabelChange
from gsomia.crypto.envelope import signed_payload
from gsomia.errors import GsomiaError, InvalidInputError

__all__ = [
    "DUTY_KIND",
    "HeldPortion",
    "PortionChange",
    "ack_content",
    "change_content",
    "destruction_content",
    "destruction_request_content",
    "feedback_content",
    "incident_content",
    "kept_content",
    "parse_ack",
    "parse_change",
    "parse_destruction",
    "parse_destruction_request",
    "parse_duty",
    "parse_feedback",
    "parse_incident",
    "parse_onward_portions",
    "parse_portion_change",
    "parse_sources",
]

DUTY_KIND = "duty"


def _str(data: dict[str, Any], name: str, what: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{what}.{name}: expected a non-empty string")
    return value


def _int(data: dict[str, Any], name: str, what: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError(f"{what}.{name}: expected an integer")
    return value


def kept_content(jws: str) -> dict[str, Any]:
    """The fields of a signed duty kept here (its signature was verified when it arrived); ``{}`` if
    they are not an object."""
    data = json.loads(signed_payload(jws))
    return data if isinstance(data, dict) else {}


def parse_duty(content: bytes) -> tuple[str, dict[str, Any]]:
    """(duty kind, fields) of a signed duty content."""
    data = json_object(content, "duty")  # the one parse of signed content (text no store holds refused)
    if data.get("v") != 1:
        raise InvalidInputError("duty: not a version 1 duty message")
    return _str(data, "kind", "duty"), data


def change_content(
    change: LabelChange, origin: str | None, holder: str, portion: PortionChange | None = None
) -> bytes:
    """The originator's change for one named holder: a holder applies only a change addressed to it.
    ``portion``: the reclassification of one portion of an item in portions (``origin`` is then the
    originator's newly signed root), with what the holder needs of the portions it holds."""
    content: dict[str, Any] = {
        "v": 1,
        "kind": "label-change",
        "item": change.item,
        "originator": change.originator,
        "holder": holder,
        "version": change.version,
        "change": change.kind.value,
        "classification": change.classification,
        "reason": change.reason,
        "at": change.at.isoformat(),
        "origin": origin,
    }
    if portion is not None:
        content["portion"] = portion.portion
        content["portions"] = [
            {"id": p.id, "index": p.index, "label": p.label, "proof": list(p.proof)} for p in portion.held
        ]
    return canonical(content).encode()


@dataclass(frozen=True, slots=True)
class HeldPortion:
    """What a holder is told of one portion it holds when a portion is reclassified: its place, the
    originator's label now (a dict, as signed in the leaf) and its inclusion proof (hex) under the
    new root. Nothing of a portion the holder does not hold is sent."""

    id: str
    index: int
    label: dict[str, Any]
    proof: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PortionChange:
    """The reclassification of portion ``portion``, for a holder of ``held`` (which include it); or
    its recall (``held`` empty: the holder drops the portion and keeps what else it holds)."""

    portion: str
    held: tuple[HeldPortion, ...]


def parse_portion_change(data: dict[str, Any]) -> PortionChange | None:
    """The portion a label change reclassifies, and the holder's portions (``None``: the item)."""
    if "portion" not in data:
        return None
    portion = _str(data, "portion", "label-change")
    raw = data.get("portions")
    if not isinstance(raw, list) or len(raw) > 64:  # none for a portion's recall
        raise InvalidInputError("label-change.portions: up to 64 portions held")
    held = []
    for entry in raw:
        if not isinstance(entry, dict) or entry.keys() != {"id", "index", "label", "proof"}:
            raise InvalidInputError("label-change.portions: each is {id, index, label, proof}")
        proof = entry["proof"]
        if (
            not isinstance(entry["id"], str)
            or type(entry["index"]) is not int
            or not isinstance(entry["label"], dict)
            or not isinstance(proof, list)
            or len(proof) > 8
            or not all(isinstance(h, str) for h in proof)
        ):
            raise InvalidInputError("label-change.portions: each is {id, index, label, proof}")
        held.append(HeldPortion(entry["id"], entry["index"], entry["label"], tuple(proof)))
    if len({h.id for h in held}) != len(held):
        raise InvalidInputError("label-change.portions: a portion named twice")
    return PortionChange(portion, tuple(held))


def parse_change(data: dict[str, Any]) -> tuple[LabelChange, str | None, str]:
    """(the change, the originator's newly signed item of a reclassification, the holder addressed)."""
    try:
        kind = ChangeKind(str(data.get("change")))
    except ValueError as exc:
        raise InvalidInputError("label-change.change: reclassify or recall") from exc
    classification = data.get("classification")
    origin = data.get("origin")
    if classification is not None and not isinstance(classification, str):
        raise InvalidInputError("label-change.classification: expected a level name")
    if origin is not None and not isinstance(origin, str):
        raise InvalidInputError("label-change.origin: expected the originator's signed item")
    change = LabelChange(
        _str(data, "item", "label-change"),
        _str(data, "originator", "label-change"),
        _int(data, "version", "label-change"),
        kind,
        classification,
        _str(data, "reason", "label-change"),
        instant_from_json(data.get("at"), "label-change.at"),
    )
    return change, origin, _str(data, "holder", "label-change")


def ack_content(
    item: str,
    version: int,
    holder: str,
    status: str,
    copies: int,
    at: datetime,
    onward: Sequence[str] = (),
    onward_portions: dict[str, list[str]] | None = None,
) -> bytes:
    """A holder's answer to a change; ``onward``: the parties it sent (or is sending) the item to, so the
    originator addresses the change to them too, through this holder; ``onward_portions``: of an item
    in portions, the portions each of them got (a portion's change is addressed to its holders)."""
    content: dict[str, Any] = {
        "v": 1,
        "kind": "label-ack",
        "item": item,
        "version": version,
        "holder": holder,
        "status": status,
        "copies": copies,
        "onward": sorted(onward),
        "at": at.isoformat(),
    }
    if onward_portions:
        content["onward_portions"] = {p: sorted(ids) for p, ids in sorted(onward_portions.items())}
    return canonical(content).encode()


def parse_onward_portions(data: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """The portions each onward party got from the holder (empty: an item signed whole)."""
    raw = data.get("onward_portions", {})
    if not isinstance(raw, dict) or len(raw) > 64:
        raise InvalidInputError("label-ack.onward_portions: expected {party: [portion ids]}")
    out = {}
    for party, ids in raw.items():
        if not isinstance(ids, list) or len(ids) > 64 or not all(isinstance(i, str) for i in ids):
            raise InvalidInputError("label-ack.onward_portions: expected {party: [portion ids]}")
        out[party] = tuple(ids)
    return out


def parse_ack(data: dict[str, Any]) -> tuple[str, int, str, str, int, datetime, tuple[str, ...]]:
    """(item, version, holder, status, copies updated, at, onward parties)."""
    onward = data.get("onward", [])
    if not isinstance(onward, list) or not all(isinstance(p, str) and len(p) == 3 for p in onward):
        raise InvalidInputError("label-ack.onward: expected a list of party codes")
    if len(onward) > 64:
        raise InvalidInputError("label-ack.onward: at most 64 parties")
    return (
        _str(data, "item", "label-ack"),
        _int(data, "version", "label-ack"),
        _str(data, "holder", "label-ack"),
        _str(data, "status", "label-ack"),
        _int(data, "copies", "label-ack"),
        instant_from_json(data.get("at"), "label-ack.at"),
        tuple(onward),
    )


_MAX_SOURCES = 256


def _with_sources(content: dict[str, Any], sources: Sequence[str]) -> dict[str, Any]:
    """A record about a copy or derivative names the originator's items it was made from (the
    originator has never seen the copy's id; it checks that each of these went to the holder)."""
    return {**content, "sources": sorted(sources)} if sources else content


def parse_sources(data: dict[str, Any], what: str) -> tuple[str, ...]:
    """The originator's items a record's copy was made from (empty: the record is about the item)."""
    raw = data.get("sources", [])
    if not isinstance(raw, list) or not all(isinstance(s, str) and s for s in raw):
        raise InvalidInputError(f"{what}.sources: expected a list of item ids")
    if len(raw) > _MAX_SOURCES or len(set(raw)) != len(raw):
        raise InvalidInputError(f"{what}.sources: at most {_MAX_SOURCES} item ids, each once")
    return tuple(raw)


def destruction_content(
    record: DestructionRecord, sources: Sequence[str] = (), *, portion: str | None = None
) -> bytes:
    """The holder's signed record; ``sources``: for a copy or derivative, the originator's items it was
    made from; ``portion``: the one portion of an item in portions destroyed (the rest still held)."""
    more = {} if portion is None else {"portion": portion}
    return canonical(
        _with_sources(
            {
                **more,
                "v": 1,
                "kind": "destruction-record",
                "item": record.item,
                "holder": record.holder,
                "originator": record.originator,
                "classification": record.classification,
                "by": record.by,
                "witness": record.witness,
                "method": record.method.value,
                "reason": record.reason,
                "at": record.at.isoformat(),
            },
            sources,
        )
    ).encode()


def parse_destruction(data: dict[str, Any]) -> DestructionRecord:
    try:
        method = DestructionMethod(str(data.get("method")))
    except ValueError as exc:
        raise InvalidInputError("destruction-record.method: not a known method") from exc
    try:
        return DestructionRecord(
            _str(data, "item", "destruction-record"),
            _str(data, "holder", "destruction-record"),
            _str(data, "originator", "destruction-record"),
            _str(data, "classification", "destruction-record"),
            _str(data, "by", "destruction-record"),
            _str(data, "witness", "destruction-record"),
            method,
            _str(data, "reason", "destruction-record"),
            instant_from_json(data.get("at"), "destruction-record.at"),
        )
    except GsomiaError as exc:
        raise InvalidInputError(f"destruction-record: {exc}") from exc


def destruction_request_content(item: str, originator: str, holder: str, at: datetime) -> bytes:
    return canonical(
        {
            "v": 1,
            "kind": "destruction-request",
            "item": item,
            "originator": originator,
            "holder": holder,
            "at": at.isoformat(),
        }
    ).encode()


def parse_destruction_request(data: dict[str, Any]) -> tuple[str, str, str]:
    """(item, originator, holder)."""
    instant_from_json(data.get("at"), "destruction-request.at")
    return (
        _str(data, "item", "destruction-request"),
        _str(data, "originator", "destruction-request"),
        _str(data, "holder", "destruction-request"),
    )


def steps_json(investigation: Investigation) -> list[dict[str, str]]:
    return [
        {"state": s.state.value, "at": s.at.isoformat(), "by": s.by, "text": s.text}
        for s in investigation.steps
    ]


def incident_content(investigation: Investigation, sources: Sequence[str] = ()) -> bytes:
    """The holder's signed report; ``sources`` as for :func:`destruction_content`."""
    return canonical(
        _with_sources(
            {
                "v": 1,
                "kind": "incident",
                "id": investigation.id,
                "item": investigation.item,
                "originator": investigation.originator,
                "holder": investigation.holder,
                "nature": investigation.nature.value,
                "steps": steps_json(investigation),
            },
            sources,
        )
    ).encode()


def parse_steps(raw: Any) -> tuple[InvestigationStep, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInputError("incident.steps: expected a non-empty list")
    steps = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise InvalidInputError("incident.steps: each step is an object")
        try:
            state = InvestigationState(str(entry.get("state")))
        except ValueError as exc:
            raise InvalidInputError("incident.steps.state: opened, findings, measures or closed") from exc
        steps.append(
            InvestigationStep(
                state,
                instant_from_json(entry.get("at"), "incident.steps.at"),
                _str(entry, "by", "incident.steps"),
                _str(entry, "text", "incident.steps"),
            )
        )
    return tuple(steps)


def parse_incident(data: dict[str, Any]) -> Investigation:
    try:
        nature = IncidentNature(str(data.get("nature")))
    except ValueError as exc:
        raise InvalidInputError("incident.nature: loss, compromise or possible-compromise") from exc
    steps = parse_steps(data.get("steps"))
    order = list(InvestigationState)
    if [s.state for s in steps] != order[: len(steps)]:
        raise InvalidInputError(
            "incident.steps: the states do not follow opened → findings → measures → closed"
        )
    return Investigation(
        _str(data, "id", "incident"),
        _str(data, "item", "incident"),
        _str(data, "originator", "incident"),
        _str(data, "holder", "incident"),
        nature,
        steps,
    )


def feedback_content(feedback: Feedback) -> bytes:
    return canonical(
        {
            "v": 1,
            "kind": "feedback",
            "id": feedback.id,
            "item": feedback.item,
            "originator": feedback.originator,
            "holder": feedback.holder,
            "feedback": feedback.kind.value,
            "text": feedback.text,
            "cites": list(feedback.cites),
            "by": feedback.by,
            "at": feedback.at.isoformat(),
        }
    ).encode()


def parse_feedback(data: dict[str, Any]) -> Feedback:
    """The holder's signed feedback, checked as the holder's node checked it before signing."""
    cites = data.get("cites", [])
    if not isinstance(cites, list) or not all(isinstance(c, str) and c for c in cites):
        raise InvalidInputError("feedback.cites: expected a list of item ids")
    text = data.get("text")
    if not isinstance(text, str):
        raise InvalidInputError("feedback.text: expected a string")
    try:
        return make_feedback(
            _str(data, "id", "feedback"),
            _str(data, "item", "feedback"),
            _str(data, "originator", "feedback"),
            _str(data, "holder", "feedback"),
            str(data.get("feedback")),
            text,
            cites,
            by=_str(data, "by", "feedback"),
            at=instant_from_json(data.get("at"), "feedback.at"),
        )
    except GsomiaError as exc:
        raise InvalidInputError(f"feedback: {exc}") from exc
