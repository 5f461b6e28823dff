"""WebSocket callers go through the node's own ``reader`` dependency, whatever it reads."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Annotated

import pytest
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from gsomia.api._stream import stream_router
from gsomia.core.access import Person
from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import free_port
from gsomia.stream import StreamService, launches, replay
from gsomia.testing import make_node

_bearer = HTTPBearer(auto_error=False)


def test_a_reader_with_a_request_parameter_sees_the_handshake_and_its_method(tmp_path: Path) -> None:
    """A reader like the dashboard's (bearer, or a cookie for reading) gets the handshake as a
    request: ``GET`` to follow, ``POST`` to publish. A cookie reaches it only from a browser's
    handshake on the node's own origin (``Origin`` sent; without it, no cookie)."""
    node = make_node(tmp_path / "kor", "KOR")
    node.people.add_person(
        None,
        {"id": "officer", "name": "officer", "clearance": "군사I급비밀", "need_to_know": ["dprk-missile"],
         "roles": ["release_officer", "analyst"], "nationality": "KOR"},
    )  # fmt: skip
    token = node.credentials.issue(None, "officer", days=1)[1]
    seen: list[tuple[str, str | None]] = []

    def reader(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Person:
        seen.append((request.method, request.cookies.get("session")))
        if credentials is None and request.method == "GET":
            return node.credentials.authenticate(request.cookies.get("session"))
        return node.credentials.authenticate(credentials.credentials if credentials else None)

    app = FastAPI()
    app.include_router(stream_router(StreamService(node), reader))
    update = track_update_to_json(replay(launches(2019)[0], originator="KOR", every_s=600)[0])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        base = f"ws://127.0.0.1:{port}"
        own = {"Cookie": f"session={token}", "Origin": f"http://127.0.0.1:{port}"}
        with connect(f"{base}/stream/tracks/ws", additional_headers=own) as follower:
            with connect(
                f"{base}/stream/tracks/publish", additional_headers={"Authorization": f"Bearer {token}"}
            ) as feed:
                feed.send(json.dumps(update))
            got = json.loads(follower.recv(timeout=10))
        assert got["track_id"] == update["track_id"]
        assert got["route"] == "local"
        with (  # no Origin: no browser, so the cookie is not passed on, and the caller is refused
            pytest.raises(InvalidStatus),
            connect(f"{base}/stream/tracks/ws", additional_headers={"Cookie": f"session={token}"}),
        ):
            pass
    finally:
        server.should_exit = True
        thread.join(10)
    assert seen == [("GET", token), ("POST", None), ("GET", None)]  # the feed needs its bearer token
    node.close()
