"""Fixtures of the reliability suite (its summary tables are printed by tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.reliability.livenet import LiveNet, live_net


@pytest.fixture(scope="module")
def shared_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNet]:
    """One network for a whole module (its tests use their own item ids and put the clock back)."""
    yield from live_net(tmp_path_factory.mktemp("net"))
