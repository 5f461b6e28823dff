"""Person-level access (Art. 7): clearance AND need-to-know AND nationality; rank or role alone gives none.

``decide_read(person, label, catalogue)`` checks, and reports every check:

- the person's account is active and holds a role that handles items;
- a government official, or a contractor whose facility and personnel security measures
  (Art. 16) are on file (Art. 7(2): access to the other party's items is for officials);
- nationality: the originator's own nationals, or a party the label makes the item
  releasable to (a NOFORN caveat leaves only the originator's nationals);
- clearance: at least the item's level *in the reader's own scheme* — the originator's
  level for its nationals, otherwise the alternative label for the reader's party
  (an item with no equivalent in the reader's scheme cannot be read by them);
- need-to-know: the person's topics overlap the item's topics;
- purpose (Art. 6(b)): a recipient uses an item only for the purpose it was provided for; a reader
  who states another purpose (``Person.purpose``) reads it only with the originator's consent to
  that purpose on file (a ``new_purpose`` consent naming the holder, and the item or none);
- a visitor (Art. 8): only during a visit the host authorised, and only up to its level
  (``visit``, see :mod:`gsomia.core.visits`).

Pure: no clock; the caller records the decision (allowed or refused) in the audit log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gsomia.core.catalogue import Catalogue
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Check, Consent, ConsentKind
from gsomia.core.visits import VisitScope, visit_check
from gsomia.errors import AccessDenied, LabelError

__all__ = ["AccessDecision", "Employment", "Person", "ReadKey", "Role", "decide_read", "read_key"]


class Role(StrEnum):
    ANALYST = "analyst"
    RELEASE_OFFICER = "release_officer"
    SECURITY_OFFICER = "security_officer"
    ADMINISTRATOR = "administrator"


_HANDLES_ITEMS = frozenset({Role.ANALYST, Role.RELEASE_OFFICER, Role.SECURITY_OFFICER})


class Employment(StrEnum):
    """Whom a person works for (Art. 7(2): officials; Art. 16: contractors, once checked)."""

    OFFICIAL = "official"  # a government official
    CONTRACTOR = "contractor"  # works for a contractor; needs the Art. 16 measures on file


@dataclass(frozen=True, slots=True)
class Person:
    """A registered person: nationality, national clearance, need-to-know topics, roles, and
    whether an official or a contractor (``contractor_measures``: the reference of the facility
    and personnel security measures of Art. 16 on file for a contractor)."""

    id: str
    name: str
    nationality: str
    clearance: str | None
    need_to_know: frozenset[str]
    roles: frozenset[Role]
    active: bool = True
    employment: Employment = Employment.OFFICIAL
    contractor_measures: str | None = None
    # the purpose this person states for what they do now (a request's); None: each item's own.
    # Never stored with the person's record: an entry point sets it per request.
    purpose: str | None = None

    def __post_init__(self) -> None:
        if not self.id or not self.name:
            raise LabelError("a person needs an id and a name")
        if self.contractor_measures is not None and not self.contractor_measures.strip():
            raise LabelError("person: contractor measures need a reference")
        if self.purpose is not None and not self.purpose.strip():
            raise LabelError("person: a stated purpose needs words")


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


def _official(person: Person, label: SecurityLabel) -> Check:
    """Art. 7(2): the other party's items are for government officials; Art. 16: a contractor
    only once its facility and personnel security measures are on file."""
    if person.employment is Employment.OFFICIAL:
        return Check("official", True, f"{person.id} is a government official (Art. 7(2))")
    if label.originator == person.nationality:
        return Check(
            "official", True, f"{person.id} is a contractor reading a national item: national rules govern it"
        )
    if person.contractor_measures is None:
        return Check(
            "official",
            False,
            f"{person.id} is a contractor: a {label.originator} item is for officials, or for a contractor "
            f"whose facility and personnel security measures (Art. 16) are on file; none are recorded",
        )
    return Check(
        "official",
        True,
        f"{person.id} is a contractor with the Art. 16 measures on file ({person.contractor_measures})",
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
    person: Person,
    label: SecurityLabel,
    catalogue: Catalogue,
    *,
    visit: VisitScope | None = None,
    holder: str | None = None,
    consents: Sequence[Consent] = (),
    item: str | None = None,
    at: datetime | None = None,
) -> AccessDecision:
    """May ``person`` read the item labelled ``label``? Every check is reported.

    ``visit`` carries the reader's visit authorisations and the instant of the read; a reader
    with any on record is a visitor, capped by the one in force. ``holder`` is the party whose
    node holds the item, ``consents`` the originator's consents on file for ``item`` (or standing)
    at instant ``at``: what a reader stating another purpose than the item's needs (Art. 6(b)).
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
        _official(person, label),
        _nationality(person, label),
        _clearance(person, label, catalogue),
        _need_to_know(person, label),
        _use(person, label, holder, consents, item, at),
    )
    if visit is not None:
        checks = (*checks, visit_check(visit, label, catalogue))
    return AccessDecision(all(c.passed for c in checks), person.id, checks)


ReadKey = tuple[object, ...]


def read_key(label: SecurityLabel) -> ReadKey:
    """What of ``label`` :func:`decide_read` reads: for one person, catalogue, visit scope, holder,
    instant and no consents, two labels with the same key get the same decision, checks and reasons
    included. The creation and review instants and the policy name are not read, so items that
    differ only in them (most of a page) are decided once (issue 18). A check that comes to read
    another part of the label puts it here too (tests/core/test_access.py holds the two together)."""
    return (
        label.originator,
        label.classification,
        label.releasable_to,
        label.purpose,
        label.topics,
        label.caveats,
        label.alternatives,
    )


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


def _use(
    person: Person,
    label: SecurityLabel,
    holder: str | None,
    consents: Sequence[Consent],
    item: str | None,
    at: datetime | None,
) -> Check:
    """Art. 6(b): the recipient uses the item only for the purpose it was provided for, unless the
    originator consents to another; the originator's own item is its own business."""
    stated = person.purpose
    if stated is None or stated == label.purpose:
        return Check(
            "purpose", True, f"read for the purpose it was provided for, {label.purpose!r} (Art. 6(b))"
        )
    if holder is not None and holder == label.originator:
        return Check("purpose", True, f"{holder}'s own item, read for {stated!r}")
    if holder is not None and at is not None:
        ts = at.timestamp()
        for consent in consents:
            if (
                consent.kind is ConsentKind.NEW_PURPOSE
                and consent.originator == label.originator
                and consent.recipient == holder
                and consent.purpose == stated
                and consent.covers(item, ts)
            ):
                return Check(
                    "purpose",
                    True,
                    f"read for {stated!r}: {label.originator}'s consent {consent.reference} to that "
                    f"purpose (Art. 6(b))",
                )
    return Check(
        "purpose",
        False,
        f"the item was provided for {label.purpose!r}; reading it for {stated!r} needs "
        f"{label.originator}'s consent to that purpose (Art. 6(b)), and none is on file",
    )
