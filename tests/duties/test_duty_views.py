"""Attacks on the duty views and records (issue 22 §6): an uncleared officer reading them, an incident
rewritten by a later message, records about items the sender never received, a hub's relayed items
reported as its own."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from tests.duties.conftest import BEFORE_GSOMIA, Net

from gsomia.core.destruction import DestructionMethod, DestructionRecord
from gsomia.core.investigation import IncidentNature, Investigation, InvestigationState, open_investigation
from gsomia.crypto.envelope import seal, sign_origin
from gsomia.duties._messages import destruction_content, incident_content
from gsomia.errors import AccessDenied

HOUR = timedelta(hours=1)


def _post(net: Net, sender: str, to: str, content: bytes, msg_id: str) -> dict[str, object]:
    node = net.nodes[sender]
    jws = sign_origin(node.ring, content, net.clock.now)
    peer = node.exchange.peer(to)
    assert peer is not None
    body = {"kind": "duty", "to": to, "duty": jws}
    (answer,) = net.inbox(to, [seal(node.ring, peer, body, msg_id=msg_id, at=net.clock.now, ttl=HOUR)])
    return dict(answer)


def _reclassified_and_reported(net: Net, item_id: str) -> None:
    """KOR's item at JPN, reclassified by KOR for a sensitive reason; JPN reports an incident about it."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    net.own_item("KOR", item_id)
    kor.exchange.release(net.officer("KOR"), item_id, "JPN")
    net.deliver()
    kor.duties.reclassify(net.officer("KOR"), item_id, "군사I급비밀", "source HUMINT-7 confirmed")
    net.deliver()
    jpn.duties.report_incident(net.officer("JPN"), item_id, "possible-compromise", "copy left in a taxi")
    net.deliver()


def test_an_uncleared_security_officer_reads_no_duty_view_of_the_item(net: Net) -> None:
    kor = net.nodes["KOR"]
    _reclassified_and_reported(net, "u1")
    uncleared = net.person("KOR", "clerk", "군사III급비밀", ["security_officer"])
    with pytest.raises(AccessDenied):
        kor.duties.label_status(uncleared, "u1")
    assert net.audit("KOR", "item.label-status")[-1]["outcome"] == "refused"
    assert kor.duties.incidents(uncleared) == []
    assert kor.duties.destructions(uncleared) == []
    report = json.dumps(kor.duties.termination_report(uncleared))
    assert "u1" not in report
    # the cleared officer sees all of it
    assert kor.duties.label_status(net.officer("KOR"), "u1")["changes"][0]["reason"].startswith("source")
    assert [i["item"] for i in kor.duties.incidents(net.officer("KOR"))] == ["u1"]
    assert "u1" in json.dumps(kor.duties.termination_report(net.officer("KOR")))


def test_a_visitor_whose_visit_ended_reads_no_duty_view(net: Net) -> None:
    """A security officer on a visit to KOR reads the duty views of KOR's item during the visit, and
    nothing once it ended: label-status refused (audited), no incident, no termination-report line."""
    kor = net.nodes["KOR"]
    _reclassified_and_reported(net, "v1")
    visitor = net.person("KOR", "visitor", "군사I급비밀", ["security_officer"])
    kor.duties.authorise_visit(None, "visitor", highest="군사I급비밀", starts=net.clock.now - HOUR,
                               ends=net.clock.now + HOUR, purpose="liaison")  # fmt: skip
    assert kor.duties.label_status(visitor, "v1")["changes"][0]["reason"].startswith("source")
    assert [i["item"] for i in kor.duties.incidents(visitor)] == ["v1"]
    assert "v1" in json.dumps(kor.duties.termination_report(visitor))
    net.clock.now += 2 * HOUR  # the visit has ended
    with pytest.raises(AccessDenied):
        kor.duties.label_status(visitor, "v1")
    assert net.audit("KOR", "item.label-status")[-1]["outcome"] == "refused"
    assert kor.duties.incidents(visitor) == []
    assert "v1" not in json.dumps(kor.duties.termination_report(visitor))


def test_a_later_incident_message_adds_steps_and_cannot_rewrite_the_first(net: Net) -> None:
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    net.own_item("KOR", "i1")
    kor.exchange.release(net.officer("KOR"), "i1", "JPN")
    net.deliver()
    report = jpn.duties.report_incident(net.officer("JPN"), "i1", "loss", "a laptop was lost")
    net.deliver()
    # JPN (the holder) signs a "later" report that changes the nature and the first step
    first = open_investigation(
        report["id"], "i1", "KOR", "JPN", IncidentNature.POSSIBLE_COMPROMISE, at=net.clock.now, by="officer",
        text="nothing happened",
    )  # fmt: skip
    rewritten = first.advance(InvestigationState.FINDINGS, at=net.clock.now + HOUR, by="officer", text="fine")
    answer = _post(net, "JPN", "KOR", incident_content(rewritten), "rewrite")
    assert answer["status"] == "refused"
    assert "may only add steps" in str(answer["reason"])
    (seen,) = kor.duties.incidents(net.officer("KOR"))
    assert (seen["nature"], seen["steps"][0]["text"]) == ("loss", "a laptop was lost")
    # a genuine next step appends, and both signed reports are kept
    jpn.duties.advance_incident(net.officer("JPN"), report["id"], "findings", "the disk was encrypted")
    net.deliver()
    (seen,) = kor.duties.incidents(net.officer("KOR"))
    assert [s["state"] for s in seen["steps"]] == ["opened", "findings"]
    kept = kor.duties.db.incident(report["id"])
    assert kept is not None
    assert len(json.loads(kept.jws)) == 2


def test_records_about_an_item_the_sender_never_received_are_refused(net: Net) -> None:
    """USA never received KOR's item: its destruction record and incident about it are refused."""
    kor = net.nodes["KOR"]
    net.own_item("KOR", "n1")
    kor.exchange.release(net.officer("KOR"), "n1", "JPN")
    net.deliver()
    record = DestructionRecord(
        "n1", "USA", "KOR", "군사II급비밀", "officer", "witness", DestructionMethod.SHREDDING, "made up",
        net.clock.now,
    )  # fmt: skip
    answer = _post(net, "USA", "KOR", destruction_content(record), "fake-destruction")
    assert "never sent to USA" in str(answer["reason"])
    incident = open_investigation(
        "fake", "n1", "KOR", "USA", IncidentNature.COMPROMISE, at=net.clock.now, by="officer", text="leaked"
    )
    answer = _post(net, "USA", "KOR", incident_content(incident), "fake-incident")
    assert "never sent to USA" in str(answer["reason"])
    assert kor.duties.destructions(net.officer("KOR")) == []
    assert kor.duties.incidents(net.officer("KOR")) == []


def test_records_about_a_copy_name_its_sources_and_each_must_have_gone_to_the_sender(net: Net) -> None:
    """A holder's record about a copy it made names the originator's items the copy was made from; the
    originator accepts it only if each went to the holder. A record about a "copy" of an item the holder
    never received, or naming no source, is refused (not recorded, not shown), though the holder did
    receive another item."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    net.own_item("KOR", "k1")
    net.own_item("KOR", "k2")
    kor.exchange.release(net.officer("KOR"), "k1", "JPN")
    kor.exchange.release(net.officer("KOR"), "k2", "USA")  # never to JPN
    net.deliver()
    # the genuine case: a copy of a copy of k1, destroyed at JPN with the originator told
    jpn.duties.derive(net.officer("JPN"), "copy", ["k1"], item_id="k1-copy")
    jpn.duties.derive(net.officer("JPN"), "copy", ["k1-copy"], item_id="k1-copy-2")
    net.person("JPN", "witness", "極秘", ["security_officer"])
    jpn.duties.destroy(
        net.officer("JPN"), "k1-copy-2", method="shredding", witness="witness", reason="done", notify=True
    )
    jpn.duties.report_incident(net.officer("JPN"), "k1-copy", "loss", "the copy was mislaid")
    net.deliver()
    (seen,) = kor.duties.destructions(net.officer("KOR"))
    assert (seen["item"], seen["holder"], seen["sources"]) == ("k1-copy-2", "JPN", ["k1"])
    assert [(i["item"], i["sources"]) for i in kor.duties.incidents(net.officer("KOR"))] == [
        ("k1-copy", ["k1"])
    ]
    # as classified as the items they were made from
    uncleared = net.person("KOR", "clerk", "군사III급비밀", ["security_officer"])
    assert kor.duties.destructions(uncleared) == []
    assert kor.duties.incidents(uncleared) == []

    def record(item: str) -> DestructionRecord:
        return DestructionRecord(
            item, "JPN", "KOR", "군사II급비밀", "officer", "witness", DestructionMethod.SHREDDING, "made up",
            net.clock.now,
        )  # fmt: skip

    def incident(item: str, incident_id: str) -> Investigation:
        return open_investigation(
            incident_id, item, "KOR", "JPN", IncidentNature.COMPROMISE, at=net.clock.now, by="officer",
            text="leaked",
        )  # fmt: skip

    # a "copy" of k2, which JPN never received
    answer = _post(net, "JPN", "KOR", destruction_content(record("k2-copy"), ["k2"]), "copy-of-k2")
    assert (answer["status"], answer["reason"]) == ("refused", "item k2 was never sent to JPN")
    answer = _post(net, "JPN", "KOR", incident_content(incident("k2-copy", "x1"), ["k2"]), "inc-of-k2")
    assert (answer["status"], answer["reason"]) == ("refused", "item k2 was never sent to JPN")
    # one real source does not carry another never received
    answer = _post(net, "JPN", "KOR", destruction_content(record("mix"), ["k1", "k2"]), "copy-of-both")
    assert (answer["status"], answer["reason"]) == ("refused", "item k2 was never sent to JPN")
    # an item unknown to KOR, naming no source (before, having received k1 was enough)
    for content, msg_id in (
        (destruction_content(record("ghost")), "ghost-destruction"),
        (incident_content(incident("ghost", "x2")), "ghost-incident"),
    ):
        answer = _post(net, "JPN", "KOR", content, msg_id)
        assert answer["status"] == "refused"
        assert "names none of KOR's items it was made from" in str(answer["reason"])
    # a source that is no item of KOR's
    answer = _post(net, "JPN", "KOR", destruction_content(record("c"), ["jpn-own"]), "not-kors")
    assert (answer["status"], answer["reason"]) == ("refused", "item jpn-own here is not an item of KOR")
    assert [d["item"] for d in kor.duties.destructions(net.officer("KOR"))] == ["k1-copy-2"]
    assert [i["item"] for i in kor.duties.incidents(net.officer("KOR"))] == ["k1-copy"]
    assert len(net.audit("KOR", "envelope.refused")) >= 6


def test_the_hubs_termination_report_does_not_list_relayed_items_as_its_own(net: Net) -> None:
    kor, usa = net.nodes["KOR"], net.nodes["USA"]
    net.clock.now = BEFORE_GSOMIA
    net.own_item("KOR", "t1")
    kor.exchange.release(net.officer("KOR"), "t1", "JPN", via="USA", authorise_relay=True)
    net.deliver()
    report = usa.duties.termination_report(net.officer("USA"))
    jpn_side = next(p for p in report["partners"] if p["party"] == "JPN")
    assert jpn_side["held_there"] == []
    assert jpn_side["passed_on"] == [{"item": "t1", "originator": "KOR", "via": None}]
