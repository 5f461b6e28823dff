"""The last hop, told back to the originator (issue 14 §3): KOR releases an item to JPN through the
USA hub; JPN's signed receipt comes back to KOR through the hub, and KOR's inventory names JPN.
A hostile hub cannot make KOR believe its item reached a party it did not: a receipt it signs
itself, one for another item, one from a party KOR never released to through it, and one sent by
a party that is not the hub are each refused; the same receipt again is counted once."""

from __future__ import annotations

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
