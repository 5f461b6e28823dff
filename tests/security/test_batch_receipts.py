"""One signed receipt for a batch envelope (issue 18): the receiver signs once for every item it
took, naming each message, its item and the digest of its originator's signature; the sender
settles each entry the receipt names, in one transaction. The adversary's side: a receipt that
leaves an item out or names one not sent in that batch, one signed by the wrong party or with a key
the receiver never registered, and a batch receipt replayed against a later batch. The same
receipt settles an air-gapped transfer's entries, and a receipt of one message (as every receipt
stored before batch receipts) still settles and still names its log entry."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.exchange.test_exchange import Net, net, own_item, released_to_jpn

from gsomia.crypto.envelope import sign_origin, verify_origin
from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.exchange import MemoryTransport, Transfer, receipt_entries

__all__ = ["net"]

Change = Callable[[dict[str, Any]], None]


class Resigning(MemoryTransport):
    """The in-memory transport whose batch answers come back with their receipt altered by
    ``change`` and signed again with ``ring`` (a receiver lying, or someone in between)."""

    def __init__(self, inner: MemoryTransport, ring: KeyRing, net: Net, change: Change) -> None:
        super().__init__(inner.peers)
        self.ring, self.net, self.change = ring, net, change

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        answers = super().push(peer, envelopes)
        for answer in answers:
            if answer.get("status") == "batch" and answer.get("receipt"):
                _, payload, _ = answer["receipt"].split(".")
                data = json.loads(_unb64(payload))
                self.change(data)
                content = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                answer["receipt"] = sign_origin(self.ring, content.encode(), self.net.clock.now)
        return answers


class Replaying(MemoryTransport):
    """Answers every push with ``answers`` (recorded from an earlier one), delivering nothing."""

    def __init__(self, inner: MemoryTransport, answers: list[Any]) -> None:
        super().__init__(inner.peers)
        self.answers = answers

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        return self.answers


class Recording(MemoryTransport):
    def __init__(self, inner: MemoryTransport) -> None:
        super().__init__(inner.peers)
        self.answers: list[list[Any]] = []

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        answers = super().push(peer, envelopes)
        self.answers.append(json.loads(json.dumps(answers)))
        return answers


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _state(net: Net, msg_id: str) -> tuple[str, bool]:
    entry = net.nodes["KOR"].exchange.fed.outbox_entry(msg_id)
    assert entry is not None
    return entry.state, entry.receipt is not None


def _sent(net: Net, item_id: str) -> int:
    return sum(1 for r in net.nodes["KOR"].store.inventory(item_id) if r.kind == "sent")


def test_one_receipt_settles_the_whole_batch_and_is_stored_once(net: Net) -> None:
    msg_ids = released_to_jpn(net, ["s1", "s2", "s3"])
    results = net.nodes["KOR"].exchange.deliver_due(net.transport)
    assert sorted(r.state for r in results) == ["delivered"] * 3
    kor = net.nodes["KOR"]
    stored = {e.receipt for m in msg_ids if (e := kor.exchange.fed.outbox_entry(m)) is not None}
    assert len(stored) == 1
    assert None not in stored
    with kor.store.engine.connect() as conn:  # one copy at each end, not one per entry
        assert conn.exec_driver_sql("SELECT count(*) FROM receipts").scalar() == 1
    with net.nodes["JPN"].store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM receipts").scalar() == 1
    assert [_sent(net, i) for i in ("s1", "s2", "s3")] == [1, 1, 1]
    # each item keeps its own audit record on both sides
    assert sorted(r["msg_id"] for r in net.audit("KOR", "envelope.delivered")) == sorted(msg_ids)
    assert sorted(r["msg_id"] for r in net.audit("JPN", "envelope.received")) == sorted(msg_ids)


def test_a_batch_receipt_that_omits_an_item_settles_nothing_for_it(net: Net) -> None:
    msg_ids = released_to_jpn(net, ["o1", "o2", "o3"])
    left_out = msg_ids[0]

    def omit(data: dict[str, Any]) -> None:
        data["entries"] = [e for e in data["entries"] if e["msg_id"] != left_out]

    lying = Resigning(net.transport, net.nodes["JPN"].exchange.ring, net, omit)
    results = {r.msg_id: r.state for r in net.nodes["KOR"].exchange.deliver_due(lying)}
    assert results == {left_out: "pending", msg_ids[1]: "delivered", msg_ids[2]: "delivered"}
    assert _state(net, left_out) == ("pending", False)
    assert _sent(net, "o1") == 0
    (refused,) = net.audit("KOR", "envelope.receipt-refused")
    assert (refused["msg_id"], refused["outcome"]) == (left_out, "refused")
    assert "does not acknowledge" in refused["reason"]
    # JPN did take it: sent again, it is a duplicate answered with the receipt JPN signed, which
    # names it, and it is settled then, once
    net.clock.now += timedelta(seconds=2)
    again = net.nodes["KOR"].exchange.deliver_due(net.transport)
    assert [(r.msg_id, r.state) for r in again] == [(left_out, "delivered")]
    assert [_sent(net, i) for i in ("o1", "o2", "o3")] == [1, 1, 1]
    assert len(net.nodes["JPN"].store.existing_items(["o1", "o2", "o3"])) == 3


def test_a_batch_receipt_naming_messages_not_sent_in_it_settles_nothing_for_them(net: Net) -> None:
    held_back = released_to_jpn(net, ["h1", "h2"])

    class Holding(MemoryTransport):
        def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
            return [{"status": "held", "receipt": None, "reason": None} for _ in envelopes]

    net.nodes["KOR"].exchange.deliver_due(Holding(net.transport.peers))  # retried later, not due now
    sent = released_to_jpn(net, ["n1", "n2"])

    def add(data: dict[str, Any]) -> None:
        first = data["entries"][0]
        data["entries"] += [{**first, "msg_id": m} for m in held_back]

    lying = Resigning(net.transport, net.nodes["JPN"].exchange.ring, net, add)
    results = {r.msg_id: r.state for r in net.nodes["KOR"].exchange.deliver_due(lying)}
    assert results == {sent[0]: "delivered", sent[1]: "delivered"}
    assert [_state(net, m) for m in held_back] == [("pending", False)] * 2
    assert [_sent(net, i) for i in ("h1", "h2", "n1", "n2")] == [0, 0, 1, 1]
    (refused,) = net.audit("KOR", "envelope.receipt-refused")
    assert sorted(refused["named"]) == sorted(held_back)
    assert "not sent in that batch" in refused["reason"]


@pytest.mark.parametrize("case", ["another-party", "another-party-as-jpn", "unregistered-key"])
def test_a_batch_receipt_signed_by_the_wrong_party_or_key_is_refused(
    net: Net, case: str, tmp_path: Path
) -> None:
    msg_ids = released_to_jpn(net, ["w1", "w2"])
    if case == "unregistered-key":  # JPN's name, a key JPN never published
        ring = KeyRing.generate(tmp_path / "rogue", "JPN", "rogue", net.clock.now)
    else:
        ring = net.nodes["USA"].exchange.ring

    def sign_as(data: dict[str, Any]) -> None:
        if case == "another-party":
            data["receiver"] = "USA"

    lying = Resigning(net.transport, ring, net, sign_as)
    results = net.nodes["KOR"].exchange.deliver_due(lying)
    assert [r.state for r in results] == ["pending", "pending"]
    assert [_state(net, m) for m in msg_ids] == [("pending", False)] * 2
    assert [_sent(net, i) for i in ("w1", "w2")] == [0, 0]
    refused = net.audit("KOR", "envelope.receipt-refused")
    assert sorted(r["msg_id"] for r in refused) == sorted(msg_ids)


def test_a_replayed_batch_receipt_settles_nothing_twice(net: Net) -> None:
    first = released_to_jpn(net, ["r1", "r2"])
    recording = Recording(net.transport)
    net.nodes["KOR"].exchange.deliver_due(recording)
    ((answer,),) = recording.answers
    assert answer["status"] == "batch"
    assert answer["receipt"]
    later = released_to_jpn(net, ["r3", "r4"])
    # the first batch's answer, valid and signed by JPN, given back for the next batch of two
    results = net.nodes["KOR"].exchange.deliver_due(Replaying(net.transport, [answer]))
    assert {r.msg_id: r.state for r in results} == {later[0]: "pending", later[1]: "pending"}
    assert [_state(net, m) for m in later] == [("pending", False)] * 2
    assert [_state(net, m) for m in first] == [("delivered", True)] * 2
    assert [_sent(net, i) for i in ("r1", "r2", "r3", "r4")] == [1, 1, 0, 0]
    refused = net.audit("KOR", "envelope.receipt-refused")
    assert sorted(r["msg_id"] for r in refused if "msg_id" in r) == sorted(later)
    assert [sorted(r["named"]) for r in refused if "named" in r] == [sorted(first)]
    # and settled again directly from it, entries read before they were delivered: nothing written
    kor = net.nodes["KOR"].exchange
    sink: list[dict[str, Any]] = []
    stale = [e for e in kor.fed.outbox() if e.msg_id in first]
    for entry in stale:
        pending = type(entry)(**{**{s: getattr(entry, s) for s in entry.__slots__}, "state": "pending"})
        stored = {"status": "stored"}
        kor.settlement.answer(pending, entry.envelope, stored, net.clock.now, sink, shared=answer["receipt"])
    assert [o["state"] for o in sink] == ["delivered", "delivered"]
    assert kor.fed.settle_many(sink, now_us=0) == []
    assert [_sent(net, i) for i in ("r1", "r2")] == [1, 1]


def test_a_receipt_of_one_message_still_settles_and_names_its_log_entry(net: Net) -> None:
    (msg_id,) = released_to_jpn(net, ["one"])
    (result,) = net.nodes["KOR"].exchange.deliver_due(net.transport)
    assert result.state == "delivered"
    entry = net.nodes["KOR"].exchange.fed.outbox_entry(msg_id)
    assert entry is not None
    assert entry.receipt is not None
    signer, content = verify_origin(entry.receipt, net.nodes["KOR"].exchange.kernel.peers.peer, net.clock.now)
    assert json.loads(content)["kind"] == "receipt"  # as every receipt stored before batch receipts
    batched, named = receipt_entries(content, signer)
    assert batched is False
    (received,) = net.audit("JPN", "envelope.received")
    assert named[msg_id].log_entry is not None
    assert named[msg_id].status == "stored"
    assert received["msg_id"] == msg_id


def test_a_batch_receipt_settles_an_air_gapped_transfer(net: Net) -> None:
    for item_id in ("f1", "f2"):
        own_item(net, "KOR", item_id)
    out = Transfer(net.nodes["KOR"].exchange).export(net.officer("KOR"), "JPN")
    assert out.text is not None
    got = Transfer(net.nodes["JPN"].exchange).import_file(out.text)
    per_message = json.loads(got.receipts_text)
    entries = []
    for receipt in per_message["receipts"]:
        _, payload, _ = receipt.split(".")
        one = json.loads(_unb64(payload))
        entries.append({k: one[k] for k in ("msg_id", "item", "status", "digest", "log_entry")})
    # the same acknowledgements as one batch receipt signed by JPN, and one naming a message KOR
    # never exported (refused alone)
    named = [*entries, {**entries[0], "msg_id": "never-sent"}]
    data = {"v": 1, "kind": "batch-receipt", "batch": "b", "receiver": "JPN", "sender": "KOR",
            "at": net.clock.now.isoformat(), "entries": named}  # fmt: skip
    content = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    batch = sign_origin(net.nodes["JPN"].exchange.ring, content, net.clock.now)
    receipts = json.dumps({**per_message, "receipts": [batch]})
    applied = Transfer(net.nodes["KOR"].exchange).import_receipts(receipts)
    assert sorted(applied.delivered) == sorted(e.msg_id for e in out.entries)
    assert [r.subject for r in applied.refused] == ["never-sent"]
    assert {_state(net, e.msg_id) for e in out.entries} == {("delivered", True)}
    # the per-message receipts afterwards: already applied, nothing twice
    again = Transfer(net.nodes["KOR"].exchange).import_receipts(got.receipts_text)
    assert (again.delivered, sorted(again.already)) == ((), sorted(e.msg_id for e in out.entries))
    assert [_sent(net, i) for i in ("f1", "f2")] == [1, 1]
