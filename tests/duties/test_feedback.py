"""Feedback to the originator (issue 20 §4): a holder's signed sighting, question or correction
reaches the originator the way the item came, is kept and audited at both ends, and is refused
when forged, replayed otherwise, sent about what the sender never received, read by the wrong
person, or used to carry what the originator was never given."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from tests.duties.conftest import BEFORE_GSOMIA, Net

from gsomia.core.feedback import Feedback, FeedbackKind
from gsomia.crypto.envelope import seal, sign_origin
from gsomia.duties import _feedback as sending
from gsomia.duties import _receive as receiving
from gsomia.duties._messages import feedback_content
from gsomia.errors import AccessDenied, InvalidInputError, NotFoundError

HOUR = timedelta(hours=1)


def _through_the_hub(net: Net, item_id: str) -> None:
    net.clock.now = BEFORE_GSOMIA  # only TISA: KOR's item reaches JPN through the USA
    net.own_item("KOR", item_id)
    net.nodes["KOR"].exchange.release(net.officer("KOR"), item_id, "JPN", via="USA", authorise_relay=True)
    # KOR -> USA, USA -> JPN, and JPN's receipt passed back to KOR by the hub
    assert [r.state for r in net.deliver()] == ["delivered", "delivered", "delivered"]


def _direct(net: Net, item_id: str) -> None:
    net.own_item("KOR", item_id)
    net.nodes["KOR"].exchange.release(net.officer("KOR"), item_id, "JPN")
    assert [r.state for r in net.deliver()] == ["delivered"]


def test_a_sighting_reaches_the_originator_through_the_hub_and_is_kept_at_both_ends(net: Net) -> None:
    kor, usa, jpn = (net.nodes[p] for p in ("KOR", "USA", "JPN"))
    _through_the_hub(net, "f1")
    analyst = jpn.people.person("analyst")
    sent = jpn.duties.send_feedback(analyst, "f1", "corroborated", "matches our radar track at 03:12")
    assert (sent["originator"], sent["holder"], sent["kind"]) == ("KOR", "JPN", "corroborated")
    net.deliver()

    (seen,) = kor.duties.feedback(net.officer("KOR"), "f1")
    assert (seen["id"], seen["holder"], seen["by"], seen["text"]) == (
        sent["id"],
        "JPN",
        "analyst",
        "matches our radar track at 03:12",
    )
    assert [f["id"] for f in jpn.duties.feedback(analyst, "f1")] == [sent["id"]]  # the holder's copy
    assert [r["outcome"] for r in net.audit("JPN", "feedback.send")] == ["allowed"]
    assert [r["outcome"] for r in net.audit("USA", "duty.relayed.feedback")] == ["allowed"]
    (recorded,) = net.audit("KOR", "duty.feedback")
    assert (recorded["signer"], recorded["result"]) == ("JPN", "recorded")
    assert usa.duties.db.feedback("f1") == []  # the hub passes it on, it keeps nothing


def test_feedback_is_as_classified_as_its_item(net: Net) -> None:
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    _direct(net, "f2")
    uncleared = net.person("JPN", "trainee", None, ["analyst"])
    outsider = net.person("JPN", "outsider", "極秘", [])  # cleared, but handles no items
    with pytest.raises(NotFoundError) as hidden:
        jpn.duties.send_feedback(uncleared, "f2", "seen", "")
    with pytest.raises(NotFoundError) as unknown:
        jpn.duties.send_feedback(net.officer("JPN"), "no-such-item", "seen", "")
    assert str(hidden.value).replace("f2", "X") == str(unknown.value).replace("no-such-item", "X")
    with pytest.raises(AccessDenied):
        jpn.duties.send_feedback(outsider, "f2", "seen", "")
    jpn.duties.send_feedback(net.officer("JPN"), "f2", "used-in-assessment", "")
    net.deliver()
    kor_uncleared = net.person("KOR", "kor-trainee", None, ["analyst"])
    with pytest.raises(NotFoundError):
        kor.duties.feedback(kor_uncleared, "f2")  # the originator's uncleared reader sees nothing
    assert len(kor.duties.feedback(net.officer("KOR"), "f2")) == 1
    assert net.audit("JPN", "feedback.send")[0]["outcome"] == "refused"


def test_bad_feedback_is_refused_and_changes_nothing(net: Net) -> None:
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    _direct(net, "f3")
    officer = net.officer("JPN")
    for kind, text, match in (
        ("liked", "", "feedback kind must be one of"),
        ("question", "  ", "a question needs a text"),
        ("correction", "x" * 2001, "at most 2000 characters"),
    ):
        with pytest.raises(InvalidInputError, match=match):
            jpn.duties.send_feedback(officer, "f3", kind, text)
    net.own_item("JPN", "jpn-own")
    with pytest.raises(InvalidInputError, match="this node's own"):
        jpn.duties.send_feedback(officer, "jpn-own", "seen", "")
    assert jpn.duties.db.feedback("f3") == []
    assert [e for e in jpn.exchange.fed.outbox(state="pending") if e.kind == "duty"] == []
    assert kor.duties.db.feedback("f3") == []


def test_feedback_carries_nothing_the_originator_was_not_given(net: Net) -> None:
    """A holder's own report may be cited only once it was released to the originator."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    _direct(net, "f4")
    officer = net.officer("JPN")
    net.own_item("JPN", "jpn-assessment")
    with pytest.raises(InvalidInputError, match="never released to KOR"):
        jpn.duties.send_feedback(
            officer, "f4", "used-in-assessment", "see our assessment", ["jpn-assessment"]
        )
    with pytest.raises(NotFoundError):  # a citation of what the sender cannot read is unknown
        jpn.duties.send_feedback(officer, "f4", "used-in-assessment", "", ["kor-secret-elsewhere"])
    jpn.exchange.release(officer, "jpn-assessment", "KOR")
    net.deliver()
    sent = jpn.duties.send_feedback(
        officer, "f4", "used-in-assessment", "see our assessment", ["jpn-assessment"]
    )
    net.deliver()
    (seen,) = kor.duties.feedback(net.officer("KOR"), "f4")
    assert seen["id"] == sent["id"]
    assert seen["cites"] == ["jpn-assessment"]


def _forged(net: Net, signer: str, via: str, feedback: Feedback) -> str:
    """An envelope from ``via`` to KOR carrying ``feedback`` signed by ``signer``."""
    node = net.nodes[signer]
    jws = sign_origin(node.ring, feedback_content(feedback), net.clock.now)
    peer = net.nodes[via].exchange.peer("KOR")
    assert peer is not None
    body = {"kind": "duty", "to": "KOR", "duty": jws}
    return seal(net.nodes[via].ring, peer, body, msg_id=uuid.uuid4().hex, at=net.clock.now, ttl=HOUR)


def test_forged_misaddressed_and_unentitled_feedback_is_refused_at_the_originator(net: Net) -> None:
    kor = net.nodes["KOR"]
    _direct(net, "f5")
    now = net.clock.now

    def feedback(holder: str, text: str, fid: str = "a" * 32, item: str = "f5") -> Feedback:
        return Feedback(fid, item, "KOR", holder, FeedbackKind.SEEN, text, (), "someone", now)

    # USA signs feedback in JPN's name: the signer does not speak for the holder
    (answer,) = net.inbox("KOR", [_forged(net, "USA", "USA", feedback("JPN", "forged"))])
    assert (answer["status"], "signed by USA speaks for JPN" in answer["reason"]) == ("refused", True)
    # USA, which was never sent f5, sends feedback about it in its own name
    (answer,) = net.inbox("KOR", [_forged(net, "USA", "USA", feedback("USA", "never had it"))])
    assert answer["status"] == "refused"
    assert "never sent to USA" in answer["reason"]
    # feedback about an item KOR does not hold
    (answer,) = net.inbox("KOR", [_forged(net, "JPN", "JPN", feedback("JPN", "?", item="nope"))])
    assert answer["status"] == "refused"

    # JPN's genuine feedback; the same envelope again is a duplicate; the same id rewritten is refused
    envelope = _forged(net, "JPN", "JPN", feedback("JPN", "first words"))
    (first,) = net.inbox("KOR", [envelope])
    (again,) = net.inbox("KOR", [envelope])
    assert (first["status"], again["status"]) == ("recorded", "duplicate")
    (rewritten,) = net.inbox("KOR", [_forged(net, "JPN", "JPN", feedback("JPN", "other words"))])
    assert rewritten["status"] == "refused"
    assert "already recorded otherwise" in rewritten["reason"]
    (resent,) = net.inbox("KOR", [_forged(net, "JPN", "JPN", feedback("JPN", "first words"))])
    assert resent["status"] == "recorded"  # the same feedback in a new envelope: kept once
    assert [f["text"] for f in kor.duties.feedback(net.officer("KOR"), "f5")] == ["first words"]
    assert len([r for r in net.audit("KOR", "envelope.refused") if r["outcome"] == "refused"]) >= 4


def test_feedback_is_bounded_per_item_and_holder(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    _direct(net, "f6")
    monkeypatch.setattr(sending, "MAX_PER_ITEM", 2)
    monkeypatch.setattr(receiving, "MAX_PER_ITEM", 2)
    for _ in range(2):
        jpn.duties.send_feedback(net.officer("JPN"), "f6", "seen", "")
    with pytest.raises(InvalidInputError, match="at most 2 feedback"):
        jpn.duties.send_feedback(net.officer("JPN"), "f6", "seen", "")
    net.deliver()
    extra = Feedback(uuid.uuid4().hex, "f6", "KOR", "JPN", FeedbackKind.SEEN, "", (), "x", net.clock.now)
    (answer,) = net.inbox("KOR", [_forged(net, "JPN", "JPN", extra)])  # a hostile JPN past its bound
    assert answer["status"] == "refused"
    assert "at most 2 feedback" in answer["reason"]
    assert len(kor.duties.feedback(net.officer("KOR"), "f6")) == 2
