"""The store under test, on each backend ``store_url`` names (SQLite, and PostgreSQL when it runs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gsomia.store import Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    s.migrate()
    yield s
    s.close()
