"""Items: ingest, list, read, inventory.

Routes added by ``create_app``: each handler parses, calls one service method and
presents (``gsomia._present``); who may do what is decided by the service.

No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
"""

import asyncio
import collections
import contextlib
import contextvars
import queue
import re
import threading
import weakref
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Query, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette._exception_handler import wrap_app_handling_exceptions  # as FastAPI's routes use it
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gsomia._canonical import compact_built_bytes, compact_bytes
from gsomia._present import (
    inventory_view,
    item_view,
)
from gsomia.api import _models as m
from gsomia.api._fields import Classification, Instant, Party, Text
from gsomia.api._refs import REF_PATTERN, ItemPath, OriginatorQuery, item_ref
from gsomia.core.access import Person
from gsomia.core.instants import epoch_us
from gsomia.errors import InvalidInputError, UnknownNameError
from gsomia.node import Node, PortionIngest
from gsomia.store import ItemFilter

__all__ = ["ModelJson", "add_items_routes", "kept_route"]


# How many pages and reads run at once in this process: the others wait their turn, first come first
# served. At 200 clients, 40 of them at once (anyio's default worker threads) shared one interpreter
# lock, so each took as long as the lock's hand-outs made it, not as its turn came: the tail grew
# (bench_load.py, benchmarks/JOURNAL.md "API under load"). 8 keep both cores busy and are enough for
# concurrent reads' audit records to share their writes.
READ_THREADS = 8
# how long an idle read thread waits for work before it ends (a process that stops serving, or a
# test's loop that closed, keeps no threads)
_IDLE_S = 10.0


_T = TypeVar("_T")


_Job = tuple["asyncio.Future[Any]", contextvars.Context, Callable[[], Any]]


class _ReadThreads:
    """Up to ``READ_THREADS`` works of one event loop at once in threads of their own, the others
    waiting on the loop, first come first served; each work in its request's context (a copy, as
    anyio's worker threads ran it), its result set on the request's future on the loop.

    What anyio's ``to_thread.run_sync`` behind a ``CapacityLimiter`` did, without its per-call
    machinery on the loop (a cancel scope, the limiter's acquire and release, two checkpoints, a
    worker thread chosen and given its own queue): a quarter of the loop's samples in-process (issue
    18, benchmarks/JOURNAL.md "API under load", twelfth pass). As with the limiter, the next waiting
    work is handed out on the loop when one ends (``_ended``), never by a thread from a backlog: a
    thread hands the loop its answer before it takes more (a pool whose threads took their next work
    themselves was tried in the seventh pass, and requests in flight stalled for seconds). A caller
    cancelled while it waits runs nothing; one cancelled while its work runs does not stop the work
    (anyio's default did not either): it is finished, its answer dropped, and its place is free only
    then. A caller cancelled after its work was handed out but before a thread took it up runs
    nothing either (the thread looks first, and frees the place): no read decided, answered or
    audited for a caller who is gone. Only the loop touches ``_running`` and ``_waiting``."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._running = 0  # works handed out and not yet answered on the loop
        self._waiting: collections.deque[_Job] = collections.deque()
        self._lock = threading.Lock()  # the threads' count, below
        self._threads = 0  # started and not ended
        self._idle = 0  # of them, waiting for work

    def submit(self, loop: asyncio.AbstractEventLoop, work: Callable[[], _T]) -> asyncio.Future[_T]:
        """``work``'s future on ``loop`` (on the loop; the loop itself is not kept)."""
        future: asyncio.Future[_T] = loop.create_future()
        job = (future, contextvars.copy_context(), work)
        if self._running < READ_THREADS:
            self._hand(job)
        else:
            self._waiting.append(job)
        return future

    def _hand(self, job: _Job) -> None:
        self._running += 1
        with self._lock:
            self._queue.put(job)
            start = self._idle == 0 and self._threads < READ_THREADS
            if start:
                self._threads += 1
        if start:
            threading.Thread(target=self._run, name="gsomia-read", daemon=True).start()

    def _ended(self, future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        """On the loop: a work's answer, and the next waiting work handed out in its place."""
        self._running -= 1
        while self._waiting and self._running < READ_THREADS:
            job = self._waiting.popleft()
            if not job[0].cancelled():  # its caller gave up waiting: nothing of it runs
                self._hand(job)
        if future.cancelled():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def _run(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                future, context, work = self._queue.get(timeout=_IDLE_S)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._queue.empty():  # under the lock: no work was handed out meanwhile
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._idle -= 1
            if future.cancelled():  # its caller was cancelled before this took it up: nothing runs
                self._answer(future, None, None)
                del future, context, work
                continue
            try:
                result = context.run(work)
            except BaseException as exc:  # handed to the request, raised there
                self._answer(future, None, exc)
            else:
                self._answer(future, result, None)
                del result
            del future, context, work

    def _answer(self, future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits for the answer
            future.get_loop().call_soon_threadsafe(self._ended, future, result, error)


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ReadThreads] = weakref.WeakKeyDictionary()


async def _in_read_thread(work: Callable[[], _T]) -> _T:
    """``work`` in a read thread, at most ``READ_THREADS`` of them at once (one set per loop)."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = _ReadThreads()
    return await pool.submit(loop, work)


# The fields of ``ItemOut`` / ``ItemContentOut`` that ``item_view`` leaves out where they are empty, as
# the response models write them (null): the read routes' JSON is the models' own, field for field.
_ITEM_NULLS: dict[str, Any] = {"origin_id": None, "portions": None}
_CONTENT_NULLS: dict[str, Any] = {**_ITEM_NULLS, "payload": None, "payload_base64": None}


class ModelJson(JSONResponse):
    """A read route's answer written straight from its presenter's dict, in its response model's
    shape (``_ITEM_NULLS``): FastAPI's validation of a returned dict against the model, then its
    serialisation, were 7% of the node's CPU under load (issue 18; the model stays the route's
    documented answer, and tests/api/test_read_json.py holds the two to the same JSON)."""

    def render(self, content: Any) -> bytes:
        return compact_bytes(content) or super().render(content)


def _view_json(content: dict[str, Any], loose: Any = None) -> Response:
    """:class:`ModelJson` of item views (:func:`item_view`'s, built of strings, integers, ``None``,
    lists and dicts) holding ``loose`` from outside (a read's JSON payload): only that is looked at
    for what orjson writes otherwise (:func:`compact_built_bytes`); the same bytes, the same headers."""
    body = compact_built_bytes(content, loose)
    return ModelJson(content) if body is None else Response(body, media_type=ModelJson.media_type)


def _instant_param(node: Node, text: str | None, name: str) -> datetime | None:
    return None if text is None else m.instant_in(node, text, name)


# The query strings the kept routes answer without FastAPI's parameter handling: ``limit`` and
# ``cursor`` (each at most once, in FastAPI's own accepted form) for a page, nothing for a read.
# Anything else (a filter, a value FastAPI would refuse or coerce, a repeated name, an escape) takes
# the route as declared, whose answer (or 422) is the reference the kept one is tested against.
_PAGE_PART = re.compile(rb"(limit)=([1-9][0-9]{0,3})|(cursor)=(s[A-Za-z0-9_-]{32})")
_REF = re.compile(REF_PATTERN)
_MAX_LIMIT = 1000  # the route's ``le``
_DEFAULT_LIMIT = 100  # the route's default


def _page_query(query: bytes) -> tuple[str | None, int] | None:
    """``(cursor, limit)`` of a page's query string of only ``limit`` and ``cursor`` written as the
    route accepts them; ``None`` for anything else (the declared route decides it)."""
    cursor: str | None = None
    limit: int | None = None
    if not query:
        return None, _DEFAULT_LIMIT
    for part in query.split(b"&"):
        match = _PAGE_PART.fullmatch(part)
        if match is None:
            return None
        if match[1]:
            if limit is not None:
                return None
            limit = int(match[2])
        else:
            if cursor is not None:
                return None
            cursor = match[4].decode("ascii")
    if limit is not None and limit > _MAX_LIMIT:
        return None
    return cursor, _DEFAULT_LIMIT if limit is None else limit


def kept_route(
    app: FastAPI,
    endpoint: Callable[..., Any],
    work: Callable[[Scope], Callable[[], Response | None] | None],
    *,
    on_loop: bool = False,
) -> None:
    """Serve ``endpoint``'s route without FastAPI's dependency solving when ``work(scope)`` gives the
    request's work (a kept caller, parameters in the simple form): that work in a read thread (with
    ``on_loop``, on the event loop: work that waits for nothing), its exceptions through the app's
    handlers as the route's own would be. ``None`` from ``work(scope)``, or from the work itself
    (the caller was not confirmed; nothing was answered, read or audited): the route as declared
    (FastAPI's dependencies, validation and refusals). Dependency solving and the query parameters'
    extraction were the largest single cost of a page and a read (issue 18, bench_load:
    benchmarks/JOURNAL.md); the route's OpenAPI document is unchanged."""
    route = next(r for r in app.router.routes if isinstance(r, APIRoute) and r.endpoint is endpoint)
    declared: ASGIApp = route.app

    async def kept(scope: Scope, receive: Receive, send: Send) -> None:
        answer = work(scope)
        if answer is None:
            await declared(scope, receive, send)
            return
        found = answer
        answered = True

        async def respond(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal answered
            response = found() if on_loop else await _in_read_thread(found)
            if response is None:
                answered = False
                return
            await response(scope, receive, send)

        await wrap_app_handling_exceptions(respond, Request(scope, receive, send))(scope, receive, send)
        if not answered:
            await declared(scope, receive, send)

    route.app = kept


def add_items_routes(
    app: FastAPI,
    node: Node,
    reader: Callable[..., Awaitable[Person]],
    kept_caller: Callable[[Scope], Callable[[], Person | None] | None],
) -> None:
    """Add the routes over ``node`` to ``app`` (on the app itself, so that its routes list names every
    method a path serves: the 405's ``Allow``); ``reader`` is the app's authentication dependency,
    ``kept_caller`` its shortcut (for a request whose token this process keeps, the work that gives
    its caller in the read thread, ``None`` there if the token no longer holds; else ``None``),
    which the page and the read take past FastAPI's dependency solving (:func:`kept_route`)."""
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below
    ItemRef = Annotated[str, Depends(item_ref(node, reader))]  # noqa: N806 - the path's item (issue 22 §4)

    def _level_name(text: str | None) -> str | None:
        """A level given by name or alias, as the store keeps it (its national name)."""
        if text is None:
            return None
        for party in node.catalogue.parties.values():
            if party.scheme.has(text):
                return party.scheme.level(text).name
        raise UnknownNameError(f"no party's scheme has the classification {text!r}")

    # --- items ---

    @app.post("/items", status_code=201, response_model=m.ItemOut, tags=["items"])
    def ingest(body: m.ItemIn, person: Caller, response: Response) -> dict[str, Any]:
        """Ingest a labelled item; a received item names where it came from and under which agreement.
        An item in portions gives ``portions`` (each with its own label) instead of a label and payload."""
        if body.portions is not None:
            if body.label is not None or body.payload is not None or body.payload_base64 is not None:
                raise InvalidInputError("an item in portions gives portions only: no label or payload")
            portions = [
                PortionIngest(p.id, p.label, *m.payload_in(p.payload, p.payload_base64, required=True))
                for p in body.portions
            ]
            item = node.items.ingest(
                person,
                label=None,
                payload=b"",
                item_id=body.id,
                received_from=body.received_from,
                agreement=body.agreement,
                portions=portions,
            )
        else:
            if body.label is None:
                raise InvalidInputError("give a label (or portions, each with its own label)")
            payload, kind = m.payload_in(body.payload, body.payload_base64, required=True)
            item = node.items.ingest(
                person,
                label=body.label,
                payload=payload,
                payload_type=kind,
                item_id=body.id,
                received_from=body.received_from,
                agreement=body.agreement,
            )
        response.headers["Location"] = f"/items/{item.id}"
        return item_view(item)

    @app.get("/items", response_model=m.PageOut, tags=["items"])
    async def list_items(
        person: Caller,
        originator: Party | None = None,
        classification: Classification | None = None,
        topic: Text | None = None,
        received_from: Party | None = None,
        created_from: Annotated[Instant | None, Query(description="ISO 8601 instant, inclusive")] = None,
        created_before: Annotated[Instant | None, Query(description="ISO 8601 instant, exclusive")] = None,
        cursor: Annotated[
            str | None,
            Query(pattern=r"^s[A-Za-z0-9_-]{32}$", description="A cursor this node issued you (next_cursor)"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        """The items the caller may read, oldest first, a page at a time (keyset cursor)."""

        def page() -> Response:  # one worker thread for the whole page (see read_item)
            lo = _instant_param(node, created_from, "created_from")
            hi = _instant_param(node, created_before, "created_before")
            where = ItemFilter(
                originator=node.catalogue.party(originator).code if originator else None,
                classification=_level_name(classification),
                topic=topic,
                received_from=node.catalogue.party(received_from).code if received_from else None,
                created_from_us=None if lo is None else epoch_us(lo),
                created_before_us=None if hi is None else epoch_us(hi),
            )
            return _page(person, where, cursor, limit)

        return await _in_read_thread(page)

    def _page(person: Person, where: ItemFilter, cursor: str | None, limit: int) -> Response:
        listed = node.items.list_items(person, where, cursor, limit)
        return _view_json(
            {"items": [_ITEM_NULLS | item_view(i) for i in listed.items], "next_cursor": listed.next_cursor}
        )

    @app.get("/items/{item_id}", response_model=m.ItemContentOut, tags=["items"])
    async def read_item(item_id: ItemPath, person: Caller, originator: OriginatorQuery = None) -> Response:
        """One item with its payload, if the caller may read it (the read is audited either way)."""

        # The item named and read (one query: the row the name resolves to is the row read), in one
        # worker thread. A plain ``def`` route would cross
        # twice, or more: FastAPI runs each ``def`` dependency, the ``def`` endpoint and then the
        # validation of its response model each in a worker thread of its own.
        return await _in_read_thread(partial(_read, person, item_id, originator))

    def _read(person: Person, item_id: str, originator: str | None) -> Response:
        view = _CONTENT_NULLS | item_view(*node.items.read_named(person, item_id, originator))
        return _view_json(view, view["payload"])

    _no_filter = ItemFilter()

    def kept_page(scope: Scope) -> Callable[[], Response | None] | None:
        asked = _page_query(scope["query_string"])
        caller = None if asked is None else kept_caller(scope)
        if asked is None or caller is None:
            return None
        cursor, limit = asked

        def page() -> Response | None:
            person = caller()
            return None if person is None else _page(person, _no_filter, cursor, limit)

        return page

    def kept_read(scope: Scope) -> Callable[[], Response | None] | None:
        item_id = scope["path_params"]["item_id"]
        if scope["query_string"] or not _REF.fullmatch(item_id):
            return None
        caller = kept_caller(scope)
        if caller is None:
            return None

        def read() -> Response | None:
            person = caller()
            return None if person is None else _read(person, item_id, None)

        return read

    kept_route(app, list_items, kept_page)
    kept_route(app, read_item, kept_read)

    @app.get("/items/{item_id}/inventory", response_model=list[m.InventoryOut], tags=["items"])
    def inventory(item_id: ItemRef, person: Caller) -> list[dict[str, Any]]:
        """Where the item came from, who holds copies, where it was sent."""
        return [inventory_view(r) for r in node.items.inventory(person, item_id)]
