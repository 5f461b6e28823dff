"""The catalogue: the parties, schemes and agreements a node knows, cross-checked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from gsomia.core.agreements import Agreement, EquivalenceRow
from gsomia.core.assumptions import Assumption
from gsomia.core.labels import AlternativeLabel, SecurityLabel
from gsomia.core.parties import Classification, Party
from gsomia.errors import AgreementError, LabelError, UnknownNameError

__all__ = ["Catalogue"]


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Parties and agreements, checked against each other on construction."""

    parties: Mapping[str, Party]
    agreements: Mapping[str, Agreement]
    _by_party: dict[str, tuple[Agreement, ...]] = field(init=False, repr=False, compare=False, hash=False)
    _topics: frozenset[str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_party: dict[str, list[Agreement]] = {code: [] for code in self.parties}
        for agreement in self.agreements.values():
            for code in agreement.parties:
                if code not in self.parties:
                    raise AgreementError(f"agreement {agreement.id}: party {code} is not known")
                by_party[code].append(agreement)
            for row in agreement.equivalence.rows:
                for code, level in row.levels.items():
                    if not self.parties[code].scheme.has(level):
                        raise AgreementError(
                            f"agreement {agreement.id}: equivalence names {code} level {level!r}, "
                            f"which is not in {code}'s scheme"
                        )
            self._check_protective(agreement)
        frozen = {code: tuple(sorted(ags, key=lambda a: a.id)) for code, ags in by_party.items()}
        object.__setattr__(self, "_by_party", frozen)
        declared = {t for party in self.parties.values() for t in party.topics}
        scoped = {t for a in self.agreements.values() for t in (a.scope_topics or ())}
        object.__setattr__(self, "_topics", frozenset(declared | scoped))

    def _check_protective(self, agreement: Agreement) -> None:
        """An equivalence never weakens protection: a classified level (rank above 0) maps only to a
        classified level (rank 0 and below are handling caveats, not classifications), and it is
        monotonic: a higher level of one party never maps below what a lower level of it maps to.
        Both hold at every instant: the rows valid together are checked together (a party's
        equivalence change ends some rows and starts others)."""
        table = agreement.equivalence
        instants: list[datetime | None] = [None, *table.bounds()]
        for at in instants:
            rows = [r for r in table.rows if (r.valid_from is None if at is None else r.valid_at(at))]
            self._check_rows(agreement, rows, at)

    def _check_rows(self, agreement: Agreement, rows: list[EquivalenceRow], at: datetime | None) -> None:
        when = "" if at is None else f" from {at.isoformat()}"
        seen: dict[tuple[str, str], list[tuple[Classification, Classification]]] = {}
        for row in rows:
            for src, src_level, dst, dst_level in row.pairs():
                a = self.parties[src].scheme.level(src_level)
                b = self.parties[dst].scheme.level(dst_level)
                if a.rank > 0 >= b.rank:
                    raise AgreementError(
                        f"agreement {agreement.id}: equivalence maps {src} {a.name}, a classification, "
                        f"to {dst} {b.name}, which is not one (rank {b.rank}: a handling caveat){when}"
                    )
                for c, d in seen.setdefault((src, dst), []):
                    if (a.rank > c.rank and b.rank < d.rank) or (a.rank < c.rank and b.rank > d.rank):
                        high, low = ((a, b), (c, d)) if a.rank > c.rank else ((c, d), (a, b))
                        raise AgreementError(
                            f"agreement {agreement.id}: equivalence is not monotonic{when}: {src} "
                            f"{high[0].name} maps to {dst} {high[1].name}, below {low[1].name} that the "
                            f"lower {low[0].name} maps to"
                        )
                seen[(src, dst)].append((a, b))

    def warnings(self) -> list[str]:
        """What the data allows that is legal but weakens the agreements' intent, one line each."""
        out: list[str] = []
        hubs = {a.hub for a in self.agreements.values() if a.hub is not None}
        if len(self.parties) > 2 and hubs >= set(self.parties):
            out.append(
                f"every party ({', '.join(sorted(self.parties))}) is the hub of some agreement: "
                "each may relay the others' items"
            )
        return out

    @classmethod
    def of(cls, parties: Iterable[Party], agreements: Iterable[Agreement]) -> Catalogue:
        party_map: dict[str, Party] = {}
        for party in parties:
            if party.code in party_map:
                raise UnknownNameError(f"party {party.code} is defined twice")
            party_map[party.code] = party
        agreement_map: dict[str, Agreement] = {}
        for agreement in agreements:
            if agreement.id in agreement_map:
                raise AgreementError(f"agreement {agreement.id} is defined twice")
            agreement_map[agreement.id] = agreement
        return cls(party_map, agreement_map)

    def assumptions_behind(
        self, agreement: str | None, at: datetime, parties: Iterable[str]
    ) -> tuple[Assumption, ...]:
        """What a decision at ``at`` under ``agreement`` (``None``: no route) between ``parties``
        rests on: the agreement's assumptions that apply then, and the parties' schemes'."""
        found: list[Assumption] = []
        if agreement is not None and agreement in self.agreements:
            found.extend(self.agreements[agreement].assumptions_at(at))
        for code in dict.fromkeys(parties):
            if code in self.parties:
                found.extend(self.parties[code].scheme.assumptions)
        return tuple(found)

    def replacing(self, agreement: Agreement) -> Catalogue:
        """The same catalogue with one agreement swapped (for what-if evaluations)."""
        self.agreement(agreement.id)
        return Catalogue(self.parties, {**self.agreements, agreement.id: agreement})

    def party(self, code: str) -> Party:
        found = self.parties.get(code.upper())
        if found is None:
            raise UnknownNameError(f"unknown party {code!r}; known: {', '.join(sorted(self.parties))}")
        return found

    def agreement(self, agreement_id: str) -> Agreement:
        found = self.agreements.get(agreement_id)
        if found is None:
            known = ", ".join(sorted(self.agreements))
            raise UnknownNameError(f"unknown agreement {agreement_id!r}; known: {known}")
        return found

    @property
    def topics(self) -> frozenset[str]:
        """The topics the data declares: the parties' own and those agreements' scopes name."""
        return self._topics

    def topic(self, name: str) -> str:
        """``name`` if the data declares it; otherwise a misspelling, refused by name."""
        if name not in self._topics:
            known = ", ".join(sorted(self._topics)) or "none"
            raise UnknownNameError(
                f"unknown topic {name!r}; the data declares: {known} "
                "(a party file's [party] topics, or an agreement's scope)"
            )
        return name

    def agreements_of(self, code: str) -> tuple[Agreement, ...]:
        return self._by_party.get(code, ())

    def level(self, party: str, name: str) -> Classification:
        return self.party(party).scheme.level(name)

    def label(
        self,
        *,
        originator: str,
        classification: str,
        releasable_to: Iterable[str],
        purpose: str,
        topics: Iterable[str],
        created: datetime,
        caveats: Iterable[str] = (),
        review: datetime | None = None,
        alternatives: Iterable[AlternativeLabel] = (),
        held: bool = False,
    ) -> SecurityLabel:
        """Build a label checked against the originator's scheme (names and aliases accepted) and
        the declared topics. ``held``: a label read back from the node's own store, whose topics were
        checked when it came in (a later data revision must not make a held item unreadable)."""
        origin = self.party(originator)
        topics = frozenset(topics)
        if not held:
            for topic in sorted(topics):
                self.topic(topic)
        level = origin.scheme.level(classification)
        rel = frozenset(self.party(code).code for code in releasable_to) - {origin.code}
        label = SecurityLabel(
            originator=origin.code,
            classification=level.name,
            releasable_to=rel,
            purpose=purpose,
            topics=topics,
            created=created,
            caveats=frozenset(c.upper() for c in caveats),
            review=review,
        )
        for alt in alternatives:
            if not self.party(alt.party).scheme.has(alt.classification):
                raise LabelError(f"alternative label: {alt.party} has no level {alt.classification!r}")
            label = label.with_alternative(alt)
        return label
