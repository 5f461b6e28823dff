"""Following a consumer's stream in a test: its batches into a queue, read with every wait bounded;
and a node served over the network to follow it from."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn

from gsomia.api import create_app
from gsomia.demo.network import free_port
from gsomia.node import Node, init_node_dir
from gsomia.node._service import system_clock
from gsomia.stream import NatsBus


def serve_node(directory: Path) -> Iterator[tuple[Node, str]]:
    """A JPN node in ``directory`` served by uvicorn from a thread (its whole API, on the real
    clock), and its base URL; for a fixture's ``yield from``."""
    node = Node(init_node_dir(directory, "JPN", None), clock=system_clock)
    port = free_port()
    config = uvicorn.Config(
        create_app(node), host="127.0.0.1", port=port, log_level="warning", lifespan="on",
        ws_per_message_deflate=False, timeout_graceful_shutdown=2,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    until = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < until, "the node did not start serving"
        assert thread.is_alive(), "the node's server stopped"
        time.sleep(0.02)
    try:
        yield node, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        node.close()


async def pump(stream: AsyncIterator[list[bytes]], queue: asyncio.Queue[list[bytes] | BaseException]) -> None:
    """The stream into ``queue`` (a wait on the queue may time out; one on the stream would end it)."""
    try:
        async for batch in stream:
            await queue.put(batch)
    except Exception as exc:
        await queue.put(exc)


async def collect(queue: asyncio.Queue[list[bytes] | BaseException], seconds: float) -> list[str]:
    """The track ids the stream gives for ``seconds`` (each wait bounded); what ended it, raised."""
    got: list[str] = []
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        try:
            batch = await asyncio.wait_for(queue.get(), left)
        except TimeoutError:
            break
        if isinstance(batch, BaseException):
            raise batch
        got += [orjson.loads(t)["track_id"] for t in batch]
    return got


NATS_URL = os.environ.get("GSOMIA_TEST_NATS_URL", "nats://127.0.0.1:4222")


def nats_bus(**options: Any) -> NatsBus:
    """A NATS JetStream bus of its own (a unique stream, deleted on close); the test skipped when NATS
    is absent, failed under ``GSOMIA_REQUIRE_SERVICES=1``."""
    host, port = NATS_URL.rsplit("//", 1)[1].split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            pass
    except OSError as exc:
        if os.environ.get("GSOMIA_REQUIRE_SERVICES") == "1":
            pytest.fail(f"NATS is required (GSOMIA_REQUIRE_SERVICES=1) but absent at {NATS_URL}: {exc}")
        pytest.skip(f"NATS absent at {NATS_URL}: {exc}")
    return NatsBus(NATS_URL, ephemeral=True, **options)
