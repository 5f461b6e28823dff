"""The release engine: may this item go from this sender to this recipient at this instant?

``ReleaseEngine.decide(request, at=t)`` evaluates every rule against each agreement
that could govern the route and returns a :class:`ReleaseDecision` listing each
check with its outcome and reason. It fails closed: no candidate agreement, an
empty rule set, an unknown caveat or level all refuse. ``authorise`` raises
:class:`~gsomia.errors.ReleaseRefused` instead of returning a refusal.

Warm decisions are cheap: per-route candidates, status intervals, equivalences
and their reasons are compiled once; the label rules' checks are kept per label
key and stretch of time, the assurance rule's per tuple of assurances and stretch
between their instants, so a decision is dictionary look-ups, bisects and a tuple
of checks. For a request carrying no consent, no approval and no two-person policy asking
anything, the rules that then read only the route and the originator (``route_only``: the
third-party, hub and two-person rules) answer from one look-up per candidate and
originator. A later candidate is asked only until it fails as many rules as the
refusal already held (it could then be neither allowed nor reported: the first of
the fewest failures is). ``ReleaseEngine.decide_plainly`` works every rule out
from the request alone, for every candidate: the reference the kept outcomes and
the cut-short candidates are tested against.
"""

from __future__ import annotations

import sys
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from enum import StrEnum
from operator import attrgetter
from typing import Any, NamedTuple, Protocol, TypeVar

from gsomia.core._kept import keep_hash, restore_without_hash, state_without_hash
from gsomia.core.agreements import Agreement, Topology
from gsomia.core.approvals import Approval, TwoPersonPolicy
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import require_aware
from gsomia.core.labels import CAVEATS, AlternativeLabel, CaveatEffect, SecurityLabel
from gsomia.core.lifecycle import Status
from gsomia.errors import InstantError, LabelError, ReleaseRefused

__all__ = [
    "ASSUMED_ASSURANCE",
    "AllOf",
    "Assurance",
    "Check",
    "Consent",
    "ConsentKind",
    "LabelRules",
    "Marking",
    "ReleaseDecision",
    "ReleaseEngine",
    "ReleaseRequest",
    "Rule",
    "assumed_assurances",
    "standard_rules",
]


class ConsentKind(StrEnum):
    THIRD_PARTY = "third_party"  # Art. 6: a holder may release to a named third party
    HUB_RELAY = "hub_relay"  # TISA: the hub may pass the named item on to the named recipient
    TRACK_RELAY = "track_relay"  # TISA: the hub may pass the originator's tracks on (the stream, no item)
    NEW_PURPOSE = "new_purpose"  # Art. 6(b): the recipient may use the item for another purpose


@dataclass(frozen=True, slots=True)
class Consent:
    """The originator's prior written consent, per recipient and per item (or standing)."""

    kind: ConsentKind
    originator: str
    recipient: str
    given_at: datetime
    reference: str
    item: str | None = None  # None: a standing authorisation for every item of the originator
    holder: str | None = None  # third_party: the holder it authorises (None: any holder)
    hub: str | None = None  # hub_relay: the hub it authorises (None: any hub of the agreement)
    expires: datetime | None = None
    purpose: str | None = None  # the purpose it authorises (None: any)

    given_ts: float = field(init=False, repr=False, compare=False)
    expires_ts: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require_aware(self.given_at, "consent instant")
        object.__setattr__(self, "given_ts", self.given_at.timestamp())
        expires = (
            float("inf")
            if self.expires is None
            else require_aware(self.expires, "consent expiry").timestamp()
        )
        object.__setattr__(self, "expires_ts", expires)
        if not self.reference:
            raise LabelError("a consent needs a reference to the written instrument")
        if self.kind is ConsentKind.NEW_PURPOSE and not self.purpose:
            raise LabelError("a consent to a new purpose names the purpose (Art. 6(b))")

    def covers(self, item: str | None, ts: float) -> bool:
        """Whether this consent was on file at ``ts`` and applies to ``item``."""
        if self.item is not None and self.item != item:
            return False
        return self.given_ts <= ts < self.expires_ts


@dataclass(frozen=True, slots=True)
class Assurance:
    """The recipient's assurance before provision (ROK–Japan GSOMIA Art. 7(5)): that the information
    will be given the clearance level asked, used only for official purposes and given protection
    equivalent to the providing party's. Given by ``party`` (its node signs it) for ``agreement``
    at ``given_at``; it holds until ``revoked_at``, and only while its signature verifies: a node
    that verified it at one instant sets ``verified_until``, the instant the key that signed it (or
    its revocation) ends or is revoked, so that a kept assurance stops counting then, whenever it
    was verified (``None``: no end known)."""

    agreement: str
    party: str
    given_at: datetime
    reference: str
    revoked_at: datetime | None = None
    id: str = ""
    verified_until: datetime | None = None

    given_ts: float = field(init=False, repr=False, compare=False)
    revoked_ts: float = field(init=False, repr=False, compare=False)  # revoked, or no longer verified
    # the hash once asked (-1: not yet; ``hash()`` never answers -1): a node hands the same tuple of
    # assurances to every decision, and a batch's memo hashes it per look-up (issue 18)
    hash_: int = field(default=-1, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        """Every compared field of the assurance, in order (the generated value), hashed once."""
        found = self.hash_
        return (
            found
            if found != -1
            else keep_hash(
                self,
                (
                    self.agreement,
                    self.party,
                    self.given_at,
                    self.reference,
                    self.revoked_at,
                    self.id,
                    self.verified_until,
                ),
            )
        )

    __getstate__ = state_without_hash  # pickled and copied without the kept hash
    __setstate__ = restore_without_hash

    def __post_init__(self) -> None:
        require_aware(self.given_at, "assurance instant")
        object.__setattr__(self, "given_ts", self.given_at.timestamp())
        ends = [
            require_aware(at, what).timestamp()
            for at, what in (
                (self.revoked_at, "assurance revocation"),
                (self.verified_until, "assurance key end"),
            )
            if at is not None
        ]
        object.__setattr__(self, "revoked_ts", min(ends, default=float("inf")))
        if not self.reference.strip():
            raise LabelError("an assurance needs a reference")

    @property
    def ends_at(self) -> datetime | None:
        """The first instant it no longer holds: revoked, or its signature's key ended (``None``: never)."""
        ends = [at for at in (self.revoked_at, self.verified_until) if at is not None]
        return min(ends, default=None)

    def holds(self, ts: float) -> bool:
        return self.given_ts <= ts < self.revoked_ts


ASSUMED_ASSURANCE = (
    "assumed from the record: information was provided under the agreement from its entry into force"
)


def assumed_assurances(catalogue: Catalogue) -> tuple[Assurance, ...]:
    """The assurances the public record implies (an assumption each agreement's data states): every
    party of an agreement gave its Art. 7(5) assurance when the agreement entered into force. For
    decisions made without a node (``gsomia decide``, the story) and to seed the demo network."""
    out = []
    for agreement in sorted(catalogue.agreements.values(), key=lambda a: a.id):
        entry = next((t.at for t in agreement.transitions if t.status.in_force), None)
        if entry is None:
            continue
        out += [Assurance(agreement.id, party, entry, ASSUMED_ASSURANCE) for party in agreement.parties]
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    """A release of an item labelled ``label`` from ``sender`` to ``recipient``."""

    label: SecurityLabel
    sender: str
    recipient: str
    purpose: str
    via: tuple[str, ...] = ()
    item: str | None = None
    consents: tuple[Consent, ...] = ()
    two_person: TwoPersonPolicy | None = None  # the sender's two-person policy (None: it has none)
    approval: Approval | None = None  # a second release officer's approval of this release
    grants_relay: bool = False  # the release carries a hub-relay authorisation it creates
    assurances: tuple[Assurance, ...] = ()  # the recipients' assurances on file (Art. 7(5))
    # an item in portions: the portions this release sends (``label`` is the highest of theirs) ...
    portions: tuple[str, ...] = ()
    # ... or the one portion decided on its own label, before the release's set is known
    portion: str | None = None


# a request's fields but the item's id, in order: what a batch's memo keys a decision by (``decide``)
_BUT_ITEM = attrgetter(*(f.name for f in fields(ReleaseRequest) if f.name != "item"))


class Check(NamedTuple):
    """One rule's outcome and the reason a person can read."""

    rule: str
    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Marking:
    """The recipient's marking (Art. 4): originator's name and the recipient's level."""

    originator: str
    party: str
    classification: str
    alias: str
    gloss: str
    agreement: str

    @property
    def text(self) -> str:
        return f"{self.originator} {self.classification}"

    def alternative_label(self) -> AlternativeLabel:
        return AlternativeLabel(self.party, self.classification, self.agreement)


@dataclass(frozen=True, slots=True)
class ReleaseDecision:
    """Allowed or refused, with every check that applied and why."""

    allowed: bool
    at: datetime
    route: tuple[str, ...]
    agreement: str | None
    checks: tuple[Check, ...]
    marking: Marking | None
    considered: tuple[str, ...] = ()

    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)


_new = object.__new__


class _Building:
    """A :class:`ReleaseDecision` while the engine fills it in: the same slots in the same order (so
    an instance may become a ``ReleaseDecision`` by ``__class__`` assignment, which Python allows
    between classes of one slot layout), but not frozen, so that each field is one slot store where
    the frozen dataclass's ``__init__`` calls ``object.__setattr__`` per field. A test holds that
    the layouts match and that the two make equal decisions."""

    __slots__ = ("agreement", "allowed", "at", "checks", "considered", "marking", "route")

    allowed: bool
    at: datetime
    route: tuple[str, ...]
    agreement: str | None
    checks: tuple[Check, ...]
    marking: Marking | None
    considered: tuple[str, ...]


def _decision(
    allowed: bool,
    at: datetime,
    route: tuple[str, ...],
    agreement: str | None,
    checks: tuple[Check, ...],
    marking: Marking | None,
    considered: tuple[str, ...],
) -> ReleaseDecision:
    """``ReleaseDecision(...)`` with every field given, as the engine makes one per decision: each
    slot stored on a :class:`_Building`, which then becomes the frozen ``ReleaseDecision`` (a test
    holds that the two make equal decisions and that this sets every field)."""
    decision = _new(_Building)
    decision.allowed = allowed
    decision.at = at
    decision.route = route
    decision.agreement = agreement
    decision.checks = checks
    decision.marking = marking
    decision.considered = considered
    decision.__class__ = ReleaseDecision  # type: ignore[assignment]
    return decision  # type: ignore[return-value]


# the kinds of time zone whose ``utcoffset`` always answers an offset (an instant in one is aware):
# fixed offsets, and ``zoneinfo.ZoneInfo`` once seen (the core does not import ``zoneinfo``, which
# reads the system's zone files; an instant in a ZoneInfo zone exists only once a caller has)
_ALWAYS_AWARE: set[type] = {timezone}


def _always_aware(kind: type) -> bool:
    """Whether ``kind`` is ``zoneinfo.ZoneInfo`` itself (then remembered), not a look-alike."""
    zoneinfo = sys.modules.get("zoneinfo")
    if zoneinfo is not None and kind is zoneinfo.ZoneInfo:
        _ALWAYS_AWARE.add(kind)
        return True
    return False


_V = TypeVar("_V")
_MEMO_LIMIT = 4096  # per candidate; cleared when full so a long-running node stays bounded


class _Candidate:
    """One agreement compiled for one route (sender, hubs, recipient).

    Rule outcomes depend only on a few label fields, so each rule memoises its
    :class:`Check` per candidate under a small key: a warm decision then allocates
    little more than the tuple of checks and the decision.
    """

    __slots__ = (
        "alternatives",
        "assured",
        "breaks",
        "by_epoch",
        "cuts",
        "ended",
        "hub",
        "id",
        "last_start",
        "mappings",
        "memo",
        "own",
        "purposes",
        "receivers",
        "scope",
        "scope_text",
        "starts",
        "states",
    )

    def __init__(
        self, agreement: Agreement, catalogue: Catalogue, receivers: tuple[str, ...], hub: str | None
    ) -> None:
        self.id = agreement.id
        self.hub = hub
        self.receivers = receivers
        self.purposes = agreement.purposes
        self.scope = agreement.scope_topics
        self.scope_text = ", ".join(sorted(self.scope)) if self.scope is not None else ""
        self.starts = [t.at.timestamp() for t in agreement.transitions]
        first = agreement.transitions[0].at.isoformat() if agreement.transitions else None
        not_yet = (
            f"{agreement.id} is not in force: it enters into force at {first}"
            if first
            else f"{agreement.id} is not in force: no entry into force is recorded"
        )
        self.states: list[Check] = [Check(_InForce.name, False, not_yet)] + [
            Check(_InForce.name, t.status.in_force, f"{agreement.id}: {t.reason}")
            for t in agreement.transitions
        ]
        # the same intervals: a return to the originator after termination (Art. 6(h), 21.4)
        self.ended: list[Check | None] = [None]
        self.ended += [
            Check(
                _InForce.name,
                True,
                f"{agreement.id} is terminated ({t.reason}), but an item provided under it may "
                f"always go back to its originator (Art. 6(h), 21.4)",
            )
            if t.status is Status.TERMINATED
            else None
            for t in agreement.transitions
        ]
        self.memo: dict[tuple[object, ...], Any] = {}
        # (id of a tuple of assurances, originator) -> (that tuple, its instants, the check per stretch)
        self.assured: dict[
            tuple[int, str], tuple[tuple[Assurance, ...], list[float], list[Check | None]]
        ] = {}
        table = agreement.equivalence
        # the instants at which a row of the table starts or ends, or a level of a party starts or
        # ends to exist: between two (an epoch) the equivalence and the levels' validity are the
        # same, so the label-only rules, those two among them, are memoised per epoch
        bounds = set(table.bounds()) | {
            b
            for code in agreement.parties
            for level in catalogue.parties[code].scheme.levels
            for b in (level.valid_from, level.valid_until)
            if b is not None
        }
        self.breaks = sorted(b.timestamp() for b in bounds)
        # every instant at which a label rule's outcome may change for a given label: the agreement's
        # transitions and the bounds above. Within a stretch between two (a cut), the status, the
        # table and the levels are the same; ``last_start`` is, per cut, the start of the status then
        # (``inf`` before the first transition), which the return to an originator compares with
        self.cuts = sorted({*self.starts, *self.breaks})
        self.last_start = [
            self.starts[n - 1] if n else float("inf")
            for n in (bisect_right(self.starts, t) for t in (float("-inf"), *self.cuts))
        ]
        # (originator, level, receiver) -> the periods in which a row maps it, in order
        self.mappings: dict[tuple[str, str, str], tuple[_Mapping, ...]] = {}
        # (originator, level, receiver) -> the receiver's other levels to choose from (Art. 4.2), each
        # with the period its row applies in
        self.alternatives: dict[tuple[str, str, str], tuple[tuple[float, float, str], ...]] = {}
        # (party, level) -> when the level itself exists
        self.own: dict[tuple[str, str], tuple[float, float, str]] = {}
        for code in agreement.parties:
            for level in catalogue.parties[code].scheme.levels:
                self.own[(code, level.name)] = _period(
                    [(f"{code} {level.name}", level.valid_from, level.valid_until)]
                )
                for receiver in receivers:
                    found = []
                    if code == receiver:  # an item going back to its originator keeps its level
                        marking = Marking(code, code, level.name, level.alias, level.gloss, self.id)
                        own = _period([(f"{code} {level.name}", level.valid_from, level.valid_until)])
                        found.append(_Mapping(float("-inf"), float("inf"), "", marking, own))
                    for row, target in table.entries(code, level.name, receiver):
                        lv = catalogue.parties[receiver].scheme.level(target)
                        marking = Marking(code, receiver, lv.name, lv.alias, lv.gloss, self.id)
                        levels = _period(
                            [
                                (f"{code} {level.name}", level.valid_from, level.valid_until),
                                (f"{receiver} {lv.name}", lv.valid_from, lv.valid_until),
                            ]
                        )
                        row_what = f"the row mapping {code} {level.name} to {receiver} {lv.name}"
                        if row.basis:
                            row_what += f" ({row.basis})"
                        start, end, said = _period([(row_what, row.valid_from, row.valid_until)])
                        found.append(_Mapping(start, end, said, marking, levels))
                    if found:
                        self.mappings[(code, level.name, receiver)] = tuple(found)
                    offered = table.alternatives(code, level.name, receiver)
                    if offered:
                        self.alternatives[(code, level.name, receiver)] = tuple(
                            (*_period([("", row.valid_from, row.valid_until)])[:2], target)
                            for row, target in offered
                        )

        # for each stretch between two row bounds (an epoch), the period valid in it, by key: the
        # mapping at an instant is then one bisect and one look-up
        starts = [float("-inf"), *self.breaks]
        self.by_epoch: list[dict[tuple[str, str, str], _Mapping]] = [
            {
                key: period
                for key, periods in self.mappings.items()
                for period in periods
                if period.start <= start < period.end
            }
            for start in starts
        ]

    def mapping(self, originator: str, level: str, receiver: str, ts: float) -> _Mapping | None:
        """The period whose row maps ``originator``'s ``level`` for ``receiver`` at ``ts``, or ``None``."""
        return self.by_epoch[bisect_right(self.breaks, ts)].get((originator, level, receiver))

    def remember(self, key: tuple[object, ...], value: _V) -> _V:
        memo = self.memo
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[key] = value
        return value


class _Mapping(NamedTuple):
    """One period of a directed mapping: the row's bounds, the receiver's marking, and the levels'
    own validity (the intersection of both levels' periods, and the sentence naming it)."""

    start: float
    end: float
    said: str
    marking: Marking
    levels: tuple[float, float, str]


def _period(bounded: list[tuple[str, datetime | None, datetime | None]]) -> tuple[float, float, str]:
    """The intersection of validity periods, and a sentence naming those that bound it."""
    start, end, said = float("-inf"), float("inf"), []
    for what, valid_from, valid_until in bounded:
        if valid_from is not None:
            start = max(start, valid_from.timestamp())
            said.append(f"{what} exists from {valid_from.isoformat()}")
        if valid_until is not None:
            end = min(end, valid_until.timestamp())
            said.append(f"{what} exists until {valid_until.isoformat()}")
    return start, end, "; ".join(said)


class Rule(Protocol):
    """A rule evaluates one request against one candidate agreement.

    A rule may also say ``route_only = True``: for a request that carries no consent, no approval
    and no two-person policy asking anything (:func:`_plain`), its check reads nothing but the
    candidate (its route and agreement) and the label's originator. :class:`AllOf` then keeps such
    rules' checks per candidate and originator and asks them again only when that changes."""

    name: str

    def check(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check: ...


class _InForce:
    """New transfers need the agreement in force; returning an item to its originator after the
    agreement ended does not (Art. 6(h): return or destroy; Art. 21.4: protection continues)."""

    name = "agreement_in_force"

    def check(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        n = bisect_right(candidate.starts, ts)
        state = candidate.states[n]
        if state.passed or request.via or request.recipient != request.label.originator:
            return state
        if request.sender == request.recipient or n == 0:
            return state
        if request.label.created_ts >= candidate.starts[n - 1]:
            return state  # created after the end: it cannot have been provided under the agreement
        return candidate.ended[n] or state


class _LabelDates:
    """An item cannot be released before the instant its label says it was created."""

    name = "label"
    _ok = Check(name, True, "the item existed at this instant")

    def check(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        label = request.label
        if label.created_ts <= ts:
            return self._ok
        return Check(
            self.name,
            False,
            f"the label says the item was created at {label.created.isoformat()}, after this instant",
        )


class _Equivalence:
    """The item's level has an equivalent for every receiver at this instant (the classification
    ceiling): a row of the table valid then maps it. A level absent from the table is never
    released; one a party's change stopped mapping is not released from the change's instant."""

    name = "equivalence"

    def check(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        label = request.label
        found = []
        for receiver in candidate.receivers:
            if receiver == label.originator:
                continue
            key = (label.originator, label.classification, receiver)
            periods = candidate.mappings.get(key)
            if not periods:
                return Check(
                    self.name,
                    False,
                    f"{label.originator} {label.classification} has no equivalent for {receiver} "
                    f"under {candidate.id}: a level absent from the table is never released",
                )
            mapping = candidate.mapping(*key, ts)
            if mapping is None:
                said = "; ".join(p.said for p in periods if p.said)
                return Check(
                    self.name,
                    False,
                    f"{label.originator} {label.classification} has no equivalent for {receiver} "
                    f"under {candidate.id} at this instant: {said}",
                )
            level = mapping.marking.classification
            others = [
                lv
                for start, end, lv in candidate.alternatives.get(key, ())
                if start <= ts < end and lv != level
            ]
            choice = f" (or {' or '.join(others)}, as {receiver} applies it: Art. 4.2)" if others else ""
            found.append(f"{receiver} {level}{choice}")
        return Check(
            self.name,
            True,
            f"{label.originator} {label.classification} corresponds to "
            f"{', '.join(found) or 'itself'} under {candidate.id}",
        )


class _LevelPeriods:
    """The levels the equivalence uses exist at this instant (特定秘密 from 10 Dec 2014)."""

    name = "level_validity"
    _ok = Check(name, True, "the levels and their correspondence exist at this instant")

    def check(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        label = request.label
        for receiver in candidate.receivers:
            if receiver == label.originator:
                continue
            mapping = candidate.mapping(label.originator, label.classification, receiver, ts)
            if mapping is None:  # no equivalent at this instant (the equivalence rule refuses it):
                own = candidate.own.get((label.originator, label.classification))  # does the level exist?
                if own is None:
                    continue
                start, end, said = own
            else:
                start, end, said = mapping.levels
            if not start <= ts < end:
                return Check(
                    self.name,
                    False,
                    f"{label.originator} {label.classification} cannot be marked for {receiver} "
                    f"at this instant under {candidate.id}: {said}",
                )
        return self._ok


class _Releasability:
    name = "releasability"

    def check(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        label = request.label
        rel = label.releasable_to
        missing = [r for r in candidate.receivers if r != label.originator and r not in rel]
        if missing:
            return Check(
                self.name,
                False,
                f"the label does not make the item releasable to "
                f"{', '.join(missing)} (releasable to: {', '.join(sorted(rel)) or 'nobody'})",
            )
        return Check(self.name, True, f"releasable to {', '.join(candidate.receivers)}")


class _Caveats:
    name = "caveats"
    _clear = Check(name, True, "no caveat blocks this release")

    def check(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        label = request.label
        if not label.caveats:
            return self._clear
        # onward: someone other than the originator passes the item on (a holder or a hub)
        onward = request.sender != label.originator or bool(request.via)
        for name in sorted(label.caveats):
            caveat = CAVEATS.get(name)
            if caveat is None:
                return Check(
                    self.name, False, f"unknown caveat {name}: it cannot be honoured, so the item stays"
                )
            if caveat.effect is CaveatEffect.BLOCKS_ALL_RELEASE:
                return Check(self.name, False, f"caveat {name}: {caveat.meaning}")
            if caveat.effect is CaveatEffect.BLOCKS_ONWARD_RELEASE and onward:
                return Check(self.name, False, f"caveat {name}: {caveat.meaning}")
        return self._clear


class _Purpose:
    name = "purpose"

    def check(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        purpose = request.purpose
        if purpose != request.label.purpose:
            return Check(
                self.name,
                False,
                f"the item was provided for {request.label.purpose!r}, "
                f"not {purpose!r}: it may be used only for its purpose (Art. 6)",
            )
        if purpose not in candidate.purposes:
            return Check(
                self.name,
                False,
                f"{candidate.id} does not permit the purpose {purpose!r} "
                f"(permitted: {', '.join(sorted(candidate.purposes))})",
            )
        return Check(self.name, True, f"purpose {purpose!r} is permitted by {candidate.id}")


class _Scope:
    name = "scope"

    def check(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        topics = request.label.topics
        scope = candidate.scope
        if scope is None:
            return Check(self.name, True, f"{candidate.id} covers all classified military information")
        if not topics:
            return Check(
                self.name,
                False,
                f"the item names no topic; {candidate.id} covers only {candidate.scope_text}",
            )
        outside = topics - scope
        if outside:
            return Check(
                self.name,
                False,
                f"topics {', '.join(sorted(outside))} are outside the scope "
                f"of {candidate.id} ({candidate.scope_text})",
            )
        return Check(self.name, True, f"within the scope of {candidate.id} ({candidate.scope_text})")


def _consent(
    request: ReleaseRequest, kind: ConsentKind, ts: float, hub: str | None, recipient: str
) -> tuple[Consent | None, str]:
    """The first consent of ``kind`` covering the request, or a reason why none does.

    A consent authorises exactly what it names (issue 14 §3). For an item (``request.item``), a
    hub relay counts only if it names that item and that hub: a standing one, or the stream's track
    relay, never lets a hub pass an item on. A track relay counts only for what is not an item.
    A consent naming a purpose counts only for that purpose.
    """
    originator = request.label.originator
    item = request.item
    purpose = request.purpose
    third_party = kind is ConsentKind.THIRD_PARTY
    hub_relay = kind is ConsentKind.HUB_RELAY
    kinds: tuple[ConsentKind, ...] = (kind,)
    if hub_relay and item is None:
        kinds = (ConsentKind.TRACK_RELAY, ConsentKind.HUB_RELAY)
    # why the last consent that named the recipient did not count: (what, that consent), put in
    # words once, after the scan, if none counts
    why: tuple[str, Consent] | None = None
    for consent in request.consents:
        if consent.kind not in kinds or consent.originator != originator or consent.recipient != recipient:
            continue
        if consent.purpose is not None and consent.purpose != purpose:
            why = ("purpose", consent)
            continue
        if third_party and consent.holder is not None and consent.holder != request.sender:
            continue
        if hub_relay:
            if consent.hub is not None and consent.hub != hub:
                continue
            if item is not None and (consent.item != item or consent.hub != hub):
                why = ("item and hub", consent)
                continue
        if consent.item is not None and consent.item != item:
            why = ("item", consent)
        elif consent.given_ts > ts:
            why = ("late", consent)
        elif ts < consent.expires_ts:
            return consent, ""  # on file at ``ts``, for this item (or standing): Consent.covers
        elif consent.expires is not None:
            why = ("expired", consent)
    if why is None:
        return None, ""
    what, consent = why
    if what == "purpose":
        return None, f" (consent {consent.reference} is for the purpose {consent.purpose})"
    if what == "item and hub":
        return None, f" (consent {consent.reference} does not name this item and hub)"
    if what == "item":
        return None, f" (consent {consent.reference} names another item, {consent.item})"
    if what == "late":
        return None, f" (consent {consent.reference} is dated after this instant; it must be prior)"
    assert consent.expires is not None
    return None, f" (consent {consent.reference} expired at {consent.expires.isoformat()})"


class _ThirdParty:
    """Art. 6: nothing goes on to a third party without the originator's prior written consent.

    When the sender is not the originator, every receiver on the route other than the
    originator (a hub included) needs the originator's consent naming it.
    """

    name = "third_party"
    route_only = True  # with no consent: the route and the originator (AllOf keeps the check)

    def check(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        """An originator's own release, or a release carrying no consent, reads nothing but the
        route (the candidate's) and the originator: its check is kept per candidate and originator."""
        originator = request.label.originator
        if request.consents and request.sender != originator:
            return self.explain(request, candidate, ts)
        key = (self, originator)
        found: Check | None = candidate.memo.get(key)
        if found is None:
            found = candidate.remember(key, self.explain(request, candidate, ts))
        return found

    def explain(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        """The check worked out from the request's consents at ``ts``."""
        originator = request.label.originator
        if request.sender == originator:
            return Check(self.name, True, f"{originator} is the originator: no consent needed")
        granted = []
        for receiver in candidate.receivers:
            if receiver == originator:
                continue
            consent, why = _consent(request, ConsentKind.THIRD_PARTY, ts, None, receiver)
            if consent is None:
                return Check(
                    self.name,
                    False,
                    f"{receiver} is a third party to {originator}'s item held by {request.sender}: no prior "
                    f"written consent of {originator} naming {receiver} is on file{why}",
                )
            granted.append(f"{consent.reference} names {receiver}")
        if not granted:
            return Check(self.name, True, f"the item returns to its originator {originator}")
        return Check(self.name, True, f"{originator}'s written consent: {'; '.join(granted)}")


class _HubAuthorisation:
    """TISA: the hub passes an item on only to the recipient the originator authorised."""

    name = "hub_authorisation"
    route_only = True  # with no consent: the route and the originator (AllOf keeps the check)
    _direct = Check(name, True, "direct route: no hub relay")

    def check(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        """A direct route needs no authorisation; a relay carrying no consent reads nothing but the
        route and the originator: its refusal is kept per candidate and originator."""
        if candidate.hub is None:
            return self._direct
        if request.consents:
            return self.explain(request, candidate, ts)
        key = (self, request.label.originator)
        found: Check | None = candidate.memo.get(key)
        if found is None:
            found = candidate.remember(key, self.explain(request, candidate, ts))
        return found

    def explain(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        """The check worked out from the request's consents at ``ts``."""
        hub = candidate.hub
        if hub is None:
            return self._direct
        consent, why = _consent(request, ConsentKind.HUB_RELAY, ts, hub, request.recipient)
        originator = request.label.originator
        if consent is None:
            return Check(
                self.name,
                False,
                f"relay through {hub} needs {originator}'s authorisation naming "
                f"{request.recipient}; none is on file{why}",
            )
        return Check(
            self.name,
            True,
            f"{originator}'s authorisation {consent.reference} lets {hub} pass the "
            f"item to {request.recipient}",
        )


class _Assured:
    """Art. 7(5): before information is provided, the recipient assures the clearance level, the
    official purpose and equivalent protection. Every receiver on the route (a hub included) other
    than the originator needs its assurance under the agreement, given before this instant and not
    revoked; returning an item to its originator needs none."""

    name = "assurance"

    def check(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        """The outcome read from the candidate's table for the tuple of assurances the request
        carries: a node hands the same tuple (its cache of the store) to every decision until one
        changes. The table is kept under the tuple's identity, which it holds (so the identity cannot
        be reused while it is kept), and under the originator (whose own receipt needs none). Its
        instants are those at which an assurance that counts is given or revoked: between two, the
        outcome and its sentence are the same, so each stretch's check is :meth:`explain` at the
        stretch's start, computed when first asked."""
        assurances = request.assurances
        key = (id(assurances), request.label.originator)
        table = candidate.assured.get(key)
        if table is None or table[0] is not assurances:
            table = self._table(request, candidate, key)
        cuts, checks = table[1], table[2]
        at = bisect_right(cuts, ts)
        found = checks[at]
        if found is None:
            found = checks[at] = self.explain(request, candidate, cuts[at - 1] if at else float("-inf"))
        return found

    @staticmethod
    def _table(
        request: ReleaseRequest, candidate: _Candidate, key: tuple[int, str]
    ) -> tuple[tuple[Assurance, ...], list[float], list[Check | None]]:
        originator = request.label.originator
        instants = set()
        for assurance in request.assurances:
            if (
                assurance.agreement == candidate.id
                and assurance.party != originator
                and assurance.party in candidate.receivers
            ):
                instants.add(assurance.given_ts)
                instants.add(assurance.revoked_ts)
        cuts = sorted(instants - {float("inf")})
        checks: list[Check | None] = [None] * (len(cuts) + 1)
        table = (request.assurances, cuts, checks)
        kept = candidate.assured
        if len(kept) >= _MEMO_LIMIT:
            kept.clear()
        kept[key] = table
        return table

    def explain(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        """The check worked out from the request's assurances at ``ts``."""
        originator = request.label.originator
        agreement = candidate.id
        held: list[Assurance] = []
        for receiver in candidate.receivers:
            if receiver == originator:
                continue
            for assurance in request.assurances:
                if (
                    assurance.party == receiver
                    and assurance.agreement == agreement
                    and assurance.given_ts <= ts < assurance.revoked_ts
                ):
                    held.append(assurance)
                    break
            else:
                return self._refused(request, candidate, ts, receiver)
        return self._passed(originator, candidate, tuple(held))

    def _passed(self, originator: str, candidate: _Candidate, held: tuple[Assurance, ...]) -> Check:
        if not held:
            return Check(
                self.name, True, f"the item returns to its originator {originator}: no assurance needed"
            )
        said = [f"{a.party} on {a.given_at.date().isoformat()} ({a.reference})" for a in held]
        return Check(
            self.name,
            True,
            f"assured clearance, official purpose and equivalent protection under {candidate.id} "
            f"(Art. 7(5)): {'; '.join(said)}",
        )

    def _refused(self, request: ReleaseRequest, candidate: _Candidate, ts: float, receiver: str) -> Check:
        """No assurance of ``receiver`` holds at ``ts``: the refusal, saying what is on file."""
        why = ""
        for assurance in request.assurances:
            if assurance.party != receiver or assurance.agreement != candidate.id:
                continue
            if assurance.given_ts > ts:
                why = f" (assurance {assurance.reference} is dated after this instant; it must be prior)"
            elif (
                assurance.verified_until is not None
                and assurance.verified_until.timestamp() <= ts
                and (assurance.revoked_at is None or assurance.verified_until < assurance.revoked_at)
            ):
                ended = assurance.verified_until.isoformat()
                why = f" (assurance {assurance.reference} was signed with a key that ended at {ended})"
            elif assurance.revoked_at is not None:
                revoked = assurance.revoked_at.isoformat()
                why = f" (assurance {assurance.reference} was revoked at {revoked})"
        return Check(
            self.name,
            False,
            f"no assurance of {receiver} under {candidate.id} is on file{why}: before provision "
            f"the recipient assures the clearance level, official purpose and equivalent "
            f"protection (Art. 7(5))",
        )


class _TwoPerson:
    """The sender's two-person rule: some releases need a second release officer's approval,
    bound to this item, label, route and purpose, given by someone other than the requester,
    and not expired."""

    name = "two_person"
    route_only = True  # with no policy asking anything and no approval: always the same check
    _none = Check(name, True, "the sender's policy asks no second officer")

    def check(self, request: ReleaseRequest, candidate: _Candidate, ts: float) -> Check:
        policy = request.two_person
        if policy is None or policy.empty:
            return self._none
        needs = policy.needs(request.label, via=request.via, grants_relay=request.grants_relay)
        approval = request.approval
        if not needs and approval is None:
            return Check(self.name, True, "not required: the sender's policy asks no second officer for it")
        because = "; ".join(needs) or "not required, but a release that carries an approval is bound by it"
        if approval is None:
            return Check(self.name, False, f"needs a second release officer's approval: {because}")
        # an approval carried binds the release even where none was needed: an approved release of
        # portions sends exactly those it names, never a narrower or wider set
        problem = approval.mismatch(
            item=request.item,
            label=request.label,
            sender=request.sender,
            via=request.via,
            recipient=request.recipient,
            purpose=request.purpose,
            ts=ts,
            portions=request.portions,
            portion=request.portion,
        )
        if problem is not None:
            return Check(self.name, False, problem)
        return Check(
            self.name,
            True,
            f"approved by {approval.approver} (requested by {approval.requester}) at "
            f"{approval.approved_at.isoformat()}, valid until {approval.expires_at.isoformat()} "
            f"({because})",
        )


class LabelRules:
    """Rules whose outcome depends only on the label, the purpose, the route and the stretch of time.

    Their checks are computed once per distinct key and candidate agreement (a candidate is one
    route), then reused: a stream of releases of similar items costs one dictionary look-up for all
    of them. The key holds everything such a rule may read: the label's fields but its instants, the
    purpose asked, whether the sender is the originator, the candidate's cut (the stretch between two
    instants at which its status, its equivalence rows or its parties' levels change), and of the
    label's creation instant only what these rules ask of it: whether it is at or before the
    decision's instant (else the instant itself, which the refusal names) and whether it is at or
    after the start of the agreement's status then (the return of an item provided under an
    agreement that ended). A rule that reads anything else (a consent, an assurance, an approval)
    does not belong here.
    """

    __slots__ = ("rules",)

    def __init__(self, *rules: Rule) -> None:
        self.rules = rules

    def checks(
        self, request: ReleaseRequest, candidate: _Candidate, ts: float
    ) -> tuple[int, tuple[Check, ...]]:
        """(number of failed checks, the checks), kept for the next request with the same key."""
        label = request.label
        created = label.created_ts
        cut = bisect_right(candidate.cuts, ts)
        key = (
            self,
            label.originator,
            label.classification,
            label.releasable_to,
            label.caveats,
            label.purpose,
            label.topics,
            request.purpose,
            request.sender == label.originator,
            cut,
            created >= candidate.last_start[cut],
            True if created <= ts else label.created.isoformat(),
        )
        found = candidate.memo.get(key)
        if found is None:
            found = candidate.remember(key, self._work_out(request, candidate, ts))
        return found

    def _work_out(
        self, request: ReleaseRequest, candidate: _Candidate, ts: float
    ) -> tuple[int, tuple[Check, ...]]:
        """Every rule of the group asked (apart from :meth:`checks`, whose frame then holds no
        variable a comprehension captures: such a frame makes a cell per captured variable on
        every call, found or not)."""
        checks = tuple([rule.check(request, candidate, ts) for rule in self.rules])
        return sum(1 for c in checks if not c.passed), checks


_EVERY = sys.maxsize  # no limit: every rule asked (AllOf.evaluate)


class AllOf:
    """Every rule must pass; an empty rule set denies."""

    __slots__ = ("_head", "_kept", "_live", "_steps", "_tail", "rules")
    _empty = (Check("rules", False, "no rule is configured, so nothing may be released"),)

    def __init__(self, *rules: Rule | LabelRules) -> None:
        self.rules = rules
        # (a group?, its method): a group answers (failed, checks), a rule one check
        self._steps: tuple[tuple[bool, Callable[[ReleaseRequest, _Candidate, float], Any]], ...] = tuple(
            (True, rule.checks) if isinstance(rule, LabelRules) else (False, rule.check) for rule in rules
        )
        # the standard shape, one group and then single rules: the loop asks no question per step
        self._head: Callable[[ReleaseRequest, _Candidate, float], tuple[int, tuple[Check, ...]]] | None = None
        self._tail: tuple[Callable[[ReleaseRequest, _Candidate, float], Check], ...] = ()
        if (
            rules
            and isinstance(rules[0], LabelRules)
            and not any(isinstance(r, LabelRules) for r in rules[1:])
        ):
            self._head = rules[0].checks
            self._tail = tuple(step for _, step in self._steps[1:])
        # the standard shape's single rules split: those asked for every request (``_live``), then
        # those whose check, for a plain request (:func:`_plain`), reads only the candidate and the
        # originator (``route_only``): kept per candidate and originator by :meth:`choose`. Only
        # when every such rule comes after every other (the checks stay in the rules' order)
        self._live: tuple[Callable[[ReleaseRequest, _Candidate, float], Check], ...] = ()
        self._kept: tuple[Callable[[ReleaseRequest, _Candidate, float], Check], ...] = ()
        if self._head is not None:
            flags = [getattr(rule, "route_only", False) is True for rule in rules[1:]]
            split = flags.index(True) if True in flags else len(flags)
            if split < len(flags) and all(flags[split:]):
                self._live, self._kept = self._tail[:split], self._tail[split:]

    def evaluate(
        self, request: ReleaseRequest, candidate: _Candidate, ts: float, limit: int = _EVERY
    ) -> tuple[int, tuple[Check, ...]]:
        """(number of failed checks, every check); an empty rule set is one failure.

        ``limit``: the engine already holds a refusal that failed this many rules, so a candidate
        that fails as many can be neither allowed nor the refusal reported (the first of the
        fewest failures is): once the count reaches ``limit`` the rules left are not asked, and
        the answer is the count so far with no checks."""
        head = self._head
        if head is not None:
            failed, checks = head(request, candidate, ts)
            if failed >= limit:
                return failed, ()
            rest = []
            for step in self._tail:
                check = step(request, candidate, ts)
                if not check[1]:
                    failed += 1
                    if failed >= limit:
                        return failed, ()
                rest.append(check)
            return failed, checks + tuple(rest)
        if not self._steps:
            return 1, self._empty
        out: list[Check] = []
        failed = 0
        for group, step in self._steps:
            if group:
                some, checks = step(request, candidate, ts)
                failed += some
                out += checks
            else:
                check = step(request, candidate, ts)
                if not check[1]:
                    failed += 1
                out.append(check)
            if failed >= limit:
                return failed, ()
        return failed, tuple(out)

    def choose(
        self, request: ReleaseRequest, candidates: tuple[_Candidate, ...], ts: float
    ) -> tuple[_Candidate, int, tuple[Check, ...]]:
        """The first candidate that passes every rule, else the first of the fewest failures: that
        candidate, its number of failed checks and every one of its checks (``candidates`` is not
        empty). A later candidate is asked only until it fails as many rules as the refusal already
        held (:meth:`evaluate`'s ``limit``): it could then be neither allowed nor reported."""
        head = self._head
        if head is None:
            return self._choose_generally(request, candidates, ts)
        # a plain request (:func:`_plain`): the ``route_only`` rules' checks are kept per candidate
        # and originator (:meth:`_route_checks`), one look-up for all of them after the others
        key = (self, request.label.originator) if self._kept and _plain(request) else None
        steps = self._tail if key is None else self._live
        fewest = _EVERY
        chosen: tuple[_Candidate, int, tuple[Check, ...]] | None = None
        for candidate in candidates:
            failed, checks = head(request, candidate, ts)
            if failed >= fewest:
                continue
            rest = []
            for step in steps:
                check = step(request, candidate, ts)
                if not check[1]:
                    failed += 1
                    if failed >= fewest:
                        break
                rest.append(check)
            else:
                if key is not None:
                    kept: tuple[int, tuple[Check, ...]] | None = candidate.memo.get(key)
                    if kept is None:
                        kept = candidate.remember(key, self._route_checks(request, candidate, ts))
                    failed += kept[0]
                    rest += kept[1]
                if not failed:
                    return candidate, 0, checks + tuple(rest)
                if failed < fewest:
                    fewest, chosen = failed, (candidate, failed, checks + tuple(rest))
        assert chosen is not None  # candidates is not empty
        return chosen

    def _route_checks(
        self, request: ReleaseRequest, candidate: _Candidate, ts: float
    ) -> tuple[int, tuple[Check, ...]]:
        """The ``route_only`` rules asked (each rule's own ``check``) for a plain request: (number
        failed, their checks)."""
        checks = tuple([step(request, candidate, ts) for step in self._kept])
        return sum(1 for c in checks if not c.passed), checks

    def _choose_generally(
        self, request: ReleaseRequest, candidates: tuple[_Candidate, ...], ts: float
    ) -> tuple[_Candidate, int, tuple[Check, ...]]:
        """:meth:`choose` for any shape of rules, by :meth:`evaluate`."""
        fewest = _EVERY
        chosen: tuple[_Candidate, int, tuple[Check, ...]] | None = None
        for candidate in candidates:
            failed, checks = self.evaluate(request, candidate, ts, fewest)
            if not failed:
                return candidate, 0, checks
            if failed < fewest:
                fewest, chosen = failed, (candidate, failed, checks)
        assert chosen is not None  # candidates is not empty
        return chosen

    def explain(
        self, request: ReleaseRequest, candidate: _Candidate, ts: float
    ) -> tuple[int, tuple[Check, ...]]:
        """What :meth:`evaluate` answers, worked out plainly: every rule of every group asked in turn,
        by its ``explain`` where it has one (a rule that keeps outcomes answers from them in
        ``check``), nothing looked up or kept. The reference the kept outcomes are tested against."""
        if not self.rules:
            return 1, self._empty
        out = [
            getattr(rule, "explain", rule.check)(request, candidate, ts)
            for step in self.rules
            for rule in (step.rules if isinstance(step, LabelRules) else (step,))
        ]
        return sum(1 for c in out if not c.passed), tuple(out)


def _plain(request: ReleaseRequest) -> bool:
    """A request carrying no consent, no approval and no two-person policy that asks anything: the
    ``route_only`` rules' checks then read only the candidate and the label's originator."""
    policy = request.two_person
    return not request.consents and request.approval is None and (policy is None or policy.empty)


def standard_rules() -> AllOf:
    """The treaty rules, in the order a person reads them."""
    return AllOf(
        LabelRules(
            _InForce(),
            _LabelDates(),
            _Equivalence(),
            _Releasability(),
            _Caveats(),
            _Purpose(),
            _Scope(),
            _LevelPeriods(),
        ),
        _Assured(),
        _ThirdParty(),
        _HubAuthorisation(),
        _TwoPerson(),
    )


_TOPOLOGY_ORDER = {Topology.BILATERAL: 0, Topology.MULTILATERAL: 1, Topology.HUB: 2}


def _specificity(agreement: Agreement) -> tuple[int, str]:
    """Most specific first: a bilateral agreement governs (and marks) before a wider arrangement."""
    return _TOPOLOGY_ORDER[agreement.topology], agreement.id


class ReleaseEngine:
    """Decides releases against a catalogue; compiled once, then cheap per decision."""

    def __init__(self, catalogue: Catalogue, rules: AllOf | None = None) -> None:
        self.catalogue = catalogue
        self.rules = rules if rules is not None else standard_rules()
        # (sender, recipient, via) -> (candidates, their ids, the route)
        self._routes: dict[
            tuple[str, str, tuple[str, ...]],
            tuple[tuple[_Candidate, ...], tuple[str, ...], tuple[str, ...]],
        ] = {}

    def _candidates(
        self, sender: str, recipient: str, via: tuple[str, ...]
    ) -> tuple[tuple[_Candidate, ...], tuple[str, ...], tuple[str, ...]]:
        key = (sender, recipient, via)
        found = self._routes.get(key)
        if found is None:
            compiled = self._compile(sender, recipient, via)
            found = (compiled, tuple([c.id for c in compiled]), (sender, *via, recipient))
            if compiled:  # only real routes are kept, so unknown names cannot grow the cache
                self._routes[key] = found
        return found

    def _compile(self, sender: str, recipient: str, via: tuple[str, ...]) -> tuple[_Candidate, ...]:
        cat = self.catalogue
        if sender not in cat.parties or recipient not in cat.parties or len(via) > 1:
            return ()
        if not via:
            found = [a for a in cat.agreements_of(sender) if a.routes_directly(sender, recipient)]
            return tuple(_Candidate(a, cat, (recipient,), None) for a in sorted(found, key=_specificity))
        hub = via[0]
        return tuple(
            _Candidate(a, cat, (hub, recipient), hub)
            for a in sorted(cat.agreements_of(sender), key=_specificity)
            if a.relays(sender, hub, recipient)
        )

    def decide(
        self, request: ReleaseRequest, *, at: datetime, memo: dict[Any, ReleaseDecision] | None = None
    ) -> ReleaseDecision:
        """Evaluate every rule for every agreement that could carry the route.

        Candidates are tried most specific first (bilateral, multilateral, hub; then by
        id), so the governing agreement and the recipient's marking do not depend on an
        item's topic falling inside a wider arrangement. The first candidate that passes
        every rule allows the release; otherwise the refusal reported is the candidate
        that failed the fewest rules.

        ``memo``: a dict the caller keeps for one batch decided at one instant (issue 18). A request
        that carries no consent and no approval (the only rules that read the item's id) is decided
        once per batch for its label (the offset its creation instant is written in too), route,
        purpose and the rest of what it carries, at ``at``; the items that share all of it share the
        decision. Anything else is decided on its own.
        """
        if memo is not None and not request.consents and request.approval is None:
            try:
                # every field of the request but the item's id (read from the class: a field added
                # later is in the key without anyone remembering to put it there); no copy of the
                # request built. And the offset the label writes its creation instant in: labels
                # naming one instant in two offsets (or two instants in a zone's repeated hour) are
                # equal, but a refusal names the instant as written and the rules read the instant
                key = (self, at, _BUT_ITEM(request), request.label.created.utcoffset())
                found = memo.get(key)
            except TypeError:  # something unhashable in the request: decided on its own
                return self.decide(request, at=at)
            if found is None:
                found = memo[key] = self.decide(request, at=at)
            return found
        kind = type(at.tzinfo)  # a zone that always answers an offset is not asked it twice
        if kind not in _ALWAYS_AWARE and not _always_aware(kind) and at.utcoffset() is None:
            raise InstantError(f"decision instant {at.isoformat()} has no UTC offset")
        ts = at.timestamp()
        found_route = self._routes.get((request.sender, request.recipient, request.via))
        if found_route is None:
            found_route = self._candidates(request.sender, request.recipient, request.via)
        candidates, ids, route = found_route
        if not candidates:
            return _decision(False, at, route, None, (self._no_route(request),), None, ())
        candidate, failed, checks = self.rules.choose(request, candidates, ts)
        if failed:
            return _decision(False, at, route, candidate.id, checks, None, ids)
        label = request.label
        mapping = candidate.mapping(label.originator, label.classification, request.recipient, ts)
        return _decision(
            True, at, route, candidate.id, checks, None if mapping is None else mapping.marking, ids
        )

    def decide_plainly(self, request: ReleaseRequest, *, at: datetime) -> ReleaseDecision:
        """:meth:`decide` worked out from the request alone: each rule asked in turn
        (:meth:`AllOf.explain`) for every candidate, no outcome kept from an earlier decision or
        looked up in a table, no candidate's evaluation cut short. Slower; the reference that the
        engine's kept outcomes are tested against (every check, its sentence and its outcome the
        same)."""
        ts = self._instant(at)
        candidates, ids, route = self._candidates(request.sender, request.recipient, request.via)
        if not candidates:
            return _decision(False, at, route, None, (self._no_route(request),), None, ())
        best: tuple[int, _Candidate, tuple[Check, ...]] | None = None
        for candidate in candidates:
            failed, checks = self.rules.explain(request, candidate, ts)
            if not failed:
                label = request.label
                mapping = candidate.mapping(label.originator, label.classification, request.recipient, ts)
                marking = None if mapping is None else mapping.marking
                return _decision(True, at, route, candidate.id, checks, marking, ids)
            if best is None or failed < best[0]:
                best = (failed, candidate, checks)
        assert best is not None  # candidates is not empty
        return _decision(False, at, route, best[1].id, best[2], None, ids)

    @staticmethod
    def _instant(at: datetime) -> float:
        """The decision's instant as a timestamp; an instant without a UTC offset is refused (as
        :meth:`decide` does in line)."""
        kind = type(at.tzinfo)
        if kind not in _ALWAYS_AWARE and not _always_aware(kind) and at.utcoffset() is None:
            raise InstantError(f"decision instant {at.isoformat()} has no UTC offset")
        return at.timestamp()

    def authorise(
        self, request: ReleaseRequest, *, at: datetime, memo: dict[Any, ReleaseDecision] | None = None
    ) -> ReleaseDecision:
        """Like :meth:`decide`, but a refusal raises :class:`ReleaseRefused`."""
        decision = self.decide(request, at=at, memo=memo)
        if not decision.allowed:
            raise ReleaseRefused(decision)
        return decision

    def _no_route(self, request: ReleaseRequest) -> Check:
        cat = self.catalogue
        for code in (request.sender, request.recipient, *request.via):
            if code not in cat.parties:
                return Check("agreement_in_force", False, f"unknown party {code}")
        if len(request.via) > 1:
            return Check("agreement_in_force", False, "gsomia relays through one hub at most")
        if request.via:
            return Check(
                "agreement_in_force",
                False,
                f"no agreement lets {request.sender} reach {request.recipient} through {request.via[0]}",
            )
        hubs = [
            f"{a.id} (via {a.hub})"
            for a in cat.agreements_of(request.sender)
            if a.hub is not None and a.relays(request.sender, a.hub, request.recipient)
        ]
        hint = f"; hub routes exist: {', '.join(hubs)}" if hubs else ""
        return Check(
            "agreement_in_force",
            False,
            f"no agreement gives {request.sender} a direct route to {request.recipient}{hint}",
        )
