"""Visits (Art. 8): the host authorises a visit and sets the highest level the visitor may see.

A person with visit authorisations on record is a visitor: they read only while one is in
force (``starts <= at < ends``) and only up to its level in the host's scheme. A visit ended
early keeps its record with the earlier end; one withdrawn before it began ends at its start
(never in force), so that the person stays a visitor and never reads as an ordinary reader.
Pure: the instant is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import require_aware
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Check
from gsomia.errors import InvalidInputError

__all__ = ["VisitAuthorisation", "VisitScope", "visit_check"]


@dataclass(frozen=True, slots=True)
class VisitAuthorisation:
    id: str
    visitor: str
    host: str
    highest: str  # a level of the host's scheme
    starts: datetime
    ends: datetime
    purpose: str

    def __post_init__(self) -> None:
        require_aware(self.starts, "visit start")
        require_aware(self.ends, "visit end")
        if self.ends < self.starts:  # equal: withdrawn before it began (authorising one refuses it)
            raise InvalidInputError("a visit ends after it starts")
        if not self.purpose.strip():
            raise InvalidInputError("a visit is for an official purpose (Art. 8): name it")


@dataclass(frozen=True, slots=True)
class VisitScope:
    """The visits on record for one reader at ``at``; empty ``visits`` means not a visitor."""

    visits: tuple[VisitAuthorisation, ...]
    at: datetime


def _host_level(label: SecurityLabel, host: str) -> str | None:
    if label.originator == host:
        return label.classification
    alt = label.alternative_for(host)
    return None if alt is None else alt.classification


def visit_check(scope: VisitScope, label: SecurityLabel, catalogue: Catalogue) -> Check:
    """Passes for a non-visitor; for a visitor, only within a visit in force and up to its level."""
    if not scope.visits:
        return Check("visit", True, "not a visitor")
    current: Sequence[VisitAuthorisation] = [v for v in scope.visits if v.starts <= scope.at < v.ends]
    if not current:
        last = max(v.ends for v in scope.visits)
        return Check("visit", False, f"no visit in force (the last one ended or ends at {last.isoformat()})")
    reasons = []
    for visit in current:
        scheme = catalogue.party(visit.host).scheme
        level = _host_level(label, visit.host)
        if level is None:
            reasons.append(f"the item has no {visit.host} level, so visit {visit.id} cannot cover it")
            continue
        cap, needed = scheme.level(visit.highest), scheme.level(level)
        if needed.rank <= cap.rank:
            return Check(
                "visit", True, f"visit {visit.id} allows up to {cap.name}; the item is {needed.name}"
            )
        reasons.append(f"visit {visit.id} allows up to {cap.name}, below the item's {needed.name}")
    return Check("visit", False, "; ".join(reasons))
