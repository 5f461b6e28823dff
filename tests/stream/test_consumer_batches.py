"""A consumer's tracks in batches (``/stream/tracks/ws?batch=N``): many tracks a WebSocket message,
each read-decided on its own label, in order, bounded in tracks and bytes, asked for correctly."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gsomia.core.access import Person
from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import build, open_nodes, serve_in_threads
from gsomia.errors import InvalidInputError
from gsomia.node import Node
from gsomia.node._service import system_clock
from gsomia.stream import CONSUMER_BATCH, StreamService, batches, launches, parse_consumer_batch, replay
from gsomia.testing import FakeClock, make_node


async def _source(items: list[bytes], fail: Exception | None = None) -> AsyncIterator[tuple[int, bytes]]:
    for n, item in enumerate(items, 1):
        yield n, item
    if fail is not None:
        raise fail


async def _all(tracks: AsyncIterator[tuple[int, bytes]], most: int, most_bytes: int) -> list[list[bytes]]:
    return [batch async for batch in batches(tracks, most, most_bytes)]


def test_batches_keep_the_order_and_their_bounds_and_a_larger_track_goes_alone() -> None:
    items = [b"%d" % n for n in range(25)]
    items[7] = b"x" * 100  # larger than a batch's bytes: alone
    got = asyncio.run(_all(_source(items), 4, 40))
    assert [t for batch in got for t in batch] == items
    assert all(1 <= len(batch) <= 4 for batch in got)
    assert all(len(batch) == 1 or sum(map(len, batch)) <= 40 for batch in got)
    assert [items[7]] in got


def test_a_lone_track_goes_at_once_without_waiting_for_more() -> None:
    async def run() -> list[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        async def tracks() -> AsyncIterator[tuple[int, bytes]]:
            while True:
                yield 0, await queue.get()

        stream = batches(tracks(), 100)
        queue.put_nowait(b"one")
        first = await asyncio.wait_for(anext(stream), 5)  # nothing else comes: it is not held back
        await stream.aclose()
        return first

    assert asyncio.run(run()) == [b"one"]


def test_a_slow_consumer_holds_the_reading_up_at_one_batch_ahead() -> None:
    """The reader takes at most ``most`` tracks ahead of what went: a consumer that does not read
    leaves the rest to the bus's own bound (its queue), not to a buffer without one."""

    async def run() -> int:
        read = 0

        async def tracks() -> AsyncIterator[tuple[int, bytes]]:
            nonlocal read
            for n in range(10_000):
                read += 1
                yield n, b"t"

        stream = batches(tracks(), 10)
        first = await anext(stream)
        assert len(first) == 10
        for _ in range(20):  # the consumer stalls: the reader gets turns of the loop meanwhile
            await asyncio.sleep(0)
        await stream.aclose()
        return read

    assert asyncio.run(run()) <= 21  # the first batch, then at most one batch ahead (and one in hand)


def test_what_ends_the_reading_ends_the_batches_after_what_was_read() -> None:
    async def run() -> list[bytes]:
        got: list[bytes] = []

        async def follow() -> None:
            async for batch in batches(_source([b"a", b"b"], RuntimeError("bus gone")), 10):
                got.extend(batch)

        with pytest.raises(RuntimeError, match="bus gone"):
            await follow()
        return got

    assert asyncio.run(run()) == [b"a", b"b"]


@pytest.mark.parametrize("text", ["0", "1001", "-1", "", "ten", "1e3", "１０", " 10", "00000001"])
def test_a_batch_size_outside_1_to_1000_in_digits_is_refused_naming_it(text: str) -> None:
    with pytest.raises(InvalidInputError, match="batch: a number of tracks from 1 to 1000"):
        parse_consumer_batch(text)


def test_a_batch_size_in_range_is_taken() -> None:
    assert parse_consumer_batch(None) is None
    assert [parse_consumer_batch(t) for t in ("1", "50", "1000")] == [1, 50, CONSUMER_BATCH]


@pytest.fixture
def jpn(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path / "jpn", "JPN", clock=FakeClock(datetime(2024, 3, 1, tzinfo=UTC)))
    yield node
    node.close()


def _analyst(node: Node) -> Person:
    return node.people.add_person(
        None,
        {"id": "sato", "name": "sato", "nationality": "JPN", "clearance": "極秘",
         "need_to_know": ["dprk-missile"], "roles": ["analyst"]},
    )  # fmt: skip


def test_each_track_in_a_batch_is_read_decided_on_its_own_label(jpn: Node) -> None:
    """Tracks above the consumer's clearance, between tracks it may read, in what one batch would
    hold: withheld one by one, the refusal audited; the others come, in order."""
    person = _analyst(jpn)
    updates = replay(launches(2019)[2], originator="JPN", every_s=20)[:5]
    assert len(updates) == 5

    async def run() -> list[dict[str, Any]]:
        service = StreamService(jpn)
        try:
            stream = await service.subscribe_batches(person, "ws", 100)
            readable = service.stream_label()
            above = dataclasses.replace(readable, classification="特定秘密")  # over 極秘
            for n, update in enumerate(updates):
                track = orjson.dumps(track_update_to_json(update))
                await service._emit(track, above if n % 2 else readable, "direct", None)
            got: list[bytes] = []
            while len(got) < 3:
                got += await asyncio.wait_for(anext(stream), 5)
            await stream.aclose()
            return [orjson.loads(t) for t in got]
        finally:
            await service.close()

    got = asyncio.run(run())
    expected = [track_update_to_json(u)["update_ts"] for u in updates[::2]]
    assert [t["update_ts"] for t in got] == expected
    refusals = [json.loads(r.detail) for r in jpn.store.audit(kind="stream.read") if r.outcome == "refused"]
    assert refusals, "the withheld label's refusal is audited"


def _ws(endpoint: str, query: str, token: str) -> Any:
    url = endpoint.replace("http", "ws") + "/stream/tracks/ws" + query
    return connect(url, additional_headers={"Authorization": f"Bearer {token}"})


def test_a_batched_consumer_at_jpn_gets_every_track_once_in_order_in_arrays(tmp_path: Path) -> None:
    """Over the network: a feed batch at KOR, a consumer asking for batches of 50 and one asking
    for none at JPN; both get every update once, in order; the batched one in arrays of at most 50.
    A consumer asking for a batch out of range is closed (1008) naming the parameter."""
    members = build(tmp_path / "net")
    nodes = open_nodes(members, system_clock)
    endpoint = {m.party: m.endpoint for m in members}
    tokens = {m.party: json.loads((m.directory / "tokens.json").read_text()) for m in members}
    updates = [track_update_to_json(u) for u in replay(launches(2019)[9], originator="KOR", every_s=2)]
    assert len(updates) > 50
    analyst = tokens["JPN"]["analyst"]
    with (
        serve_in_threads(nodes, members),
        _ws(endpoint["JPN"], "?batch=50", analyst) as batched,
        _ws(endpoint["JPN"], "", analyst) as single,
        connect(
            endpoint["KOR"].replace("http", "ws") + "/stream/tracks/publish",
            additional_headers={"Authorization": f"Bearer {tokens['KOR']['officer']}"},
        ) as feed,
    ):
        feed.send(json.dumps(updates))
        arrays: list[list[dict[str, Any]]] = []
        while sum(map(len, arrays)) < len(updates):
            arrays.append(json.loads(batched.recv(timeout=20)))
        alone = [json.loads(single.recv(timeout=20)) for _ in updates]
        for bad in ("0", "1001", "many"):
            with (
                _ws(endpoint["JPN"], f"?batch={bad}", analyst) as refused,
                pytest.raises(ConnectionClosed) as closed,
            ):
                refused.recv(timeout=10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008
            assert "batch" in closed.value.rcvd.reason
    for node in nodes.values():
        node.close()
    assert all(isinstance(a, list) and 1 <= len(a) <= 50 for a in arrays)
    got = [t for a in arrays for t in a]
    assert [t["update_ts"] for t in got] == [u["update_ts"] for u in updates]
    assert [t["update_ts"] for t in alone] == [u["update_ts"] for u in updates]
    assert {(t["route"], t["agreement"]) for t in got} == {("direct", "kor-jpn-gsomia-2016")}
