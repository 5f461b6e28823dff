"""Attacks on the duty views and records (issue 22 §6): an uncleared officer reading them, an incident
rewritten by a later message, records about items the sender never received, a hub's relayed items
reported as its own."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from tests.duties.conftest import BEFORE_GSOMIA, Net

from gsomia.core.destruction import DestructionMethod, DestructionRecord
from gsomia.core.investigation import IncidentNature, InvestigationState, open_investigation
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


def test_an_uncleared_security_officer_reads_no_duty_view_of_the_item(net: Net) -> None:
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    net.own_item("KOR", "u1")
    kor.exchange.release(net.officer("KOR"), "u1", "JPN")
    net.deliver()
    kor.duties.reclassify(net.officer("KOR"), "u1", "군사I급비밀", "source HUMINT-7 confirmed")
    net.deliver()
    jpn.duties.report_incident(net.officer("JPN"), "u1", "possible-compromise", "copy left in a taxi")
    net.deliver()
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
