"""How a node talks to a partner node: the one I/O seam between nodes, in the style of httpx's
``BaseTransport`` and ``MockTransport``.

A :class:`PeerTransport` carries what the services send a partner: a batch of envelopes to its
inbox (``push``), and the questions the audit log asks it (``consistency``, ``inclusion``).
:class:`HttpTransport` speaks to the partner's REST API; :class:`MemoryTransport` hands the same
calls to partner nodes in this process, with the same JSON round trip, so the exchange, the
duties and the audit log are tested through their real code without sockets; the transfer by
file (``_transfer.FileTransport``) is the third, for an air-gapped site. Everything that goes
wrong underneath becomes :class:`TransportError` here: the services never see httpx.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

import httpx
import orjson

from gsomia._canonical import loads
from gsomia.crypto.keys import PeerIdentity
from gsomia.crypto.tls import TlsFiles, der_pin
from gsomia.errors import (
    BodyTooLargeError,
    GsomiaError,
    InvalidInputError,
    PayloadTooLargeError,
    TransportError,
)

__all__ = [
    "HttpTransport",
    "MemoryTransport",
    "PeerService",
    "PeerTransport",
    "check_peer_certificate",
    "inbox_body_limit",
    "push_size",
]

_JSON = {"Content-Type": "application/json"}  # a push's body, written here (``HttpTransport.push``)
_BODY_SLACK = 64 * 1024  # room for the label and JSON framing around the payload limit


def inbox_body_limit(max_payload_bytes: int) -> int:
    """The largest request body a node configured with ``max_payload_bytes`` reads (its API's limit,
    ``/inbox`` included): a payload two and a half times over, and framing. An item of the largest
    payload reaches the wire in base64 three times over (its payload in the item message, the
    originator's JWS over that, the hop envelope's text over both): (4/3)^3, about 2.37 times. A
    sender cuts its pushes to fit the one its own configuration gives, and smaller when a partner
    refuses one for its size."""
    return max_payload_bytes * 5 // 2 + _BODY_SLACK


def push_size(envelopes: Sequence[str]) -> int:
    """An upper bound of the bytes of the request body that pushes ``envelopes`` to an inbox
    (``{"envelopes": [...]}``; an envelope's text is compact JOSE, ASCII, never escaped)."""
    return 32 + sum(len(text) + 4 for text in envelopes)


class PeerTransport(ABC):
    """The calls one node makes to another. Each raises :class:`TransportError` when the partner
    cannot be reached or answers something that is no answer.

    ``in_flight``: how many pushes to one peer a delivery run may have on their way at once (their
    calls come from that many threads). 1 (the default): each batch waits on the wire for the one
    before to be answered. More hides the round trip between two batches (the receiver works on the
    next while the last one's answer travels back): only a transport whose calls are safe from
    several threads says so."""

    in_flight: int = 1

    @abstractmethod
    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        """Hand ``envelopes`` to ``peer``'s inbox; its answers, one per envelope, in order."""

    @abstractmethod
    def consistency(self, peer: PeerIdentity, first: int, second: int) -> list[str]:
        """``peer``'s proof (hex hashes) that its log of size ``second`` extends the one of ``first``."""

    @abstractmethod
    def inclusion(self, peer: PeerIdentity, entry: str) -> dict[str, Any]:
        """``peer``'s inclusion proof of its log entry ``entry`` in its latest signed head."""

    def close(self) -> None:  # noqa: B027 - a transport that holds nothing need not override it
        """Release what the transport holds (connections); a closed transport is not used again."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _results(body: Any, count: int, party: str) -> list[Any]:
    try:
        results = body["results"]
    except (KeyError, TypeError) as exc:
        raise TransportError(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(results, list) or len(results) != count:
        answered = len(results) if isinstance(results, list) else "no list of"
        raise TransportError(f"InvalidInputError: {party} answered {answered} results for {count} envelopes")
    return results


def _proof(body: Any) -> list[str]:
    try:
        proof = body["proof"]
    except (KeyError, TypeError) as exc:
        raise TransportError(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(proof, list) or not all(isinstance(h, str) for h in proof):
        raise TransportError("ValueError: the proof is not a list of hashes")
    return proof


def check_peer_certificate(peer: PeerIdentity, ssl_object: Any) -> None:
    """Nothing if the TLS connection ``ssl_object`` (an ``ssl.SSLObject`` or ``SSLSocket``) shows the
    certificate ``peer``'s registered identity document names; else :class:`TransportError`
    (``unnamed-certificate``): a certificate an accepted authority signed is not enough."""
    # positional: the C-level object httpcore hands over takes no keyword
    der = None if ssl_object is None else ssl_object.getpeercert(True)
    if not der:
        raise TransportError(f"unnamed-certificate: {peer.party} showed no TLS certificate")
    try:
        pin = der_pin(der)
    except InvalidInputError as exc:
        raise TransportError(f"unnamed-certificate: {peer.party}: {exc}") from exc
    if not peer.names_certificate(pin):
        raise TransportError(
            f"unnamed-certificate: {peer.party}'s TLS certificate {pin} is not named by its identity document"
        )


class HttpTransport(PeerTransport):
    """A partner's REST API over HTTP(S): ``POST /inbox``, ``GET /audit/consistency`` and
    ``GET /audit/inclusion`` at the endpoint its identity document publishes. Two batches to a peer
    may be on their way at once (``in_flight``; httpx's client is safe from several threads).

    Over HTTPS the partner's certificate must be one its registered identity document names
    (checked when a connection is made, before a request goes out on it; when the pins a partner's
    identity names change, the connections kept open are dropped, so none is trusted on an old
    pin). With ``tls``
    (the node's own files) the node presents its certificate (mutual TLS), accepts only partners'
    certificates from its authorities, and never talks to a partner over plain HTTP.
    """

    in_flight = 2

    def __init__(
        self, client: httpx.Client | None = None, *, timeout: float = 10.0, tls: TlsFiles | None = None
    ) -> None:
        self._repinning = threading.Lock()  # two pushes on their way at once: one replaces the client
        self._own = client is None
        self._tls_only = tls is not None
        self._verify: Any = tls.client_context() if tls is not None else True
        self._timeout = timeout
        self.client = client if client is not None else self._new_client()
        self._pins: dict[str, tuple[str, ...]] = {}  # per partner, the pins its connections were checked on

    def _new_client(self) -> httpx.Client:
        return httpx.Client(timeout=self._timeout, verify=self._verify)

    def _repin(self, peer: PeerIdentity) -> httpx.Client:
        """The client a request under ``peer``'s identity goes out on: its kept connections dropped when
        that identity names other certificates than those they were checked against (a replaced
        identity document). Taken in the same step: two calls on their way at once under two
        identities of one partner each keep the client of their own pins (a client whose pins another
        call moved is closed, and its call fails), never one whose connections the other checked."""
        with self._repinning:
            checked = self._pins.get(peer.party)
            if checked is not None and checked != peer.tls and self._own:
                self.client.close()
                self.client = self._new_client()
                self._pins.clear()
            self._pins[peer.party] = peer.tls
            return self.client

    def _call(self, peer: PeerIdentity, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{peer.endpoint.rstrip('/')}{path}"
        secure = url.startswith("https://")
        if self._tls_only and not secure:
            raise TransportError(
                f"plain-http: {peer.party}'s endpoint {peer.endpoint} is not HTTPS; this node talks to "
                "partners over mutual TLS only"
            )

        def trace(event: str, info: dict[str, Any]) -> None:
            if event == "connection.start_tls.complete":  # before the request goes out
                stream = info["return_value"]
                try:
                    check_peer_certificate(peer, stream.get_extra_info("ssl_object"))
                except TransportError:
                    stream.close()  # the pool never saw this connection: close it here
                    raise

        client = self._repin(peer) if secure else self.client
        try:
            extensions = {"trace": trace} if secure else None
            response = client.request(method, url, extensions=extensions, **kwargs)
            if response.status_code == 413:  # the body, not the moment: sent again as it is, refused again
                raise BodyTooLargeError(f"HTTPStatusError: {peer.party} refused a request body as too large")
            response.raise_for_status()
            # read as ``response.json()`` reads it (``json.loads``, the same value), by msgspec where
            # the two agree: a batch's answer names each of its items and carries their receipt
            return loads(response.content)
        except (httpx.HTTPError, ValueError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        except RecursionError as exc:  # a RuntimeError too: not the one below, whose reason it took
            raise TransportError(
                f"RecursionError: {peer.party}'s answer nests arrays and objects deeper than this node reads"
            ) from exc
        except RuntimeError as exc:  # httpx: a client closed meanwhile (another call moved the pins)
            raise TransportError(f"the connections were replaced: {peer.party}'s identity changed") from exc

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        # the request's JSON written by orjson: the same bytes httpx's ``json=`` writes for a list of
        # texts (compact, UTF-8 as it is), ~50 times faster on a push of 250 items' envelopes (~650
        # KB: ~4 ms a push by the standard encoder at load, ~16 us an item of the sending node's CPU;
        # issue 18). A text orjson cannot write (a lone surrogate) is the push's failure, as httpx's
        # encoding of it to UTF-8 was
        try:
            content = orjson.dumps({"envelopes": list(envelopes)})
        except orjson.JSONEncodeError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        body = self._call(peer, "POST", "/inbox", content=content, headers=_JSON)
        return _results(body, len(envelopes), peer.party)

    def consistency(self, peer: PeerIdentity, first: int, second: int) -> list[str]:
        params = {"first": first, "second": second}
        return _proof(self._call(peer, "GET", "/audit/consistency", params=params))

    def inclusion(self, peer: PeerIdentity, entry: str) -> dict[str, Any]:
        body = self._call(peer, "GET", "/audit/inclusion", params={"entry": entry})
        if not isinstance(body, dict):
            raise TransportError("ValueError: the inclusion proof is not an object")
        return body

    def close(self) -> None:
        if self._own:
            self.client.close()


class PeerService(Protocol):
    """What a node answers a partner (the routes ``/inbox``, ``/audit/consistency``,
    ``/audit/inclusion`` call the same methods): a ``Node`` is one."""

    def inbox(self, envelopes: Sequence[str]) -> list[dict[str, Any]]: ...

    def consistency_proof(self, first: int, second: int) -> dict[str, Any]: ...

    def inclusion_proof(self, entry: str) -> dict[str, Any]: ...


class MemoryTransport(PeerTransport):
    """Partner nodes in this process, by party: the in-memory twin of :class:`HttpTransport`.

    Requests and answers make the JSON round trip they make on the wire. A partner in
    ``unreachable`` (or not known here) fails as a refused connection does; a refusal the
    partner raises (a bad proof request) fails as an HTTP error status does. ``in_flight``: as
    :class:`PeerTransport`'s (the partner's inbox is then called from that many threads at once).
    ``body_limit``: as a partner's API does, a push whose body exceeds it is refused for its size.
    """

    def __init__(
        self,
        peers: Mapping[str, PeerService] | None = None,
        *,
        in_flight: int = 1,
        body_limit: int | None = None,
    ) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self.in_flight = in_flight
        self.body_limit = body_limit
        self.peers: dict[str, PeerService] = dict(peers or {})
        self.unreachable: set[str] = set()
        self.calls = 0

    def _service(self, peer: PeerIdentity) -> PeerService:
        self.calls += 1
        service = self.peers.get(peer.party)
        if service is None or peer.party in self.unreachable:
            raise TransportError(f"ConnectError: {peer.party} at {peer.endpoint} is unreachable")
        return service

    @staticmethod
    def _wire(data: Any) -> Any:
        return json.loads(json.dumps(data))

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        service = self._service(peer)
        if self.body_limit is not None and len(json.dumps({"envelopes": list(envelopes)})) > self.body_limit:
            raise BodyTooLargeError(f"HTTPStatusError: {peer.party} refused a request body as too large")
        try:
            answer = {"results": service.inbox(self._wire(list(envelopes)))}
        except PayloadTooLargeError as exc:
            raise BodyTooLargeError(f"HTTPStatusError: {peer.party} refused the batch: {exc}") from exc
        except GsomiaError as exc:
            raise TransportError(f"HTTPStatusError: {peer.party} refused the batch: {exc}") from exc
        return _results(self._wire(answer), len(envelopes), peer.party)

    def consistency(self, peer: PeerIdentity, first: int, second: int) -> list[str]:
        service = self._service(peer)
        try:
            answer = service.consistency_proof(first, second)
        except GsomiaError as exc:
            raise TransportError(f"HTTPStatusError: {peer.party} refused: {exc}") from exc
        return _proof(self._wire(answer))

    def inclusion(self, peer: PeerIdentity, entry: str) -> dict[str, Any]:
        service = self._service(peer)
        try:
            answer = service.inclusion_proof(entry)
        except GsomiaError as exc:
            raise TransportError(f"HTTPStatusError: {peer.party} refused: {exc}") from exc
        body: dict[str, Any] = self._wire(answer)
        return body
