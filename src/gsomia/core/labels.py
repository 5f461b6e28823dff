"""Security labels after NATO ADatP-4774: the originator's label plus alternative labels.

A label is never overwritten: a receiver's equivalent is added beside the
originator's label as an :class:`AlternativeLabel`, and a second, different
equivalent for the same party is refused (an item never carries two conflicting labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from gsomia.core._kept import keep_hash, restore_without_hash, state_without_hash
from gsomia.core.instants import require_aware
from gsomia.errors import LabelError

__all__ = ["CAVEATS", "AlternativeLabel", "Caveat", "CaveatEffect", "SecurityLabel"]


class CaveatEffect(Enum):
    BLOCKS_ALL_RELEASE = "blocks every release abroad"
    BLOCKS_ONWARD_RELEASE = "blocks release by anyone but the originator"
    HANDLING_ONLY = "handling instruction; does not block release"


@dataclass(frozen=True, slots=True)
class Caveat:
    name: str
    effect: CaveatEffect
    meaning: str


CAVEATS: dict[str, Caveat] = {
    c.name: c
    for c in (
        Caveat("NOFORN", CaveatEffect.BLOCKS_ALL_RELEASE, "not releasable to any foreign party"),
        Caveat(
            "IP-RESTRICTED",
            CaveatEffect.BLOCKS_ONWARD_RELEASE,
            "intellectual property rights forbid onward transfer (Art. 6)",
        ),
        Caveat(
            "G2G-ONLY",
            CaveatEffect.HANDLING_ONLY,
            "government-to-government channels only (Art. 9)",
        ),
    )
}
"""Caveats gsomia knows. A caveat not listed here cannot be honoured, so it blocks release."""


@dataclass(frozen=True, slots=True)
class AlternativeLabel:
    """The equivalent of the originator's label under another party's scheme."""

    party: str
    classification: str
    agreement: str


@dataclass(frozen=True, slots=True)
class SecurityLabel:
    """A confidentiality label bound to one item.

    ``classification`` is a level of the originator's scheme; ``releasable_to`` lists
    the parties (besides the originator) the item may ever reach.
    """

    originator: str
    classification: str
    releasable_to: frozenset[str]
    purpose: str
    topics: frozenset[str]
    created: datetime
    caveats: frozenset[str] = frozenset()
    review: datetime | None = None
    policy: str = "gsomia"
    alternatives: tuple[AlternativeLabel, ...] = ()
    created_ts: float = field(init=False, repr=False, compare=False)
    # the hash once asked (-1: not yet; ``hash()`` never answers -1): a label is hashed again and
    # again (a batch's memo of decisions, the label caches), the generated ``__hash__`` hashed every
    # field each time, the creation instant's offset asked of its zone (issue 18)
    hash_: int = field(default=-1, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        """The generated ``__hash__``'s value, kept: every compared field of the label, in order."""
        if self.hash_ != -1:
            return self.hash_
        return keep_hash(
            self,
            (
                self.originator,
                self.classification,
                self.releasable_to,
                self.purpose,
                self.topics,
                self.created,
                self.caveats,
                self.review,
                self.policy,
                self.alternatives,
            ),
        )

    __getstate__ = state_without_hash  # pickled and copied without the kept hash
    __setstate__ = restore_without_hash

    def __post_init__(self) -> None:
        require_aware(self.created, "label creation instant")
        object.__setattr__(self, "created_ts", self.created.timestamp())
        if self.review is not None:
            require_aware(self.review, "label review instant")
            if self.review < self.created:
                raise LabelError("the review instant precedes the creation instant")
        if not self.purpose:
            raise LabelError("a label needs a purpose: the item may be used only for it (Art. 6)")
        if self.originator in self.releasable_to:
            raise LabelError("releasable_to lists other parties; the originator always holds its own item")

    def alternative_for(self, party: str) -> AlternativeLabel | None:
        for alt in self.alternatives:
            if alt.party == party:
                return alt
        return None

    def with_alternative(self, alternative: AlternativeLabel) -> SecurityLabel:
        """Add a receiver's equivalent beside the originator's label (never replacing it)."""
        if alternative.party == self.originator:
            raise LabelError("the originator's own label needs no alternative")
        existing = self.alternative_for(alternative.party)
        if existing is not None:
            if existing.classification != alternative.classification:
                raise LabelError(
                    f"{alternative.party} already marks this item {existing.classification}; "
                    f"refusing a conflicting {alternative.classification}"
                )
            return self
        return self.copied(alternatives=(*self.alternatives, alternative))

    def copied(
        self, *, created: datetime | None = None, alternatives: tuple[AlternativeLabel, ...] | None = None
    ) -> SecurityLabel:
        """This label with another creation instant or other alternatives, every other field kept;
        ``__post_init__`` runs again. The constructor called directly, not ``dataclasses.replace``
        (about 3 us a label, most of it finding the fields; every received item of a batch and every
        label parsed from a template gets one, issue 18). tests/core/test_labels.py holds it equal to
        ``dataclasses.replace`` and names every field, so a field added to SecurityLabel is not left
        out here (tests/node/test_ingest_batch.py the same for the creation instant): the one place that
        lists them."""
        return SecurityLabel(
            originator=self.originator,
            classification=self.classification,
            releasable_to=self.releasable_to,
            purpose=self.purpose,
            topics=self.topics,
            created=self.created if created is None else created,
            caveats=self.caveats,
            review=self.review,
            policy=self.policy,
            alternatives=self.alternatives if alternatives is None else alternatives,
        )
