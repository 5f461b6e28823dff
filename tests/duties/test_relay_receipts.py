"""The last hop, told back to the originator (issue 14 §3): KOR releases an item to JPN through the
USA hub; JPN's signed receipt comes back to KOR through the hub, and KOR's inventory names JPN.
A hostile hub cannot make KOR believe its item reached a party it did not: a receipt it signs
itself, one for another item, one from a party KOR never released to through it, and one sent by
a party that is not the hub are each refused; the same receipt again is counted once."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from typing import Any

from tests.duties.conftest import BEFORE_GSOMIA, Net

from gsomia.crypto.envelope import seal, sign_origin
from gsomia.exchange._messages import receipt_content

HOUR = timedelta(hours=1)


def _through_the_hub(net: Net, item_id: str) -> None:
    net.clock.now = BEFORE_GSOMIA  # only TISA: KOR reaches JPN through the USA
    net.own_item("KOR", item_id)
    net.nodes["KOR"].exchange.release(net.officer("KOR"), item_id, "JPN", via="USA", authorise_relay=True)
    net.deliver()


def _reached(net: Net, item_id: str) -> list[tuple[str | None, str]]:
    kor = net.nodes["KOR"]
    return [
        (r.party, r.detail) for r in kor.items.inventory(net.officer("KOR"), item_id) if r.kind == "reached"
    ]


def _forward(net: Net, sender: str, item_id: str, receipt: str) -> dict[str, Any]:
    """What KOR's inbox answers ``sender`` passing on ``receipt`` as a relay's receipt."""
    node = net.nodes[sender]
    peer = node.exchange.peer("KOR")
    assert peer is not None
    body = {"kind": "relay-receipt", "item": item_id, "receipt": receipt}
    envelope = seal(node.ring, peer, body, msg_id=uuid.uuid4().hex, at=net.clock.now, ttl=HOUR)
    (answer,) = net.inbox("KOR", [envelope])
    return answer


def _receipt(net: Net, signer: str, item_id: str, sender: str = "USA") -> str:
    content = receipt_content(
        msg_id=uuid.uuid4().hex,
        item_id=item_id,
        receiver=signer,
        sender=sender,
        status="stored",
        digest=None,
        at=net.clock.now,
        log_entry=None,
    )
    return sign_origin(net.nodes[signer].ring, content, net.clock.now)


def test_the_final_recipients_receipt_reaches_the_originator_through_the_hub(net: Net) -> None:
    _through_the_hub(net, "h1")
    ((party, detail),) = _reached(net, "h1")
    assert party == "JPN"
    assert '"via":"USA"' in detail
    assert [r["outcome"] for r in net.audit("KOR", "envelope.reached")] == ["allowed"]
    usa_out = [e for e in net.nodes["USA"].exchange.fed.outbox() if e.kind == "relay-receipt"]
    assert [(e.recipient, e.state) for e in usa_out] == [("KOR", "delivered")]


def test_a_direct_release_sends_no_relay_receipt(net: Net) -> None:
    net.own_item("KOR", "d1")
    net.nodes["KOR"].exchange.release(net.officer("KOR"), "d1", "JPN")
    net.deliver()
    assert _reached(net, "d1") == []
    assert [e for e in net.nodes["JPN"].exchange.fed.outbox() if e.kind == "relay-receipt"] == []


def test_a_hostile_hub_cannot_claim_a_hop_the_item_did_not_take(net: Net) -> None:
    _through_the_hub(net, "h2")
    _through_the_hub(net, "h3")
    refused = [
        _forward(net, "USA", "h2", _receipt(net, "USA", "h2")),  # the hub signs "JPN's" receipt itself
        _forward(net, "USA", "h2", _receipt(net, "JPN", "h3")),  # JPN's receipt for another item
        _forward(net, "USA", "h2", _receipt(net, "JPN", "h2", sender="KOR")),  # not from the hub
        _forward(net, "JPN", "h2", _receipt(net, "JPN", "h2", sender="JPN")),  # sent by a non-hub
        _forward(net, "USA", "nope", _receipt(net, "JPN", "nope")),  # an item KOR does not hold
        _forward(net, "USA", "h2", "not-a-jws"),
    ]
    assert [a["status"] for a in refused] == ["refused"] * len(refused)
    assert [p for p, _ in _reached(net, "h2")] == ["JPN"]  # only the genuine one, from the relay

    # the genuine receipt passed on again, in fresh envelopes: counted once
    genuine = _receipt(net, "JPN", "h2")
    assert _forward(net, "USA", "h2", genuine)["status"] == "recorded"
    assert _forward(net, "USA", "h2", genuine)["status"] == "recorded"
    assert len(_reached(net, "h2")) == 2  # the relay's own receipt and this one, each once


def _altered(jws: str, segment: int, change: Any) -> str:
    """``jws`` (compact) with one segment's bytes changed by ``change``, the others as signed."""
    parts = jws.split(".")
    raw = base64.urlsafe_b64decode(parts[segment] + "=" * (-len(parts[segment]) % 4))
    parts[segment] = base64.urlsafe_b64encode(change(raw)).rstrip(b"=").decode()
    return ".".join(parts)


def test_relay_receipts_in_one_push_sharing_a_batch_receipt_are_each_checked(net: Net) -> None:
    """A hub passes on the recipient's one batch receipt with every item of that batch, and KOR reads
    that receipt once a push (issue 18): what it read stands for that exact text only. In one push,
    beside the genuine receipt, its copy with the signature changed, its copy with its content changed
    under the same signature, and the genuine receipt passed on for an item it does not name (one KOR
    did release to JPN through the USA, in another batch) are each refused; each genuine one is recorded."""
    net.clock.now = BEFORE_GSOMIA
    for item_id in ("b1", "b2", "b3", "b4"):
        net.own_item("KOR", item_id)
    kor = net.nodes["KOR"].exchange
    kor.release_many(net.officer("KOR"), ["b1", "b2", "b3"], "JPN", via="USA", authorise_relay=True)
    net.deliver()
    kor.release_many(net.officer("KOR"), ["b4"], "JPN", via="USA", authorise_relay=True)
    net.deliver()
    relayed = {e.item_id: e.receipt for e in net.nodes["USA"].exchange.fed.outbox() if e.kind == "item"}
    batch = relayed["b1"]
    assert batch is not None
    assert relayed["b2"] == batch == relayed["b3"] != relayed["b4"]
    assert sorted(p for i in ("b1", "b2", "b3", "b4") for p, _ in _reached(net, i)) == ["JPN"] * 4

    def relay(item_id: str, receipt: str) -> str:
        usa = net.nodes["USA"]
        peer = usa.exchange.peer("KOR")
        assert peer is not None
        body = {"kind": "relay-receipt", "item": item_id, "receipt": receipt}
        return seal(usa.ring, peer, body, msg_id=uuid.uuid4().hex, at=net.clock.now, ttl=HOUR)

    forged = _altered(batch, 2, lambda s: bytes([s[0] ^ 1]) + s[1:])  # another signature
    swapped = _altered(batch, 1, lambda c: c.replace(b'"b3"', b'"b4"'))  # b4 named under b1-b3's signature
    assert swapped != batch
    answers = net.inbox(
        "KOR",
        [
            relay("b1", forged),
            relay("b1", batch),
            relay("b4", swapped),
            relay("b4", batch),  # genuine, but names b1-b3 only
            relay("b2", batch),
            relay("b4", forged),
        ],
    )
    assert [a["status"] for a in answers] == [
        "refused",
        "recorded",
        "refused",
        "refused",
        "recorded",
        "refused",
    ]
    # the genuine receipt again: recorded, counted once (it names the same messages as the relay's own)
    assert {i: len(_reached(net, i)) for i in ("b1", "b2", "b3", "b4")} == {
        "b1": 1,
        "b2": 1,
        "b3": 1,
        "b4": 1,
    }


def test_the_same_receipt_twice_in_one_push_is_counted_once(net: Net) -> None:
    """A relay receipt's look-ups are read once a push (issue 18); one recorded earlier in the same
    push counts as kept: the same receipt passed on twice in one push is one ``reached`` entry."""
    _through_the_hub(net, "t1")
    genuine = _receipt(net, "JPN", "t1")
    usa = net.nodes["USA"]
    peer = usa.exchange.peer("KOR")
    assert peer is not None
    body = {"kind": "relay-receipt", "item": "t1", "receipt": genuine}
    twice = [seal(usa.ring, peer, body, msg_id=uuid.uuid4().hex, at=net.clock.now, ttl=HOUR) for _ in "ab"]
    assert [a["status"] for a in net.inbox("KOR", twice)] == ["recorded", "recorded"]
    assert len(_reached(net, "t1")) == 2  # the relay's own and this one, once
