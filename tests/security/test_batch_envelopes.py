"""Items delivered many to an envelope (issue 18): one hop signature and one encryption for the
batch, each item with its own message id and its originator's signature, each decided, stored and
receipted on its own, exactly once. The adversary's side: a batch replayed, a batch with a message
id twice, another kind of message slipped in, an item altered inside a validly sealed batch, and a
peer passing another party's items on under its own hop signature."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from tests.exchange.test_exchange import Net, net, own_item, released_to_jpn
from tests.tallied import tallied

from gsomia.crypto.envelope import open_envelope, seal, verify_origin
from gsomia.crypto.keys import PeerIdentity
from gsomia.errors import TransportError
from gsomia.exchange import MemoryTransport, _delivery, receipt_entries


@pytest.fixture(autouse=True)
def _batches_of_100(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count a run's items in batches of 100 (what a delivery batch held when they were
    written); how many items a batch envelope carries is the sender's choice (``_BATCH``), which
    issue 18's measurements moved to 250: the tests' batches stay as they count them."""
    monkeypatch.setattr(_delivery, "_BATCH", 100)


__all__ = ["net"]


class Capturing(MemoryTransport):
    """The in-memory transport, keeping every batch of envelopes pushed (and optionally holding them)."""

    def __init__(self, inner: MemoryTransport, *, hold: bool = False) -> None:
        super().__init__(inner.peers)
        self.pushed: list[tuple[str, list[str]]] = []
        self.hold = hold

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        self.pushed.append((peer.party, list(envelopes)))
        if self.hold:
            return [{"status": "held", "receipt": None, "reason": None} for _ in envelopes]
        return super().push(peer, envelopes)


def _captured_batch(net: Net, ids: list[str]) -> tuple[list[str], str]:
    """KOR's batch envelope for ``ids`` to JPN, captured on its way and not delivered."""
    msg_ids = released_to_jpn(net, ids)
    held = Capturing(net.transport, hold=True)
    net.nodes["KOR"].exchange.deliver_due(held)
    ((party, envelopes),) = held.pushed
    assert party == "JPN"
    assert len(envelopes) == 1  # every item in one envelope
    return msg_ids, envelopes[0]


def _opened_body(net: Net, envelope: str) -> dict[str, Any]:
    jpn = net.nodes["JPN"]
    return open_envelope(jpn.exchange.ring, envelope, jpn.exchange.kernel.peers.peer, net.clock.now).body


def _sealed_by(net: Net, party: str, body: dict[str, Any], msg_id: str = "forged-batch") -> str:
    sender = net.nodes[party].exchange
    jpn = sender.peer("JPN")
    assert jpn is not None
    return seal(sender.ring, jpn, body, msg_id=msg_id, at=net.clock.now, ttl=timedelta(minutes=10))


def test_items_travel_many_to_an_envelope_each_received_and_receipted_once(net: Net) -> None:
    msg_ids = released_to_jpn(net, ["b1", "b2", "b3"])
    capturing = Capturing(net.transport)
    results = net.nodes["KOR"].exchange.deliver_due(capturing)
    assert sorted(r.state for r in results) == ["delivered"] * 3
    ((_, envelopes),) = capturing.pushed
    assert len(envelopes) == 1  # one hop signature and one encryption for the three
    jpn = net.nodes["JPN"]
    assert sorted(jpn.store.existing_items(["b1", "b2", "b3"])) == ["b1", "b2", "b3"]
    # ONE signed receipt for the batch, naming each message, its item and the item's digest
    kor = net.nodes["KOR"].exchange.fed
    receipts = {e.receipt for m in msg_ids if (e := kor.outbox_entry(m)) is not None}
    assert len(receipts) == 1
    (receipt,) = receipts
    assert receipt is not None
    signer, content = verify_origin(receipt, net.nodes["KOR"].exchange.kernel.peers.peer, net.clock.now)
    batched, named = receipt_entries(content, signer)
    assert (signer, batched, sorted(named)) == ("JPN", True, sorted(msg_ids))
    sent = {m["msg_id"]: m["body"]["origin"] for m in _opened_body(net, envelopes[0])["messages"]}
    for msg_id, item_id in zip(msg_ids, ["b1", "b2", "b3"], strict=True):
        entry = net.nodes["KOR"].exchange.fed.outbox_entry(msg_id)
        assert entry is not None
        assert entry.state == "delivered"
        assert (named[msg_id].item, named[msg_id].status, named[msg_id].digest) == (
            item_id,
            "stored",
            hashlib.sha256(sent[msg_id].encode()).hexdigest(),
        )
        # the receiver keeps the same receipt for the message (a duplicate is answered with it)
        inbox = jpn.exchange.fed.inbox_entry(msg_id)
        assert inbox is not None
        assert inbox.receipt == receipt
    # each item's own audit record at the receiver
    received = [r for r in net.audit("JPN", "envelope.received")]
    assert sorted(r["msg_id"] for r in received) == sorted(msg_ids)

    # the same batch again (replayed by anyone who saw it): every message a duplicate, nothing twice
    (answer,) = net.inbox("JPN", envelopes)
    assert answer["status"] == "batch"
    assert answer["receipt"] is None  # nothing taken anew
    # the stored batch receipt given back ONCE, each duplicate naming it by position
    assert answer["receipts"] == [receipt]
    assert [(r["status"], r["receipt"], r["receipt_of"]) for r in answer["results"]] == [
        ("duplicate", None, 0)
    ] * 3
    assert len(jpn.store.existing_items(["b1", "b2", "b3"])) == 3
    assert len(net.audit("JPN", "envelope.received")) == 3


def test_a_batch_with_a_message_id_twice_is_refused_whole(net: Net) -> None:
    _, envelope = _captured_batch(net, ["d1", "d2"])
    body = _opened_body(net, envelope)
    body["messages"][1]["msg_id"] = body["messages"][0]["msg_id"]
    (answer,) = net.inbox("JPN", [_sealed_by(net, "KOR", body)])
    assert answer == {"status": "refused", "reason": "envelope refused", "receipt": None}
    assert net.nodes["JPN"].store.existing_items(["d1", "d2"]) == set()
    assert "message 1" in net.audit("JPN", "envelope.refused")[-1]["reason"]


def test_only_item_messages_travel_in_a_batch(net: Net) -> None:
    _, envelope = _captured_batch(net, ["k1", "k2"])
    body = _opened_body(net, envelope)
    body["messages"][1]["body"] = {"kind": "consent", "consent": "anything"}
    (answer,) = net.inbox("JPN", [_sealed_by(net, "KOR", body)])
    assert answer["status"] == "refused"
    assert net.nodes["JPN"].store.existing_items(["k1", "k2"]) == set()
    for empty in ([], [{"msg_id": "x", "body": body["messages"][0]["body"], "extra": 1}]):
        (answer,) = net.inbox("JPN", [_sealed_by(net, "KOR", {"kind": "batch", "messages": empty})])
        assert answer["status"] == "refused"
    assert net.nodes["JPN"].store.existing_items(["k1"]) == set()


def test_an_item_altered_inside_a_validly_sealed_batch_is_refused_alone(net: Net) -> None:
    msg_ids, envelope = _captured_batch(net, ["a1", "a2"])
    body = _opened_body(net, envelope)
    header, payload, signature = body["messages"][0]["body"]["origin"].split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    body["messages"][0]["body"]["origin"] = f"{header}.{payload}.{flipped}"
    (answer,) = net.inbox("JPN", [_sealed_by(net, "KOR", body)])
    assert answer["status"] == "batch"
    first, second = answer["results"]
    assert (first["status"], first["receipt"]) == ("refused", None)
    assert second["status"] == "stored"
    assert net.nodes["JPN"].store.existing_items(["a1", "a2"]) == {"a2"}
    refused = net.audit("JPN", "envelope.refused")[-1]
    assert (refused["msg_id"], refused["reason"]) == (msg_ids[0], "bad-origin-signature")


def test_a_peer_cannot_pass_on_another_partys_items_under_its_own_hop_signature(net: Net) -> None:
    _, envelope = _captured_batch(net, ["p1", "p2"])
    body = _opened_body(net, envelope)  # KOR's items, routed KOR -> JPN, resealed by USA
    (answer,) = net.inbox("JPN", [_sealed_by(net, "USA", body)])
    assert answer["status"] == "batch"
    assert [r["status"] for r in answer["results"]] == ["refused", "refused"]
    assert all("KOR delivers, but USA did" in r["reason"] for r in answer["results"])
    assert net.nodes["JPN"].store.existing_items(["p1", "p2"]) == set()


class AnswerLost(MemoryTransport):
    """Delivers, then loses the receiver's answer (the connection dropped on the way back)."""

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        super().push(peer, envelopes)
        raise TransportError("connection reset before the answer came back")


def test_a_batch_sent_again_is_answered_with_its_one_stored_receipt_once(net: Net) -> None:
    ids = [f"w{n}" for n in range(20)]
    msg_ids = released_to_jpn(net, ids)
    kor = net.nodes["KOR"].exchange
    lost = kor.deliver_due(AnswerLost(net.transport.peers))
    assert [r.state for r in lost] == ["pending"] * 20  # JPN holds them; KOR never heard so
    assert len(net.nodes["JPN"].store.existing_items(ids)) == 20
    net.clock.advance(seconds=60)  # past the back-off
    capturing = Capturing(net.transport)
    recording: list[Any] = []

    class Keeping(MemoryTransport):
        def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
            answers = capturing.push(peer, envelopes)
            recording.extend(answers)
            return answers

    results = kor.deliver_due(Keeping(net.transport.peers))
    assert sorted(r.state for r in results) == ["delivered"] * 20
    (answer,) = recording
    (stored,) = answer["receipts"]  # JPN's one batch receipt, given once for the 20 duplicates
    assert answer["receipt"] is None
    assert [(r["status"], r["receipt"], r["receipt_of"]) for r in answer["results"]] == [
        ("duplicate", None, 0)
    ] * 20
    # the whole answer is about the size of the one receipt, not twenty copies of it
    assert len(str(answer)) < 2 * len(stored)
    _, content = verify_origin(stored, kor.kernel.peers.peer, net.clock.now)
    assert sorted(receipt_entries(content, "JPN")[1]) == sorted(msg_ids)
    assert {e.receipt for m in msg_ids if (e := kor.fed.outbox_entry(m)) is not None} == {stored}
    assert len(net.audit("JPN", "envelope.received")) == 20  # each stored and audited once
    # audited in bounded space (the kernel's tally, since the resent envelopes were one record
    # each): the first 10 of the minute a record each, all 20 counted
    own, audited = tallied(net.nodes["JPN"], net.clock, "envelope.duplicate")
    assert (len(own), audited) == (10, 20)
    assert {r["msg_id"] for r in own} <= set(msg_ids)


def test_a_delivered_batch_resent_by_another_sender_gets_no_receipt(net: Net) -> None:
    msg_ids = released_to_jpn(net, ["v1", "v2", "v3"])
    capturing = Capturing(net.transport)
    net.nodes["KOR"].exchange.deliver_due(capturing)
    ((_, envelopes),) = capturing.pushed
    body = _opened_body(net, envelopes[0])
    # USA (a registered peer of JPN) sends KOR's delivered batch again under its own hop signature,
    # to be handed JPN's receipt for KOR's messages
    (answer,) = net.inbox("JPN", [_sealed_by(net, "USA", body)])
    assert answer["status"] == "batch"
    assert answer["receipt"] is None
    assert "receipts" not in answer
    assert [(r["status"], r["receipt"]) for r in answer["results"]] == [("refused", None)] * 3
    assert "receipt_of" not in str(answer)
    reasons = [r["reason"] for r in net.audit("JPN", "envelope.refused")[-3:]]
    assert reasons == ["message id of another sender"] * 3
    assert sorted(r["msg_id"] for r in net.audit("JPN", "envelope.received")) == sorted(msg_ids)


def test_items_of_one_batch_keep_each_its_own_label_and_decision(net: Net) -> None:
    """A batch parses a label and decides a request once for the items that share them (issue 18);
    the items that do not share them keep their own: another level, other topics."""
    own_item(net, "KOR", "l2")
    own_item(net, "KOR", "l3", classification="군사III급비밀")
    own_item(net, "KOR", "l2b")
    own_item(net, "KOR", "nuke", topics=["dprk-nuclear"])
    released = net.nodes["KOR"].exchange.release_many(net.officer("KOR"), ["l2", "l3", "l2b", "nuke"], "JPN")
    assert not released.refused
    capturing = Capturing(net.transport)
    results = net.nodes["KOR"].exchange.deliver_due(capturing)
    assert sorted(r.state for r in results) == ["delivered"] * 4
    ((_, envelopes),) = capturing.pushed
    assert len(envelopes) == 1
    officer = net.officer("JPN")
    levels = {i: net.nodes["JPN"].items.read(officer, i)[0].label.classification for i in ("l2", "l3", "l2b")}
    assert levels == {"l2": "군사II급비밀", "l3": "군사III급비밀", "l2b": "군사II급비밀"}
    jpn_levels = {
        i: alt.classification
        for i in ("l2", "l3")
        if (alt := net.nodes["JPN"].items.read(officer, i)[0].label.alternative_for("JPN")) is not None
    }
    assert jpn_levels == {"l2": "極秘", "l3": "秘"}
    nuke = net.nodes["JPN"].items.read(officer, "nuke")[0].label
    assert set(nuke.topics) == {"dprk-nuclear"}


class Pipelined(MemoryTransport):
    """The in-memory transport with one push (by its position, from 0) lost on the wire, or answered
    with another push's answers (a receipt replayed for another batch)."""

    def __init__(self, inner: MemoryTransport, *, lose: int | None = None, replay: int | None = None) -> None:
        super().__init__(inner.peers)
        self.lose, self.replay = lose, replay
        self.pushed: list[list[str]] = []
        self.answers: list[list[Any]] = []

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        position = len(self.pushed)
        self.pushed.append(list(envelopes))
        if position == self.lose:
            self.answers.append([])
            raise TransportError("ConnectError: lost on the wire")
        if position == self.replay:
            self.answers.append(self.answers[0])
            return self.answers[0]  # JPN never sees this batch; KOR is shown the first batch's receipt
        answers = super().push(peer, envelopes)
        self.answers.append(answers)
        return answers


def _many(net: Net, count: int) -> tuple[list[str], list[str]]:
    ids = [f"p{n:03d}" for n in range(count)]
    return ids, released_to_jpn(net, ids)


def test_batches_in_flight_one_behind_another_each_settle_once_on_their_own_receipt(net: Net) -> None:
    """More than one batch to a peer: the next is sealed while the one before is on the wire, and each
    is settled on the receipt that came back for it, in the outbox's order (issue 18)."""
    ids, msg_ids = _many(net, 250)
    transport = Pipelined(net.transport)
    kor = net.nodes["KOR"].exchange
    results = kor.deliver_due(transport)
    assert [len(p) for p in transport.pushed] == [1, 1, 1]  # three batch envelopes: 100, 100 and 50
    assert [r.msg_id for r in results] == msg_ids
    assert {r.state for r in results} == {"delivered"}
    receipts = [a[0]["receipt"] for a in transport.answers]
    for receipt, carried in zip(receipts, (msg_ids[:100], msg_ids[100:200], msg_ids[200:]), strict=True):
        _, content = verify_origin(receipt, kor.kernel.peers.peer, net.clock.now)
        assert sorted(receipt_entries(content, "JPN")[1]) == sorted(carried)
        assert {e.receipt for m in carried if (e := kor.fed.outbox_entry(m)) is not None} == {receipt}
    assert len(net.nodes["JPN"].store.existing_items(ids)) == 250
    assert kor.deliver_due(transport) == []  # nothing left to send
    assert len(net.audit("JPN", "envelope.received")) == 250


def test_a_batch_lost_between_two_in_flight_is_retried_alone_and_arrives_once(net: Net) -> None:
    ids, msg_ids = _many(net, 250)
    kor = net.nodes["KOR"].exchange
    results = kor.deliver_due(Pipelined(net.transport, lose=1))
    states = [r.state for r in results]
    assert states == ["delivered"] * 100 + ["pending"] * 100 + ["delivered"] * 50
    assert len(net.nodes["JPN"].store.existing_items(ids)) == 150
    net.clock.advance(seconds=60)  # past the back-off
    again = Pipelined(net.transport)
    assert [r.msg_id for r in kor.deliver_due(again)] == msg_ids[100:200]
    assert [len(p) for p in again.pushed] == [1]
    assert all(e.state == "delivered" for m in msg_ids if (e := kor.fed.outbox_entry(m)) is not None)
    assert len(net.nodes["JPN"].store.existing_items(ids)) == 250
    assert len(net.audit("JPN", "envelope.received")) == 250  # each stored once
    assert not net.audit("JPN", "envelope.duplicate")


def test_a_receipt_replayed_for_another_batch_in_flight_settles_none_of_that_batch(net: Net) -> None:
    """The answer to the second batch is the first batch's (signed, valid) receipt: it names none of
    the second batch's messages, so none of them is marked delivered; they go again and arrive once."""
    ids, msg_ids = _many(net, 250)
    kor = net.nodes["KOR"].exchange
    results = kor.deliver_due(Pipelined(net.transport, replay=1))
    states = [r.state for r in results]
    assert states == ["delivered"] * 100 + ["pending"] * 100 + ["delivered"] * 50
    refused = net.audit("KOR", "envelope.receipt-refused")
    assert len(refused) >= 100
    assert all(e.state == "pending" for m in msg_ids[100:200] if (e := kor.fed.outbox_entry(m)) is not None)
    net.clock.advance(seconds=60)
    assert {r.state for r in kor.deliver_due(Pipelined(net.transport))} == {"delivered"}
    assert len(net.nodes["JPN"].store.existing_items(ids)) == 250
    assert len(net.audit("JPN", "envelope.received")) == 250


def test_each_batch_is_decided_again_when_it_is_sealed_not_all_before_the_first_leaves(
    net: Net, monkeypatch: Any
) -> None:
    """The run's entries are decided again batch by batch, the next while the one before is on the
    wire: when the first batch is pushed, the third's entries have not been decided yet (issue 18:
    deciding all 1,000 of a run before the first batch left kept the receiver idle meanwhile). Each
    is still decided, and only what its decision allows is sent."""
    ids, msg_ids = _many(net, 250)
    kor = net.nodes["KOR"].exchange
    decided: list[str] = []
    recheck = kor.recheck

    def counted(entry: Any, *args: Any, **kwargs: Any) -> Any:
        decided.append(entry.msg_id)
        return recheck(entry, *args, **kwargs)

    monkeypatch.setattr(kor, "recheck", counted)
    seen: list[int] = []

    class Watching(Pipelined):
        def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
            seen.append(len(decided))
            return super().push(peer, envelopes)

    results = kor.deliver_due(Watching(net.transport))
    assert seen[0] <= 200  # the first batch and at most the second decided when the first leaves
    assert sorted(decided) == sorted(msg_ids)  # every entry decided once, none sent undecided
    assert {r.state for r in results} == {"delivered"}
    assert len(net.nodes["JPN"].store.existing_items(ids)) == 250
