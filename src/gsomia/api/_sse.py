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
    When the client goes (or ``messages`` ends: the response ends then, what it queued sent), the
    reading stops and ``close`` runs."""

    async def events() -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1024)

        async def pump() -> None:
            async for message in messages:
                await queue.put(message)

        pumping = asyncio.create_task(pump())
        try:
            yield b": " + banner + b"\n\n"
            while True:
                if not queue.empty():
                    yield queue.get_nowait()
                    continue
                if pumping.done():
                    break
                # waiting for the next message, or for ``messages`` to end (refused: the response
                # ends at once, not at the next keep-alive)
                getting = asyncio.ensure_future(queue.get())
                await asyncio.wait((getting, pumping), timeout=keepalive, return_when=asyncio.FIRST_COMPLETED)
                if getting.done():
                    yield getting.result()
                    continue
                getting.cancel()
                await asyncio.gather(getting, return_exceptions=True)
                if not pumping.done():
                    yield b": keep-alive\n\n"
        finally:
            pumping.cancel()
            await asyncio.gather(pumping, return_exceptions=True)
            if close is not None:
                await close()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
