"""Attack: a partner sends this node tracks again, as many as it can without losing its link.

A hub's queue (JetStream) hands a track again only as fast as it can: at most 1,000 out at once,
each again once per 3 s ack wait, so the receiver holds each sender to ``HANDOFF_RESENDS``
duplicates within 60 s, counted in its store (``StreamService._bound_resends``). The adversary's
ways round that bound:

- the edge of a fixed window: the bound's worth just before a window ends and again just after
  it, twice the bound within a second. The count is over the last 60 s, whatever the instant;
- two processes of the node counting at once (the count restarted in two statements could lose
  one process's count, or restart twice): every count includes every earlier one, in two OS
  processes on one SQLite file and on one PostgreSQL schema.

The originator's own duplicates (its updates again under a new signature, on its own link) are
held to the same bound through the same count: ``tests/stream/test_originator_resends.py``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tests.stream._jpn import NOW

from gsomia.errors import LinkError
from gsomia.node import Node
from gsomia.stream import StreamService
from gsomia.stream._bus import HANDOFF_MAX_ACK_PENDING, HANDOFF_RESENDS
from gsomia.testing import FakeClock, make_node

KOR = SimpleNamespace(originator="KOR")  # the group whose tracks are counted: only named in the refusal


def _count(service: StreamService, sender: str, count: int) -> str | None:
    """``sender`` sends ``count`` duplicates now: ``None`` if taken, else the refusal's code."""
    try:
        asyncio.run(service._bound_resends(sender, KOR, count))  # type: ignore[arg-type]
    except LinkError as exc:
        return exc.detail
    return None


@pytest.fixture
def jpn(tmp_path: Path, store_url: str) -> Any:
    clock = FakeClock(NOW)
    node = make_node(tmp_path / "jpn", "JPN", database_url=store_url, clock=clock)
    try:
        yield node, clock, StreamService(node)
    finally:
        node.close()


def test_twice_the_bound_across_a_window_edge_is_refused(jpn: tuple[Node, FakeClock, StreamService]) -> None:
    """One duplicate starts a count; the bound's worth less one 59.9 s later is taken (the bound,
    not more, within 60 s); the bound's worth again 0.2 s later is twice the bound within 0.2 s:
    refused, although a fixed window that started at the first duplicate has just ended."""
    _, clock, service = jpn
    assert _count(service, "USA", 1) is None
    clock.advance(seconds=59.9)
    assert _count(service, "USA", HANDOFF_RESENDS - 1) is None
    clock.advance(seconds=0.2)
    assert _count(service, "USA", HANDOFF_RESENDS) == "replayed-batch"
    assert _count(service, "KOR", 1) is None  # another sender's count is its own


def test_the_bound_holds_over_any_minute_and_a_genuine_redelivery_rate_stays_under_it(
    jpn: tuple[Node, FakeClock, StreamService],
) -> None:
    """The most a hub's JetStream can hand again, every pending track again at every ack wait, for
    five minutes, is taken throughout; one more duplicate at any point of that is refused; and a
    sender refused for replaying is taken again once the last minute holds no more than the bound."""
    _, clock, service = jpn
    for _ in range(100):  # 5 minutes
        assert _count(service, "USA", HANDOFF_MAX_ACK_PENDING) is None
        clock.advance(seconds=3)
    clock.advance(seconds=-3)
    assert _count(service, "USA", 1) == "replayed-batch"  # 21 redeliveries within the last 60 s
    clock.advance(seconds=61)
    assert _count(service, "USA", HANDOFF_RESENDS) is None
    assert _count(service, "USA", 1) == "replayed-batch"


# --- two processes of one node counting at once ---


def _sender(directory: str, start: float, sends: int) -> list[tuple[str | None, int]]:
    """A process of JPN's node (its own ``StreamService`` over the same store), counting ``sends``
    duplicates of the USA one at a time from ``start`` on: each refusal and the count it named."""
    node = Node.open(Path(directory), migrate=False)
    try:
        service = StreamService(node)
        while time.time() < start:  # both processes start in the same millisecond
            pass
        seen: list[tuple[str | None, int]] = []
        for _ in range(sends):
            try:
                asyncio.run(service._bound_resends("USA", KOR, 1))  # type: ignore[arg-type]
                seen.append((None, 0))
            except LinkError as exc:
                seen.append((exc.detail, int(str(exc).split("sent again ")[1].split(" ")[0])))
        return seen
    finally:
        node.close()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="fork only")
def test_two_processes_counting_past_the_bound_at_once_lose_no_count(tmp_path: Path, store_url: str) -> None:
    """The hub is one duplicate from the bound; two processes of JPN each count 150 more, one at a
    time, at once. Every one of them is refused (none slips through a count restarted by the
    other), each names a count no other named (none counted twice or lost), and the largest is
    everything counted."""
    make_node(tmp_path / "jpn", "JPN", database_url=store_url).close()
    node = Node.open(tmp_path / "jpn", migrate=False)  # on the node's clock, as the processes are
    try:
        assert _count(StreamService(node), "USA", HANDOFF_RESENDS) is None
    finally:
        node.close()
    context = multiprocessing.get_context("fork")
    sends = 150
    with context.Pool(2) as pool:
        results = pool.starmap(_sender, [(str(tmp_path / "jpn"), time.time() + 2.0, sends)] * 2)
    every = [seen for result in results for seen in result]
    assert {code for code, _ in every} == {"replayed-batch"}
    counts = sorted(count for _, count in every)
    assert counts == list(range(HANDOFF_RESENDS + 1, HANDOFF_RESENDS + 2 * sends + 1))
