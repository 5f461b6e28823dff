"""The one gate every request's text passes before any route reads it: no NUL, no lone surrogate.

PostgreSQL's text type cannot hold a NUL (U+0000) and UTF-8 cannot encode a lone surrogate, while
SQLite stores either as given: a value holding one was stored on one store and refused (or failed)
on the other, and a row stored at one node could not be held by a partner on the other. So the
request itself is refused, here, before routing, for every route alike (the API, TAXII, the
dashboard, the feed and the stream, a WebSocket's handshake): its path, its query parameters, its
headers and a JSON or form body, by :func:`gsomia._codec.unstorable` (the rule the inbox and the
CLI apply to what they read too). 422, the place named (``body.label.topics.1``,
``query.cursor``, ``header.authorization``) and never the value; audited as the edge's other
refusals are (bounded per source when nobody authenticated the caller); nothing reaches the store.

Every body is looked at, whatever its ``Content-Type`` says: read as a form when it names one
exactly, else as JSON, else (not JSON) as a form. The gate does not guess from the media type which
routes will read a body as text: the parsers behind the routes read that header each their own way
(FastAPI's strips any Unicode space around it, so ``\\xa0application/json`` is JSON to it; TAXII's
takes the first of a comma list; the login form reads its body whatever the type), and a body the
gate passed as "not text" was read as JSON behind it. The candidates are found in its bytes (an
escape ``\\u0000`` or ``\\ud8..``, a NUL byte, UTF-8's encoding of a surrogate, a form's ``%00``)
and only a body holding one is parsed to find the place, so the bodies of the exchange pass at the
cost of a search through their bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gsomia._canonical import KeyTwiceError, NotFiniteError, loads_strict
from gsomia._codec import NUL_PROBLEM, unstorable
from gsomia.api._problems import TAXII_PREFIX, problem, rate_limited, taxii_error
from gsomia.errors import RateLimitedError

__all__ = ["TextGate", "message_problem"]

# what may stand for a NUL or a surrogate in a body's bytes: a JSON escape of either (a surrogate pair
# too, which the parse then finds whole), a NUL byte (UTF-16 or UTF-32 JSON, which json.loads reads),
# UTF-8's bytes of a surrogate (which json.loads reads with surrogatepass), a form's %00
_CANDIDATE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\x00|\xed[\xa0-\xbf]|%00")
_TEXT_CANDIDATE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])|\x00")  # the same, in a text message
_FORM = "application/x-www-form-urlencoded"
_POLICY_VIOLATION = 1008  # WebSocket close code (RFC 6455)


def _media_type(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower().decode("latin-1")
    return None


def _maybe(body: bytes) -> bool:
    """Whether the body holds a byte a candidate starts with: each a one-byte search at memory speed
    (a megabyte of the exchange's base64 in microseconds, where the regular expression, or a search
    for two bytes, took milliseconds)."""
    return b"\\" in body or b"\x00" in body or b"\xed" in body or b"%" in body


# the caller's key shown in the refusal: enough to tell which, never all of it
_KEY_SHOWN = 64


def _body_problem(body: bytes, media_type: str | None) -> tuple[str, str] | None:
    """What is wrong with a body, read once (:func:`~gsomia._canonical.loads_strict`) as every route
    reads it (JSON, else a form): unstorable text; a key given twice in one object (readers differ on
    which of the two they take: Starlette's, and so every route's, the last; a signer's or an
    auditor's perhaps the first, so what the node decides on would not be what the caller, a proxy
    or a log saw); NaN, an infinity, a number past the largest double (``json`` reads them,
    every other reader of what is stored refuses them: an item ingested with one was taken and
    could never be answered again); nesting deeper than the interpreter reads (fail closed). A body
    that is not JSON is left to its route, which refuses it or reads it otherwise, once its form
    holds nothing unstorable."""
    if not body:
        return None
    candidate = _maybe(body) and _CANDIDATE.search(body) is not None
    if media_type != _FORM:
        try:
            value = loads_strict(body)
        except KeyTwiceError as exc:
            name = exc.name if len(exc.name) <= _KEY_SHOWN else f"{exc.name[:_KEY_SHOWN]}…"
            return "body", f"names a key twice in one object ({name!r}): readers differ on which they take"
        except NotFiniteError as exc:
            return "body", str(exc)
        except RecursionError:
            return "body", "nests objects and arrays deeper than this node reads"
        except ValueError:
            pass  # not JSON: what a route reads as text otherwise is a form
        else:
            return unstorable(value, "body") if candidate else None
    if not candidate:
        return None
    fields = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return unstorable({name: value for name, value in fields}, "body")


def message_problem(text: str, where: str) -> tuple[str, str] | None:
    """The place (and what is wrong) of unstorable text in a WebSocket text message read as JSON
    (the publisher's feed), by the same rule as a body: a text frame is UTF-8, so only a JSON escape
    (``\\u0000``, ``\\ud800``) or a NUL stands for one, and only a message holding one is parsed to
    find the place (``message.0.track_id``); what is not JSON is left to the route's refusal."""
    if "\\u" not in text and "\x00" not in text:  # two searches at memory speed: the common case
        return None
    if _TEXT_CANDIDATE.search(text) is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return unstorable(value, where)


def _problem(scope: Scope) -> tuple[str, str] | None:
    """The place (and what is wrong) of unstorable text in the request line or headers."""
    path: str = scope.get("path", "")
    if "\x00" in path or not path.isascii():
        found = unstorable(path, "path")
        if found is not None:
            return found
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        fields = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        for name, value in fields:
            found = unstorable(name, "query (a name)") or unstorable(value, f"query.{name}")
            if found is not None:
                return found
    for name, value in scope.get("headers", ()):
        if b"\x00" in value or b"\x00" in name:  # the bytes are read as latin-1: no surrogate
            header = name.replace(b"\x00", b"").decode("latin-1")
            return f"header.{header}", NUL_PROBLEM
    return None


class TextGate:
    """Refuse a request holding text no store can hold, before any route reads it (see the module)."""

    def __init__(
        self,
        app: ASGIApp,
        record: Callable[[str, str | None, int, str, str | None, str | None], int | None],
        caller: Callable[[HTTPConnection], str | None],
    ) -> None:
        self.app = app
        self.record = record
        self.caller = caller

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        found = _problem(scope)
        if found is None and scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            body, receive = await _buffered(receive)
            found = _body_problem(body, _media_type(scope["headers"]))
        if found is None:
            await self.app(scope, receive, send)
            return
        await self._refuse(scope, receive, send, f"{found[0]}: {found[1]}", found[0])

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, detail: str, field: str) -> None:
        connection = HTTPConnection(scope)
        source = connection.client.host if connection.client else None

        def audited() -> int | None:
            # the credentials a header holding a NUL carries are not taken at their word
            actor = None if field.startswith("header") else self.caller(connection)
            return self.record("api.refused", scope.get("path"), 422, detail, source, actor)

        wait = await run_in_threadpool(audited)  # the store: off the event loop
        if scope["type"] == "websocket":
            await receive()  # the handshake's websocket.connect, then refused (403 before accept)
            await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": detail[:120]})
            return
        if wait is not None:  # the source has spent its budget: that is the answer now
            await rate_limited(Request(scope), RateLimitedError(wait))(scope, receive, send)
            return
        taxii = str(scope.get("path", "")).startswith(TAXII_PREFIX)
        render = taxii_error if taxii else problem
        errors: list[dict[str, Any]] = [{"field": field, "problem": detail.partition(": ")[2]}]
        await render(422, "invalid-request", "Invalid request", detail, errors=errors)(scope, receive, send)


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body (the node's body limit is checked before), and a ``receive`` that gives it
    again, then what the client sends after it (a disconnect)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), _replay([message], receive)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, _replay([{"type": "http.request", "body": body, "more_body": False}], receive)


def _replay(first: list[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        if first:
            return first.pop(0)
        return await receive()

    return replayed
