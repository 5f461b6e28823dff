"""Batches through ``Node.items.ingest_many``: the ids the node names, and a batch refused whole."""

from __future__ import annotations

import uuid

from tests.node_fixtures import jpn_label

from gsomia.core.instants import epoch_us
from gsomia.node import NewIngest, Node
from gsomia.testing import FakeClock


def test_the_ids_the_node_names_are_uuid7s_of_its_clock_each_its_own(
    jpn_node: Node, clock: FakeClock
) -> None:
    # time-ordered ids (their unique indexes grow at one edge, issue 18) that no one guesses
    made: list[str] = []
    for _ in range(3):
        at_ms = epoch_us(clock()) // 1000
        batch = jpn_node.items.ingest_many(None, [NewIngest(jpn_label(), b"{}") for _ in range(300)])
        for item in batch:
            parsed = uuid.UUID(item.id)
            assert str(parsed) == item.id
            assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
            assert parsed.int >> 80 == at_ms
        made += [i.id for i in batch]
        clock.advance(milliseconds=3)
    assert len(set(made)) == len(made) == jpn_node.store.count_items()
    assert [m[:13] for m in made] == sorted(m[:13] for m in made)  # the instant first: in clock order
    random_bits = {uuid.UUID(m).int & ((1 << 74) - 1) for m in made}
    assert len(random_bits) == len(made)
    # an id given is kept as given
    (given,) = jpn_node.items.ingest_many(None, [NewIngest(jpn_label(), b"{}", item_id="report-7")])
    assert given.id == "report-7"
