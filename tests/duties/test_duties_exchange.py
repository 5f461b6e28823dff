"""The duties after release between real nodes over HTTP: through the USA hub, with bad input refused."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from tests.duties.conftest import BEFORE_GSOMIA, Net

from gsomia.core.recall import ChangeKind, LabelChange
from gsomia.crypto.envelope import seal, sign_origin, verify_origin
from gsomia.duties._messages import ack_content, change_content
from gsomia.errors import (
    AccessDenied,
    InvalidInputError,
    ItemGoneError,
    NotFoundError,
    ReleaseRefused,
    UnknownNameError,
)
from gsomia.node import Node

HOUR = timedelta(hours=1)


def _through_the_hub(net: Net, item_id: str) -> None:
    net.clock.now = BEFORE_GSOMIA
    net.own_item("KOR", item_id)
    net.nodes["KOR"].exchange.release(net.officer("KOR"), item_id, "JPN", via="USA", authorise_relay=True)
    # KOR -> USA, USA -> JPN, and JPN's receipt passed back to KOR by the hub
    assert [r.state for r in net.deliver()] == ["delivered", "delivered", "delivered"]


def test_reclassification_reaches_every_holder_and_copy_through_the_hub(net_any_store: Net) -> None:
    net = net_any_store
    kor, usa, jpn = (net.nodes[p] for p in ("KOR", "USA", "JPN"))
    _through_the_hub(net, "r1")
    copy = jpn.duties.derive(net.officer("JPN"), "copy", ["r1"], item_id="r1-copy")
    assert copy.label.alternative_for("JPN").classification == "極秘"  # type: ignore[union-attr]

    # bad input first: a holder may not reclassify, an unknown item cannot be recalled; nothing changes
    with pytest.raises(InvalidInputError, match="only the originator KOR"):
        jpn.duties.reclassify(net.officer("JPN"), "r1", "極秘", "holder tries")
    with pytest.raises(NotFoundError):
        kor.duties.recall(net.officer("KOR"), "nope", "unknown")
    assert jpn.store.get_item("r1").label_version == 1  # type: ignore[union-attr]
    assert net.audit("JPN", "item.reclassify")[-1]["outcome"] == "refused"
    assert net.audit("KOR", "item.recall")[-1]["outcome"] == "refused"

    change = kor.duties.reclassify(net.officer("KOR"), "r1", "군사III급비밀", "downgraded after review")
    assert change.version == 2
    status = kor.duties.label_status(net.officer("KOR"), "r1")
    assert status["changes"][0]["pending"] == ["JPN", "USA"]
    net.deliver()
    for node in (usa, jpn):
        item, payload = node.items.read(net.officer(node.party), "r1")  # re-sealed under the new label
        assert item.label.classification == "군사III급비밀"
        assert json.loads(payload) == {"track": 1}
        assert node.store.get_item("r1").label_version == 2  # type: ignore[union-attr]
    item, _ = jpn.items.read(net.officer("JPN"), "r1")
    assert item.label.alternative_for("JPN").classification == "秘"  # type: ignore[union-attr]
    copied, _ = jpn.items.read(net.officer("JPN"), "r1-copy")
    assert copied.label.classification == "군사III급비밀"
    assert copied.label.alternative_for("JPN").classification == "秘"  # type: ignore[union-attr]
    status = kor.duties.label_status(net.officer("KOR"), "r1")["changes"][0]
    assert status["pending"] == []
    assert status["applied"] == ["JPN", "USA"]
    assert {a["party"]: a["detail"]["copies"] for a in status["acks"]} == {"JPN": 1, "USA": 0}
    # the holders pass on the originator's newly signed item, so a relay verifies it
    _, signed = verify_origin(jpn.exchange.origin_jws("r1"), jpn.exchange._identities, net.clock.now)
    assert json.loads(signed)["label"]["classification"] == "군사III급비밀"
    # the same change again (a retry) changes nothing
    assert net.deliver() == []


def test_recall_withdraws_the_item_and_its_copies_at_the_holder(net: Net) -> None:
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    net.own_item("KOR", "c1")
    kor.exchange.release(net.officer("KOR"), "c1", "JPN")
    net.deliver()
    jpn.duties.derive(net.officer("JPN"), "translation", ["c1"], payload=b'{"track": "one"}', item_id="c1-ja")
    kor.duties.recall(net.officer("KOR"), "c1", "withdrawn: source unreliable")
    net.deliver()
    for item_id in ("c1", "c1-ja"):
        with pytest.raises(ItemGoneError, match="recalled"):
            jpn.items.read(net.officer("JPN"), item_id)
        row = jpn.store.get_item(item_id)
        assert row is not None
        assert row.state == "recalled"
        assert row.payload == b""
    status = kor.duties.label_status(net.officer("KOR"), "c1")["changes"][0]
    assert (status["kind"], status["applied"], status["pending"]) == ("recall", ["JPN"], [])
    kor.items.read(net.officer("KOR"), "c1")  # the originator keeps its own item
    jpn_side = next(
        p for p in kor.duties.termination_report(net.officer("KOR"))["partners"] if p["party"] == "JPN"
    )
    assert [(i["item"], i["status"]) for i in jpn_side["held_there"]] == [("c1", "recalled")]
    # label versions only go up at the originator too: the next change is version 3
    assert kor.duties.reclassify(net.officer("KOR"), "c1", "군사III급비밀", "after the recall").version == 3
    assert [r.kind for r in jpn.store.inventory("c1")] == ["received", "translation"]


def test_destruction_is_signed_recorded_and_sent_to_the_originator(net: Net) -> None:
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    net.own_item("KOR", "d1")
    kor.exchange.release(net.officer("KOR"), "d1", "JPN")
    net.deliver()
    uncleared = net.person("JPN", "clerk", "秘", ["analyst"])
    net.person("JPN", "witness", "極秘", ["security_officer"])
    with pytest.raises(AccessDenied, match="clearance"):
        jpn.duties.destroy(uncleared, "d1", method="crypto-erase", witness="witness", reason="done")
    with pytest.raises(InvalidInputError, match="witness clerk is not cleared"):
        jpn.duties.destroy(net.officer("JPN"), "d1", method="crypto-erase", witness="clerk", reason="done")
    with pytest.raises(InvalidInputError, match="method must be one of"):
        jpn.duties.destroy(net.officer("JPN"), "d1", method="bin", witness="witness", reason="done")
    jpn.items.read(net.officer("JPN"), "d1")  # still held after the refusals
    assert [r["outcome"] for r in net.audit("JPN", "item.destroy")] == ["refused"] * 3

    record = jpn.duties.destroy(
        net.officer("JPN"), "d1", method="crypto-erase", witness="witness", reason="purpose ended"
    )
    row = jpn.store.get_item("d1")
    assert row is not None
    assert row.state == "destroyed"
    assert row.payload == b""
    assert row.origin_jws is None
    with pytest.raises(ItemGoneError):
        jpn.items.read(net.officer("JPN"), "d1")
    assert [r.kind for r in jpn.items.inventory(net.officer("JPN"), "d1")] == ["received", "destroyed"]
    assert net.audit("JPN", "item.destroy")[-1]["record"] == record["record"]
    # the record verifies with JPN's node key
    party, content = verify_origin(record["record"], jpn.exchange._identities, net.clock.now, own=jpn.ring)
    assert party == "JPN"
    assert json.loads(content)["witness"] == "witness"
    with pytest.raises(ItemGoneError):
        jpn.duties.destroy(net.officer("JPN"), "d1", method="shredding", witness="witness", reason="again")

    assert kor.duties.destructions(net.officer("KOR")) == []
    sent = jpn.duties.send_destruction_record(net.officer("JPN"), "d1")
    assert sent["sent"] is not None
    net.deliver()
    received = kor.duties.destructions(net.officer("KOR"), "d1")
    assert [(r["holder"], r["by"], r["method"]) for r in received] == [("JPN", "officer", "crypto-erase")]
    assert received[0]["record"] == record["record"]


def test_the_originator_asks_a_holder_through_the_hub_for_its_destruction_record(net: Net) -> None:
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    _through_the_hub(net, "d2")
    net.person("JPN", "witness", "極秘", ["security_officer"])
    with pytest.raises(UnknownNameError):
        kor.duties.request_destruction_record(net.officer("KOR"), "d2", "GBR")
    with pytest.raises(InvalidInputError, match="never sent to KOR"):
        kor.duties.request_destruction_record(net.officer("KOR"), "d2", "KOR")
    with pytest.raises(InvalidInputError, match="only the originator KOR"):
        jpn.duties.request_destruction_record(net.officer("JPN"), "d2", "USA")
    kor.duties.request_destruction_record(net.officer("KOR"), "d2", "JPN")  # not destroyed yet
    net.deliver()
    assert net.audit("JPN", "duty.destruction-request")[-1]["result"] == "not-destroyed"
    jpn.duties.destroy(net.officer("JPN"), "d2", method="returned", witness="witness", reason="returned")
    assert kor.duties.destructions(net.officer("KOR"), "d2") == []
    kor.duties.request_destruction_record(net.officer("KOR"), "d2", "JPN")
    net.deliver()  # KOR -> USA -> JPN, then the record JPN -> USA -> KOR
    (received,) = kor.duties.destructions(net.officer("KOR"), "d2")
    assert (received["holder"], received["method"]) == ("JPN", "returned")


def test_a_loss_report_reaches_the_originator_through_the_hub_and_both_see_the_investigation(
    net_any_store: Net,
) -> None:
    net = net_any_store
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    _through_the_hub(net, "l1")
    report = jpn.duties.report_incident(
        net.officer("JPN"), "l1", "possible-compromise", "a laptop holding it was left in a taxi"
    )
    assert (report["notified"], report["unsent"]) == ("KOR", None)
    net.deliver()
    (seen,) = kor.duties.incidents(net.officer("KOR"))
    assert (seen["id"], seen["holder"], seen["state"]) == (report["id"], "JPN", "opened")
    with pytest.raises(InvalidInputError, match="next step is findings"):
        jpn.duties.advance_incident(net.officer("JPN"), report["id"], "closed", "nothing")
    with pytest.raises(InvalidInputError, match="investigated by its holder JPN"):
        kor.duties.advance_incident(net.officer("KOR"), report["id"], "findings", "originator tries")
    for state, text in (
        ("findings", "the disk was encrypted; the laptop was returned"),
        ("measures", "travel rules tightened"),
        ("closed", "no compromise"),
    ):
        jpn.duties.advance_incident(net.officer("JPN"), report["id"], state, text)
    net.deliver()
    (seen,) = kor.duties.incidents(net.officer("KOR"))
    (mine,) = jpn.duties.incidents(net.officer("JPN"))
    assert seen["state"] == mine["state"] == "closed"
    assert [s["state"] for s in seen["steps"]] == ["opened", "findings", "measures", "closed"]
    assert [r["outcome"] for r in net.audit("USA", "duty.relayed.incident")] == ["allowed"] * 4


def test_a_duty_message_twice_changes_nothing_and_a_forged_change_is_refused(net: Net) -> None:
    kor, usa, jpn = (net.nodes[p] for p in ("KOR", "USA", "JPN"))
    net.own_item("KOR", "x1")
    kor.exchange.release(net.officer("KOR"), "x1", "JPN")
    net.deliver()
    kor.duties.reclassify(net.officer("KOR"), "x1", "군사III급비밀", "reviewed")
    (change,) = [e for e in kor.exchange.fed.outbox(state="pending") if e.kind == "duty"]
    (first,) = net.inbox("JPN", [change.envelope])
    (again,) = net.inbox("JPN", [change.envelope])
    assert (first["status"], again["status"]) == ("recorded", "duplicate")
    assert again["receipt"] == first["receipt"]
    assert jpn.store.get_item("x1").label_version == 2  # type: ignore[union-attr]

    # USA signs a "recall" of KOR's item: the signer does not speak for the originator
    forged = LabelChange("x1", "KOR", 3, ChangeKind.RECALL, None, "forged", net.clock.now)
    jws = sign_origin(usa.ring, change_content(forged, None, "JPN"), net.clock.now)
    peer = usa.exchange.peer("JPN")
    assert peer is not None
    envelope = seal(
        usa.ring,
        peer,
        {"kind": "duty", "to": "JPN", "duty": jws},
        msg_id="forged",
        at=net.clock.now,
        ttl=HOUR,
    )
    (answer,) = net.inbox("JPN", [envelope])
    assert answer["status"] == "refused"
    assert "signed by USA speaks for KOR" in answer["reason"]
    row = jpn.store.get_item("x1")
    assert row is not None
    assert (row.state, row.label_version) == ("held", 2)
    assert net.audit("JPN", "envelope.refused")[-1]["outcome"] == "refused"

    # USA acknowledges on JPN's behalf: refused at KOR, JPN's acknowledgement stays pending
    ack = sign_origin(usa.ring, ack_content("x1", 2, "JPN", "applied", 0, net.clock.now), net.clock.now)
    to_kor = usa.exchange.peer("KOR")
    assert to_kor is not None
    envelope = seal(
        usa.ring,
        to_kor,
        {"kind": "duty", "to": "KOR", "duty": ack},
        msg_id="forged-ack",
        at=net.clock.now,
        ttl=HOUR,
    )
    (answer,) = net.inbox("KOR", [envelope])
    assert "signed by USA speaks for JPN" in answer["reason"]
    assert kor.duties.label_status(net.officer("KOR"), "x1")["changes"][0]["pending"] == ["JPN"]


def test_duties_go_on_after_the_agreement_ends(net: Net) -> None:
    """Art. 21.4: new transfers stop; a destruction record still reaches the originator."""
    kor = net.nodes["KOR"]
    net.own_item("KOR", "t1")
    kor.exchange.release(net.officer("KOR"), "t1", "JPN")
    net.deliver()
    gsomia = kor.catalogue.agreement("kor-jpn-gsomia-2016").what_if(without=["2019-11-22-notice-suspended"])
    ended = {
        p: Node(net.nodes[p].config, catalogue=kor.catalogue.replacing(gsomia), clock=net.clock)
        for p in ("KOR", "JPN")
    }
    try:
        net.own_item("KOR", "t2")
        with pytest.raises(ReleaseRefused, match="agreement_in_force"):
            ended["KOR"].exchange.release(net.officer("KOR"), "t2", "JPN")
        net.person("JPN", "witness", "極秘", ["security_officer"])
        ended["JPN"].duties.destroy(
            net.officer("JPN"),
            "t1",
            method="shredding",
            witness="witness",
            reason="agreement ended",
            notify=True,
        )
        assert [d.state for d in ended["JPN"].exchange.deliver_due(net.transport)] == ["delivered"]
        assert [r["holder"] for r in ended["KOR"].duties.destructions(net.officer("KOR"), "t1")] == ["JPN"]
        report = ended["KOR"].duties.termination_report(net.officer("KOR"))
        jpn_side = next(p for p in report["partners"] if p["party"] == "JPN")
        assert [(i["item"], i["status"]) for i in jpn_side["held_there"]] == [("t1", "destroyed")]
    finally:
        for node in ended.values():
            node.close()


def test_a_change_overtakes_a_release_still_queued(net: Net) -> None:
    """A release queued before a reclassification leaves with the new label, and one queued before a
    recall does not leave at all: no holder ends up with a label the originator has replaced."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    net.own_item("KOR", "q1")
    net.own_item("KOR", "q2")
    kor.exchange.release(net.officer("KOR"), "q1", "JPN")
    queued = kor.exchange.release(net.officer("KOR"), "q2", "JPN")
    kor.duties.reclassify(net.officer("KOR"), "q1", "군사III급비밀", "reviewed before sending")
    kor.duties.recall(net.officer("KOR"), "q2", "withdrawn before sending")
    cancelled = kor.exchange.fed.outbox_entry(queued.msg_id)
    assert cancelled is not None
    assert (cancelled.state, cancelled.last_error) == (
        "undeliverable",
        "recalled by the originator: withdrawn before sending",
    )
    kor.items.read(net.officer("KOR"), "q2")  # the originator keeps its own item
    net.deliver()
    item, payload = jpn.items.read(
        net.officer("JPN"), "q1"
    )  # it arrived, and the change with it, in one batch
    assert item.label.classification == "군사III급비밀"
    assert item.label.alternative_for("JPN").classification == "秘"  # type: ignore[union-attr]
    assert json.loads(payload) == {"track": 1}
    assert jpn.store.get_item("q1").label_version == 2  # type: ignore[union-attr]
    assert jpn.store.get_item("q2") is None
    status = kor.duties.label_status(net.officer("KOR"), "q1")["changes"][0]
    assert (status["applied"], status["pending"]) == (["JPN"], [])
