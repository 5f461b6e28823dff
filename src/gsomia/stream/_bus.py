"""The bus inside a node: the stream fans out to its consumers through it.

One narrow interface, two adapters: :class:`InProcessBus` (the default: asyncio queues on
the node's event loop) and :class:`NatsBus` (NATS JetStream, for a node whose consumers
run in other processes). Both deliver each message, in order and numbered, to every
subscription open when it was published; a subscriber that falls ``limit`` messages behind
loses the oldest (a live warning stream prefers the newest sample to a complete backlog) and
counts them. A subscription opened ``after`` a number resumes there: it first gets the
messages after it the bus still holds (an SSE client's ``Last-Event-ID``).

:class:`NatsBus` outlives NATS outages. It connects in the background and reconnects by
itself; while NATS is away it keeps up to ``buffer_limit`` messages (``BUFFER_LIMIT`` by
default) and publishes them, in order, once NATS is back; past that bound a publish is
refused with :class:`~gsomia.errors.UnavailableError` (503 over HTTP), never lost silently.
:meth:`NatsBus.health` says which of ``connected``, ``reconnecting`` or ``down`` it is in.

:class:`NatsBus` also carries what the node's processes hand to the one process holding an
outbound link (the link's lease, ``link:PARTY``): a second JetStream stream of the node,
``<stream>_LINKS``, a subject per partner, read through one durable pull consumer per partner
(``link-PARTY``). Only the holder pulls; a message is acknowledged once the partner confirmed the
link frame that carried it, so a holder that dies leaves what it had not had confirmed to the next
holder (redelivered after ``HANDOFF_ACK_WAIT_S``; the partner keeps an update it got twice once),
and what waited longer than ``HANDOFF_MAX_AGE_S`` for a holder is dropped (a late warning is not a
live one).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from gsomia.errors import UnavailableError

__all__ = [
    "BUFFER_LIMIT",
    "HANDOFF_MAX_AGE_S",
    "HANDOFF_RESENDS",
    "Bus",
    "InProcessBus",
    "NatsBus",
    "Subscription",
    "node_stream_names",
]

_log = logging.getLogger("gsomia.stream.bus")
BUFFER_LIMIT = 10_000  # tracks a node holds for NATS during an outage (a few minutes at 50 tracks/s)
HISTORY = 10_000  # messages the in-process bus keeps for a consumer resuming after a number
DUPLICATE_WINDOW_S = 600.0  # JetStream drops a message id seen this recently: a resend is stored once
HANDOFF_MAX_AGE_S = 60.0  # a track handed to a link's holder and not taken for this long is dropped
HANDOFF_ACK_WAIT_S = 3.0  # a handed track a dead holder pulled and never sent goes to the next after this
# handed tracks out to a link's holder and not yet acknowledged, at most (set on the consumer: NATS's
# own default, named so that what it bounds is stated); JetStream hands again only these
HANDOFF_MAX_ACK_PENDING = 1000
# the most tracks a link's holders can be handed again within any HANDOFF_MAX_AGE_S, as a receiver
# counts it (in whole seconds: a span of up to one second more): at most the pending ones at once,
# each again at most once per ack wait, so at most 21 times (at the span's start and every 3 s).
# A partner that receives more duplicates than this from one sender in that time is not seeing a
# redelivery (a replay)
HANDOFF_RESENDS = HANDOFF_MAX_ACK_PENDING * (math.floor((HANDOFF_MAX_AGE_S + 1) / HANDOFF_ACK_WAIT_S) + 1)


class Subscription(Protocol):
    """Messages published after it opened (or after ``after``), in order, until it is closed."""

    dropped: int

    def __aiter__(self) -> AsyncIterator[tuple[int, bytes]]: ...

    async def close(self) -> None: ...


class Bus(Protocol):
    """Publish bytes to every open subscription."""

    async def start(self) -> None: ...

    async def publish(self, message: bytes) -> None: ...

    async def subscribe(self, after: int | None = None) -> Subscription: ...

    def health(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class _QueueSubscription:
    def __init__(self, bus: InProcessBus, limit: int) -> None:
        self.queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=limit)
        self.dropped = 0
        self._bus = bus

    def offer(self, message: tuple[int, bytes]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(message)

    async def __aiter__(self) -> AsyncIterator[tuple[int, bytes]]:
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

    def __init__(self, limit: int = 10_000, history: int = HISTORY) -> None:
        self._subscribers: set[_QueueSubscription] = set()
        self._limit = limit
        self._seq = 0
        self._history: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=history)

    async def start(self) -> None:
        return None

    async def publish(self, message: bytes) -> None:
        self._seq += 1
        entry = (self._seq, message)
        self._history.append(entry)
        for subscriber in tuple(self._subscribers):
            subscriber.offer(entry)

    async def subscribe(self, after: int | None = None) -> Subscription:
        subscription = _QueueSubscription(self, self._limit)
        if after is not None:
            for entry in self._history:
                if entry[0] > after:
                    subscription.offer(entry)
        self._subscribers.add(subscription)
        return subscription

    def health(self) -> dict[str, Any]:
        return {"kind": "in-process", "state": "connected"}

    async def close(self) -> None:
        for subscriber in tuple(self._subscribers):
            await subscriber.close()


class _NatsSubscription:
    def __init__(self, bus: NatsBus, after: int | None, durable: str | None) -> None:
        self._bus = bus
        self._after = after
        self._durable = durable
        self._sub: Any = None
        self._closed = False
        self.dropped = 0

    async def ensure_open(self) -> None:
        if self._sub is None and not self._closed:
            self._sub = await self._open(self._bus._js)
        self._bus._waiting.discard(self)

    async def _open(self, js: Any) -> Any:
        from nats.js.api import ConsumerConfig, DeliverPolicy

        # what the client holds for a consumer that does not read: twice the bound (nats-py's default,
        # 524,288 messages or 256 MB a subscription, let one idle consumer hold hundreds of MB of this
        # process); past it the client loses what arrives, and the reader counts the gap
        held = {"pending_msgs_limit": 2 * self._bus.limit}
        if self._durable is not None:  # the server remembers where this consumer was
            return await js.subscribe(self._bus.subject, durable=self._durable, manual_ack=False, **held)
        if self._after is None:
            return await js.subscribe(
                self._bus.subject, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW, **held
            )
        return await js.subscribe(
            self._bus.subject,
            ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._after + 1
            ),
            **held,
        )

    async def __aiter__(self) -> AsyncIterator[tuple[int, bytes]]:
        """Messages in order; across an outage the subscription is opened again after the last one
        delivered, so it resumes where it was (JetStream keeps the stream for ``max_age_s``)."""
        from nats.errors import ConnectionClosedError

        while not self._closed:
            try:
                if self._sub is None:
                    self._sub = await self._open(await self._bus._ready())
                    self._bus._waiting.discard(self)
                skipped = False
                async for message in self._sub.messages:
                    meta = message.metadata
                    seq = int(meta.sequence.stream)
                    if self._after is not None and seq > self._after + 1:
                        # what the client lost while it held its most (or the stream no longer kept)
                        self.dropped += seq - self._after - 1
                    # as the in-process bus: more than ``limit`` behind, the oldest are lost, counted;
                    # the subscription opened again at the newest ``limit``, not read up to them
                    pending = int(meta.num_pending or 0)
                    behind = max(self._sub.pending_msgs, pending, self._bus.published - seq)
                    if behind >= self._bus.limit and self._durable is not None:
                        self._after = seq  # the server keeps a durable consumer's place: one at a time
                        self.dropped += 1
                        continue
                    if behind >= self._bus.limit:
                        start = seq + behind - self._bus.limit + 1
                        self.dropped += start - seq
                        self._after = start - 1
                        skipped = True
                        break
                    self._after = seq
                    yield seq, bytes(message.data)
                if skipped:
                    with contextlib.suppress(Exception):
                        await self._sub.unsubscribe()
                    self._sub = None
                    continue
            except (ConnectionClosedError, UnavailableError):
                if self._closed or self._bus._closing:
                    return
            except Exception as exc:  # the connection dropped under the consumer: open it again
                if self._closed or self._bus._closing:
                    return
                _log.info(
                    "bus subscription interrupted (%s); resuming after %s", type(exc).__name__, self._after
                )
            self._sub = None
            await asyncio.sleep(self._bus.reconnect_wait_s)

    async def close(self) -> None:
        self._closed = True
        self._bus._waiting.discard(self)
        if self._sub is not None:
            with contextlib.suppress(Exception):  # already closed with the connection
                await self._sub.unsubscribe()


def node_stream_names(identity: str) -> tuple[str, str]:
    """The JetStream stream and subject of one node (``identity``: ``PARTY:fingerprint``, what the
    node records in its database): every process of the node shares them, and no other node's,
    of the same party or not, on the same NATS server, ever does.

    >>> node_stream_names("KOR:0123456789abcdef0123456789abcdef")
    ('GSOMIA_TRACKS_KOR_0123456789ab', 'gsomia.tracks.kor.0123456789ab')
    """
    party, _, fingerprint = identity.partition(":")
    if not party.isalnum() or len(fingerprint) < 12 or not fingerprint.isalnum():
        raise ValueError("a node identity is PARTY:fingerprint")
    return (
        f"GSOMIA_TRACKS_{party.upper()}_{fingerprint[:12]}",
        f"gsomia.tracks.{party.lower()}.{fingerprint[:12]}",
    )


class NatsBus:
    """NATS JetStream: the node publishes to ``subject`` in stream ``stream`` (created if absent).

    Each subscription is an ordered consumer that starts at the next message (or after a given
    sequence number), or a durable consumer the server remembers. A subscription more than ``limit``
    messages behind the stream loses the oldest and counts them (``dropped``), as the in-process bus
    does: behind is what the client holds after a message, what the server still had after it when
    it delivered it, or what this process has published since, whichever is most; far behind, it is
    opened again at the newest ``limit``, and the client holds at most twice ``limit`` for it (what it
    lost meanwhile, a gap in the sequence numbers, counted too). With
    ``ephemeral``, :meth:`close` deletes the stream (tests use a unique name each).
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        stream: str | None = None,
        subject: str | None = None,
        ephemeral: bool = False,
        max_age_s: float = 3600.0,
        buffer_limit: int = BUFFER_LIMIT,
        reconnect_wait_s: float = 0.5,
        publish_timeout_s: float = 2.0,
        limit: int = 10_000,
    ) -> None:
        unique = uuid.uuid4().hex[:12]
        self.url = url
        self.stream = stream or f"GSOMIA_TRACKS_{unique}"
        self.subject = subject or f"gsomia.tracks.{unique}"
        self.links_stream = f"{self.stream}_LINKS"  # handed to the holders of the outbound links
        self.links_subject = f"{self.subject}.links"
        self.ephemeral = ephemeral
        self.max_age_s = max_age_s
        self.buffer_limit = buffer_limit
        self.reconnect_wait_s = reconnect_wait_s
        self.publish_timeout_s = publish_timeout_s
        self.limit = limit  # messages a subscription may be behind before it loses the oldest
        self.published = 0  # the highest stream sequence number this process's publishes were given
        self._nc: Any = None
        self._js: Any = None
        self._state = "down"
        # (message id, message): the id lets JetStream drop a copy if a publish that timed out had landed
        self._buffer: collections.deque[tuple[str, bytes]] = collections.deque()
        self._bus_id = unique
        self._count = 0
        self._connected = asyncio.Event()
        self._connector: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        self._waiting: set[_NatsSubscription] = set()  # subscribed while NATS was away
        self.refused = 0  # publishes refused because the buffer was full
        self.last_error: str | None = None

    # --- connection ---

    async def start(self) -> None:
        """Connect (waiting a moment for it), then keep trying in the background: a node starts,
        and answers /healthz, while NATS is away."""
        if self._connector is None:
            self._closing = False
            self._connector = asyncio.create_task(self._connect(), name="gsomia-nats-connect")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._connected.wait()), timeout=3)

    async def _connect(self) -> None:
        import nats

        while not self._closing:
            try:
                self._nc = await nats.connect(
                    self.url,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,  # forever: an outage ends when NATS is back
                    reconnect_time_wait=self.reconnect_wait_s,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                    closed_cb=self._on_closed,
                )
                self._js = self._nc.jetstream()
                await self._ensure_stream()
            except Exception as exc:  # nats raises its own errors and OSError
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self._nc is not None:
                    with contextlib.suppress(Exception):
                        await self._nc.close()
                self._nc = self._js = None
                self._state = "down"
                await asyncio.sleep(self.reconnect_wait_s)
                continue
            self._up()
            return

    async def _ensure_stream(self) -> None:
        from nats.js.api import StreamConfig

        config = StreamConfig(
            name=self.stream,
            subjects=[self.subject],
            max_age=self.max_age_s,
            duplicate_window=DUPLICATE_WINDOW_S,
        )
        await self._js.add_stream(config)
        await self._js.add_stream(
            StreamConfig(
                name=self.links_stream,
                subjects=[f"{self.links_subject}.*"],
                max_age=HANDOFF_MAX_AGE_S,
                duplicate_window=min(DUPLICATE_WINDOW_S, HANDOFF_MAX_AGE_S),
            )
        )

    def _up(self) -> None:
        self._state = "connected"
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._resume(), name="gsomia-nats-flush")

    async def _resume(self) -> None:
        """Once connected: open the subscriptions that waited for NATS, then publish the buffer, so
        a consumer that subscribed during the outage gets what was held for it."""
        for subscription in tuple(self._waiting):
            with contextlib.suppress(Exception):  # it retries by itself when iterated
                await subscription.ensure_open()
        self._connected.set()
        await self._flush()

    async def _on_disconnected(self) -> None:
        if not self._closing:
            self._state = "reconnecting"
            self._connected.clear()
            _log.warning("NATS at %s is unreachable: buffering up to %d tracks", self.url, self.buffer_limit)

    async def _on_reconnected(self) -> None:
        with contextlib.suppress(Exception):  # a NATS restarted without its store lost the stream
            await self._ensure_stream()
        _log.warning("NATS at %s is back: %d buffered tracks to publish", self.url, len(self._buffer))
        self._up()

    async def _on_error(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"

    async def _on_closed(self) -> None:
        self._connected.clear()
        if not self._closing:
            self._state = "down"

    async def _ready(self) -> Any:
        """The JetStream context once connected (a subscriber waits for it)."""
        await self._connected.wait()
        if self._js is None:
            raise UnavailableError("the NATS bus is not connected")
        return self._js

    def health(self) -> dict[str, Any]:
        """What /healthz shows: the state, and how much of the outage buffer is used."""
        return {
            "kind": "nats",
            "state": self._state,
            "buffered": len(self._buffer),
            "buffer_limit": self.buffer_limit,
            "refused": self.refused,
            **({"last_error": self.last_error} if self._state != "connected" and self.last_error else {}),
        }

    # --- publishing ---

    async def publish(self, message: bytes) -> None:
        """Publish now, or hold ``message`` for NATS; refused (503) when the buffer is full."""
        self._count += 1
        entry = (f"{self._bus_id}-{self._count}", message)
        if self._state == "connected" and not self._buffer:
            try:
                await self._send(entry)
                return
            except Exception as exc:  # timeout, no responders, a connection that just dropped
                self.last_error = f"{type(exc).__name__}: {exc}"
        self._hold(entry)

    async def _send(self, entry: tuple[str, bytes]) -> None:
        msg_id, message = entry
        headers = {"Nats-Msg-Id": msg_id}  # sent again after a timeout, stored once
        ack = await self._js.publish(self.subject, message, timeout=self.publish_timeout_s, headers=headers)
        self.published = max(self.published, int(ack.seq))

    def _hold(self, message: tuple[str, bytes]) -> None:
        if len(self._buffer) >= self.buffer_limit:
            self.refused += 1
            raise UnavailableError(
                f"the node's stream bus (NATS at {self.url}) is unreachable and its buffer of "
                f"{self.buffer_limit} tracks is full; retry when it is back"
            )
        self._buffer.append(message)
        if self._state == "connected" and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush(), name="gsomia-nats-flush")

    async def _flush(self) -> None:
        """Publish the buffer in order while connected; what fails stays first in line."""
        while self._buffer and not self._closing:
            if self._state != "connected":
                return
            try:
                await self._send(self._buffer[0])
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(self.reconnect_wait_s)
                continue
            self._buffer.popleft()

    async def subscribe(self, after: int | None = None, durable: str | None = None) -> Subscription:
        subscription = _NatsSubscription(self, after, durable)
        if self._state == "connected":
            await subscription.ensure_open()
        else:
            self._waiting.add(subscription)
        return subscription

    # --- handing tracks to the holder of an outbound link ---

    async def hand_off(self, partner: str, message: bytes) -> None:
        """Give ``message`` to whichever process of the node holds the link to ``partner``;
        :class:`~gsomia.errors.UnavailableError` while NATS is away (the track is not sent)."""
        if self._state != "connected" or self._js is None:
            raise UnavailableError(f"the node's stream bus (NATS at {self.url}) is unreachable")
        self._count += 1
        headers = {"Nats-Msg-Id": f"{self._bus_id}-{self._count}"}
        try:
            await self._js.publish(
                f"{self.links_subject}.{partner}", message, timeout=self.publish_timeout_s, headers=headers
            )
        except Exception as exc:  # a timeout, no responders, a connection that just dropped
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise UnavailableError(
                f"the node's stream bus (NATS at {self.url}) did not take the track"
            ) from exc

    async def handed_off(
        self, partner: str, *, wait_s: float = 0.2
    ) -> AsyncIterator[tuple[bytes, Callable[[], Awaitable[None]]]]:
        """What the node's processes handed to the link to ``partner``, oldest first, for its holder
        only, each with how to acknowledge it: the holder calls that once the partner confirmed the
        frame that carried it (or it is dropped), and a message left unacknowledged (the holder died
        first) goes to the next holder after ``HANDOFF_ACK_WAIT_S``."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        js = await self._ready()
        pull = await js.pull_subscribe(
            f"{self.links_subject}.{partner}",
            durable=f"link-{partner}",
            stream=self.links_stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=HANDOFF_ACK_WAIT_S,
                max_ack_pending=HANDOFF_MAX_ACK_PENDING,
                deliver_policy=DeliverPolicy.ALL,
            ),
        )
        try:
            while not self._closing:
                try:
                    messages = await pull.fetch(64, timeout=wait_s)
                except TimeoutError:  # nothing handed meanwhile: pull again on the same consumer
                    # nats' own TimeoutError or asyncio's, which fetch raises as well (its no-wait
                    # probe unanswered within ``wait_s``: a loaded machine); either ended this
                    # generator before, so the holder dropped its consumer, slept a second and
                    # subscribed again, and a message the server gave the dropped one waited
                    # HANDOFF_ACK_WAIT_S to come back
                    continue
                for message in messages:
                    yield bytes(message.data), functools.partial(self._ack, message)
        finally:
            with contextlib.suppress(Exception):
                await pull.unsubscribe()

    async def _ack(self, message: Any) -> None:
        """Acknowledge one handed message (it was delivered, or dropped for good)."""
        with contextlib.suppress(Exception):  # unacknowledged: the next holder sends it again
            await message.ack()

    async def close(self) -> None:
        self._closing = True
        for task in (self._connector, self._flusher):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._connector = self._flusher = None
        if self._nc is None:
            return
        if self.ephemeral and self._js is not None:
            with contextlib.suppress(Exception):  # already gone
                await self._js.delete_stream(self.stream)
            with contextlib.suppress(Exception):
                await self._js.delete_stream(self.links_stream)
        with contextlib.suppress(Exception):
            await self._nc.close()
        self._nc = None
        self._js = None
        self._state = "down"
        self._connected.clear()
