"""The read routes' threads (``_in_read_thread``): at most ``READ_THREADS`` works at once, first come
first served, each in its caller's context, its error raised to its caller, a cancelled caller's
work finished (not abandoned half-way) and the bound kept meanwhile, a caller cancelled before a
thread took its work up running nothing (a read of a caller who is gone neither decided nor audited;
one already under way audited once, as served); idle threads end and new work starts them again.
Every bounded wait has a time-out."""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.node_fixtures import analyst, received_from_kor

from gsomia.api import _items, create_app
from gsomia.api._items import READ_THREADS, _in_read_thread
from gsomia.node import Node
from gsomia.testing import make_node

WAIT_S = 10.0
_seen: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("seen", default=None)


def test_at_most_read_threads_at_once_first_come_first_served() -> None:
    running = 0
    most = 0
    started: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            started.append(n)
        time.sleep(0.01)
        with lock:
            running -= 1
        return n * n

    async def run() -> list[int]:
        return await asyncio.wait_for(
            asyncio.gather(*(_in_read_thread(lambda n=n: work(n)) for n in range(5 * READ_THREADS))), WAIT_S
        )

    assert asyncio.run(run()) == [n * n for n in range(5 * READ_THREADS)]
    assert most <= READ_THREADS
    # queued in order: each work starts no later than READ_THREADS places after its turn
    assert all(abs(place - n) < READ_THREADS for place, n in enumerate(started))


def test_work_runs_in_its_callers_context_and_its_error_is_the_callers() -> None:
    class Refused(Exception):
        pass

    async def one(n: int) -> str:
        context = {"request_id": f"r{n}"}
        _seen.set(context)

        def work() -> str:
            found = _seen.get()
            assert found is context  # the caller's own dict: what the thread names there, it sees
            found["actor"] = f"a{n}"
            if n % 2:
                raise Refused(f"r{n}")
            return found["request_id"]

        try:
            answer = await _in_read_thread(work)
        except Refused as exc:
            answer = f"refused {exc}"
        assert context["actor"] == f"a{n}"
        return answer

    async def run() -> list[str]:
        return await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(20))), WAIT_S)

    assert asyncio.run(run()) == [f"refused r{n}" if n % 2 else f"r{n}" for n in range(20)]


def test_a_cancelled_callers_work_is_finished_and_still_holds_its_thread() -> None:
    release = threading.Event()
    finished = threading.Event()
    order: list[str] = []

    def slow() -> None:
        release.wait(WAIT_S)
        order.append("slow")
        finished.set()

    def blocking() -> None:
        release.wait(WAIT_S)

    async def run() -> None:
        held = [asyncio.ensure_future(_in_read_thread(blocking)) for _ in range(READ_THREADS - 1)]
        cancelled = asyncio.ensure_future(_in_read_thread(slow))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        waiting = asyncio.ensure_future(_in_read_thread(lambda: order.append("next")))
        await asyncio.sleep(0.1)
        assert order == []  # every thread busy, the cancelled caller's included: the next work waits
        release.set()
        await asyncio.wait_for(waiting, WAIT_S)
        await asyncio.wait_for(asyncio.gather(*held), WAIT_S)
        with pytest.raises(asyncio.CancelledError):
            await cancelled

    asyncio.run(run())
    assert finished.wait(WAIT_S)
    assert sorted(order) == ["next", "slow"]


def test_idle_threads_end_and_new_work_starts_them_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_items, "_IDLE_S", 0.05)

    def reads() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "gsomia-read")

    async def run() -> None:
        before = reads()
        assert await asyncio.wait_for(
            asyncio.gather(*(_in_read_thread(lambda n=n: n) for n in range(3 * READ_THREADS))), WAIT_S
        ) == list(range(3 * READ_THREADS))
        deadline = time.monotonic() + WAIT_S
        while reads() > before and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert reads() <= before
        assert await asyncio.wait_for(_in_read_thread(lambda: "again"), WAIT_S) == "again"

    asyncio.run(run())


def test_a_caller_cancelled_while_it_waits_runs_nothing() -> None:
    release = threading.Event()
    ran: list[str] = []

    async def run() -> None:
        held = [
            asyncio.ensure_future(_in_read_thread(lambda: release.wait(WAIT_S))) for _ in range(READ_THREADS)
        ]
        await asyncio.sleep(0.05)
        gave_up = asyncio.ensure_future(_in_read_thread(lambda: ran.append("gave up")))
        after = asyncio.ensure_future(_in_read_thread(lambda: ran.append("after")))
        await asyncio.sleep(0.05)
        gave_up.cancel()
        release.set()
        await asyncio.wait_for(asyncio.gather(*held, after), WAIT_S)

    asyncio.run(run())
    assert ran == ["after"]


class _Gated:
    """A read threads' queue whose takers hold what they took until ``gate`` opens, ``taken`` set
    once they hold it: the moment between a work handed out and a thread taking it up, held open."""

    def __init__(self, inner: queue.SimpleQueue[Any], taken: threading.Event, gate: threading.Event) -> None:
        self.inner, self.taken, self.gate = inner, taken, gate

    def put(self, job: Any) -> None:
        self.inner.put(job)

    def get(self, timeout: float | None = None) -> Any:
        job = self.inner.get(timeout=timeout)
        self.taken.set()
        assert self.gate.wait(WAIT_S)
        return job

    def empty(self) -> bool:
        return self.inner.empty()


def _gated_pool(taken: threading.Event, gate: threading.Event) -> _items._ReadThreads:
    """The running loop's read threads, their queue gated (:class:`_Gated`)."""
    pool = _items._ReadThreads()
    pool._queue = _Gated(pool._queue, taken, gate)  # type: ignore[assignment]
    _items._pools[asyncio.get_running_loop()] = pool
    return pool


async def _drained(pool: _items._ReadThreads) -> None:
    deadline = time.monotonic() + WAIT_S
    while pool._running and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert pool._running == 0


def test_a_caller_cancelled_before_its_thread_takes_its_work_up_runs_nothing() -> None:
    taken, gate = threading.Event(), threading.Event()
    ran: list[str] = []

    async def run() -> None:
        pool = _gated_pool(taken, gate)
        gave_up = asyncio.ensure_future(_in_read_thread(lambda: ran.append("gave up")))
        await asyncio.sleep(0)  # handed out to a thread, which holds it
        assert taken.wait(WAIT_S)
        gave_up.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await gave_up
        await _drained(pool)
        # its place is free again: READ_THREADS works at once, none waiting for it
        everyone = [_in_read_thread(lambda n=n: n) for n in range(READ_THREADS)]
        assert await asyncio.wait_for(asyncio.gather(*everyone), WAIT_S) == list(range(READ_THREADS))

    asyncio.run(run())
    assert ran == []


@pytest.fixture
def served(tmp_path: Path) -> Any:
    node = make_node(tmp_path / "jpn", "JPN")
    analyst(node)
    received_from_kor(node, "gone-0")
    yield node
    node.close()


def _reads(node: Node) -> list[str]:
    return [f"{r.subject} {r.outcome}" for r in node.store.audit(kind="item.read")]


def _read_cancelled(
    node: Node, token: str, gate: threading.Event, when: Callable[[], None], then: Callable[[], None]
) -> None:
    """``GET /items/gone-0`` through the app, its work held by the gated read threads until ``gate``
    opens: ``when`` runs once a thread holds it, the caller is cancelled, ``then`` runs, the gate
    opens and every work handed out ends."""
    app = create_app(node)
    taken = threading.Event()

    async def run() -> None:
        pool = _gated_pool(taken, gate)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://node"
        ) as client:
            asked = asyncio.ensure_future(client.get("/items/gone-0", headers=headers))
            deadline = time.monotonic() + WAIT_S
            while not taken.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.005)  # the app runs to its read's hand-off
            assert taken.is_set()
            when()
            asked.cancel()
            then()
            gate.set()
            with pytest.raises(asyncio.CancelledError):
                await asked
            await _drained(pool)

    asyncio.run(run())


Held = tuple[str, list[str], threading.Event, threading.Event]


@pytest.fixture
def held(
    served: Node, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, list[str], threading.Event, threading.Event]:
    """The reader's token, the reads audited so far, and the node's reads each held once started
    until the second event is set."""
    _, token, _ = served.credentials.issue(None, "reader")
    started, go = threading.Event(), threading.Event()
    real = served.items.read_named

    def read_named(*args: Any) -> Any:
        started.set()
        assert go.wait(WAIT_S)
        return real(*args)

    monkeypatch.setattr(served.items, "read_named", read_named)
    return token, _reads(served), started, go


def test_a_read_cancelled_before_its_thread_takes_it_up_is_neither_decided_nor_audited(
    served: Node, held: Held
) -> None:
    token, before, started, go = held
    go.set()
    _read_cancelled(served, token, threading.Event(), lambda: None, lambda: None)
    assert not started.is_set()  # nothing of the read ran: no decision
    assert _reads(served) == before  # not audited as served (nor refused)


def test_a_read_cancelled_once_under_way_is_audited_once_as_served(served: Node, held: Held) -> None:
    token, before, started, go = held
    gate = threading.Event()

    def under_way() -> None:  # the thread took the read up before its caller was cancelled
        gate.set()
        assert started.wait(WAIT_S)

    _read_cancelled(served, token, gate, under_way, go.set)
    assert _reads(served) == [*before, "gone-0 allowed"]  # decided, so audited: once, as served
