"""Portions and tearlines: one item in parts, each part with its own label (issue 20 §2).

A report's body may be 군사II급비밀 for the USA only while its tearline is 군사III급비밀
releasable to JPN. The originator signs the item's label with an RFC 9162 Merkle root over the
portions' leaves (:mod:`gsomia.core.merkle`): a holder of some portions checks each against the
signature with its inclusion proof, without the others.

Pure: the leaves' bytes come from the caller (the kernel writes them); here are the tree over
them (:func:`portion_tree`), the check of one portion (:func:`check_portion`), the label of what a
reader or a recipient holds (:func:`banner`: the highest of the portions' labels) and the rule
that the item's label covers every portion (:func:`check_within`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gsomia.core.catalogue import Catalogue
from gsomia.core.labels import SecurityLabel
from gsomia.core.merkle import inclusion_proof, leaf_hash, node_hash, range_hash, verify_inclusion
from gsomia.errors import LabelError

__all__ = [
    "MAX_PORTIONS",
    "PORTION_ID",
    "PortionTree",
    "banner",
    "check_portion",
    "check_within",
    "portion_tree",
]

MAX_PORTIONS = 64
"""Portions in one item: a report's paragraphs, not a data set."""

PORTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class PortionTree:
    """The root over the portions' leaves (in order) and each leaf's inclusion proof."""

    root: bytes
    size: int
    proofs: tuple[tuple[bytes, ...], ...]


def portion_tree(leaves: Sequence[bytes]) -> PortionTree:
    """The RFC 9162 tree over ``leaves`` (each portion's signed bytes, in the item's order)."""
    if not 0 < len(leaves) <= MAX_PORTIONS:
        raise LabelError(f"an item has 1 to {MAX_PORTIONS} portions, not {len(leaves)}")
    hashes = [leaf_hash(leaf) for leaf in leaves]
    levels: dict[tuple[int, int], bytes] = {(0, i): h for i, h in enumerate(hashes)}

    def node(level: int, index: int) -> bytes:
        found = levels.get((level, index))
        if found is None:
            found = node_hash(node(level - 1, 2 * index), node(level - 1, 2 * index + 1))
            levels[(level, index)] = found
        return found

    size = len(leaves)
    proofs = tuple(tuple(inclusion_proof(i, size, node)) for i in range(size))
    return PortionTree(range_hash(0, size, node), size, proofs)


def check_portion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ``ProofError`` unless ``leaf`` is portion ``index`` of the tree the originator signed."""
    verify_inclusion(leaf_hash(leaf), index, size, proof, root)


def _rank(catalogue: Catalogue, label: SecurityLabel) -> int:
    return catalogue.level(label.originator, label.classification).rank


def check_within(portion: SecurityLabel, item: SecurityLabel, catalogue: Catalogue) -> None:
    """A portion's label is the item's originator's, for the item's purpose, and no higher than the
    item's label (the item's label is the highest of its portions')."""
    if portion.originator != item.originator or portion.policy != item.policy:
        raise LabelError("a portion's label must be of the item's originator and policy")
    if portion.purpose != item.purpose:
        raise LabelError("a portion is for the item's purpose")
    if _rank(catalogue, portion) > _rank(catalogue, item):
        raise LabelError(
            f"a portion marked {portion.classification} is above its item's {item.classification}"
        )


def banner(labels: Sequence[SecurityLabel], catalogue: Catalogue) -> SecurityLabel:
    """The highest label of ``labels`` (one item's portions, the originator's labels): the highest
    classification, releasable only where every portion is, every caveat and topic, the latest
    creation and the earliest review. What a reader sees of an item is marked with this."""
    if not labels:
        raise LabelError("no portion to mark")
    first = labels[0]
    for other in labels[1:]:
        if (other.originator, other.policy, other.purpose) != (first.originator, first.policy, first.purpose):
            raise LabelError("an item's portions share its originator, policy and purpose")
        if other.alternatives or first.alternatives:
            raise LabelError("a banner is worked out from the originator's labels")
    top = max(labels, key=lambda label: _rank(catalogue, label))
    releasable = frozenset.intersection(*(label.releasable_to for label in labels))
    reviews = [label.review for label in labels if label.review is not None]
    return SecurityLabel(
        first.originator,
        top.classification,
        releasable,
        first.purpose,
        frozenset().union(*(label.topics for label in labels)),
        max(label.created for label in labels),
        caveats=frozenset().union(*(label.caveats for label in labels)),
        review=min(reviews) if reviews else None,
        policy=first.policy,
    )
