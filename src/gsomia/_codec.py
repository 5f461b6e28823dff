"""Core values to and from JSON-ready dicts (the boundary form): labels, persons, agreements, decisions.

One shape serves the store, the REST API and the CLI, so a label reads the same
everywhere. Parsing validates against the catalogue and raises ``LabelError``
naming the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gsomia._canonical import (
    NUL_PROBLEM,
    SURROGATE_PROBLEM,
    canonical_built_bytes,
    canonical_bytes,
    canonical_bytes_with,
    held_as_is,
    unstorable,
)
from gsomia.core.access import AccessDecision, Employment, Person, Role
from gsomia.core.agreements import Agreement
from gsomia.core.assumptions import Assumption
from gsomia.core.catalogue import Catalogue
from gsomia.core.equivalences import EquivalenceChange, Remap
from gsomia.core.instants import TIMESTAMP_PATTERN
from gsomia.core.labels import AlternativeLabel, SecurityLabel
from gsomia.core.lifecycle import AgreementState
from gsomia.core.parties import Party
from gsomia.core.policy import Consent, ConsentKind, ReleaseDecision
from gsomia.errors import GsomiaError, InvalidInputError, LabelError

__all__ = [
    "NUL_PROBLEM",
    "SURROGATE_PROBLEM",
    "DecisionTexts",
    "Encoded",
    "agreement_json",
    "canonical",
    "canonical_built",
    "canonical_record",
    "consent_content",
    "consent_from_content",
    "decision_json",
    "equivalence_change_from_dict",
    "equivalence_change_to_dict",
    "instant_from_json",
    "json_object",
    "label_created_at",
    "label_from_dict",
    "label_to_dict",
    "party_json",
    "person_from_dict",
    "person_to_dict",
    "refuse_unstorable",
    "state_json",
    "storable",
    "storable_record",
    "text_field",
    "unstorable",
]


def canonical_built(data: dict[str, Any]) -> str:
    """:func:`canonical` of a dict built of dicts, lists, strings, ``None`` and integers only (a label's
    :func:`label_to_dict`, the content an originator signs), written without the check of each value's
    type (:func:`gsomia._canonical.canonical_built_bytes`); the same text."""
    written = canonical_built_bytes(data)
    if written is not None:
        return written.decode()
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(data: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, UTF-8 text kept as is (written by orjson where
    its bytes are the standard encoder's: :mod:`gsomia._canonical`)."""
    written = canonical_bytes(data)
    if written is not None:
        return written.decode()
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` as every store can hold it: each NUL (which PostgreSQL's text type refuses) and each
    lone surrogate (which UTF-8 cannot encode) written as its JSON escape (``\\u0000``,
    ``\\ud800``), the rest as it is. In canonical JSON the result reads back as the same value; in
    plain text (an audit record's subject, a refusal's sample) it still shows what was sent."""
    if held_as_is(text):
        return text
    return _UNSTORABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def refuse_unstorable(value: Any, where: str) -> None:
    """Raise ``InvalidInputError`` naming the place of :func:`unstorable` text in ``value``, if any."""
    found = unstorable(value, where)
    if found is not None:
        raise InvalidInputError(f"{found[0]}: {found[1]}")


@dataclass(frozen=True, slots=True)
class Encoded:
    """A value already written as canonical JSON (``text``), placed as it is where a record holds it
    (:func:`canonical_record`): a decision shared by a batch's items is written once, not per item."""

    text: str


def canonical_record(data: Mapping[str, Any]) -> str:
    """``canonical(data)`` of a record whose top-level values may be :class:`Encoded`: the same
    text as :func:`canonical` writes for the record with each such value in place of its JSON (the
    keys sorted, each value's canonical JSON as :func:`canonical` writes it inside the record);
    tests/test_canonical.py holds the two equal."""
    if not any(type(value) is Encoded for value in data.values()):
        return canonical(data)
    written = _record_bytes(data)
    if written is not None:
        return written.decode()
    fields = [
        f"{canonical(key)}:{value.text if type(value) is Encoded else canonical(value)}"
        for key, value in sorted(data.items())
    ]
    return "{" + ",".join(fields) + "}"


def _record_bytes(data: Mapping[str, Any]) -> bytes | None:
    """The record's canonical bytes by orjson in one call, its :class:`Encoded` values placed as they
    are; ``None`` where :func:`canonical` would not write the rest with orjson."""
    plain: dict[str, Any] = {}
    texts: dict[str, str] = {}
    for key, value in data.items():
        if type(value) is Encoded:
            texts[key] = value.text
        else:
            plain[key] = value
    return canonical_bytes_with(plain, texts)


def storable_record(data: Mapping[str, Any]) -> str:
    """``storable(canonical_record(data))``: the detail of an audit record as every store holds it.
    What orjson writes is held as it is (it escapes NUL and refuses a surrogate), so only the texts
    placed in it (:class:`Encoded`) and a record the standard encoder writes are looked through."""
    if type(data) is dict:
        if not any(type(value) is Encoded for value in data.values()):
            written = canonical_bytes(data)
        else:
            texts = [value.text for value in data.values() if type(value) is Encoded]
            written = _record_bytes(data) if all(map(held_as_is, texts)) else None
        if written is not None:
            return written.decode()
    return storable(canonical_record(data))


class DecisionTexts:
    """The canonical JSON of the decisions of one batch, each written once: the release engine's
    memo hands the same decision to every item whose request differs only in its id, so a
    selection's outbox rows and audit records (and a received batch's) share one text a decision.
    Held by identity, with the decision itself, for as long as the batch is worked on."""

    __slots__ = ("_checks", "_held")

    def __init__(self) -> None:
        self._held: dict[int, tuple[ReleaseDecision, str]] = {}
        self._checks: dict[int, tuple[AccessDecision, str]] = {}

    def text(self, decision: ReleaseDecision) -> str:
        """``canonical(decision_json(decision))``, written once for the batch."""
        held = self._held.get(id(decision))
        if held is None or held[0] is not decision:
            held = (decision, canonical(decision_json(decision)))
            self._held[id(decision)] = held
        return held[1]

    def checks_text(self, decision: AccessDecision) -> str:
        """``canonical`` of a read decision's checks as the audit records show them (rule, passed,
        reason), written once per ``decision`` (held by identity, with it): a selection's read
        decision is shared by its items whose labels read alike (``ReadGate.at_one_instant``), so
        their ``item.release`` records share one text as they share the release decision's."""
        held = self._checks.get(id(decision))
        if held is None or held[0] is not decision:
            listed = [{"rule": c.rule, "passed": c.passed, "reason": c.reason} for c in decision.checks]
            held = (decision, canonical(listed))
            self._checks[id(decision)] = held
        return held[1]


def label_to_dict(label: SecurityLabel) -> dict[str, Any]:
    return {
        "policy": label.policy,
        "originator": label.originator,
        "classification": label.classification,
        "releasable_to": sorted(label.releasable_to),
        "caveats": sorted(label.caveats),
        "purpose": label.purpose,
        "topics": sorted(label.topics),
        "created": label.created.isoformat(),
        "review": None if label.review is None else label.review.isoformat(),
        "alternatives": [
            {"party": a.party, "classification": a.classification, "agreement": a.agreement}
            for a in label.alternatives
        ],
    }


def _field(data: Mapping[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = data.get(name)
    if value is None:
        if required:
            raise LabelError(f"label.{name}: required")
        return None
    if not isinstance(value, kind):
        raise LabelError(f"label.{name}: expected {kind.__name__}, got {type(value).__name__}")
    if isinstance(value, str) and "\x00" in value:
        raise LabelError(f"label.{name}: contains a NUL character (U+0000)")
    return value


def _strings(data: Mapping[str, Any], name: str, *, words: bool = False) -> list[str]:
    value = data.get(name)
    if value is None:  # absent or null: none (but 0, false and "" are not lists)
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LabelError(f"label.{name}: expected a list of strings")
    if any("\x00" in v for v in value):
        raise LabelError(f"label.{name}: contains a NUL character (U+0000)")
    if words and any(not v.strip() for v in value):
        raise LabelError(f"label.{name}: an entry is empty or only white space")
    return value


def _words(data: Mapping[str, Any], name: str) -> str:
    """A required text that says something: not empty, not only white space (what str.strip removes)."""
    value: str = _field(data, name, str)
    if not value.strip():
        raise LabelError(f"label.{name}: is empty or only white space")
    return value


_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)


def _instant(data: Mapping[str, Any], name: str, *, required: bool) -> datetime | None:
    text = _field(data, name, str, required=required)
    if text is None:
        return None
    if not _TIMESTAMP.match(text):
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            raise LabelError(f"label.{name}: {text!r} is not an ISO 8601 instant") from None
        if at.tzinfo is None:
            raise LabelError(f"label.{name}: {text!r} has no UTC offset")
        raise LabelError(
            f"label.{name}: {text!r} is not an instant of the years 1900-2999 written as "
            "2024-01-01T09:00:00+09:00"
        )
    return datetime.fromisoformat(text)


def label_from_dict(data: Any, catalogue: Catalogue, *, held: bool = False) -> SecurityLabel:
    """Parse and check a label against the originator's scheme (names or aliases accepted).

    ``held``: read back from the node's own store, where it was checked when it came in; the checks
    a later revision added or a data revision changes (words, declared topics) are not made again.
    """
    if not isinstance(data, Mapping):
        raise LabelError("label: expected an object")
    known = {
        "policy",
        "originator",
        "classification",
        "releasable_to",
        "caveats",
        "purpose",
        "topics",
        "created",
        "review",
        "alternatives",
    }
    extra = sorted(set(data) - known)
    if extra:
        raise LabelError(f"label: unknown field(s) {', '.join(extra)}")
    policy = _field(data, "policy", str, required=False) or "gsomia"
    if policy != "gsomia":
        raise LabelError(f"label.policy: {policy!r} is not a policy this node enforces (gsomia)")
    raw_alts = data.get("alternatives")
    raw_alts = [] if raw_alts is None else raw_alts
    if not isinstance(raw_alts, list):
        raise LabelError("label.alternatives: expected a list")
    alternatives = []
    for n, alt in enumerate(raw_alts):
        if not isinstance(alt, Mapping) or not all(
            isinstance(alt.get(k), str) for k in ("party", "classification", "agreement")
        ):
            raise LabelError(f"label.alternatives[{n}]: needs party, classification and agreement strings")
        if any("\x00" in alt[k] for k in ("party", "classification", "agreement")):
            raise LabelError(f"label.alternatives[{n}]: contains a NUL character (U+0000)")
        alternatives.append(AlternativeLabel(alt["party"], alt["classification"], alt["agreement"]))
    created = _instant(data, "created", required=True)
    if created is None:  # unreachable: required=True raises first; kept for the type checker
        raise LabelError("label.created: required")
    try:
        return catalogue.label(
            originator=_field(data, "originator", str),
            classification=_field(data, "classification", str),
            releasable_to=_strings(data, "releasable_to"),
            purpose=_field(data, "purpose", str) if held else _words(data, "purpose"),
            topics=_strings(data, "topics", words=not held),
            caveats=_strings(data, "caveats", words=not held),
            created=created,
            review=_instant(data, "review", required=False),
            alternatives=alternatives,
            held=held,
        )
    except LabelError:
        raise
    except GsomiaError as exc:
        raise LabelError(f"label: {exc}") from exc


def label_created_at(template: SecurityLabel, created: Any) -> SecurityLabel:
    """``template`` (a label :func:`label_from_dict` parsed) with the creation instant ``created`` (its
    JSON form, checked as :func:`label_from_dict` checks it): for labels that differ from one parsed
    already in nothing else, as a store's labels mostly do (issue 18: parsed once, not per item)."""
    at = _instant({"created": created}, "created", required=True)
    if at is None:  # unreachable: required=True raises first; kept for the type checker
        raise LabelError("label.created: required")
    return template.copied(created=at)  # every other field as parsed


def person_to_dict(person: Person) -> dict[str, Any]:
    return {
        "id": person.id,
        "name": person.name,
        "nationality": person.nationality,
        "clearance": person.clearance,
        "need_to_know": sorted(person.need_to_know),
        "roles": sorted(r.value for r in person.roles),
        "active": person.active,
        "employment": person.employment.value,
        "contractor_measures": person.contractor_measures,
    }


def _person_text(data: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise LabelError(f"person.{name}: expected a string, got {type(value).__name__}")
    if "\x00" in value:
        raise LabelError(f"person.{name}: contains a NUL character (U+0000)")
    return value


def _person_strings(data: Mapping[str, Any], name: str) -> list[str]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LabelError(f"person.{name}: expected a list of strings")
    if any("\x00" in v for v in value):
        raise LabelError(f"person.{name}: contains a NUL character (U+0000)")
    return value


def person_from_dict(data: Any, catalogue: Catalogue) -> Person:
    """Parse and check a person: known nationality, a level of that party's scheme, known roles."""
    if not isinstance(data, Mapping):
        raise LabelError("person: expected an object")
    nationality = catalogue.party(str(_person_text(data, "nationality"))).code
    clearance = _person_text(data, "clearance", required=False)
    if clearance is not None:
        clearance = catalogue.level(nationality, clearance).name
    try:
        roles = frozenset(Role(r) for r in _person_strings(data, "roles"))
    except ValueError as exc:
        raise LabelError(f"person.roles: {exc}; known: {', '.join(r.value for r in Role)}") from exc
    active = data.get("active", True)
    if not isinstance(active, bool):
        raise LabelError(f"person.active: expected true or false, got {type(active).__name__}")
    employment_text = _person_text(data, "employment", required=False) or Employment.OFFICIAL.value
    try:
        employment = Employment(employment_text)
    except ValueError as exc:
        raise LabelError(
            f"person.employment: {employment_text!r} is not one of {', '.join(e.value for e in Employment)}"
        ) from exc
    return Person(
        id=str(_person_text(data, "id")),
        name=str(_person_text(data, "name")),
        nationality=nationality,
        clearance=clearance,
        need_to_know=frozenset(_person_strings(data, "need_to_know")),
        roles=roles,
        active=active,
        employment=employment,
        contractor_measures=_person_text(data, "contractor_measures", required=False),
    )


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def party_json(party: Party) -> dict[str, Any]:
    return {
        "code": party.code,
        "name": party.name,
        "scheme": party.scheme.title,
        "levels": [
            {"name": lv.name, "alias": lv.alias, "gloss": lv.gloss, "rank": lv.rank}
            for lv in sorted(party.scheme.levels, key=lambda lv: -lv.rank)
        ],
    }


def agreement_json(agreement: Agreement) -> dict[str, Any]:
    return {
        "id": agreement.id,
        "title": agreement.title,
        "parties": list(agreement.parties),
        "topology": agreement.topology.value,
        "hub": agreement.hub,
        "scope": None if agreement.scope_topics is None else sorted(agreement.scope_topics),
        "purposes": sorted(agreement.purposes),
        "timezone": str(agreement.timezone),
        "events": [
            {
                "id": e.id,
                "kind": e.kind.value,
                "at": e.at.isoformat(),
                "party": e.party,
                "reference": e.reference,
            }
            for e in agreement.events
        ],
    }


def state_json(state: AgreementState) -> dict[str, Any]:
    notice = state.notice
    return {
        "agreement": state.agreement,
        "at": state.at.isoformat(),
        "in_force": state.in_force,
        "status": state.status.value,
        "since": _iso(state.since),
        "term_end": _iso(state.term_end),
        "notice_deadline": _iso(state.notice_deadline),
        "notice": None
        if notice is None
        else {
            "event": notice.event.id,
            "given_at": notice.event.at.isoformat(),
            "by": notice.event.party,
            "reference": notice.event.reference,
            "effective_end": notice.effective_end.isoformat(),
            "deadline": _iso(notice.deadline),
            "on_time": notice.on_time,
        },
        "explanation": state.explanation,
        "assumptions": assumptions_json(state.assumptions),
    }


def assumptions_json(assumptions: Iterable[Assumption]) -> list[dict[str, str]]:
    """Each assumption a state or decision rests on: what is assumed, its consequence, what about."""
    return [{"text": a.text, "consequence": a.consequence, "about": a.about} for a in assumptions]


def decision_json(
    decision: ReleaseDecision, assumptions: Iterable[Assumption] | None = None
) -> dict[str, Any]:
    """A decision as JSON; ``assumptions`` (for people reading it, not for the audit record)
    adds what the decision rests on."""
    marking = decision.marking
    extra = {} if assumptions is None else {"assumptions": assumptions_json(assumptions)}
    return {
        **extra,
        "allowed": decision.allowed,
        "at": decision.at.isoformat(),
        "route": list(decision.route),
        "agreement": decision.agreement,
        "considered": list(decision.considered),
        "checks": [{"rule": c.rule, "passed": c.passed, "reason": c.reason} for c in decision.checks],
        "marking": None
        if marking is None
        else {
            "text": marking.text,
            "originator": marking.originator,
            "party": marking.party,
            "classification": marking.classification,
            "alias": marking.alias,
            "gloss": marking.gloss,
            "agreement": marking.agreement,
        },
    }


def instant_from_json(value: Any, what: str) -> datetime:
    """An aware instant from its ISO 8601 text in a signed message; ``what`` names the field in errors."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what}: expected an ISO 8601 instant")
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInputError(f"{what}: {value!r} is not ISO 8601") from exc
    if at.utcoffset() is None:
        raise InvalidInputError(f"{what}: no UTC offset")
    return at


def json_object(content: bytes, what: str) -> dict[str, Any]:
    """Signed content parsed as a JSON object; ``InvalidInputError`` naming ``what`` otherwise, or
    naming the place of text no store can hold (:func:`unstorable`): a partner's signed item,
    portion, consent, assurance, equivalence change or duty is refused here, whatever kind it is."""
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{what}: not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{what}: expected an object")
    refuse_unstorable(data, what)
    return data


def text_field(data: Mapping[str, Any], name: str, what: str, *, optional: bool = False) -> Any:
    """``data[name]``, a non-empty string (or ``None`` when ``optional`` and absent)."""
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{what}.{name}: expected a non-empty string")
    return value


def consent_content(consent: Consent, consent_id: str) -> bytes:
    purpose = {} if consent.purpose is None else {"purpose": consent.purpose}
    return canonical(
        {
            **purpose,
            "v": 1,
            "kind": "consent",
            "id": consent_id,
            "consent_kind": consent.kind.value,
            "originator": consent.originator,
            "recipient": consent.recipient,
            "item": consent.item,
            "holder": consent.holder,
            "hub": consent.hub,
            "given_at": consent.given_at.isoformat(),
            "expires": None if consent.expires is None else consent.expires.isoformat(),
            "reference": consent.reference,
        }
    ).encode()


def consent_from_content(content: bytes, signer: str) -> tuple[str, Consent]:
    """(consent id, consent); the signer must be the originator the consent speaks for."""
    data = json_object(content, "consent")
    if data.get("v") != 1 or data.get("kind") != "consent":
        raise InvalidInputError("consent: not a version 1 consent")
    originator = text_field(data, "originator", "consent")
    if originator != signer:
        raise InvalidInputError(f"consent: signed by {signer}, but speaks for {originator}")
    try:
        kind = ConsentKind(str(data.get("consent_kind")))
    except ValueError as exc:
        raise InvalidInputError(
            "consent.consent_kind: third_party, hub_relay, track_relay or new_purpose"
        ) from exc
    expires = data.get("expires")
    consent = Consent(
        kind=kind,
        originator=originator,
        recipient=text_field(data, "recipient", "consent"),
        given_at=instant_from_json(data.get("given_at"), "consent.given_at"),
        reference=text_field(data, "reference", "consent"),
        item=text_field(data, "item", "consent", optional=True),
        holder=text_field(data, "holder", "consent", optional=True),
        hub=text_field(data, "hub", "consent", optional=True),
        expires=None if expires is None else instant_from_json(expires, "consent.expires"),
        purpose=text_field(data, "purpose", "consent", optional=True),
    )
    return text_field(data, "id", "consent"), consent


def equivalence_change_to_dict(change: EquivalenceChange) -> dict[str, Any]:
    """A party's equivalence change as it is signed, stored and shown."""
    return {
        "v": 1,
        "kind": "equivalence-change",
        "agreement": change.agreement,
        "party": change.party,
        "sequence": change.sequence,
        "effective": change.effective.isoformat(),
        "remaps": [
            {"party": r.party, "level": r.level, "partner": r.partner, "partner_level": r.partner_level}
            for r in change.remaps
        ],
        "reason": change.reason,
        "proposed_at": change.proposed_at.isoformat(),
    }


def equivalence_change_from_dict(data: Any) -> EquivalenceChange:
    """The change a signed content or a stored row holds; ``InvalidInputError`` names the field."""
    what = "equivalence-change"
    if not isinstance(data, dict) or data.get("v") != 1 or data.get("kind") != what:
        raise InvalidInputError(f"{what}: not a version 1 equivalence change")
    sequence = data.get("sequence")
    if not isinstance(sequence, int) or isinstance(sequence, bool) or not 1 <= sequence < 2**62:
        raise InvalidInputError(f"{what}.sequence: expected a positive integer")
    raw = data.get("remaps")
    if not isinstance(raw, list):
        raise InvalidInputError(f"{what}.remaps: expected a list")
    remaps = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise InvalidInputError(f"{what}.remaps: each remapping is an object")
        remaps.append(
            Remap(
                text_field(entry, "party", f"{what}.remaps"),
                text_field(entry, "level", f"{what}.remaps"),
                text_field(entry, "partner", f"{what}.remaps"),
                text_field(entry, "partner_level", f"{what}.remaps", optional=True),
            )
        )
    try:
        return EquivalenceChange(
            agreement=text_field(data, "agreement", what),
            party=text_field(data, "party", what),
            sequence=sequence,
            effective=instant_from_json(data.get("effective"), f"{what}.effective"),
            remaps=tuple(remaps),
            reason=text_field(data, "reason", what),
            proposed_at=instant_from_json(data.get("proposed_at"), f"{what}.proposed_at"),
        )
    except InvalidInputError:
        raise
    except GsomiaError as exc:
        raise InvalidInputError(f"{what}: {exc}") from exc
