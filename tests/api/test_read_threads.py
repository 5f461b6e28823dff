"""The read routes' threads (``_in_read_thread``): at most ``READ_THREADS`` works at once, first come
first served, each in its caller's context, its error raised to its caller, a cancelled caller's
work finished (not abandoned half-way) and the bound kept meanwhile; idle threads end and new work
starts them again. Every bounded wait has a time-out."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from gsomia.api import _items
from gsomia.api._items import READ_THREADS, _in_read_thread

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
