"""Attack: one source floods what a node serves without credentials (issue 15 §2).

Each source address (an IPv6 one by its /64) has a budget per window (``public_rate_limit`` in
node.toml): each request to a route that needs no credentials spends one, and so does each refusal
of a caller nobody authenticated (a bad token, an envelope that does not open, a malformed
request). Spent, the source is answered 429 with an RFC 9457 problem and ``Retry-After`` until its
window ends, and those refusals are audited in bounded space. The budget is counted in the store:
every process of the node spends from the same one. Other sources, and callers with a valid token,
are not affected.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from tests.api._through_app import websocket_scope
from tests.node_fixtures import through_app as send
from tests.reliability.processes import answering, stop

from gsomia.api import create_app
from gsomia.demo import network
from gsomia.errors import ConfigError
from gsomia.kernel import NodeContext
from gsomia.node import Node, init_node_dir, load_config
from gsomia.node._config import update_settings
from gsomia.testing import FakeClock

RATE = 20
RECORDED = NodeContext.REFUSALS_RECORDED


def open_node(directory: Path, store_url: str, clock: FakeClock | None, **settings: Any) -> Node:
    init_node_dir(directory, "JPN", store_url)
    update_settings(directory, **{"public_rate_limit": f"{RATE}/minute", **settings})
    return Node(load_config(directory), **({"clock": clock} if clock else {}))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def node(tmp_path: Path, store_url: str, clock: FakeClock) -> Iterator[Node]:
    n = open_node(tmp_path / "jpn", store_url, clock)
    yield n
    n.close()


def records(node: Node, kind: str) -> list[dict[str, Any]]:
    rows = node.store.audit(kind=kind, limit=1_000_000)
    return [{"subject": r.subject, **json.loads(r.detail)} for r in rows]


def counters(node: Node) -> int:
    with node.store.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM rate_counters").scalar_one())


def junk(n: int) -> dict[str, Any]:
    return {"json": {"envelopes": [f"junk.{secrets.token_hex(8)}.x.y.z" for _ in range(n)]}}


def assert_429(answer: httpx.Response, window_s: int = 60) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert body["type"] == "urn:gsomia:problem:too-many-requests"
    assert 1 <= int(answer.headers["retry-after"]) <= window_s
    assert body["retry_after"] == int(answer.headers["retry-after"])
    assert "retry after" in body["detail"]


def test_a_flood_of_public_reads_from_one_source_gets_429_and_bounded_records(
    node: Node, clock: FakeClock
) -> None:
    node.audit.sign_head()  # a head to read
    before = len(node.store.audit(limit=1_000_000))
    paths = ["/identity", "/audit/head", "/ui/login", "/ui/static/app.css"]
    answers = send(node, [("203.0.113.7", "GET", paths[i % 4], {}) for i in range(500)])
    assert all(a.status_code < 400 for a in answers[:RATE]), [a.status_code for a in answers[:RATE]]
    for answer in answers[RATE:]:
        assert_429(answer)
    # the balancer's liveness probe is answered from memory and costs nothing: never refused
    assert send(node, [("203.0.113.7", "GET", "/healthz", {})])[0].status_code == 200
    # another source is served all the same, from its own budget
    assert [a.status_code for a in send(node, [("198.51.100.1", "GET", "/identity", {})] * 5)] == [200] * 5
    grown = node.store.audit(limit=1_000_000)[before:]
    assert {r.kind for r in grown} == {"rate.limited"}
    assert len(grown) == RECORDED  # not 480: the rest are a count
    assert all(r["source"] == "203.0.113.7" for r in records(node, "rate.limited"))
    clock.advance(seconds=121)  # a sliding window: the last minute's spending weighs on this one
    node.kernel.close_refusal_tallies()
    (tally,) = records(node, "refusal.tally")
    assert (tally["subject"], tally["source"], tally["code"], tally["count"]) == (
        "rate.limited",
        "203.0.113.7",
        "429",
        500 - RATE,
    )
    # nothing spent in this window nor the last: the source is served again, and the counters
    # of windows that weigh no more are forgotten
    assert send(node, [("203.0.113.7", "GET", "/identity", {})])[0].status_code == 200
    node.runtime(deliver=False).round()  # the node's loop deletes the counters of ended windows
    assert counters(node) == 1  # 198.51.100.1's is gone: 203.0.113.7's new window only
    node.audit.sign_head()
    assert node.audit.verify().ok


def test_bad_tokens_spend_the_budget_but_a_valid_token_from_the_same_address_is_served(
    node: Node,
) -> None:
    ops = {"id": "ops", "name": "Ops", "nationality": "JPN", "clearance": None, "need_to_know": []}
    node.people.add_person(None, {**ops, "roles": ["administrator"]})
    token = node.credentials.issue(None, "ops", days=1)[1]
    guesses = [
        ("192.0.2.9", "GET", "/items", {"headers": {"Authorization": f"Bearer {secrets.token_hex(16)}"}})
        for _ in range(RATE + 30)
    ]
    answers = send(node, guesses)
    assert {a.status_code for a in answers[:RATE]} == {401}
    for answer in answers[RATE:]:
        assert_429(answer)
    mine = send(node, [("192.0.2.9", "GET", "/people", {"headers": {"Authorization": f"Bearer {token}"}})])
    assert mine[0].status_code == 200  # an authenticated caller spends nothing and is never limited


def test_junk_envelopes_spend_the_budget_then_the_inbox_opens_nothing_more(node: Node) -> None:
    first = send(node, [("203.0.113.50", "POST", "/inbox", junk(RATE + 5))])[0]
    assert first.status_code == 200  # opened and refused one by one: the per-envelope answers
    assert {r["status"] for r in first.json()["results"]} == {"refused"}
    later = send(node, [("203.0.113.50", "POST", "/inbox", junk(3)) for _ in range(5)])
    for answer in later:
        assert_429(answer)
    refused_before = sum(1 for _ in node.store.audit(kind="envelope.refused", limit=1_000_000))
    assert refused_before <= RECORDED  # the 429s opened nothing: no more envelope refusals
    # a caller elsewhere still reaches the inbox
    assert send(node, [("198.51.100.2", "POST", "/inbox", junk(1))])[0].status_code == 200


def test_malformed_requests_and_unknown_routes_spend_it_too(node: Node) -> None:
    answers = send(
        node,
        [("192.0.2.77", "GET", "/audit/inclusion", {"params": {"entry": "no"}}) for _ in range(RATE // 2)]
        + [("192.0.2.77", "GET", f"/x{n}", {}) for n in range(RATE)],
    )
    # each malformed request to a public route costs two (the request and its refusal)
    assert [a.status_code for a in answers[: RATE // 2]] == [422] * (RATE // 2)
    for answer in answers[RATE // 2 :]:
        assert_429(answer)


def handshake(node: Node, path: str, source: str) -> list[dict[str, Any]]:
    """What the app sends a WebSocket handshake to ``path`` from ``source`` (raw ASGI, no server)."""
    app = create_app(node)
    scope = websocket_scope(path, source)
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(0.05)
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_a_stream_link_handshake_from_a_spent_source_is_closed_try_again_later(node: Node) -> None:
    node.kernel.admission.spend("192.0.2.33", RATE)
    answer = handshake(node, "/stream/link", "192.0.2.33")
    assert answer[0]["type"] == "websocket.close", answer  # never accepted
    assert answer[0]["code"] == 1013
    assert records(node, "rate.limited")[-1]["subject"] == "/stream/link"
    other = handshake(node, "/stream/link", "198.51.100.33")
    assert other[0]["type"] == "websocket.accept"  # another source's link is taken up


def test_an_ipv6_source_counts_by_its_64_and_exempt_networks_spend_nothing(
    tmp_path: Path, store_url: str, clock: FakeClock
) -> None:
    node = open_node(tmp_path / "jpn", store_url, clock, rate_limit_exempt=["192.0.2.0/24"])
    try:
        admission = node.kernel.admission
        assert admission.spend("2001:db8:1:2::1", RATE) is None
        assert admission.spend("2001:db8:1:2:ffff::9") is not None  # the same /64: the same budget
        assert admission.spend("2001:db8:1:3::1") is None  # the next /64 is another subscriber
        assert admission.spend("::ffff:198.51.100.3", RATE) is None
        assert admission.spend("198.51.100.3") is not None  # an IPv4-mapped address is the IPv4 one
        assert all(admission.spend("192.0.2.200") is None for _ in range(RATE * 3))
        assert admission.spend(None) is None  # an in-process caller has no network source
    finally:
        node.close()


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("public_rate_limit", "lots", "is not a rate"),
        ("public_rate_limit", "", "is not a rate"),
        ("rate_limit_exempt", ["10.0.0.0/33"], "not a network in CIDR notation"),
        ("rate_limit_exempt", ["loopback"], "not a network in CIDR notation"),
    ],
)
def test_a_bad_rate_or_network_in_node_toml_is_refused_with_its_name(
    tmp_path: Path, field: str, value: Any, words: str
) -> None:
    init_node_dir(tmp_path / "jpn", "JPN")
    with pytest.raises(ConfigError, match=rf"node\.{field}: .*{words}"):
        update_settings(tmp_path / "jpn", **{field: value})


def test_the_defaults_are_written_to_node_toml_and_exempt_no_one(tmp_path: Path) -> None:
    config = init_node_dir(tmp_path / "jpn", "JPN")
    text = (tmp_path / "jpn" / "node.toml").read_text(encoding="utf-8")
    assert 'public_rate_limit = "1200/minute"' in text
    assert "rate_limit_exempt = []" in text
    assert config.rate_limit_exempt == ()  # loopback is not exempt unless node.toml says so


# Every process of a test below runs on one injected instant (its node's clock, ``sys.argv[-1]``):
# the budget's windows are the node's clock's, so no window edge (a minute's, a day's 00:00 UTC)
# can fall between two processes' spending, whenever the test runs.
# (tomorrow's noon: after the node's keys were made, in the middle of every window)
AT = (datetime.now(UTC) + timedelta(days=1)).replace(hour=12, minute=0, second=30, microsecond=0).isoformat()
FIXED = """
from datetime import UTC, datetime, timedelta
from gsomia.testing import FakeClock
clock = FakeClock(datetime.fromisoformat(sys.argv[-1]))
"""

SPEND_IN_ANOTHER_PROCESS = (
    """
import sys
from pathlib import Path
from gsomia.node import Node
"""
    + FIXED
    + """
node = Node.open(Path(sys.argv[1]), migrate=False, clock=clock)
print(sum(node.kernel.admission.spend("203.0.113.99") is None for _ in range(int(sys.argv[2]))))
node.close()
"""
)


def at_fixed() -> FakeClock:
    return FakeClock(datetime.fromisoformat(AT))


def test_two_processes_of_one_node_spend_from_one_budget(tmp_path: Path, store_url: str) -> None:
    """The count lives in the store: a second OS process of the node (on the same SQLite file or
    PostgreSQL schema) spends from the same budget, so the node serves RATE requests, not 2 x RATE."""
    directory = tmp_path / "jpn"
    first = open_node(directory, store_url, at_fixed())  # the other process's instant: one window
    try:
        half = RATE // 2
        other = subprocess.run(  # noqa: S603 - our own code, fixed arguments
            [sys.executable, "-c", SPEND_IN_ANOTHER_PROCESS, str(directory), str(half), AT],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        assert int(other.stdout.strip()) == half  # all within the budget there
        served_here = sum(first.kernel.admission.spend("203.0.113.99") is None for _ in range(RATE))
        assert served_here == RATE - half  # the other process's spending counted here
        again = subprocess.run(  # noqa: S603 - our own code, fixed arguments
            [sys.executable, "-c", SPEND_IN_ANOTHER_PROCESS, str(directory), "3", AT],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        assert int(again.stdout.strip()) == 0  # and this process's spending counted there
        with first.store.engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("SELECT key, count FROM rate_counters")).all()
        # one row (this window's), every process's spending: RATE served; a refused request spends
        # nothing (the process then remembers the source as spent, and asks the store no more)
        assert len(rows) == 1
        assert rows[0][1] == RATE
    finally:
        first.close()


def test_a_source_cannot_spend_twice_its_budget_across_a_window_edge(node: Node, clock: FakeClock) -> None:
    """The adversary of a fixed window: one request as a window opens, the rest of the budget in
    its last second, the whole budget again in the first second of the next: 2 x RATE within two
    seconds. Counted over a sliding window (``limits``' sliding window counter), the budget spent
    in the last second still weighs on the next: one more request is served, not RATE."""
    admission = node.kernel.admission
    source = "203.0.113.61"
    assert admission.spend(source) is None  # 00:00:00, a minute's start (the clock's)
    clock.advance(seconds=59)
    assert sum(admission.spend(source) is None for _ in range(RATE - 1)) == RATE - 1
    clock.advance(seconds=2)  # 00:01:01, past the edge of a window that opened at 00:00:00
    served = sum(admission.spend(source) is None for _ in range(RATE))
    assert served == 1, served  # the weighted count is floored: RATE + 1 within the two seconds
    assert_429(send(node, [(source, "GET", "/identity", {})])[0])
    clock.advance(seconds=29)  # 00:01:30: the last minute's RATE weighs half, this one's 1 in full
    assert sum(admission.spend(source) is None for _ in range(RATE)) == RATE // 2 - 1
    clock.advance(seconds=91)  # 00:03:01: nothing spent in the last window nor in this one
    assert sum(admission.spend(source) is None for _ in range(RATE)) == RATE


SPEND_AT_ONCE = (
    """
import sys, time
from pathlib import Path
from gsomia.node import Node
"""
    + FIXED
    + """
node = Node.open(Path(sys.argv[1]), migrate=False, clock=clock)
go = Path(sys.argv[3])
print("ready", flush=True)
deadline = time.monotonic() + 120
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
print(sum(node.kernel.admission.spend("203.0.113.98") is None for _ in range(int(sys.argv[2]))))
node.close()
"""
)


def test_two_processes_spending_one_budget_at_once_never_exceed_it(tmp_path: Path, store_url: str) -> None:
    """Two OS processes of one node (one SQLite file, or one PostgreSQL database) spend one
    source's budget at the same instant, each trying the whole of it: together they are served
    the budget, not a request more (each spend reads the count and adds to it in one transaction
    that holds the window's row, so no process adds on a count another has already passed)."""
    budget = 60
    directory = tmp_path / "jpn"
    open_node(directory, store_url, None, public_rate_limit=f"{budget}/minute").close()
    go = tmp_path / "go"
    spenders = [
        subprocess.Popen(  # noqa: S603 - our own code, fixed arguments
            [sys.executable, "-c", SPEND_AT_ONCE, str(directory), str(budget), str(go), AT],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for spender in spenders:
            assert spender.stdout is not None
            assert spender.stdout.readline().strip() == "ready"
        go.touch()
        served = [int(spender.communicate(timeout=300)[0].strip()) for spender in spenders]
    finally:
        for spender in spenders:
            if spender.poll() is None:
                spender.kill()
                spender.wait()
    assert sum(served) == budget, served


def test_the_openapi_document_and_its_pages_spend_it_as_every_public_route(node: Node) -> None:
    answers = send(
        node, [("192.0.2.5", "GET", ("/openapi.json", "/docs", "/redoc")[n % 3], {}) for n in range(RATE + 3)]
    )
    assert [a.status_code for a in answers[:RATE]] == [200] * RATE
    for answer in answers[RATE:]:
        assert_429(answer)
    spec = answers[0].json()
    declared = spec["paths"]["/identity"]["get"]["responses"]["429"]
    assert "Retry-After" in declared["headers"]
    assert all("429" in op["responses"] for path in spec["paths"].values() for op in path.values())


SERVE_AT = (
    """
import sys
from pathlib import Path
import uvicorn
from gsomia.api import create_app
from gsomia.node import Node
"""
    + FIXED
    + """
node = Node.open(Path(sys.argv[1]), clock=clock)
uvicorn.run(create_app(node), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""
)


def _serve(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The node's app served by uvicorn in a process of its own, as ``gsomia node serve`` serves
    it, on a port of its own and on the injected instant; answering when this returns."""
    member = network.NetNode("JPN", directory, network.free_port())
    with open(directory / f"serve-{member.port}.log", "ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own code, fixed arguments
            [sys.executable, "-c", SERVE_AT, str(directory), str(member.port), AT], stdout=log, stderr=log
        )
    return answering(process, member), member.endpoint  # /healthz, which it waits on, spends nothing


def test_two_serve_processes_of_one_node_answer_one_budget_over_http(tmp_path: Path, store_url: str) -> None:
    """Two ``gsomia node serve`` processes of one node on one database, the same source (loopback,
    which is not exempt) asking each in turn: the node serves RATE requests in all, then both
    answer 429 with ``Retry-After``."""
    directory = tmp_path / "jpn"
    open_node(directory, store_url, None).close()  # RATE a minute, the store migrated once
    servers = []
    try:
        servers = [_serve(directory), _serve(directory)]
        with httpx.Client(timeout=30) as client:
            answers = [client.get(f"{servers[n % 2][1]}/identity") for n in range(2 * RATE + 6)]
        assert sum(a.status_code == 200 for a in answers) == RATE  # not 2 x RATE
        assert {a.status_code for a in answers} == {200, 429}
        for base in (b for _, b in servers):
            assert_429(httpx.get(f"{base}/identity", timeout=30))  # both refuse now
    finally:
        for process, _ in servers:
            stop(process)
