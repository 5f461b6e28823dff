"""Shared by the reliability suite: a three-nation network served on loopback, and items to send."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from gsomia.core.access import Person
from gsomia.demo import network
from gsomia.node import Node
from gsomia.testing import FakeClock

# Tables the suite prints in pytest's terminal summary (see conftest.py): (title, lines).
SUMMARIES: list[tuple[str, list[str]]] = []

KEYS_MADE = datetime(2014, 12, 1, tzinfo=UTC)  # before every agreement in the story
NOW = datetime(2024, 3, 1, tzinfo=UTC)
SCHEME = {"KOR": "군사II급비밀", "JPN": "極秘", "USA": "SECRET"}


@dataclass
class LiveNet:
    """Three in-process nodes on one fake clock, each serving its API on a loopback port."""

    nodes: dict[str, Node]
    members: list[network.NetNode]
    clock: FakeClock
    client: httpx.Client

    def officer(self, party: str) -> Person:
        return self.nodes[party].people.person("officer")

    def endpoint(self, party: str) -> str:
        return next(m.endpoint for m in self.members if m.party == party)

    def post_inbox(self, party: str, envelopes: list[str]) -> httpx.Response:
        return self.client.post(f"{self.endpoint(party)}/inbox", json={"envelopes": envelopes})

    def audit(self, party: str, kind: str) -> list[dict[str, Any]]:
        return [
            {"outcome": r.outcome, "subject": r.subject, **json.loads(r.detail)}
            for r in self.nodes[party].store.audit(kind=kind)
        ]

    def own_item(self, party: str, item_id: str, **label: Any) -> None:
        data = {
            "originator": party,
            "classification": SCHEME[party],
            "releasable_to": [p for p in ("KOR", "JPN", "USA") if p != party],
            "purpose": "threat-assessment",
            "topics": ["dprk-missile"],
            "created": (self.clock.now - timedelta(hours=1)).isoformat(),
            **label,
        }
        self.nodes[party].items.ingest(
            self.officer(party), label=data, payload=b'{"track": 1}', item_id=item_id
        )


def live_net(directory: Path) -> Iterator[LiveNet]:
    clock = FakeClock(KEYS_MADE)
    members = network.build(directory, clock=clock)
    clock.now = NOW
    nodes = network.open_nodes(members, clock)
    try:
        with httpx.Client(timeout=10) as client, network.serve_in_threads(nodes, members):
            yield LiveNet(nodes, members, clock, client)
    finally:
        for node in nodes.values():
            node.close()
