"""The bus: the same behaviour in process and on NATS JetStream."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

import pytest

from gsomia.stream._bus import Bus, InProcessBus, NatsBus

NATS_URL = os.environ.get("GSOMIA_TEST_NATS_URL", "nats://127.0.0.1:4222")


def _nats_absent() -> str | None:
    host, port = NATS_URL.rsplit("//", 1)[1].split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(params=["inprocess", "nats"])
def make_bus(request: pytest.FixtureRequest) -> Callable[[], Bus]:
    if request.param == "inprocess":
        return InProcessBus
    absent = _nats_absent()
    if absent is not None:
        if os.environ.get("GSOMIA_REQUIRE_SERVICES") == "1":
            pytest.fail(f"NATS is required (GSOMIA_REQUIRE_SERVICES=1) but absent at {NATS_URL}: {absent}")
        pytest.skip(f"NATS absent at {NATS_URL}: {absent}")
    return lambda: NatsBus(NATS_URL, ephemeral=True)  # a unique stream and subject per bus


async def _take(subscription: object, n: int) -> list[bytes]:
    out = []
    async for _, message in subscription:  # type: ignore[attr-defined]
        out.append(message)
        if len(out) == n:
            break
    return out


def test_every_subscriber_gets_every_message_in_order(make_bus: Callable[[], Bus]) -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        bus = make_bus()
        await bus.start()
        try:
            first, second = await bus.subscribe(), await bus.subscribe()
            for i in range(50):
                await bus.publish(b"m%d" % i)
            got = await asyncio.wait_for(asyncio.gather(_take(first, 50), _take(second, 50)), timeout=10)
            await first.close()
            await second.close()
            return got[0], got[1]
        finally:
            await bus.close()

    one, two = asyncio.run(run())
    assert one == two == [b"m%d" % i for i in range(50)]


def test_a_subscription_sees_only_what_follows_it(make_bus: Callable[[], Bus]) -> None:
    async def run() -> list[bytes]:
        bus = make_bus()
        await bus.start()
        try:
            await bus.publish(b"before")
            late = await bus.subscribe()
            await bus.publish(b"after")
            got = await asyncio.wait_for(_take(late, 1), timeout=10)
            await late.close()
            return got
        finally:
            await bus.close()

    assert asyncio.run(run()) == [b"after"]


def test_a_slow_subscriber_loses_the_oldest_not_the_newest() -> None:
    async def run() -> tuple[list[bytes], int]:
        bus = InProcessBus(limit=3)
        sub = await bus.subscribe()
        for i in range(5):
            await bus.publish(b"%d" % i)
        got = await _take(sub, 3)
        return got, sub.dropped

    got, dropped = asyncio.run(run())
    assert got == [b"2", b"3", b"4"]
    assert dropped == 2


class _Pull:
    """A pull consumer whose fetches time out, as nats-py's do, before a handed message comes."""

    def __init__(self, timeouts: list[BaseException]) -> None:
        self.timeouts = timeouts
        self.unsubscribed = 0

    async def fetch(self, batch: int, timeout: float) -> list[object]:
        if self.timeouts:
            raise self.timeouts.pop(0)
        return [type("Msg", (), {"data": b"handed"})()]

    async def unsubscribe(self) -> None:
        self.unsubscribed += 1


class _JetStream:
    def __init__(self, pull: _Pull) -> None:
        self.pull = pull
        self.subscribed = 0

    async def pull_subscribe(self, *args: object, **kwargs: object) -> _Pull:
        self.subscribed += 1
        return self.pull


def test_the_link_holder_keeps_its_consumer_through_fetches_that_time_out() -> None:
    """nats-py's ``fetch`` raises asyncio's ``TimeoutError`` (its no-wait probe unanswered in time,
    as on a loaded machine) as well as its own: neither ends the holder's pull. Before, asyncio's
    ended it: the holder dropped its consumer, slept a second and subscribed again, and a handed
    track the server had given the dropped one came back only after HANDOFF_ACK_WAIT_S."""
    import nats.errors

    pull = _Pull([TimeoutError(), nats.errors.TimeoutError(), TimeoutError()])
    js = _JetStream(pull)

    async def first() -> bytes:
        bus = NatsBus(NATS_URL)
        bus._js = js
        bus._connected.set()
        handed = bus.handed_off("JPN")
        try:
            message, _ = await anext(handed)
        finally:
            await handed.aclose()
        return message

    assert asyncio.run(asyncio.wait_for(first(), 10)) == b"handed"
    assert js.subscribed == 1
    assert pull.unsubscribed == 1  # once, when the holder closed it: not at a timeout
