"""Assumptions: what the model takes for granted where the record is silent or disputed.

Each is stated as one, with its consequence, and travels with the state or decision it
shapes (``agreement status``, ``decide``, the dashboard), so a reader can tell the record
from the model. ``about`` ties one to an event id or a status of its agreement: it is shown
only once that event has happened or while that status holds; empty, it always applies.
"""

from __future__ import annotations

from dataclasses import dataclass

from gsomia.errors import AgreementError

__all__ = ["Assumption"]


@dataclass(frozen=True, slots=True)
class Assumption:
    """One assumption of the model, its consequence, and what it is about."""

    text: str
    consequence: str
    about: str = ""

    def __post_init__(self) -> None:
        if not self.text.strip() or not self.consequence.strip():
            raise AgreementError("an assumption needs its text and its consequence")

    @property
    def sentence(self) -> str:
        return f"Assumption: {self.text.rstrip('.')}. Consequence: {self.consequence.rstrip('.')}."
