"""The live feed of what changed, over HTTP: a JSON page, Server-Sent Events and a WebSocket
(a router mounted by ``create_app``; issue 20 §5).

Thin over :class:`gsomia.node.Feed`: every event is decided there for the caller. The SSE and
WebSocket forms poll the store (the truth every process of the node shares) and resume after the
last event id a client saw (``Last-Event-ID``, or ``after`` and ``head``). An SSE id is
``<record>.<head>``: the audit record to resume after and the size of the last tree head sent, so
one ``Last-Event-ID`` resumes both (a bare ``<record>`` follows tree heads from now on).
An open stream ends when its reader is disabled, and when the credential it was opened with is
revoked (by any process: the store's ``tokens`` counter) or expires, as a track stream does
(:class:`_Held`: the check is :meth:`Credentials.still`'s, the refusal audited once).
No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
"""

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from gsomia.api._fields import AgreementId, Party, Topic
from gsomia.api._sse import sse_response
from gsomia.api._ws import presented, websocket_caller
from gsomia.core.access import Person
from gsomia.errors import AuthenticationError, GsomiaError, InvalidInputError
from gsomia.kernel import NodeContext
from gsomia.node import FeedEvent, FeedFilter, FlowEvent, HeadEvent, Node
from gsomia.store import TOKENS

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


class FlowEventOut(BaseModel):
    id: int
    type: str
    at: str
    flow: dict[str, Any]


class HeadEventOut(BaseModel):
    type: str
    size: int
    root: str
    at: str
    jws: str


class FeedPageOut(BaseModel):
    events: list[FeedEventOut | FlowEventOut | HeadEventOut]
    next: int
    next_head: int | None = None


Topics = Annotated[
    list[Topic] | None, Query(max_length=50, description="Only items with one of these topics")
]
Originators = Annotated[list[Party] | None, Query(max_length=50, description="Only these originators' items")]
Agreements = Annotated[
    list[AgreementId] | None, Query(max_length=50, description="Only items received under these agreements")
]
# the node's event types (gsomia.node.EVENT_TYPES; a test holds the two equal), named in the
# document so that a client, and a fuzzer, sends only these
EventType = Literal[
    "ingested",
    "arrived",
    "derived",
    "label-changed",
    "recalled",
    "portion-recalled",
    "destroyed",
    "portion-destroyed",
    "flow",
    "tree-head",
]
Types = Annotated[list[EventType] | None, Query(max_length=50, description="Only events of these types")]
Head = Annotated[
    int | None,
    Query(ge=0, le=2**63 - 1, description="Tree heads over more than this many records (flows page)"),
]
Event = FeedEvent | FlowEvent | HeadEvent


def _sse(event: Event, cursor: tuple[int, int]) -> bytes:
    return b"event: %b\nid: %d.%d\ndata: %b\n\n" % (
        event.type.encode(),
        *cursor,
        orjson.dumps(event.as_json()),
    )


class _Held:
    """The credential an open feed stream was opened with, checked again (``still``: the API's
    :meth:`Credentials.still`, the one check a track stream makes too) whenever any process revoked
    a token (the store's ``tokens`` counter moved) and once it expires; a refusal is audited once
    (``feed.ws``/``feed.sse`` refused) and raised, which ends the stream."""

    def __init__(self, kernel: NodeContext, still: Callable[[], datetime], who: str, person: str) -> None:
        self._kernel = kernel
        self._still = still
        self._who = who
        self._person = person
        self._seen: int | None = None  # the tokens counter it was last checked under (none yet)
        self._expires = math.inf  # the credential's expiry (POSIX seconds)

    def check(self) -> None:
        """(In a worker thread.) Raise the refusal if the credential no longer holds."""
        kernel = self._kernel
        seen = kernel.watch.generation(TOKENS)  # read before the row: the row is at least as new
        if seen == self._seen and kernel.clock().timestamp() < self._expires:
            return
        try:
            self._expires = self._still().timestamp()
        except AuthenticationError as exc:  # revoked (by any process) or expired meanwhile
            raise kernel.refuse(self._who, self._person, None, exc) from None
        self._seen = seen


def feed_router(
    node: Node,
    reader: Callable[..., Awaitable[Person]],
    *,
    dashboard: str | None = None,
    credential: Callable[[Request], Callable[[], datetime]] | None = None,
) -> APIRouter:
    """The feed's routes, authenticated by ``reader``. ``dashboard`` is the dashboard's path: the SSE
    form is served under it as well (``{dashboard}/feed/sse``), where the browser sends its session,
    so the dashboard's item pages follow the feed instead of asking again and again.

    ``credential`` gives, for a request ``reader`` let in, the check of what it was let in with (as
    for ``stream_router``): an open SSE or WebSocket stream makes it again whenever any process
    revokes a token, and at its expiry, and ends on a refusal."""
    router = APIRouter(tags=["feed"])
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below
    feed = node.feed

    def only(
        topic: list[str] | None,
        originator: list[str] | None,
        agreement: list[str] | None,
        types: Sequence[str] | None = None,
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
        return FeedFilter(
            frozenset(topic or ()),
            frozenset(originator or ()),
            frozenset(agreement or ()),
            frozenset(types or ()),
        )

    @router.get("/feed", response_model=FeedPageOut)
    def page(
        person: Caller,
        after: Annotated[int, Query(ge=0, le=_MAX_SEQ, description="Events after this id")] = 0,
        topic: Topics = None,
        originator: Originators = None,
        agreement: Agreements = None,
        type: Types = None,
        head: Head = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """What changed that the caller may see, oldest first; ask again from ``next``. With
        ``head``, the signed tree heads after it too (ask again from ``next_head``)."""
        chosen = only(topic, originator, agreement, type)
        events: list[Event] = []
        found, cursor = feed.page(person, after, chosen, limit=limit)
        events += found
        next_head = None
        if head is not None:
            heads = feed.heads(person, head, chosen, limit=limit)
            events += heads
            next_head = heads[-1].size if heads else head
        return {"events": [e.as_json() for e in events], "next": cursor, "next_head": next_head}

    def held(request: Request, person: Person, channel: str) -> _Held | None:
        if credential is None:
            return None
        return _Held(node.kernel, credential(request), f"feed.{channel}", person.id)

    def checked_page(
        person: Person, cursor: int, chosen: FeedFilter, still: _Held | None
    ) -> tuple[list[FeedEvent | FlowEvent], int]:
        page = feed.page(person, cursor, chosen)  # first: a disabled reader is named as such
        if still is not None:
            still.check()
        return page

    async def follow(
        person: Person, after: int | None, head: int | None, chosen: FeedFilter, still: _Held | None
    ) -> AsyncIterator[tuple[Event, tuple[int, int]]]:
        """Each event with the cursor that resumes after it: (audit record, tree head size). Raises
        (and so ends) once the reader is disabled or ``still`` refuses, checked at every poll."""
        cursor = after if after is not None else await run_in_threadpool(feed.head)
        size = head if head is not None else await run_in_threadpool(feed.head_size)
        while True:
            events, next_cursor = await run_in_threadpool(checked_page, person, cursor, chosen, still)
            for event in events:
                yield event, (event.id, size)
            cursor = next_cursor
            heads = await run_in_threadpool(feed.heads, person, size, chosen)
            for tree_head in heads:
                size = tree_head.size
                yield tree_head, (cursor, size)
            if not events and not heads:
                await asyncio.sleep(POLL_S)

    async def sse(
        person: Caller,
        request: Request,
        topic: Topics = None,
        originator: Originators = None,
        agreement: Agreements = None,
        type: Types = None,
        after: Annotated[int | None, Query(ge=0, le=_MAX_SEQ, description="Resume after this id")] = None,
        head: Head = None,
        last_event_id: Annotated[
            str,  # noqa: RUF013 - the document states a number, never null
            Header(
                alias="Last-Event-ID",
                pattern=r"^[0-9]{1,18}(\.[0-9]{1,18})?$",
                description="Resume after this event (`<record>` or `<record>.<tree head size>`)",
            ),
        ] = None,  # type: ignore[assignment]
    ) -> StreamingResponse:
        """What changed that the caller may see, as Server-Sent Events (``event`` is the change's
        type, ``id`` resumes it); without ``Last-Event-ID`` or ``after``, from now on."""
        start, size = after, head
        if last_event_id is not None:
            record, _, tree = last_event_id.partition(".")
            start, size = int(record), (int(tree) if tree else None)
        chosen = only(topic, originator, agreement, type)
        await run_in_threadpool(feed.page, person, start or 0, chosen, limit=1)  # refused now, not mid-stream
        still = held(request, person, "sse")

        async def messages() -> AsyncIterator[bytes]:
            try:
                async for event, cursor in follow(person, start, size, chosen, still):
                    yield _sse(event, cursor)
            except GsomiaError:  # the reader was disabled, or its credential revoked: the stream ends
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
        ``head``, ``topic``, ``originator``, ``agreement``, ``type`` as for ``/feed``; resume after
        the last event's ``id`` (``after``) and the last tree head's ``size`` (``head``)."""
        try:
            request = presented(websocket, node.kernel, "GET")
            person = await websocket_caller(websocket, reader, node.kernel, "GET", request)
            params = websocket.query_params
            start, size = _number(params.get("after"), "after"), _number(params.get("head"), "head")
            chosen = FeedFilter(
                frozenset(params.getlist("topic")),
                frozenset(params.getlist("originator")),
                frozenset(params.getlist("agreement")),
                frozenset(params.getlist("type")),
            )
            await run_in_threadpool(feed.page, person, start or 0, chosen, limit=1)
        except GsomiaError as exc:
            await websocket.close(code=_POLICY_VIOLATION, reason=str(exc)[:120])
            return
        await websocket.accept()
        still = held(request, person, "ws")

        async def send() -> None:
            try:
                async for event, _ in follow(person, start, size, chosen, still):
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


def _number(raw: str | None, name: str) -> int | None:
    """A cursor from a WebSocket's query (``None``: from now on)."""
    if raw is not None and not (raw.isdigit() and len(raw) <= 18):
        raise InvalidInputError(f"{name}: a number, 0 or more")
    return None if raw is None else int(raw)
