"""JPN's node on a fixed clock and a JPN analyst: what the stream's consumer tests start from."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from gsomia.core.access import Person
from gsomia.node import Node
from gsomia.testing import FakeClock, make_node

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def jpn_node(tmp_path: Path) -> Iterator[Node]:
    """JPN's node at ``NOW``, closed when the test is done (a fixture's body: ``yield from``)."""
    node = make_node(tmp_path / "jpn", "JPN", clock=FakeClock(NOW))
    yield node
    node.close()


def analyst(node: Node, person_id: str, clearance: str) -> Person:
    """A JPN analyst of ``clearance`` with a need to know of DPRK missiles, added to ``node``."""
    return node.people.add_person(
        None,
        {"id": person_id, "name": person_id, "nationality": "JPN", "clearance": clearance,
         "need_to_know": ["dprk-missile"], "roles": ["analyst"]},
    )  # fmt: skip
