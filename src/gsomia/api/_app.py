"""The node's REST API: FastAPI over :class:`gsomia.node.Node`, problem details for every error.

Handlers that use the store are plain ``def`` so FastAPI runs them in its thread pool (the store is
synchronous); the authentication dependency and what answers from memory are ``async``, so a
request crosses to a worker thread once, not once per dependency.
No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at
definition time, and ``Caller`` is local to :func:`create_app`.
"""

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response, WebSocketException
from fastapi.dependencies.models import Dependant
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gsomia._web import dashboard_scope
from gsomia.api import _models as m
from gsomia.api._agreements import add_agreements_routes
from gsomia.api._approvals import approvals_router
from gsomia.api._audit import add_audit_routes
from gsomia.api._duties import duties_router
from gsomia.api._federation import add_federation_routes
from gsomia.api._feed import feed_router
from gsomia.api._fields import BEARER
from gsomia.api._items import ModelJson, add_items_routes, kept_route
from gsomia.api._observe import RequestObserver, metrics_registry, name_actor
from gsomia.api._openapi import refine
from gsomia.api._people import add_people_routes
from gsomia.api._problems import TAXII_PREFIX, install, problem, rate_limited, taxii_error
from gsomia.api._standards import standards_router
from gsomia.api._stream import stream_router
from gsomia.api._text import TextGate
from gsomia.api._tls import PeerGate
from gsomia.core.access import Person
from gsomia.errors import InvalidInputError, RateLimitedError
from gsomia.exchange import inbox_body_limit
from gsomia.node import Node
from gsomia.stream import StreamService
from gsomia.taxii import taxii_router
from gsomia.ui import ui_router

__all__ = ["create_app"]

PURPOSE_HEADER = "Gsomia-Purpose"  # the purpose a caller states for this request (Art. 6(b))

_log = logging.getLogger("gsomia.sender")


class _BodyLimit:
    """Refuse a body larger than the node accepts before reading it (413), or of unknown size (411).

    Each refusal is audited through ``record`` like the problem handlers' (``api.refused``).
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        record: Callable[[str, str | None, int, str, str | None, str | None], int | None],
        caller: Callable[[Request], str | None],
    ) -> None:
        self.app = app
        self.limit = limit
        self.record = record
        self.caller = caller

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            refusal = self._refusal(dict(scope["headers"]))
            if refusal is not None:
                status, slug, title, detail = refusal
                request = Request(scope)
                wait = self.record(
                    "api.refused", scope.get("path"), status, detail, _source(request), self.caller(request)
                )
                if wait is not None:  # the source has spent its budget: that is the answer now
                    await rate_limited(request, RateLimitedError(wait))(scope, receive, send)
                    return
                taxii = str(scope.get("path", "")).startswith(TAXII_PREFIX)
                render = taxii_error if taxii else problem
                await render(status, slug, title, detail)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, headers: dict[bytes, bytes]) -> tuple[int, str, str, str] | None:
        # a body sent with Transfer-Encoding is refused whatever length it also states: h11 frames a
        # body with both as chunked (RFC 9112 §6.3) and hands both on, so a small stated length let
        # a chunked body of any size through to the route
        if headers.get(b"transfer-encoding"):
            return 411, "length-required", "Length required", "send a Content-Length header"
        length = headers.get(b"content-length")
        if length is None:
            return None
        try:
            size = int(length)
        except ValueError:
            size = -1
        if size < 0:
            return 400, "bad-request", "Bad request", "Content-Length is not a number"
        if size > self.limit:
            detail = f"request body of {size} bytes exceeds this node's limit of {self.limit}"
            return 413, "payload-too-large", "Payload too large", detail
        return None


def _source(request: HTTPConnection) -> str | None:
    """The caller's network address (what an unauthenticated caller's refusals are counted by)."""
    return request.client.host if request.client else None


source = _source

# Routes that need no credentials yet spend nothing of a source's budget up front. ``/inbox``: its
# caller proves itself by what it sends; what fails to (an envelope that does not open) spends, and
# a spent source is refused there by the service (Node.inbox). ``/healthz``: the balancer's probe,
# every second per process, answered from memory; counting it would cost more than answering it.
_UNCOUNTED = frozenset({"/inbox", "/healthz"})
_TRY_AGAIN_LATER = 1013  # WebSocket close code (RFC 6455 registry): the server is overloaded for you


# a path no route answers: the router's start-up match against it (_warm_routes) reaches every route
WARM_PATH = "/.gsomia/warm-routes"


async def _warm_routes(router: ASGIApp) -> None:
    """Match every route once, before the node serves, against a path none answers (an HTTP request
    and a WebSocket), on the router alone (no middleware: nothing is counted, spent or audited; the
    router answers itself, not found). FastAPI builds what it keeps of an included router's routes
    (each route's parameters and models, for its own path) on their first match; that was the first
    routed request's work after start-up, on the event loop: a partner's ``/inbox`` or the first
    track published, 240-280 ms of one core at load 12 in every node of a stream benchmark, every
    track on the node waiting it out (benchmarks/JOURNAL.md, bench_stream). A framework that builds
    nothing lazily answers the same not-found and keeps nothing."""

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        return None

    for kind in ("http", "websocket"):
        scope: Scope = {
            "type": kind,
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http" if kind == "http" else "ws",
            "path": WARM_PATH,
            "raw_path": WARM_PATH.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "client": None,
            "server": None,
        }
        try:
            await router(scope, receive, send)
        except Exception:  # the first real request builds them instead, as it did before
            _log.warning("matching the routes before serving failed", exc_info=True)


def _spending(inner: ASGIApp, spend: Callable[[HTTPConnection], RateLimitedError | None]) -> ASGIApp:
    """``inner`` behind the budget of its callers' sources (for routes FastAPI adds as plain ones)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        error = await run_in_threadpool(spend, HTTPConnection(scope))
        if error is None:
            await inner(scope, receive, send)
        else:
            await rate_limited(Request(scope), error)(scope, receive, send)

    return app


def _needs(dependant: Dependant, call: Callable[..., Any]) -> bool:
    """Whether ``call`` is among a route's dependencies, however deep."""
    return any(d.call is call or _needs(d, call) for d in dependant.dependencies)


# FastAPI builds a route's parameters (pydantic schemas of the shared ``Annotated`` types) where the
# route is defined and, for an included router's routes, on their first match (``_warm_routes``); the
# two are not safe against each other in two threads: a process serving several nodes' apps from
# threads (``demo.network.serve_in_threads``, tests) defined one app while the one before warmed its
# routes, and pydantic saw a half-made field (its UnsupportedFieldAttributeWarning, an error in the
# tests). One process builds one app's routes at a time.
_BUILDING = threading.Lock()


def create_app(
    node: Node,
    *,
    sender: bool = False,
    sender_interval: float | None = None,
    head_every: float | None = None,
    stream: StreamService | None = None,
    log_writer: bool = False,
) -> FastAPI:
    """The ASGI app serving ``node``; with ``sender``, a background thread delivers the outbox.

    The background thread is also the audit log's writer (integrates and signs heads): with
    ``sender``, or alone with ``log_writer`` (``gsomia node serve --no-sender``). Without either (an
    app in a test) nothing integrates: the routes only read the log.

    ``stream`` is the node's missile-track stream (by default over the in-process bus).
    """
    with _BUILDING:
        return _create_app(
            node,
            sender=sender,
            sender_interval=sender_interval,
            head_every=head_every,
            stream=stream,
            log_writer=log_writer,
        )


def _create_app(
    node: Node,
    *,
    sender: bool,
    sender_interval: float | None,
    head_every: float | None,
    stream: StreamService | None,
    log_writer: bool,
) -> FastAPI:
    """:func:`create_app`, under the lock of the process's route building."""
    stream = stream if stream is not None else StreamService(node)
    public: dict[int, bool] = {}  # id(route) -> whether it needs no credentials (decided once per route)

    def spend(connection: HTTPConnection) -> RateLimitedError | None:
        wait = node.kernel.admission.spend(source(connection))
        return (
            None if wait is None else node.kernel.rate_limited(source(connection), connection.url.path, wait)
        )

    async def admit(connection: HTTPConnection) -> None:
        """Every route's first dependency: a request to a route that needs no credentials (no
        ``reader`` among its dependencies) spends one unit of its source's budget, and once that is
        spent is refused with 429 and ``Retry-After`` (a WebSocket handshake: closed with 1013),
        audited in bounded space. Routes that authenticate spend nothing here; their refusals of
        bad credentials spend it (:meth:`gsomia.kernel.NodeContext.refuse_unauthenticated`)."""
        route = connection.scope.get("route")
        if route is None:
            return
        open_route = public.get(id(route))
        if open_route is None:
            dependant = getattr(route, "dependant", None)
            open_route = public[id(route)] = (
                dependant is not None
                and not _needs(dependant, reader)
                and getattr(route, "path", "") not in _UNCOUNTED
            )
        if not open_route:
            return
        error = await run_in_threadpool(spend, connection)  # the store's counters: off the event loop
        if error is None:
            return
        if connection.scope["type"] == "websocket":
            raise WebSocketException(code=_TRY_AGAIN_LATER, reason=str(error)[:120])
        raise error

    # the loops' pace is the node's configuration (node.toml) unless a caller (a test) sets it
    sender_interval = node.config.sender_interval if sender_interval is None else sender_interval
    head_every = node.config.head_interval if head_every is None else head_every

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # told at once of what the node's other processes change (PostgreSQL); polling regardless
        node.kernel.watch.listen()
        runtime = (
            node.runtime(interval=sender_interval, head_every=head_every, deliver=sender)
            if sender or log_writer
            else None
        )
        app.state.runtime = runtime
        if runtime is not None:
            runtime.start()
        if stream.leases_links:  # the links' leases are claimed from the start, not at the first track
            await stream.start()
        with _BUILDING:  # not while another thread defines an app (nothing is served yet)
            await _warm_routes(app.router)  # not at the first request, on the loop every track needs
        yield
        await stream.close()
        if runtime is not None:
            runtime.stop()
        app.state.runtime = None
        node.kernel.watch.close()

    app = FastAPI(
        lifespan=lifespan,
        title=f"gsomia node ({node.party})",
        version="0.1.0",
        description="Items, people, agreements and release decisions of one party's gsomia node. "
        "Every error is an RFC 9457 problem document.",
        responses={
            **{
                code: {"model": m.Problem, "content": {"application/problem+json": {}}}
                for code in (400, 401, 403, 404, 409, 411, 413, 422)
            },
            429: {
                "model": m.Problem,
                "content": {"application/problem+json": {}},
                "description": "The caller's address has spent its budget of requests without "
                "credentials (and of refusals) for now; retry after the seconds Retry-After gives.",
                "headers": {
                    "Retry-After": {
                        "description": "Seconds until the address's budget is renewed.",
                        "schema": {"type": "integer", "minimum": 1},
                    }
                },
            },
        },
        dependencies=[Depends(admit)],
        # the node reports through its own /metrics and JSON log lines, not OpenTelemetry: FastAPI's
        # native telemetry asked the global OpenTelemetry providers whether any was configured on
        # every request, 2.7% of the node's CPU under load (issue 18, bench_load's profile)
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    dashboard = dashboard_scope(node.ring)

    def caller(request: HTTPConnection) -> str | None:
        """Who sent a refused request, if it carries valid credentials (nothing audited here)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            person = node.credentials.peek(token.strip())
        else:
            person = node.credentials.peek(request.cookies.get(dashboard.cookie), session=True)
        return person.id if person else None

    install(app, node.kernel.record_refusal, node.kernel.recorded, caller)
    written = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document with this node's vocabularies and cross-field rules stated (once)."""
        if app.openapi_schema is None:
            app.openapi_schema = refine(written(), node.catalogue, node.party)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it
    for route in app.routes:  # FastAPI's own pages (/openapi.json, /docs, /redoc) are no API routes:
        if isinstance(route, Route) and not isinstance(route, APIRoute):  # they spend as public routes do
            route.app = _spending(route.app, spend)
    # inside the body limit (a body too large is refused before it is read): no route reads text
    # that no store can hold (a NUL, a lone surrogate), from a path, a query, a header or a body
    app.add_middleware(TextGate, record=node.kernel.record_refusal, caller=caller)
    app.add_middleware(
        _BodyLimit,
        limit=inbox_body_limit(node.config.max_payload_bytes),
        record=node.kernel.record_refusal,
        caller=caller,
    )
    if node.kernel.tls is not None:  # mutual TLS: the node-to-node routes only for a named peer certificate
        app.add_middleware(PeerGate, peers=node.kernel.peers, record=node.kernel.record_refusal)
    app.state.runtime = None
    registry, requests_seen = metrics_registry(node, stream, lambda: app.state.runtime)
    # the outermost: sees every answer (each JSON one made no-store there)
    app.add_middleware(RequestObserver, histogram=requests_seen)

    async def reader(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
    ) -> Person:
        """The caller: a bearer token, or (reading only, under the dashboard's path) its session.

        The session is never enough to change anything, so a cross-site request cannot act (CSRF).
        A token this process keeps, valid and its person's record active, is recognised on the event
        loop (:meth:`Credentials.recognise`, no I/O); anything else is decided in a worker thread
        by :meth:`Credentials.authenticate`, which reads the store and audits a refusal.
        """
        if (
            credentials is None
            and request.method in ("GET", "HEAD")
            and request.url.path.startswith(dashboard.path + "/")
        ):
            cookie = request.cookies.get(dashboard.cookie)
            person = await run_in_threadpool(node.credentials.session, cookie, source(request))
        else:
            token = credentials.credentials if credentials else None
            kept = node.credentials.recognise(token) if token else None
            person = (
                kept
                if kept is not None
                else await run_in_threadpool(node.credentials.authenticate, token, source(request))
            )
        name_actor(person.id)
        stated = request.headers.get(PURPOSE_HEADER)
        if stated is None:
            return person  # each item is read for the purpose it was provided for
        if not stated.strip() or len(stated) > 200 or any(ord(c) < 32 for c in stated):
            raise InvalidInputError(f"{PURPOSE_HEADER}: 1 to 200 printable characters")
        return replace(person, purpose=stated)  # Art. 6(b): another purpose needs the originator's consent

    purpose_header = PURPOSE_HEADER.lower().encode("latin-1")

    def kept_caller(scope: Scope) -> Callable[[], Person | None] | None:
        """Who ``reader`` would give as the caller, where it would take a bearer token and nothing
        else (the first ``Authorization`` header read as FastAPI's bearer scheme reads it, no purpose
        stated), as work for the request's read thread: the person of a token this process keeps
        and may recognise on the loop (:meth:`Credentials.recognise`), or, for a token it kept
        under counters now due for reading, the same checks there on the rows read again if a
        counter moved (:meth:`Credentials.known`: before, every such request went through FastAPI's
        dependencies and one more hand-off, 7-11% of them under load). That work's ``None``, and
        this ``None`` (anything else), leave the request to ``reader`` (the store's look-up, a
        refusal audited, a session, a purpose)."""
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == purpose_header:
                return None
        if authorization is None:
            return None
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        token = token.strip()
        if not token or scheme.lower() != "bearer":
            return None
        person = node.credentials.recognise(token)
        if person is not None:
            name_actor(person.id)
            return lambda: person
        if not node.credentials.held(token):  # unknown here: the long way, which refuses and audits
            return None

        def checked() -> Person | None:
            found = node.credentials.known(token)
            if found is not None:
                name_actor(found.id)  # the request's context, copied into the thread: the same dict
            return found

        return checked

    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below

    # The most asked routes first: FastAPI tries the routes in order, each included router's one by
    # one, so a route added after them costs every request to it a scan of all of theirs (a third of
    # /healthz's CPU, measured: benchmarks/JOURNAL.md). No two routes here match the same path.
    def health() -> dict[str, Any]:
        bus = stream.bus.health()  # the bus's state in memory, on the loop the bus runs on
        status = "ok" if bus.get("state") == "connected" else "degraded"
        return {"status": status, "party": node.party, "bus": bus}

    @app.get("/healthz", tags=["node"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the node answers and knows its party; ``degraded`` while the stream's bus is not
        connected (its state, and how much of its outage buffer is used, under ``bus``)."""
        return health()

    # The balancer's probe, a third of bench_load's requests: answered on the loop past FastAPI's
    # dependency solving and its response model, which cost more than the answer (issue 18,
    # benchmarks/JOURNAL.md). It needs no caller and ``admit`` spends nothing for it (_UNCOUNTED);
    # tests/api/test_kept_routes.py holds the two answers to the same bytes.
    kept_route(
        app,
        healthz,
        lambda scope: None if scope["query_string"] else lambda: ModelJson(health()),
        on_loop=True,
    )

    add_items_routes(app, node, reader, kept_caller)
    app.include_router(taxii_router(node, reader))
    app.include_router(ui_router(node, reader))
    app.include_router(duties_router(node, reader))
    app.include_router(approvals_router(node, reader))

    def credential(request: Request) -> Callable[[], datetime]:
        """The check of what ``reader`` let ``request`` in with, as ``reader`` chose it (a bearer
        token, else the dashboard's session): an open stream makes it again when any process
        revokes a token (:meth:`Credentials.still`)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return partial(node.credentials.still, token.strip())
        return partial(node.credentials.still, request.cookies.get(dashboard.cookie) or "", session=True)

    app.include_router(feed_router(node, reader, dashboard=dashboard.path, credential=credential))
    app.include_router(standards_router(node, reader))
    app.include_router(stream_router(stream, reader, dashboard=dashboard.path, credential=credential))
    app.state.stream = stream

    @app.get(
        "/metrics",
        tags=["node"],
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    def metrics(person: Caller) -> Response:
        """This process's Prometheus metrics (an administrator's token): the outbox's depth and
        delivery lag per peer, the audit log's integration lag, each partner's tree head's age,
        the leases' holders, stream and request counters, refusals by kind."""
        node.metrics.require_reader(person)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    add_people_routes(app, node, reader)
    add_federation_routes(app, node, reader)
    add_audit_routes(app, node, reader)
    add_agreements_routes(app, node, reader)

    return app
