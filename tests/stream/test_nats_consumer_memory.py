"""A NATS consumer that stops reading holds, in this process, no more than the in-process bus would.

The in-process bus keeps at most ``limit`` messages for a subscription (10,000 in a node): a consumer
that stops reading (a hostile reader's stalled socket, opened as often as they like) costs the node
that and no more. On NATS the bound only chose what was *delivered*: the client library kept taking
what the server sent for the subscription, up to nats-py's own defaults (524,288 messages or 256 MB
each), so one idle consumer of a node's tracks made the node hold hundreds of MB (measured: 48,201
messages, 193 MB, for 60,000 of 4 KB published). Now the client holds at most twice ``limit``; what it
lost meanwhile is counted (a gap in the stream's sequence numbers), and a consumer that reads again
gets the newest, the oldest lost and counted, as in process. The tracks here are published by
another process of the node (a bus of its own on the same stream), so this one's publishes say
nothing of how far behind the consumer is.
"""

from __future__ import annotations

import asyncio
import time

from tests.stream._consuming import nats_bus

from gsomia.stream import NatsBus

_LIMIT = 50
_SENT = 20 * _LIMIT  # published while the consumer reads nothing


async def _stall_then_read() -> tuple[int, int, list[int], int]:
    consumer_bus = nats_bus(limit=_LIMIT)
    await consumer_bus.start()
    publisher = NatsBus(consumer_bus.url, stream=consumer_bus.stream, subject=consumer_bus.subject)
    await publisher.start()
    try:
        subscription = await consumer_bus.subscribe()
        messages = subscription.__aiter__()
        await publisher.publish(b"first")
        first = await asyncio.wait_for(anext(messages), 10)  # the subscription is open; then it stalls
        for i in range(_SENT):
            await publisher.publish(f"track {i}".encode() + b" " * 200)
        until = time.monotonic() + 20
        while publisher.published < first[0] + _SENT:  # every publish stored
            assert time.monotonic() < until, "the publishes were not acknowledged"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # what the server sends the stalled subscription meanwhile
        held = subscription._sub.pending_msgs  # type: ignore[attr-defined]
        last = first[0] + _SENT
        got: list[int] = []
        while not got or got[-1] < last:
            seq, _ = await asyncio.wait_for(anext(messages), 10)
            got.append(seq)
        return held, subscription.dropped, got, last
    finally:
        await publisher.close()
        await consumer_bus.close()


def test_a_stalled_nats_consumer_holds_at_most_twice_the_bound_and_counts_what_it_lost() -> None:
    held, dropped, got, last = asyncio.run(asyncio.wait_for(_stall_then_read(), 90))
    assert held <= 2 * _LIMIT  # before: every one of the 1,000 published
    assert got == sorted(set(got))  # in order, once each
    assert got[-1] == last  # up to the newest
    assert len(got) <= 2 * _LIMIT  # the newest, not every stale one
    assert dropped + len(got) == _SENT  # every one delivered or counted lost
