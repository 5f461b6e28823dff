"""Reclassification and recall (Art. 6(g)): only the originator changes a label, versions only go up.

A :class:`LabelChange` is what the originator signs and every holder applies to the item and
to every copy and derivative of it. Labels are versioned: a holder applies a change only if
its version is newer than the one it holds, so an item never carries two conflicting labels
and a change that arrives twice (or late) changes nothing. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from gsomia.core.instants import require_aware
from gsomia.core.labels import SecurityLabel
from gsomia.core.parties import Scheme
from gsomia.errors import InvalidInputError, LabelError

__all__ = ["ChangeKind", "LabelChange", "check_originator", "reclassified"]


class ChangeKind(StrEnum):
    RECLASSIFY = "reclassify"
    RECALL = "recall"


@dataclass(frozen=True, slots=True)
class LabelChange:
    """The originator's change to one item's label: version ``version`` replaces every older one."""

    item: str
    originator: str
    version: int
    kind: ChangeKind
    classification: str | None  # the new level (originator's scheme) of a reclassification
    reason: str
    at: datetime

    def __post_init__(self) -> None:
        require_aware(self.at, "label change instant")
        if self.version < 2:
            raise InvalidInputError("a label change starts at version 2 (version 1 is the label as created)")
        if (self.kind is ChangeKind.RECLASSIFY) != (self.classification is not None):
            raise InvalidInputError("a reclassification names the new level; a recall names none")
        if not self.reason.strip():
            raise InvalidInputError("give the reason for the change (it reaches every holder)")


def check_originator(party: str, label: SecurityLabel, what: str) -> None:
    """Only the originator reclassifies or recalls its item (Art. 6(g)): raises otherwise."""
    if label.originator != party:
        raise InvalidInputError(
            f"only the originator {label.originator} may {what} this item; {party} holds it"
        )


def reclassified(label: SecurityLabel, classification: str, scheme: Scheme) -> SecurityLabel:
    """The originator's label at a new level; receivers' equivalents are dropped, to be made anew."""
    if scheme.party != label.originator:
        raise LabelError(f"the level must come from {label.originator}'s scheme, not {scheme.party}'s")
    level = scheme.level(classification).name
    if level == label.classification:
        raise InvalidInputError(f"the item is already {level}: nothing to reclassify")
    return replace(label, classification=level, alternatives=())
