"""What a node audited of a kind counted in bounded space (the kernel's tally): its records of their
own and the exact count, once the window is closed (``NodeContext.tally``)."""

from __future__ import annotations

import json
from typing import Any

from gsomia.node import Node
from gsomia.testing import FakeClock


def tallied(node: Node, clock: FakeClock, kind: str) -> tuple[list[dict[str, Any]], int]:
    """The records of their own of ``kind`` (their detail, with ``actor`` and ``subject``) and how many
    were audited in all: those records and what the closed ``refusal.tally`` records counted beyond
    them. Closes the current window first (``clock`` moves on a minute)."""
    clock.advance(seconds=61)
    node.kernel.close_refusal_tallies()
    own = [
        {"actor": r.actor, "subject": r.subject, **json.loads(r.detail)}
        for r in node.store.audit(kind=kind, limit=1_000_000)
    ]
    beyond = 0
    for row in node.store.audit(kind="refusal.tally", limit=1_000_000):
        if row.subject == kind:
            detail = json.loads(row.detail)
            beyond += int(detail["count"]) - int(detail.get("recorded", 0))
    return own, len(own) + beyond
