"""Nodes for tests: a JPN node with a cleared reader, an under-cleared one and an administrator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gsomia.api import create_app
from gsomia.core.access import Person
from gsomia.core.catalogue import Catalogue
from gsomia.core.labels import SecurityLabel
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


def analyst(node: Node, pid: str = "reader") -> Person:
    """A JPN analyst cleared 極秘 with need-to-know dprk-missile: reads KOR's Class II items (極秘 at JPN)."""
    return add(node, pid, "JPN", "極秘", ["dprk-missile"], ["analyst"])


def received_from_kor(node: Node, item_id: str, payload: bytes = b'{"track": 1}') -> None:
    """``item_id``, a KOR item (:func:`kor_label`) received from KOR under the GSOMIA, stored at ``node``."""
    node.items.ingest(
        None,
        label=kor_label(),
        payload=payload,
        item_id=item_id,
        received_from="KOR",
        agreement="kor-jpn-gsomia-2016",
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


def in_memory_network(directory: Path, at: datetime) -> Iterator[dict[str, Any]]:
    """KOR, the USA and JPN built in ``directory`` (their keys made in December 2014, so the story
    can be replayed) and opened in this process at ``at``, over the in-memory transport:
    ``{"nodes", "clock", "transport"}``, the nodes closed after (a fixture's body)."""
    from gsomia.demo import network
    from gsomia.exchange import MemoryTransport

    clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))
    members = network.build(directory, clock=clock)
    clock.now = at
    nodes = network.open_nodes(members, clock)
    try:
        yield {"nodes": nodes, "clock": clock, "transport": MemoryTransport(nodes)}
    finally:
        for node in nodes.values():
            node.close()


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


# --- the stream: labels of missile tracks, links on kept wires ---


def missile_label(
    catalogue: Catalogue,
    created: datetime,
    *,
    originator: str = "KOR",
    classification: str = "군사II급비밀",
    releasable_to: tuple[str, ...] = ("JPN", "USA"),
) -> SecurityLabel:
    """A missile-warning label (the stream's purpose and topic) checked by ``catalogue``."""
    return catalogue.label(
        originator=originator,
        classification=classification,
        releasable_to=list(releasable_to),
        purpose="missile-warning",
        topics=["dprk-missile"],
        created=created,
    )


class LinkWire:
    """A stream link's WebSocket that keeps what is sent on it; :func:`framed` opens it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.opened = 0  # how many of them the partner's side opened
        self.tracks: list[str] = []  # the update instants of the tracks in them

    async def send(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self) -> None:
        return None


def wire_links(
    service: Any, node: Node, partners: Mapping[str, Node], at: datetime
) -> dict[str, tuple[LinkWire, Any]]:
    """``service`` (a ``StreamService`` of ``node``) given an outbound link to each of ``partners``,
    opened at ``at`` by the real handshake, on a kept wire: each wire with the partner's side of its
    session, which opens what is framed on it (:func:`framed`)."""
    from gsomia.store import PEERS
    from gsomia.stream._link import BatchSigner, accept, initiate
    from gsomia.stream._service import _OutLink

    wires: dict[str, tuple[LinkWire, Any]] = {}
    for party, theirs in partners.items():
        peer = node.exchange.peer(party)
        assert peer is not None
        first, finish = initiate(node.ring, peer, at)
        answer, receiver = accept(theirs.ring, theirs.kernel.peers.peer, first, at)
        wire = LinkWire()
        generation = node.kernel.watch.generation(PEERS)
        signer = BatchSigner(node.ring, party)
        service._links[party] = _OutLink(wire, finish(answer), signer, "", generation)  # type: ignore[arg-type]
        wires[party] = (wire, receiver)
    return wires


async def started_with_links(
    node: Node, partners: Mapping[str, Node], at: datetime
) -> tuple[Any, dict[str, tuple[LinkWire, Any]]]:
    """A ``StreamService`` of ``node``, started, with an outbound link to each of ``partners`` opened at
    ``at`` (:func:`wire_links`): the service and its wires."""
    from gsomia.stream import StreamService

    service = StreamService(node)
    await service.start()
    return service, wire_links(service, node, partners, at)


def framed(wires: Mapping[str, tuple[LinkWire, Any]], sender: str = "KOR") -> dict[str, list[str]]:
    """The update instants of the tracks ``sender`` framed on each link so far (each partner's side
    opens every frame once, in order: what it opened is kept on the wire)."""
    import orjson

    from gsomia.stream._link import TRACKS
    from gsomia.stream._origin import decode_groups

    got: dict[str, list[str]] = {}
    for party, (wire, receiver) in wires.items():
        got[party] = wire.tracks
        for data in wire.sent[wire.opened :]:
            frame = receiver.open(data)
            if frame is not None and frame.kind == TRACKS:
                for group in decode_groups(frame.body, sender):
                    got[party] += [orjson.loads(e.message)["track"]["update_ts"] for e in group.entries]
        wire.opened = len(wire.sent)
    return got


async def framed_at_close(service: Any, wires: Mapping[str, tuple[LinkWire, Any]]) -> dict[str, list[str]]:
    """Once the frames of what ``service`` queued are made (a moment of its event loop): what each
    wire carried (:func:`framed`); then the service closed, its kept wires dropped first."""
    await asyncio.sleep(0.2)
    got = framed(wires)
    service._links.clear()
    await service.close()
    return got


def serving(app: FastAPI, script: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    """Run ``script`` against ``app`` once its start-up (the lifespan, with the background loops) is
    done, as uvicorn serves it."""

    async def run() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
                await script(client)

    asyncio.run(run())


# two JPN analysts with the same need-to-know: one cleared for 極秘, one only for 秘
JPN_ANALYSTS: tuple[dict[str, Any], ...] = (
    {
        "id": "reader",
        "name": "Reader",
        "nationality": "JPN",
        "clearance": "極秘",
        "need_to_know": ["dprk-missile"],
        "roles": ["analyst"],
    },
    {
        "id": "junior",
        "name": "Junior",
        "nationality": "JPN",
        "clearance": "秘",
        "need_to_know": ["dprk-missile"],
        "roles": ["analyst"],
    },
)


# what no answer to a caller may name: the store's statements, its drivers, a traceback
INTERNALS = ("SELECT", "[SQL", "psycopg", "sqlite", "sqlalchemy", "Traceback", "Internal Server Error")


def problem_detail(response: httpx.Response, status: int) -> str:
    """The ``detail`` of ``response``, asserted an RFC 9457 problem of ``status`` naming no internals."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert not any(word in response.text for word in INTERNALS), response.text
    return str(response.json()["detail"])
