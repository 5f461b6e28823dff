"""Attack: this node's clock set back past what its stream replay memory already forgot.

The receiver remembers every (signed batch, leaf) and every track update it took for a window
(``_service._remember``), and forgets rows seen before ``now`` less that window. A batch's signature
is fresh for ``max_clock_skew`` either side of this node's clock, so with a clock that only moves on,
a batch old enough to be forgotten is refused as ``stale-batch`` before the memory is asked. Step
the clock back (an operator's correction, NTP stepping a clock that ran ahead) by more than the
window's margin over twice the skew, and a batch the memory forgot while the clock read ahead is
fresh again: on the code before, it was taken a second time, each of its tracks shown twice. The
memory now keeps, in the store, the instant it forgot up to, raised only, and refuses as a replay a
batch signed before that instant plus the skew (its earlier arrival may be among the rows gone),
whatever the clock reads after, in every process of the node (docs/STREAM.md, "The originator's
signature, end to end").
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.stream.test_exactly_once import _link, _message, _refused, _track, pair

from gsomia.errors import LinkError
from gsomia.node import Node, load_config
from gsomia.store import SignedArrival, Store
from gsomia.store import _store as store_module
from gsomia.stream import StreamService
from gsomia.stream._origin import sign_batch

__all__ = ["pair"]
SKEW = timedelta(minutes=5)  # the nodes' max_clock_skew (the default)
MINUTE_US = 60_000_000


def test_a_batch_forgotten_while_the_clock_ran_ahead_is_refused_after_it_is_set_back(pair: Any) -> None:
    """KOR's batch taken at T; JPN's clock runs 12 minutes on (past the memory's 11) and another
    batch's commit forgets the first; the clock is set back to T + 1 s, where the first batch's
    signature is fresh again. Replayed on KOR's own link to another process of JPN (started after
    the step: nothing of the first process's memory in it), it is refused as ``replayed-batch`` and
    nothing is shown; a batch KOR signs once the clock is past the bound again is taken."""
    nodes, directory, clock = pair
    kor, jpn = nodes["KOR"], nodes["JPN"]
    start = clock.now
    first = sign_batch(kor.ring, [_message(kor, _track(0))], kor.clock())

    async def before() -> StreamService:
        service = StreamService(jpn)
        assert await _link(kor, service, [first]) == [2]
        clock.advance(minutes=12)  # the clock runs ahead (or is put ahead)
        later = sign_batch(kor.ring, [_message(kor, _track(1))], kor.clock())
        assert await _link(kor, service, [later]) == [2]  # its commit forgets the first batch
        return service

    service = asyncio.run(before())
    assert service.stats.emitted == 2
    clock.now = start + timedelta(seconds=1)  # set back: the first batch's signature is fresh again
    other = Node(load_config(directory / "jpn"), clock=clock)  # a process started after the step
    try:
        again = StreamService(other)
        ended = asyncio.run(_refused(kor, again, [first]))
        assert again.stats.emitted == 0, "a batch taken before was shown again"
        assert isinstance(ended, LinkError)
        assert ended.detail == "replayed-batch"
        clock.now = start + timedelta(minutes=1) + SKEW + timedelta(seconds=10)  # past the bound
        fresh = sign_batch(kor.ring, [_message(kor, _track(2))], kor.clock())
        assert asyncio.run(_link(kor, again, [fresh])) == [2]
        assert again.stats.emitted == 1
    finally:
        other.close()


@pytest.mark.parametrize("memory", ["own-file", "in-database"])
def test_the_bound_a_memory_forgot_up_to_outlives_the_process_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: str
) -> None:
    """The store itself, SQLite, the memory in its own file (the machine's boot known) or in the
    node's database: a commit at minute 20 forgets rows seen before minute 9; a new process's store
    (nothing of the first one's in its memory) at minute 1 refuses as a replay the batch seen at
    minute 0 and a batch signed at minute 8, and takes one signed at minute 9 and later."""
    boot = "0a0a0a0a-0000-4000-8000-00000000000a" if memory == "own-file" else None
    monkeypatch.setattr(store_module, "boot_id", lambda: boot)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    _forgotten_then_set_back(url)


def test_the_bound_a_memory_forgot_up_to_outlives_the_process_on_postgresql(
    postgres_status: str | None,
) -> None:
    from tests.conftest import postgres_schema

    with postgres_schema(postgres_status) as url:
        _forgotten_then_set_back(url)


def _forgotten_then_set_back(url: str) -> None:
    def arrival(batch: str, at_minute: float, signed_minute: float) -> SignedArrival:
        at, signed = int(at_minute * MINUTE_US), int(signed_minute * MINUTE_US)
        return SignedArrival(batch, "KOR", (0,), (f"{batch}-k",), at, signed)

    first = Store(url)
    first.migrate()
    try:
        assert first.remember_signed_arrivals([arrival("b0", 0, 0)], -11 * MINUTE_US) == [([], set())]
        assert first.remember_signed_arrivals([arrival("b20", 20, 20)], 9 * MINUTE_US) == [([], set())]
    finally:
        first.close()
    second = Store(url)  # another process, or this one restarted, with the clock set back
    try:
        back = -10 * MINUTE_US  # what the clock set back to minute 1 forgets before: nothing new
        (replayed,) = second.remember_signed_arrivals([arrival("b0", 1, 0)], back)
        assert replayed.replayed == [0], "a batch the memory forgot was taken again"
        assert second.remember_signed_arrivals([arrival("b8", 1, 8)], back)[0].replayed == [0]
        assert second.remember_signed_arrivals([arrival("b9", 1, 9)], back) == [([], set())]
        assert second.remember_signed_arrivals([arrival("b9", 2, 9)], back)[0].replayed == [0]
    finally:
        second.close()
