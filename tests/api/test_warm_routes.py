"""The routes are matched once before a node serves, so the first request after start-up does not
build them on the event loop (where every stream track of the node would wait it out), and that
start-up match leaves no trace: nothing answers its path, nothing is audited or counted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, routing
from tests.node_fixtures import serving

from gsomia.api import create_app
from gsomia.api._app import WARM_PATH
from gsomia.node import Node
from gsomia.testing import make_node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path / "node", "KOR")
    yield made
    made.close()


async def _websocket(app: FastAPI, path: str) -> list[dict[str, Any]]:
    """A WebSocket opened on ``path`` without credentials, through the whole app: what it sent."""
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}])

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "websocket.disconnect", "code": 1000})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": path,
             "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": [],
             "client": ("127.0.0.1", 5000), "server": ("node", 80), "subprotocols": []}  # fmt: skip
    await app(scope, receive, send)
    return sent


def _builds(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every route FastAPI builds from now on (an included router's route on its first match)."""
    included = getattr(routing, "_IncludedRouter", None)
    if included is None or not hasattr(included, "_build_effective_context"):
        pytest.skip("this FastAPI builds no route lazily: nothing is left for a first request")
    built: list[Any] = []
    build = included._build_effective_context

    def counted(self: Any, route: Any) -> Any:
        built.append(route)
        return build(self, route)

    monkeypatch.setattr(included, "_build_effective_context", counted)
    return built


def test_the_first_requests_after_start_up_build_no_route(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = _builds(monkeypatch)
    app = create_app(node)

    async def script(client: httpx.AsyncClient) -> None:
        assert built, "the routes were matched before serving"
        built.clear()
        assert (await client.get("/agreements")).status_code == 401  # an included router's route
        assert (await client.post("/inbox", json={"envelopes": []})).status_code < 500
        sent = await _websocket(app, "/stream/tracks/ws")  # no credentials: closed by the route
        assert sent
        assert sent[-1]["type"] == "websocket.close"
        assert built == []

    serving(app, script)


def test_the_start_up_match_is_answered_by_no_route_and_leaves_no_trace(node: Node) -> None:
    app = create_app(node)

    async def script(client: httpx.AsyncClient) -> None:
        after_start = node.store.audit(limit=100_000)
        assert not any(WARM_PATH in (row.detail or "") + (row.subject or "") for row in after_start)
        # a caller asking for that path is told nothing is there, as for any other unknown path
        assert (await client.get(WARM_PATH)).status_code == 404
        assert (await client.get("/.gsomia/no-such-route")).status_code == 404

    serving(app, script)
