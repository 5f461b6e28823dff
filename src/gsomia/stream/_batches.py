"""A consumer's tracks in batches: many tracks in one WebSocket message, each decided on its own.

A consumer that asks for them (``/stream/tracks/ws?batch=N``) gets each message as a JSON array of
the tracks that were ready when it was made, at most ``N`` and about ``CONSUMER_BATCH_BYTES``, in
the bus's order. Nothing waits for a batch to fill: a lone track goes as soon as it is read, and
what arrives while a message is being sent goes in the next one. What this module batches are the
bus's messages as the subscription gives them, not yet decided: ``StreamService.subscribe_batches``
read-decides each track of a batch on its own label as the batch is made (the same decision a track
sent alone gets), so a track decided is sent with the batch it was decided for, never held in the
read-ahead while a visit ends; a batch adds no track and drops none the decision let through.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

from gsomia.errors import InvalidInputError

__all__ = ["CONSUMER_BATCH", "CONSUMER_BATCH_BYTES", "batches", "parse_consumer_batch"]

CONSUMER_BATCH = 1000  # tracks in one consumer message, at most
# a message's tracks, in bytes, at most, unless one track alone is larger (it then goes alone): well
# under the 1 MiB a client takes by default (the websockets library's ``max_size``)
CONSUMER_BATCH_BYTES = 512 * 1024


def parse_consumer_batch(text: str | None) -> int | None:
    """The ``batch`` a consumer asked for: ``None`` (absent: one track a message, as before), or a
    number of tracks from 1 to ``CONSUMER_BATCH`` in decimal digits; ``InvalidInputError`` else."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 4) or not 1 <= int(text) <= CONSUMER_BATCH:
        raise InvalidInputError(f"batch: a number of tracks from 1 to {CONSUMER_BATCH}")
    return int(text)


async def batches(
    tracks: AsyncIterator[tuple[int, bytes]], most: int, most_bytes: int = CONSUMER_BATCH_BYTES
) -> AsyncIterator[list[bytes]]:
    """What ``tracks`` yields (its JSON bytes), in order, in lists of at most ``most`` tracks and
    ``most_bytes`` (one larger track goes alone): each list what was ready when the one before had
    gone. ``tracks`` is read by a task of its own, at most ``most`` ahead of what went, so a slow
    consumer holds the reading up (the bus's own bound then applies, as for one track a message)."""
    loop = asyncio.get_running_loop()
    held: collections.deque[bytes] = collections.deque()
    wake: list[asyncio.Future[None] | None] = [None, None]  # the sender's, the reader's

    def rouse(which: int) -> None:
        waiting = wake[which]
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def pump() -> None:
        try:
            async for _, track in tracks:
                held.append(track)
                rouse(0)
                if len(held) >= most:  # the sender is behind: read no further until it took some
                    room = wake[1] = loop.create_future()
                    await room
        finally:
            rouse(0)

    reader = asyncio.create_task(pump())
    try:
        while True:
            if not held:
                if reader.done():
                    break
                ready = wake[0] = loop.create_future()
                await ready
                continue
            batch = _take(held, most, most_bytes)
            rouse(1)
            yield batch
        if not reader.cancelled() and (exc := reader.exception()) is not None:
            raise exc
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


def _take(held: collections.deque[bytes], most: int, most_bytes: int) -> list[bytes]:
    """The next batch off ``held`` (not empty): at most ``most`` tracks and ``most_bytes``, one at least."""
    batch = [held.popleft()]
    size = len(batch[0])
    while held and len(batch) < most and size + len(held[0]) <= most_bytes:
        size += len(held[0])
        batch.append(held.popleft())
    return batch
