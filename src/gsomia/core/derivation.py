"""Copies, translations and derivatives (Art. 4.3, 11, 14, 15): the strictest label of the sources.

A derived item inherits, from every source: the originator (all sources must share one, so the
derivative stays under one originator's control and scheme), the highest classification, the
union of caveats and topics, and only the parties every source is releasable to. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from enum import StrEnum

from gsomia.core.labels import AlternativeLabel, SecurityLabel
from gsomia.core.parties import Scheme
from gsomia.errors import LabelError

__all__ = ["DerivationKind", "derive_label"]


class DerivationKind(StrEnum):
    COPY = "copy"
    TRANSLATION = "translation"
    DERIVATIVE = "derivative"


def _strictest_alternatives(
    sources: Sequence[SecurityLabel], schemes: dict[str, Scheme]
) -> tuple[AlternativeLabel, ...]:
    """Per receiving party, the highest equivalent any source carries (never two for one party)."""
    best: dict[str, AlternativeLabel] = {}
    for label in sources:
        for alt in label.alternatives:
            held = best.get(alt.party)
            scheme = schemes.get(alt.party)
            if held is None or (
                scheme is not None
                and (scheme.level(alt.classification).rank > scheme.level(held.classification).rank)
            ):
                best[alt.party] = alt
    return tuple(best[p] for p in sorted(best))


def derive_label(
    kind: DerivationKind,
    sources: Sequence[SecurityLabel],
    schemes: dict[str, Scheme],
    *,
    created: datetime | None = None,
) -> SecurityLabel:
    """The label of a copy, translation or derivative of ``sources``; raises ``LabelError``.

    ``schemes`` maps party codes to their schemes (the originator's, and each party an
    alternative label names). A copy or translation has exactly one source.
    """
    if not sources:
        raise LabelError("a derived item needs at least one source")
    if kind is not DerivationKind.DERIVATIVE and len(sources) != 1:
        raise LabelError(f"a {kind.value} is made from exactly one source, not {len(sources)}")
    originators = sorted({s.originator for s in sources})
    if len(originators) != 1:
        raise LabelError(
            f"the sources come from {', '.join(originators)}: a derivative stays under one "
            "originator's control, so combine only items of the same originator"
        )
    purposes = sorted({s.purpose for s in sources})
    if len(purposes) != 1:
        raise LabelError(
            f"the sources were provided for different purposes ({', '.join(purposes)}): "
            "an item may be used only for the purpose it was provided for (Art. 6)"
        )
    originator = originators[0]
    scheme = schemes.get(originator)
    if scheme is None:
        raise LabelError(f"no scheme for {originator}")
    top = max(sources, key=lambda s: scheme.level(s.classification).rank)
    releasable = frozenset.intersection(*(s.releasable_to for s in sources))
    reviews = [s.review for s in sources if s.review is not None]
    return replace(
        top,
        releasable_to=releasable,
        caveats=frozenset().union(*(s.caveats for s in sources)),
        topics=frozenset().union(*(s.topics for s in sources)),
        created=created or top.created,
        review=max(reviews) if reviews else None,
        alternatives=_strictest_alternatives(sources, schemes),
    )
