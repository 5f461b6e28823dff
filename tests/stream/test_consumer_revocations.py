"""An open stream ends once what let it open is taken away, by any process of the node, tracks
flowing or not: the API token it was opened with revoked (or expired), the person disabled, the
visitor's visit ended early (revoked, or shortened to an end now past). A WebSocket is closed 1008
naming the refusal, an SSE response ends, and the refusal is audited once; within about a second.
The in-process cases run on both buses: the node's own and NATS JetStream (where the subscription the
refusal closes is a JetStream consumer's)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.stream._consuming import collect, nats_bus, pump, serve_node
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gsomia.core.access import Person
from gsomia.core.tracks import track_update_to_json
from gsomia.errors import AccessDenied, AuthenticationError
from gsomia.node import Node
from gsomia.stream import Bus, InProcessBus, StreamService, launches, replay
from gsomia.testing import FakeClock, make_node

_START = datetime(2024, 3, 1, tzinfo=UTC)
_SEEN_WITHIN_S = 3.0  # "about a second", with room for a loaded machine (the counters: every 0.25 s)

# run in another process: the change reaches the serving node only through the store. "end-visit-row"
# writes the visits table as any of its writers does (the row replaced, the visits counter moved),
# ending the visit a second after it began: the stream's side of it, whatever operation wrote it
_WRITER = """
import sys
from dataclasses import replace
from pathlib import Path
from gsomia.node import Node
from gsomia.node._config import load_config
from gsomia.store import DutiesStore

node = Node(load_config(Path(sys.argv[1])))
what, subject = sys.argv[2], sys.argv[3]
if what == "revoke-token":
    node.credentials.revoke(None, subject)
elif what == "disable":
    node.people.set_active(None, subject, False)
elif what == "end-visit-row":
    db = DutiesStore(node.kernel.store)
    row = next(r for r in db.visits() if r.id == subject)
    db.commit(ops=[db.put("visits", replace(row, ends_us=row.starts_us + 1_000_000), replace_keys=["id"])])
node.close()
"""
_GSOMIA = Path(sys.executable).with_name("gsomia")


def _write_elsewhere(directory: Path, what: str, subject: str) -> None:
    subprocess.run(  # noqa: S603 - our own code, fixed arguments
        [sys.executable, "-c", _WRITER, str(directory), what, subject], check=True, timeout=120
    )


def _cli(*args: str) -> None:
    subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [str(_GSOMIA), *args], check=True, timeout=120, stdout=subprocess.DEVNULL
    )


def _analyst(node: Node, person_id: str = "sato") -> Person:
    return node.people.add_person(
        None,
        {"id": person_id, "name": person_id, "nationality": "JPN", "clearance": "特定秘密",
         "need_to_know": ["dprk-missile"], "roles": ["analyst"]},
    )  # fmt: skip


# --- over the network: a JPN node served on loopback, on the real clock, nothing published ---


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Node, str]]:
    """JPN's node served by uvicorn from a thread (its whole API), and its base URL."""
    yield from serve_node(tmp_path / "jpn")


def _refusals(node: Node, channel: str) -> list[dict[str, Any]]:
    return [
        {"actor": r.actor, **json.loads(r.detail)}
        for r in node.store.audit(kind=f"stream.{channel}")
        if r.outcome == "refused"
    ]


def _closed_after(consumer: Any, change: Any) -> tuple[Any, float]:
    """Make ``change``, then wait (bounded) for the idle consumer to be closed: its close frame and
    the seconds from the change's commit to it. A track or nothing at all fails the test."""
    change()
    committed = time.monotonic()
    try:
        got = consumer.recv(timeout=_SEEN_WITHIN_S + 7)
    except ConnectionClosed as closed:
        return closed.rcvd, time.monotonic() - committed
    pytest.fail(f"the idle stream sent {got!r} rather than closing")


@pytest.mark.parametrize("batch", ["", "?batch=10"], ids=["single", "batched"])
def test_an_idle_websocket_whose_token_another_process_revokes_is_closed_1008(
    served: tuple[Node, str], batch: str
) -> None:
    node, base = served
    _analyst(node)
    token_id, token, _ = node.credentials.issue(None, "sato", days=1)
    kept = node.credentials.issue(None, "sato", days=1)[1]  # another of theirs: it stays valid
    url = base.replace("http", "ws") + "/stream/tracks/ws" + batch
    with (
        connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as consumer,
        connect(url, additional_headers={"Authorization": f"Bearer {kept}"}) as other,
    ):
        time.sleep(0.5)  # both following, idle
        directory = str(node.config.directory)
        rcvd, took = _closed_after(
            consumer, lambda: _cli("person", "revoke-token", "--dir", directory, token_id)
        )
        with pytest.raises(TimeoutError):  # the stream opened with the token not revoked goes on
            other.recv(timeout=1)
    assert rcvd is not None, "closed without a close frame"
    assert rcvd.code == 1008
    assert "revoked" in rcvd.reason
    assert took < _SEEN_WITHIN_S, f"closed {took:.1f} s after the revocation"
    refusals = _refusals(node, "ws")
    assert len(refusals) == 1, f"the refusal that ended it is audited once: {refusals}"
    assert refusals[0]["actor"] == "sato"
    assert refusals[0]["error"] == "AuthenticationError"


def test_an_idle_websocket_of_a_person_another_process_disables_is_closed_1008(
    served: tuple[Node, str],
) -> None:
    node, base = served
    _analyst(node)
    token = node.credentials.issue(None, "sato", days=1)[1]
    url = base.replace("http", "ws") + "/stream/tracks/ws"
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as consumer:
        time.sleep(0.5)
        directory = str(node.config.directory)
        rcvd, took = _closed_after(consumer, lambda: _cli("person", "disable", "--dir", directory, "sato"))
    assert rcvd is not None, "closed without a close frame"
    assert rcvd.code == 1008
    assert "active" in rcvd.reason  # the person's own refusal, not their tokens' revoked with it
    assert took < _SEEN_WITHIN_S, f"closed {took:.1f} s after the person was disabled"
    refusals = _refusals(node, "ws")
    assert len(refusals) == 1, f"the refusal that ended it is audited once: {refusals}"
    assert any(c["rule"] == "active" and not c["passed"] for c in refusals[0]["checks"])


def _sse_until_ended(url: str, token: str, started: threading.Event, bound: float) -> tuple[bool, float]:
    """Follow ``url`` as SSE until the response ends (``True``) or ``bound`` seconds pass
    (``False``: the keep-alive comment comes every second, so a read never waits longer); and when."""
    until = time.monotonic() + bound
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as response:
        assert response.status_code == 200
        for _ in response.iter_lines():
            started.set()
            if time.monotonic() > until:
                return False, time.monotonic()
    return True, time.monotonic()


@pytest.mark.parametrize("how", ["cli", "row"])
def test_an_idle_sse_stream_of_a_visitor_whose_visit_another_process_ends_ends(
    served: tuple[Node, str], how: str
) -> None:
    """A visitor (Art. 8) follows over SSE; another process ends the visit early: with the CLI's
    ``duty visit-end`` (revoked now), or as any writer of the visits table (its end moved to a
    second after its start). The response ends within about a second, the refusal audited once."""
    node, base = served
    _analyst(node, "kim")
    token = node.credentials.issue(None, "kim", days=1)[1]
    now = datetime.now(UTC)
    visit = node.duties.authorise_visit(
        None, "kim", highest="特定秘密", starts=now - timedelta(hours=1), ends=now + timedelta(hours=1),
        purpose="liaison",
    )  # fmt: skip
    started = threading.Event()
    result: list[tuple[bool, float]] = []
    follower = threading.Thread(
        target=lambda: result.append(_sse_until_ended(base + "/stream/tracks/sse", token, started, 15))
    )
    follower.start()
    try:
        assert started.wait(30), "the visitor's stream did not open"
        time.sleep(0.5)
        directory = node.config.directory
        if how == "cli":
            _cli("duty", "visit-end", "--dir", str(directory), visit["id"])
        else:
            _write_elsewhere(directory, "end-visit-row", visit["id"])
        committed = time.monotonic()
    finally:
        follower.join(30)
    assert result, "the follower did not finish"
    ended, at = result[0]
    assert ended, "the visitor's stream went on after the visit was ended"
    assert at - committed < _SEEN_WITHIN_S, f"ended {at - committed:.1f} s after the visit was"
    refusals = _refusals(node, "sse")
    assert len(refusals) == 1, f"the refusal that ended it is audited once: {refusals}"
    assert refusals[0]["actor"] == "kim"
    assert any(c["rule"] == "visit" and not c["passed"] for c in refusals[0]["checks"])


# --- in-process: tracks flowing while another process revokes, and a token expiring ---


@pytest.fixture
def jpn(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path / "jpn", "JPN", clock=FakeClock(_START))
    yield node
    node.close()


@pytest.fixture(params=["in-process", "nats"])
def bus(request: pytest.FixtureRequest) -> Bus:
    """The bus the stream runs on (NATS: skipped when absent, failed under GSOMIA_REQUIRE_SERVICES=1)."""
    return InProcessBus() if request.param == "in-process" else nats_bus()


async def _service(node: Node, bus: Bus) -> StreamService:
    service = StreamService(node, bus)
    await bus.start()
    return service


async def _tracks(
    service: StreamService, person: Person, batched: bool, still: Any
) -> AsyncIterator[list[bytes]]:
    checked = {} if still is None else {"credential": still}  # none: as a caller before the checks
    if batched:
        async for batch in await service.subscribe_batches(person, "ws", 100, **checked):
            yield batch
    else:
        async for _, track in await service.subscribe(person, "ws", **checked):
            yield [track]


async def _publishing(service: StreamService) -> None:
    update = track_update_to_json(replay(launches(2019)[2], originator="JPN", every_s=20)[0])
    n = 0
    while True:
        await service._emit(
            orjson.dumps(dict(update, track_id=f"t-{n}")), service.stream_label(), "direct", None
        )
        n += 1
        await asyncio.sleep(0.02)


def _flowing(
    node: Node,
    person: Person,
    batched: bool,
    still: Any,
    change: tuple[str, str],
    ends: type[Exception],
    bus: Bus,
) -> tuple[list[str], list[str], BaseException | None]:
    """Follow as ``person`` while tracks flow; ``change`` (what, subject) is written by another
    process. What came before it, what came from the change's allowance on (for 1.5 s), and the
    ``ends`` error that ended the stream (``None`` if it went on)."""

    async def run() -> tuple[list[str], list[str], BaseException | None]:
        service = await _service(node, bus)
        stream = _tracks(service, person, batched, still)
        queue: asyncio.Queue[list[bytes] | BaseException] = asyncio.Queue()
        pumping = asyncio.create_task(pump(stream, queue))
        publisher = asyncio.create_task(_publishing(service))
        before: list[str] = []
        after: list[str] = []
        ended: BaseException | None = None
        try:
            while len(before) < 6:
                before += await collect(queue, 0.5)
            await asyncio.to_thread(_write_elsewhere, node.config.directory, *change)
            try:
                await collect(queue, _SEEN_WITHIN_S)  # the change is seen within this
                after = await collect(queue, 1.5)
            except ends as exc:
                ended = exc
        finally:
            for task in (publisher, pumping):
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await stream.aclose()  # type: ignore[attr-defined]
            await service.close()
        return before, after, ended

    return asyncio.run(asyncio.wait_for(run(), 120))


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_a_flowing_stream_whose_token_another_process_revokes_ends_and_is_audited_once(
    jpn: Node, batched: bool, bus: Bus
) -> None:
    person = _analyst(jpn)
    token_id, token, _ = jpn.credentials.issue(None, "sato", days=1)
    still = partial(jpn.credentials.still, token)
    change = ("revoke-token", token_id)
    before, after, ended = _flowing(jpn, person, batched, still, change, AuthenticationError, bus)
    assert before, "the token let them follow before"
    assert isinstance(ended, AuthenticationError), f"the stream went on after its token was revoked: {after}"
    assert "revoked" in str(ended)
    refusals = _refusals(jpn, "ws")
    assert len(refusals) == 1, f"the refusal that ended it is audited once: {refusals}"


def test_an_idle_stream_whose_token_expires_ends_then(jpn: Node, bus: Bus) -> None:
    """Nothing published; the (fake) clock passes the token's expiry: the stream ends within about a
    second of it, as a request with the token would be refused from then on."""
    person = _analyst(jpn)
    token = jpn.credentials.issue(None, "sato", days=1)[1]
    clock = jpn.kernel.clock
    assert isinstance(clock, FakeClock)

    async def run() -> tuple[BaseException | None, float]:
        service = await _service(jpn, bus)
        stream = _tracks(service, person, False, partial(jpn.credentials.still, token))
        queue: asyncio.Queue[list[bytes] | BaseException] = asyncio.Queue()
        pumping = asyncio.create_task(pump(stream, queue))
        ended: BaseException | None = None
        try:
            assert await collect(queue, 1.0) == []  # idle, open
            clock.advance(days=2)
            passed = time.monotonic()
            try:
                await collect(queue, _SEEN_WITHIN_S + 2)
            except AuthenticationError as exc:
                ended = exc
            return ended, time.monotonic() - passed
        finally:
            pumping.cancel()
            await asyncio.gather(pumping, return_exceptions=True)
            await stream.aclose()  # type: ignore[attr-defined]
            await service.close()

    ended, took = asyncio.run(asyncio.wait_for(run(), 120))
    assert isinstance(ended, AuthenticationError), "the stream outlived its token"
    assert "expired" in str(ended)
    assert took < _SEEN_WITHIN_S
    assert len(_refusals(jpn, "ws")) == 1


def test_a_flowing_visitor_whose_visit_another_process_ends_has_the_stream_ended(jpn: Node, bus: Bus) -> None:
    """The visit (in force at the node's fixed clock until an hour on) is ended by another process,
    as any writer of the visits table does: no track is sent after it is seen, the stream ends."""
    person = _analyst(jpn, "kim")
    visit = jpn.duties.authorise_visit(
        None, "kim", highest="特定秘密", starts=_START - timedelta(hours=1), ends=_START + timedelta(hours=1),
        purpose="liaison",
    )  # fmt: skip

    change = ("end-visit-row", visit["id"])
    before, after, ended = _flowing(jpn, person, True, None, change, AccessDenied, bus)
    assert before, "inside the visit the visitor reads the stream"
    assert isinstance(ended, AccessDenied), f"the stream went on after the visit was ended: {after}"
    assert any(c.rule == "visit" and not c.passed for c in ended.decision.checks)
    assert len(_refusals(jpn, "ws")) == 1


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_an_idle_stream_whose_token_another_process_revokes_ends_within_a_second(
    jpn: Node, batched: bool, bus: Bus
) -> None:
    """Nothing published; another process revokes the token the stream was opened with: it ends
    within about a second (the idle check closing the bus's subscription under it, on NATS the
    JetStream consumer's), audited once, while a stream on another token of theirs goes on."""
    person = _analyst(jpn)
    token_id, token, _ = jpn.credentials.issue(None, "sato", days=1)
    kept = jpn.credentials.issue(None, "sato", days=1)[1]

    async def run() -> tuple[BaseException | None, float, list[str]]:
        service = await _service(jpn, bus)
        stream = _tracks(service, person, batched, partial(jpn.credentials.still, token))
        other = _tracks(service, person, batched, partial(jpn.credentials.still, kept))
        queue: asyncio.Queue[list[bytes] | BaseException] = asyncio.Queue()
        others: asyncio.Queue[list[bytes] | BaseException] = asyncio.Queue()
        pumping = [asyncio.create_task(pump(stream, queue)), asyncio.create_task(pump(other, others))]
        ended: BaseException | None = None
        try:
            assert await collect(queue, 1.0) == []  # idle, open
            await asyncio.to_thread(_write_elsewhere, jpn.config.directory, "revoke-token", token_id)
            revoked = time.monotonic()
            try:
                await collect(queue, _SEEN_WITHIN_S + 2)
            except AuthenticationError as exc:
                ended = exc
            took = time.monotonic() - revoked
            return ended, took, await collect(others, 1.0)  # raises if the other one ended
        finally:
            for task in pumping:
                task.cancel()
            await asyncio.gather(*pumping, return_exceptions=True)
            for s in (stream, other):
                await s.aclose()  # type: ignore[attr-defined]
            await service.close()

    ended, took, _ = asyncio.run(asyncio.wait_for(run(), 120))
    assert isinstance(ended, AuthenticationError), "the idle stream outlived its revoked token"
    assert "revoked" in str(ended)
    assert took < _SEEN_WITHIN_S, f"ended {took:.1f} s after the revocation"
    refusals = _refusals(jpn, "ws")
    assert len(refusals) == 1, f"the refusal that ended it is audited once: {refusals}"
