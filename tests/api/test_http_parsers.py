"""The node's API served by uvicorn with each HTTP/1.1 parser installed: h11 (pure Python, what
uvicorn uses without the ``fast`` extra) and httptools (llhttp, in C: the node's server uses it
whenever it is installed, through uvicorn's ``http="auto"``, with or without TLS).

Real requests over loopback to a JPN node served from a thread, one server per parser: a batch
of items crossing from KOR (one ``POST /inbox`` of a few hundred KB) stored once, a second push of
the same envelope answered as a duplicate; requests kept alive on one connection; and requests the
two parsers read differently, attacked: a body framed two ways at once (``Content-Length`` beside
``Transfer-Encoding``; two lengths), a malformed chunk, a control byte in a header. Each is
refused (400; 411, a body of no stated length; 413, one beyond the limit) before any route reads
it, with either parser. h11 frames a body with both ``Content-Length``
and ``Transfer-Encoding: chunked`` as chunked (RFC 9112 §6.3) and hands both headers on: the
node's body limit, which read the stated length, let such a body of any size through to the
route; it now refuses any body sent with ``Transfer-Encoding``, as it did one without a length.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn
from tests.node_fixtures import kor_label

from gsomia.api import create_app, server_config
from gsomia.crypto.keys import PeerIdentity
from gsomia.demo import network
from gsomia.exchange import HttpTransport, inbox_body_limit
from gsomia.node import NewIngest, Node, load_config

PARSERS = ("h11", *(("httptools",) if importlib.util.find_spec("httptools") is not None else ()))
ITEMS = 120  # one batch envelope of ~300 KB: the body is read in many pieces


@dataclass
class Served:
    parser: str
    nodes: dict[str, Node]
    port: int
    limit: int
    token: str
    server: uvicorn.Server


@pytest.fixture(scope="module", params=PARSERS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    parser: str = request.param
    members = network.build(tmp_path_factory.mktemp(parser) / "net")
    nodes = {m.party: Node(load_config(m.directory)) for m in members}  # the tokens' own clock
    jpn_m = next(m for m in members if m.party == "JPN")
    config = server_config(
        create_app(nodes["JPN"]),
        None,
        host="127.0.0.1",
        port=jpn_m.port,
        http=parser,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"gsomia-{parser}")
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.02)
    token = json.loads((jpn_m.directory / "tokens.json").read_text())["analyst"]
    limit = inbox_body_limit(nodes["JPN"].config.max_payload_bytes)
    try:
        yield Served(parser, nodes, jpn_m.port, limit, token, server)
    finally:
        server.should_exit = True
        thread.join(30)
        for node in nodes.values():
            node.close()


def _exchange(port: int, raw: bytes) -> list[tuple[int, bytes]]:
    """Send ``raw`` on one connection and read until the server closes it or is quiet: each
    response's status and body."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        with contextlib.suppress(OSError):  # the server answered and closed before reading all of it
            conn.sendall(raw)
        conn.settimeout(3)
        try:
            while chunk := conn.recv(65536):
                got += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    answers = []
    while got:
        head, _, rest = got.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
        length = int(fields.get(b"content-length", len(rest)))  # without one: to the close
        answers.append((status, rest[:length]))
        got = rest[length:]
    return answers


def test_the_protocol_serving_is_the_parser_asked_for(served: Served) -> None:
    cls = served.server.config.http_protocol_class
    assert isinstance(cls, type)
    expected = {"h11": "H11Protocol", "httptools": "HttpToolsProtocol"}[served.parser]
    assert cls.__name__ == expected


class _Recording(HttpTransport):
    """KOR's HTTP transport, keeping what each push carried."""

    def __init__(self) -> None:
        super().__init__()
        self.pushed: list[list[str]] = []

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        self.pushed.append(list(envelopes))
        return super().push(peer, envelopes)


def test_a_batch_crosses_once_through_the_parser(served: Served) -> None:
    kor, jpn = served.nodes["KOR"], served.nodes["JPN"]
    officer = kor.people.person("officer")
    label = kor_label(created=(datetime.now(UTC) - timedelta(hours=1)).isoformat())
    ids = [f"{served.parser}-{n:04d}" for n in range(ITEMS)]
    pad = "한국어 日本語 " * 40  # text beyond ASCII, in every item
    kor.items.ingest_many(
        officer,
        [NewIngest(label, json.dumps({"n": n, "pad": pad}).encode(), item_id=i) for n, i in enumerate(ids)],
    )
    released = kor.exchange.release_many(officer, ids, "JPN")
    assert not released.refused
    with _Recording() as transport:
        states = [d.state for d in kor.exchange.deliver_due(transport)]
        assert len(states) == ITEMS
        assert set(states) == {"delivered"}
        assert len(transport.pushed) <= 2  # batches, not an item a request
        peer = kor.exchange.peer("JPN")
        assert peer is not None
        envelopes = transport.pushed[0]  # the first push again, as it went: acknowledged, not stored twice
        answers = transport.push(peer, envelopes)
        assert {r["status"] for r in answers} == {"batch"}
        assert {inner["status"] for r in answers for inner in r["results"]} == {"duplicate"}
    assert sum(1 for i in ids if jpn.store.get_item(i) is not None) == ITEMS


def test_requests_kept_alive_on_one_connection(served: Served) -> None:
    auth = f"Authorization: Bearer {served.token}\r\n".encode()
    raw = (
        b"GET /healthz HTTP/1.1\r\nHost: jpn\r\n\r\n"
        b"GET /items?limit=5 HTTP/1.1\r\nHost: jpn\r\n" + auth + b"\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: jpn\r\nConnection: close\r\n\r\n"
    )
    answers = _exchange(served.port, raw)
    assert [status for status, _ in answers] == [200, 200, 200]
    assert json.loads(answers[0][1])["party"] == "JPN"
    assert "items" in json.loads(answers[1][1])


def _chunked(body: bytes) -> bytes:
    return (
        b"".join(
            b"%x\r\n%s\r\n" % (len(part), part)
            for part in (body[i : i + 65536] for i in range(0, len(body), 65536))
        )
        + b"0\r\n\r\n"
    )


def _refusals(limit: int) -> dict[str, bytes]:
    big = json.dumps({"envelopes": ["x" * (limit + 1)]}).encode()  # beyond the node's limit
    chunked = _chunked(big)
    head = b"POST /inbox HTTP/1.1\r\nHost: jpn\r\nContent-Type: application/json\r\n"
    return {
        # a small stated length beside a chunked body larger than the limit
        "length and chunked": head + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked,
        "chunked and length": head + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" + chunked,
        "chunked alone": head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked,
        "two lengths": head + b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}" + b" " * 38,
        "a signed length": head + b"Content-Length: +2\r\n\r\n{}",
        "a length beyond the limit": head + f"Content-Length: {len(big)}\r\n\r\n".encode() + big,
        "a malformed chunk": head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        "a NUL in a header": b"GET /healthz HTTP/1.1\r\nHost: jpn\r\nX-Note: a\x00b\r\n\r\n",
    }


@pytest.mark.parametrize("case", list(_refusals(1)))
def test_a_body_framed_two_ways_is_refused_before_any_route(served: Served, case: str) -> None:
    jpn = served.nodes["JPN"]
    items = jpn.store.count_items()
    answers = _exchange(served.port, _refusals(served.limit)[case])
    assert answers, "no answer"
    status, body = answers[0]
    assert status in (400, 411, 413), (status, body[:200])
    assert jpn.store.count_items() == items
