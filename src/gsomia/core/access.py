"""Person-level access (Art. 7): clearance AND need-to-know AND nationality; rank or role alone gives none.

``decide_read(person, label, catalogue)`` checks, and reports every check:

- the person's account is active and holds a role that handles items;
- nationality: the originator's own nationals, or a party the label makes the item
  releasable to (a NOFORN caveat leaves only the originator's nationals);
- clearance: at least the item's level *in the reader's own scheme* — the originator's
  level for its nationals, otherwise the alternative label for the reader's party
  (an item with no equivalent in the reader's scheme cannot be read by them);
- need-to-know: the person's topics overlap the item's topics;
- a visitor (Art. 8): only during a visit the host authorised, and only up to its level
  (``visit``, see :mod:`gsomia.core.visits`).

Pure: no clock; the caller records the decision (allowed or refused) in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gsomia.core.catalogue import Catalogue
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Check
from gsomia.core.visits import VisitScope, visit_check
from gsomia.errors import AccessDenied, LabelError

__all__ = ["AccessDecision", "Person", "Role", "decide_read"]


class Role(StrEnum):
    ANALYST = "analyst"
    RELEASE_OFFICER = "release_officer"
    SECURITY_OFFICER = "security_officer"
    ADMINISTRATOR = "administrator"


_HANDLES_ITEMS = frozenset({Role.ANALYST, Role.RELEASE_OFFICER, Role.SECURITY_OFFICER})


@dataclass(frozen=True, slots=True)
class Person:
    """A registered person: nationality, national clearance, need-to-know topics, roles."""

    id: str
    name: str
    nationality: str
    clearance: str | None
    need_to_know: frozenset[str]
    roles: frozenset[Role]
    active: bool = True

    def __post_init__(self) -> None:
        if not self.id or not self.name:
            raise LabelError("a person needs an id and a name")


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """Allowed or refused, with every check and why."""

    allowed: bool
    person: str
    checks: tuple[Check, ...]

    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def raise_if_refused(self) -> AccessDecision:
        if not self.allowed:
            raise AccessDenied(self)
        return self


def _nationality(person: Person, label: SecurityLabel) -> Check:
    if person.nationality == label.originator:
        return Check("nationality", True, f"{person.nationality} national reading a {label.originator} item")
    if "NOFORN" in label.caveats:
        return Check("nationality", False, f"NOFORN: only {label.originator} nationals may read it")
    if person.nationality in label.releasable_to:
        return Check("nationality", True, f"the item is releasable to {person.nationality}")
    rel = ", ".join(sorted(label.releasable_to)) or "nobody abroad"
    return Check(
        "nationality", False, f"{person.nationality} nationals may not read it (releasable to {rel})"
    )


def _clearance(person: Person, label: SecurityLabel, catalogue: Catalogue) -> Check:
    if label.originator == person.nationality:
        level_name = label.classification
    else:
        alternative = label.alternative_for(person.nationality)
        if alternative is None:
            return Check(
                "clearance",
                False,
                f"the item ({label.originator} {label.classification}) has no equivalent in the "
                f"{person.nationality} scheme, so no {person.nationality} clearance can cover it",
            )
        level_name = alternative.classification
    if person.clearance is None:
        return Check("clearance", False, f"{person.id} holds no clearance; the item is {level_name}")
    scheme = catalogue.party(person.nationality).scheme
    if not scheme.has(level_name) or not scheme.has(person.clearance):
        return Check("clearance", False, f"cannot compare {person.clearance} with {level_name}")
    held, needed = scheme.level(person.clearance), scheme.level(level_name)
    if held.rank < needed.rank:
        return Check(
            "clearance",
            False,
            f"cleared {held.name} ({held.gloss}), below the item's {needed.name} ({needed.gloss}) "
            f"in the {person.nationality} scheme",
        )
    return Check("clearance", True, f"cleared {held.name}, at or above the item's {needed.name}")


def decide_read(
    person: Person, label: SecurityLabel, catalogue: Catalogue, *, visit: VisitScope | None = None
) -> AccessDecision:
    """May ``person`` read the item labelled ``label``? Every check is reported.

    ``visit`` carries the reader's visit authorisations and the instant of the read; a reader
    with any on record is a visitor, capped by the one in force.
    """
    checks: tuple[Check, ...] = (
        Check(
            "active", person.active, "the account is active" if person.active else "the account is disabled"
        ),
        Check(
            "role",
            bool(person.roles & _HANDLES_ITEMS),
            "holds a role that handles items"
            if person.roles & _HANDLES_ITEMS
            else "no role that handles items (analyst, release officer, security officer)",
        ),
        _nationality(person, label),
        _clearance(person, label, catalogue),
        _need_to_know(person, label),
    )
    if visit is not None:
        checks = (*checks, visit_check(visit, label, catalogue))
    return AccessDecision(all(c.passed for c in checks), person.id, checks)


def _need_to_know(person: Person, label: SecurityLabel) -> Check:
    shared = person.need_to_know & label.topics
    if shared:
        return Check("need_to_know", True, f"need-to-know covers {', '.join(sorted(shared))}")
    if not label.topics:
        return Check("need_to_know", False, "the item names no topic, so no need-to-know can be shown")
    return Check(
        "need_to_know",
        False,
        f"no need-to-know for {', '.join(sorted(label.topics))} "
        f"(holds: {', '.join(sorted(person.need_to_know)) or 'none'})",
    )
