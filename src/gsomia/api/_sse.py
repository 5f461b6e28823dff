"""Server-Sent Events, the one way the API sends them (the live feed, the missile-warning stream)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi.responses import StreamingResponse

__all__ = ["sse_response"]


def sse_response(
    messages: AsyncIterator[bytes],
    banner: bytes,
    keepalive: float,
    *,
    close: Callable[[], Awaitable[object]] | None = None,
) -> StreamingResponse:
    """``messages`` (each a whole event) as ``text/event-stream``, opened by the comment ``banner``.

    A comment every ``keepalive`` seconds keeps idle proxies from closing the stream and lets a
    client notice a dead connection; messages come through a queue so that waiting can time out.
    When the client goes (or ``messages`` ends), the reading stops and ``close`` runs."""

    async def events() -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1024)

        async def pump() -> None:
            async for message in messages:
                await queue.put(message)

        pumping = asyncio.create_task(pump())
        try:
            yield b": " + banner + b"\n\n"
            while not pumping.done() or not queue.empty():
                try:
                    yield await asyncio.wait_for(queue.get(), keepalive)
                except TimeoutError:
                    yield b": keep-alive\n\n"
        finally:
            pumping.cancel()
            await asyncio.gather(pumping, return_exceptions=True)
            if close is not None:
                await close()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
