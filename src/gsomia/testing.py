"""Helpers for testing against gsomia: a fake clock and ready-made nodes.

Public, so others can test their integrations the way gsomia tests itself.
"""

from __future__ import annotations

from pathlib import Path

from gsomia.kernel import ManualClock
from gsomia.node import Node, init_node_dir

__all__ = ["FakeClock", "make_node"]

FakeClock = ManualClock
"""A clock that only moves when told: ``clock()`` returns the current fake instant (the kernel's)."""


def make_node(
    directory: Path, party: str, *, database_url: str | None = None, clock: FakeClock | None = None
) -> Node:
    """Initialise a node directory for ``party`` and open it (migrated, ready)."""
    config = init_node_dir(directory, party, database_url)
    return Node(config, clock=clock or FakeClock())
