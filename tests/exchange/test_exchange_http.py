"""The peer transport over real HTTP: three nodes serving their APIs on loopback (in-process
servers, one shared clock). The exchange, duties and audit paths are tested at length over the
in-memory twin; these show the HTTP transport carries the same calls, and fails as a transport
should when a partner is down. Real node processes: ``tests/reliability``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from gsomia.crypto.keys import PeerIdentity
from gsomia.demo import network
from gsomia.errors import TransportError
from gsomia.exchange import HttpTransport, MemoryTransport
from gsomia.node import NewIngest, Node
from gsomia.testing import FakeClock

NOW = datetime(2024, 3, 1, tzinfo=UTC)


@dataclass
class Net:
    nodes: dict[str, Node]
    members: list[network.NetNode]
    clock: FakeClock
    transport: HttpTransport

    def endpoint(self, party: str) -> str:
        return next(m.endpoint for m in self.members if m.party == party)

    def peer(self, at: str, party: str) -> PeerIdentity:
        found = self.nodes[at].exchange.peer(party)
        assert found is not None
        return found

    def label(self) -> dict[str, object]:
        return {
            "originator": "KOR",
            "classification": "군사II급비밀",
            "releasable_to": ["JPN", "USA"],
            "purpose": "threat-assessment",
            "topics": ["dprk-missile"],
            "created": (self.clock.now - timedelta(hours=1)).isoformat(),
        }

    def release(self, item_id: str) -> str:
        kor = self.nodes["KOR"]
        officer = kor.people.person("officer")
        kor.items.ingest(officer, label=self.label(), payload=b'{"track": 1}', item_id=item_id)
        return kor.exchange.release(officer, item_id, "JPN").msg_id


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))
    members = network.build(tmp_path_factory.mktemp("http") / "net", clock=clock)
    clock.now = NOW
    nodes = network.open_nodes(members, clock)
    with HttpTransport() as transport, network.serve_in_threads(nodes, members):
        yield Net(nodes, members, clock, transport)
    for node in nodes.values():
        node.close()


def test_identity_is_published(net: Net) -> None:
    signed = httpx.get(f"{net.endpoint('KOR')}/identity", timeout=10).json()
    doc = PeerIdentity.from_signed(signed, net.clock.now).to_document()  # signed by the keys it names
    assert doc["format"] == "gsomia-identity/1"
    assert doc["party"] == "KOR"
    assert doc["endpoint"] == net.endpoint("KOR")
    assert {k["use"] for k in doc["keys"]} == {"sig", "enc"}


def test_an_item_crosses_over_http_once_and_the_sender_proves_it(net: Net) -> None:
    msg_id = net.release("h-1")
    kor = net.nodes["KOR"]
    assert [d.state for d in kor.exchange.deliver_due(net.transport)] == ["delivered"]
    assert net.nodes["JPN"].store.get_item("h-1") is not None
    entry = kor.exchange.outbox_entry(msg_id)
    assert entry is not None
    # the same envelope again, straight to the partner's /inbox: acknowledged, not stored twice
    (again,) = net.transport.push(net.peer("KOR", "JPN"), [entry.envelope])
    assert again["status"] == "duplicate"
    assert again["receipt"] == entry.receipt
    # JPN's writer has not run yet: its /audit/inclusion only reads, so there is no proof yet
    with pytest.raises(TransportError, match="404"):
        kor.heads.delivery_proof(msg_id, net.transport)
    net.nodes["JPN"].audit.sign_head()  # what JPN's background loop does within a second
    proof = kor.heads.delivery_proof(msg_id, net.transport)  # GET /audit/inclusion at JPN
    assert proof["receiver"] == "JPN"
    assert json.loads(proof["entry"]["detail"])["msg_id"] == msg_id


def test_heads_are_shared_and_checked_over_http(net: Net) -> None:
    for _ in range(2):
        for node in net.nodes.values():
            node.heads.share_head()
        for node in net.nodes.values():
            node.exchange.deliver_due(net.transport)
        for node in net.nodes.values():
            node.audit.check_partners(net.transport)  # GET /audit/consistency at the partner
        net.nodes["KOR"].store.append_audit(
            [net.nodes["KOR"].kernel.audit_row("test.grow", None, None, "allowed")]
        )
        net.clock.advance(seconds=10)
    partners = {p["party"]: p for p in net.nodes["JPN"].audit.partners()}
    assert partners["KOR"]["status"] == "consistent"
    assert partners["KOR"]["heads"] >= 2


def test_the_twin_answers_as_the_wire_does(net: Net) -> None:
    """The same envelopes, over HTTP and over the in-memory transport: the same answers."""
    usa = net.peer("KOR", "USA")
    envelopes = ["not an envelope", json.dumps({"format": "gsomia-envelope/9", "jwe": "x.y.z.a.b"})]
    over_http = net.transport.push(usa, envelopes)
    in_memory = MemoryTransport(net.nodes).push(usa, envelopes)
    assert (
        over_http == in_memory == [{"status": "refused", "reason": "envelope refused", "receipt": None}] * 2
    )


def test_a_partner_that_is_down_is_a_transport_error_and_the_entry_waits(net: Net) -> None:
    gone = PeerIdentity.from_document(
        {**net.peer("KOR", "JPN").to_document(), "endpoint": "http://127.0.0.1:9"}
    )
    with pytest.raises(TransportError, match=r"^ConnectError"):
        net.transport.push(gone, ["x"])
    with pytest.raises(TransportError, match=r"^ConnectError"):
        net.transport.consistency(gone, 1, 2)
    dead = MemoryTransport(net.nodes)
    dead.unreachable.add("JPN")
    net.release("h-down")
    (waiting,) = net.nodes["KOR"].exchange.deliver_due(dead)
    assert waiting.state == "pending"
    assert waiting.detail.startswith("ConnectError")
    net.clock.advance(minutes=2)
    assert [d.state for d in net.nodes["KOR"].exchange.deliver_due(net.transport)] == ["delivered"]


class _AnswerLost(HttpTransport):
    """Delivers over HTTP, then loses the answer (the connection dropped on the way back)."""

    def push(self, peer: PeerIdentity, envelopes: list[str]) -> list[object]:  # type: ignore[override]
        super().push(peer, envelopes)
        raise TransportError("connection reset before the answer came back")


def test_a_batch_resent_over_http_is_settled_from_its_one_stored_receipt(net: Net) -> None:
    """Issue 18: the batch resent after a lost answer comes back over HTTP with its stored receipt
    once (``receipts``, each duplicate's ``receipt_of``), and the sender settles every entry from it."""
    kor = net.nodes["KOR"]
    officer = kor.people.person("officer")
    ids = [f"rb-{n}" for n in range(5)]
    for item_id in ids:
        net.release(item_id)  # ingested and released one by one
    with _AnswerLost() as lost:
        assert {d.state for d in kor.exchange.deliver_due(lost)} == {"pending"}
    assert all(net.nodes["JPN"].store.get_item(i) is not None for i in ids)
    net.clock.advance(seconds=60)  # past the back-off
    sent: list[object] = []

    class Recording(HttpTransport):
        def push(self, peer: PeerIdentity, envelopes: list[str]) -> list[object]:  # type: ignore[override]
            answers = super().push(peer, envelopes)
            sent.extend(answers)
            return answers

    with Recording() as again:
        assert {d.state for d in kor.exchange.deliver_due(again)} == {"delivered"}
    (answer,) = sent
    assert isinstance(answer, dict)
    (stored,) = answer["receipts"]
    assert [r["receipt_of"] for r in answer["results"]] == [0] * len(ids)
    assert {r["status"] for r in answer["results"]} == {"duplicate"}
    assert {e.receipt for e in kor.exchange.outbox(officer) if e.item_id in ids} == {stored}


def test_a_selection_too_large_for_one_request_goes_in_several(net: Net) -> None:
    """Issue 18: delivery cut its batches by count only, so 100 items of 10,000 bytes went as one
    request of ~2.5 MB, over the receiver's body limit (twice ``max_payload_bytes`` plus 64 KB):
    refused whole (413) each time it was tried. Now each push stays under a byte budget; every
    item arrives once."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    officer = kor.people.person("officer")
    label = net.label()
    ids = [f"big-{n:03d}" for n in range(100)]
    pad = "x" * 10_000
    kor.items.ingest_many(officer, [NewIngest(label, f'{{"pad": "{pad}"}}'.encode(), item_id=i) for i in ids])
    released = kor.exchange.release_many(officer, ids, "JPN")
    assert not released.refused
    pushes: list[int] = []

    class Counting(HttpTransport):
        def push(self, peer: PeerIdentity, envelopes: list[str]) -> list[object]:  # type: ignore[override]
            pushes.append(len(json.dumps({"envelopes": envelopes})))
            return super().push(peer, envelopes)

    with Counting() as transport:
        assert {d.state for d in kor.exchange.deliver_due(transport)} == {"delivered"}
    assert len(pushes) > 1
    assert max(pushes) < kor.config.max_payload_bytes * 2
    assert all(jpn.store.get_item(i) is not None for i in ids)
    assert {e.state for e in kor.exchange.outbox(officer) if e.item_id in ids} == {"delivered"}
