"""A consumer too far behind loses the oldest tracks the bus held for it: each loss is counted in
``/metrics`` (``gsomia_stream_dropped_total``) and audited, in bounded space.

Before: the in-process bus dropped the oldest of a subscription's queue past its bound (10,000) and
counted them on the subscription alone; nothing was audited, and ``/metrics`` said nothing. Now the
consumer's reader counts what it lost once it reads again and audits it through the kernel's tally
(``stream.dropped``, code ``behind``, per person and minute): the minute's first drop a record naming
the person, the channel and how many, the rest counted, one ``refusal.tally`` record with the
minute's exact count. Here the bus holds 5 a consumer, and the consumer falls behind 12 times.

On NATS JetStream the same, one track a message (before: a subscription there never dropped nor
counted anything, so a consumer that stopped reading got every stale track, however old, once it read
again, and nothing was counted or audited). Batched consumers are counted by the same reader; on NATS
their read-ahead (at most a batch) takes tracks while each publish waits for its acknowledgement, so
how many a round loses there depends on timing. What holds whatever the timing is tested on both
buses: a batched consumer that stops reading while far more than its bound is published, then reads
again, gets each track at most once, in order, the newest ones, never more than the bound and a
batch's read-ahead stale; and every track it did not get is counted and audited (got + counted ==
published, once a last track shows it has read up to the end).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest
from tests.stream._consuming import nats_bus, pump

from gsomia.api._observe import metrics_registry
from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import build, open_nodes
from gsomia.node import Node
from gsomia.stream import Bus, InProcessBus, StreamService, launches, replay
from gsomia.testing import FakeClock

_HELD = 5  # tracks the bus holds for a consumer here (10,000 in a node)
_SENT = 20  # tracks published while the consumer does not read: it loses the oldest 15
_ROUNDS = 12


def _records(node: Node, kind: str) -> list[dict[str, Any]]:
    return [
        {"actor": r.actor, "subject": r.subject, "outcome": r.outcome, **json.loads(r.detail)}
        for r in node.store.audit(kind=kind, limit=100_000)
    ]


async def _fall_behind(node: Node, rounds: int, batched: bool, bus: Bus) -> tuple[list[int], int, bytes]:
    stream = StreamService(node, bus)
    await bus.start()
    try:
        person = node.people.person("officer")
        label = stream.stream_label()
        updates = replay(launches(2019)[9], originator="KOR", every_s=1)
        tracks = [orjson.dumps(track_update_to_json(u)) for u in updates]
        consumer: Any = (
            await stream.subscribe_batches(person, "ws", 100)
            if batched
            else await stream.subscribe(person, "ws")
        )
        got: list[int] = []  # tracks each round brought the consumer
        for _ in range(rounds):
            for track in tracks[:_SENT]:  # published while the consumer reads nothing
                await stream._emit(track, label, "local", None)
            taken = 0
            while taken < _HELD:
                taken += len(await anext(consumer)) if batched else bool(await anext(consumer))
            got.append(taken)
        await consumer.aclose()
        registry, _ = metrics_registry(node, stream, lambda: None)
        return got, getattr(stream.stats, "dropped", 0), generate_latest(registry)
    finally:
        await stream.close()


@pytest.mark.parametrize(
    ("batched", "on"),
    [(False, "in-process"), (True, "in-process"), (False, "nats")],
    ids=["one-a-message", "batched", "one-a-message-nats"],
)
def test_a_consumer_too_far_behind_has_its_lost_tracks_counted_and_audited_in_bounded_space(
    tmp_path: Path, batched: bool, on: str
) -> None:
    bus: Bus = InProcessBus(limit=_HELD) if on == "in-process" else nats_bus(limit=_HELD)
    members = build(tmp_path / "net")
    clock = FakeClock(datetime.now(UTC))  # after the keys the network was built with
    nodes = open_nodes(members, clock)
    kor = nodes["KOR"]
    try:
        got, dropped, metrics = asyncio.run(asyncio.wait_for(_fall_behind(kor, _ROUNDS, batched, bus), 120))
        lost = _SENT - _HELD
        assert got == [_HELD] * _ROUNDS  # the newest of each round reach the consumer, the oldest lost
        assert dropped == lost * _ROUNDS
        assert f"gsomia_stream_dropped_total {float(lost * _ROUNDS)}".encode() in metrics
        own = _records(kor, "stream.dropped")  # the minute's first drop, a record naming how many
        assert [(r["actor"], r["outcome"], r["channel"], r["count"]) for r in own] == [
            ("officer", "dropped", "ws", lost)
        ]
        clock.advance(seconds=61)
        kor.kernel.close_refusal_tallies()
        (tally,) = [r for r in _records(kor, "refusal.tally") if r["subject"] == "stream.dropped"]
        assert (tally["source"], tally["code"], tally["count"]) == ("officer", "behind", lost * _ROUNDS)
        kor.audit.sign_head()
        assert kor.audit.verify().ok
    finally:
        for node in nodes.values():
            node.close()


_MOST = 10  # the batched consumer's ?batch=N
_BURST = 200  # tracks published at a time while the consumer reads nothing: far more than it may hold


async def _stop_reading(node: Node, bus: Bus, rounds: int) -> tuple[list[list[int]], int, int]:
    """A consumer of batches of ``_MOST`` stops reading while ``_BURST`` tracks are published, reads
    what it is given, and again, ``rounds`` times; then one last track, read up to. The numbers of
    the tracks each round gave it (the last round: up to the last track), what the stream counted
    dropped, and how many were published."""
    stream = StreamService(node, bus)
    await bus.start()
    try:
        person = node.people.person("officer")
        label = stream.stream_label()
        update = track_update_to_json(replay(launches(2019)[9], originator="KOR", every_s=1)[0])
        consumer = await stream.subscribe_batches(person, "ws", _MOST)
        # read into a queue by a task only while the test reads (a wait on the stream itself that timed
        # out would end it): between rounds the consumer takes nothing, as one that stopped reading
        queue: asyncio.Queue[list[bytes] | BaseException] = asyncio.Queue(maxsize=1)
        reader = asyncio.create_task(pump(consumer, queue))
        number = 0

        async def publish(count: int) -> None:
            nonlocal number
            for _ in range(count):
                number += 1
                await stream._emit(orjson.dumps(dict(update, track_id=f"t{number}")), label, "local", None)

        async def next_batch(seconds: float) -> list[int]:
            batch = await asyncio.wait_for(queue.get(), seconds)
            if isinstance(batch, BaseException):
                raise batch
            assert len(batch) <= _MOST
            return [int(orjson.loads(t)["track_id"][1:]) for t in batch]

        async def read_until_quiet() -> list[int]:
            got: list[int] = []
            while True:  # what it is given now: taken until nothing comes for a while
                try:
                    got += await next_batch(2.0)
                except TimeoutError:
                    return got

        rounds_got: list[list[int]] = []
        for _ in range(rounds):
            # the consumer reads nothing while the burst is published: its first batch is taken (and
            # the read-ahead fills) at once, then nothing
            await publish(_BURST)
            rounds_got.append(await read_until_quiet())
        await publish(1)  # the last: read up to it, so every gap before it has been seen
        last, until = number, asyncio.get_running_loop().time() + 30
        tail: list[int] = []
        while last not in tail:
            assert asyncio.get_running_loop().time() < until, f"the last track never came ({tail[-5:]})"
            tail += await next_batch(10)
        rounds_got.append(tail)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await consumer.aclose()
        return rounds_got, stream.stats.dropped, number
    finally:
        await stream.close()


@pytest.mark.parametrize("on", ["in-process", "nats"])
def test_a_batched_consumer_that_stops_reading_gets_the_newest_and_every_lost_track_is_counted(
    tmp_path: Path, on: str
) -> None:
    bus: Bus = InProcessBus(limit=_HELD) if on == "in-process" else nats_bus(limit=_HELD)
    members = build(tmp_path / "net")
    clock = FakeClock(datetime.now(UTC))
    nodes = open_nodes(members, clock)
    kor = nodes["KOR"]
    rounds = 3
    try:
        got, dropped, published = asyncio.run(asyncio.wait_for(_stop_reading(kor, bus, rounds), 180))
        seen = [n for one in got for n in one]
        assert seen == sorted(set(seen)), "a track given twice, or out of order"
        # the bound: at most what the bus holds a subscription (on NATS, the client twice that),
        # the batch being made and the read-ahead stale; the rest lost, the newest kept
        for one in got[:-1]:
            assert len(one) <= 3 * _HELD + 2 * _MOST + 1, f"a stalled consumer was given {len(one)}"
        assert len(seen) + dropped == published, f"{len(seen)} given + {dropped} counted != {published}"
        assert dropped >= rounds * (_BURST - 3 * _HELD - 2 * _MOST - 1)
        clock.advance(seconds=61)
        kor.kernel.close_refusal_tallies()
        (tally,) = [r for r in _records(kor, "refusal.tally") if r["subject"] == "stream.dropped"]
        assert (tally["source"], tally["code"], tally["count"]) == ("officer", "behind", dropped)
    finally:
        for node in nodes.values():
            node.close()
