"""What the attack suite shares: real node processes on loopback, a consumer, a hostile hub.

Every attack here is mounted the way an adversary would: against node processes started with
``gsomia node serve``, over real HTTP and WebSocket connections, with the keys the adversary
would hold (a hostile hub holds its own node's key ring and nothing of anyone else's).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.reliability.processes import serve, stop
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import Server, ServerConnection
from websockets.sync.server import serve as ws_serve

from gsomia.crypto.envelope import seal
from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.demo.network import NetNode, build
from gsomia.node import Node
from gsomia.stream._link import CONSENT, LinkSession, accept, initiate


def _without_events(name: str, drop: set[str]) -> str:
    text = (files("gsomia") / "data" / "agreements" / name).read_text(encoding="utf-8")
    head, *blocks = text.split("[[agreement.events]]")
    return head + "".join(
        "[[agreement.events]]" + b for b in blocks if not any(f'id = "{e}"' in b for e in drop)
    )


def tisa_only(directory: Path, database_urls: dict[str, str] | None = None) -> list[NetNode]:
    """A three-nation network where KOR reaches JPN only through the USA hub (TISA): GSOMIA ended in
    2019 (no suspension, no withdrawal) and no 2023 arrangement. Built, not started; a party named
    in ``database_urls`` on that store (PostgreSQL)."""
    extra = directory / "what-if"
    extra.mkdir(parents=True)
    (extra / "kor-jpn-gsomia-2016.toml").write_text(
        _without_events(
            "kor-jpn-gsomia-2016.toml", {"2019-11-22-notice-suspended", "2023-03-21-notes-withdrawn"}
        ),
        encoding="utf-8",
    )
    (extra / "trilateral-missile-warning-2023.toml").write_text(
        _without_events("trilateral-missile-warning-2023.toml", {"2023-12-19-operational"}), encoding="utf-8"
    )
    members = build(directory / "net", database_urls=database_urls)
    for member in members:
        config = member.directory / "node.toml"
        text = config.read_text(encoding="utf-8")
        config.write_text(
            text.replace("data_dirs = []", f"data_dirs = [{json.dumps(str(extra))}]"), encoding="utf-8"
        )
    return members


def tokens(member: NetNode) -> dict[str, str]:
    data: dict[str, str] = json.loads((member.directory / "tokens.json").read_text(encoding="utf-8"))
    return data


def ring(member: NetNode) -> KeyRing:
    """The node's own key ring, as its store holds it (what an adversary with its files would hold)."""
    node = Node.open(member.directory, migrate=False)
    return node.ring


def identity(member: NetNode) -> PeerIdentity:
    """The member's identity as it publishes it: signed, and checked with the keys it names."""
    signed = httpx.get(f"{member.endpoint}/identity", timeout=10).json()
    return PeerIdentity.from_signed(signed, datetime.now(UTC))


def audit(member: NetNode, kind: str) -> list[dict[str, Any]]:
    """The node's audit records of ``kind``, read through its API by its administrator."""
    response = httpx.get(
        f"{member.endpoint}/audit/log",
        params={"kind": kind, "limit": 1000},
        headers={"Authorization": f"Bearer {tokens(member)['admin']}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return list(response.json())


def until(check: Any, what: str, seconds: float = 30) -> Any:
    """What ``check()`` returns once it is truthy, polled every 0.1 s; the test fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"never: {what}")


def operator(*args: str) -> str:
    """An operator's ``gsomia`` command, in its own process beside the serving nodes: its output."""
    done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "gsomia", *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def forged_item(holder: Node, recipient: str, item_id: str, *, agreement: str, classification: str) -> str:
    """An item envelope for ``recipient`` made with ``holder``'s key ring (what whoever holds that
    node's keys can make, a leaked key among them): the item is ingested at ``holder``'s node and
    sealed as its exchange would, under ``agreement``."""
    now = holder.clock()
    label = {
        "originator": holder.party,
        "classification": classification,
        "releasable_to": [recipient],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": now.isoformat(),
    }
    holder.items.ingest(None, label=label, payload=b'{"report": "leaked key"}', item_id=item_id)
    body = {
        "kind": "item",
        "origin": holder.exchange.origin_jws(item_id),
        "purpose": "threat-assessment",
        "agreement": agreement,
        "route": {"sender": holder.party, "via": [], "recipient": recipient},
        "consents": [],
    }
    peer = holder.exchange.peer(recipient)
    assert peer is not None
    return seal(holder.ring, peer, body, msg_id=uuid.uuid4().hex, at=now, ttl=timedelta(hours=1))


def deliver(member: NetNode, envelope: str) -> dict[str, Any]:
    """What ``member``'s inbox answers one envelope: its result (``status``, ``receipt``, ``reason``)."""
    response = httpx.post(f"{member.endpoint}/inbox", json={"envelopes": [envelope]}, timeout=30)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["results"][0]
    return result


def post(member: NetNode, path: str, body: Any, who: str = "officer") -> httpx.Response:
    return httpx.post(
        f"{member.endpoint}{path}",
        json=body,
        headers={"Authorization": f"Bearer {tokens(member)[who]}"},
        timeout=10,
    )


class Processes:
    """Some members of a built network served as processes; stopped on exit."""

    def __init__(self, *members: NetNode, sender: bool = False) -> None:
        self.running = [serve(m, sender=sender) for m in members]

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.running:
            stop(process)


class Consumer:
    """A person following ``/stream/tracks/ws`` on a thread, collecting what the node sends them."""

    def __init__(self, member: NetNode, token: str) -> None:
        self.tracks: list[dict[str, Any]] = []
        self._url = member.endpoint.replace("http", "ws") + "/stream/tracks/ws"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(15), "the consumer did not connect"

    def _run(self) -> None:
        with connect(self._url, additional_headers=self._headers, open_timeout=10) as ws:
            self._ready.set()
            while not self._stop.is_set():
                try:
                    text = ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
                except ConnectionClosed:
                    return
                self.tracks.append(json.loads(text))

    def wait_for(self, count: int, seconds: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while len(self.tracks) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.tracks

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class HostileHub:
    """USA's link endpoint played by an adversary holding USA's key ring: it completes the Noise
    handshake with KOR as USA would and keeps every frame KOR sends it, opened."""

    member: NetNode
    peers: dict[str, PeerIdentity]
    frames: list[tuple[int, bytes]] = field(default_factory=list)
    _server: Server | None = None

    def __enter__(self) -> HostileHub:
        own = ring(self.member)

        def handler(ws: ServerConnection) -> None:
            first = ws.recv(timeout=10)
            assert isinstance(first, bytes)
            answer, session = accept(own, self.peers.get, first, datetime.now(UTC))
            ws.send(answer)
            try:
                for data in ws:
                    assert isinstance(data, bytes)
                    frame = session.open(data)
                    if frame is not None:
                        self.frames.append((frame.kind, frame.body))
            except ConnectionClosed:
                return

        self._server = ws_serve(handler, "127.0.0.1", self.member.port, compression=None)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()

    def first(self, kind: int, seconds: float = 20) -> bytes:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for got, body in list(self.frames):
                if got == kind:
                    return body
            time.sleep(0.02)
        raise AssertionError(f"KOR sent the hub no frame of type {kind} within {seconds} s")


@contextmanager
def open_link(attacker: KeyRing, target: NetNode) -> Iterator[tuple[ClientConnection, LinkSession]]:
    """A link to ``target`` opened with the attacker's own (genuine) keys."""
    first, finish = initiate(attacker, identity(target), datetime.now(UTC))
    url = target.endpoint.replace("http", "ws") + "/stream/link"
    with connect(url, compression=None, open_timeout=10) as ws:
        ws.send(first)
        answer = ws.recv(timeout=10)
        assert isinstance(answer, bytes)
        yield ws, finish(answer)


def send_frames(
    attacker: KeyRing,
    target: NetNode,
    frames: list[tuple[int, bytes]],
    *,
    wait: float = 60.0,
) -> tuple[int | None, str]:
    """Open a link, send each (type, body), and return how the target closed it (code, reason),
    or ``(None, "kept open")`` if it had not within ``wait`` seconds. A refusal returns as soon as
    it comes, so the default wait is long: a node slowed by a loaded machine still refuses in it.
    A caller that expects the link kept open passes a short ``wait``, below the node's deadlines."""
    with open_link(attacker, target) as (ws, session):
        try:
            for kind, body in frames:
                for wire in session.seal(kind, body, time.monotonic()):
                    ws.send(wire)
            ws.recv(timeout=wait)
        except ConnectionClosed as exc:
            received = exc.rcvd
            return (received.code, received.reason) if received else (None, "")
        except TimeoutError:
            return None, "kept open"
    return None, "kept open"


__all__ = [
    "CONSENT",
    "Consumer",
    "HostileHub",
    "Processes",
    "audit",
    "deliver",
    "forged_item",
    "identity",
    "open_link",
    "operator",
    "post",
    "ring",
    "send_frames",
    "tisa_only",
    "tokens",
]
