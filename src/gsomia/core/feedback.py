"""A holder's feedback to the originator about an item it received (issue 20 §4).

A sighting (seen, used in an assessment, corroborated, false positive), a question, or a proposed
correction. Pure values and checks; time is an argument. What the feedback may carry is bounded:

- its text is protected at the item's own level at both ends (it is shown only to readers of the
  item), and is short (``MAX_TEXT`` characters): it says something about the originator's item,
  it is not a channel for the holder's own reports;
- the holder's own items it cites (``cites``) must each have been released to the originator
  under an agreement: a citation of something the originator was never given is refused, so
  feedback never carries the holder's own classified content unless that content is itself
  released (:func:`check_citations`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gsomia.core.instants import require_aware
from gsomia.errors import InvalidInputError

__all__ = [
    "MAX_CITES",
    "MAX_PER_ITEM",
    "MAX_TEXT",
    "Feedback",
    "FeedbackKind",
    "check_citations",
    "make_feedback",
]

MAX_TEXT = 2000  # characters of free text in one feedback
MAX_CITES = 16  # the holder's own released items one feedback may cite
MAX_PER_ITEM = 100  # feedback one holder may send (and an originator keeps) about one item


class FeedbackKind(StrEnum):
    SEEN = "seen"
    USED = "used-in-assessment"
    CORROBORATED = "corroborated"
    FALSE_POSITIVE = "false-positive"
    QUESTION = "question"
    CORRECTION = "correction"


@dataclass(frozen=True, slots=True)
class Feedback:
    """One holder's signed word to the originator about one item."""

    id: str
    item: str
    originator: str
    holder: str
    kind: FeedbackKind
    text: str
    cites: tuple[str, ...]
    by: str
    at: datetime


def make_feedback(
    feedback_id: str,
    item: str,
    originator: str,
    holder: str,
    kind: str,
    text: str,
    cites: Collection[str],
    *,
    by: str,
    at: datetime,
) -> Feedback:
    """A checked :class:`Feedback`; ``InvalidInputError`` names what is wrong."""
    require_aware(at, "feedback instant")
    try:
        parsed = FeedbackKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in FeedbackKind)
        raise InvalidInputError(f"feedback kind must be one of {known}") from None
    if holder == originator:
        raise InvalidInputError(
            f"{holder} originated item {item}: feedback goes to an originator from a holder"
        )
    text = text.strip()
    if parsed in (FeedbackKind.QUESTION, FeedbackKind.CORRECTION) and not text:
        raise InvalidInputError(f"a {parsed.value} needs a text")
    if len(text) > MAX_TEXT:
        raise InvalidInputError(f"feedback text: at most {MAX_TEXT} characters")
    if len(set(cites)) != len(list(cites)) or len(set(cites)) > MAX_CITES:
        raise InvalidInputError(f"feedback cites: at most {MAX_CITES} distinct item ids")
    if item in cites:
        raise InvalidInputError("feedback cites: an item does not cite itself")
    return Feedback(feedback_id, item, originator, holder, parsed, text, tuple(sorted(cites)), by, at)


def check_citations(feedback: Feedback, released_to_originator: Collection[str]) -> None:
    """Each item ``feedback`` cites must be among those the holder released to the originator."""
    missing = sorted(set(feedback.cites) - set(released_to_originator))
    if missing:
        raise InvalidInputError(
            f"feedback cites {', '.join(missing)}, never released to {feedback.originator}: "
            "feedback carries nothing the originator was not given"
        )
