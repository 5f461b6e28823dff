"""What a second process of JPN's node does in tests/security/test_envelope_downgrade.py: it opens the
node on the same store, at the test's instant, and receives the envelopes it is given (a module of
its own: a spawned process imports it, not the test module)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from gsomia.node import Node, load_config
from gsomia.testing import FakeClock


def receive_as(directory: str, at: str, texts: list[str], source: str, out: Any) -> None:
    """``texts`` received by a node opened on ``directory`` at ``at``; the answers put on ``out``."""
    try:
        node = Node(load_config(Path(directory)), clock=FakeClock(datetime.fromisoformat(at)))
        try:
            out.put(("answers", node.exchange.receive(texts, source=source)))
        finally:
            node.close()
    except BaseException as exc:  # the test fails with it, not with a timeout
        out.put(("error", repr(exc)))
