"""Attack: an item id taken first (issue 22 §4). An item is (originator, id) and, as received, the
originator's signed content: a collision is refused with the reason, never answered "already held"."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

from tests.duties.conftest import Net

from gsomia.core.recall import ChangeKind, LabelChange
from gsomia.crypto.envelope import seal, sign_origin
from gsomia.duties._messages import change_content
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
    # nor does the squatter hold KOR's later changes: KOR's recall is addressed to no one, JPN's item
    # at USA is untouched, and a change of KOR's forced onto USA is refused for the item held there
    kor.duties.recall(net.officer("KOR"), "report-001", "withdrawn")
    assert net.deliver() == []
    assert kor.duties.label_status(net.officer("KOR"), "report-001")["changes"][0]["acks"] == []
    forged = change_content(
        LabelChange("report-001", "KOR", 3, ChangeKind.RECALL, None, "forced", net.clock.now), None, "USA"
    )
    peer = kor.exchange.peer("USA")
    assert peer is not None
    body = {"kind": "duty", "to": "USA", "duty": sign_origin(kor.ring, forged, net.clock.now)}
    envelope = seal(kor.ring, peer, body, msg_id="forced", at=net.clock.now, ttl=timedelta(hours=1))
    (answer,) = net.inbox("USA", [envelope])
    assert (answer["status"], answer["reason"]) == (
        "refused",
        "item report-001 here was not originated by KOR",
    )
    _, payload = usa.items.read(net.officer("USA"), "report-001")
    assert payload == b'{"track": 1}'


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
    (answer,) = net.inbox("USA", [_item_envelope(net, origin, "other-item")])
    assert answer["status"] == "refused"
    assert "held here as a different item of KOR" in answer["reason"]
    _, payload = usa.items.read(net.officer("USA"), "same-id")
    assert payload == b'{"track": 1}'


def _signed_item(net: Net, item_id: str, payload: bytes, created_hours_ago: int = 1) -> str:
    kor = net.nodes["KOR"]
    template = f"template-{uuid.uuid4().hex}"
    net.own_item("KOR", template)
    row = kor.store.get_item(template)
    assert row is not None
    label = kor.kernel.items.item(row).label
    label = replace(label, created=net.clock.now - timedelta(hours=created_hours_ago))
    return sign_origin(kor.ring, item_content(item_id, label, "json", payload), net.clock.now)


def _item_envelope(net: Net, origin: str, msg_id: str) -> str:
    kor = net.nodes["KOR"]
    body = {
        "kind": "item",
        "origin": origin,
        "purpose": "threat-assessment",
        "route": {"sender": "KOR", "via": [], "recipient": "USA"},
        "consents": [],
    }
    peer = kor.exchange.peer("USA")
    assert peer is not None
    return seal(kor.ring, peer, body, msg_id=msg_id, at=net.clock.now, ttl=timedelta(hours=1))


def test_two_items_under_one_id_in_one_batch_are_not_both_answered_delivered(net: Net) -> None:
    """The second of two different items under one id in the same batch is refused, not "already held"
    (the check compares with the item the batch is storing, not only with the store)."""
    usa = net.nodes["USA"]
    first = _item_envelope(net, _signed_item(net, "twin", b'{"track": 1}'), "twin-1")
    second = _item_envelope(net, _signed_item(net, "twin", b'{"track": 2}'), "twin-2")
    same = _item_envelope(net, _signed_item(net, "twin", b'{"track": 1}'), "twin-3")
    answers = net.inbox("USA", [first, second, same])
    assert [a["status"] for a in answers] == ["stored", "refused", "already-held"]
    assert "held here as a different item of KOR" in answers[1]["reason"]
    _, payload = usa.items.read(net.officer("USA"), "twin")
    assert payload == b'{"track": 1}'


def test_another_item_under_the_id_of_a_destroyed_one_is_refused(net: Net) -> None:
    """Once USA destroyed KOR's item its payload is gone; another item of KOR under that id (signed as
    created at another instant) is still refused, never "already held"."""
    usa = net.nodes["USA"]
    (answer,) = net.inbox("USA", [_item_envelope(net, _signed_item(net, "gone", b'{"track": 1}'), "g-1")])
    assert answer["status"] == "stored"
    net.person("USA", "witness", "SECRET", ["security_officer"])
    usa.duties.destroy(net.officer("USA"), "gone", method="shredding", witness="witness", reason="done")
    again = _item_envelope(net, _signed_item(net, "gone", b'{"track": 1}'), "g-2")
    other = _item_envelope(net, _signed_item(net, "gone", b'{"track": 9}', created_hours_ago=2), "g-3")
    answers = net.inbox("USA", [again, other])
    assert [a["status"] for a in answers] == ["already-held", "refused"]
    assert "held here as a different item of KOR" in answers[1]["reason"]
