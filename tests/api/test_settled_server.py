"""``gsomia node serve``'s server: once its start-up is over, what the start-up made is collected and
frozen, so the collections while serving do not walk it (``gsomia.api.SettledServer``)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from gsomia.api import SettledServer


class _Cycle:
    """An object in a reference cycle: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


def _tracked(obj: object) -> bool:
    """Whether ``obj`` is in the collector's view (a frozen object is in none of its generations)."""
    return any(o is obj for o in gc.get_objects())


async def _started(server: uvicorn.Server) -> asyncio.Task[None]:
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                await task  # its failure, if it failed to start
            await asyncio.sleep(0.01)
    return task


def test_what_the_start_up_made_is_frozen_and_its_garbage_collected_before_serving() -> None:
    made: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        made["kept"] = _Cycle()  # what the app keeps from its start-up (as the routes' models)
        made["dropped"] = weakref.ref(_Cycle())  # garbage of the start-up, in a cycle
        yield

    server = SettledServer(uvicorn.Config(FastAPI(lifespan=lifespan), port=0, log_level="warning"))

    async def run() -> None:
        task = await _started(server)
        try:
            assert made["dropped"]() is None  # collected, not frozen for ever
            assert not _tracked(made["kept"])  # out of the collector's view
        finally:
            server.should_exit = True
            await task

    frozen = gc.get_freeze_count()
    try:
        asyncio.run(run())
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()  # the rest of the test run collects as before


def test_uvicorns_own_server_leaves_the_start_up_in_view() -> None:
    # the peer of the test above, so it shows what SettledServer changes: the same start-up under
    # uvicorn's server stays in the collector's view and its garbage waits for a collection
    made: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        made["kept"] = _Cycle()
        yield

    server = uvicorn.Server(uvicorn.Config(FastAPI(lifespan=lifespan), port=0, log_level="warning"))

    async def run() -> None:
        task = await _started(server)
        try:
            assert _tracked(made["kept"])
        finally:
            server.should_exit = True
            await task

    asyncio.run(run())
