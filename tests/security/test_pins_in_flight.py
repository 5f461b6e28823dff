"""Attack: two pushes on their way at once under two identities of one partner (e9c5693, issue 18).

A delivery run now keeps two batches to a peer on the wire at once, from two threads, each with the
peer's identity as it was when its batch was prepared: a replaced identity document (the partner's
old TLS certificate is no longer named: compromised, rotated) can meet a batch prepared under the
old one. The certificate is checked when a connection is made; a kept connection is reused
unchecked, so a connection must only ever serve requests of the identity it was checked against.
Here the current identity names another certificate than the one the server shows, and a stale
request under the old identity runs between the current request's re-pin and its request (the
moment two wire threads allow): the current request must still be refused (``unnamed-certificate``),
never sent over the connection the stale one opened and checked against the old identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gsomia.crypto.tls import Issued, issue
from gsomia.demo.network import CA_FILE, build, serve_in_threads
from gsomia.errors import TransportError
from gsomia.exchange import HttpTransport
from gsomia.node import Node, load_config

ENTRY = "0" * 32  # an audit entry JPN does not have: the route answers 404 once past the gate


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Path]:
    members = build(tmp_path / "net", tls=True)
    jpn_member = next(m for m in members if m.party == "JPN")
    jpn = Node(load_config(jpn_member.directory))
    with serve_in_threads({"JPN": jpn}, [jpn_member]):
        yield tmp_path / "net"
    jpn.close()


def test_a_request_under_the_current_identity_never_rides_a_connection_checked_for_the_old(net: Path) -> None:
    kor = Node(load_config(net / "kor"))
    try:
        stale = kor.exchange.peer("JPN")  # names the certificate JPN's server shows
        assert stale is not None
        ca = Issued((net / CA_FILE).read_bytes(), (net / "tls" / "ca.key").read_bytes())
        other = issue(ca, "JPN next", ("127.0.0.1",), datetime.now(UTC)).pin
        current = replace(stale, tls=(other,))  # the replaced document: the shown certificate not named
        tls = load_config(net / "kor").tls
        with HttpTransport(tls=tls) as transport:
            with pytest.raises(TransportError, match="unnamed-certificate"):  # alone: refused
                transport.inclusion(current, ENTRY)
            repin = transport._repin
            interleaved: list[str] = []

            def between(peer: object) -> object:
                answer = repin(peer)  # type: ignore[arg-type]
                if peer is current and not interleaved:  # the other wire thread runs here
                    interleaved.append("stale")
                    with pytest.raises(TransportError, match="404"):  # the old identity: it goes through
                        transport.inclusion(stale, ENTRY)
                return answer

            transport._repin = between  # type: ignore[method-assign]
            with pytest.raises(TransportError, match=r"unnamed-certificate|replaced"):
                transport.inclusion(current, ENTRY)
            assert interleaved == ["stale"]
            with pytest.raises(TransportError, match="unnamed-certificate"):  # and after: still refused
                transport.inclusion(current, ENTRY)
    finally:
        kor.close()
