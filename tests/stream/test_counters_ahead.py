"""The stream reads the store's generation counters ahead, in a worker thread, while tracks flow
(``StreamService._refresh_counters``), so its event loop finds them fresh: the same counters, read
as often, so a change made by another process still reaches a live link within the watch's
interval. The adversary's case: a partner's key revoked by another process of the node while the
partner streams on a link opened with it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from gsomia._codec import label_to_dict
from gsomia.core.ballistics import track_updates
from gsomia.core.tracks import track_update_to_json
from gsomia.demo import network
from gsomia.errors import LinkError
from gsomia.kernel import DEFAULT_INTERVAL, ChangeWatch
from gsomia.node import Node
from gsomia.store import SharedState
from gsomia.stream import StreamService, launches
from gsomia.stream._link import TRACKS, initiate
from gsomia.stream._origin import sign_batch
from gsomia.testing import FakeClock, make_node

_GIVE_UP_S = 60.0  # the link not ended this long after the revocation: the test fails
_BEAT_S = 0.005  # the stall probe's sleep
_OWN_TURN_S = 0.01  # an overrun up to this is the loop's own work (a frame sealed or read), not a stall


class _Stalls:
    """How long the event loop could not take its turn since :meth:`since`: the time by which each
    short sleep of a probe task overran (the loop busy elsewhere or the process given no CPU)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._counting = False

    def since(self) -> None:
        self._counting = True

    async def watch(self) -> None:
        while True:
            began = time.monotonic()
            await asyncio.sleep(_BEAT_S)
            if self._counting:
                self.total += max(0.0, time.monotonic() - began - _BEAT_S - _OWN_TURN_S)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_counters_are_read_ahead_only_once_read_and_only_when_due(tmp_path: Path) -> None:
    node = make_node(tmp_path / "kor", "KOR")
    try:
        monotonic = _Clock()
        watch = ChangeWatch(SharedState(node.store), interval=0.25, monotonic=monotonic)
        assert not watch.due_within(1.0)  # never read: the first use reads, not a thread ahead
        watch.generation("peers")
        assert watch.reads == 1
        assert not watch.due_within(0.1)
        monotonic.now += 0.2
        assert watch.due_within(0.1)
        watch.refresh()  # ahead, off the loop
        assert watch.reads == 2
        assert watch.fresh("peers") is not None  # the loop's use finds it fresh: no read there
        watch.generation("peers")
        assert watch.reads == 2
        watch.stale()  # a change announced: the next use reads, not a thread ahead
        assert not watch.due_within(1.0)
        watch.generation("peers")
        assert watch.reads == 3
    finally:
        node.close()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Node, Node, Node]]:
    """KOR, and JPN as two processes (two ``Node`` objects over one directory and store)."""
    clock = FakeClock(datetime(2024, 3, 1, tzinfo=UTC))
    kor = make_node(tmp_path / "kor", "KOR", clock=clock)
    jpn = make_node(tmp_path / "jpn", "JPN", clock=clock)
    kor.exchange.register_peer(None, jpn.exchange.identity(), ["kor-jpn-gsomia-2016"])
    jpn.exchange.register_peer(None, kor.exchange.identity(), ["kor-jpn-gsomia-2016"])
    network.assure({"KOR": kor, "JPN": jpn})
    operator = Node.open(tmp_path / "jpn", clock=clock)
    yield kor, jpn, operator
    for node in (operator, jpn, kor):
        node.close()


def test_a_partner_key_revoked_by_another_process_ends_a_streaming_link(
    nodes: tuple[Node, Node, Node],
) -> None:
    kor, jpn, operator = nodes
    label = label_to_dict(StreamService(kor).stream_label())
    launch = launches(2019)[4]
    flight = track_updates(
        launch.fly(), track_id="KOR-live", originator="KOR", launched=kor.clock(),
        missile_class=launch.missile_class,
    )  # fmt: skip
    samples = [track_update_to_json(u) for u in flight if u.points]
    reader_threads: set[str] = set()
    shared = jpn.kernel.watch._shared
    read = shared.generations

    def counted() -> dict[str, int]:
        reader_threads.add(threading.current_thread().name)
        return read()

    shared.generations = counted  # type: ignore[method-assign]

    async def run() -> tuple[BaseException | None, int, float, float]:
        stalled = _Stalls()
        watching = asyncio.create_task(stalled.watch())
        inbound: asyncio.Queue[bytes] = asyncio.Queue()
        outbound: asyncio.Queue[bytes] = asyncio.Queue()
        service = StreamService(jpn)
        await service.start()
        peer = kor.exchange.peer("JPN")
        assert peer is not None
        first, finish = initiate(kor.ring, peer, kor.clock())
        await inbound.put(first)
        task = asyncio.create_task(service.serve_link(inbound.get, outbound.put))
        session = finish(await outbound.get())
        sent = 0
        revoked = False
        loop = asyncio.get_running_loop()
        began = loop.time()
        while not task.done() and loop.time() - began < _GIVE_UP_S:
            track = dict(samples[sent % len(samples)], update_ts=f"2024-03-01T00:00:00.{sent:06d}+00:00")
            message = orjson.dumps(
                {"track": track, "label": label, "originator": "KOR", "recipient": "JPN", "via": None}
            )
            for wire in session.seal(TRACKS, sign_batch(kor.ring, [message], kor.clock()), 0.0):
                await inbound.put(wire)
            sent += 1
            await asyncio.sleep(0.01)
            if not revoked and loop.time() - began > 0.5:  # streaming: another process revokes the key
                kid = kor.ring.signing_key(kor.clock())[0]
                await asyncio.to_thread(operator.exchange.revoke_peer_key, None, "KOR", kid, kor.clock())
                revoked_at = loop.time()
                stalled.since()
                revoked = True
        error: BaseException | None = None
        try:
            await asyncio.wait_for(task, _GIVE_UP_S)
        except LinkError as exc:
            error = exc
        ended_after = loop.time() - revoked_at
        watching.cancel()
        await service.close()
        return error, sent, ended_after, stalled.total

    error, sent, ended_after, stalled = asyncio.run(run())
    # The watch's promise (docs/SECURITY.md, "A quarter of a second of stale keys"): the counters are
    # read again at most its interval after the last read, at their next use. A use needs the event
    # loop's turn; on a machine that gives the process no turn for seconds (a suite on 2 cores beside
    # other runs: 4.24 s was seen) the link ends that much later without the watch being at fault. So
    # the bound holds for the time the loop could take its turns: the end, less the loop's measured
    # stalls since the revocation, within the interval and a margin; it fails if the counters are not
    # read again within their interval while the loop turns.
    assert ended_after - stalled < DEFAULT_INTERVAL + 1.0, (
        f"the link ended {ended_after:.2f} s after the revocation, {stalled:.2f} s of it the event loop's"
        " stalls"
    )
    assert isinstance(error, LinkError)  # its frames' signatures, or its session's key, refused
    assert error.detail in {"bad-origin-signature", "revoked-key"}
    assert sent > 10
    assert any(name != "MainThread" for name in reader_threads)  # read ahead in a worker thread
