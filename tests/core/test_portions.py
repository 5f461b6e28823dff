"""The portions' tree (the RFC 9162 reference in test_merkle), one portion's check, and the banner."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tests.core.test_merkle import mth, path

from gsomia.core.catalogue import Catalogue
from gsomia.core.labels import SecurityLabel
from gsomia.core.portions import banner, check_portion, check_within, portion_tree
from gsomia.errors import LabelError, ProofError

T = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_the_tree_is_rfc_9162s_and_every_portion_checks_against_the_root(size: int) -> None:
    leaves = [f"portion {i}".encode() for i in range(size)]
    tree = portion_tree(leaves)
    assert tree.root == mth(leaves)
    for i, leaf in enumerate(leaves):
        assert list(tree.proofs[i]) == path(i, leaves)
        check_portion(leaf, i, size, tree.proofs[i], tree.root)


def test_an_altered_moved_or_foreign_portion_fails_its_proof() -> None:
    leaves = [b"body", b"tearline", b"annex"]
    tree = portion_tree(leaves)
    other = portion_tree([b"body", b"another tearline", b"annex"])
    for leaf, index, proof, root in [
        (b"tearline!", 1, tree.proofs[1], tree.root),  # altered
        (b"tearline", 0, tree.proofs[1], tree.root),  # moved to another place
        (b"another tearline", 1, other.proofs[1], tree.root),  # from another item's tree
        (b"tearline", 1, tree.proofs[1], other.root),  # against another root
    ]:
        with pytest.raises(ProofError):
            check_portion(leaf, index, 3, proof, root)
    with pytest.raises(LabelError):
        portion_tree([])


def _label(classification: str, rel: set[str], topics: set[str], **extra: object) -> SecurityLabel:
    return SecurityLabel(
        "KOR", classification, frozenset(rel), "threat-assessment", frozenset(topics), T, **extra
    )  # type: ignore[arg-type]


def test_the_banner_is_the_highest_label_releasable_only_where_every_portion_is(catalogue: Catalogue) -> None:
    body = _label("군사II급비밀", {"USA"}, {"dprk-missile"}, caveats=frozenset({"G2G-ONLY"}))
    tearline = _label("군사III급비밀", {"JPN", "USA"}, {"dprk-nuclear"})
    top = banner([tearline, body], catalogue)
    assert top.classification == "군사II급비밀"
    assert top.releasable_to == frozenset({"USA"})
    assert top.topics == frozenset({"dprk-missile", "dprk-nuclear"})
    assert top.caveats == frozenset({"G2G-ONLY"})
    assert banner([tearline], catalogue) == tearline
    check_within(tearline, top, catalogue)
    with pytest.raises(LabelError, match="above"):
        check_within(body, tearline, catalogue)
    jpn = SecurityLabel("JPN", "秘", frozenset({"KOR"}), "threat-assessment", frozenset(), T)
    with pytest.raises(LabelError):
        banner([tearline, jpn], catalogue)
