"""Equivalence changes between partners (issue 19 §3): KOR's policy update of its side of the
GSOMIA table travels as a signed message and takes effect at JPN at the stated instant; and the
adversary's attempts (a forged signature, a non-party, a party remapping its partner's side, a
replay, a stale change, SECRET onto a handling caveat, a change dated in the past) are refused or
kept from reaching back, and audited.

Three nodes on one clock; every message goes through the real inbox as sealed envelopes
(``MemoryTransport``); the adversary holds its own node's keys.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import make_request
from tests.duties.conftest import Net, _net

from gsomia._codec import canonical, equivalence_change_to_dict
from gsomia.core.access import Person
from gsomia.core.equivalences import EquivalenceChange, Remap
from gsomia.core.policy import ReleaseDecision
from gsomia.crypto.envelope import seal, sign_origin
from gsomia.errors import AccessDenied, AgreementError, InvalidInputError
from gsomia.standards import spif_for

GSOMIA = "kor-jpn-gsomia-2016"
HOUR = timedelta(hours=1)
TO_TOKUTEI = Remap("KOR", "군사II급비밀", "JPN", "特定秘密")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    yield from _net(tmp_path)


def _security_officer(net: Net, party: str) -> Person:
    clearance = {"KOR": "군사II급비밀", "JPN": "極秘", "USA": "SECRET"}[party]
    return net.person(party, "security", clearance, ["security_officer"])


def _signed(net: Net, signer: str, change: EquivalenceChange) -> str:
    content = canonical(equivalence_change_to_dict(change)).encode()
    return sign_origin(net.nodes[signer].ring, content, net.clock.now)


def _change(
    net: Net, *remaps: Remap, party: str = "KOR", sequence: int = 1, effective: datetime | None = None
) -> EquivalenceChange:
    return EquivalenceChange(
        GSOMIA,
        party,
        sequence,
        effective or net.clock.now + HOUR,
        remaps or (TO_TOKUTEI,),
        "policy update",
        net.clock.now,
    )


def _send(net: Net, sender: str, to: str, jws: str, msg_id: str) -> dict[str, Any]:
    """``sender`` wraps a signed change in its own envelope for ``to`` and posts it to ``to``'s inbox."""
    peer = net.nodes[sender].exchange.peer(to)
    assert peer is not None
    body = {"kind": "equivalence-change", "change": jws}
    envelope = seal(net.nodes[sender].ring, peer, body, msg_id=msg_id, at=net.clock.now, ttl=HOUR)
    (answer,) = net.inbox(to, [envelope])
    return dict(answer)


def _decide(net: Net, party: str, at: datetime, classification: str = "군사II급비밀") -> ReleaseDecision:
    """``party``'s engine on a KOR item going to JPN at ``at``."""
    node = net.nodes[party]
    request = make_request(node.catalogue, classification=classification, created=at - HOUR)
    return node.engine.decide(request, at=at)


def _refusals(net: Net, party: str) -> list[str]:
    return [r["reason"] for r in net.audit(party, "equivalence.receive") if r["outcome"] == "refused"]


def test_a_change_proposed_at_kor_takes_effect_at_jpn_at_the_stated_instant(net: Net) -> None:
    """KOR's security officer asks Japan to protect Class II as 特定秘密 from an hour on. Delivered
    through the outbox and JPN's inbox; both sides audit it; items released before the instant are
    marked 極秘 at JPN, those released after it 特定秘密; the SPIF at the instant says so too."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    effective = net.clock.now + HOUR
    row, queued = kor.exchange.propose_equivalence(
        _security_officer(net, "KOR"), GSOMIA, [TO_TOKUTEI], effective, "Class II is designated 特定秘密"
    )
    assert (row.party, row.sequence) == ("KOR", 1)
    assert [e.recipient for e in queued] == ["JPN"]
    net.own_item("KOR", "before")
    kor.exchange.release(net.officer("KOR"), "before", "JPN")
    assert [d.state for d in net.deliver()] == ["delivered", "delivered"]

    (received,) = jpn.exchange.equivalence_changes(None, GSOMIA)
    assert (received.party, received.sequence, received.received_from) == ("KOR", 1, "KOR")
    assert received.applies_us == received.effective_us  # in time: applies at the stated instant
    assert net.audit("KOR", "equivalence.propose")[0]["outcome"] == "allowed"
    (audited,) = net.audit("JPN", "equivalence.receive")
    assert (audited["outcome"], audited["sequence"], audited["effective"]) == (
        "allowed",
        1,
        effective.isoformat(),
    )

    for party in ("KOR", "JPN"):  # the same decision on both sides, before and after
        assert _decide(net, party, effective - timedelta(seconds=1)).marking.classification == "極秘"  # type: ignore[union-attr]
        assert _decide(net, party, effective).marking.classification == "特定秘密"  # type: ignore[union-attr]
    assert jpn.store.get_item("before").label.count("極秘") == 1  # type: ignore[union-attr]

    net.clock.now = effective + timedelta(minutes=1)
    net.own_item("KOR", "after")
    kor.exchange.release(net.officer("KOR"), "after", "JPN")
    net.deliver()
    after = json.loads(jpn.store.get_item("after").label)  # type: ignore[union-attr]
    assert after["alternatives"] == [{"party": "JPN", "classification": "特定秘密", "agreement": GSOMIA}]
    before = json.loads(jpn.store.get_item("before").label)  # type: ignore[union-attr]
    assert before["alternatives"][0]["classification"] == "極秘"  # a label already held is not rewritten

    spif_before = spif_for(jpn.catalogue, "KOR", effective - HOUR).decode()
    spif_after = spif_for(jpn.catalogue, "KOR", effective).decode()
    # Class II and 特定秘密 (JPN's lacv 3): only in (JPN's one-way row) before; both ways from the instant
    assert 'policyRef="GSOMIA-JPN" lacv="3" applied="decrypt"' in spif_before
    assert 'policyRef="GSOMIA-JPN" lacv="3" applied="both"' in spif_after


def test_the_proposal_is_the_security_officers_and_is_checked_before_it_is_signed(net: Net) -> None:
    kor = net.nodes["KOR"]
    later = net.clock.now + HOUR
    with pytest.raises(AccessDenied):  # a release officer does not set protection policy
        kor.exchange.propose_equivalence(net.officer("KOR"), GSOMIA, [TO_TOKUTEI], later, "x")
    officer = _security_officer(net, "KOR")
    with pytest.raises(InvalidInputError, match="now or later"):
        kor.exchange.propose_equivalence(officer, GSOMIA, [TO_TOKUTEI], net.clock.now - HOUR, "x")
    caveat = Remap("KOR", "군사II급비밀", "JPN", "取扱厳重注意")
    with pytest.raises(AgreementError, match="handling caveat"):
        kor.exchange.propose_equivalence(officer, GSOMIA, [caveat], later, "x")
    theirs = Remap("JPN", "極秘", "KOR", "군사III급비밀")
    with pytest.raises(AgreementError, match="JPN's side"):
        kor.exchange.propose_equivalence(officer, GSOMIA, [theirs], later, "x")
    assert kor.exchange.equivalence_changes(None) == []
    assert kor.exchange.fed.outbox() == []
    refused = [r for r in net.audit("KOR", "equivalence.propose") if r["outcome"] == "refused"]
    assert len(refused) == 3  # plus the role refusal, audited as authz.equivalence.propose
    assert net.audit("KOR", "authz.equivalence.propose")


def test_a_forged_signature_is_refused_and_audited(net: Net) -> None:
    genuine = _signed(net, "KOR", _change(net))
    header, payload, signature = genuine.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["remaps"][0]["partner_level"] = "秘"
    forged_payload = base64.urlsafe_b64encode(canonical(data).encode()).decode().rstrip("=")
    answer = _send(net, "KOR", "JPN", f"{header}.{forged_payload}.{signature}", "forged")
    assert answer["status"] == "refused"
    assert _refusals(net, "JPN") == ["bad-origin-signature"]
    assert net.nodes["JPN"].exchange.equivalence_changes(None) == []


def test_a_change_signed_by_another_node_than_the_party_it_names_is_refused(net: Net) -> None:
    """USA signs KOR's change and delivers it: a party speaks only for itself."""
    answer = _send(net, "USA", "JPN", _signed(net, "USA", _change(net)), "usa-for-kor")
    assert answer["status"] == "refused"
    assert "signed by USA speaks for KOR" in _refusals(net, "JPN")[0]


def test_a_change_from_a_non_party_is_refused(net: Net) -> None:
    """The USA is no party to the ROK–Japan GSOMIA: its change to that table changes nothing."""
    usa_remap = Remap("USA", "SECRET", "JPN", "極秘")
    answer = _send(net, "USA", "JPN", _signed(net, "USA", _change(net, usa_remap, party="USA")), "non-party")
    assert answer["status"] == "refused"
    assert "USA is not a party to kor-jpn-gsomia-2016" in _refusals(net, "JPN")[0]
    assert _decide(net, "JPN", net.clock.now + 2 * HOUR).marking.classification == "極秘"  # type: ignore[union-attr]


def test_a_party_cannot_remap_its_partners_side(net: Net) -> None:
    """KOR, signing for itself, remaps JPN's 極秘 (what a Japanese item becomes at KOR): refused."""
    theirs = Remap("JPN", "極秘", "KOR", "군사III급비밀")
    answer = _send(net, "KOR", "JPN", _signed(net, "KOR", _change(net, theirs)), "partners-side")
    assert answer["status"] == "refused"
    assert "JPN's side" in _refusals(net, "JPN")[0]


def test_a_replay_or_a_stale_change_is_refused_and_audited(net: Net) -> None:
    """KOR's genuine change 1, delivered again in a fresh envelope, is refused (a replay); after
    change 2, a change 1 never seen before is refused too (stale): neither moves the table."""
    jpn = net.nodes["JPN"]
    first = _signed(net, "KOR", _change(net))
    assert _send(net, "KOR", "JPN", first, "first")["status"] == "applied"
    assert _send(net, "KOR", "JPN", first, "replayed")["status"] == "refused"
    assert "not newer than change 1" in _refusals(net, "JPN")[0]
    restore = Remap("KOR", "군사II급비밀", "JPN", "極秘")
    later = net.clock.now + 2 * HOUR
    second = _signed(net, "KOR", _change(net, restore, sequence=2, effective=later))
    assert _send(net, "KOR", "JPN", second, "second")["status"] == "applied"
    stale = _signed(net, "KOR", _change(net, Remap("KOR", "군사III급비밀", "JPN", None), sequence=1))
    assert _send(net, "KOR", "JPN", stale, "stale")["status"] == "refused"
    assert "not newer than change 2" in _refusals(net, "JPN")[1]
    assert [r.sequence for r in jpn.exchange.equivalence_changes(None)] == [1, 2]
    assert _decide(net, "JPN", later - HOUR / 2).marking.classification == "特定秘密"  # type: ignore[union-attr]
    assert _decide(net, "JPN", later).marking.classification == "極秘"  # type: ignore[union-attr]
    assert _decide(net, "JPN", later, "군사III급비밀").allowed  # the stale change applied nowhere


def test_secret_onto_a_handling_caveat_is_refused_at_the_receiver(net: Net) -> None:
    """A change KOR's own node would not sign, signed all the same (a compromised proposer): JPN
    runs the same check the data files go through and refuses it."""
    caveat = Remap("KOR", "군사II급비밀", "JPN", "取扱厳重注意")
    answer = _send(net, "KOR", "JPN", _signed(net, "KOR", _change(net, caveat)), "caveat")
    assert answer["status"] == "refused"
    assert "handling caveat" in _refusals(net, "JPN")[0]
    assert _decide(net, "JPN", net.clock.now + 2 * HOUR).marking.classification == "極秘"  # type: ignore[union-attr]


def test_a_change_dated_in_the_past_does_not_reach_back_to_decisions_made(net: Net) -> None:
    """An item KOR released at t1 was decided, marked and audited at JPN under 極秘. A change
    dated before t1 arriving at t2 applies at JPN from t2 only: the decision at t1 is the same when
    asked again, the item keeps its label, and the audit records up to t2 are unchanged."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    t0 = net.clock.now
    net.clock.now = t1 = t0 + HOUR
    net.own_item("KOR", "released")
    kor.exchange.release(net.officer("KOR"), "released", "JPN")
    net.deliver()
    records_before = [(r.kind, r.subject, r.outcome, r.detail) for r in jpn.store.audit()]
    decided_before = _decide(net, "JPN", t1)
    net.clock.now = t2 = t1 + HOUR
    backdated = _signed(net, "KOR", _change(net, effective=t0))
    assert _send(net, "KOR", "JPN", backdated, "backdated")["status"] == "applied"
    (row,) = jpn.exchange.equivalence_changes(None)
    assert row.applies_us == int(t2.timestamp() * 1_000_000)  # from its arrival, not t0
    (audited,) = net.audit("JPN", "equivalence.receive")
    assert audited["applies"] == t2.isoformat()
    assert _decide(net, "JPN", t1) == decided_before  # what was decided at t1 stands
    assert _decide(net, "JPN", t2).marking.classification == "特定秘密"  # type: ignore[union-attr]
    assert json.loads(jpn.store.get_item("released").label)["alternatives"][0]["classification"] == "極秘"  # type: ignore[union-attr]
    records_after = [(r.kind, r.subject, r.outcome, r.detail) for r in jpn.store.audit()]
    assert records_after[: len(records_before)] == records_before


def test_every_process_of_the_receiving_node_sees_the_change(net: Net) -> None:
    """A second process of JPN's node (its own Node over the same store) decided with the data files'
    table; once the first process stored KOR's change, the second decides with it too, within the
    store counters' interval, without being told."""
    from gsomia.node import Node, load_config

    member = next(m for m in net.members if m.party == "JPN")
    second = Node(load_config(member.directory), clock=net.clock)
    try:
        after = net.clock.now + 2 * HOUR
        request = make_request(second.catalogue, created=net.clock.now)
        assert second.engine.decide(request, at=after).marking.classification == "極秘"  # type: ignore[union-attr]
        assert _send(net, "KOR", "JPN", _signed(net, "KOR", _change(net)), "once")["status"] == "applied"
        deadline = time.monotonic() + 120
        while second.engine.decide(request, at=after).marking.classification == "極秘":  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the second process never saw the change"
            time.sleep(0.05)
        assert [r.sequence for r in second.exchange.equivalence_changes(None)] == [1]
    finally:
        second.close()


def test_a_partner_sending_changes_without_end_is_refused_past_the_bound(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every change kept is applied again at each rebuild: past the bound (3 here, 64 shipped), a
    partner's further changes are refused and audited, in one batch or one at a time."""
    monkeypatch.setattr("gsomia.exchange._equivalences.MAX_CHANGES", 3)
    later = net.clock.now + HOUR
    envelopes = []
    peer = net.nodes["KOR"].exchange.peer("JPN")
    assert peer is not None
    for n in range(1, 5):
        target = "特定秘密" if n % 2 else "極秘"
        jws = _signed(net, "KOR", _change(net, Remap("KOR", "군사II급비밀", "JPN", target), sequence=n))
        body = {"kind": "equivalence-change", "change": jws}
        envelopes.append(
            seal(net.nodes["KOR"].ring, peer, body, msg_id=f"flood-{n}", at=net.clock.now, ttl=HOUR)
        )
    answers = net.inbox("JPN", envelopes)
    assert [a["status"] for a in answers] == ["applied", "applied", "applied", "refused"]
    assert "the most this node keeps" in _refusals(net, "JPN")[0]
    assert len(net.nodes["JPN"].exchange.equivalence_changes(None)) == 3
    assert _decide(net, "JPN", later).marking.classification == "特定秘密"  # type: ignore[union-attr]
    officer = _security_officer(net, "JPN")
    remap = Remap("JPN", "極秘", "KOR", "군사II급비밀")
    for _ in range(3):
        net.nodes["JPN"].exchange.propose_equivalence(officer, GSOMIA, [remap], later, "x")
    with pytest.raises(AgreementError, match="the most this node keeps"):
        net.nodes["JPN"].exchange.propose_equivalence(officer, GSOMIA, [remap], later, "x")
