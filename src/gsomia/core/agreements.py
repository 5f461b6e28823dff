"""Agreements as data: parties, topology, scope, purposes, equivalence, terms, history."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from enum import StrEnum

from gsomia.core.assumptions import Assumption
from gsomia.core.lifecycle import AgreementState, Event, Status, TermRules, Transition, replay, state_at
from gsomia.errors import AgreementError, LifecycleError, UnknownNameError

__all__ = ["Agreement", "Equivalence", "EquivalenceRow", "Topology"]


class Topology(StrEnum):
    """Who may talk to whom under an agreement."""

    BILATERAL = "bilateral"  # the two parties, directly
    MULTILATERAL = "multilateral"  # every pair of parties, directly
    HUB = "hub"  # members talk only with the hub, and to each other only through it


@dataclass(frozen=True, slots=True)
class EquivalenceRow:
    """Levels that correspond across schemes (party → level name).

    Two-way unless ``one_way_from`` names the only party whose level maps onto the others.
    ``valid_from``/``valid_until`` (exclusive) bound the period in which the row applies;
    ``None`` is unbounded. An ``alternative`` row offers the receiver a second level for a level
    an earlier row maps already (Art. 4.2 of the ROK–Japan agreement: Korean Class II is
    "極秘/特定秘密" in Japan); the earlier row stays the default, and the receiving node records
    which of the two it applied.
    """

    levels: Mapping[str, str]
    one_way_from: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    alternative: bool = False

    def __post_init__(self) -> None:
        for bound in (self.valid_from, self.valid_until):
            if bound is not None and bound.utcoffset() is None:
                raise AgreementError(f"equivalence row: {bound.isoformat()} has no UTC offset")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise AgreementError("equivalence row: valid_until is not after valid_from")

    def valid_at(self, at: datetime) -> bool:
        """Whether the row applies at ``at``."""
        return (self.valid_from is None or self.valid_from <= at) and (
            self.valid_until is None or at < self.valid_until
        )

    def pairs(self) -> Iterable[tuple[str, str, str, str]]:
        """Directed (from party, from level, to party, to level) mappings of this row."""
        for src, src_level in self.levels.items():
            if self.one_way_from is not None and src != self.one_way_from:
                continue
            for dst, dst_level in self.levels.items():
                if dst != src:
                    yield src, src_level, dst, dst_level


@dataclass(frozen=True, slots=True)
class Equivalence:
    """An agreement's equivalence table; a level absent from it is never released."""

    rows: tuple[EquivalenceRow, ...]
    _map: dict[tuple[str, str, str], str] = field(init=False, repr=False, compare=False, hash=False)
    _row: dict[tuple[str, str, str], EquivalenceRow] = field(
        init=False, repr=False, compare=False, hash=False
    )
    # (party, level, to) -> every level ``to`` may apply, the default first; (..., level) -> its row
    _choices: dict[tuple[str, str, str], tuple[str, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _choice_row: dict[tuple[str, str, str, str], EquivalenceRow] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        table: dict[tuple[str, str, str], str] = {}
        rows: dict[tuple[str, str, str], EquivalenceRow] = {}
        choices: dict[tuple[str, str, str], tuple[str, ...]] = {}
        choice_row: dict[tuple[str, str, str, str], EquivalenceRow] = {}
        for n, row in enumerate(self.rows):
            for src, src_level, dst, dst_level in row.pairs():
                key = (src, src_level, dst)
                if table.get(key, dst_level) != dst_level:
                    if not row.alternative:
                        raise AgreementError(
                            f"equivalence row {n + 1}: {src} {src_level} already maps to "
                            f"{dst} {table[key]}, not {dst_level}"
                        )
                    if dst_level not in choices[key]:
                        choices[key] = (*choices[key], dst_level)
                        choice_row[(*key, dst_level)] = row
                    continue
                table[key] = dst_level
                rows[key] = row
                choices[key] = (dst_level,)
                choice_row[(*key, dst_level)] = row
        object.__setattr__(self, "_map", table)
        object.__setattr__(self, "_row", rows)
        object.__setattr__(self, "_choices", choices)
        object.__setattr__(self, "_choice_row", choice_row)

    def map(self, party: str, level: str, to: str) -> str | None:
        """The ``to`` party's level for ``party``'s ``level``, or ``None`` if there is none."""
        if party == to:
            return level
        return self._map.get((party, level, to))

    def row(self, party: str, level: str, to: str) -> EquivalenceRow | None:
        """The row that maps ``party``'s ``level`` onto ``to``, or ``None``."""
        return self._row.get((party, level, to))

    def choices(self, party: str, level: str, to: str, at: datetime | None = None) -> tuple[str, ...]:
        """Every level of ``to`` that ``party``'s ``level`` may be held under, the default first
        (one, unless an ``alternative`` row offers a second); with ``at``, only rows applying then."""
        if party == to:
            return (level,)
        found = self._choices.get((party, level, to), ())
        if at is None:
            return found
        return tuple(c for c in found if self._choice_row[(party, level, to, c)].valid_at(at))

    def choice_row(self, party: str, level: str, to: str, target: str) -> EquivalenceRow | None:
        """The row that lets ``to`` hold ``party``'s ``level`` as ``target``, or ``None``."""
        return self._choice_row.get((party, level, to, target))

    def directed(self, at: datetime | None = None) -> Mapping[tuple[str, str, str], str]:
        """Every directed mapping; with ``at``, only those whose row applies at that instant."""
        if at is None:
            return dict(self._map)
        return {key: level for key, level in self._map.items() if self._row[key].valid_at(at)}


@dataclass(frozen=True, slots=True)
class Agreement:
    """One agreement between parties, with its dated history.

    ``scope_topics`` of ``None`` means the agreement covers every topic (the
    bilateral GSOMIA covers all classified military information); TISA lists its topics.
    """

    id: str
    title: str
    parties: tuple[str, ...]
    topology: Topology
    hub: str | None
    scope_topics: frozenset[str] | None
    purposes: frozenset[str]
    timezone: tzinfo
    term: TermRules
    equivalence: Equivalence
    events: tuple[Event, ...]
    notes: str = ""
    set_aside: tuple[str, ...] = ()
    assumptions: tuple[Assumption, ...] = ()
    transitions: tuple[Transition, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.parties)) != len(self.parties) or len(self.parties) < 2:
            raise AgreementError(f"agreement {self.id}: needs at least two distinct parties")
        if self.topology is Topology.BILATERAL and len(self.parties) != 2:
            raise AgreementError(f"agreement {self.id}: a bilateral agreement has exactly two parties")
        if self.topology is Topology.HUB:
            if self.hub not in self.parties:
                raise AgreementError(f"agreement {self.id}: the hub {self.hub!r} must be one of its parties")
        elif self.hub is not None:
            raise AgreementError(f"agreement {self.id}: only a hub topology names a hub")
        if not self.purposes:
            raise AgreementError(f"agreement {self.id}: permits no purpose at all")
        for row in self.equivalence.rows:
            for party in row.levels:
                if party not in self.parties:
                    raise AgreementError(f"agreement {self.id}: equivalence names {party}, not a party")
        for event in self.events:
            if event.party is not None and event.party not in self.parties:
                raise AgreementError(
                    f"agreement {self.id}: event {event.id!r} is by {event.party}, not a party"
                )
        # an assumption about an event not (or no longer) recorded never applies: a file edited
        # to drop an event (a what-if written as data) keeps loading
        object.__setattr__(self, "transitions", replay(self.id, self.events, self.term, self.timezone))

    def state_at(self, at: datetime) -> AgreementState:
        """The agreement's status at ``at``, with term end, next deadline and explanation; the
        assumptions it rests on are listed and stated in the explanation."""
        state = state_at(self.id, self.events, self.term, self.timezone, at)
        relevant = self.assumptions_at(at, state.status)
        if not relevant:
            return state
        said = " ".join(a.sentence for a in relevant)
        return replace(state, assumptions=relevant, explanation=f"{state.explanation}. {said}")

    def assumptions_at(self, at: datetime, status: Status | None = None) -> tuple[Assumption, ...]:
        """The assumptions that apply at ``at``: general ones, those about an event that has
        happened (and is still recorded), and those about ``status``."""
        if status is None:
            status = self.state_at(at).status
        happened = {e.id for e in self.events if e.at <= at}
        return tuple(
            a for a in self.assumptions if not a.about or a.about == status.value or a.about in happened
        )

    def event(self, event_id: str) -> Event:
        for event in self.events:
            if event.id == event_id:
                return event
        known = ", ".join(e.id for e in self.events)
        raise UnknownNameError(f"agreement {self.id} has no event {event_id!r}; known: {known}")

    def what_if(self, *, without: Iterable[str] = (), adding: Iterable[Event] = ()) -> Agreement:
        """The same agreement with events removed (by id) and added; re-checked as a whole.

        A recorded event that could not have happened in the counterfactual (a 2023
        withdrawal of a notice that, without the 2019 suspension, had already ended the
        agreement) is set aside, and ``set_aside`` says why. An added event that breaks
        the rules is an error.
        """
        drop = set(without)
        for event_id in drop:
            self.event(event_id)
        added = tuple(adding)
        added_ids = {e.id for e in added}
        kept = [e for e in self.events if e.id not in drop]
        reasons: list[str] = []
        while True:
            ids = {e.id for e in (*kept, *added)}
            statuses = {s.value for s in Status}
            assumed = tuple(a for a in self.assumptions if not a.about or a.about in ids | statuses)
            try:
                return replace(self, events=(*kept, *added), set_aside=tuple(reasons), assumptions=assumed)
            except LifecycleError as exc:
                if exc.event_id is None or exc.event_id in added_ids:
                    raise
                kept = [e for e in kept if e.id != exc.event_id]
                reasons.append(f"set aside {exc}")

    def routes_directly(self, sender: str, recipient: str) -> bool:
        """Whether the topology lets ``sender`` give to ``recipient`` with no intermediary."""
        if sender == recipient or sender not in self.parties or recipient not in self.parties:
            return False
        if self.topology is Topology.HUB:
            return self.hub in (sender, recipient)
        return True

    def relays(self, sender: str, hub: str, recipient: str) -> bool:
        """Whether ``sender`` may reach ``recipient`` through ``hub`` under this agreement."""
        return (
            self.topology is Topology.HUB
            and self.hub == hub
            and sender != recipient
            and hub not in (sender, recipient)
            and sender in self.parties
            and recipient in self.parties
        )
