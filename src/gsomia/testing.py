"""Helpers for testing against gsomia: a fake clock and ready-made nodes.

Public, so others can test their integrations the way gsomia tests itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from gsomia.node import Node, init_node_dir

__all__ = ["FakeClock", "make_node"]


class FakeClock:
    """A clock that only moves when told: ``clock()`` returns the current fake instant."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2024, 3, 1, tzinfo=UTC)
        if self.now.utcoffset() is None:
            raise ValueError("FakeClock needs an aware start instant")

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move forward, e.g. ``clock.advance(days=31)``."""
        self.now += timedelta(**delta)
        return self.now


def make_node(
    directory: Path, party: str, *, database_url: str | None = None, clock: FakeClock | None = None
) -> Node:
    """Initialise a node directory for ``party`` and open it (migrated, ready)."""
    config = init_node_dir(directory, party, database_url)
    return Node(config, clock=clock or FakeClock())
