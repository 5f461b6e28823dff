"""Request and response bodies of the REST API (pydantic, at the boundary only)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Annotated, Any, Literal, overload

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from gsomia.api._fields import (
    MAX_INT,
    AgreementId,
    Bool,
    Classification,
    Id,
    Instant,
    Party,
    RoleName,
    Topic,
    Words,
    whole_number,
)
from gsomia.core.instants import parse_instant
from gsomia.core.portions import MAX_PORTIONS, PORTION_ID
from gsomia.errors import InvalidInputError
from gsomia.exchange import MAX_RELEASE_ITEMS

if TYPE_CHECKING:
    from datetime import datetime

    from gsomia.node import Node


class _In(BaseModel):
    """A request body: no field beyond those declared, no JSON value coerced into another type."""

    model_config = ConfigDict(extra="forbid", strict=True)


LABEL = Field(
    description="The security label (see docs/API.md).", json_schema_extra={"x-gsomia-shape": "label"}
)
BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


class PortionIn(_In):
    """One portion of an item in portions: its id, its own label, ``payload`` or ``payload_base64``."""

    id: Annotated[str, Field(pattern=PORTION_ID.pattern)]
    label: dict[str, Any] = LABEL
    payload: Any = None
    payload_base64: Annotated[str, Field(pattern=BASE64)] | None = None


class ItemIn(_In):
    """A labelled item to ingest: give ``payload`` (any JSON) or ``payload_base64`` (bytes), or, for
    an item in portions (a report's body and its tearline), ``portions`` instead of a label and a
    payload: each portion with its own label; the item's label is the highest of theirs.

    An item of this node's own party names no source; a received item names the party it came
    from and the agreement it came under, whose equivalence table maps its level onto this node's.
    """

    model_config = ConfigDict(json_schema_extra={"x-gsomia-shape": "ingest"})

    id: Id | None = Field(default=None, description="Client-chosen id; a UUID is made when absent.")
    label: dict[str, Any] | None = Field(
        default=None,
        description="The security label (see docs/API.md); absent for an item in portions.",
        json_schema_extra={"x-gsomia-shape": "label"},
    )
    portions: Annotated[list[PortionIn], Field(min_length=1, max_length=MAX_PORTIONS)] | None = None
    payload: Any = None
    payload_base64: Annotated[str, Field(pattern=BASE64)] | None = None
    received_from: Party | None = Field(
        default=None,
        description="Refused for a person: another party's item arrives through the exchange, "
        "under its originator's signature, never by ingest.",
    )
    agreement: AgreementId | None = Field(
        default=None, description="Refused for a person, with received_from."
    )


class AlternativeOut(BaseModel):
    party: str
    classification: str
    agreement: str


class LabelOut(BaseModel):
    policy: str
    originator: str
    classification: str
    releasable_to: list[str]
    caveats: list[str]
    purpose: str
    topics: list[str]
    created: str
    review: str | None
    alternatives: list[AlternativeOut]


class PortionOut(BaseModel):
    """A portion's mark: what a reader may see of one portion of an item in portions."""

    id: str
    label: LabelOut


class ItemOut(BaseModel):
    id: str = Field(
        description="This node's reference for the item: the id its originator gave it, or "
        "ORIGINATOR:id where another originator's item held that id here first (issue 22 §4)."
    )
    origin_id: str | None = Field(
        default=None, description="The id the originator gave the item, where ``id`` is not it."
    )
    label: LabelOut
    received_from: str | None
    agreement: str | None
    ingested: str
    ingested_by: str
    payload_type: str
    payload_size: int
    portions: list[PortionOut] | None = Field(
        default=None,
        description="An item in portions: the portions the caller may read (and only those), each "
        "with its label; the item's label is the highest of theirs.",
    )


class ItemContentOut(ItemOut):
    payload: Any = None
    payload_base64: str | None = None


class PageOut(BaseModel):
    items: list[ItemOut]
    next_cursor: str | None = Field(
        description="Present only when more items the caller may read follow; nothing here says "
        "anything about items the caller may not read."
    )


class InventoryOut(BaseModel):
    at: str
    kind: str
    party: str | None
    actor: str | None
    detail: dict[str, Any]


class PersonIn(_In):
    """A person to register; a clearance is a level of the nationality's scheme (name or alias)."""

    model_config = ConfigDict(json_schema_extra={"x-gsomia-shape": "person"})

    id: Id
    name: Annotated[Words, Field(max_length=200)]
    nationality: Party
    clearance: Classification | None = None
    need_to_know: list[Topic] = []
    roles: list[RoleName] = []
    employment: Literal["official", "contractor"] = Field(
        "official", description="A government official, or a contractor's employee (Art. 7(2), 16)."
    )
    contractor_measures: Annotated[Words, Field(max_length=200)] | None = Field(
        None,
        description="For a contractor: the reference of its facility and personnel security measures "
        "on file (Art. 16); without it a contractor reads no other party's item.",
    )


class PersonOut(BaseModel):
    id: str
    name: str
    nationality: str
    clearance: str | None
    need_to_know: list[str]
    roles: list[str]
    active: bool
    employment: str = "official"
    contractor_measures: str | None = None


class TokenIn(_In):
    days: Annotated[
        int,
        Field(ge=1, le=365, description="Lifetime in days (a whole number)."),  # before the validator,
        BeforeValidator(whole_number),  # or the schema loses the bounds
        Field(strict=False),
    ] = 30


class TokenOut(BaseModel):
    id: str
    token: str = Field(description="Shown once; only its hash is stored.")
    expires: str


class TokenInfoOut(BaseModel):
    """A token or dashboard session as listed: never its secret."""

    id: str
    kind: str = Field(description="api (a bearer token) or session (a dashboard session, read-only)")
    created: str
    expires: str
    revoked: str | None
    minted_by: str | None = Field(description="the token that minted it; null: issued by the node's operator")


class PersonDisabledOut(BaseModel):
    person: PersonOut
    revoked: list[str] = Field(description="the tokens and sessions revoked by this change")


class AgreementOut(BaseModel):
    id: str
    title: str
    parties: list[str]
    topology: str
    hub: str | None
    scope: list[str] | None
    purposes: list[str]
    timezone: str
    events: list[dict[str, Any]]


class NoticeOut(BaseModel):
    event: str
    given_at: str
    by: str | None
    reference: str
    effective_end: str
    deadline: str | None
    on_time: bool


class AssumptionOut(BaseModel):
    text: str = Field(description="What the model assumes where the record is silent or disputed.")
    consequence: str = Field(description="What follows from it in this state or decision.")
    about: str = Field(description="The event id or status it concerns; empty: the whole agreement.")


class StatusOut(BaseModel):
    agreement: str
    at: str
    in_force: bool
    status: str
    since: str | None
    term_end: str | None
    notice_deadline: str | None
    notice: NoticeOut | None
    explanation: str
    assumptions: list[AssumptionOut] = []


class ConsentIn(_In):
    kind: Literal["third_party", "hub_relay", "track_relay"]
    originator: Party
    recipient: Party
    given_at: Instant
    reference: Words
    item: Id | None = None
    holder: Party | None = None
    hub: Party | None = None
    expires: Instant | None = None


class DecisionIn(_In):
    sender: Party
    recipient: Party
    via: list[Party] = Field(default=[], max_length=1)
    purpose: Annotated[Words, Field(max_length=200)]
    label: dict[str, Any] = LABEL
    item: Id | None = None
    consents: list[ConsentIn] = Field(default=[], max_length=100)
    at: Instant


class CheckOut(BaseModel):
    rule: str
    passed: bool
    reason: str


class MarkingOut(BaseModel):
    text: str
    originator: str
    party: str
    classification: str
    alias: str
    gloss: str
    agreement: str


class DecisionOut(BaseModel):
    allowed: bool
    at: str
    route: list[str]
    agreement: str | None
    considered: list[str]
    checks: list[CheckOut]
    marking: MarkingOut | None
    assumptions: list[AssumptionOut] = []


class RemapIn(_In):
    """One of this node's levels and the partner's level it corresponds to from the change's instant."""

    level: Annotated[Classification, Field(json_schema_extra={"x-gsomia-vocabulary": "own-level"})] = Field(
        description="One of this node's own levels (name or alias)."
    )
    partner: Party
    partner_level: Classification | None = Field(
        default=None, description="The partner's level; null: no equivalent (no longer released)."
    )


class EquivalenceChangeIn(_In):
    """This node's change to its side of the agreement's equivalence table (security officers)."""

    remaps: list[RemapIn] = Field(min_length=1, max_length=64)
    effective: Instant = Field(description="When it takes effect: now or later.")
    reason: Annotated[Words, Field(max_length=500)]


class RemapOut(BaseModel):
    party: str
    level: str
    partner: str
    partner_level: str | None


class EquivalenceChangeOut(BaseModel):
    agreement: str
    party: str
    sequence: int
    effective: str
    applies: str
    remaps: list[RemapOut]
    reason: str
    proposed_at: str
    proposed_by: str | None
    received_from: str | None
    recorded: str


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str


class InboxIn(_In):
    envelopes: list[str] = Field(
        min_length=1,
        max_length=1000,
        description="Envelopes (gsomia-envelope/3, COSE; /2 and /1, read too); each opened or refused alone.",
    )


class InboxResultOut(BaseModel):
    status: str = Field(description="stored, relayed, already-held, duplicate, recorded, refused or batch")
    receipt: str | None = Field(description="The receiver's signed receipt (compact JWS)")
    reason: str | None
    retry: bool = Field(
        False,
        description="Refused for now (the envelope's time: the clocks differ, or it expired on the way): "
        "the sender may send the same message again in a fresh envelope",
    )
    results: list[InboxResultOut] | None = Field(
        None,
        description="A batch envelope's (status 'batch'): one result per message it carries, in order",
    )
    receipts: list[str] | None = Field(
        None,
        description="A batch envelope's (status 'batch'): the receipts its duplicates had the first time, "
        "each once (a duplicate names its own by position in receipt_of)",
    )
    receipt_of: int | None = Field(
        None,
        description="A duplicate in a batch: the position in the batch answer's receipts of the receipt "
        "it had the first time",
    )


class InboxOut(BaseModel):
    results: list[InboxResultOut]


class ReleaseIn(_In):
    recipient: Party
    via: Party | None = None
    purpose: Annotated[Words, Field(max_length=200)] | None = None
    authorise_relay: Bool = Field(default=False, description="As originator, authorise the hub to pass it on")


class OutboxOut(BaseModel):
    msg_id: str
    kind: str
    item_id: str | None
    recipient: str
    final_recipient: str
    state: str
    attempts: int
    last_error: str | None
    receipt: str | None
    decision: dict[str, Any]


class ReleasesIn(ReleaseIn):
    items: list[Id] = Field(
        min_length=1,
        max_length=MAX_RELEASE_ITEMS,
        description="The items of the selection, each named once; each is decided on its own.",
        json_schema_extra={"uniqueItems": True},
    )


class RefusedOut(BaseModel):
    item: str
    reason: str


class ReleasesOut(BaseModel):
    queued: list[OutboxOut]
    refused: list[RefusedOut]


class PeerIn(_In):
    document: dict[str, Any]  # the partner's signed identity document (JWS general JSON serialization)
    agreements: list[AgreementId] = Field(min_length=1)
    replace: bool = False  # a registered partner's document taken afresh (checked out of band)


class PeerOut(BaseModel):
    party: str
    node: str
    endpoint: str
    agreements: list[str]
    keys: list[str]


class EnvelopeVersionOut(BaseModel):
    party: str = Field(description="A partner's trigraph, or `all`: every partner (a cut-off).")
    lowest: int = Field(
        description="The lowest version stored: 1 JOSE, 2 COSE (base64url or base64), 3 what nodes seal now."
    )
    effective: int = Field(
        description="The lowest the inbox opens from that party now: its row or `all`'s in force, the higher."
    )
    since: str = Field(description="From when the row holds.")
    pending: bool = Field(description="A cut-off still ahead (`all` only).")
    cause: str = Field(
        description="`sent`: raised by the partner's own COSE envelope; `set`: by an administrator."
    )
    by: str | None = Field(description="Who set it (`set` rows).")


class EnvelopeVersionIn(_In):
    lowest: Annotated[
        int,
        Field(ge=1, le=3, description="1 JOSE, 2 COSE (base64url or base64), 3 only what nodes seal now."),
        BeforeValidator(whole_number),  # JSON's 2.0 is 2 (JSON Schema says so); true and "2" are not
        Field(strict=False),
    ]
    since: Instant | None = Field(
        default=None,
        alias="from",
        description="For `all` only: from this instant on (a cut-off; default: now).",
    )


class KeyRevokeIn(_In):
    at: Instant | None = Field(
        default=None, description="Refused from this instant on (default: now); earlier is retroactive."
    )


class KeyRevokedOut(BaseModel):
    peer: PeerOut
    kid: str
    revoked_at: str = Field(description="The instant the key is refused from (an earlier one stands).")
    changed: bool = Field(description="False when the key was revoked at that instant or earlier already.")


class ConsentRequestIn(_In):
    third_party: Party
    purpose: Annotated[Words, Field(max_length=200)]
    reason: Words


class AssuranceIn(_In):
    agreement: AgreementId
    reference: Words = Field(description="The instrument that gives the assurance (a note, a letter).")


class AssuranceRevokeIn(_In):
    reason: Words


class AssuranceOut(BaseModel):
    id: str
    agreement: str
    party: str
    given_at: str
    reference: str
    revoked_at: str | None
    verified: bool


class PurposeConsentIn(_In):
    holder: Party
    purpose: Annotated[Words, Field(max_length=200)]
    reason: Words
    expires: Instant | None = None


class ForkAcknowledgementIn(_In):
    note: Annotated[Words, Field(max_length=1000)]
    through: (  # the last evidence id the officer read
        Annotated[
            int,
            Field(ge=1, le=MAX_INT),  # before the validator, or the schema loses the bounds
            BeforeValidator(whole_number),  # 5027.0 is the integer JSON Schema says it is
            Field(strict=False),
        ]
        | None
    ) = None


class PartnerOut(BaseModel):
    party: str
    size: int | None
    root: str | None
    at: str | None
    status: str
    detail: str | None
    heads: int
    forks: int
    acknowledged_forks: int
    gossip_pending: int


class ForkHeadOut(BaseModel):
    size: int
    root: str
    jws: str


class ForkOut(BaseModel):
    id: int
    party: str
    found: str
    shown_by: str
    detail: str
    heads: list[ForkHeadOut]
    verified: bool
    acknowledged: str | None
    acknowledged_by: str | None
    note: str | None


class ForkAcknowledgedOut(BaseModel):
    party: str
    acknowledged: list[int]
    status: str | None


class ConsentAnswerIn(_In):
    grant: Bool
    reason: Words
    expires: Instant | None = None


class ConsentRequestOut(BaseModel):
    id: str
    item_id: str
    originator: str
    holder: str
    third_party: str
    purpose: str
    reason: str
    state: str
    answer: str | None


def instant_in(node: Node, text: str, name: str) -> datetime:
    """A request's instant: ISO 8601, a bare date meaning local midnight in the node's agreements' zone."""
    try:
        return parse_instant(text, node.kernel.timezone)
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f"{name}: {exc}") from exc


@overload
def payload_in(payload: Any, payload_base64: str | None, *, required: Literal[True]) -> tuple[bytes, str]: ...
@overload
def payload_in(
    payload: Any, payload_base64: str | None, *, required: Literal[False]
) -> tuple[bytes, str] | None: ...
def payload_in(payload: Any, payload_base64: str | None, *, required: bool) -> tuple[bytes, str] | None:
    """A request's payload and its type: JSON (``payload``, stored as UTF-8 JSON) or bytes
    (``payload_base64``); ``None`` when it gives neither and none is ``required``. Both at once, or
    bad base64, is bad input."""
    one = "exactly one" if required else "at most one"
    if payload_base64 is not None:
        if payload is not None:
            raise InvalidInputError(f"give {one} of payload (JSON) or payload_base64 (bytes)")
        try:
            return base64.b64decode(payload_base64, validate=True), "bytes"
        except (binascii.Error, ValueError) as exc:
            raise InvalidInputError(f"payload_base64 is not valid base64: {exc}") from exc
    if payload is not None:
        return json.dumps(payload, ensure_ascii=False).encode(), "json"
    if required:
        raise InvalidInputError(f"give {one} of payload (JSON) or payload_base64 (bytes)")
    return None
