"""The live feed of what changed, over HTTP: a JSON page, Server-Sent Events and a WebSocket
(a router mounted by ``create_app``; issue 20 §5).

Thin over :class:`gsomia.node.Feed`: every event is decided there for the caller. The SSE and
WebSocket forms poll the store (the truth every process of the node shares) and resume after the
last event id a client saw (``Last-Event-ID``, or ``after``). No ``from __future__ import
annotations``: FastAPI reads the handlers' annotations.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from gsomia.api._fields import AgreementId, Party, Topic
from gsomia.api._sse import sse_response
from gsomia.api._ws import websocket_caller
from gsomia.core.access import Person
from gsomia.errors import GsomiaError, InvalidInputError
from gsomia.node import FeedEvent, FeedFilter, Node

__all__ = ["feed_router"]

POLL_S = 0.5  # how often an idle follower asks the store again
KEEPALIVE_S = 15.0
_POLICY_VIOLATION = 1008
_MAX_SEQ = 2**63 - 1


class FeedEventOut(BaseModel):
    id: int
    type: str
    item: str
    at: str
    originator: str
    classification: str
    topics: list[str]
    agreement: str | None
    state: str


class FeedPageOut(BaseModel):
    events: list[FeedEventOut]
    next: int


Topics = Annotated[
    list[Topic] | None, Query(max_length=50, description="Only items with one of these topics")
]
Originators = Annotated[list[Party] | None, Query(max_length=50, description="Only these originators' items")]
Agreements = Annotated[
    list[AgreementId] | None, Query(max_length=50, description="Only items received under these agreements")
]


def only(topic: list[str] | None, originator: list[str] | None, agreement: list[str] | None) -> FeedFilter:
    """The reader's filter from the query (empty: any)."""
    return FeedFilter(frozenset(topic or ()), frozenset(originator or ()), frozenset(agreement or ()))


def _sse(event: FeedEvent) -> bytes:
    return b"event: %b\nid: %d\ndata: %b\n\n" % (
        event.type.encode(),
        event.id,
        orjson.dumps(event.as_json()),
    )


def feed_router(node: Node, reader: Callable[..., Person], *, dashboard: str | None = None) -> APIRouter:
    """The feed's routes, authenticated by ``reader``. ``dashboard`` is the dashboard's path: the SSE
    form is served under it as well (``{dashboard}/feed/sse``), where the browser sends its session,
    so the dashboard's item pages follow the feed instead of asking again and again."""
    router = APIRouter(tags=["feed"])
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below
    feed = node.feed

    def only(
        topic: list[str] | None, originator: list[str] | None, agreement: list[str] | None
    ) -> FeedFilter:
        """The filter, each name one the node knows (a misspelt one would silently match nothing):
        422 naming it, as the OpenAPI's enums say."""
        catalogue = node.catalogue
        for name in topic or ():
            catalogue.topic(name)
        for code in originator or ():
            catalogue.party(code)
        for agreement_id in agreement or ():
            catalogue.agreement(agreement_id)
        return FeedFilter(frozenset(topic or ()), frozenset(originator or ()), frozenset(agreement or ()))

    @router.get("/feed", response_model=FeedPageOut)
    def page(
        person: Caller,
        after: Annotated[int, Query(ge=0, le=_MAX_SEQ, description="Events after this id")] = 0,
        topic: Topics = None,
        originator: Originators = None,
        agreement: Agreements = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """What changed that the caller may see, oldest first; ask again from ``next``."""
        events, cursor = feed.page(person, after, only(topic, originator, agreement), limit=limit)
        return {"events": [e.as_json() for e in events], "next": cursor}

    async def follow(person: Person, after: int | None, chosen: FeedFilter) -> AsyncIterator[FeedEvent]:
        cursor = after if after is not None else await run_in_threadpool(feed.head)
        while True:
            events, cursor = await run_in_threadpool(feed.page, person, cursor, chosen)
            for event in events:
                yield event
            if not events:
                await asyncio.sleep(POLL_S)

    async def sse(
        person: Caller,
        topic: Topics = None,
        originator: Originators = None,
        agreement: Agreements = None,
        after: Annotated[int | None, Query(ge=0, le=_MAX_SEQ, description="Resume after this id")] = None,
        last_event_id: Annotated[
            str,  # noqa: RUF013 - the document states a number, never null
            Header(alias="Last-Event-ID", pattern=r"^[0-9]{1,18}$", description="Resume after this event"),
        ] = None,  # type: ignore[assignment]
    ) -> StreamingResponse:
        """What changed that the caller may see, as Server-Sent Events (``event`` is the change's
        type, ``id`` resumes it); without ``Last-Event-ID`` or ``after``, from now on."""
        start = int(last_event_id) if last_event_id is not None else after
        chosen = only(topic, originator, agreement)
        await run_in_threadpool(feed.page, person, start or 0, chosen, limit=1)  # refused now, not mid-stream

        async def messages() -> AsyncIterator[bytes]:
            try:
                async for event in follow(person, start, chosen):
                    yield _sse(event)
            except GsomiaError:  # the reader was disabled: the stream ends
                return

        return sse_response(messages(), b"gsomia live feed", KEEPALIVE_S)

    for path in ("/feed/sse", *((f"{dashboard}/feed/sse",) if dashboard else ())):
        router.add_api_route(
            path, sse, methods=["GET"], response_class=StreamingResponse,
            include_in_schema=not path.startswith(dashboard or "\0"),
        )  # fmt: skip

    @router.websocket("/feed/ws")
    async def ws(websocket: WebSocket) -> None:
        """The same events as JSON text messages (bearer token in the handshake). Query: ``after``,
        ``topic``, ``originator``, ``agreement`` as for ``/feed``."""
        try:
            person = await websocket_caller(websocket, reader, node.kernel, "GET")
            params = websocket.query_params
            raw_after = params.get("after")
            if raw_after is not None and not (raw_after.isdigit() and len(raw_after) <= 18):
                raise InvalidInputError("after: a sequence number, 0 or more")
            start = int(raw_after) if raw_after is not None else None
            chosen = FeedFilter(
                frozenset(params.getlist("topic")),
                frozenset(params.getlist("originator")),
                frozenset(params.getlist("agreement")),
            )
            await run_in_threadpool(feed.page, person, start or 0, chosen, limit=1)
        except GsomiaError as exc:
            await websocket.close(code=_POLICY_VIOLATION, reason=str(exc)[:120])
            return
        await websocket.accept()

        async def send() -> None:
            try:
                async for event in follow(person, start, chosen):
                    await websocket.send_text(orjson.dumps(event.as_json()).decode())
            except GsomiaError as exc:
                await websocket.close(code=_POLICY_VIOLATION, reason=str(exc)[:120])

        async def watch() -> None:
            try:
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass
            except WebSocketDisconnect:
                return

        tasks = {asyncio.create_task(send()), asyncio.create_task(watch())}
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    return router
