"""Mutual TLS bound to the node identity (issue 17 §3), attacked.

A network built with TLS (a local authority, a certificate per node, each identity document naming
its node's certificate by its pin); JPN serves from a thread. The node-to-node routes take only a
client certificate a registered peer's identity names: none, or one the same authority signed for
a node no identity names, is refused (and audited) while an analyst's bearer token still works
without a certificate; KOR's client refuses a JPN certificate its registered identity does not
name, and a node with TLS never calls a partner over plain HTTP; a replaced identity document
moves the pin in the serving process (read from the store) at its first use after the change
watch's interval (a quarter of a second).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from tests.identity_docs import claims, published
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gsomia._web import dashboard_scope
from gsomia.crypto.tls import Issued, TlsFiles, issue
from gsomia.demo.network import CA_FILE, NetNode, build, serve_in_threads, trust
from gsomia.errors import LinkError, TransportError
from gsomia.exchange import HttpTransport
from gsomia.kernel import DEFAULT_INTERVAL
from gsomia.node import Node, load_config
from gsomia.stream import LINK_PATH, StreamService

ENTRY = "0" * 32  # an audit entry JPN does not have: the route answers 404 once past the gate


class Net:
    def __init__(self, directory: Path, members: list[NetNode], jpn: Node) -> None:
        self.directory = directory
        self.members = {m.party: m for m in members}
        self.jpn = jpn
        self.endpoint = self.members["JPN"].endpoint
        self.ca = Issued((directory / CA_FILE).read_bytes(), (directory / "tls" / "ca.key").read_bytes())

    def files(self, party: str) -> TlsFiles:
        tls = load_config(self.members[party].directory).tls
        assert tls is not None
        return tls

    def client(self, cert: tuple[Path, Path] | None) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.directory / CA_FILE))
        if cert is not None:
            context.load_cert_chain(*cert)
        return httpx.Client(base_url=self.endpoint, verify=context, timeout=10)

    def rogue(self, tmp: Path, name: str) -> tuple[Path, Path]:
        """A certificate the network's own authority signed, for a node no identity names."""
        issued = issue(self.ca, name, ("127.0.0.1",), datetime.now(UTC))
        cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
        cert.write_bytes(issued.certificate)
        key.write_bytes(issued.key)
        return cert, key


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    members = build(tmp_path / "net", tls=True)
    jpn_member = next(m for m in members if m.party == "JPN")
    jpn = Node(load_config(jpn_member.directory))
    with serve_in_threads({"JPN": jpn}, [jpn_member]):
        yield Net(tmp_path / "net", members, jpn)
    jpn.close()


def _kor_cert(net: Net) -> tuple[Path, Path]:
    files = net.files("KOR")
    return files.cert, files.key


def test_the_identity_documents_name_each_nodes_certificate(net: Net) -> None:
    for party in ("KOR", "USA"):
        peer = net.jpn.exchange.peer(party)
        assert peer is not None
        assert peer.tls == (net.files(party).pin(),)
    assert claims(net.jpn.exchange.identity())["tls"] == [net.files("JPN").pin()]


def test_a_certificate_from_the_authority_that_no_identity_names_is_refused(net: Net, tmp_path: Path) -> None:
    rogue = net.rogue(tmp_path, "gsomia KOR node")  # the same name, the same authority, another key
    with net.client(rogue) as client:
        refused = client.post("/inbox", json={"envelopes": []})
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"] == "urn:gsomia:problem:unnamed-certificate"
        assert client.get("/audit/inclusion", params={"entry": ENTRY}).status_code == 403
        assert client.get("/audit/consistency", params={"first": 1, "second": 1}).status_code == 403
    with net.client(_kor_cert(net)) as client:  # KOR's own certificate passes the gate
        passed = client.get("/audit/inclusion", params={"entry": ENTRY})
        assert passed.status_code == 404, passed.text
    refusals = [r for r in net.jpn.store.audit(kind="api.refused") if "/inbox" in str(r.subject)]
    assert refusals, "the refusal is audited"
    assert "not named by any registered peer" in refusals[-1].detail


def test_without_a_certificate_peer_routes_are_refused_but_analysts_tokens_work(net: Net) -> None:
    token = json.loads((net.members["JPN"].directory / "tokens.json").read_text())["analyst"]
    with net.client(None) as client:
        refused = client.post("/inbox", json={"envelopes": []})
        assert refused.status_code == 403
        assert "client certificate" in refused.json()["detail"]
        items = client.get("/items", headers={"Authorization": f"Bearer {token}"})
        assert items.status_code == 200, items.text  # the analysts' API needs no client certificate
        assert client.get("/identity").status_code == 200
        base = dashboard_scope(net.jpn.ring).path  # the dashboard too, its session cookie Secure
        login = client.post(
            f"{base}/login",
            data={"token": token, "next": f"{base}/agreements"},
            headers={"Origin": net.endpoint},
        )
        assert login.status_code == 303, login.text
        assert "secure" in login.headers["set-cookie"].lower()


def test_the_stream_link_refuses_a_connection_without_a_named_certificate(net: Net, tmp_path: Path) -> None:
    url = net.endpoint.replace("https://", "wss://") + LINK_PATH

    async def attempt(cert: tuple[Path, Path] | None) -> int:
        context = ssl.create_default_context(cafile=str(net.directory / CA_FILE))
        if cert is not None:
            context.load_cert_chain(*cert)
        try:
            async with connect(url, ssl=context, open_timeout=10):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(attempt(None)) == 403
    assert asyncio.run(attempt(net.rogue(tmp_path, "rogue"))) == 403
    assert asyncio.run(attempt(_kor_cert(net))) == 101  # KOR's: the link's own handshake comes next


def test_the_client_refuses_a_server_certificate_the_peers_identity_does_not_name(net: Net) -> None:
    kor = Node(load_config(net.members["KOR"].directory))
    try:
        jpn = kor.exchange.peer("JPN")
        assert jpn is not None
        with HttpTransport(tls=net.files("KOR")) as transport:
            with pytest.raises(TransportError, match="404"):  # the named certificate: the call goes through
                transport.inclusion(jpn, ENTRY)
            other = issue(net.ca, "elsewhere", ("127.0.0.1",), datetime.now(UTC)).pin
            impostor = replace(jpn, tls=(other,))  # an identity naming another certificate than JPN shows
            with pytest.raises(TransportError, match="unnamed-certificate"):
                transport.inclusion(impostor, ENTRY)
            with pytest.raises(TransportError, match="unnamed-certificate"):  # no pin at all: refused
                transport.inclusion(replace(jpn, tls=()), ENTRY)
            plain = replace(jpn, endpoint=jpn.endpoint.replace("https://", "http://"))
            with pytest.raises(TransportError, match="plain-http"):
                transport.inclusion(plain, ENTRY)
    finally:
        kor.close()


def test_a_replaced_identity_document_moves_the_pin_in_the_serving_process(
    net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KOR gets a new certificate and JPN's administrator registers KOR's new identity document,
    through another ``Node`` on JPN's store (as ``gsomia peer add`` beside the serving process would):
    the serving process refuses the old certificate and takes the new one, read from the store."""
    old = _kor_cert(net)
    new = net.rogue(tmp_path, "gsomia KOR node, next")
    # the serving process's change watch runs on the test's clock from here: "within a second" is its
    # interval on the process's own clock, counted here, so a loaded machine's scheduler cannot stretch it
    watch = net.jpn.kernel.watch
    now = [time.monotonic()]
    monkeypatch.setattr(watch, "_monotonic", lambda: now[0])
    watch.stale()  # the next use reads the counters, at the test's instant
    with net.client(old) as client:
        assert client.get("/audit/inclusion", params={"entry": ENTRY}).status_code == 404
    kor_node = Node(load_config(net.members["KOR"].directory))  # KOR signs its new document
    try:
        document = published(kor_node, tls=(TlsFiles(new[0], new[1], new[0]).pin(),))
    finally:
        kor_node.close()
    admin = Node(load_config(net.members["JPN"].directory))
    try:
        agreements = sorted(admin.exchange.links("KOR"))
        admin.exchange.register_peer(None, document, agreements)
    finally:
        admin.close()
    with net.client(old) as client:  # within the interval of its last read, the process's copy holds
        assert client.get("/audit/inclusion", params={"entry": ENTRY}).status_code == 404
    now[0] += DEFAULT_INTERVAL  # the first use after the interval reads the counters: the new document
    with net.client(old) as client:
        assert client.get("/audit/inclusion", params={"entry": ENTRY}).status_code == 403
    with net.client(new) as client:
        assert client.get("/audit/inclusion", params={"entry": ENTRY}).status_code == 404


def test_a_pin_another_peer_holds_is_refused_at_registration(net: Net) -> None:
    kor = net.jpn.exchange.peer("KOR")
    assert kor is not None
    usa = Node(load_config(net.members["USA"].directory))
    try:
        document = published(usa, tls=kor.tls)  # USA claiming KOR's certificate, signed by USA
    finally:
        usa.close()
    with pytest.raises(Exception, match="named by KOR's identity already"):
        net.jpn.exchange.register_peer(None, document, sorted(net.jpn.exchange.links("USA")))


def test_net_trust_is_the_networks_authority(net: Net) -> None:
    context = trust(net.directory)
    assert isinstance(context, ssl.SSLContext)
    assert httpx.get(f"{net.endpoint}/healthz", verify=context, timeout=10).status_code == 200
    with pytest.raises(httpx.ConnectError):  # the system's authorities do not know the local one
        httpx.get(f"{net.endpoint}/healthz", timeout=10)


def test_the_stream_link_client_refuses_a_server_certificate_the_peers_identity_does_not_name(
    net: Net,
) -> None:
    """KOR's stream opens its link to JPN over mutual TLS and checks JPN's certificate against the
    pin KOR registered for JPN before it sends its link hello: a certificate the authority signed
    is not enough once KOR's registered identity for JPN names another."""
    kor = Node(load_config(net.members["KOR"].directory))
    try:
        jpn = kor.exchange.peer("JPN")
        assert jpn is not None
        agreements = sorted(kor.exchange.links("JPN"))

        async def link() -> str:
            service = StreamService(kor)
            try:
                await service._link("JPN")  # the link as a track to JPN would open it
                return "opened"
            except LinkError as exc:
                return f"{exc.detail}: {exc}"
            finally:
                await service.close()

        assert asyncio.run(link()) == "opened"  # the certificate KOR's registered identity names
        other = issue(net.ca, "elsewhere", ("127.0.0.1",), datetime.now(UTC)).pin
        jpn_node = Node(load_config(net.members["JPN"].directory))  # JPN moves to another certificate
        try:
            kor.exchange.register_peer(None, published(jpn_node, tls=(other,)), agreements)
        finally:
            jpn_node.close()
        refused = asyncio.run(link())
        assert refused.startswith("unknown-peer: unnamed-certificate"), refused
    finally:
        kor.close()
