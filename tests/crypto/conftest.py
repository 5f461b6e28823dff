"""Fixtures of the crypto tests."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from joserfc.errors import SecurityWarning


@pytest.fixture(autouse=True)
def _quiet_eddsa_deprecation() -> Iterator[None]:
    """joserfc warns on every EdDSA use when driven directly (as the crafting helpers and the
    reference readers do)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SecurityWarning, message="EdDSA is deprecated")
        yield
