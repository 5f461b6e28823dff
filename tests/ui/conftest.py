"""The dashboard is a shell over the node: its tests run on SQLite only (store parity: tests/store)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"
