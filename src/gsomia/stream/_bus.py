"""The bus inside a node: the stream fans out to its consumers through it.

One narrow interface, two adapters: :class:`InProcessBus` (the default: asyncio queues on
the node's event loop) and :class:`NatsBus` (NATS JetStream, for a node whose consumers
run in other processes). Both deliver each message, in order, to every subscription open
when it was published; a subscriber that falls ``limit`` messages behind loses the oldest
(a live warning stream prefers the newest sample to a complete backlog) and counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from gsomia.errors import ConfigError

__all__ = ["Bus", "InProcessBus", "NatsBus", "Subscription"]


class Subscription(Protocol):
    """Messages published after it opened, in order, until it is closed."""

    dropped: int

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class Bus(Protocol):
    """Publish bytes to every open subscription."""

    async def start(self) -> None: ...

    async def publish(self, message: bytes) -> None: ...

    async def subscribe(self) -> Subscription: ...

    async def close(self) -> None: ...


class _QueueSubscription:
    def __init__(self, bus: InProcessBus, limit: int) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=limit)
        self.dropped = 0
        self._bus = bus

    def offer(self, message: bytes) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(message)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.queue.get()
            if message is None:
                return
            yield message

    async def close(self) -> None:
        self._bus._subscribers.discard(self)
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


class InProcessBus:
    """Fan-out on the node's event loop: publish and subscribe from coroutines on that loop."""

    def __init__(self, limit: int = 10_000) -> None:
        self._subscribers: set[_QueueSubscription] = set()
        self._limit = limit

    async def start(self) -> None:
        return None

    async def publish(self, message: bytes) -> None:
        for subscriber in tuple(self._subscribers):
            subscriber.offer(message)

    async def subscribe(self) -> Subscription:
        subscription = _QueueSubscription(self, self._limit)
        self._subscribers.add(subscription)
        return subscription

    async def close(self) -> None:
        for subscriber in tuple(self._subscribers):
            await subscriber.close()


class _NatsSubscription:
    def __init__(self, sub: Any) -> None:
        self._sub = sub
        self.dropped = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        from nats.errors import ConnectionClosedError

        try:
            async for message in self._sub.messages:
                yield bytes(message.data)
        except ConnectionClosedError:
            return

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed with the connection
            await self._sub.unsubscribe()


class NatsBus:
    """NATS JetStream: the node publishes to ``subject`` in stream ``stream`` (created if absent).

    Each subscription is an ordered, ephemeral consumer that starts at the next message.
    With ``ephemeral``, :meth:`close` deletes the stream (tests use a unique name each).
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        stream: str | None = None,
        subject: str | None = None,
        ephemeral: bool = False,
        max_age_s: float = 3600.0,
    ) -> None:
        unique = uuid.uuid4().hex[:12]
        self.url = url
        self.stream = stream or f"GSOMIA_TRACKS_{unique}"
        self.subject = subject or f"gsomia.tracks.{unique}"
        self.ephemeral = ephemeral
        self.max_age_s = max_age_s
        self._nc: Any = None
        self._js: Any = None

    async def start(self) -> None:
        import nats
        from nats.js.api import StreamConfig

        try:
            self._nc = await nats.connect(self.url, connect_timeout=2, max_reconnect_attempts=2)
        except Exception as exc:  # nats raises its own errors and OSError
            raise ConfigError(f"cannot reach NATS at {self.url}: {exc}") from exc
        self._js = self._nc.jetstream()
        config = StreamConfig(name=self.stream, subjects=[self.subject], max_age=self.max_age_s)
        try:
            await self._js.add_stream(config)
        except Exception as exc:
            await self._nc.close()
            raise ConfigError(f"cannot create JetStream stream {self.stream} at {self.url}: {exc}") from exc

    def _require(self) -> Any:
        if self._js is None:
            raise ConfigError("the NATS bus is not started")
        return self._js

    async def publish(self, message: bytes) -> None:
        await self._require().publish(self.subject, message)

    async def subscribe(self) -> Subscription:
        from nats.js.api import DeliverPolicy

        sub = await self._require().subscribe(
            self.subject, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
        return _NatsSubscription(sub)

    async def close(self) -> None:
        if self._nc is None:
            return
        if self.ephemeral and self._js is not None:
            with contextlib.suppress(Exception):  # already gone
                await self._js.delete_stream(self.stream)
        await self._nc.close()
        self._nc = None
        self._js = None
