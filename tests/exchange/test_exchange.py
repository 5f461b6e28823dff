"""Federation between real nodes in one process over the in-memory transport (one shared clock);
``test_exchange_http.py`` runs the same paths over real HTTP."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.identity_docs import claims

from gsomia.core.access import Person
from gsomia.core.policy import ReleaseDecision
from gsomia.crypto.envelope import seal
from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.demo import network
from gsomia.errors import AgreementError, InvalidInputError, ReleaseRefused, TransportError
from gsomia.exchange import FileTransport, MemoryTransport
from gsomia.node import Node
from gsomia.testing import FakeClock

KST_2024 = datetime(2024, 3, 1, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
GSOMIA = "kor-jpn-gsomia-2016"


@dataclass
class Net:
    nodes: dict[str, Node]
    members: list[network.NetNode]
    clock: FakeClock
    transport: MemoryTransport

    def officer(self, party: str) -> Person:
        return self.nodes[party].people.person("officer")

    def deliver(self, rounds: int = 4) -> list[Any]:
        done = []
        for _ in range(rounds):
            moved = [
                d for p in ("KOR", "USA", "JPN") for d in self.nodes[p].exchange.deliver_due(self.transport)
            ]
            done += moved
            if not moved:
                break
        return done

    def inbox(self, party: str, envelopes: list[str]) -> list[Any]:
        """What ``party``'s inbox answers ``envelopes`` (as POST /inbox does)."""
        identity = next(n.exchange.peer(party) for p, n in self.nodes.items() if p != party)
        assert identity is not None
        return self.transport.push(identity, envelopes)

    def audit(self, party: str, kind: str) -> list[dict[str, Any]]:
        return [
            {"outcome": r.outcome, "subject": r.subject, **json.loads(r.detail)}
            for r in self.nodes[party].store.audit(kind=kind)
        ]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))  # keys made then, so the story can be replayed
    members = network.build(tmp_path / "net", clock=clock)
    clock.now = KST_2024
    nodes = network.open_nodes(members, clock)
    yield Net(nodes, members, clock, MemoryTransport(nodes))
    for node in nodes.values():
        node.close()


def peer(net: Net, at: str, party: str) -> PeerIdentity:
    found = net.nodes[at].exchange.peer(party)
    assert found is not None
    return found


def own_item(net: Net, party: str, item_id: str, **label: Any) -> None:
    scheme = {"KOR": "군사II급비밀", "JPN": "極秘", "USA": "SECRET"}
    data = {
        "originator": party,
        "classification": scheme[party],
        "releasable_to": [p for p in ("KOR", "JPN", "USA") if p != party],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (net.clock.now - timedelta(hours=1)).isoformat(),
    }
    data.update(label)
    net.nodes[party].items.ingest(net.officer(party), label=data, payload=b'{"track": 1}', item_id=item_id)


def released_to_jpn(net: Net, ids: list[str]) -> list[str]:
    """KOR's own items ``ids``, ingested and released to JPN in one selection: their message ids."""
    for item_id in ids:
        own_item(net, "KOR", item_id)
    released = net.nodes["KOR"].exchange.release_many(net.officer("KOR"), ids, "JPN")
    assert not released.refused
    return [e.msg_id for e in released.entries]


def test_allowed_flow_arrives_once_with_both_labels_and_a_receipt(net: Net) -> None:
    own_item(net, "KOR", "k1")
    entry = net.nodes["KOR"].exchange.release(net.officer("KOR"), "k1", "JPN")
    assert entry.state == "pending"
    results = net.deliver()
    assert [r.state for r in results] == ["delivered"]
    item, payload = net.nodes["JPN"].items.read(net.officer("JPN"), "k1")
    assert item.label.classification == "군사II급비밀"
    alt = item.label.alternative_for("JPN")
    assert alt is not None
    assert (alt.classification, alt.agreement) == ("極秘", GSOMIA)
    assert json.loads(payload) == {"track": 1}
    sent = net.nodes["KOR"].exchange.fed.outbox_entry(entry.msg_id)
    assert sent is not None
    assert sent.state == "delivered"
    assert sent.receipt is not None  # the receiver's signed receipt: proof of delivery
    assert [r.kind for r in net.nodes["KOR"].store.inventory("k1")] == ["ingested", "sent"]
    assert [r.kind for r in net.nodes["JPN"].store.inventory("k1")] == ["received"]
    assert net.deliver() == []  # nothing left to send, nothing sent twice


def test_refused_release_never_leaves(net: Net) -> None:
    own_item(net, "KOR", "c1", classification="군사I급비밀")
    with pytest.raises(ReleaseRefused):
        net.nodes["KOR"].exchange.release(net.officer("KOR"), "c1", "JPN")
    assert net.nodes["KOR"].exchange.fed.outbox() == []
    assert net.nodes["JPN"].store.get_item("c1") is None
    assert net.audit("KOR", "item.release")[-1]["outcome"] == "refused"


def test_hub_relay_with_authorisation_reaches_japan_with_koreas_signature(net: Net) -> None:
    net.clock.now = datetime(2016, 11, 22, tzinfo=UTC)  # before GSOMIA: only TISA through the US
    own_item(net, "KOR", "h1")
    with pytest.raises(ReleaseRefused, match="hub_authorisation"):
        net.nodes["KOR"].exchange.release(net.officer("KOR"), "h1", "JPN", via="USA")
    with pytest.raises(ReleaseRefused, match="agreement_in_force"):
        net.nodes["KOR"].exchange.release(net.officer("KOR"), "h1", "JPN")
    net.nodes["KOR"].exchange.release(net.officer("KOR"), "h1", "JPN", via="USA", authorise_relay=True)
    results = net.deliver()
    # KOR -> USA, USA -> JPN, then JPN's receipt back to KOR through the hub (issue 14 §3)
    assert [r.state for r in results] == ["delivered", "delivered", "delivered"]
    held_at_hub = net.nodes["USA"].store.get_item("h1")
    assert held_at_hub is not None
    assert held_at_hub.agreement == "tisa-2014"
    item, _ = net.nodes["JPN"].items.read(net.officer("JPN"), "h1")
    assert item.received_from == "USA"
    assert item.agreement == "tisa-2014"
    # JPN verified KOR's original signature: the stored origin JWS is KOR's
    origin = net.nodes["JPN"].exchange.origin_jws("h1")
    assert json.loads(base64.urlsafe_b64decode(origin.split(".")[0] + "=="))["iss"] == "KOR"


def test_hub_refuses_to_forward_without_the_originators_authorisation(net: Net) -> None:
    net.clock.now = datetime(2016, 11, 22, tzinfo=UTC)
    own_item(net, "KOR", "h2")
    kor = net.nodes["KOR"].exchange
    body = kor.item_body(
        {"item": "h2", "sender": "KOR", "recipient": "JPN", "via": ["USA"], "purpose": "threat-assessment"},
        _decision("tisa-2014"),
    )
    envelope = seal(
        kor.ring, peer(net, "KOR", "USA"), body, msg_id="forged-relay", at=net.clock.now, ttl=HOUR
    )
    (answer,) = net.inbox("USA", [envelope])
    assert answer["status"] == "refused"
    assert "hub_authorisation" in answer["reason"]
    assert net.nodes["USA"].store.get_item("h2") is None
    assert net.nodes["USA"].exchange.fed.outbox() == []


def _decision(agreement: str) -> ReleaseDecision:
    return ReleaseDecision(True, KST_2024, (), agreement, (), None)


def test_a_termination_between_queueing_and_sending_makes_it_undeliverable(net: Net) -> None:
    gsomia = net.nodes["KOR"].catalogue.agreement(GSOMIA).what_if(without=["2019-11-22-notice-suspended"])
    what_if = net.nodes["KOR"].catalogue.replacing(gsomia)
    kor = Node(net.nodes["KOR"].config, catalogue=what_if, clock=net.clock)
    net.clock.now = datetime(2019, 11, 22, 23, 59, 59, tzinfo=gsomia.timezone)
    own_item(net, "KOR", "late")
    kor.exchange.release(kor.people.person("officer"), "late", "JPN")
    net.clock.advance(seconds=2)  # 00:00:01 KST on 23 November 2019: the agreement ended at midnight
    results = kor.exchange.deliver_due(net.transport)
    assert [r.state for r in results] == ["undeliverable"]
    assert "terminated" in results[0].detail
    assert net.nodes["JPN"].store.get_item("late") is None
    kor.close()


def test_receiver_down_then_back_gets_it_exactly_once(net: Net) -> None:
    own_item(net, "JPN", "j1")
    jpn = net.nodes["JPN"].exchange
    entry = jpn.release(net.officer("JPN"), "j1", "KOR")
    net.transport.unreachable.add("KOR")
    (waiting,) = jpn.deliver_due(net.transport)
    assert (waiting.state, waiting.detail.split(":")[0]) == ("pending", "ConnectError")
    net.transport.unreachable.clear()
    assert jpn.deliver_due(net.transport) == []  # backing off: not due yet
    net.clock.advance(seconds=5)
    assert [r.state for r in jpn.deliver_due(net.transport)] == ["delivered"]
    again = jpn.fed.outbox_entry(entry.msg_id)
    assert again is not None
    assert again.attempts == 2
    assert net.nodes["KOR"].store.count_items() == 1


def test_the_same_envelope_twice_is_acknowledged_not_stored_twice(net: Net) -> None:
    own_item(net, "KOR", "d1")
    entry = net.nodes["KOR"].exchange.release(net.officer("KOR"), "d1", "JPN")
    (first,) = net.inbox("JPN", [entry.envelope])
    second = net.inbox("JPN", [entry.envelope, entry.envelope])
    assert first["status"] == "stored"
    assert [r["status"] for r in second] == ["duplicate", "duplicate"]
    assert second[0]["receipt"] == first["receipt"]
    assert net.nodes["JPN"].store.count_items() == 1
    assert len(net.audit("JPN", "envelope.duplicate")) == 2


def test_a_message_id_of_another_sender_gets_neither_its_receipt_nor_a_store(net: Net) -> None:
    """USA, a registered partner of JPN, reuses the message id of KOR's delivered envelope (seen
    on the wire, or guessed) in an envelope of its own: JPN must not hand it the receipt it signed
    for KOR (which names KOR's item) nor treat USA's message as already done."""
    own_item(net, "KOR", "k-own")
    entry = net.nodes["KOR"].exchange.release(net.officer("KOR"), "k-own", "JPN")
    (first,) = net.inbox("JPN", [entry.envelope])
    assert first["status"] == "stored"
    usa = net.nodes["USA"]
    body = {"kind": "item", "note": "anything"}
    forged = seal(usa.ring, peer(net, "USA", "JPN"), body, msg_id=entry.msg_id, at=net.clock.now, ttl=HOUR)
    (answer,) = net.inbox("JPN", [forged])
    assert answer == {"status": "refused", "reason": "envelope refused", "receipt": None}
    refused = [r for r in net.nodes["JPN"].store.audit(kind="envelope.refused") if r.actor == "USA"]
    assert [json.loads(r.detail)["reason"] for r in refused] == ["message id of another sender"]
    # KOR's own resend is still answered with its first receipt
    (again,) = net.inbox("JPN", [entry.envelope])
    assert (again["status"], again["receipt"]) == ("duplicate", first["receipt"])


@pytest.mark.parametrize(
    "case", ["garbage", "wrong-format", "tampered", "wrong-recipient", "expired", "unknown-sender"]
)
def test_hostile_envelopes_are_refused_and_recorded(net: Net, case: str) -> None:
    own_item(net, "KOR", "x1")
    kor = net.nodes["KOR"].exchange
    good = kor.release(net.officer("KOR"), "x1", "JPN").envelope
    envelope: str = good
    if case == "garbage":
        envelope = "not an envelope"
    elif case == "wrong-format":
        envelope = json.dumps({"format": "gsomia-envelope/9", "cose": json.loads(good)["cose"]})
    elif case == "tampered":  # one character of the COSE_Encrypt's ciphertext changed
        cose = json.loads(good)["cose"]
        middle = len(cose) // 2
        cose = cose[:middle] + ("A" if cose[middle] != "A" else "B") + cose[middle + 1 :]
        envelope = json.dumps({"format": json.loads(good)["format"], "cose": cose})
    elif case == "wrong-recipient":
        envelope = seal(
            kor.ring, peer(net, "KOR", "USA"), {"kind": "item"}, msg_id="m", at=net.clock.now, ttl=HOUR
        )
    elif case == "expired":
        net.clock.advance(days=2)
    elif case == "unknown-sender":
        path = net.nodes["KOR"].config.directory.parent / "stranger.json"
        stranger = KeyRing.create(path, "GBR", "gbr", net.clock.now)
        envelope = seal(
            stranger, peer(net, "KOR", "JPN"), {"kind": "item"}, msg_id="s", at=net.clock.now, ttl=HOUR
        )
    (answer,) = net.inbox("JPN", [envelope])
    expected: dict[str, object] = {"status": "refused", "reason": "envelope refused", "receipt": None}
    if case == "expired":
        expected["retry"] = True  # refused for now: the sender may try again in a fresh envelope
    assert answer == expected
    recorded = net.audit("JPN", "envelope.refused")
    assert recorded[-1]["outcome"] == "refused"
    assert recorded[-1]["reason"]  # the detail is in the audit records, not in the answer
    assert net.nodes["JPN"].store.get_item("x1") is None


def test_a_revoked_sender_key_is_refused_from_the_instant_of_revocation(net: Net) -> None:
    own_item(net, "KOR", "r1")
    kor = net.nodes["KOR"].exchange
    kid, _ = kor.ring.signing_key(net.clock.now)
    net.nodes["JPN"].exchange.revoke_peer_key(None, "KOR", kid, net.clock.now)
    kor.release(net.officer("KOR"), "r1", "JPN")
    results = net.deliver()
    assert [r.state for r in results] == ["undeliverable"]
    assert net.audit("JPN", "envelope.refused")[-1]["reason"] == "revoked-key"


def test_an_unregistered_link_is_refused_on_both_sides(net: Net) -> None:
    own_item(net, "KOR", "u1")
    jpn = net.nodes["JPN"].exchange
    identity = net.nodes["KOR"].exchange.identity()
    jpn.register_peer(None, identity, ["tisa-2014"])  # the KOR link now serves TISA only
    net.nodes["KOR"].exchange.release(net.officer("KOR"), "u1", "JPN")
    results = net.deliver()
    assert [r.state for r in results] == ["undeliverable"]
    assert "not registered for kor-jpn-gsomia-2016" in results[0].detail
    with pytest.raises(AgreementError, match="not an agreement between"):
        jpn.register_peer(None, identity, ["usa-kor-gsomia-1987"])


def test_third_party_consent_workflow(net: Net) -> None:
    own_item(net, "KOR", "t1")
    net.nodes["KOR"].exchange.release(net.officer("KOR"), "t1", "JPN")
    net.deliver()
    jpn = net.nodes["JPN"].exchange
    with pytest.raises(ReleaseRefused, match="third_party"):
        jpn.release(net.officer("JPN"), "t1", "USA")
    request_id = jpn.request_consent(net.officer("JPN"), "t1", "USA", "threat-assessment", "US analysis cell")
    net.deliver()
    kor = net.nodes["KOR"].exchange
    pending = kor.fed.consent_requests("pending")
    assert [(r.id, r.holder, r.third_party) for r in pending] == [(request_id, "JPN", "USA")]
    kor.answer_consent(net.officer("KOR"), request_id, grant=True, reason="KOR MND note 2024-031")
    with pytest.raises(InvalidInputError, match="already answered"):
        kor.answer_consent(net.officer("KOR"), request_id, grant=False, reason="changed my mind")
    net.deliver()
    mine = jpn.fed.consent_request(request_id)
    assert mine is not None
    assert mine.state == "granted"
    jpn.release(net.officer("JPN"), "t1", "USA")
    assert [r.state for r in net.deliver()] == ["delivered"]
    item, _ = net.nodes["USA"].items.read(net.officer("USA"), "t1")
    assert item.label.originator == "KOR"
    assert item.received_from == "JPN"


def test_a_refused_consent_leaves_the_release_refused(net: Net) -> None:
    own_item(net, "KOR", "t2")
    net.nodes["KOR"].exchange.release(net.officer("KOR"), "t2", "JPN")
    net.deliver()
    jpn = net.nodes["JPN"].exchange
    request_id = jpn.request_consent(net.officer("JPN"), "t2", "USA", "threat-assessment", "please")
    net.deliver()
    net.nodes["KOR"].exchange.answer_consent(
        net.officer("KOR"), request_id, grant=False, reason="not releasable"
    )
    net.deliver()
    mine = jpn.fed.consent_request(request_id)
    assert mine is not None
    assert mine.state == "refused"
    with pytest.raises(ReleaseRefused, match="third_party"):
        jpn.release(net.officer("JPN"), "t2", "USA")


def test_key_rotation_with_overlap(net: Net) -> None:
    kor, jpn = net.nodes["KOR"].exchange, net.nodes["JPN"].exchange
    own_item(net, "KOR", "rot-1")
    before = kor.release(net.officer("KOR"), "rot-1", "JPN")  # sealed with the old key
    old_kid, _ = kor.ring.signing_key(net.clock.now)
    net.clock.advance(seconds=1)
    identity = kor.rotate_keys(None, timedelta(hours=1))
    new_kid, _ = kor.ring.signing_key(net.clock.now)
    assert new_kid != old_kid
    assert {k["kid"] for k in claims(identity)["keys"]} >= {old_kid, new_kid}
    jpn.register_peer(None, identity, sorted(jpn.links("KOR")))  # the new document, out of band
    own_item(net, "KOR", "rot-2")
    kor.release(net.officer("KOR"), "rot-2", "JPN")  # sealed with the new key
    assert sorted(r.state for r in net.deliver()) == ["delivered", "delivered"]
    assert net.nodes["JPN"].store.existing_items(["rot-1", "rot-2"]) == {"rot-1", "rot-2"}
    assert before.msg_id
    assert len(net.nodes["KOR"].store.audit(kind="key.rotate")) == 1


def kor_json_item(net: Net, item_id: str, payload: dict[str, Any]) -> Node:
    """KOR's own item ``item_id`` (군사II급비밀, releasable to JPN) holding ``payload``; KOR's node."""
    kor = net.nodes["KOR"]
    kor.items.ingest(
        net.officer("KOR"),
        payload=json.dumps(payload).encode(),
        item_id=item_id,
        label={
            "originator": "KOR",
            "classification": "군사II급비밀",
            "releasable_to": ["JPN"],
            "purpose": "threat-assessment",
            "topics": ["dprk-missile"],
            "created": "2024-02-01T00:00:00+00:00",
        },
    )
    return kor


@pytest.mark.parametrize(
    ("marking", "leaves"),
    [
        ("marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1", False),  # TLP 2.0 RED
        ("marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421", True),  # TLP 2.0 AMBER
    ],
)
def test_tlp_red_never_leaves_through_the_exchange(net: Net, marking: str, leaves: bool) -> None:
    indicator = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-01T00:00:00.000Z",
        "pattern": "[file:name = 'x']",
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
        "object_marking_refs": [marking],
    }
    kor = kor_json_item(net, "tlp-1", indicator)
    if leaves:
        kor.exchange.release(net.officer("KOR"), "tlp-1", "JPN")
        assert [r.state for r in net.deliver()] == ["delivered"]
    else:
        with pytest.raises(InvalidInputError, match="TLP:RED"):
            kor.exchange.release(net.officer("KOR"), "tlp-1", "JPN")
        assert kor.exchange.fed.outbox() == []
        assert net.audit("KOR", "item.release")[-1]["outcome"] == "refused"


def test_a_payload_whose_granular_marking_ref_is_not_text_is_released(net: Net) -> None:
    """Any JSON payload is asked for TLP:RED before it leaves; one whose ``granular_markings`` held a
    ``marking_ref`` that is a list made that question a TypeError (a list asked of a set), so the
    release failed with a 500 instead of an answer. Such a reference marks nothing: released."""
    kor = kor_json_item(net, "odd-marks", {"granular_markings": [{"marking_ref": [1], "selectors": ["x"]}]})
    kor.exchange.release(net.officer("KOR"), "odd-marks", "JPN")
    assert [r.state for r in net.deliver()] == ["delivered"]


def test_tlp_amber_strict_is_released_by_its_originator_only(net: Net) -> None:
    """TLP:AMBER+STRICT means no onward release: KOR's item reaches JPN, and JPN may not pass it on."""
    indicator = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--5b0e3a2f-4d6c-4b1e-9f3a-7c2d1e0f9a8b",
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-01T00:00:00.000Z",
        "pattern": "[file:name = 'x']",
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
        "object_marking_refs": ["marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"],
    }
    net.nodes["KOR"].items.ingest(
        net.officer("KOR"),
        payload=json.dumps(indicator).encode(),
        item_id="strict-1",
        label={
            "originator": "KOR",
            "classification": "군사II급비밀",
            "releasable_to": ["JPN", "USA"],
            "purpose": "threat-assessment",
            "topics": ["dprk-missile"],
            "created": "2024-02-01T00:00:00+00:00",
        },
    )
    net.nodes["KOR"].exchange.release(net.officer("KOR"), "strict-1", "JPN")  # the originator releases
    assert [r.state for r in net.deliver()] == ["delivered"]
    with pytest.raises(InvalidInputError, match=r"TLP:AMBER\+STRICT: only its originator KOR"):
        net.nodes["JPN"].exchange.release(net.officer("JPN"), "strict-1", "USA")
    assert net.audit("JPN", "item.release")[-1]["outcome"] == "refused"


def test_one_runtime_runs_the_rounds_serve_and_the_api_run(net: Net) -> None:
    """The node's background loops (``node serve``, ``create_app(sender=True)``), one round at a time."""
    own_item(net, "KOR", "rt-1")
    net.nodes["KOR"].exchange.release(net.officer("KOR"), "rt-1", "JPN")
    runtimes = {p: n.runtime(net.transport) for p, n in net.nodes.items()}
    assert runtimes["KOR"].round() == 1  # delivered, log grown, head shared (queued for each partner)
    assert net.nodes["JPN"].store.get_item("rt-1") is not None
    assert net.nodes["KOR"].audit.size() > 0
    for runtime in runtimes.values():  # heads reach the partners, and are checked
        runtime.head_every = 0
        runtime.round()
    for runtime in runtimes.values():
        runtime.round()
    assert {p["party"]: p["status"] for p in net.nodes["JPN"].audit.partners()}["KOR"] == "consistent"


def _within(seconds: float, done: Any) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.02)
    return bool(done())


def test_a_release_wakes_the_sender_at_its_commit_not_at_the_end_of_its_pause(net: Net) -> None:
    """issue 18: a node carries an officer's committed selection while the next is being released;
    its delivery worker is woken by the outbox's commit (the pause, 60 s here, is the safety net)."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    own_item(net, "KOR", "wake-1")
    own_item(net, "KOR", "wake-2")
    woken: list[int] = []
    kor.store.on_queued(lambda: woken.append(1))
    with pytest.raises(ReleaseRefused):  # refused (and audited): nothing queued, no one woken
        kor.exchange.release(net.officer("KOR"), "wake-1", "JPN", purpose="no-such-purpose")
    assert woken == []
    runtime = kor.runtime(net.transport, interval=60)
    runtime.start()
    try:
        # the first rounds share KOR's head (queued, so delivered at once); then the worker pauses
        assert _within(10, lambda: not kor.exchange.fed.outbox(state="pending", limit=1))
        time.sleep(0.3)
        kor.exchange.release_many(net.officer("KOR"), ["wake-1", "wake-2"], "JPN")
        assert woken
        assert _within(10, lambda: jpn.store.get_item("wake-2") is not None)
    finally:
        runtime.stop()
    assert jpn.store.count_items() == 2  # once each


def test_the_audit_writer_never_holds_up_the_next_batch(net: Net) -> None:
    """Issue 18: a serving node's audit log is integrated on a thread of its own; a slow integration
    (held here until the item has arrived) does not stop the delivery worker carrying what is
    released meanwhile, and the records are integrated once it goes on."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    own_item(net, "KOR", "aw-1")
    integrating, go_on = threading.Event(), threading.Event()
    integrate = kor.audit.integrate

    integrated: list[int] = []

    def slow(limit: int = 10_000) -> int:
        integrating.set()
        go_on.wait(30)
        integrated.append(integrate(limit))
        return integrated[-1]

    runtime = kor.runtime(net.transport, interval=60)
    kor.audit.integrate = slow  # type: ignore[method-assign]
    runtime.start()
    try:
        assert integrating.wait(10)  # the writer is busy (and stays so until told)
        kor.exchange.release_many(net.officer("KOR"), ["aw-1"], "JPN")
        assert _within(20, lambda: jpn.store.get_item("aw-1") is not None)
        # and settled at KOR (its receipt's records written) before the writer goes on: a record
        # written after the writer's last call of a round waits for the next round (the interval)
        assert _within(20, lambda: [e.state for e in kor.exchange.fed.outbox()] == ["delivered"])
        go_on.set()
        # the records written while the writer was held (the release's, the delivery's) are integrated
        # once it goes on: its round integrates until a call finds nothing left (a record written
        # after that waits for the next round, ``interval`` away, so ``pending()`` is not asked)
        assert _within(20, lambda: 0 in integrated)
        assert integrated[0] > 0
    finally:
        go_on.set()
        runtime.stop()
    assert jpn.store.count_items() == 1


def test_selections_released_while_the_worker_delivers_arrive_exactly_once(net: Net) -> None:
    """The overlap a serving node runs: selections committed while the worker is carrying the ones
    before (woken by each commit, mid-round) are each delivered once, on JPN's receipt, none twice."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    selections = [[f"ov-{s}-{n:03d}" for n in range(120)] for s in range(3)]
    for item_id in (i for selection in selections for i in selection):
        own_item(net, "KOR", item_id)
    runtime = kor.runtime(net.transport, interval=60)
    runtime.start()
    try:
        for selection in selections:
            assert not kor.exchange.release_many(net.officer("KOR"), selection, "JPN").refused
        wanted = {i for selection in selections for i in selection}
        assert _within(60, lambda: jpn.store.existing_items(sorted(wanted)) == wanted)
        assert _within(10, lambda: not kor.exchange.fed.outbox(state="pending", limit=1))
    finally:
        runtime.stop()
    items = [e for e in kor.exchange.fed.outbox(limit=1000) if e.kind == "item"]
    assert len(items) == 360
    assert all(e.state == "delivered" and e.receipt for e in items)
    assert jpn.store.count_items() == 360
    assert len(jpn.store.audit(kind="envelope.received")) == 360  # one record an item: none received twice
    assert net.deliver() == []  # nothing left to send


def test_a_transfer_file_is_a_transport_that_carries_no_proofs(net: Net) -> None:
    kor = net.nodes["KOR"]
    carrier = FileTransport(kor.ring, "t-1", "JPN", None, net.clock.now, timedelta(days=1))
    own_item(net, "KOR", "f-1")
    entry = kor.exchange.release(net.officer("KOR"), "f-1", "JPN")
    assert carrier.push(peer(net, "KOR", "JPN"), [entry.envelope]) == [
        {"status": "exported", "receipt": None, "reason": None}
    ]
    with pytest.raises(TransportError, match="no proofs"):
        carrier.inclusion(peer(net, "KOR", "JPN"), "e")
    with pytest.raises(TransportError, match="goes to JPN"):
        carrier.push(peer(net, "KOR", "USA"), [entry.envelope])
    results = net.nodes["JPN"].exchange.receive(json.loads(carrier.text())["envelopes"])
    assert [r["status"] for r in results] == ["stored"]
