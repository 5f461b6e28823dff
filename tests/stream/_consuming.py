"""Following a consumer's stream in a test: its batches into a queue, read with every wait bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson


async def pump(stream: AsyncIterator[list[bytes]], queue: asyncio.Queue[list[bytes] | BaseException]) -> None:
    """The stream into ``queue`` (a wait on the queue may time out; one on the stream would end it)."""
    try:
        async for batch in stream:
            await queue.put(batch)
    except Exception as exc:
        await queue.put(exc)


async def collect(queue: asyncio.Queue[list[bytes] | BaseException], seconds: float) -> list[str]:
    """The track ids the stream gives for ``seconds`` (each wait bounded); what ended it, raised."""
    got: list[str] = []
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        try:
            batch = await asyncio.wait_for(queue.get(), left)
        except TimeoutError:
            break
        if isinstance(batch, BaseException):
            raise batch
        got += [orjson.loads(t)["track_id"] for t in batch]
    return got
