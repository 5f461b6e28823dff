"""Adversarial review of the held label remembered per (label, sender, agreement, instant,
preference) (issue 18, the stream's receive path): the label held for one agreement or sender is
never the answer for another, and a label this node may not hold under one agreement is refused
whatever was remembered for another."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.node_fixtures import missile_label

from gsomia.errors import LabelError
from gsomia.node import Node
from gsomia.testing import FakeClock, make_node

GSOMIA = "kor-jpn-gsomia-2016"
TRILATERAL = "trilateral-missile-warning-2023"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2024, 3, 1, tzinfo=UTC))


@pytest.fixture
def jpn(tmp_path: Path, clock: FakeClock) -> Iterator[Node]:
    node = make_node(tmp_path / "jpn", "JPN", clock=clock)
    yield node
    node.close()


def test_the_label_held_is_worked_out_per_agreement_and_sender(jpn: Node, clock: FakeClock) -> None:
    items = jpn.kernel.items
    label = missile_label(jpn.catalogue, datetime(2024, 1, 1, tzinfo=UTC))
    at = clock.now
    answers = {}
    for _ in range(2):  # asked again: remembered, the same answers
        for agreement in (GSOMIA, TRILATERAL):
            try:
                held = items.received_label(label, "KOR", agreement, at=at)
            except LabelError:
                answers[agreement] = None
                continue
            alternative = held.alternative_for("JPN")
            assert alternative is not None
            answers[agreement] = alternative.agreement
    assert answers[GSOMIA] == GSOMIA
    assert answers[TRILATERAL] == TRILATERAL  # its own agreement named, not the one remembered first
    # a sender this item may not come from: refused, though the same label was held from KOR
    with pytest.raises(LabelError):
        items.received_label(label, "USA", GSOMIA, at=at)
    assert items.received_label(label, "KOR", GSOMIA, at=at).alternative_for("JPN") is not None


def test_each_item_is_sealed_under_its_own_label_text(jpn: Node, clock: FakeClock) -> None:
    """The label's JSON is written once per label object sealed with (issue 18: a received batch's
    items share the label held for them); an equal label held apart, a different one, and a label
    after many others each get their own label's text, never the one written for another."""
    from dataclasses import replace

    from gsomia._codec import canonical, label_to_dict

    items = jpn.kernel.items
    first = missile_label(jpn.catalogue, datetime(2024, 1, 1, tzinfo=UTC))
    later = replace(first, created=datetime(2024, 1, 2, tzinfo=UTC))
    other = replace(first, purpose="early-warning")
    labels = [first, later, first, other, replace(first), later]
    labels += [replace(first, created=datetime(2024, 2, 1, second=n % 60, tzinfo=UTC)) for n in range(50)]
    for n, label in enumerate(labels):
        new = items.seal(f"k{n}", label, "json", b"{}", now=clock.now, by="test", origin="x.y.z")
        assert new.label == canonical(label_to_dict(label))
        assert jpn.kernel.cipher.open(new.id, new.label, new.payload) == b"{}"
