"""Loss or compromise (Art. 17): an investigation moves opened → findings → measures → closed.

A pure state machine over immutable values: each step returns a new :class:`Investigation`
with the step appended; a step out of order raises ``InvalidInputError`` naming the states
it may move to. Time is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from gsomia.core.instants import require_aware
from gsomia.errors import InvalidInputError

__all__ = ["IncidentNature", "Investigation", "InvestigationState", "InvestigationStep", "open_investigation"]


class IncidentNature(StrEnum):
    LOSS = "loss"
    COMPROMISE = "compromise"
    POSSIBLE_COMPROMISE = "possible-compromise"


class InvestigationState(StrEnum):
    OPENED = "opened"
    FINDINGS = "findings"
    MEASURES = "measures"
    CLOSED = "closed"


_NEXT: dict[InvestigationState, InvestigationState | None] = {
    InvestigationState.OPENED: InvestigationState.FINDINGS,
    InvestigationState.FINDINGS: InvestigationState.MEASURES,
    InvestigationState.MEASURES: InvestigationState.CLOSED,
    InvestigationState.CLOSED: None,
}


@dataclass(frozen=True, slots=True)
class InvestigationStep:
    state: InvestigationState
    at: datetime
    by: str
    text: str


@dataclass(frozen=True, slots=True)
class Investigation:
    """A report of loss or compromise of one item and the investigation that follows."""

    id: str
    item: str
    originator: str
    holder: str
    nature: IncidentNature
    steps: tuple[InvestigationStep, ...]

    @property
    def state(self) -> InvestigationState:
        return self.steps[-1].state

    @property
    def opened(self) -> datetime:
        return self.steps[0].at

    def advance(self, state: InvestigationState, *, at: datetime, by: str, text: str) -> Investigation:
        """The investigation moved to ``state`` (the next one only), with what was found or done."""
        require_aware(at, "investigation step instant")
        expected = _NEXT[self.state]
        if expected is None:
            raise InvalidInputError(f"investigation {self.id} is closed: it takes no further step")
        if state is not expected:
            raise InvalidInputError(
                f"investigation {self.id} is {self.state.value}: its next step is {expected.value}, "
                f"not {state.value}"
            )
        if not text.strip():
            raise InvalidInputError(f"the {state.value} step needs a text (what was found or done)")
        if at < self.steps[-1].at:
            raise InvalidInputError(f"a step at {at.isoformat()} precedes the previous one")
        return replace(self, steps=(*self.steps, InvestigationStep(state, at, by, text)))


def open_investigation(
    incident_id: str,
    item: str,
    originator: str,
    holder: str,
    nature: IncidentNature,
    *,
    at: datetime,
    by: str,
    text: str,
) -> Investigation:
    """A holder's report of a loss or (possible) compromise: the investigation is opened."""
    require_aware(at, "report instant")
    if not text.strip():
        raise InvalidInputError("describe the loss or compromise: what happened, when it was noticed")
    return Investigation(
        incident_id,
        item,
        originator,
        holder,
        nature,
        (InvestigationStep(InvestigationState.OPENED, at, by, text),),
    )
