"""Attack: a hostile partner answers a push with JSON nested deeper than the interpreter reads.

KOR delivers to the USA and to JPN in one round. The USA's inbox (its own node, compromised, or
whoever answers behind its pinned certificate) answers KOR's push with valid JSON nested a few
thousand arrays deep. ``json.loads`` (and ``gsomia._canonical.loads``, which falls back to it)
raises ``RecursionError`` there, not ``ValueError``. It is a ``RuntimeError``, so the transport's
clause for a client closed under it took it: the push failed as it should (retried; JPN's delivery
in the same round went), but its reason, in the outbox and in the audit log, said the USA's
identity had changed ("the connections were replaced"), which sends an operator after the wrong
thing. The reason now names what the answer did.
"""

from __future__ import annotations

from typing import Any

import httpx
from tests.exchange.test_exchange import Net, net, own_item

from gsomia.crypto.keys import PeerIdentity
from gsomia.errors import TransportError
from gsomia.exchange import HttpTransport

__all__ = ["net"]
_DEEP = b'{"results": ' + b"[" * 5000 + b"]" * 5000 + b"}"


def _wire(net: Net) -> HttpTransport:
    """HTTP to the partners of KOR: the USA's endpoint answers ``_DEEP``; JPN's is JPN's inbox."""
    kor = net.nodes["KOR"].exchange
    parties = {}
    for party in ("USA", "JPN"):
        identity = kor.peer(party)
        assert identity is not None
        parties[httpx.URL(identity.endpoint).netloc] = identity

    def answer(request: httpx.Request) -> httpx.Response:
        identity: PeerIdentity = parties[request.url.netloc]
        if identity.party == "USA":
            return httpx.Response(200, content=_DEEP, headers={"content-type": "application/json"})
        envelopes: list[str] = httpx.Response(200, content=request.read()).json()["envelopes"]
        return httpx.Response(200, json={"results": net.inbox(identity.party, envelopes)})

    return HttpTransport(httpx.Client(transport=httpx.MockTransport(answer)))


def test_a_partner_answering_json_nested_too_deep_fails_its_push_and_holds_up_no_one(net: Net) -> None:
    for item_id, party in (("k-usa", "USA"), ("k-jpn", "JPN")):
        own_item(net, "KOR", item_id)
        net.nodes["KOR"].exchange.release(net.officer("KOR"), item_id, party)
    with _wire(net) as transport:
        done = net.nodes["KOR"].exchange.deliver_due(transport)
    states = {d.recipient: (d.state, d.detail.split(":")[0]) for d in done}
    assert states["JPN"][0] == "delivered"
    assert states["USA"] == ("pending", "RecursionError")  # retried later, like any unreadable answer
    assert "identity" not in next(d.detail for d in done if d.recipient == "USA")
    assert net.nodes["JPN"].store.get_item("k-jpn") is not None


def test_the_transport_reads_an_answer_nested_too_deep_as_a_transport_failure() -> None:
    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_DEEP, headers={"content-type": "application/json"})

    peer = PeerIdentity("USA", "usa-1", "http://usa.test:8000/", ())
    with HttpTransport(httpx.Client(transport=httpx.MockTransport(answer))) as transport:
        try:
            transport.push(peer, ["e"])
        except TransportError as exc:
            refused: Any = exc
        else:
            refused = None
    assert isinstance(refused, TransportError)
    assert "nests" in str(refused)
