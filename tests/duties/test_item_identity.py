"""Attack: an item id taken first (issue 22 §4). An item is (originator, id) and, as received, the
originator's signed content: a collision is refused with the reason, never answered "already held"."""

from __future__ import annotations

from datetime import timedelta

from tests.duties.conftest import Net

from gsomia.crypto.envelope import seal, sign_origin
from gsomia.kernel import item_content


def test_another_originators_item_under_a_held_id_is_refused_not_marked_delivered(net: Net) -> None:
    """JPN learns KOR's id and sends USA its own item under it first: KOR's item is refused at USA with
    the reason (KOR's entry says so), never marked delivered while USA holds JPN's."""
    kor, usa, jpn = (net.nodes[p] for p in ("KOR", "USA", "JPN"))
    net.own_item("JPN", "report-001")
    jpn.exchange.release(net.officer("JPN"), "report-001", "USA")
    net.deliver()
    net.own_item("KOR", "report-001")
    entry = kor.exchange.release(net.officer("KOR"), "report-001", "USA")
    (delivery,) = net.deliver()
    assert delivery.state == "undeliverable"
    settled = kor.exchange.fed.outbox_entry(entry.msg_id)
    assert settled is not None
    assert settled.state == "undeliverable"
    assert "already taken here by an item of JPN" in str(settled.last_error)
    row = usa.store.get_item("report-001")
    assert row is not None
    assert row.originator == "JPN"
    assert "already taken" in net.audit("USA", "envelope.refused")[-1]["reason"]
    # and nothing of KOR's counts as sent: a recall reaches no one who never got the item
    assert kor.duties.db.sent_to("report-001") == []


def test_another_item_of_the_same_originator_under_a_held_id_is_refused(net: Net) -> None:
    """A second, different item signed by KOR under an id USA holds from KOR: refused, not "already held"."""
    kor, usa = net.nodes["KOR"], net.nodes["USA"]
    net.own_item("KOR", "same-id")
    kor.exchange.release(net.officer("KOR"), "same-id", "USA")
    net.deliver()
    row = kor.store.get_item("same-id")
    assert row is not None
    label = kor.kernel.items.item(row).label
    origin = sign_origin(kor.ring, item_content("same-id", label, "json", b'{"track": 2}'), net.clock.now)
    body = {
        "kind": "item",
        "origin": origin,
        "purpose": "threat-assessment",
        "route": {"sender": "KOR", "via": [], "recipient": "USA"},
        "consents": [],
    }
    peer = kor.exchange.peer("USA")
    assert peer is not None
    envelope = seal(kor.ring, peer, body, msg_id="other-item", at=net.clock.now, ttl=timedelta(hours=1))
    (answer,) = net.inbox("USA", [envelope])
    assert answer["status"] == "refused"
    assert "held here as a different item of KOR" in answer["reason"]
    _, payload = usa.read(net.officer("USA"), "same-id")
    assert payload == b'{"track": 1}'
