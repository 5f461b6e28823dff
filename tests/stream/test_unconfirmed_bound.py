"""A receiver's window roots waiting for their confirmation are bounded: a sender flooding roots while
the store is slow to commit their records holds its own link up (the taking waits, the reading
behind it), never the receiver's memory; once the records commit, each root is confirmed, in order.

Before, each verified root went on an unbounded queue of confirmations and the taking went on: under
10,000 roots with no commit, all 10,000 records and confirmations waited in memory at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gsomia.node import Node
from gsomia.store import AuditRow
from gsomia.stream import StreamService, _service
from gsomia.testing import make_node

_FLOOD = 10_000


@pytest.fixture
def jpn(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path / "jpn", "JPN")
    yield node
    node.close()


class _Session:
    """What the taking needs of a link session: its peer, and ACK frames sealed (here: the body)."""

    peer = "KOR"

    @staticmethod
    def seal(_kind: int, body: bytes, _now: float) -> list[bytes]:
        return [body]


def test_a_flood_of_window_roots_waits_within_the_bound_and_is_confirmed_in_order_once_recorded(
    jpn: Node,
) -> None:
    async def run() -> tuple[int, int, int, list[int]]:
        service = StreamService(jpn)
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[None]] = []  # the records not yet committed: held until released

        def record(_rows: list[AuditRow]) -> asyncio.Future[None]:
            done = loop.create_future()
            pending.append(done)
            return done

        service._memory.record = record  # type: ignore[method-assign]
        sent: list[int] = []

        async def send(frame: bytes) -> None:
            sent.append(_service.ACK_BODY.unpack(frame)[0])

        read_so_far: asyncio.Queue[Any] = asyncio.Queue()
        for n in range(1, _FLOOD + 1):
            read_so_far.put_nowait(_service._Rooted(n, {"root": n}))
        read_so_far.put_nowait(None)
        taking = asyncio.create_task(service._take_in_order(_Session(), send, read_so_far))  # type: ignore[arg-type]
        for _ in range(200):  # let it take all it will
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        held = len(pending)
        unread = read_so_far.qsize()
        early = len(sent)
        assert not taking.done(), "it waits for the records, it does not give up"
        released = 0
        while not taking.done():  # the store catches up: every record commits, in order
            for done in pending[released:]:
                done.set_result(None)
            released = len(pending)
            await asyncio.sleep(0.01)
        await taking
        await service.close()
        return held, unread, early, sent

    async def bounded() -> tuple[int, int, int, list[int]]:
        return await asyncio.wait_for(run(), 120)  # the whole run, the release included

    held, unread, early, sent = asyncio.run(bounded())
    assert early == 0, "nothing confirmed before its record was committed"
    assert held < _FLOOD // 10, f"{held} roots' records and confirmations waited at once"
    # the queue's, the one the confirming task awaits, and the one the taking waits to queue
    assert held <= _service._UNCONFIRMED_MOST + 2
    assert unread >= _FLOOD - _service._UNCONFIRMED_MOST - 1, "the taking waited, and the reading behind it"
    assert sent == list(range(1, _FLOOD + 1)), "each root confirmed once its record was, in order"


def test_a_record_that_fails_while_the_taking_waits_ends_the_link_rather_than_hanging(jpn: Node) -> None:
    """The taking waits on a full queue of confirmations; the oldest root's record fails to commit:
    the link ends with that failure (unconfirmed: the sender sends those tracks again), at once."""

    async def run() -> BaseException | None:
        service = StreamService(jpn)
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[None]] = []

        def record(_rows: list[AuditRow]) -> asyncio.Future[None]:
            pending.append(loop.create_future())
            return pending[-1]

        service._memory.record = record  # type: ignore[method-assign]
        sent: list[bytes] = []

        async def send(frame: bytes) -> None:
            sent.append(frame)

        read_so_far: asyncio.Queue[Any] = asyncio.Queue()
        for n in range(1, _FLOOD + 1):
            read_so_far.put_nowait(_service._Rooted(n, {"root": n}))
        taking = asyncio.create_task(service._take_in_order(_Session(), send, read_so_far))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        assert not taking.done()
        pending[0].set_exception(OSError("the store went away"))
        try:
            await asyncio.wait_for(taking, 10)
        except OSError as exc:
            return exc
        finally:
            await service.close()
        assert sent == []
        return None

    ended = asyncio.run(run())
    assert isinstance(ended, OSError), "the taking waited on, past the failure"
