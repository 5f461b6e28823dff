"""The presenter's views (gsomia._present): a label's JSON written once per label object (issue 18)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from gsomia import _present
from gsomia._codec import label_to_dict
from gsomia._present import item_view
from gsomia.core.labels import SecurityLabel
from gsomia.kernel import Item

AT = datetime(2024, 3, 1, tzinfo=UTC)
LABEL = SecurityLabel("KOR", "군사II급비밀", frozenset({"JPN"}), "threat-assessment", frozenset({"x"}), AT)


def _item(label: SecurityLabel, item_id: str = "i-1") -> Item:
    return Item(item_id, label, "KOR", "kor-jpn-gsomia-2016", AT, "officer", "json", 12, 1, None, (), None)


def test_each_label_object_is_written_as_label_to_dict_writes_it() -> None:
    """Labels equal in all but one part, or equal but distinct objects: each view is its own label's."""
    others = [
        LABEL,
        replace(LABEL),  # equal, another object
        replace(LABEL, created=datetime(2024, 3, 2, tzinfo=UTC)),
        replace(LABEL, classification="군사III급비밀"),
        replace(LABEL, releasable_to=frozenset({"JPN", "USA"})),
        replace(LABEL, topics=frozenset({"y", "x"})),
        replace(LABEL, caveats=frozenset({"NOFORN"}), releasable_to=frozenset()),
    ]
    for _ in range(2):  # the second time from the memo
        for label in others:
            assert item_view(_item(label))["label"] == label_to_dict(label)


def test_items_sharing_a_label_object_share_its_view() -> None:
    first, second = item_view(_item(LABEL, "a")), item_view(_item(LABEL, "b"))
    assert first["label"] is second["label"]
    assert (first["id"], second["id"]) == ("a", "b")


def test_the_memo_is_bounded() -> None:
    for n in range(_present._LABEL_VIEWS_LIMIT + 10):
        label = replace(LABEL, topics=frozenset({f"t{n}"}))
        assert item_view(_item(label))["label"]["topics"] == [f"t{n}"]
        assert len(_present._LABEL_VIEWS) <= _present._LABEL_VIEWS_LIMIT
