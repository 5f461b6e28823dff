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
    which of the two it applied. ``basis`` says where a row not read from the data files came
    from (a party's equivalence change), for the reasons a decision gives.
    """

    levels: Mapping[str, str]
    one_way_from: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    alternative: bool = False
    basis: str = ""

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

    def overlaps(self, other: EquivalenceRow) -> bool:
        """Whether the two rows' periods share an instant."""
        starts_before_other_ends = (
            self.valid_from is None or other.valid_until is None or self.valid_from < other.valid_until
        )
        ends_after_other_starts = (
            self.valid_until is None or other.valid_from is None or other.valid_from < self.valid_until
        )
        return starts_before_other_ends and ends_after_other_starts

    def pairs(self) -> Iterable[tuple[str, str, str, str]]:
        """Directed (from party, from level, to party, to level) mappings of this row."""
        for src, src_level in self.levels.items():
            if self.one_way_from is not None and src != self.one_way_from:
                continue
            for dst, dst_level in self.levels.items():
                if dst != src:
                    yield src, src_level, dst, dst_level


def _start(row: EquivalenceRow) -> float:
    return float("-inf") if row.valid_from is None else row.valid_from.timestamp()


_Entry = tuple[EquivalenceRow, str]


def _ordered(found: list[_Entry]) -> tuple[_Entry, ...]:
    return tuple(sorted(found, key=lambda e: _start(e[0])))


@dataclass(frozen=True, slots=True)
class Equivalence:
    """An agreement's equivalence table; a level absent from it is never released.

    A directed mapping (party, level → other party) may change over time: several rows may give
    it, each for its own period (a party's equivalence change ends one row and starts another),
    never two different levels at one instant, except that an ``alternative`` row offers the
    receiver a second level beside the default one (Art. 4.2).
    """

    rows: tuple[EquivalenceRow, ...]
    # (party, level, to) -> the rows giving the default level, in the order they start
    _entries: dict[tuple[str, str, str], tuple[_Entry, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    # (party, level, to) -> the alternative rows offering a second level
    _alternatives: dict[tuple[str, str, str], tuple[_Entry, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        entries: dict[tuple[str, str, str], list[_Entry]] = {}
        alternatives: dict[tuple[str, str, str], list[_Entry]] = {}
        for n, row in enumerate(self.rows):
            for src, src_level, dst, dst_level in row.pairs():
                key = (src, src_level, dst)
                found = entries.setdefault(key, [])
                clash = next((lv for other, lv in found if lv != dst_level and other.overlaps(row)), None)
                if clash is None:
                    found.append((row, dst_level))
                elif row.alternative:
                    alternatives.setdefault(key, []).append((row, dst_level))
                else:
                    raise AgreementError(
                        f"equivalence row {n + 1}: {src} {src_level} already maps to "
                        f"{dst} {clash}, not {dst_level}"
                    )
        object.__setattr__(self, "_entries", {k: _ordered(v) for k, v in entries.items() if v})
        object.__setattr__(self, "_alternatives", {k: _ordered(v) for k, v in alternatives.items()})

    def _entry(self, party: str, level: str, to: str, at: datetime | None) -> _Entry | None:
        found = self._entries.get((party, level, to))
        if not found:
            return None
        if at is None:
            return found[-1]
        for row, target in reversed(found):
            if row.valid_at(at):
                return row, target
        return None

    def map(self, party: str, level: str, to: str, at: datetime | None = None) -> str | None:
        """The ``to`` party's (default) level for ``party``'s ``level``, or ``None`` if there is none.

        With ``at``, the level a row valid at that instant gives; without, the latest row's (the
        table as it stands after every change it records)."""
        if party == to:
            return level
        entry = self._entry(party, level, to, at)
        return None if entry is None else entry[1]

    def row(self, party: str, level: str, to: str, at: datetime | None = None) -> EquivalenceRow | None:
        """The row that maps ``party``'s ``level`` onto ``to`` (at ``at``, or the latest), or ``None``."""
        entry = self._entry(party, level, to, at)
        return None if entry is None else entry[0]

    def entries(self, party: str, level: str, to: str) -> tuple[_Entry, ...]:
        """Every (row, ``to``'s level) giving the default for ``party``'s ``level``, in the order
        they start."""
        return self._entries.get((party, level, to), ())

    def alternatives(self, party: str, level: str, to: str) -> tuple[_Entry, ...]:
        """Every (alternative row, ``to``'s second level) offered for ``party``'s ``level``."""
        return self._alternatives.get((party, level, to), ())

    def choices(self, party: str, level: str, to: str, at: datetime | None = None) -> tuple[str, ...]:
        """Every level of ``to`` that ``party``'s ``level`` may be held under, the default first
        (one, unless an ``alternative`` row offers a second); with ``at``, only rows applying then
        (without, the latest default and every alternative)."""
        if party == to:
            return (level,)
        default = self.map(party, level, to, at)
        out = [] if default is None else [default]
        for row, target in self._alternatives.get((party, level, to), ()):
            if (at is None or row.valid_at(at)) and target not in out:
                out.append(target)
        return tuple(out)

    def choice_row(
        self, party: str, level: str, to: str, target: str, at: datetime | None = None
    ) -> EquivalenceRow | None:
        """The row that lets ``to`` hold ``party``'s ``level`` as ``target`` (at ``at``, or the
        latest), or ``None``."""
        found = (*self._entries.get((party, level, to), ()), *self._alternatives.get((party, level, to), ()))
        rows = [row for row, lv in found if lv == target and (at is None or row.valid_at(at))]
        return max(rows, key=_start, default=None)

    def keys(self) -> Iterable[tuple[str, str, str]]:
        """Every directed (party, level, other party) the table maps at some instant."""
        return self._entries.keys()

    def bounds(self) -> tuple[datetime, ...]:
        """Every instant at which a row starts or ends, in order: the table is the same between two."""
        return tuple(
            sorted({b for row in self.rows for b in (row.valid_from, row.valid_until) if b is not None})
        )

    def directed(self, at: datetime | None = None) -> Mapping[tuple[str, str, str], str]:
        """Every directed (default) mapping; with ``at``, only those whose row applies at that
        instant (without, the latest row of each)."""
        out: dict[tuple[str, str, str], str] = {}
        for src, src_level, dst in self._entries:
            entry = self._entry(src, src_level, dst, at)
            if entry is not None:
                out[(src, src_level, dst)] = entry[1]
        return out


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
