"""Parties (STANAG 1059 trigraphs) and their national classification schemes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from gsomia.core.assumptions import Assumption
from gsomia.errors import LabelError, UnknownNameError

__all__ = ["Classification", "Party", "Scheme"]

_TRIGRAPH = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True, slots=True)
class Classification:
    """One level of a national scheme: ``rank`` orders levels within the scheme only.

    ``valid_from``/``valid_until`` bound the period in which the level exists (特定秘密 exists
    from 10 Dec 2014, when the Specially Designated Secrets Act came into force); ``None``
    is unbounded. ``valid_until`` is exclusive.
    """

    party: str
    name: str
    rank: int
    alias: str
    gloss: str
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    def __post_init__(self) -> None:
        for bound in (self.valid_from, self.valid_until):
            if bound is not None and bound.utcoffset() is None:
                raise LabelError(f"level {self.name}: {bound.isoformat()} has no UTC offset")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise LabelError(f"level {self.name}: valid_until is not after valid_from")

    def __str__(self) -> str:
        return self.name

    def valid_at(self, at: datetime) -> bool:
        """Whether the level exists at ``at``."""
        return (self.valid_from is None or self.valid_from <= at) and (
            self.valid_until is None or at < self.valid_until
        )


@dataclass(frozen=True, slots=True)
class Scheme:
    """A party's national classification scheme, ordered by rank.

    ``policy_name`` and ``policy_oid`` name the scheme as a security policy (ADatP-4774, XML-SPIF)
    when the party's own policy file gave them; empty, gsomia derives stable ones.
    """

    party: str
    title: str
    levels: tuple[Classification, ...]
    policy_name: str = ""
    policy_oid: str = ""
    notes: str = ""
    assumptions: tuple[Assumption, ...] = ()  # e.g. ranking 特定秘密 above 極秘
    _index: dict[str, Classification] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.levels:
            raise LabelError(f"scheme {self.party}: has no levels")
        index: dict[str, Classification] = {}
        ranks: set[int] = set()
        for level in self.levels:
            if level.party != self.party:
                raise LabelError(f"scheme {self.party}: level {level.name} belongs to {level.party}")
            if level.rank in ranks:
                raise LabelError(f"scheme {self.party}: two levels share rank {level.rank}")
            ranks.add(level.rank)
            for key in (level.name, level.alias.casefold()):
                if key in index:
                    raise LabelError(f"scheme {self.party}: level name or alias {key!r} is used twice")
                index[key] = level
        object.__setattr__(self, "_index", index)

    def level(self, name: str) -> Classification:
        """Find a level by its national name or its romanised alias (any case), e.g. ``gokuhi``."""
        found = self._index.get(name) or self._index.get(name.casefold())
        if found is None:
            known = ", ".join(f"{lv.name} ({lv.alias})" for lv in self.levels)
            raise UnknownNameError(f"{self.party} has no classification {name!r}; known: {known}")
        return found

    def has(self, name: str) -> bool:
        return name in self._index or name.casefold() in self._index


@dataclass(frozen=True, slots=True)
class Party:
    """A state party to agreements, named by its STANAG 1059 trigraph.

    ``topics`` are the subjects its data file declares its items are labelled with (beside those an
    agreement's scope names): a topic nobody declares is a misspelling, refused at the boundary.
    """

    code: str
    name: str
    scheme: Scheme
    topics: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not _TRIGRAPH.match(self.code):
            raise UnknownNameError(f"party code {self.code!r} is not a three-letter trigraph")
        if self.scheme.party != self.code:
            raise LabelError(f"party {self.code}: scheme belongs to {self.scheme.party}")
