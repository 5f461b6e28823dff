"""Adversarial review of issue 18's kept reads (people kept per process, the store's kept page and
by-name SELECTs): a reader whose clearance another process of the node lowered reads nothing above
it here, by reference, by name or in a page, within the watch interval; and what was read before is
not served again from a kept decision."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.node_fixtures import analyst, received_from_kor

from gsomia._codec import canonical, person_to_dict
from gsomia.errors import AccessDenied, NotFoundError
from gsomia.kernel import DEFAULT_INTERVAL
from gsomia.node import Node
from gsomia.store import ItemFilter
from gsomia.testing import FakeClock, make_node

NOW = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def two(tmp_path: Path, store_url: str) -> Iterator[tuple[Node, Node]]:
    """Two processes of one JPN node over the same directory and store."""
    clock = FakeClock(NOW)
    first = make_node(tmp_path / "jpn", "JPN", database_url=store_url, clock=clock)
    second = Node.open(tmp_path / "jpn", clock=clock)
    analyst(first)
    yield first, second
    first.close()
    second.close()


def test_a_clearance_lowered_in_another_process_stops_every_read_path_here(two: tuple[Node, Node]) -> None:
    serving, operator = two
    for n in (1, 2):
        received_from_kor(serving, f"clr-{n}")

    def page() -> list[str]:
        found = serving.items.list_items(serving.people.person("reader"), ItemFilter(originator="KOR"))
        return [i.id for i in found.items]

    reader = serving.people.person("reader")
    assert serving.items.read(reader, "clr-1")[0].id == "clr-1"
    assert serving.items.read_named(reader, "clr-2")[0].id == "clr-2"
    assert page() == ["clr-1", "clr-2"]

    lowered = replace(operator.people.person("reader"), clearance="秘")  # below 極秘, the level held
    assert operator.kernel.store.update_person("reader", canonical(person_to_dict(lowered)), 0)
    time.sleep(DEFAULT_INTERVAL + 0.05)

    reader = serving.people.person("reader")
    assert reader.clearance == "秘"  # the record kept before is read again
    for call in (
        lambda: serving.items.read(reader, "clr-1"),
        lambda: serving.items.read_named(reader, "clr-2"),
        lambda: serving.items.read_named(reader, "clr-1", "KOR"),
    ):
        with pytest.raises((AccessDenied, NotFoundError)):
            call()
    assert page() == []
