"""The live feed's open streams (``/feed/ws``, ``/feed/sse``) end once the API token they were
opened with is revoked by another process of the node, as a track stream does (the same check,
``Credentials.still``): the WebSocket closed 1008 naming it, the SSE response ended, the refusal
audited once; a stream on another token of the same person goes on."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.stream._consuming import serve_node
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gsomia.node import Node

_SEEN_WITHIN_S = 5.0  # "about a second" (a 0.5 s poll), with room for a loaded machine
_OPEN_S = 12.0  # an SSE read waits at most this long (under the feed's 15 s keep-alive)

# run in another process: the revocation reaches the serving node only through the store
_REVOKE = """
import sys
from pathlib import Path
from gsomia.node import Node
from gsomia.node._config import load_config

node = Node(load_config(Path(sys.argv[1])))
print("ready", flush=True)
if sys.stdin.readline().strip() == "go":  # opened ahead: the revocation itself is all that is timed
    node.credentials.revoke(None, sys.argv[2])
    print("revoked", flush=True)
node.close()
"""
_CHILD_S = 120.0  # the revoking process's answers, at most
_GSOMIA = Path(sys.executable).with_name("gsomia")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Node, str]]:
    yield from serve_node(tmp_path / "jpn")


def _tokens(node: Node) -> tuple[str, str, str]:
    """An analyst's two API tokens: (the first's id, the first, the second)."""
    node.people.add_person(
        None,
        {"id": "sato", "name": "sato", "nationality": "JPN", "clearance": "特定秘密",
         "need_to_know": ["dprk-missile"], "roles": ["analyst"]},
    )  # fmt: skip
    token_id, token, _ = node.credentials.issue(None, "sato", days=1)
    return token_id, token, node.credentials.issue(None, "sato", days=1)[1]


def _refusals(node: Node, kind: str) -> list[dict[str, Any]]:
    """The refusals of ``kind`` on file, once the one expected is written (bounded wait)."""
    until = time.monotonic() + 5
    while True:
        found = [
            {"actor": r.actor, **json.loads(r.detail)}
            for r in node.store.audit(kind=kind)
            if r.outcome == "refused"
        ]
        if found or time.monotonic() > until:
            return found
        time.sleep(0.05)


def test_a_feed_websocket_whose_token_the_cli_revokes_is_closed_1008(served: tuple[Node, str]) -> None:
    node, base = served
    token_id, token, kept = _tokens(node)
    url = base.replace("http", "ws") + "/feed/ws"
    with (
        connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as consumer,
        connect(url, additional_headers={"Authorization": f"Bearer {kept}"}) as other,
    ):
        time.sleep(1)  # both following
        subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
            [str(_GSOMIA), "person", "revoke-token", "--dir", str(node.config.directory), token_id],
            check=True, timeout=120, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        revoked = time.monotonic()
        try:
            got = consumer.recv(timeout=_SEEN_WITHIN_S + 5)
            pytest.fail(f"the feed sent {got!r} rather than closing")
        except ConnectionClosed as closed:
            rcvd, took = closed.rcvd, time.monotonic() - revoked
        except TimeoutError:
            pytest.fail("the feed stayed open after its token was revoked")
        with pytest.raises(TimeoutError):  # the stream on the token not revoked goes on
            other.recv(timeout=1.5)
    assert rcvd is not None, "closed without a close frame"
    assert rcvd.code == 1008
    assert "revoked" in rcvd.reason
    assert took < _SEEN_WITHIN_S, f"closed {took:.1f} s after the revocation"
    refusals = _refusals(node, "feed.ws")
    assert len(refusals) == 1, f"the refusal that ended it is audited once: {refusals}"
    assert refusals[0]["actor"] == "sato"
    assert refusals[0]["error"] == "AuthenticationError"


def _follow(url: str, token: str, started: threading.Event, out: list[tuple[str, float]]) -> None:
    """Follow the SSE ``url`` until the response ends (``ended``) or a read waits ``_OPEN_S``
    (``open``: the feed's keep-alive comes only every 15 s); and when."""
    try:
        with httpx.stream(
            "GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(10, read=_OPEN_S)
        ) as response:
            assert response.status_code == 200
            for _ in response.iter_lines():
                started.set()
        out.append(("ended", time.monotonic()))
    except httpx.ReadTimeout:
        out.append(("open", time.monotonic()))


def _line(process: subprocess.Popen[str]) -> str:
    """The next line ``process`` writes, waited for at most ``_CHILD_S``."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], _CHILD_S)
    assert ready, f"the revoking process wrote nothing within {_CHILD_S:g} s"
    return process.stdout.readline().strip()


def test_a_feed_sse_stream_whose_token_another_process_revokes_ends(served: tuple[Node, str]) -> None:
    node, base = served
    token_id, token, kept = _tokens(node)
    revoked_out: list[tuple[str, float]] = []
    kept_out: list[tuple[str, float]] = []
    opened = [threading.Event(), threading.Event()]
    followers = [
        threading.Thread(target=_follow, args=(base + "/feed/sse", token, opened[0], revoked_out)),
        threading.Thread(target=_follow, args=(base + "/feed/sse", kept, opened[1], kept_out)),
    ]
    # Another process of the node, opened before the streams are (its start-up on a loaded machine
    # took longer than the followers' read window: the revoked stream was still "open" when its
    # read timed out, before the revocation had been made); it revokes when told to.
    with subprocess.Popen(  # noqa: S603 - our own code, fixed arguments
        [sys.executable, "-c", _REVOKE, str(node.config.directory), token_id],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as revoker:  # fmt: skip
        try:
            assert _line(revoker) == "ready"
            for follower in followers:
                follower.start()
            try:
                assert all(o.wait(30) for o in opened), "the feed's streams did not open"
                time.sleep(1)
                assert revoker.stdin is not None
                revoker.stdin.write("go\n")
                revoker.stdin.flush()
                assert _line(revoker) == "revoked"
                revoked = time.monotonic()
            finally:
                for follower in followers:
                    follower.join(30)
        finally:
            revoker.kill()
    assert revoked_out, "the follower on the revoked token did not finish"
    assert kept_out, "the follower on the other token did not finish"
    (how, at), (kept_how, kept_at) = revoked_out[0], kept_out[0]
    assert how == "ended", "the feed went on after its token was revoked"
    assert at - revoked < _SEEN_WITHIN_S, f"ended {at - revoked:.1f} s after the revocation"
    assert kept_how == "open", "the stream on the token not revoked ended too"
    assert kept_at > at, "the stream on the token not revoked was not open past the other's end"
    refusals = _refusals(node, "feed.sse")
    assert len(refusals) == 1, f"the refusal that ended it is audited once: {refusals}"
    assert refusals[0]["actor"] == "sato"
    assert refusals[0]["error"] == "AuthenticationError"
