"""A WebSocket handshake authenticated as an HTTP request would be, for every WebSocket route of
the node (the stream's and the live feed's): the node's own ``reader`` decides who it is, and a
page of another origin never lends a browser's cookie to it."""

import inspect
import typing
from collections.abc import Callable
from typing import Any, cast

from fastapi import Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from gsomia._web import is_own_origin
from gsomia.core.access import Person
from gsomia.errors import AuthenticationError
from gsomia.kernel import NodeContext

__all__ = ["presented", "websocket_caller"]


def _is_request(function: Callable[..., Any], name: str, param: inspect.Parameter) -> bool:
    """Whether ``function``'s parameter asks for the request (its annotation may be a string)."""
    if param.annotation is Request:
        return True
    try:
        return typing.get_type_hints(function).get(name) is Request
    except (NameError, TypeError):  # an annotation that does not resolve here: not the request
        return False


def presented(websocket: WebSocket, kernel: NodeContext, method: str) -> Request:
    """The handshake as the HTTP request the node's ``reader`` is shown (``method`` ``GET`` to
    follow, ``POST`` to publish), after refusing one opened from another origin: without an
    ``Origin`` (no browser) it carries no cookie, so a session cookie is never taken for it. A
    route that checks the caller's credentials again later (an open stream) reads them from it."""
    origin = websocket.headers.get("origin")
    if origin is not None and not is_own_origin(
        origin, websocket.url.scheme, websocket.headers.get("host"), kernel.endpoint
    ):
        # a page of another origin (another port of this host included) opened it in a browser
        # that sends this node's cookies: nothing it carries is this person's consent
        raise kernel.refuse_unauthenticated(
            "auth", websocket.client.host if websocket.client else None, "origin",
            AuthenticationError(f"a WebSocket opened from {origin[:80]} is not from this node's pages"),
        )  # fmt: skip
    scope = dict(websocket.scope)
    if origin is None:  # no browser: a session cookie is not for it (browsers always send Origin)
        scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"cookie"]
    return Request({**scope, "type": "http", "method": method})


async def websocket_caller(
    websocket: WebSocket,
    reader: Callable[..., Any],
    kernel: NodeContext,
    method: str,
    request: Request | None = None,
) -> Person:
    """The node's own ``reader`` dependency, called for a WebSocket handshake.

    FastAPI resolves ``Request`` parameters for HTTP routes only, so the handshake is
    presented to ``reader`` as the HTTP request it is (:func:`presented`, unless given as
    ``request``: whatever the reader allows a read-only caller, e.g. a session cookie, it
    then allows for following alone), with the bearer credentials from its header.
    """
    if request is None:
        request = presented(websocket, kernel, method)
    header = websocket.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    credentials = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())
        if scheme.lower() == "bearer" and token.strip()
        else None
    )
    arguments = {
        name: request if _is_request(reader, name, param) else credentials
        for name, param in inspect.signature(reader).parameters.items()
    }
    if inspect.iscoroutinefunction(reader):  # the node's: it hands its store work to a worker thread
        return cast(Person, await reader(**arguments))
    return cast(Person, await run_in_threadpool(reader, **arguments))
