"""The duties at one node, on SQLite and PostgreSQL: copies, visits, registers, termination."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from tests.node_fixtures import add, jpn_label, kor_label, refused_checks

from gsomia.core.access import Person
from gsomia.errors import (
    AccessDenied,
    ConflictError,
    InvalidInputError,
    ItemGoneError,
    LabelError,
    NotFoundError,
    UnknownNameError,
)
from gsomia.node import Node
from gsomia.store import ItemFilter
from gsomia.testing import FakeClock

GSOMIA = "kor-jpn-gsomia-2016"


def _received(node: Node, item_id: str, **label: object) -> None:
    node.items.ingest(
        None,
        label=kor_label(**label),
        payload=json.dumps({"id": item_id}).encode(),
        item_id=item_id,
        received_from="KOR",
        agreement=GSOMIA,
    )


def test_a_derivative_takes_the_strictest_label_and_is_counted_in_each_source(
    jpn_node: Node, people: dict[str, Person]
) -> None:
    _received(jpn_node, "k1")
    _received(
        jpn_node, "k2", classification="군사III급비밀", releasable_to=["JPN", "USA"], caveats=["G2G-ONLY"]
    )
    derived = jpn_node.duties.derive(
        people["tanaka"], "derivative", ["k1", "k2"], payload=b'{"summary": 1}', item_id="k-sum"
    )
    assert derived.label.originator == "KOR"
    assert derived.label.classification == "군사II급비밀"  # the higher of the two
    assert derived.label.releasable_to == frozenset({"JPN"})  # only where both may go
    assert derived.label.caveats == frozenset({"G2G-ONLY"})  # every caveat of every source
    assert derived.label.alternative_for("JPN").classification == "極秘"  # type: ignore[union-attr]
    item, payload = jpn_node.items.read(people["tanaka"], "k-sum")
    assert (item.label, payload) == (derived.label, b'{"summary": 1}')
    assert [r.kind for r in jpn_node.items.inventory(people["tanaka"], "k1")] == ["received", "derivative"]
    assert [r.kind for r in jpn_node.items.inventory(people["tanaka"], "k-sum")] == ["derived"]
    copy = jpn_node.duties.derive(people["tanaka"], "copy", ["k2"], item_id="k2-copy")
    assert jpn_node.items.read(people["tanaka"], "k2-copy")[1] == b'{"id": "k2"}'  # a copy reuses the payload
    assert copy.label.classification == "군사III급비밀"


def test_derivations_refused_with_nothing_stored(jpn_node: Node, people: dict[str, Person]) -> None:
    _received(jpn_node, "k1")
    jpn_node.items.ingest(people["tanaka"], label=jpn_label(), payload=b"{}", item_id="j1")
    before = jpn_node.store.count_items()
    with pytest.raises(AccessDenied, match="clearance"):  # an under-cleared person makes no copy
        jpn_node.duties.derive(people["sato"], "copy", ["k1"])
    with pytest.raises(LabelError, match="same originator"):
        jpn_node.duties.derive(people["tanaka"], "derivative", ["k1", "j1"], payload=b"{}")
    with pytest.raises(LabelError, match="exactly one source"):
        jpn_node.duties.derive(people["tanaka"], "copy", ["k1", "j1"])
    with pytest.raises(InvalidInputError, match="needs its own payload"):
        jpn_node.duties.derive(people["tanaka"], "translation", ["k1"])
    with pytest.raises(InvalidInputError, match="copy, translation or derivative"):
        jpn_node.duties.derive(people["tanaka"], "photocopy", ["k1"])
    assert jpn_node.store.count_items() == before
    refused = [r for r in jpn_node.store.audit(kind="item.derive") if r.outcome == "refused"]
    assert len(refused) == 5


def test_a_visitor_reads_only_during_the_visit_and_up_to_its_level(
    jpn_node: Node, people: dict[str, Person], clock: FakeClock
) -> None:
    visitor = add(jpn_node, "kim", "KOR", "군사II급비밀", ["dprk-missile"], ["analyst"])
    _received(jpn_node, "k-secret")
    _received(jpn_node, "k-conf", classification="군사III급비밀")
    jpn_node.items.read(visitor, "k-secret")  # not yet a visitor: the ordinary rules
    with pytest.raises(AccessDenied, match="role"):
        jpn_node.duties.authorise_visit(
            people["sato"], "kim", highest="秘", starts=clock.now, ends=clock.now, purpose="x"
        )
    with pytest.raises(UnknownNameError):
        jpn_node.duties.authorise_visit(
            None,
            "kim",
            highest="군사II급비밀",
            starts=clock.now,
            ends=clock.now + timedelta(hours=2),
            purpose="x",
        )
    with pytest.raises(InvalidInputError, match="ends after it starts"):
        jpn_node.duties.authorise_visit(
            None, "kim", highest="秘", starts=clock.now, ends=clock.now, purpose="x"
        )
    visit = jpn_node.duties.authorise_visit(
        None, "kim", highest="秘", starts=clock.now, ends=clock.now + timedelta(hours=2), purpose="liaison"
    )
    assert visit["highest"] == "秘"
    jpn_node.items.read(visitor, "k-conf")
    with pytest.raises(NotFoundError):
        jpn_node.items.read(visitor, "k-secret")
    assert re.search(r"visit \w+ allows up to 秘", refused_checks(jpn_node, "k-secret")[0]["reason"])
    page = jpn_node.items.list_items(visitor, ItemFilter())
    assert ([i.id for i in page.items], page.withheld) == (["k-conf"], 1)
    clock.advance(hours=2)
    with pytest.raises(NotFoundError):
        jpn_node.items.read(visitor, "k-conf")
    assert "no visit in force" in refused_checks(jpn_node, "k-conf")[0]["reason"]
    jpn_node.items.read(people["tanaka"], "k-secret")  # people who are not visitors are not affected


def test_a_visit_ended_early_is_no_longer_in_force_and_its_visitor_stays_a_visitor(
    jpn_node: Node, people: dict[str, Person], clock: FakeClock
) -> None:
    """Revoked now, or shortened, a visit keeps its record with the earlier end (audited, the old end
    named): the visitor reads nothing from then on, and never reads as an ordinary reader would."""
    visitor = add(jpn_node, "kim", "KOR", "군사II급비밀", ["dprk-missile"], ["analyst"])
    _received(jpn_node, "k-conf", classification="군사III급비밀")
    visit = jpn_node.duties.authorise_visit(
        None, "kim", highest="秘", starts=clock.now, ends=clock.now + timedelta(hours=2), purpose="liaison"
    )
    later = jpn_node.duties.authorise_visit(
        None, "kim", highest="秘", starts=clock.now + timedelta(days=1), ends=clock.now + timedelta(days=2),
        purpose="liaison",
    )  # fmt: skip
    jpn_node.items.read(visitor, "k-conf")
    with pytest.raises(AccessDenied, match="role"):  # an analyst may not end it
        jpn_node.duties.end_visit(people["sato"], visit["id"])
    with pytest.raises(InvalidInputError, match="must be earlier"):  # ending is never extending
        jpn_node.duties.end_visit(None, visit["id"], clock.now + timedelta(hours=3))
    with pytest.raises(NotFoundError):
        jpn_node.duties.end_visit(None, "0" * 32)
    shortened = jpn_node.duties.end_visit(None, visit["id"], clock.now + timedelta(hours=1))
    assert shortened["ends"] == (clock.now + timedelta(hours=1)).isoformat()
    jpn_node.items.read(visitor, "k-conf")  # still within the shortened visit
    revoked = jpn_node.duties.end_visit(None, visit["id"])  # now
    assert revoked["ends"] == clock.now.isoformat()
    with pytest.raises(NotFoundError):
        jpn_node.items.read(visitor, "k-conf")
    assert "no visit in force" in refused_checks(jpn_node, "k-conf")[0]["reason"]
    # withdrawn before it began: it ends at its start, never in force, and its record stays
    withdrawn = jpn_node.duties.end_visit(None, later["id"])
    assert withdrawn["ends"] == withdrawn["starts"] == later["starts"]
    clock.advance(days=1, hours=1)
    with pytest.raises(NotFoundError):  # still a visitor (two records), in no visit: reads nothing
        jpn_node.items.read(visitor, "k-conf")
    ended = [json.loads(r.detail) for r in jpn_node.store.audit(kind="visit.end") if r.outcome == "allowed"]
    assert [e["visit"] for e in ended] == [visit["id"], visit["id"], later["id"]]
    assert ended[0]["was"] == visit["ends"]


def test_a_recorded_rules_change_flags_the_affected_items(jpn_node: Node, people: dict[str, Person]) -> None:
    _received(jpn_node, "k-secret")
    _received(jpn_node, "k-conf", classification="군사III급비밀")
    jpn_node.items.ingest(
        people["tanaka"], label=jpn_label(classification="秘"), payload=b"{}", item_id="j-conf"
    )
    authority = jpn_node.duties.add_authority(
        None, "jpn", "mod", "Ministry of Defense", "competent authority"
    )
    assert authority["party"] == "JPN"
    with pytest.raises(ConflictError):
        jpn_node.duties.add_authority(None, "JPN", "mod", "again", "")
    with pytest.raises(UnknownNameError):
        jpn_node.duties.record_rules(
            None, "JPN", title="t", summary="", levels=["TOP"], effective=datetime(2024, 4, 1, tzinfo=UTC)
        )
    rules = jpn_node.duties.record_rules(
        None,
        "JPN",
        title="Act on the Protection of Specially Designated Secrets, amended",
        summary="storage rules for 秘",
        levels=["hi"],  # the romanised alias works too
        effective=datetime(2024, 4, 1, tzinfo=UTC),
    )
    assert (rules["version"], rules["levels"], sorted(rules["flagged"])) == (1, ["秘"], ["j-conf", "k-conf"])
    again = jpn_node.duties.record_rules(
        None,
        "KOR",
        title="Military secrets rules",
        summary="",
        levels=[],
        effective=datetime(2024, 5, 1, tzinfo=UTC),
    )
    assert (again["version"], sorted(again["flagged"])) == (1, ["k-conf", "k-secret"])
    assert {(f["item_id"], f["party"]) for f in jpn_node.duties.flags()} == {
        ("j-conf", "JPN"),
        ("k-conf", "JPN"),
        ("k-conf", "KOR"),
        ("k-secret", "KOR"),
    }
    assert [a["id"] for a in jpn_node.duties.authorities("JPN")] == ["mod"]
    assert [r["version"] for r in jpn_node.duties.rules("JPN")] == [1]


def test_after_termination_protection_and_duties_go_on_and_the_report_lists_what_is_held(
    jpn_node: Node, people: dict[str, Person], clock: FakeClock
) -> None:
    _received(jpn_node, "k1")
    _received(jpn_node, "k2")
    officer = add(jpn_node, "officer", "JPN", "特定秘密", ["dprk-missile"], ["security_officer"])
    gsomia = jpn_node.catalogue.agreement(GSOMIA).what_if(without=["2019-11-22-notice-suspended"])
    ended = Node(jpn_node.config, catalogue=jpn_node.catalogue.replacing(gsomia), clock=clock)
    try:
        assert not gsomia.state_at(clock.now).in_force
        with pytest.raises(NotFoundError):  # access checks unchanged: still refused to the under-cleared
            ended.items.read(people["sato"], "k1")
        ended.items.read(people["tanaka"], "k1")  # and still allowed to the cleared
        ended.duties.destroy(officer, "k2", method="shredding", witness="tanaka", reason="purpose ended")
        with pytest.raises(ItemGoneError):
            ended.items.read(people["tanaka"], "k2")
        report = ended.duties.termination_report(officer)
        kor = next(p for p in report["partners"] if p["party"] == "KOR")
        assert {a["agreement"]: a["in_force"] for a in kor["agreements"]}[GSOMIA] is False
        assert [(i["item"], i["status"]) for i in kor["held_here"]] == [("k1", "held"), ("k2", "destroyed")]
        with pytest.raises(AccessDenied, match="role"):
            ended.duties.termination_report(people["tanaka"])
    finally:
        ended.close()


def test_items_whose_purpose_ended_or_whose_agreement_ended_queue_for_return_or_destruction(
    jpn_node: Node, people: dict[str, Person]
) -> None:
    """ROK–Japan GSOMIA Art. 6(h) (return or destroy when no longer needed for its purpose) and
    Art. 13 (destruction): the holder's queue names each item due, and why; destroying it takes it
    off. A person without a handler's role cannot see the queue, nor end a purpose they cannot read."""
    officer = add(jpn_node, "officer", "JPN", "特定秘密", ["dprk-missile"], ["security_officer"])
    witness = add(jpn_node, "witness", "JPN", "極秘", ["dprk-missile"], ["security_officer"])
    _received(jpn_node, "k-purpose")
    _received(jpn_node, "k-kept")
    jpn_node.items.ingest(officer, label=jpn_label(), payload=b"{}", item_id="j-own")
    assert jpn_node.duties.disposal_queue(officer) == []
    jpn_node.duties.end_purpose(officer, "k-purpose", "the 2024 exercise concluded")
    jpn_node.duties.end_purpose(officer, "j-own", "our own item: nothing to return")
    queue = jpn_node.duties.disposal_queue(officer)
    assert [q["item"] for q in queue] == ["k-purpose"]
    assert queue[0]["return_to"] == "KOR"
    assert "the 2024 exercise concluded" in queue[0]["why"][0]
    with pytest.raises(InvalidInputError, match="already recorded"):
        jpn_node.duties.end_purpose(officer, "k-purpose", "again")
    with pytest.raises(AccessDenied):
        jpn_node.duties.disposal_queue(people["tanaka"])  # an analyst: not a handler
    low = add(jpn_node, "low", "JPN", "秘", ["dprk-missile"], ["security_officer"])
    with pytest.raises(AccessDenied):
        jpn_node.duties.end_purpose(low, "k-kept", "not cleared for it")
    assert jpn_node.duties.disposal_queue(low) == []  # nothing of an item they may not read (14 §6)
    jpn_node.duties.destroy(
        officer, "k-purpose", method="crypto-erase", witness=witness.id, reason="purpose ended"
    )
    assert jpn_node.duties.disposal_queue(officer) == []


def test_items_received_under_an_agreement_that_ended_queue_for_return(
    jpn_node: Node, clock: FakeClock
) -> None:
    """Art. 21.4: after termination what was provided stays protected, and goes back to its
    originator or is destroyed: without the 2019 suspension, KOR's item is due at JPN from
    2019-11-23, and the release engine still lets it go back to KOR (Art. 6(h))."""
    from gsomia.core.policy import ReleaseRequest

    gsomia = jpn_node.catalogue.agreement(GSOMIA).what_if(without=["2019-11-22-notice-suspended"])
    what_if = jpn_node.catalogue.replacing(gsomia)
    node = Node(jpn_node.config, catalogue=what_if, clock=clock)
    try:
        officer = add(node, "officer", "JPN", "特定秘密", ["dprk-missile"], ["security_officer"])
        _received(node, "k-2019", created="2019-09-01T09:00:00+09:00")
        before = node.duties.disposal_queue(officer, datetime(2019, 11, 22, 12, tzinfo=UTC))
        assert before == []
        after = datetime(2019, 11, 23, 0, 0, 1, tzinfo=UTC)
        queue = node.duties.disposal_queue(officer, after)
        assert [q["item"] for q in queue] == ["k-2019"]
        assert f"{GSOMIA} is terminated" in queue[0]["why"][0]
        label = node.kernel.items.item(node.store.get_item("k-2019")).label  # type: ignore[arg-type]
        back = node.kernel.engine.decide(ReleaseRequest(label, "JPN", "KOR", "threat-assessment"), at=after)
        assert back.allowed, back.failed()
    finally:
        node.close()
