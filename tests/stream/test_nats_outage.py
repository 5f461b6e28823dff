"""The stream survives a NATS outage (issue 15 §4), against a REAL nats-server this test starts and
stops on a free port of its own (never the shared one on 4222).

While NATS is away the bus holds tracks up to its bound and publishes them, in order, when NATS is
back; past the bound a publish is refused (503 over HTTP, a problem document), never a 500.
/healthz says the bus's state. A consumer resumes where it was: the bus's subscription reopens
after the last message it delivered, and an SSE client resumes with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gsomia.api import create_app
from gsomia.errors import UnavailableError
from gsomia.stream import NatsBus, StreamService
from gsomia.testing import make_node

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnNats:
    """A nats-server with JetStream on a free loopback port, its store in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - the system's nats-server, fixed arguments
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                assert time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[OwnNats]:
    if not os.path.exists(NATS_SERVER):
        if os.environ.get("GSOMIA_REQUIRE_SERVICES") == "1":
            pytest.fail("nats-server is required (GSOMIA_REQUIRE_SERVICES=1) but not installed")
        pytest.skip("nats-server is not installed")
    server = OwnNats(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


async def _until(condition: Any, seconds: float = 60.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds:g} s"
        await asyncio.sleep(0.05)


async def _outage(nats: OwnNats, *, rate_per_s: float, limit: int, until: str) -> dict[str, Any]:
    """Publish at ``rate_per_s`` while NATS is stopped, and start it again once ``until`` holds:
    ``"held"`` (at least 20 tracks waited for NATS in the bus) or ``"refused"`` (a publish was
    refused past the bound). The outage lasts as long as that takes, not a fixed time: a publish
    in flight when NATS went away blocks for its timeout, and a loaded machine publishes slowly,
    so a fixed outage could end before either happened."""
    bus = NatsBus(nats.url, ephemeral=True, buffer_limit=limit, reconnect_wait_s=0.2)
    await bus.start()
    assert bus.health()["state"] == "connected"
    consumer = await bus.subscribe()
    received: list[tuple[int, bytes]] = []

    async def consume() -> None:
        async for seq, message in consumer:
            received.append((seq, message))

    reading = asyncio.create_task(consume())
    published: list[bytes] = []
    refused = [0]
    stop = asyncio.Event()

    async def publish() -> None:
        n = 0
        while not stop.is_set():
            message = b"t%d" % n
            try:
                await bus.publish(message)
                published.append(message)
            except UnavailableError:
                refused[0] += 1
            n += 1
            await asyncio.sleep(1 / rate_per_s)

    publishing = asyncio.create_task(publish())
    await _until(lambda: len(published) >= 5, what="publishing before the outage")
    await asyncio.to_thread(nats.stop)
    await _until(lambda: bus.health()["state"] != "connected", what="the bus seeing NATS gone")
    states = {bus.health()["state"]}
    if until == "held":
        await _until(lambda: bus.health()["buffered"] >= 20, what="tracks waiting for NATS")
    else:
        await _until(lambda: refused[0] > 0, what="a publish refused past the bound")
    held = bus.health()["buffered"]
    await asyncio.to_thread(nats.start)
    await _until(lambda: bus.health()["state"] == "connected", what="the bus reconnecting")
    after = len(published)
    await _until(lambda: len(published) >= after + 5, what="publishing after the outage")
    stop.set()
    await publishing
    await _until(lambda: len(received) >= len(published), what="every accepted track arriving")
    await consumer.close()
    reading.cancel()
    await asyncio.gather(reading, return_exceptions=True)
    health = bus.health()
    await bus.close()
    return {
        "published": published,
        "received": [m for _, m in received],
        "seqs": [s for s, _ in received],
        "refused": refused[0],
        "held": held,
        "states": states,
        "health": health,
    }


def test_tracks_published_during_an_outage_arrive_once_in_order_when_nats_is_back(nats: OwnNats) -> None:
    got = asyncio.run(_outage(nats, rate_per_s=200, limit=100_000, until="held"))
    assert got["states"] <= {"reconnecting", "down"}
    assert got["held"] >= 20  # tracks really waited for NATS
    assert got["refused"] == 0
    assert got["received"] == got["published"]  # every one, once, in order
    assert got["seqs"] == sorted(got["seqs"])
    assert got["health"]["buffered"] == 0


def test_past_the_bound_a_publish_is_refused_not_lost_silently(nats: OwnNats) -> None:
    got = asyncio.run(_outage(nats, rate_per_s=200, limit=5, until="refused"))
    assert got["refused"] > 0  # said so to the publisher (503 over HTTP)
    assert got["held"] == 5  # the bound filled, never more
    assert got["received"] == got["published"]  # what was accepted arrived, in order


def test_a_consumer_resumes_after_the_last_message_it_saw(nats: OwnNats) -> None:
    async def run() -> list[bytes]:
        bus = NatsBus(nats.url, ephemeral=True, reconnect_wait_s=0.2)
        await bus.start()
        for n in range(10):
            await bus.publish(b"m%d" % n)
        first = await bus.subscribe(after=0)
        seen: list[tuple[int, bytes]] = []
        async for seq, message in first:
            seen.append((seq, message))
            if len(seen) == 4:
                break
        await first.close()
        resumed = await bus.subscribe(after=seen[-1][0])  # what an SSE client's Last-Event-ID says
        rest: list[bytes] = []
        async for _, message in resumed:
            rest.append(message)
            if len(rest) == 6:
                break
        await resumed.close()
        await bus.close()
        return [m for _, m in seen] + rest

    assert asyncio.run(run()) == [b"m%d" % n for n in range(10)]


def test_over_http_an_outage_is_a_503_problem_and_healthz_says_so(nats: OwnNats, tmp_path: Path) -> None:
    node = make_node(tmp_path / "kor", "KOR")
    node.add_person(
        None,
        {"id": "officer", "name": "O", "nationality": "KOR", "clearance": "군사II급비밀",
         "need_to_know": ["dprk-missile"], "roles": ["release_officer", "analyst"]},
    )  # fmt: skip
    token = node.issue_token(None, "officer")[1]
    bus = NatsBus(nats.url, ephemeral=True, buffer_limit=3, reconnect_wait_s=0.2)
    app = create_app(node, stream=StreamService(node, bus))
    track = {
        "track_id": "t-1",
        "update_ts": "2024-02-29T23:59:10+00:00",
        "launch": {"lat": 39.4, "lon": 127.5, "time": "2024-02-29T23:59:00+00:00"},
        "points": [
            {
                "t": "2024-02-29T23:59:05+00:00",
                "lat": 39.41,
                "lon": 127.6,
                "alt_m": 9000.0,
                "speed_mps": 800.0,
            }
        ],
        "missile_class": "SRBM",
        "quality": 0.9,
        "final": False,
    }

    async def run() -> list[tuple[int, Any]]:
        out: list[tuple[int, Any]] = []
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            headers = {"Authorization": f"Bearer {token}"}
            await app.state.stream.start()
            health = (await client.get("/healthz")).json()
            out.append((0, health))
            await asyncio.to_thread(nats.stop)
            await _until(lambda: bus.health()["state"] != "connected")
            out.append((0, (await client.get("/healthz")).json()))
            for n in range(6):
                body = {**track, "track_id": f"t-{n}"}
                response = await client.post("/stream/tracks", json=body, headers=headers)
                out.append((response.status_code, response.json() if response.content else None))
            await asyncio.to_thread(nats.start)
            await _until(lambda: bus.health()["state"] == "connected" and bus.health()["buffered"] == 0)
            out.append((0, (await client.get("/healthz")).json()))
            await app.state.stream.close()
        return out

    results = asyncio.run(run())
    node.close()
    assert results[0][1]["status"] == "ok"
    assert results[1][1]["status"] == "degraded"
    assert results[1][1]["bus"]["state"] in ("reconnecting", "down")
    statuses = [status for status, _ in results[2:8]]
    assert 500 not in statuses
    assert statuses.count(503) >= 1, results
    refusal = next(body for status, body in results[2:8] if status == 503)
    assert refusal["type"] == "urn:gsomia:problem:service-unavailable"
    assert "buffer" in refusal["detail"]
    assert results[-1][1]["status"] == "ok"
