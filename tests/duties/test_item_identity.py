"""Attack: an item id taken first (issue 22 §4). An item is (originator, id) and, as received, the
originator's signed content: another originator's item under a held id is another item (stored under
its own reference here); another item of the same originator under a held id is refused with the
reason, never answered "already held"."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from tests.duties.conftest import Net

from gsomia.core.recall import ChangeKind, LabelChange
from gsomia.crypto.envelope import seal, sign_origin
from gsomia.duties._messages import change_content
from gsomia.errors import ConflictError
from gsomia.kernel import item_content


def _own(net: Net, party: str, item_id: str, payload: bytes) -> None:
    scheme = {"KOR": "군사II급비밀", "JPN": "極秘", "USA": "SECRET"}
    label = {
        "originator": party,
        "classification": scheme[party],
        "releasable_to": [p for p in ("KOR", "JPN", "USA") if p != party],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (net.clock.now - timedelta(hours=1)).isoformat(),
    }
    net.nodes[party].ingest(net.officer(party), label=label, payload=payload, item_id=item_id)


def test_an_item_under_an_id_another_originator_took_first_still_reaches_the_holder(net: Net) -> None:
    """The squatter: JPN learns KOR's id and sends USA its own item under it first. An item is
    (originator, id): KOR's item is still delivered and stored at USA (under ``KOR:report-001`` there),
    reads as KOR's, and every duty about each of the two items goes to that item only: KOR's
    reclassification, JPN's recall, USA's feedback, consent request, incident and destruction record."""
    kor, usa, jpn = (net.nodes[p] for p in ("KOR", "USA", "JPN"))
    officer = net.officer("USA")
    _own(net, "JPN", "report-001", b'{"squat": true}')
    jpn.exchange.release(net.officer("JPN"), "report-001", "USA")
    net.deliver()
    _own(net, "KOR", "report-001", b'{"track": 1}')
    entry = kor.exchange.release(net.officer("KOR"), "report-001", "USA")
    (delivery,) = net.deliver()
    assert delivery.state == "delivered"
    settled = kor.exchange.fed.outbox_entry(entry.msg_id)
    assert settled is not None
    assert settled.state == "delivered"
    assert [p for _, p in kor.duties.db.sent_to("report-001")] == ["USA"]
    kors, jpns = usa.store.item_of("KOR", "report-001"), usa.store.item_of("JPN", "report-001")
    assert kors is not None
    assert jpns is not None
    assert (kors.id, jpns.id) == ("KOR:report-001", "report-001")
    # read by whose it is: the bare id names both, so the node asks which
    with pytest.raises(ConflictError, match=r"names 2 items here \(of JPN and KOR\)"):
        usa.resolve_item(officer, "report-001")
    for ref, originator in (("KOR:report-001", None), ("report-001", "KOR")):
        item, payload = usa.read(officer, usa.resolve_item(officer, ref, originator))
        assert (item.label.originator, item.name, payload) == ("KOR", "report-001", b'{"track": 1}')
    item, payload = usa.read(officer, usa.resolve_item(officer, "JPN:report-001"))
    assert (item.label.originator, payload) == ("JPN", b'{"squat": true}')

    # KOR reclassifies its item: USA's copy of KOR's item changes, JPN's item there does not
    kor.duties.reclassify(net.officer("KOR"), "report-001", "군사III급비밀", "downgraded")
    net.deliver()
    assert usa.store.item_of("KOR", "report-001").label_version == 2  # type: ignore[union-attr]
    assert usa.store.item_of("JPN", "report-001").label_version == 1  # type: ignore[union-attr]
    change = kor.duties.label_status(net.officer("KOR"), "report-001")["changes"][0]
    assert (change["applied"], change["pending"]) == (["USA"], [])

    # USA's feedback, consent request and incident about KOR's item go to KOR, naming KOR's id
    usa.duties.send_feedback(officer, "KOR:report-001", "used-in-assessment", "fused")
    request_id = usa.exchange.request_consent(officer, "KOR:report-001", "JPN", "threat-assessment", "cell")
    usa.duties.report_incident(officer, "KOR:report-001", "possible-compromise", "laptop lost")
    net.deliver()
    assert [f["holder"] for f in kor.duties.feedback(net.officer("KOR"), "report-001")] == ["USA"]
    assert jpn.duties.feedback(net.officer("JPN"), "report-001") == []
    assert [f["item"] for f in usa.duties.feedback(officer, "KOR:report-001")] == ["KOR:report-001"]
    assert usa.duties.feedback(officer, "report-001") == []  # JPN's (the reference report-001)
    asked = kor.exchange.fed.consent_request(request_id)
    assert asked is not None
    assert (asked.item_id, asked.holder) == ("report-001", "USA")
    kor.exchange.answer_consent(net.officer("KOR"), request_id, grant=True, reason="ok")
    net.deliver()
    answered = usa.exchange.fed.consent_request(request_id)
    assert answered is not None
    assert answered.state == "granted"
    assert [c.item_id for c in usa.exchange.consent_rows("KOR", "report-001") if c.item_id] == ["report-001"]
    assert [i["item"] for i in kor.duties.incidents(net.officer("KOR"))] == ["report-001"]
    assert jpn.duties.incidents(net.officer("JPN")) == []

    # JPN recalls its own item: JPN's item at USA is withdrawn, KOR's still reads
    jpn.duties.recall(net.officer("JPN"), "report-001", "withdrawn")
    net.deliver()
    assert usa.store.item_of("JPN", "report-001").state == "recalled"  # type: ignore[union-attr]
    assert usa.read(officer, "KOR:report-001")[1] == b'{"track": 1}'
    assert jpn.duties.label_status(net.officer("JPN"), "report-001")["changes"][0]["applied"] == ["USA"]

    # USA destroys KOR's item and tells KOR: the record reaches KOR for its item, not JPN
    net.person("USA", "witness", "SECRET", ["security_officer"])
    usa.duties.destroy(
        officer, "KOR:report-001", method="shredding", witness="witness", reason="done", notify=True
    )
    net.deliver()
    assert [(d["item"], d["holder"]) for d in kor.duties.destructions(net.officer("KOR"))] == [
        ("report-001", "USA")
    ]
    assert jpn.duties.destructions(net.officer("JPN")) == []
    # and no change of KOR's reaches JPN's item: KOR's signed change names KOR's item (the destroyed
    # one here); JPN's item under the same id is untouched
    before = usa.store.item_of("JPN", "report-001")
    forged = change_content(
        LabelChange("report-001", "KOR", 3, ChangeKind.RECALL, None, "forced", net.clock.now), None, "USA"
    )
    peer = kor.exchange.peer("USA")
    assert peer is not None
    body = {"kind": "duty", "to": "USA", "duty": sign_origin(kor.ring, forged, net.clock.now)}
    envelope = seal(kor.ring, peer, body, msg_id="forced", at=net.clock.now, ttl=timedelta(hours=1))
    (answer,) = net.inbox("USA", [envelope])
    assert answer["status"] == "recorded"
    assert usa.store.item_of("JPN", "report-001") == before
    assert usa.store.item_of("KOR", "report-001").label_version == 3  # type: ignore[union-attr]


def test_an_item_signed_by_one_party_and_labelled_as_anothers_is_refused(net: Net) -> None:
    """A forged originator: JPN signs an item whose label names KOR as its originator (to take KOR's
    reference at USA, or pass as KOR's): refused as a bad origin signature, nothing stored."""
    jpn = net.nodes["JPN"]
    row = net.nodes["KOR"].store.get_item(_template(net))
    assert row is not None
    label = net.nodes["KOR"].kernel.items.item(row).label
    origin = sign_origin(jpn.ring, item_content("report-002", label, "json", b"{}"), net.clock.now)
    body = {
        "kind": "item",
        "origin": origin,
        "purpose": "threat-assessment",
        "route": {"sender": "JPN", "via": [], "recipient": "USA"},
        "consents": [],
    }
    peer = jpn.exchange.peer("USA")
    assert peer is not None
    envelope = seal(jpn.ring, peer, body, msg_id="forged-origin", at=net.clock.now, ttl=timedelta(hours=1))
    (answer,) = net.inbox("USA", [envelope])
    assert (answer["status"], answer["reason"]) == ("refused", "envelope refused")
    assert net.nodes["USA"].store.items_named("report-002") == []


def test_the_same_item_replayed_under_a_squatted_id_is_already_held_not_stored_twice(net: Net) -> None:
    """KOR's item sent again (a replay in a fresh envelope, or a resend) after it was stored beside
    JPN's item of the same id: "already held" for KOR's item, nothing stored again."""
    usa = net.nodes["USA"]
    _own(net, "JPN", "r9", b'{"squat": true}')
    net.nodes["JPN"].exchange.release(net.officer("JPN"), "r9", "USA")
    net.deliver()
    origin = _signed_item(net, "r9", b'{"track": 1}')
    first, again = (_item_envelope(net, origin, m) for m in ("r9-1", "r9-2"))
    answers = net.inbox("USA", [first, again])
    assert [a["status"] for a in answers] == ["stored", "already-held"]
    assert [(r.originator, r.id) for r in usa.store.items_named("r9")] == [("JPN", "r9"), ("KOR", "KOR:r9")]
    (replayed,) = net.inbox("USA", [first])
    assert replayed["status"] == "duplicate"


def _template(net: Net) -> str:
    template = f"template-{uuid.uuid4().hex}"
    net.own_item("KOR", template)
    return template


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
    _, payload = usa.read(net.officer("USA"), "same-id")
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
    _, payload = usa.read(net.officer("USA"), "twin")
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


def test_a_squatters_change_kept_for_an_id_neither_touches_nor_blocks_the_originators_item(net: Net) -> None:
    """JPN sends the USA a recall, version 2, for a JPN item ``r5`` the USA never got (kept there: an
    item may be on its way). KOR's own ``r5`` then arrives: it is stored and held, not withdrawn by
    JPN's change; and KOR's own recall, version 2 too, is applied to it, not refused as seen."""
    kor, usa, jpn = (net.nodes[p] for p in ("KOR", "USA", "JPN"))
    change = change_content(
        LabelChange("r5", "JPN", 2, ChangeKind.RECALL, None, "squat", net.clock.now), None, "USA"
    )
    peer = jpn.exchange.peer("USA")
    assert peer is not None
    body = {"kind": "duty", "to": "USA", "duty": sign_origin(jpn.ring, change, net.clock.now)}
    envelope = seal(jpn.ring, peer, body, msg_id="squat-recall", at=net.clock.now, ttl=timedelta(hours=1))
    (answer,) = net.inbox("USA", [envelope])
    assert answer["status"] == "recorded"
    _own(net, "KOR", "r5", b'{"track": 5}')
    kor.exchange.release(net.officer("KOR"), "r5", "USA")
    net.deliver()
    held = usa.store.item_of("KOR", "r5")
    assert held is not None
    assert (held.id, held.state, held.label_version) == ("r5", "held", 1)
    kor.duties.recall(net.officer("KOR"), "r5", "withdrawn by KOR")
    net.deliver()
    assert usa.store.item_of("KOR", "r5").state == "recalled"  # type: ignore[union-attr]
    status = kor.duties.label_status(net.officer("KOR"), "r5")["changes"][0]
    assert (status["applied"], status["pending"], status["not_reachable"]) == (["USA"], [], [])
