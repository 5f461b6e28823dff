"""Registers (Art. 2, 3): competent authorities per party and each party's protection rules, versioned.

A recorded change to a party's national protection rules flags the items it affects: those
whose level in that party's scheme (the originator's label, or that party's equivalent) is
among the levels the change names — or every item with a level in that scheme when it names
none. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gsomia.core.instants import require_aware
from gsomia.core.labels import SecurityLabel
from gsomia.errors import InvalidInputError

__all__ = ["Authority", "RulesVersion", "affected_by"]


@dataclass(frozen=True, slots=True)
class Authority:
    """A competent authority of a party (Art. 2), e.g. the Ministry of National Defense."""

    party: str
    id: str
    name: str
    function: str

    def __post_init__(self) -> None:
        if not self.id or not self.name.strip():
            raise InvalidInputError("an authority needs an id and a name")


@dataclass(frozen=True, slots=True)
class RulesVersion:
    """One version of a party's national protection rules (Art. 3)."""

    party: str
    version: int
    title: str
    summary: str
    levels: frozenset[str]  # levels of the party's scheme the change touches; empty: all
    effective: datetime

    def __post_init__(self) -> None:
        require_aware(self.effective, "rules effective instant")
        if self.version < 1:
            raise InvalidInputError("rules versions count from 1")
        if not self.title.strip():
            raise InvalidInputError("name the rules (title)")


def affected_by(rules: RulesVersion, label: SecurityLabel) -> bool:
    """Does a change to ``rules.party``'s rules touch the item labelled ``label``?"""
    if label.originator == rules.party:
        level: str | None = label.classification
    else:
        alt = label.alternative_for(rules.party)
        level = None if alt is None else alt.classification
    if level is None:
        return False
    return not rules.levels or level in rules.levels
