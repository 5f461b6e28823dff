"""A KOR/JPN/USA network in one process for the duties' exchange paths (the in-memory transport,
one shared clock)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gsomia.core.access import Person
from gsomia.demo import network
from gsomia.exchange import MemoryTransport
from gsomia.node import Node
from gsomia.testing import FakeClock

NOW = datetime(2024, 3, 1, tzinfo=UTC)
BEFORE_GSOMIA = datetime(2016, 11, 22, tzinfo=UTC)  # only TISA, through the US hub


@dataclass
class Net:
    nodes: dict[str, Node]
    members: list[network.NetNode]
    clock: FakeClock
    transport: MemoryTransport

    def officer(self, party: str) -> Person:
        return self.nodes[party].people.person("officer")

    def deliver(self, rounds: int = 8) -> list[Any]:
        done = []
        for _ in range(rounds):
            moved = [
                d for p in ("KOR", "USA", "JPN") for d in self.nodes[p].exchange.deliver_due(self.transport)
            ]
            done += moved
            if not moved:
                break
        return done

    def inbox(self, party: str, envelopes: list[str]) -> list[Any]:
        """What ``party``'s inbox answers ``envelopes`` (as POST /inbox does)."""
        identity = next(n.exchange.peer(party) for p, n in self.nodes.items() if p != party)
        assert identity is not None
        return self.transport.push(identity, envelopes)

    def audit(self, party: str, kind: str) -> list[dict[str, Any]]:
        return [
            {"outcome": r.outcome, "subject": r.subject, **json.loads(r.detail)}
            for r in self.nodes[party].store.audit(kind=kind)
        ]

    def own_item(self, party: str, item_id: str, **label: Any) -> None:
        scheme = {"KOR": "군사II급비밀", "JPN": "極秘", "USA": "SECRET"}
        data = {
            "originator": party,
            "classification": scheme[party],
            "releasable_to": [p for p in ("KOR", "JPN", "USA") if p != party],
            "purpose": "threat-assessment",
            "topics": ["dprk-missile"],
            "created": (self.clock.now - timedelta(hours=1)).isoformat(),
        }
        data.update(label)
        self.nodes[party].items.ingest(
            self.officer(party), label=data, payload=b'{"track": 1}', item_id=item_id
        )

    def person(self, party: str, pid: str, clearance: str | None, roles: list[str]) -> Person:
        return self.nodes[party].people.add_person(
            None,
            {
                "id": pid,
                "name": pid.title(),
                "nationality": party,
                "clearance": clearance,
                "need_to_know": ["dprk-missile"],
                "roles": roles,
            },
        )


def _net(tmp_path: Path, database_urls: dict[str, str] | None = None) -> Iterator[Net]:
    clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))  # keys made then, so the story can be replayed
    members = network.build(tmp_path / "net", clock=clock, database_urls=database_urls)
    clock.now = NOW
    nodes = network.open_nodes(members, clock)
    yield Net(nodes, members, clock, MemoryTransport(nodes))
    for node in nodes.values():
        node.close()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    """Three nodes on SQLite."""
    yield from _net(tmp_path)


@pytest.fixture
def net_any_store(tmp_path: Path, store_url: str) -> Iterator[Net]:
    """Three nodes; JPN's on SQLite and then on PostgreSQL (the ``store_url`` fixture)."""
    yield from _net(tmp_path, {"JPN": store_url})
