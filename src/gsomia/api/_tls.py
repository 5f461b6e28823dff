"""Mutual TLS at the node's edge: the client certificate a connection showed, and the routes only a
partner node may call.

uvicorn verifies a client certificate against the node's authorities (``CERT_OPTIONAL``: analysts
and browsers connect without one) but does not tell the app which certificate a connection showed.
:func:`server_config` gives uvicorn protocol classes that do, as the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``, PEM). :class:`PeerGate` then holds the
node-to-node routes (``/inbox``, ``/audit/consistency``, ``/audit/inclusion``, ``/stream/link``) to a
client certificate that a registered peer's identity document names by its pin: no certificate,
or one the authorities signed for a node no registered identity names, is refused (403, audited in
bounded space per source) before the route runs. The pins are the peer directory's, read again
within a second when any process of the node registers a replaced identity document.

Every other route keeps its own authentication (bearer tokens, the dashboard's session) and needs
no client certificate. A node without TLS files (``node.toml``) serves plain HTTP and holds these
routes to their own checks only (the envelope's signature, the link's Noise handshake).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

from gsomia.api._problems import problem
from gsomia.crypto.tls import TlsFiles, der_pin
from gsomia.errors import InvalidInputError
from gsomia.kernel import PeerDirectory
from gsomia.stream import LINK_PATH

__all__ = ["PEER_PATHS", "PeerGate", "server_config"]

# the routes only a partner node calls
PEER_PATHS = frozenset({"/inbox", "/audit/consistency", "/audit/inclusion", LINK_PATH})
_POLICY_VIOLATION = 1008


class _WithTls:
    """The app of one connection: each request's scope carries the ASGI TLS extension."""

    def __init__(self, app: ASGIApp, tls: dict[str, Any]) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), "tls": self.tls}}
        await self.app(scope, receive, send)


def _tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
        "gsomia.client_cert_der": der or None,
    }


def _telling(base: Any) -> Any:
    """``base`` (a uvicorn protocol class) whose connections tell the app their TLS client certificate."""

    class Telling(base):  # type: ignore[misc]
        app: ASGIApp

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            tls = _tls_extension(transport)
            if tls is not None:
                self.app = _WithTls(self.app, tls)

    Telling.__name__ = Telling.__qualname__ = f"Telling{base.__name__}"
    return Telling


_HTTP = _telling(AutoHTTPProtocol)
_WS = _telling(AutoWebSocketsProtocol) if AutoWebSocketsProtocol is not None else None


def server_config(app: ASGIApp, tls: TlsFiles | None, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: with ``tls``, HTTPS with the node's certificate, a client
    certificate asked for and verified against its authorities, and told to the app."""
    if tls is None:
        return uvicorn.Config(app, **options)
    context = tls.server_context()  # checked here: a bad file is refused before serving
    return uvicorn.Config(
        app,
        http=_HTTP,
        **({"ws": _WS} if _WS is not None else {}),
        ssl_context_factory=lambda _config, _default: context,
        **options,
    )


def client_pin(scope: Scope) -> str | None:
    """The pin of the client certificate the connection showed (``None``: none, or no TLS)."""
    tls = (scope.get("extensions") or {}).get("tls")
    der = None if tls is None else tls.get("gsomia.client_cert_der")
    if not der:
        return None
    try:
        return der_pin(der)
    except InvalidInputError:
        return None


class PeerGate:
    """The node-to-node routes only for a client certificate a registered peer's identity names.

    ``record(kind, subject, status, reason, source)`` audits a refusal (bounded per source).
    """

    def __init__(
        self,
        app: ASGIApp,
        peers: PeerDirectory,
        record: Callable[[str, str | None, int, str, str | None], object],
    ) -> None:
        self.app = app
        self.peers = peers
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") not in PEER_PATHS:
            await self.app(scope, receive, send)
            return
        pin = client_pin(scope)
        if pin is None:
            reason = "a partner node's route: connect with the node's TLS client certificate"
        else:
            peer = await run_in_threadpool(self.peers.by_certificate, pin)
            if peer is not None:
                scope = {**scope, "state": {**(scope.get("state") or {}), "tls_peer": peer.party}}
                await self.app(scope, receive, send)
                return
            reason = f"TLS certificate {pin} is not named by any registered peer's identity document"
        client = scope.get("client")
        source = client[0] if client else None
        await run_in_threadpool(self.record, "api.refused", scope.get("path"), 403, reason, source)
        if scope["type"] == "websocket":
            await send(
                {"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": "unnamed-certificate"}
            )
            return
        await problem(403, "unnamed-certificate", "Forbidden", reason)(scope, receive, send)
