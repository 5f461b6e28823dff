"""The stream's HTTP and WebSocket routes, mounted on the node's app.

``POST /stream/tracks`` publishes an update at the originating node; ``GET /stream/tracks/sse``
(Server-Sent Events) and ``/stream/tracks/ws`` (WebSocket) follow the tracks this person may
read; ``/stream/link`` is the WebSocket other nodes open to carry their link sessions;
``POST /stream/authorisations`` records the originator's standing hub authorisation.
Callers authenticate with the node's own ``reader`` dependency (bearer token).
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Header, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from gsomia.api._sse import sse_response
from gsomia.api._text import message_problem
from gsomia.api._ws import presented, websocket_caller
from gsomia.core.access import Person
from gsomia.core.instants import TIMESTAMP_PATTERN, parse_instant
from gsomia.core.tracks import MAX_POINTS
from gsomia.errors import GsomiaError, InvalidInputError, LinkError, RateLimitedError
from gsomia.stream import (
    LINK_PATH,
    StreamService,
    parse_consumer_batch,
)

__all__ = ["stream_router"]

_POLICY_VIOLATION = 1008
KEEPALIVE_S = 1.0


def _fix_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["lat", "lon", "time"],
        "properties": {
            "lat": {"type": "number", "minimum": -90, "maximum": 90},
            "lon": {"type": "number", "minimum": -180, "maximum": 180},
            "time": {"type": "string", "pattern": TIMESTAMP_PATTERN},
        },
    }


def _point_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["t", "lat", "lon", "alt_m", "speed_mps"],
        "properties": {
            "t": {"type": "string", "pattern": TIMESTAMP_PATTERN},
            "lat": {"type": "number", "minimum": -90, "maximum": 90},
            "lon": {"type": "number", "minimum": -180, "maximum": 180},
            "alt_m": {"type": "number", "minimum": -500, "maximum": 5_000_000},
            "speed_mps": {"type": "number", "minimum": 0, "maximum": 20_000},
        },
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# What parse_track_update accepts, stated (samples in time order: the operation's x-gsomia-rules).
_TRACK_BODY = _body(
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["track_id", "update_ts", "launch", "points", "missile_class", "quality", "final"],
        "properties": {
            "track_id": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"},
            "originator": {"type": "string", "description": "this node's party, if given"},
            "update_ts": {"type": "string", "pattern": TIMESTAMP_PATTERN},
            "launch": _fix_schema(),
            "impact": {"anyOf": [_fix_schema(), {"type": "null"}]},
            "points": {"type": "array", "maxItems": MAX_POINTS, "items": _point_schema()},
            "missile_class": {"type": "string", "pattern": r"^[A-Za-z0-9 .,()/+_-]{1,64}$"},
            "quality": {"type": "number", "minimum": 0, "maximum": 1},
            "final": {"type": "boolean"},
        },
    }
)
_PARTY = {"type": "string", "pattern": "^[A-Z]{3}$", "x-gsomia-vocabulary": "party"}
_AUTHORISATION_BODY = _body(
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["recipient"],
        "properties": {
            "recipient": _PARTY,
            "hub": _PARTY,
            "expires": {"anyOf": [{"type": "string", "pattern": TIMESTAMP_PATTERN}, {"type": "null"}]},
        },
    }
)


def _sse(seq: int, track: bytes) -> bytes:
    return b"event: track\nid: %d\ndata: %b\n\n" % (seq, track)


async def _send_refusal(websocket: WebSocket, exc: GsomiaError, data: Any) -> None:
    track_id = data.get("track_id") if isinstance(data, dict) else None
    refusal = {"error": type(exc).__name__, "detail": str(exc), "track_id": track_id}
    await websocket.send_text(orjson.dumps(refusal, default=str).decode())


def stream_router(
    stream: StreamService,
    reader: Callable[..., Awaitable[Person]],
    *,
    dashboard: str | None = None,
    credential: Callable[[Request], Callable[[], datetime]] | None = None,
) -> APIRouter:
    """The stream's routes over ``stream``; ``reader`` is the node's authentication dependency.

    ``credential`` gives, for a request ``reader`` let in, the check of what it was let in with (a
    bearer token, a dashboard session) that an open consumer's stream, or a publisher's feed, makes
    again whenever any process revokes a token, and at its expiry: it returns the expiry or raises
    (``StreamService`` ends the stream or the feed then, the refusal audited).

    ``dashboard`` is the dashboard's path: the consumers' routes are served under it as well
    (``{dashboard}/tracks/sse``, ``{dashboard}/tracks/ws``), where the browser sends its session.
    """
    router = APIRouter(tags=["stream"])
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below

    @router.post("/stream/tracks", status_code=202, openapi_extra=_TRACK_BODY)
    async def publish(person: Caller, body: Annotated[Any, Body()]) -> dict[str, Any]:
        """Publish one track update at this, the originating, node (the dashboard's JSON shape); an
        update that names a key twice is refused (422, before any route: ``TextGate``)."""
        return await stream.publish(person, body)

    @router.post("/stream/authorisations", status_code=201, openapi_extra=_AUTHORISATION_BODY)
    def authorise(person: Caller, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        """Record this node's standing authorisation for a hub to relay its tracks to a recipient."""
        unknown = sorted(set(body) - {"recipient", "hub", "expires"})
        if unknown:
            raise InvalidInputError(f"unknown field(s) {', '.join(unknown)}: give recipient, hub, expires")
        expires_text = body.get("expires")
        expires: datetime | None = None
        if expires_text is not None:
            if not isinstance(expires_text, str):
                raise InvalidInputError("expires: an ISO 8601 instant with an offset")
            expires = parse_instant(expires_text, UTC)
        recipient, hub = body.get("recipient"), body.get("hub")  # no hub: the node's agreements' hub
        if not isinstance(recipient, str) or not isinstance(hub, str | None):
            raise InvalidInputError("recipient and hub: party codes, e.g. JPN and USA")
        consent = stream.authorise_relay(person, recipient, hub, expires=expires)
        return {
            "originator": consent.originator,
            "recipient": consent.recipient,
            "hub": consent.hub,
            "given_at": consent.given_at.isoformat(),
            "expires": None if consent.expires is None else consent.expires.isoformat(),
        }

    async def follow_sse(
        person: Caller,
        request: Request,
        last_event_id: Annotated[
            str,  # noqa: RUF013 - str, not str | None: the document states a number, never null
            Header(
                alias="Last-Event-ID",
                pattern=r"^[0-9]{1,18}$",
                description="Resume after this event (what the bus still holds is sent first).",
            ),
        ] = None,  # type: ignore[assignment]  # absent: start with the next track
    ) -> StreamingResponse:
        """Tracks this person may read, as Server-Sent Events (``event: track``, ``id``, ``data``).

        A client that reconnects with ``Last-Event-ID`` resumes where it was."""
        after = None if last_event_id is None else int(last_event_id)
        held = credential(request) if credential is not None else None
        tracks = await stream.subscribe(person, "sse", after, credential=held)

        async def messages() -> AsyncIterator[bytes]:
            async for seq, track in tracks:
                yield _sse(seq, track)

        return sse_response(
            messages(),
            b"gsomia missile-warning stream",
            KEEPALIVE_S,
            close=tracks.aclose,  # type: ignore[attr-defined]
        )

    for path in ("/stream/tracks/sse", *((f"{dashboard}/tracks/sse",) if dashboard else ())):
        router.add_api_route(
            path, follow_sse, methods=["GET"], response_class=StreamingResponse,
            include_in_schema=not path.startswith(dashboard or "\0"),
        )  # fmt: skip

    @router.websocket("/stream/tracks/publish")
    async def publish_ws(websocket: WebSocket) -> None:
        """A feed of track updates at the originating node (for high-rate publishers: one
        authentication per connection): each text message is one update (a JSON object) or a
        batch of up to ``FEED_BATCH`` updates (a JSON array), published in order. A refused update
        is answered with ``{"error", "detail", "track_id"}``; accepted ones get no answer. A message
        holding text no store can hold (a NUL, a lone surrogate; the API's one rule) is refused
        whole, naming the place, and audited in bounded space (see ``unstorable`` below).

        Before each message, and while none comes, the feed checks that its person may still
        publish and that the token it was opened with still holds (``StreamService.publishing``: a
        consumer's stream's check); once any process disabled them, removed their role or revoked
        the token, or the token expired, the next message is not published and the feed is closed
        1008 naming the refusal, a feed that sends nothing within about a second as well."""
        try:
            request = presented(websocket, stream.kernel, "POST")
            person = await websocket_caller(websocket, reader, stream.kernel, "POST", request)
            stream.require_publisher(person)
        except GsomiaError as exc:
            await websocket.close(code=_POLICY_VIOLATION, reason=str(exc)[:120])
            return
        held = credential(request) if credential is not None else None
        await websocket.accept()
        source = websocket.client.host if websocket.client else "unknown"
        closed = False

        async def close(exc: GsomiaError) -> None:
            """Close the feed 1008 naming ``exc``, once: from the loop below, or from the stream's
            idle round (the feed refused while it sent nothing). Nothing is sent after it."""
            nonlocal closed
            if not closed:
                closed = True
                await websocket.close(code=_POLICY_VIOLATION, reason=str(exc)[:120])

        async def answer(exc: GsomiaError, data: Any) -> None:
            if not closed:  # a refusal found meanwhile closed the feed: nothing more is sent
                await _send_refusal(websocket, exc, data)

        async def unstorable(person: Person, source: str, detail: str) -> bool:
            """Refuse a message holding text no store can hold: audited in bounded space (the
            kernel's refusal tally, per source and minute), answered naming the place; once the
            source's refusals have spent its budget, the feed is closed instead. Whether closed."""
            kernel = stream.kernel
            wait = await run_in_threadpool(
                kernel.tally_refusal, "stream.publish", source, "unstorable", None, detail,
                error=InvalidInputError.__name__, person=person.id if person else None,
            )  # fmt: skip
            if wait is not None:
                await close(RateLimitedError(wait))
                return True
            await answer(InvalidInputError(detail), None)
            return False

        with stream.publishing(person, close, credential=held) as feed:
            try:
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect" or closed:  # closed while it waited
                        return
                    try:
                        await feed.current()  # memory only, unless a person or token changed meanwhile
                    except GsomiaError as exc:  # they may no longer publish: refused (audited once), closed
                        await close(exc)
                        return
                    person = feed.person  # their record as last checked
                    try:
                        text = message.get("text")
                        if text is None:
                            raise InvalidInputError(
                                "a feed message is text: a JSON object or array, not binary"
                            )
                        found = message_problem(text, "message")
                        if found is not None:  # the API's rule for text no store can hold, as a body's
                            if await unstorable(person, source, f"{found[0]}: {found[1]}"):
                                return
                            continue
                        refused = await stream.publish_feed(person, text)
                    except GsomiaError as exc:
                        await answer(exc, None)
                        continue
                    for error, data in refused:
                        await answer(error, data)
            except WebSocketDisconnect:
                return

    async def follow_ws(websocket: WebSocket) -> None:
        """Tracks this person may read, one JSON text message each (bearer token in the handshake;
        or, under the dashboard's path, its session from the node's own pages). With ``?batch=N``
        (1 to ``CONSUMER_BATCH``) each message is a JSON array of the tracks ready when it was made,
        at most N (``stream/_batches.py``): a lone track still goes at once, each track decided on
        its own label as its batch is made (``StreamService.subscribe_batches``), as when it goes alone."""
        try:
            request = presented(websocket, stream.kernel, "GET")
            person = await websocket_caller(websocket, reader, stream.kernel, "GET", request)
        except GsomiaError as exc:
            await websocket.close(code=_POLICY_VIOLATION, reason=str(exc)[:120])
            return
        held = credential(request) if credential is not None else None
        try:
            most = parse_consumer_batch(websocket.query_params.get("batch"))
        except InvalidInputError as exc:  # named to the caller (authenticated): accepted, then closed
            await websocket.accept()
            await websocket.close(code=_POLICY_VIOLATION, reason=str(exc)[:120])
            return
        try:
            tracks: AsyncIterator[Any] = (
                await stream.subscribe(person, "ws", credential=held)
                if most is None
                else await stream.subscribe_batches(person, "ws", most, credential=held)
            )
        except GsomiaError as exc:
            await websocket.close(code=_POLICY_VIOLATION, reason=str(exc)[:120])
            return
        await websocket.accept()

        async def send() -> None:
            try:
                if most is None:
                    async for _, track in tracks:
                        await websocket.send_text(track.decode())
                    return
                async for batch in tracks:
                    await websocket.send_text((b"[" + b",".join(batch) + b"]").decode())
            except GsomiaError as exc:  # they may no longer follow it (disabled, revoked): refused, audited
                await websocket.close(code=_POLICY_VIOLATION, reason=str(exc)[:120])

        async def watch() -> None:  # the consumer leaving, or the server closing, ends the stream
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass

        tasks = {asyncio.create_task(send()), asyncio.create_task(watch())}
        try:
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await tracks.aclose()  # type: ignore[attr-defined]

    for path in ("/stream/tracks/ws", *((f"{dashboard}/tracks/ws",) if dashboard else ())):
        router.add_api_websocket_route(path, follow_ws)

    @router.websocket(LINK_PATH)
    async def link(websocket: WebSocket) -> None:
        """A peer node's link session (Noise KK over binary WebSocket messages)."""
        await websocket.accept()

        async def receive() -> bytes:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            data: bytes | None = message.get("bytes")
            if data is None:
                raise LinkError("malformed", "a link carries binary messages only, not text")
            return data

        source = websocket.client.host if websocket.client else "unknown"
        tls_peer = (websocket.scope.get("state") or {}).get("tls_peer")  # PeerGate's, under mutual TLS
        try:
            await stream.serve_link(receive, websocket.send_bytes, source, tls_peer)
        except LinkError as exc:
            await websocket.close(code=_POLICY_VIOLATION, reason=exc.detail)
        except (WebSocketDisconnect, RuntimeError):
            return

    return router
