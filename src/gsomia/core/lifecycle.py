"""The lifecycle of an agreement: events, terms, notices, and the state at an instant.

The model is Art. 21 of the ROK–Japan GSOMIA: in force from entry into force; an
initial term, then automatic renewal each period; either party may terminate by
written notice given before the notice deadline (the notice period before an
anniversary); a late notice takes effect at the following anniversary. A notice may
be suspended (the agreement stays in force; a party may then end it at any time)
or withdrawn (back to normal). Anniversaries fall at local midnight in the
agreement's time zone.

Pure: the instant is always an argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum

from gsomia.core.assumptions import Assumption
from gsomia.core.instants import add_months, local_midnight, require_aware
from gsomia.errors import LifecycleError

__all__ = [
    "AgreementState",
    "Event",
    "EventKind",
    "Notice",
    "Status",
    "TermRules",
    "Transition",
    "replay",
    "state_at",
]


class EventKind(StrEnum):
    """What happened to an agreement. Informational kinds change no state."""

    INITIALLED = "initialled"
    APPROVED = "approved"
    ANNOUNCED = "announced"
    SIGNED = "signed"
    ENTERED_INTO_FORCE = "entered_into_force"
    TERMINATION_NOTIFIED = "termination_notified"
    NOTICE_SUSPENDED = "notice_suspended"
    NOTICE_WITHDRAWN = "notice_withdrawn"
    TERMINATED = "terminated"
    AMENDED = "amended"


_INFORMATIONAL = frozenset({EventKind.INITIALLED, EventKind.APPROVED, EventKind.ANNOUNCED})


class Status(StrEnum):
    NOT_IN_FORCE = "not_in_force"
    IN_FORCE = "in_force"
    TERMINATION_NOTIFIED = "termination_notified"
    NOTICE_SUSPENDED = "notice_suspended"
    TERMINATED = "terminated"

    @property
    def in_force(self) -> bool:
        return self in _IN_FORCE


_IN_FORCE = frozenset({Status.IN_FORCE, Status.TERMINATION_NOTIFIED, Status.NOTICE_SUSPENDED})


@dataclass(frozen=True, slots=True)
class Event:
    """A dated event in an agreement's history, with its reference (e.g. the note).

    ``mutual_consent`` says a ``terminated`` event is a termination by the parties' mutual
    consent: the only way to end an agreement in force without a notice (Art. 21.3).
    """

    id: str
    kind: EventKind
    at: datetime
    reference: str
    party: str | None = None
    note: str = ""
    mutual_consent: bool = False

    def __post_init__(self) -> None:
        require_aware(self.at, f"event {self.id!r} instant")
        if self.mutual_consent and self.kind is not EventKind.TERMINATED:
            raise LifecycleError(f"event {self.id!r}: only a termination is by mutual consent")
        if not self.id:
            raise LifecycleError("an event needs a non-empty id")
        if not self.reference:
            raise LifecycleError(f"event {self.id!r} needs a reference (e.g. the diplomatic note)")


@dataclass(frozen=True, slots=True)
class TermRules:
    """Initial term and renewal period in months (``None``: indefinite), notice in days."""

    initial_months: int | None
    renewal_months: int | None
    notice_days: int

    def __post_init__(self) -> None:
        if self.initial_months is not None and self.initial_months <= 0:
            raise LifecycleError("the initial term must be a positive number of months")
        if self.renewal_months is not None and self.renewal_months <= 0:
            raise LifecycleError("the renewal period must be a positive number of months")
        if self.renewal_months is not None and self.initial_months is None:
            raise LifecycleError("a renewal period needs an initial term")
        if self.notice_days < 0:
            raise LifecycleError("the notice period cannot be negative")


@dataclass(frozen=True, slots=True)
class Notice:
    """A pending (or suspended) termination notice."""

    event: Event
    effective_end: datetime
    deadline: datetime | None
    on_time: bool


@dataclass(frozen=True, slots=True)
class AgreementState:
    """What an agreement was at one instant, and why."""

    agreement: str
    at: datetime
    status: Status
    since: datetime | None
    term_end: datetime | None
    notice_deadline: datetime | None
    notice: Notice | None
    explanation: str
    assumptions: tuple[Assumption, ...] = ()  # those this state rests on (in the explanation too)

    @property
    def in_force(self) -> bool:
        return self.status.in_force


@dataclass(frozen=True, slots=True)
class Transition:
    """The status from ``at`` until the next transition."""

    at: datetime
    status: Status
    reason: str


class _Calendar:
    """Anniversaries and notice deadlines of one agreement."""

    __slots__ = ("_entry", "_term", "_tz")

    def __init__(self, entry: date, term: TermRules, tz: tzinfo) -> None:
        self._entry = entry
        self._term = term
        self._tz = tz

    def anniversary_after(self, at: datetime) -> datetime | None:
        """The first term end strictly after ``at`` (``None`` if the term is indefinite)."""
        first = self._term.initial_months
        if first is None:
            return None
        period = self._term.renewal_months
        k = 0
        if period is not None:
            local = at.astimezone(self._tz).date()
            months = (local.year - self._entry.year) * 12 + local.month - self._entry.month - first
            k = max(0, months // period - 1)
        while True:
            end = local_midnight(add_months(self._entry, first + k * (period or 0)), self._tz)
            if end > at:
                return end
            if period is None:
                return None  # a single fixed term that has already ended
            k += 1

    def final_end(self) -> datetime | None:
        """The end of a fixed term with no renewal, if any."""
        if self._term.initial_months is None or self._term.renewal_months is not None:
            return None
        return local_midnight(add_months(self._entry, self._term.initial_months), self._tz)

    def deadline_for(self, anniversary: datetime) -> datetime:
        """Notice must be given strictly before this instant to end the term at ``anniversary``."""
        day = anniversary.astimezone(self._tz).date() - timedelta(days=self._term.notice_days)
        return local_midnight(day, self._tz)

    def notice_effect(self, given: datetime) -> tuple[datetime, datetime | None, bool, str]:
        """(effective end, deadline, on time?, explanation) of a notice given at ``given``."""
        anniversary = self.anniversary_after(given)
        if anniversary is None:
            end_day = given.astimezone(self._tz).date() + timedelta(days=self._term.notice_days)
            end = local_midnight(end_day, self._tz)
            return (
                end,
                None,
                True,
                (
                    f"the agreement has no fixed term, so notice takes effect "
                    f"{self._term.notice_days} days later, at {_fmt(end)}"
                ),
            )
        deadline = self.deadline_for(anniversary)
        if given < deadline:
            return (
                anniversary,
                deadline,
                True,
                (
                    f"given before the {self._term.notice_days}-day deadline of {_fmt(deadline)}, "
                    f"so it takes effect at the anniversary {_fmt(anniversary)}"
                ),
            )
        following = self.anniversary_after(anniversary)
        if following is None:  # no renewal: the term simply ends
            return (
                anniversary,
                deadline,
                False,
                (
                    f"it missed the deadline of {_fmt(deadline)}, but the term ends at "
                    f"{_fmt(anniversary)} without renewal anyway"
                ),
            )
        return (
            following,
            deadline,
            False,
            (
                f"it missed the {self._term.notice_days}-day deadline of {_fmt(deadline)} for the "
                f"anniversary {_fmt(anniversary)}, so it takes effect at the following anniversary "
                f"{_fmt(following)}"
            ),
        )

    def next_deadline(self, at: datetime) -> datetime | None:
        anniversary = self.anniversary_after(at)
        if anniversary is None:
            return None
        deadline = self.deadline_for(anniversary)
        if at < deadline:
            return deadline
        following = self.anniversary_after(anniversary)
        return None if following is None else self.deadline_for(following)


def _fmt(at: datetime) -> str:
    return at.isoformat(timespec="minutes" if at.second == 0 and at.microsecond == 0 else "seconds")


def _notice_text(event: Event) -> str:
    who = f"{event.party}'s" if event.party else "the"
    return f"{who} termination notice of {_fmt(event.at)}"


class _Machine:
    """Replays events in order; raises :class:`LifecycleError` on an event the rules forbid."""

    def __init__(self, agreement: str, term: TermRules, tz: tzinfo) -> None:
        self.agreement = agreement
        self.term = term
        self.tz = tz
        self.status = Status.NOT_IN_FORCE
        self.since: datetime | None = None
        self.reason = "no entry into force has been recorded"
        self.calendar: _Calendar | None = None
        self.notice: Notice | None = None
        self.notice_text = ""
        self.signed: datetime | None = None
        self.transitions: list[Transition] = []

    def _move(self, at: datetime, status: Status, reason: str) -> None:
        self.status, self.since, self.reason = status, at, reason
        self.transitions.append(Transition(at, status, reason))

    def advance(self, until: datetime, *, inclusive: bool) -> None:
        """Apply derived changes (notice taking effect, fixed term ending) up to ``until``."""
        end: datetime | None = None
        why = ""
        if self.status is Status.TERMINATION_NOTIFIED and self.notice is not None:
            end = self.notice.effective_end
            why = f"{_notice_text(self.notice.event)} took effect"
        elif self.status.in_force and self.calendar is not None:
            end = self.calendar.final_end()
            why = "its fixed term ended without renewal"
        if end is not None and (end < until or (inclusive and end == until)):
            self._move(end, Status.TERMINATED, f"terminated at {_fmt(end)}: {why}")

    def apply(self, event: Event) -> None:
        self.advance(event.at, inclusive=True)
        fail = self._refusal(event)
        if fail:
            raise LifecycleError(
                f"agreement {self.agreement}: event {event.id!r} ({event.kind.value} on "
                f"{_fmt(event.at)}) is not allowed: {fail}",
                event.id,
            )
        kind = event.kind
        if kind is EventKind.SIGNED and self.signed is None:
            self.signed = event.at
        elif kind is EventKind.ENTERED_INTO_FORCE:
            self.calendar = _Calendar(event.at.astimezone(self.tz).date(), self.term, self.tz)
            self._move(event.at, Status.IN_FORCE, f"in force since {_fmt(event.at)} ({event.reference})")
        elif kind is EventKind.TERMINATION_NOTIFIED:
            assert self.calendar is not None  # guaranteed by _refusal
            end, deadline, on_time, why = self.calendar.notice_effect(event.at)
            self.notice = Notice(event, end, deadline, on_time)
            self.notice_text = why
            self._move(
                event.at,
                Status.TERMINATION_NOTIFIED,
                f"in force under {_notice_text(event)} ({event.reference}), which ends it at "
                f"{_fmt(end)}: the notice was {why}",
            )
        elif kind is EventKind.NOTICE_SUSPENDED:
            assert self.notice is not None
            self._move(
                event.at,
                Status.NOTICE_SUSPENDED,
                f"in force: {_notice_text(self.notice.event)} was suspended on {_fmt(event.at)} "
                f"({event.reference}); it no longer ends the agreement at "
                f"{_fmt(self.notice.effective_end)}, but a party may end it at any time",
            )
        elif kind is EventKind.NOTICE_WITHDRAWN:
            assert self.notice is not None
            withdrawn = self.notice
            self.notice = None
            self._move(
                event.at,
                Status.IN_FORCE,
                f"in force, normal: {_notice_text(withdrawn.event)} was withdrawn on "
                f"{_fmt(event.at)} ({event.reference})",
            )
        elif kind is EventKind.TERMINATED:
            self.notice = None
            how = " by mutual consent" if event.mutual_consent else ""
            self._move(
                event.at, Status.TERMINATED, f"terminated{how} on {_fmt(event.at)} ({event.reference})"
            )

    def _refusal(self, event: Event) -> str:
        kind, status = event.kind, self.status
        if status is Status.TERMINATED and kind is not EventKind.ANNOUNCED:
            return f"the agreement was already terminated at {_fmt(self.since or event.at)}"
        if kind is EventKind.ENTERED_INTO_FORCE:
            if status is not Status.NOT_IN_FORCE:
                return "the agreement is already in force"
            if self.signed is None:
                return "no signature is recorded before it"
        elif kind is EventKind.TERMINATION_NOTIFIED:
            if not status.in_force:
                return "the agreement is not in force, so there is nothing to terminate"
            if status is Status.TERMINATION_NOTIFIED:
                return "a termination notice is already pending"
        elif kind is EventKind.NOTICE_SUSPENDED:
            if status is not Status.TERMINATION_NOTIFIED:
                return "there is no pending termination notice to suspend"
        elif kind is EventKind.NOTICE_WITHDRAWN:
            if status not in (Status.TERMINATION_NOTIFIED, Status.NOTICE_SUSPENDED):
                return "there is no termination notice to withdraw"
        elif kind is EventKind.TERMINATED:
            if not status.in_force:
                return "the agreement is not in force"
            if status is not Status.NOTICE_SUSPENDED and not event.mutual_consent:
                return (
                    "an agreement in force ends only by written notice (Art. 21.3) or by the parties' "
                    "mutual consent: give a termination_notified event, or mark this one "
                    "mutual_consent = true"
                )
        elif kind is EventKind.AMENDED and self.signed is None:
            return "an agreement must be signed before it can be amended"
        return ""

    def state(self, at: datetime) -> AgreementState:
        term_end = deadline = None
        status = self.status
        explanation = f"{self.agreement} at {_fmt(at)}: {self.reason}"
        if status.in_force and self.calendar is not None:
            term_end = self.calendar.anniversary_after(at)
            if status is Status.TERMINATION_NOTIFIED and self.notice is not None:
                term_end = self.notice.effective_end
            else:
                deadline = self.calendar.next_deadline(at)
            if status is Status.IN_FORCE and term_end is not None and deadline is not None:
                explanation += (
                    f". The current term ends at {_fmt(term_end)} and renews automatically unless "
                    f"a party gives written notice before {_fmt(deadline)} "
                    f"({self.term.notice_days} days before an anniversary)"
                )
            elif status is Status.IN_FORCE and term_end is None:
                explanation += (
                    f". It has no fixed term; notice of termination takes effect "
                    f"{self.term.notice_days} days after it is given"
                )
        return AgreementState(
            agreement=self.agreement,
            at=at,
            status=status,
            since=self.since,
            term_end=term_end,
            notice_deadline=deadline,
            notice=self.notice if status in (Status.TERMINATION_NOTIFIED, Status.NOTICE_SUSPENDED) else None,
            explanation=explanation,
        )


def _ordered(events: Iterable[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e.at)  # stable: same-instant events keep file order


def replay(agreement: str, events: Sequence[Event], term: TermRules, tz: tzinfo) -> tuple[Transition, ...]:
    """Check a whole history and return its status transitions (raises on a bad event)."""
    ids: set[str] = set()
    for event in events:
        if event.id in ids:
            raise LifecycleError(f"agreement {agreement}: event id {event.id!r} is used twice")
        ids.add(event.id)
    machine = _Machine(agreement, term, tz)
    for event in _ordered(events):
        machine.apply(event)
    machine.advance(datetime.max.replace(tzinfo=tz), inclusive=True)
    return tuple(machine.transitions)


def state_at(
    agreement: str, events: Sequence[Event], term: TermRules, tz: tzinfo, at: datetime
) -> AgreementState:
    """The state at ``at``: events at exactly ``at`` have already happened."""
    require_aware(at)
    machine = _Machine(agreement, term, tz)
    for event in _ordered(events):
        if event.at > at:
            break
        machine.apply(event)
    machine.advance(at, inclusive=True)
    return machine.state(at)
