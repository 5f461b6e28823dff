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
how many a round loses there depends on timing, and that case is left to the in-process bus.
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
from tests.stream._consuming import nats_bus

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
