"""Nodes for tests: a JPN node with a cleared reader, an under-cleared one and an administrator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gsomia.api import create_app
from gsomia.core.access import Person
from gsomia.node import Node
from gsomia.testing import FakeClock, make_node


def kor_label(**kw: Any) -> dict[str, Any]:
    label: dict[str, Any] = {
        "originator": "KOR",
        "classification": "군사II급비밀",
        "releasable_to": ["JPN"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": "2024-02-01T09:00:00+09:00",
    }
    label.update(kw)
    return label


def jpn_label(**kw: Any) -> dict[str, Any]:
    return kor_label(**{"originator": "JPN", "classification": "極秘", "releasable_to": ["KOR"], **kw})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def kor_jpn(tmp_path: Path) -> Iterator[tuple[Node, Node, FakeClock]]:
    """A KOR and a JPN node on one fake clock, neither registered at the other yet."""
    shared = FakeClock()
    kor = make_node(tmp_path / "kor", "KOR", clock=shared)
    jpn = make_node(tmp_path / "jpn", "JPN", clock=shared)
    try:
        yield kor, jpn, shared
    finally:
        kor.close()
        jpn.close()


@pytest.fixture
def jpn_node(tmp_path: Path, store_url: str, clock: FakeClock) -> Iterator[Node]:
    node = make_node(tmp_path / "jpn", "JPN", database_url=store_url, clock=clock)
    yield node
    node.close()


def add(
    node: Node, pid: str, nationality: str, clearance: str | None, topics: list[str], roles: list[str]
) -> Person:
    return node.people.add_person(
        None,
        {
            "id": pid,
            "name": pid.title(),
            "nationality": nationality,
            "clearance": clearance,
            "need_to_know": topics,
            "roles": roles,
        },
    )


@pytest.fixture
def people(jpn_node: Node) -> dict[str, Person]:
    return {
        "tanaka": add(jpn_node, "tanaka", "JPN", "極秘", ["dprk-missile"], ["analyst"]),
        "sato": add(jpn_node, "sato", "JPN", "秘", ["dprk-missile"], ["analyst"]),
        "suzuki": add(jpn_node, "suzuki", "JPN", "特定秘密", ["prc-navy"], ["analyst"]),
        "general": add(jpn_node, "general", "JPN", "特定秘密", ["dprk-missile"], ["administrator"]),
        "admin": add(jpn_node, "admin", "JPN", None, [], ["administrator"]),
        "smith": add(jpn_node, "smith", "USA", "TOP SECRET", ["dprk-missile"], ["analyst"]),
    }


def refused_checks(node: Node, item_id: str, kind: str = "item.read") -> list[dict[str, Any]]:
    """The failed checks of the last refused ``kind`` of ``item_id``, as the audit records keep them:
    the reader is told only that there is no such item, the security officer reads why here."""
    rows = [r for r in node.store.audit() if (r.kind, r.outcome, r.subject) == (kind, "refused", item_id)]
    assert rows, f"no {kind} refusal of {item_id} in the audit records"
    return [c for c in json.loads(rows[-1].detail)["checks"] if not c["passed"]]


@pytest.fixture
def linked_kor_jpn(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    """A KOR and a JPN node on one fake clock (1 March 2024, KST), each registered at the other under
    the GSOMIA, with each recipient's assurance on file (Art. 7(5))."""
    from tests.conftest import kst

    from gsomia.demo import network

    shared = FakeClock(kst(2024, 3, 1))
    kor, jpn = (
        make_node(tmp_path / "kor", "KOR", clock=shared),
        make_node(tmp_path / "jpn", "JPN", clock=shared),
    )
    kor.exchange.register_peer(None, jpn.exchange.identity(), ["kor-jpn-gsomia-2016"])
    jpn.exchange.register_peer(None, kor.exchange.identity(), ["kor-jpn-gsomia-2016"])
    network.assure({"KOR": kor, "JPN": jpn})
    try:
        yield kor, jpn
    finally:
        kor.close()
        jpn.close()


def assured(node: Node, directory: Path, *parties: str) -> None:
    """Art. 7(5): the assurances ``parties`` gave under their agreements with ``node``'s party, on
    file at ``node`` as the demo network has them (each party's own node signs; made, then closed)."""
    from gsomia.demo import network

    partners = {p: make_node(directory / f"assuring-{p.lower()}", p) for p in parties}
    try:
        for party, partner in partners.items():
            shared = [a.id for a in node.catalogue.agreements_of(node.party) if party in a.parties]
            node.exchange.register_peer(None, partner.exchange.identity(), shared)
        network.assure({node.party: node, **partners})
    finally:
        for partner in partners.values():
            partner.close()


def app_caller(node: Node, **base: str) -> Callable[..., httpx.Response]:
    """``do(method, url, token=None, **httpx arguments)`` through the real app over ``node``, one
    request at a time; ``base`` headers on each (a request's own ``headers`` and token over them)."""
    app = create_app(node)

    def do(method: str, url: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {**base, **kwargs.pop("headers", {})}
        if token:
            headers["Authorization"] = f"Bearer {token}"

        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
                return await client.request(method, url, headers=headers, **kwargs)

        return asyncio.run(run())

    return do


def through_app(node: Node, requests: list[tuple[str, str, str, dict[str, Any]]]) -> list[httpx.Response]:
    """(source address, method, path, httpx arguments) each, through the real app, in order."""
    app = create_app(node)

    async def run() -> list[httpx.Response]:
        out = []
        clients: dict[str, httpx.AsyncClient] = {}
        try:
            for source, method, path, kwargs in requests:
                if source not in clients:
                    transport = httpx.ASGITransport(app=app, client=(source, 40000))
                    clients[source] = httpx.AsyncClient(transport=transport, base_url="http://node")
                out.append(await clients[source].request(method, path, **kwargs))
        finally:
            for client in clients.values():
                await client.aclose()
        return out

    return asyncio.run(run())
