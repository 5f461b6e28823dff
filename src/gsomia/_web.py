"""What the node's web shells (API, dashboard, stream routes) share about browsers.

- The node's own origin: a request's ``Origin`` is this node's when it names the scheme and host
  the request was sent to, or the node's configured endpoint. A browser always sends ``Origin``
  with a WebSocket handshake and a form post from another page, and a page cannot forge it;
  another port of the same host is another origin (while cookies, scoped by host, are shared
  across ports: why the dashboard's cookie is scoped by path as well).
- The dashboard's scope: the path under which this node's dashboard lives, the only path its
  session cookie is sent to, and the cookie's name. Both are derived from the node's first
  signing key, so every process of a node agrees on them and no other node on the same host
  (another port, another party, or the same party in another network) shares them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from gsomia.crypto.keys import KeyRing

__all__ = ["DashboardScope", "dashboard_scope", "is_own_origin"]


def _origin(scheme: str, netloc: str) -> str:
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    default = {"http": ":80", "https": ":443"}.get(scheme)
    host = netloc.lower()
    if default and host.endswith(default):
        host = host[: -len(default)]
    return f"{scheme}://{host}"


def is_own_origin(origin: str, scheme: str, host: str | None, endpoint: str) -> bool:
    """Whether ``origin`` (a request's ``Origin`` header) is the node's own: the scheme and ``Host``
    the request came to (``ws``/``wss`` count as ``http``/``https``), or the configured endpoint."""
    parts = urlsplit(origin.strip())
    if not parts.scheme or not parts.netloc:
        return False
    got = _origin(parts.scheme, parts.netloc)
    own = {_origin(urlsplit(endpoint).scheme, urlsplit(endpoint).netloc)}
    if host:
        own.add(_origin(scheme, host))
    return got in own


@dataclass(frozen=True, slots=True)
class DashboardScope:
    """Where the dashboard lives (``path``, e.g. ``/ui/jpn-1f2e3d4c5b``) and its cookie's name."""

    path: str
    cookie: str


def dashboard_scope(ring: KeyRing) -> DashboardScope:
    """The dashboard's path and cookie name for the node whose key ring is ``ring``."""
    first = min((e for e in ring.entries if e.use == "sig"), key=lambda e: (e.not_before, e.kid))
    tag = f"{ring.party.lower()}-{hashlib.sha256(first.kid.encode()).hexdigest()[:10]}"
    return DashboardScope(f"/ui/{tag}", f"gsomia_session_{tag.replace('-', '_')}")
