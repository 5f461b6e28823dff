"""Attacks on label changes and recalls (issue 22 §1, §3): replayed, misaddressed, from off the item's
path, and dodged by destroying the item a copy or a relay came through.

Three nodes on one clock; every message goes through the real inbox as sealed envelopes
(``MemoryTransport``); the adversary holds its own node's keys and what crossed it.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from tests.duties.conftest import BEFORE_GSOMIA, Net

from gsomia.core.recall import ChangeKind, LabelChange
from gsomia.crypto.envelope import seal, sign_origin
from gsomia.duties._messages import change_content
from gsomia.errors import InvalidInputError, ItemGoneError

HOUR = timedelta(hours=1)


def _as(net: Net, sender: str, to: str, jws: str, msg_id: str) -> dict[str, object]:
    """``sender`` wraps a signed duty in its own envelope for ``to`` and posts it to ``to``'s inbox."""
    peer = net.nodes[sender].exchange.peer(to)
    assert peer is not None
    body = {"kind": "duty", "to": to, "duty": jws}
    envelope = seal(net.nodes[sender].ring, peer, body, msg_id=msg_id, at=net.clock.now, ttl=HOUR)
    (answer,) = net.inbox(to, [envelope])
    return dict(answer)


def _duties_for(net: Net, sender: str, to: str, item_id: str) -> list[str]:
    """The signed duties ``sender`` queued for ``to`` about ``item_id`` (what crossed it, in clear)."""
    out = []
    node = net.nodes[sender]
    for entry in node.exchange.fed.outbox():
        if entry.kind == "duty" and entry.item_id == item_id and entry.final_recipient == to:
            out.append(entry.msg_id)
    return out


def _change_jws(net: Net, item_id: str, version: int, holder: str) -> str:
    """KOR's genuine signed change ``version`` of ``item_id`` for ``holder``, as KOR's node makes it."""
    kor = net.nodes["KOR"]
    (row,) = [c for c in kor.duties.db.label_changes(item_id) if c.version == version]
    change = LabelChange(
        item_id, "KOR", version, ChangeKind(row.kind), row.classification, row.reason, net.clock.now
    )
    origin = None
    if change.kind is ChangeKind.RECLASSIFY:
        origin = kor.exchange.origin_jws(item_id)
    return sign_origin(kor.ring, change_content(change, origin, holder), net.clock.now)


def test_items_carry_their_label_version_and_an_old_downgrade_replayed_is_refused(net: Net) -> None:
    """KOR downgrades (v2), then upgrades (v3) and only then sends the item to USA: USA starts at v3.
    KOR's genuine v2 downgrade, replayed to USA by JPN (who holds it) or addressed to USA, is refused."""
    kor, usa, jpn = (net.nodes[p] for p in ("KOR", "USA", "JPN"))
    officer = net.officer("KOR")
    net.own_item("KOR", "v1")
    kor.exchange.release(officer, "v1", "JPN")
    net.deliver()
    kor.duties.reclassify(officer, "v1", "군사III급비밀", "downgraded")
    net.deliver()
    kor.duties.reclassify(officer, "v1", "군사II급비밀", "upgraded again")
    net.deliver()
    kor.exchange.release(officer, "v1", "USA")
    net.deliver()
    row = usa.store.get_item("v1")
    assert row is not None
    assert (row.label_version, row.classification) == (3, "군사II급비밀")  # as KOR released it
    assert jpn.store.get_item("v1").label_version == 3  # type: ignore[union-attr]

    # JPN replays to USA the v2 downgrade KOR addressed to JPN: misaddressed
    downgrade_for_jpn = _change_jws(net, "v1", 2, "JPN")
    answer = _as(net, "JPN", "USA", downgrade_for_jpn, "replay-1")
    assert answer["status"] == "refused"
    assert "addressed to JPN" in str(answer["reason"])
    # the same downgrade addressed to USA (as if KOR had sent USA one), from KOR itself: stale
    answer = _as(net, "KOR", "USA", _change_jws(net, "v1", 2, "USA"), "replay-2")
    assert answer["status"] == "refused"
    assert "stale label change: version 2" in str(answer["reason"])
    # and to JPN, which applied v2 and v3: stale too
    answer = _as(net, "KOR", "JPN", downgrade_for_jpn, "replay-3")
    assert "stale" in str(answer["reason"])
    for node in (usa, jpn):
        item, _ = node.items.read(net.officer(node.party), "v1")
        assert item.label.classification == "군사II급비밀"
        assert node.store.get_item("v1").label_version == 3  # type: ignore[union-attr]
    refused = [r["reason"] for r in net.audit("USA", "envelope.refused")]
    assert any("addressed to JPN" in r for r in refused)
    assert any("stale" in r for r in refused)


def test_a_change_from_off_the_items_path_is_refused(net: Net) -> None:
    """KOR sent the item straight to JPN. USA, holding a genuine KOR change addressed to JPN, delivers
    it to JPN itself: USA is not on the item's path at JPN, so JPN refuses it."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    net.own_item("KOR", "p1")
    kor.exchange.release(net.officer("KOR"), "p1", "JPN")
    net.deliver()
    recall = LabelChange("p1", "KOR", 2, ChangeKind.RECALL, None, "stolen recall", net.clock.now)
    jws = sign_origin(kor.ring, change_content(recall, None, "JPN"), net.clock.now)
    answer = _as(net, "USA", "JPN", jws, "off-path")
    assert answer["status"] == "refused"
    assert "not on its path" in str(answer["reason"])
    jpn.items.read(net.officer("JPN"), "p1")  # still held


def test_an_old_recall_replayed_does_not_withdraw_a_fresh_copy(net: Net) -> None:
    """KOR recalls (v2): the item is released to no one until KOR reclassifies it (v3) and sends USA the
    item. JPN replays its recall to USA: misaddressed; a v2 recall addressed to USA: stale."""
    kor, usa = net.nodes["KOR"], net.nodes["USA"]
    officer = net.officer("KOR")
    net.own_item("KOR", "r1")
    kor.exchange.release(officer, "r1", "JPN")
    net.deliver()
    kor.duties.recall(officer, "r1", "withdrawn from JPN")
    net.deliver()
    with pytest.raises(InvalidInputError, match="was recalled"):
        kor.exchange.release(officer, "r1", "USA")
    kor.duties.reclassify(officer, "r1", "군사III급비밀", "released again after review")
    kor.exchange.release(officer, "r1", "USA")
    net.deliver()
    assert usa.store.get_item("r1").label_version == 3  # type: ignore[union-attr]
    answer = _as(net, "JPN", "USA", _change_jws(net, "r1", 2, "JPN"), "old-recall")
    assert "addressed to JPN" in str(answer["reason"])
    answer = _as(net, "KOR", "USA", _change_jws(net, "r1", 2, "USA"), "old-recall-usa")
    assert "stale label change: version 2" in str(answer["reason"])
    usa.items.read(net.officer("USA"), "r1")  # USA's fresh copy stays


def test_a_recall_that_arrives_before_the_item_applies_when_the_item_arrives(net: Net) -> None:
    """The recall overtakes the release (in flight when KOR recalled): JPN keeps it, and withdraws the
    item on arrival, acknowledging "withdrawn"; KOR's view shows JPN's answer, not "pending"."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    officer = net.officer("KOR")
    net.own_item("KOR", "o1")
    release = kor.exchange.release(officer, "o1", "JPN")
    in_flight = release.envelope  # taken off the wire before the recall
    kor.duties.recall(officer, "o1", "withdrawn while in flight")
    net.deliver()  # the recall reaches JPN first: "not-held", kept
    assert kor.duties.label_status(officer, "o1")["changes"][0]["acks"][0]["state"] == "not-held"
    (answer,) = net.inbox("JPN", [in_flight])  # then the item lands
    assert answer["status"] == "stored"
    row = jpn.store.get_item("o1")
    assert row is not None
    assert (row.state, row.payload) == ("recalled", b"")
    with pytest.raises(ItemGoneError):
        jpn.items.read(net.officer("JPN"), "o1")
    net.deliver()
    (ack,) = kor.duties.label_status(officer, "o1")["changes"][0]["acks"]
    assert (ack["party"], ack["state"]) == ("JPN", "withdrawn")


def test_a_destroyed_original_does_not_shield_its_copy(net: Net) -> None:
    """JPN copies KOR's item, destroys the original, then KOR recalls: the copy is withdrawn, and KOR is
    told the copy was withdrawn (not that the item was destroyed and nothing more)."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    net.own_item("KOR", "s1")
    kor.exchange.release(net.officer("KOR"), "s1", "JPN")
    net.deliver()
    jpn.duties.derive(net.officer("JPN"), "copy", ["s1"], item_id="s1-copy")
    net.person("JPN", "witness", "極秘", ["security_officer"])
    jpn.duties.destroy(net.officer("JPN"), "s1", method="crypto-erase", witness="witness", reason="done")
    kor.duties.recall(net.officer("KOR"), "s1", "source compromised")
    net.deliver()
    with pytest.raises(ItemGoneError, match="recalled"):
        jpn.items.read(net.officer("JPN"), "s1-copy")
    (ack,) = kor.duties.label_status(net.officer("KOR"), "s1")["changes"][0]["acks"]
    assert (ack["party"], ack["state"], ack["detail"]["copies"]) == ("JPN", "withdrawn", 1)


def test_a_reclassification_reaches_the_copy_of_a_destroyed_original(net: Net) -> None:
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    net.own_item("KOR", "s2")
    kor.exchange.release(net.officer("KOR"), "s2", "JPN")
    net.deliver()
    jpn.duties.derive(net.officer("JPN"), "copy", ["s2"], item_id="s2-copy")
    net.person("JPN", "witness", "極秘", ["security_officer"])
    jpn.duties.destroy(net.officer("JPN"), "s2", method="crypto-erase", witness="witness", reason="done")
    kor.duties.reclassify(net.officer("KOR"), "s2", "군사III급비밀", "downgraded")
    net.deliver()
    copied, payload = jpn.items.read(net.officer("JPN"), "s2-copy")
    assert copied.label.classification == "군사III급비밀"
    assert json.loads(payload) == {"track": 1}
    (ack,) = kor.duties.label_status(net.officer("KOR"), "s2")["changes"][0]["acks"]
    assert (ack["state"], ack["detail"]["copies"]) == ("applied", 1)


def test_a_recall_passes_a_hub_that_destroyed_its_relay_copy(net: Net) -> None:
    """KOR → USA → JPN (TISA). USA destroys its relay copy; KOR recalls: JPN's copy is withdrawn and KOR
    sees USA "destroyed" and JPN "withdrawn", nothing pending."""
    kor, usa, jpn = (net.nodes[p] for p in ("KOR", "USA", "JPN"))
    net.clock.now = BEFORE_GSOMIA
    net.own_item("KOR", "h1")
    kor.exchange.release(net.officer("KOR"), "h1", "JPN", via="USA", authorise_relay=True)
    net.deliver()
    net.person("USA", "witness", "SECRET", ["security_officer"])
    usa.duties.destroy(net.officer("USA"), "h1", method="crypto-erase", witness="witness", reason="relayed")
    kor.duties.recall(net.officer("KOR"), "h1", "source compromised")
    net.deliver()
    assert jpn.store.get_item("h1").state == "recalled"  # type: ignore[union-attr]
    change = kor.duties.label_status(net.officer("KOR"), "h1")["changes"][0]
    assert {a["party"]: a["state"] for a in change["acks"]} == {"JPN": "withdrawn", "USA": "destroyed"}
    assert change["pending"] == []


def test_a_change_reaches_a_downstream_holder_the_originator_did_not_know(net: Net) -> None:
    """JPN passed KOR's item on to USA by its own release (with KOR's consent). KOR recalls; JPN names
    USA in its answer; KOR addresses USA through JPN; USA's copy is withdrawn; nothing stays pending."""
    kor, usa, jpn = (net.nodes[p] for p in ("KOR", "USA", "JPN"))
    net.own_item("KOR", "d1")
    kor.exchange.release(net.officer("KOR"), "d1", "JPN")
    net.deliver()
    request_id = jpn.exchange.request_consent(net.officer("JPN"), "d1", "USA", "threat-assessment", "US cell")
    net.deliver()
    kor.exchange.answer_consent(net.officer("KOR"), request_id, grant=True, reason="note 2024-031")
    net.deliver()
    jpn.exchange.release(net.officer("JPN"), "d1", "USA")
    net.deliver()
    assert usa.store.get_item("d1").state == "held"  # type: ignore[union-attr]
    kor.duties.recall(net.officer("KOR"), "d1", "source compromised")
    net.deliver()
    assert usa.store.get_item("d1").state == "recalled"  # type: ignore[union-attr]
    change = kor.duties.label_status(net.officer("KOR"), "d1")["changes"][0]
    assert {a["party"]: a["state"] for a in change["acks"]} == {"JPN": "withdrawn", "USA": "withdrawn"}
    assert change["pending"] == []


def test_a_holder_out_of_reach_is_pending_with_why_until_it_answers(net: Net) -> None:
    """KOR recalls while JPN is unreachable: label-status says pending and why (the delivery error), a
    day later too (a duty still binds: it is retried); once JPN answers, its copy is withdrawn and KOR
    sees it applied, nothing pending."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    officer = net.officer("KOR")
    net.own_item("KOR", "r1")
    kor.exchange.release(officer, "r1", "JPN")
    net.deliver()
    net.transport.unreachable.add("JPN")
    kor.duties.recall(officer, "r1", "source compromised")
    for _ in range(2):
        net.deliver()
        change = kor.duties.label_status(officer, "r1")["changes"][0]
        (ack,) = change["acks"]
        assert (change["pending"], ack["state"]) == (["JPN"], "pending")
        assert "is unreachable" in ack["why"]
        net.clock.now += timedelta(hours=25)
    net.transport.unreachable.clear()
    net.deliver()
    assert jpn.store.get_item("r1").state == "recalled"  # type: ignore[union-attr]
    change = kor.duties.label_status(officer, "r1")["changes"][0]
    assert (change["applied"], change["pending"], change["not_reachable"]) == (["JPN"], [], [])


def test_a_holder_that_refuses_the_change_is_not_reachable_with_the_reason(net: Net) -> None:
    """JPN revoked the key KOR signs with: KOR's recall is refused, and KOR's label-status says JPN is
    "not reachable" and why, not pending."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    officer = net.officer("KOR")
    net.own_item("KOR", "r2")
    kor.exchange.release(officer, "r2", "JPN")
    net.deliver()
    kid, _ = kor.ring.signing_key(net.clock.now)
    jpn.exchange.revoke_peer_key(None, "KOR", kid, net.clock.now)
    kor.duties.recall(officer, "r2", "source compromised")
    net.deliver()
    change = kor.duties.label_status(officer, "r2")["changes"][0]
    (ack,) = change["acks"]
    assert (change["pending"], change["not_reachable"], ack["state"]) == ([], ["JPN"], "not-reachable")
    assert ack["why"].startswith("JPN refused")
