"""What the tests of bad input at the API share: one JPN node per store for a module, a chief who
holds every role (the refusals are about the input, not about rights), calls through the whole app
without a server, and a WebSocket handshake's scope. Generators and plain functions, which each
test module's own fixtures ``yield from`` or return (ruff removes a fixture imported from another
test module as unused)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from tests.conftest import postgres_schema

from gsomia.api import create_app
from gsomia.node import Node
from gsomia.testing import FakeClock, make_node

Call = Callable[..., httpx.Response]


def jpn_per_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_status: str | None
) -> Iterator[Node]:
    """A JPN node on the store ``request.param`` names (``sqlite``, ``postgresql``), closed after."""
    directory = tmp_path_factory.mktemp("jpn")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{directory / 'store.db'}"
        else:
            url = stack.enter_context(postgres_schema(postgres_status))
        node = make_node(directory / "jpn", "JPN", database_url=url, clock=FakeClock())
        yield node
        node.close()


def chief_token(node: Node) -> str:
    """The token of ``chief``, added to ``node`` holding every role."""
    node.people.add_person(
        None,
        {
            "id": "chief",
            "name": "Chief",
            "nationality": "JPN",
            "clearance": "極秘",
            "need_to_know": ["dprk-missile"],
            "roles": ["administrator", "release_officer", "security_officer", "analyst"],
        },
    )
    return node.credentials.issue(None, "chief")[1]


def caller(node: Node) -> Call:
    """``call(method, url, token=None, **httpx's request arguments)`` through ``node``'s whole app."""
    app = create_app(node)

    def do(method: str, url: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"

        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
                return await client.request(method, url, headers=headers, **kwargs)

        return asyncio.run(run())

    return do


def websocket_scope(path: str, client: str, *, query: bytes = b"", token: str = "") -> dict[str, Any]:
    """A WebSocket handshake's ASGI scope from ``client``, as a server hands it to the app."""
    bearer = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"node"), *bearer],
        "client": (client, 50000),
        "server": ("node", 80),
        "subprotocols": [],
        "state": {},
    }
