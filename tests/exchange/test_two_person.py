"""Two-person release between real nodes in one process (in-memory transport, one fake clock):
the policy reserves some releases for two officers, one requests, another approves, and only the
approval queues the release. Each test also tries what an insider would: approve their own
request, approve without clearance, reuse or forge an approval, race a second approver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from gsomia.core.access import Person
from gsomia.demo import network
from gsomia.errors import ConflictError, InvalidInputError, NotFoundError, ReleaseRefused
from gsomia.exchange import MemoryTransport
from gsomia.node import Node, PortionIngest, load_config
from gsomia.store import _tables as tables
from gsomia.testing import FakeClock

NOW = datetime(2024, 3, 1, tzinfo=UTC)
TOPICS = ["dprk-missile"]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[dict[str, Node], FakeClock, list[network.NetNode]]]:
    clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))
    members = network.build(tmp_path / "net", clock=clock)
    clock.now = NOW
    nodes = network.open_nodes(members, clock)
    kor = nodes["KOR"]
    for pid, clearance, roles in [
        ("officer2", "군사I급비밀", ["release_officer"]),
        ("officer3", "군사I급비밀", ["release_officer"]),
        ("junior", "군사III급비밀", ["release_officer"]),
        ("reader", "군사I급비밀", ["analyst"]),
    ]:
        kor.add_person(
            None,
            {
                "id": pid,
                "name": pid,
                "clearance": clearance,
                "need_to_know": TOPICS,
                "roles": roles,
                "nationality": "KOR",
            },
        )
    kor.exchange.set_two_person(
        kor.person("admin"),
        above={"KOR": "군사III급비밀"},
        hub_relay=True,
        relay_authorisations=True,
        validity=timedelta(hours=4),
    )
    yield nodes, clock, members
    for node in nodes.values():
        node.close()


def item(nodes: dict[str, Node], item_id: str, classification: str = "군사II급비밀") -> None:
    kor = nodes["KOR"]
    label = {
        "originator": "KOR",
        "classification": classification,
        "releasable_to": ["JPN", "USA"],
        "purpose": "threat-assessment",
        "topics": TOPICS,
        "created": (NOW - timedelta(hours=1)).isoformat(),
    }
    kor.ingest(kor.person("officer"), label=label, payload=b'{"track": 1}', item_id=item_id)


def deliver(nodes: dict[str, Node]) -> list[Any]:
    transport = MemoryTransport(nodes)
    out = []
    for _ in range(4):
        moved = [d for p in ("KOR", "USA", "JPN") for d in nodes[p].exchange.deliver_due(transport)]
        out += moved
        if not moved:
            break
    return out


def audit(node: Node, kind: str) -> list[dict[str, Any]]:
    return [
        {"outcome": r.outcome, "actor": r.actor, **json.loads(r.detail)} for r in node.store.audit(kind=kind)
    ]


def person(nodes: dict[str, Node], pid: str) -> Person:
    return nodes["KOR"].person(pid)


def test_a_release_the_policy_reserves_is_refused_without_a_second_officer(net: Any) -> None:
    nodes, _, _ = net
    item(nodes, "k2")
    with pytest.raises(ReleaseRefused) as refused:
        nodes["KOR"].exchange.release(person(nodes, "officer"), "k2", "JPN")
    failed = {c.rule: c.reason for c in refused.value.decision.failed()}
    assert list(failed) == ["two_person"]
    assert "KOR 군사II급비밀 is above KOR 군사III급비밀" in failed["two_person"]
    assert nodes["KOR"].exchange.fed.outbox() == []  # nothing queued


def test_below_the_level_a_release_goes_directly_and_says_why(net: Any) -> None:
    nodes, _, _ = net
    item(nodes, "k3", "군사III급비밀")
    entry = nodes["KOR"].exchange.release(person(nodes, "officer"), "k3", "JPN")
    checks = {c["rule"]: c for c in json.loads(entry.decision)["checks"]}
    assert checks["two_person"]["passed"]
    assert "not required" in checks["two_person"]["reason"]
    with pytest.raises(InvalidInputError, match="needs no second officer"):
        nodes["KOR"].exchange.request_release(person(nodes, "officer"), "k3", "JPN")


def test_requested_then_approved_by_another_officer_is_sent_once_with_the_approval_as_a_check(
    net: Any,
) -> None:
    nodes, clock, _ = net
    kor = nodes["KOR"].exchange
    item(nodes, "k2")
    request = kor.request_release(person(nodes, "officer"), "k2", "JPN")
    assert request.state == "requested"
    assert kor.fed.outbox() == []  # nothing is queued before the approval
    assert [r.id for r in kor.release_requests(person(nodes, "officer2"), state="requested")] == [request.id]
    clock.advance(minutes=5)
    answered, entry = kor.approve_release(person(nodes, "officer2"), request.id)
    assert (answered.state, answered.decided_by, answered.msg_id) == ("approved", "officer2", entry.msg_id)
    checks = {c["rule"]: c for c in json.loads(entry.decision)["checks"]}
    assert checks["two_person"]["passed"]
    assert "approved by officer2 (requested by officer)" in checks["two_person"]["reason"]
    assert [d.state for d in deliver(nodes)] == ["delivered"]
    got, _ = nodes["JPN"].read(nodes["JPN"].person("officer"), "k2")
    assert got.label.classification == "군사II급비밀"
    assert [a["request"] for a in audit(nodes["KOR"], "release.requested")] == [request.id]
    assert [(a["actor"], a["requester"]) for a in audit(nodes["KOR"], "release.approved")] == [
        ("officer2", "officer")
    ]
    # answered once: a second approval (or a refusal) finds it approved, and nothing more is queued
    with pytest.raises(ConflictError, match="approved already"):
        kor.approve_release(person(nodes, "officer2"), request.id)
    with pytest.raises(ConflictError):
        kor.refuse_release(person(nodes, "officer2"), request.id, "too late")
    assert len(kor.fed.outbox()) == 1


def test_the_requester_cannot_approve_and_neither_can_the_uncleared_or_non_officers(net: Any) -> None:
    nodes, _, _ = net
    kor = nodes["KOR"].exchange
    item(nodes, "k2")
    request = kor.request_release(person(nodes, "officer"), "k2", "JPN")
    with pytest.raises(InvalidInputError, match="a second release officer must approve"):
        kor.approve_release(person(nodes, "officer"), request.id)
    # cleared below the item: to them the request does not exist
    with pytest.raises(NotFoundError):
        kor.approve_release(person(nodes, "junior"), request.id)
    assert kor.release_requests(person(nodes, "junior")) == []
    with pytest.raises(Exception, match="role"):
        kor.approve_release(person(nodes, "reader"), request.id)
    assert kor.fed.outbox() == []
    refusals = [a["actor"] for a in audit(nodes["KOR"], "release.approve") if a["outcome"] == "refused"]
    assert refusals == ["officer", "junior"]
    assert [a["actor"] for a in audit(nodes["KOR"], "authz.release.approve")] == ["reader"]


def test_an_approval_that_expires_before_sending_is_not_sent(net: Any) -> None:
    nodes, clock, _ = net
    kor = nodes["KOR"].exchange
    item(nodes, "k2")
    request = kor.request_release(person(nodes, "officer"), "k2", "JPN")
    kor.approve_release(person(nodes, "officer2"), request.id)
    clock.advance(hours=5)  # the approval lasted 4 hours: the outbox decides again before sending
    results = deliver(nodes)
    assert [r.state for r in results] == ["undeliverable"]
    assert "expired" in str(results[0].detail)
    with pytest.raises(NotFoundError):
        nodes["JPN"].read(nodes["JPN"].person("officer"), "k2")


def test_a_forged_or_altered_approval_in_the_store_is_worth_nothing(net: Any) -> None:
    nodes, _, _ = net
    kor = nodes["KOR"].exchange
    item(nodes, "k2")
    request = kor.request_release(person(nodes, "officer"), "k2", "JPN")
    kor.approve_release(person(nodes, "officer2"), request.id)
    # an insider with the database rewrites who approved: the signature no longer covers the row
    with nodes["KOR"].store._begin() as conn:
        conn.execute(
            update(tables.release_requests)
            .where(tables.release_requests.c.id == request.id)
            .values(decided_by="officer")
        )
    results = deliver(nodes)
    assert [r.state for r in results] == ["undeliverable"]
    assert "two_person" in str(results[0].detail)


def test_a_request_lapses_and_a_refusal_or_withdrawal_needs_the_right_person(net: Any) -> None:
    nodes, clock, _ = net
    kor = nodes["KOR"].exchange
    item(nodes, "k2")
    first = kor.request_release(person(nodes, "officer"), "k2", "JPN")
    with pytest.raises(InvalidInputError, match="only the requester"):
        kor.withdraw_release(person(nodes, "officer2"), first.id)
    with pytest.raises(InvalidInputError, match="needs a reason"):
        kor.refuse_release(person(nodes, "officer2"), first.id, "  ")
    refused = kor.refuse_release(person(nodes, "officer2"), first.id, "not before the briefing")
    assert (refused.state, refused.note) == ("refused", "not before the briefing")
    with pytest.raises(ConflictError, match="refused already"):
        kor.approve_release(person(nodes, "officer2"), first.id)
    second = kor.request_release(person(nodes, "officer"), "k2", "JPN")
    assert kor.withdraw_release(person(nodes, "officer"), second.id).state == "withdrawn"
    third = kor.request_release(person(nodes, "officer"), "k2", "JPN")
    clock.advance(hours=4, seconds=1)
    with pytest.raises(ConflictError, match="lapsed"):
        kor.approve_release(person(nodes, "officer2"), third.id)
    assert kor.fed.outbox() == []


def test_hub_relays_and_relay_authorisations_need_two_officers_and_the_approval_binds_the_route(
    net: Any,
) -> None:
    nodes, _, _ = net
    kor = nodes["KOR"].exchange
    item(nodes, "k3", "군사III급비밀")  # below the level: only the route asks for a second officer
    with pytest.raises(ReleaseRefused, match="relayed through USA"):
        kor.release(person(nodes, "officer"), "k3", "JPN", via="USA", authorise_relay=True)
    request = kor.request_release(person(nodes, "officer"), "k3", "JPN", via="USA", authorise_relay=True)
    assert "relayed through USA" in request.reason
    assert "authorises a hub" in request.reason
    _, entry = kor.approve_release(person(nodes, "officer2"), request.id)
    assert (entry.recipient, entry.final_recipient) == ("USA", "JPN")
    approval = kor.approval_of(request.id)
    assert approval is not None
    # the approval is for KOR -> USA -> JPN: the same approval does not cover the direct route
    assert (
        approval.mismatch(
            item="k3",
            label=approval.label,
            sender="KOR",
            via=(),
            recipient="JPN",
            purpose=approval.purpose,
            ts=approval.approved_at.timestamp(),
        )
        == "approval " + request.id + " is for the route KOR -> USA -> JPN"
    )


def test_the_policy_is_the_stores_and_every_process_sees_a_change(net: Any) -> None:
    nodes, clock, members = net
    kor_dir = next(m.directory for m in members if m.party == "KOR")
    other = Node(load_config(kor_dir), clock=clock)  # a second process of KOR's node, in effect
    try:
        assert other.exchange.two_person() is not None
        nodes["KOR"].exchange.set_two_person(
            nodes["KOR"].person("admin"),
            above={},
            hub_relay=False,
            relay_authorisations=False,
            validity=timedelta(hours=1),
        )
        time.sleep(0.3)  # the generation counters are read at most every 250 ms
        policy = other.exchange.two_person()
        assert policy is not None
        assert policy.empty
        item(nodes, "k2")
        other.exchange.release(other.person("officer"), "k2", "JPN")  # no second officer now
    finally:
        other.close()
    with pytest.raises(Exception, match="role"):
        nodes["KOR"].exchange.set_two_person(
            person(nodes, "officer"),
            above={},
            hub_relay=False,
            relay_authorisations=False,
            validity=timedelta(hours=1),
        )
    with pytest.raises(Exception, match="no classification 'SECRET'"):
        nodes["KOR"].exchange.set_two_person(
            nodes["KOR"].person("admin"),
            above={"KOR": "SECRET"},
            hub_relay=False,
            relay_authorisations=False,
            validity=timedelta(hours=1),
        )


def test_two_approvers_racing_queue_one_release(net: Any) -> None:
    nodes, _, _ = net
    kor = nodes["KOR"].exchange
    item(nodes, "k2")
    request = kor.request_release(person(nodes, "officer"), "k2", "JPN")
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def approve(pid: str) -> None:
        start.wait()
        try:
            kor.approve_release(person(nodes, pid), request.id)
            outcomes.append("approved")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=approve, args=(pid,)) for pid in ("officer2", "officer3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["approved", "conflict"]
    assert len(kor.fed.outbox()) == 1
    assert len(audit(nodes["KOR"], "release.approved")) == 1


def report(nodes: dict[str, Node], item_id: str = "r1", *, annex: bool = False) -> None:
    """A KOR report in portions: its body (군사II급비밀, above the policy's level) for the USA only, its
    tearline (군사III급비밀, releasable without a second officer) for JPN and the USA; with ``annex``,
    an annex like the body on a topic only some officers need to know."""
    kor = nodes["KOR"]

    def label(classification: str, releasable_to: list[str], topics: list[str] = TOPICS) -> dict[str, Any]:
        return {
            "originator": "KOR",
            "classification": classification,
            "releasable_to": releasable_to,
            "purpose": "threat-assessment",
            "topics": topics,
            "created": (NOW - timedelta(hours=1)).isoformat(),
        }

    portions = [
        PortionIngest("body", label("군사II급비밀", ["USA"]), b'{"source": "USA only"}'),
        PortionIngest("tearline", label("군사III급비밀", ["JPN", "USA"]), b'{"launch": "05:12"}'),
    ]
    if annex:
        portions.insert(1, PortionIngest("annex", label("군사II급비밀", ["USA"], ["dprk-nuclear"]), b"{}"))
    kor.ingest(kor.person("officer"), label=None, payload=b"", item_id=item_id, portions=portions)


def test_an_approval_releases_the_portions_it_names_and_they_are_sent(net: Any) -> None:
    """Without a second officer the body (above the level) is withheld and the tearline goes; with
    the approval, bound to the body and tearline under their labels, both reach the USA."""
    nodes, _, _ = net
    kor = nodes["KOR"].exchange
    report(nodes)
    report(nodes, "r0")
    direct = kor.release(person(nodes, "officer"), "r0", "USA")
    portion_checks = [c["reason"] for c in json.loads(direct.decision)["checks"] if c["rule"] == "portion"]
    assert portion_checks[0].startswith("body: withheld (two_person: needs a second release officer")
    request = kor.request_release(person(nodes, "officer"), "r1", "USA")
    assert [p["id"] for p in json.loads(request.spec)["portions"]] == ["body", "tearline"]
    assert json.loads(request.label)["classification"] == "군사II급비밀"  # the highest of the two
    _, entry = kor.approve_release(person(nodes, "officer2"), request.id)
    checks = json.loads(entry.decision)["checks"]
    assert [c["reason"] for c in checks if c["rule"] == "portion"] == [
        "body: released (군사II급비밀)",
        "tearline: released (군사III급비밀)",
    ]
    assert next(c for c in checks if c["rule"] == "two_person")["passed"]
    assert json.loads(entry.request)["portions"] == ["body", "tearline"]
    assert sorted(d.state for d in deliver(nodes)) == ["delivered", "delivered"]
    got, _ = nodes["USA"].read(nodes["USA"].person("officer"), "r1")
    assert [m.id for m in got.portions] == ["body", "tearline"]


def test_an_approval_for_one_portion_set_is_not_reused_for_another(net: Any) -> None:
    """officer2 (no need to know the annex's topic) asks for the body and the tearline, officer3
    approves. The officer who may read the annex too sends on that approval: the annex, which needs
    a second officer, is withheld (the approval does not name it). An outbox entry altered to carry
    another set is refused when decided again before sending."""
    nodes, _, _ = net
    kor = nodes["KOR"].exchange
    report(nodes, annex=True)
    request = kor.request_release(person(nodes, "officer2"), "r1", "USA")
    assert [p["id"] for p in json.loads(request.spec)["portions"]] == ["body", "tearline"]
    _, entry = kor.approve_release(person(nodes, "officer3"), request.id)
    approval = kor.approval_of(request.id)
    assert approval is not None
    assert [p for p, _ in approval.portions] == ["body", "tearline"]
    row = nodes["KOR"].store.get_item("r1")
    assert row is not None
    widened = kor.prepare_release(
        person(nodes, "officer"),  # may read the annex too
        row,
        "USA",
        via=None,
        purpose=None,
        authorise_relay=False,
        now=nodes["KOR"].clock(),
        approval=approval,
    )
    reasons = [c["reason"] for c in json.loads(widened.entry.decision)["checks"] if c["rule"] == "portion"]
    assert reasons[1].startswith("annex: withheld (two_person: approval")
    assert "does not release portion annex" in reasons[1]
    assert json.loads(widened.entry.request)["portions"] == ["body", "tearline"]
    # an insider with the database narrows, or widens, the approved entry
    for portions in (["tearline"], ["body", "annex", "tearline"]):
        spec = dict(json.loads(entry.request), portions=portions)
        with nodes["KOR"].store._begin() as conn:
            conn.execute(
                update(tables.outbox)
                .where(tables.outbox.c.msg_id == entry.msg_id)
                .values(request=json.dumps(spec), state="pending")
            )
        results = deliver(nodes)
        assert [r.state for r in results] == ["undeliverable"]
        assert f"not {', '.join(sorted(portions))}" in str(results[0].detail)
    with pytest.raises(NotFoundError):
        nodes["USA"].read(nodes["USA"].person("officer"), "r1")


def test_an_approval_of_portions_covers_no_other_portion_and_no_whole_item(net: Any) -> None:
    nodes, clock, _ = net
    report(nodes)
    kor = nodes["KOR"].exchange
    request = kor.request_release(person(nodes, "officer"), "r1", "USA")
    kor.approve_release(person(nodes, "officer2"), request.id)
    approval = kor.approval_of(request.id)
    assert approval is not None
    (_, body_label), (_, tearline_label) = approval.portions
    common = {
        "item": "r1",
        "sender": "KOR",
        "via": (),
        "recipient": "USA",
        "purpose": "threat-assessment",
        "ts": clock().timestamp(),
    }
    assert approval.mismatch(label=body_label, portion="body", **common) is None
    assert "does not release portion annex" in str(
        approval.mismatch(label=body_label, portion="annex", **common)
    )
    assert "another version of the label of portion tearline" in str(
        approval.mismatch(label=body_label, portion="tearline", **common)
    )
    assert approval.mismatch(label=approval.label, portions=("body", "tearline"), **common) is None
    assert "not the whole item" in str(approval.mismatch(label=approval.label, **common))
    assert "not body, tearline, x" in str(
        approval.mismatch(label=approval.label, portions=("body", "tearline", "x"), **common)
    )
    assert "another version of the label" in str(
        approval.mismatch(label=tearline_label, portions=("body", "tearline"), **common)
    )
