"""Portions and tearlines (issue 20 §2) between real nodes over the in-memory transport: a KOR report
whose body is 군사II급비밀 for the USA only and whose tearline is 군사III급비밀 releasable to JPN.

KOR signs the RFC 9162 root over the portions with the item's label; JPN receives the tearline alone
with its inclusion proof and verifies it before storing. The adversary's tests: a hub that adds,
swaps or alters a portion is refused; nothing the recipient was not released is in its envelope; a
reader not cleared for the body sees the tearline only, under the tearline's banner, and nothing
(no count, no error) says there is more.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.node_fixtures import in_memory_network

from gsomia._codec import label_to_dict
from gsomia.core.access import Person
from gsomia.crypto.envelope import open_envelope, seal
from gsomia.errors import InvalidInputError, ItemGoneError, LabelError, NotFoundError, ReleaseRefused
from gsomia.kernel import NewPortion
from gsomia.node import Node, PortionIngest
from gsomia.store import ItemFilter
from gsomia.testing import FakeClock

KST_2024 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
BODY = b'{"text": "USA-only body: the source and the sensor"}'
TEARLINE = b'{"text": "tearline: a launch at 05:12 KST"}'


@pytest.fixture
def net(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """KOR, the USA and JPN in this process over the in-memory transport, on 1 March 2024."""
    yield from in_memory_network(tmp_path / "net", KST_2024)


def _label(clock: FakeClock, classification: str, releasable_to: list[str]) -> dict[str, Any]:
    return {
        "originator": "KOR",
        "classification": classification,
        "releasable_to": releasable_to,
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (clock.now - HOUR).isoformat(),
    }


def report(net: dict[str, Any], item_id: str = "r1") -> None:
    kor: Node = net["nodes"]["KOR"]
    clock = net["clock"]
    kor.items.ingest(
        kor.people.person("officer"),
        label=None,
        payload=b"",
        item_id=item_id,
        portions=[
            PortionIngest("body", _label(clock, "군사II급비밀", ["USA"]), BODY),
            PortionIngest("tearline", _label(clock, "군사III급비밀", ["JPN", "USA"]), TEARLINE),
        ],
    )


def deliver(net: dict[str, Any]) -> list[Any]:
    done: list[Any] = []
    for _ in range(4):
        moved = [
            d for p in ("KOR", "USA", "JPN") for d in net["nodes"][p].exchange.deliver_due(net["transport"])
        ]
        done += moved
        if not moved:
            break
    return done


def junior(node: Node, clearance: str) -> Person:
    node.people.add_person(
        None,
        {
            "id": "junior",
            "name": "junior analyst",
            "nationality": node.party,
            "clearance": clearance,
            "need_to_know": ["dprk-missile"],
            "roles": ["analyst", "release_officer"],
        },
    )
    return node.people.person("junior")


def test_kor_releases_the_report_and_jpn_holds_only_the_tearline_verified(net: dict[str, Any]) -> None:
    report(net)
    kor, jpn = net["nodes"]["KOR"], net["nodes"]["JPN"]
    entry = kor.exchange.release(kor.people.person("officer"), "r1", "JPN")
    portions = [c for c in json.loads(entry.decision)["checks"] if c["rule"] == "portion"]
    assert [(c["passed"], c["reason"].split(":")[0]) for c in portions] == [
        (False, "body"),
        (True, "tearline"),
    ]  # the release explains per portion: the body withheld (releasable to USA only), the tearline sent
    assert "releasab" in portions[0]["reason"]
    assert [d.state for d in deliver(net)] == ["delivered"]
    item, payload = jpn.items.read(jpn.people.person("officer"), "r1")
    assert [m.id for m in item.portions] == ["tearline"]
    assert item.label.classification == "군사III급비밀"  # the banner: the tearline's label
    alt = item.label.alternative_for("JPN")
    assert alt is not None
    seen = json.loads(payload)["portions"]
    assert [(p["id"], p["payload"]) for p in seen] == [("tearline", json.loads(TEARLINE))]
    # what JPN stores: the tearline with its proof against KOR's signed root, nothing of the body
    row = jpn.store.get_item("r1")
    assert row is not None
    content, held = jpn.kernel.items.signed(row)
    assert [p.id for p in held] == ["tearline"]
    assert content.size == 2
    assert b"USA-only" not in jpn.kernel.items.payload(row)
    origin = jpn.exchange.origin_jws("r1")
    assert json.loads(base64.urlsafe_b64decode(origin.split(".")[0] + "=="))["iss"] == "KOR"


def test_the_envelope_to_jpn_carries_no_portion_it_was_not_released(net: dict[str, Any]) -> None:
    report(net)
    kor, jpn = net["nodes"]["KOR"], net["nodes"]["JPN"]
    entry = kor.exchange.release(kor.people.person("officer"), "r1", "JPN")
    opened = open_envelope(jpn.ring, entry.envelope, jpn.exchange.peer, net["clock"]())
    assert len(opened.body["portions"]) == 1
    leaf = base64.b64decode(opened.body["portions"][0]["leaf"])
    assert json.loads(leaf)["portion"] == "tearline"
    assert "USA-only" not in json.dumps(opened.body)
    assert base64.b64encode(BODY).decode() not in json.dumps(opened.body)


def test_usa_gets_both_portions_and_reads_the_whole_report(net: dict[str, Any]) -> None:
    report(net)
    kor, usa = net["nodes"]["KOR"], net["nodes"]["USA"]
    kor.exchange.release(kor.people.person("officer"), "r1", "USA")
    assert [d.state for d in deliver(net)] == ["delivered"]
    item, _ = usa.items.read(usa.people.person("officer"), "r1")
    assert [m.id for m in item.portions] == ["body", "tearline"]
    assert item.label.classification == "군사II급비밀"
    assert sorted(item.label.releasable_to) == ["USA"]


def _hub_envelope(net: dict[str, Any], tamper: Any) -> tuple[dict[str, Any], str]:
    """KOR releases the report to JPN through the USA (TISA, 2016); the test stands in for the hub:
    it takes what KOR sent the USA, lets ``tamper`` change the portions, and relays it to JPN."""
    net["clock"].now = datetime(2016, 11, 22, tzinfo=UTC)  # before GSOMIA: only TISA through the US
    report(net)
    kor, usa = net["nodes"]["KOR"], net["nodes"]["USA"]
    entry = kor.exchange.release(kor.people.person("officer"), "r1", "JPN", via="USA", authorise_relay=True)
    body = open_envelope(usa.ring, entry.envelope, usa.exchange.peer, net["clock"]()).body
    body = json.loads(json.dumps(body))
    tamper(body)
    jpn_at_usa = usa.exchange.peer("JPN")
    assert jpn_at_usa is not None
    envelope = seal(usa.ring, jpn_at_usa, body, msg_id="hub-relay", at=net["clock"](), ttl=HOUR)
    (answer,) = net["transport"].push(kor.exchange.peer("JPN"), [envelope])
    return answer, envelope


def _leaf(entry: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.b64decode(entry["leaf"]))
    return data


def _set_leaf(entry: dict[str, Any], data: dict[str, Any]) -> None:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    entry["leaf"] = base64.b64encode(text.encode()).decode()


def test_a_hub_relaying_the_portions_unchanged_is_accepted(net: dict[str, Any]) -> None:
    answer, _ = _hub_envelope(net, lambda _body: None)
    assert answer["status"] == "stored"  # the control: the hub's forgeries below differ only in the tampering
    item, _ = net["nodes"]["JPN"].items.read(net["nodes"]["JPN"].people.person("officer"), "r1")
    assert [m.id for m in item.portions] == ["tearline"]


def _altered(body: dict[str, Any]) -> None:
    data = _leaf(body["portions"][0])
    data["payload"] = base64.b64encode(b'{"text": "tearline: no launch"}').decode()
    _set_leaf(body["portions"][0], data)


def _relabelled(body: dict[str, Any]) -> None:
    data = _leaf(body["portions"][0])
    data["label"]["classification"] = "대외비"
    _set_leaf(body["portions"][0], data)


def _added(body: dict[str, Any]) -> None:
    forged = dict(_leaf(body["portions"][0]), portion="extra")
    extra = {"index": 0, "leaf": "", "proof": body["portions"][0]["proof"]}
    _set_leaf(extra, forged)
    body["portions"].append(dict(extra, index=0))


def _moved(body: dict[str, Any]) -> None:
    body["portions"][0]["index"] = 0  # the tearline is portion 1: claimed as portion 0 (the body's place)


def _swapped(body: dict[str, Any]) -> None:
    data = _leaf(body["portions"][0])
    data["item"] = "another-report"  # a portion of another item (its proof against this root)
    _set_leaf(body["portions"][0], data)


@pytest.mark.parametrize("tamper", [_altered, _relabelled, _added, _moved, _swapped])
def test_a_hub_that_alters_adds_or_swaps_a_portion_is_refused(net: dict[str, Any], tamper: Any) -> None:
    answer, _ = _hub_envelope(net, tamper)
    assert (answer["status"], answer["reason"]) == ("refused", "envelope refused")
    jpn = net["nodes"]["JPN"]
    assert jpn.store.get_item("r1") is None
    refused = [json.loads(r.detail) for r in jpn.store.audit(kind="envelope.refused")]
    assert refused[-1]["reason"] == "bad-portion"


def test_a_hub_that_adds_a_real_portion_the_recipient_may_not_hold_is_refused(net: dict[str, Any]) -> None:
    """The hub holds the body from another release (KOR -> USA) and slips it, proof and all, into the
    envelope for JPN: the proof holds, but the body is not releasable to JPN, so nothing is stored."""
    net["clock"].now = datetime(2016, 11, 22, tzinfo=UTC)
    report(net)
    kor, usa = net["nodes"]["KOR"], net["nodes"]["USA"]
    kor.exchange.release(kor.people.person("officer"), "r1", "USA")
    deliver(net)
    usa_row = usa.store.get_item("r1")
    assert usa_row is not None
    _, usa_held = usa.kernel.items.signed(usa_row)
    body_portion = next(p for p in usa_held if p.id == "body").wire()
    answer, _ = _hub_envelope_again(net, body_portion)
    assert answer["status"] == "refused"
    assert "JPN" in answer["reason"]  # refused by the decision on what it carries (releasable to USA only)
    assert net["nodes"]["JPN"].store.get_item("r1") is None


def _hub_envelope_again(net: dict[str, Any], extra: dict[str, Any]) -> tuple[dict[str, Any], str]:
    kor, usa = net["nodes"]["KOR"], net["nodes"]["USA"]
    entry = kor.exchange.release(kor.people.person("officer"), "r1", "JPN", via="USA", authorise_relay=True)
    body = json.loads(
        json.dumps(open_envelope(usa.ring, entry.envelope, usa.exchange.peer, net["clock"]()).body)
    )
    body["portions"].append(extra)
    jpn_at_usa = usa.exchange.peer("JPN")
    assert jpn_at_usa is not None
    envelope = seal(usa.ring, jpn_at_usa, body, msg_id="hub-adds", at=net["clock"](), ttl=HOUR)
    (answer,) = net["transport"].push(kor.exchange.peer("JPN"), [envelope])
    return answer, envelope


def test_a_reader_not_cleared_for_the_body_sees_the_tearline_under_its_banner(net: dict[str, Any]) -> None:
    report(net)
    kor = net["nodes"]["KOR"]
    reader = junior(kor, "군사III급비밀")
    item, payload = kor.items.read(reader, "r1")
    assert [m.id for m in item.portions] == ["tearline"]
    assert item.label.classification == "군사III급비밀"
    assert sorted(item.label.releasable_to) == ["JPN", "USA"]
    assert item.payload_size == len(TEARLINE)  # nothing says how much more there is
    assert b"body" not in payload
    assert b"USA-only" not in payload
    assert json.loads(payload) == {
        "portions": [
            {
                "id": "tearline",
                "label": json.loads(payload)["portions"][0]["label"],
                "payload": json.loads(TEARLINE),
                "payload_type": "json",
            }
        ]
    }
    (listed,) = kor.items.list_items(reader, ItemFilter()).items
    assert (listed.label.classification, [m.id for m in listed.portions]) == ("군사III급비밀", ["tearline"])
    # the full reader sees both, under the body's banner
    full, _ = kor.items.read(kor.people.person("officer"), "r1")
    assert ([m.id for m in full.portions], full.label.classification) == (
        ["body", "tearline"],
        "군사II급비밀",
    )


def test_a_release_by_an_officer_not_cleared_for_the_body_never_names_it(net: dict[str, Any]) -> None:
    report(net)
    kor = net["nodes"]["KOR"]
    officer = junior(kor, "군사III급비밀")
    entry = kor.exchange.release(
        officer, "r1", "USA"
    )  # the USA may have both; this officer sends what they see
    text = json.dumps(json.loads(entry.decision))
    assert "body" not in text.replace("tearline", "")
    assert [c["reason"] for c in json.loads(entry.decision)["checks"] if c["rule"] == "portion"] == [
        "tearline: released (군사III급비밀)"
    ]
    deliver(net)
    usa = net["nodes"]["USA"]
    item, _ = usa.items.read(usa.people.person("officer"), "r1")
    assert [m.id for m in item.portions] == ["tearline"]


def test_a_reader_cleared_for_no_portion_is_told_the_item_is_unknown(net: dict[str, Any]) -> None:
    report(net)
    kor = net["nodes"]["KOR"]
    reader = junior(kor, "대외비")
    with pytest.raises(NotFoundError) as refused:
        kor.items.read(reader, "r1")
    with pytest.raises(NotFoundError) as unknown:
        kor.items.read(reader, "no-such-item")
    assert str(refused.value).replace("r1", "X") == str(unknown.value).replace("no-such-item", "X")
    assert kor.items.list_items(reader, ItemFilter()).items == ()


def test_no_portion_releasable_refuses_the_release_with_every_portions_reason(net: dict[str, Any]) -> None:
    clock = net["clock"]
    kor = net["nodes"]["KOR"]
    kor.items.ingest(
        kor.people.person("officer"),
        label=None,
        payload=b"",
        item_id="usa-only",
        portions=[PortionIngest("a", _label(clock, "군사II급비밀", ["USA"]), BODY)],
    )
    with pytest.raises(ReleaseRefused, match="a: withheld"):
        kor.exchange.release(kor.people.person("officer"), "usa-only", "JPN")
    assert kor.exchange.fed.outbox() == []


def test_portions_are_this_nodes_own_and_must_differ(net: dict[str, Any]) -> None:
    clock = net["clock"]
    kor = net["nodes"]["KOR"]
    officer = kor.people.person("officer")
    jpn_label = dict(_label(clock, "秘", ["KOR"]), originator="JPN")
    with pytest.raises(LabelError):
        kor.items.ingest(officer, label=None, payload=b"", portions=[PortionIngest("a", jpn_label, BODY)])
    twice = [PortionIngest("a", _label(clock, "군사III급비밀", ["JPN"]), BODY)] * 2
    with pytest.raises(Exception, match="differ"):
        kor.items.ingest(officer, label=None, payload=b"", portions=twice)
    assert kor.store.count_items() == 0


def test_duties_per_item_reach_the_tearline_and_reclassifying_the_whole_is_refused(
    net: dict[str, Any],
) -> None:
    """Recall and destruction act on the item as held (at JPN: the tearline); a reclassification of
    the whole would leave the portions' own signed labels behind, so it is refused; a copy holds the
    portions its maker may read, under the highest of their labels."""
    report(net)
    kor, jpn = net["nodes"]["KOR"], net["nodes"]["JPN"]
    kor.exchange.release(kor.people.person("officer"), "r1", "JPN")
    deliver(net)
    with pytest.raises(InvalidInputError, match="in portions"):
        kor.duties.reclassify(kor.people.person("officer"), "r1", "군사III급비밀", "downgrade")
    # a copy holds what its maker may read (at JPN: the tearline), under that portion's label
    copy = jpn.duties.derive(jpn.people.person("officer"), "copy", ["r1"], item_id="r1-copy")
    assert copy.label.classification == "군사III급비밀"
    _, copied = jpn.items.read(jpn.people.person("officer"), "r1-copy")
    assert [p["id"] for p in json.loads(copied)["portions"]] == ["tearline"]
    # at KOR, a maker cleared for the tearline alone copies the tearline alone
    junior_kor = junior(kor, "군사III급비밀")
    mine = kor.duties.derive(junior_kor, "copy", ["r1"], item_id="r1-junior")
    assert mine.label.classification == "군사III급비밀"
    _, payload = kor.items.read(junior_kor, "r1-junior")
    assert b"USA-only" not in payload
    assert [p["id"] for p in json.loads(payload)["portions"]] == ["tearline"]
    kor.duties.recall(kor.people.person("officer"), "r1", "the source was burned")
    deliver(net)
    row = jpn.store.get_item("r1")
    assert row is not None
    assert row.state == "recalled"
    assert row.payload == b""
    with pytest.raises(ItemGoneError):
        jpn.items.read(jpn.people.person("officer"), "r1")


def test_a_holder_destroys_the_tearline_it_holds(net: dict[str, Any]) -> None:
    report(net)
    kor, jpn = net["nodes"]["KOR"], net["nodes"]["JPN"]
    kor.exchange.release(kor.people.person("officer"), "r1", "JPN")
    deliver(net)
    jpn.people.add_person(
        None,
        {
            "id": "witness",
            "name": "witness",
            "nationality": "JPN",
            "clearance": "極秘",
            "need_to_know": ["dprk-missile"],
            "roles": ["security_officer"],
        },
    )
    jpn.duties.destroy(
        jpn.people.person("officer"), "r1", method="crypto-erase", witness="witness", reason="done"
    )
    row = jpn.store.get_item("r1")
    assert row is not None
    assert (row.state, row.payload, row.origin_jws) == ("destroyed", b"", None)


def test_the_report_sent_again_is_already_held_and_another_under_its_id_is_refused(
    net: dict[str, Any],
) -> None:
    report(net)
    kor, jpn = net["nodes"]["KOR"], net["nodes"]["JPN"]
    kor.exchange.release(kor.people.person("officer"), "r1", "JPN")
    kor.exchange.release(kor.people.person("officer"), "r1", "JPN")
    assert [d.state for d in deliver(net)] == ["delivered", "delivered"]
    statuses = [json.loads(r.detail)["status"] for r in jpn.store.audit(kind="envelope.received")]
    assert sorted(statuses) == ["already-held", "stored"]
    # KOR's other report under the same id (a new root): refused at JPN, never "already held"
    portion = NewPortion(
        "tearline",
        kor.catalogue.label(
            originator="KOR",
            classification="군사III급비밀",
            releasable_to=["JPN"],
            purpose="threat-assessment",
            topics=["dprk-missile"],
            created=net["clock"]() - HOUR,
        ),
        "json",
        b'{"text": "another report"}',
    )
    origin, _, signed = kor.kernel.items.sign_portions("r1", [portion], net["clock"]())
    body = {
        "kind": "item",
        "origin": origin,
        "portions": [p.wire() for p in signed],
        "purpose": "threat-assessment",
        "agreement": "kor-jpn-gsomia-2016",
        "route": {"sender": "KOR", "via": [], "recipient": "JPN"},
        "consents": [],
    }
    to_jpn = kor.exchange.peer("JPN")
    assert to_jpn is not None
    envelope = seal(kor.ring, to_jpn, body, msg_id="other-r1", at=net["clock"](), ttl=HOUR)
    (answer,) = net["transport"].push(to_jpn, [envelope])
    assert answer["status"] == "refused"
    assert "different item" in answer["reason"]
    _, held = jpn.kernel.items.signed(jpn.store.get_item("r1"))  # type: ignore[arg-type]
    assert json.loads(held[0].payload) == json.loads(TEARLINE)


def test_the_outbox_shows_a_release_of_an_item_in_portions_only_to_readers_of_all_of_it(
    net: dict[str, Any],
) -> None:
    """The release's decision explains every portion (``body: withheld ...``): an officer cleared for
    the tearline alone is not shown that entry, so nothing there speaks of the body to them."""
    report(net)
    kor = net["nodes"]["KOR"]
    entry = kor.exchange.release(kor.people.person("officer"), "r1", "JPN")
    assert "body: withheld" in entry.decision
    officer = junior(kor, "군사III급비밀")
    assert [e.msg_id for e in kor.exchange.outbox_seen_by(kor.people.person("officer"))] == [entry.msg_id]
    assert kor.exchange.outbox_seen_by(officer) == []


def test_a_filter_on_an_unseen_portions_level_or_topic_does_not_find_the_item(net: dict[str, Any]) -> None:
    """The store indexes the whole item (the body's level, every topic): a reader of the tearline
    alone filtering on the body's level or a topic only the body has must not find it."""
    clock = net["clock"]
    kor = net["nodes"]["KOR"]
    body = dict(_label(clock, "군사II급비밀", ["USA"]), topics=["dprk-nuclear"])
    tearline = _label(clock, "군사III급비밀", ["JPN", "USA"])
    kor.items.ingest(
        kor.people.person("officer"),
        label=None,
        payload=b"",
        item_id="r2",
        portions=[PortionIngest("body", body, BODY), PortionIngest("tearline", tearline, TEARLINE)],
    )
    reader = junior(kor, "군사III급비밀")
    officer = kor.people.person("officer")
    assert [i.id for i in kor.items.list_items(officer, ItemFilter(classification="군사II급비밀")).items] == [
        "r2"
    ]
    assert kor.items.list_items(reader, ItemFilter(classification="군사II급비밀")).items == ()
    assert [i.id for i in kor.items.list_items(officer, ItemFilter(topic="dprk-nuclear")).items] == ["r2"]
    assert kor.items.list_items(reader, ItemFilter(topic="dprk-nuclear")).items == ()
    assert [i.id for i in kor.items.list_items(reader, ItemFilter(topic="dprk-missile")).items] == ["r2"]


def _witness(node: Node, clearance: str) -> None:
    node.people.add_person(
        None,
        {
            "id": "witness",
            "name": "witness",
            "nationality": node.party,
            "clearance": clearance,
            "need_to_know": ["dprk-missile"],
            "roles": ["security_officer"],
        },
    )


def test_a_holder_destroys_one_portion_and_the_originator_gets_its_record(net: dict[str, Any]) -> None:
    """The USA holds the body and the tearline; it destroys the body alone (Art. 13): the tearline
    stays, still proved by KOR's root, under the tearline's banner; KOR gets the signed record."""
    report(net)
    kor, usa = net["nodes"]["KOR"], net["nodes"]["USA"]
    kor.exchange.release(kor.people.person("officer"), "r1", "USA")
    deliver(net)
    _witness(usa, "TOP SECRET")
    out = usa.duties.destroy(
        usa.people.person("officer"),
        "r1",
        method="crypto-erase",
        witness="witness",
        reason="the body's purpose ended",
        notify=True,
        portion="body",
    )
    assert (out["portion"], out["holder"]) == ("body", "USA")
    item, payload = usa.items.read(usa.people.person("officer"), "r1")
    assert [m.id for m in item.portions] == ["tearline"]
    assert item.label.classification == "군사III급비밀"  # the banner follows what is left
    assert b"USA-only" not in payload
    row = usa.store.get_item("r1")
    assert row is not None
    _, held = usa.kernel.items.signed(row)  # the tearline still checks against KOR's root
    assert [p.id for p in held] == ["tearline"]
    assert base64.b64encode(BODY) not in usa.kernel.items.payload(row)
    assert row.payload_size == len(TEARLINE)
    deliver(net)
    records = kor.duties.destructions(kor.people.person("officer"), "r1")
    assert [(r["portion"], r["holder"], r["method"]) for r in records] == [("body", "USA", "crypto-erase")]
    assert [r["portion"] for r in usa.duties.destructions(usa.people.person("officer"), "r1")] == ["body"]
    # the last portion held is the item: destroyed as such, not as a portion
    with pytest.raises(InvalidInputError, match="last portion"):
        usa.duties.destroy(
            usa.people.person("officer"),
            "r1",
            method="shredding",
            witness="witness",
            reason="r",
            portion="tearline",
        )
    with pytest.raises(NotFoundError):  # gone is gone
        usa.duties.destroy(
            usa.people.person("officer"),
            "r1",
            method="shredding",
            witness="witness",
            reason="r",
            portion="body",
        )


def test_a_portion_destruction_names_nothing_the_destroyer_may_not_read(net: dict[str, Any]) -> None:
    """At KOR a reader cleared for the tearline alone cannot destroy the body (to them it does not
    exist: the same answer as a portion that never was), and sees no record about it."""
    report(net)
    kor = net["nodes"]["KOR"]
    reader = junior(kor, "군사III급비밀")
    _witness(kor, "군사I급비밀")
    with pytest.raises(NotFoundError) as body:
        kor.duties.destroy(reader, "r1", method="shredding", witness="witness", reason="r", portion="body")
    with pytest.raises(NotFoundError) as nothing:
        kor.duties.destroy(reader, "r1", method="shredding", witness="witness", reason="r", portion="annex")
    assert str(body.value).replace("body", "X") == str(nothing.value).replace("annex", "X")
    kor.duties.destroy(
        kor.people.person("officer"), "r1", method="shredding", witness="witness", reason="r", portion="body"
    )
    assert kor.duties.destructions(reader, "r1") == []
    assert [r["portion"] for r in kor.duties.destructions(kor.people.person("officer"), "r1")] == ["body"]


def test_a_record_about_a_portion_never_sent_to_the_holder_is_refused(net: dict[str, Any]) -> None:
    """JPN holds the tearline; a record it signs saying it destroyed the body (which it never got)
    is refused at KOR, and nothing is recorded."""
    from gsomia.core.destruction import DestructionMethod, DestructionRecord
    from gsomia.crypto.envelope import sign_origin
    from gsomia.duties._messages import destruction_content

    report(net)
    kor, jpn = net["nodes"]["KOR"], net["nodes"]["JPN"]
    kor.exchange.release(kor.people.person("officer"), "r1", "JPN")
    deliver(net)
    now = net["clock"]()
    answers = []
    for portion in ("body", "tearline"):
        record = DestructionRecord(
            "r1", "JPN", "KOR", "군사II급비밀", "officer", "witness", DestructionMethod.SHREDDING, "r", now
        )
        jws = sign_origin(jpn.ring, destruction_content(record, portion=portion), now)
        to_kor = jpn.exchange.peer("KOR")
        assert to_kor is not None
        envelope = seal(
            jpn.ring,
            to_kor,
            {"kind": "duty", "to": "KOR", "duty": jws},
            msg_id=f"d-{portion}",
            at=now,
            ttl=HOUR,
        )
        (answer,) = net["transport"].push(to_kor, [envelope])
        answers.append(answer)
    assert answers[0]["status"] == "refused"
    assert answers[1]["status"] == "recorded"  # the control: the tearline did go to JPN
    refused = [json.loads(r.detail) for r in kor.store.audit(kind="envelope.refused")]
    assert "portion body of item r1 was never sent to JPN" in json.dumps(refused, ensure_ascii=False)
    records = kor.duties.destructions(kor.people.person("officer"), "r1")
    assert [(r["portion"], r["holder"]) for r in records] == [("tearline", "JPN")]


def _released_to_jpn_and_usa(net: dict[str, Any]) -> None:
    report(net)
    kor = net["nodes"]["KOR"]
    kor.exchange.release(kor.people.person("officer"), "r1", "JPN")  # the tearline alone
    kor.exchange.release(kor.people.person("officer"), "r1", "USA")  # both
    assert sorted(d.state for d in deliver(net)) == ["delivered", "delivered"]


def test_the_originator_reclassifies_the_tearline_and_every_holder_of_it_follows(net: dict[str, Any]) -> None:
    """KOR raises the tearline to 군사II급비밀: signed again under a new root (version 2), applied at
    KOR, at JPN (which holds the tearline alone) and at the USA (both); each holder checks its
    portions against the new root before applying it, and the banner follows."""
    _released_to_jpn_and_usa(net)
    kor, jpn, usa = (net["nodes"][p] for p in ("KOR", "JPN", "USA"))
    change = kor.duties.reclassify(
        kor.people.person("officer"),
        "r1",
        "군사II급비밀",
        "the launch site is now sensitive",
        portion="tearline",
    )
    assert change.version == 2
    mine, _ = kor.items.read(kor.people.person("officer"), "r1")
    assert [(m.id, m.label.classification) for m in mine.portions] == [
        ("body", "군사II급비밀"),
        ("tearline", "군사II급비밀"),
    ]
    deliver(net)
    item, payload = jpn.items.read(jpn.people.person("officer"), "r1")
    assert [(m.id, m.label.classification) for m in item.portions] == [("tearline", "군사II급비밀")]
    assert item.label.classification == "군사II급비밀"  # the banner of what JPN holds
    assert item.label_version == 2
    assert json.loads(payload)["portions"][0]["payload"] == json.loads(TEARLINE)  # the payload unchanged
    row = jpn.store.get_item("r1")
    assert row is not None
    content, held = jpn.kernel.items.signed(row)  # proved against KOR's new root
    assert (content.label_version, [p.id for p in held]) == (2, ["tearline"])
    alternative = item.label.alternative_for("JPN")
    assert alternative is not None
    assert alternative.classification == "極秘"  # JPN's equivalent of the new level
    both, _ = usa.items.read(usa.people.person("officer"), "r1")
    assert [(m.id, m.label.classification) for m in both.portions] == [
        ("body", "군사II급비밀"),
        ("tearline", "군사II급비밀"),
    ]
    status = kor.duties.label_status(kor.people.person("officer"), "r1")
    assert status["changes"][0]["applied"] == ["JPN", "USA"]
    # released again after the change: JPN already holds that root
    kor.exchange.release(kor.people.person("officer"), "r1", "JPN")
    deliver(net)
    statuses = [json.loads(r.detail)["status"] for r in jpn.store.audit(kind="envelope.received")]
    assert statuses[-1] == "already-held"


def test_a_change_to_the_body_is_addressed_to_its_holders_alone(net: dict[str, Any]) -> None:
    """Only the USA holds the body: KOR's downgrade of it is addressed to the USA; JPN is told nothing
    (not even that there is a body), keeps version 1, and its tearline still checks."""
    _released_to_jpn_and_usa(net)
    kor, jpn, usa = (net["nodes"][p] for p in ("KOR", "JPN", "USA"))
    kor.duties.reclassify(
        kor.people.person("officer"), "r1", "군사III급비밀", "source declassified", portion="body"
    )
    messages = [e for e in kor.exchange.fed.outbox() if e.kind == "duty"]
    assert [e.final_recipient for e in messages] == ["USA"]
    deliver(net)
    item, _ = usa.items.read(usa.people.person("officer"), "r1")
    assert [(m.id, m.label.classification) for m in item.portions] == [
        ("body", "군사III급비밀"),
        ("tearline", "군사III급비밀"),
    ]
    assert item.label.classification == "군사III급비밀"  # the banner came down with the body
    row = jpn.store.get_item("r1")
    assert row is not None
    assert row.label_version == 1
    _, held = jpn.kernel.items.signed(row)
    assert [p.id for p in held] == ["tearline"]
    assert jpn.store.audit(kind="duty.label-change") == []


def test_a_non_originator_cannot_change_a_portion(net: dict[str, Any]) -> None:
    """The USA holds both portions; it cannot reclassify one (only KOR may), and a change it signs
    itself and sends JPN as if it were KOR's is refused."""
    _released_to_jpn_and_usa(net)
    usa, jpn = net["nodes"]["USA"], net["nodes"]["JPN"]
    with pytest.raises(InvalidInputError, match="only the originator KOR"):
        usa.duties.reclassify(usa.people.person("officer"), "r1", "SECRET", "ours now", portion="tearline")
    forged = _change_message(net, signer=usa, holder="JPN", portion="tearline", version=2)
    answer = _push(net, usa, "JPN", forged, "forged-change")
    assert answer["status"] == "refused"
    row = jpn.store.get_item("r1")
    assert row is not None
    assert row.label_version == 1


def test_a_stale_portion_change_is_refused(net: dict[str, Any]) -> None:
    """KOR's version 2 of the tearline reaches JPN, then version 3; version 2 sent again (a fresh
    envelope, as a replaying hub would) is refused as stale and changes nothing."""
    _released_to_jpn_and_usa(net)
    kor, jpn = net["nodes"]["KOR"], net["nodes"]["JPN"]
    kor.duties.reclassify(kor.people.person("officer"), "r1", "군사II급비밀", "up", portion="tearline")
    (v2,) = [e for e in kor.exchange.fed.outbox() if e.kind == "duty" and e.final_recipient == "JPN"]
    body = open_envelope(jpn.ring, v2.envelope, jpn.exchange.peer, net["clock"]()).body
    deliver(net)
    kor.duties.reclassify(
        kor.people.person("officer"), "r1", "군사III급비밀", "down again", portion="tearline"
    )
    deliver(net)
    row = jpn.store.get_item("r1")
    assert row is not None
    assert row.label_version == 3
    answer = _push(net, kor, "JPN", body, "replayed-v2")
    assert answer["status"] == "refused"
    refused = json.dumps([json.loads(r.detail) for r in jpn.store.audit(kind="envelope.refused")])
    assert "stale label change" in refused
    item, _ = jpn.items.read(jpn.people.person("officer"), "r1")
    assert (item.label_version, item.label.classification) == (3, "군사III급비밀")


def test_a_change_to_a_portion_the_holder_never_received_is_refused(net: dict[str, Any]) -> None:
    """KOR (signing, addressed to JPN, the right version) names the body, which JPN never got:
    refused; JPN's tearline and version stay as they were and nothing of the body is stored."""
    _released_to_jpn_and_usa(net)
    kor, jpn = net["nodes"]["KOR"], net["nodes"]["JPN"]
    message = _change_message(net, signer=kor, holder="JPN", portion="body", version=2)
    answer = _push(net, kor, "JPN", message, "never-received")
    assert answer["status"] == "refused"
    refused = json.dumps([json.loads(r.detail) for r in jpn.store.audit(kind="envelope.refused")])
    assert "portion body of item r1 was never received here" in refused
    item, _ = jpn.items.read(jpn.people.person("officer"), "r1")
    assert ([m.id for m in item.portions], item.label_version) == (["tearline"], 1)
    # the control: the same message naming the tearline, from KOR, applies
    good = _change_message(net, signer=kor, holder="JPN", portion="tearline", version=2)
    assert _push(net, kor, "JPN", good, "the-tearline")["status"] == "recorded"
    item, _ = jpn.items.read(jpn.people.person("officer"), "r1")
    assert (item.label.classification, item.label_version) == ("군사II급비밀", 2)


def _change_message(
    net: dict[str, Any], *, signer: Node, holder: str, portion: str, version: int
) -> dict[str, Any]:
    """A label change of ``portion`` of KOR's r1 to 군사II급비밀, signed by ``signer``'s node key (with
    a root over the portions signed by it too), telling ``holder`` of the tearline it holds."""
    from gsomia.core.recall import ChangeKind, LabelChange
    from gsomia.crypto.envelope import sign_origin
    from gsomia.duties._messages import HeldPortion, PortionChange, change_content

    kor = net["nodes"]["KOR"]
    now = net["clock"]()
    row = kor.store.get_item("r1")
    assert row is not None
    _, held = kor.kernel.items.signed(row)
    relabelled = [
        NewPortion(
            p.id,
            replace(p.label, classification="군사II급비밀") if p.id == portion else p.label,
            p.payload_type,
            p.payload,
        )
        for p in held
    ]
    content = portioned_root(signer, relabelled, version, now)
    origin, signed = content
    change = LabelChange("r1", "KOR", version, ChangeKind.RECLASSIFY, "군사II급비밀", "why", now)
    tearline = next(p for p in signed if p.id == "tearline")
    told = PortionChange(
        portion,
        (
            HeldPortion(
                "tearline",
                tearline.index,
                label_to_dict(tearline.label),
                tuple(h.hex() for h in tearline.proof),
            ),
        ),
    )
    jws = sign_origin(signer.ring, change_content(change, origin, holder, told), now)
    return {"kind": "duty", "to": holder, "duty": jws}


def portioned_root(signer: Node, portions: list[NewPortion], version: int, now: datetime) -> tuple[str, Any]:
    """The RFC 9162 root over ``portions`` (KOR's item r1) signed by ``signer``'s key, as KOR signs one."""
    from gsomia.core.portions import banner, portion_tree
    from gsomia.crypto.envelope import sign_origin
    from gsomia.kernel import SignedPortion
    from gsomia.kernel._items import portion_leaf, portioned_content

    leaves = [portion_leaf("r1", p) for p in portions]
    tree = portion_tree(leaves)
    label = banner([p.label for p in portions], signer.catalogue)
    origin = sign_origin(signer.ring, portioned_content("r1", label, tree.root, tree.size, version), now)
    signed = [
        SignedPortion(p.id, i, tree.proofs[i], leaves[i], p.label, p.payload_type, p.payload)
        for i, p in enumerate(portions)
    ]
    return origin, signed


def _push(net: dict[str, Any], sender: Node, to: str, body: dict[str, Any], msg_id: str) -> dict[str, Any]:
    peer = sender.exchange.peer(to)
    assert peer is not None
    envelope = seal(sender.ring, peer, body, msg_id=msg_id, at=net["clock"](), ttl=HOUR)
    (answer,) = net["transport"].push(peer, [envelope])
    return dict(answer)


def _recall_message(
    net: dict[str, Any], *, signer: Node, holder: str, portion: str, version: int
) -> dict[str, Any]:
    """A recall of ``portion`` of KOR's r1, addressed to ``holder``, signed by ``signer``'s node key."""
    from gsomia.core.recall import ChangeKind, LabelChange
    from gsomia.crypto.envelope import sign_origin
    from gsomia.duties._messages import PortionChange, change_content

    now = net["clock"]()
    change = LabelChange("r1", "KOR", version, ChangeKind.RECALL, None, "withdrawn", now)
    jws = sign_origin(signer.ring, change_content(change, None, holder, PortionChange(portion, ())), now)
    return {"kind": "duty", "to": holder, "duty": jws}


def test_the_originator_recalls_the_body_and_its_holder_keeps_the_tearline(net: dict[str, Any]) -> None:
    """KOR recalls the body alone: only the USA holds it, so only the USA is told; the USA drops it
    and keeps the tearline, still proved by KOR's root, under the tearline's banner; a copy the USA
    made of both portions goes, one made by a reader who saw the tearline alone stays. Audited at
    both ends; JPN is told nothing. A later change to the tearline still reaches the USA, naming
    only what it now holds."""
    _released_to_jpn_and_usa(net)
    kor, jpn, usa = (net["nodes"][p] for p in ("KOR", "JPN", "USA"))
    officer = usa.people.person("officer")
    usa.duties.derive(officer, "copy", ["r1"], item_id="usa-both")
    reader = junior(usa, "CONFIDENTIAL")
    usa.duties.derive(reader, "copy", ["r1"], item_id="usa-tearline")
    usa.duties.derive(officer, "translation", ["r1"], item_id="usa-translation", payload=b'{"t": "both"}')
    with pytest.raises(NotFoundError):  # the copy of both portions is above the junior's clearance
        usa.items.read(reader, "usa-both")
    change = kor.duties.recall(kor.people.person("officer"), "r1", "the source is burned", portion="body")
    assert change.version == 2
    messages = [e for e in kor.exchange.fed.outbox() if e.kind == "duty"]
    assert [e.final_recipient for e in messages] == ["USA"]
    (recorded,) = [json.loads(r.detail) for r in kor.store.audit(kind="item.recall-portion")]
    assert (recorded["portion"], recorded["holders"]) == ("body", ["USA"])
    deliver(net)
    item, payload = usa.items.read(officer, "r1")
    assert [(m.id, m.label.classification) for m in item.portions] == [("tearline", "군사III급비밀")]
    assert item.label.classification == "군사III급비밀"  # the banner of what is left
    assert item.label_version == 2
    assert [p["id"] for p in json.loads(payload)["portions"]] == ["tearline"]
    assert BODY.decode() not in payload.decode()
    row = usa.store.get_item("r1")
    assert row is not None
    content, held = usa.kernel.items.signed(row)  # the rest still checks against KOR's root
    assert (content.label_version, [p.id for p in held]) == (1, ["tearline"])
    # the copy of both portions drops the body, its label re-derived from the tearline it keeps: the
    # junior, cleared for the tearline, may read it now; the translation may hold the body: withdrawn
    copy, copied = usa.items.read(reader, "usa-both")
    assert (copy.label.classification, copy.label_version) == ("군사III급비밀", 2)
    assert [p["id"] for p in json.loads(copied)["portions"]] == ["tearline"]
    assert BODY.decode() not in copied.decode()
    assert copy.payload_size == len(copied)  # the size says what it holds now, not what it held
    assert usa.store.get_item("usa-tearline").state == "held"  # type: ignore[union-attr]
    assert usa.store.get_item("usa-tearline").label_version == 1  # type: ignore[union-attr]
    assert usa.store.get_item("usa-translation").state == "recalled"  # type: ignore[union-attr]
    rederived = {r.subject: json.loads(r.detail) for r in usa.store.audit(kind="item.rederive")}
    assert rederived["usa-both"]["portions"] == ["tearline"]
    assert rederived["usa-translation"]["state"] == "recalled"
    assert "usa-tearline" not in rederived
    (applied,) = [json.loads(r.detail) for r in usa.store.audit(kind="duty.label-change")]
    assert applied["result"] == "applied"
    status = kor.duties.label_status(kor.people.person("officer"), "r1")
    assert status["changes"][0]["applied"] == ["USA"]
    mine, _ = kor.items.read(kor.people.person("officer"), "r1")  # the originator keeps its item whole
    assert [m.id for m in mine.portions] == ["body", "tearline"]
    assert jpn.store.audit(kind="duty.label-change") == []
    assert jpn.store.get_item("r1").label_version == 1  # type: ignore[union-attr]
    # as after a recall of the whole, no release until the originator reclassifies
    with pytest.raises(InvalidInputError, match="portion body of item r1 was recalled"):
        kor.exchange.release(kor.people.person("officer"), "r1", "USA")
    # the tearline reclassified later: the USA is told of the tearline alone, and applies it
    kor.duties.reclassify(kor.people.person("officer"), "r1", "군사II급비밀", "up", portion="tearline")
    deliver(net)
    item, _ = usa.items.read(officer, "r1")
    assert [(m.id, m.label.classification) for m in item.portions] == [("tearline", "군사II급비밀")]
    assert item.label_version == 3
    changes = kor.duties.label_status(kor.people.person("officer"), "r1")["changes"]
    assert next(c for c in changes if c["version"] == 3)["applied"] == ["JPN", "USA"]


def test_the_last_portion_a_holder_holds_recalled_withdraws_the_item_there(net: dict[str, Any]) -> None:
    """JPN holds the tearline alone: its recall withdraws JPN's item; the USA keeps the body."""
    _released_to_jpn_and_usa(net)
    kor, jpn, usa = (net["nodes"][p] for p in ("KOR", "JPN", "USA"))
    kor.duties.recall(kor.people.person("officer"), "r1", "released in error", portion="tearline")
    deliver(net)
    assert jpn.store.get_item("r1").state == "recalled"  # type: ignore[union-attr]
    with pytest.raises(ItemGoneError):
        jpn.items.read(jpn.people.person("officer"), "r1")
    item, _ = usa.items.read(usa.people.person("officer"), "r1")
    assert [m.id for m in item.portions] == ["body"]
    results = sorted(
        json.loads(r.detail)["result"] for p in (jpn, usa) for r in p.store.audit(kind="duty.label-change")
    )
    assert results == ["applied", "withdrawn"]


def test_a_portion_recall_not_from_the_originator_or_replayed_is_refused(net: dict[str, Any]) -> None:
    """The USA (a holder, not the originator) cannot recall KOR's tearline: refused and audited at
    the USA; a recall it signs and sends JPN as if it were KOR's is refused and audited at JPN, which
    keeps its tearline. KOR's own recall of the body, replayed to the USA in a fresh envelope after
    a newer change, is refused as stale; the same envelope again changes nothing."""
    _released_to_jpn_and_usa(net)
    kor, jpn, usa = (net["nodes"][p] for p in ("KOR", "JPN", "USA"))
    with pytest.raises(InvalidInputError, match="only the originator KOR"):
        usa.duties.recall(usa.people.person("officer"), "r1", "ours now", portion="tearline")
    assert [r.outcome for r in usa.store.audit(kind="item.recall-portion")] == ["refused"]
    forged = _recall_message(net, signer=usa, holder="JPN", portion="tearline", version=2)
    assert _push(net, usa, "JPN", forged, "forged-recall")["status"] == "refused"
    refused = json.dumps([json.loads(r.detail) for r in jpn.store.audit(kind="envelope.refused")])
    assert "a label change signed by USA speaks for KOR" in refused
    assert jpn.store.get_item("r1").state == "held"  # type: ignore[union-attr]
    # a recall KOR signs, addressed to JPN but for a portion JPN never received: refused
    body_to_jpn = _recall_message(net, signer=kor, holder="JPN", portion="body", version=2)
    assert _push(net, kor, "JPN", body_to_jpn, "never-received")["status"] == "refused"
    item, _ = jpn.items.read(jpn.people.person("officer"), "r1")
    assert ([m.id for m in item.portions], item.label_version) == (["tearline"], 1)
    # KOR's genuine recall of the body, captured on its way to the USA
    kor.duties.recall(kor.people.person("officer"), "r1", "the source is burned", portion="body")
    (v2,) = [e for e in kor.exchange.fed.outbox() if e.kind == "duty" and e.final_recipient == "USA"]
    captured = open_envelope(usa.ring, v2.envelope, usa.exchange.peer, net["clock"]()).body
    deliver(net)
    (answer,) = net["transport"].push(kor.exchange.peer("USA"), [v2.envelope])
    assert answer["status"] != "recorded"  # the very envelope again: not applied twice
    kor.duties.reclassify(kor.people.person("officer"), "r1", "군사II급비밀", "up", portion="tearline")
    deliver(net)
    assert _push(net, kor, "USA", captured, "replayed-recall")["status"] == "refused"
    refused = json.dumps([json.loads(r.detail) for r in usa.store.audit(kind="envelope.refused")])
    assert "stale label change" in refused
    item, _ = usa.items.read(usa.people.person("officer"), "r1")
    assert ([m.id for m in item.portions], item.label_version) == (["tearline"], 3)


def test_a_copy_of_the_tearline_follows_the_tearlines_label_not_the_reports(net: dict[str, Any]) -> None:
    """A KOR reader cleared for 군사III급비밀 copies the report: the copy holds the tearline alone,
    marked as the tearline. KOR downgrades the tearline to 대외비: the copy follows the tearline (a
    copy re-derived from the whole report would have been raised to the body's 군사II급비밀, a
    portion it does not hold, and its maker could no longer read it); a copy of both portions stays
    at the body's level."""
    report(net)
    kor = net["nodes"]["KOR"]
    officer = kor.people.person("officer")
    maker = junior(kor, "군사III급비밀")
    kor.duties.derive(maker, "copy", ["r1"], item_id="c-tearline")
    kor.duties.derive(officer, "copy", ["r1"], item_id="c-both")
    assert kor.items.read(maker, "c-tearline")[0].label.classification == "군사III급비밀"
    kor.duties.reclassify(officer, "r1", "대외비", "the launch is public now", portion="tearline")
    copy, payload = kor.items.read(maker, "c-tearline")
    assert copy.label.classification == "대외비"
    assert copy.label_version == 2  # re-sealed under the tearline's new label
    assert [p["id"] for p in json.loads(payload)["portions"]] == ["tearline"]
    both, _ = kor.items.read(officer, "c-both")
    assert both.label.classification == "군사II급비밀"
    # the body raised to 군사I급비밀: the copy of the tearline alone is not touched by its level
    kor.duties.reclassify(officer, "r1", "군사I급비밀", "a new source", portion="body")
    assert kor.items.read(maker, "c-tearline")[0].label.classification == "대외비"
    assert kor.items.read(officer, "c-both")[0].label.classification == "군사I급비밀"


def test_a_release_after_a_change_to_a_portion_the_holder_lacks_is_still_held(net: dict[str, Any]) -> None:
    """KOR downgrades the body (JPN holds only the tearline, and is told nothing), then releases the
    report to JPN again: JPN must take it as the item it holds, not refuse it as another item under
    the same id (the root over the portions changed with the body's label)."""
    _released_to_jpn_and_usa(net)
    kor, jpn = net["nodes"]["KOR"], net["nodes"]["JPN"]
    officer = kor.people.person("officer")
    kor.duties.reclassify(officer, "r1", "군사III급비밀", "source declassified", portion="body")
    deliver(net)
    kor.exchange.release(officer, "r1", "JPN")
    outcome = deliver(net)
    assert [d.state for d in outcome] == ["delivered"], [d.detail for d in outcome]
    statuses = [json.loads(r.detail)["status"] for r in jpn.store.audit(kind="envelope.received")]
    assert statuses[-1] == "already-held"  # nothing JPN holds changed: nothing stored twice
    item, payload = jpn.items.read(jpn.people.person("officer"), "r1")
    assert [p.id for p in item.portions] == ["tearline"]
    assert [p["payload"] for p in json.loads(payload)["portions"]] == [json.loads(TEARLINE)]
    assert jpn.store.count_items() == 1


def test_a_portion_recalled_while_its_release_is_still_queued_is_dropped_on_arrival(
    net: dict[str, Any],
) -> None:
    """KOR releases the report to the USA and recalls the body before the release has left: the
    release leaves first and the recall after it (the outbox keeps a peer's order), so the USA stores
    the report and then drops the body; it never answers not-held."""
    report(net)
    kor, usa = net["nodes"]["KOR"], net["nodes"]["USA"]
    officer = kor.people.person("officer")
    kor.exchange.release(officer, "r1", "USA")
    kor.duties.recall(officer, "r1", "released too soon", portion="body")
    assert [e.kind for e in kor.exchange.fed.outbox() if e.recipient == "USA"] == ["item", "duty"]
    deliver(net)
    item, _ = usa.items.read(usa.people.person("officer"), "r1")
    assert ([m.id for m in item.portions], item.label_version) == (["tearline"], 2)
    (applied,) = [json.loads(r.detail)["result"] for r in usa.store.audit(kind="duty.label-change")]
    assert applied == "applied"
    status = kor.duties.label_status(officer, "r1")
    assert status["changes"][0]["applied"] == ["USA"]
    # another report released to JPN (the tearline alone), its tearline recalled before it left:
    # JPN stores it withdrawn, its one portion gone
    report(net, "r2")
    kor.exchange.release(officer, "r2", "JPN")
    kor.duties.recall(officer, "r2", "released in error", portion="tearline")
    deliver(net)
    jpn = net["nodes"]["JPN"]
    assert jpn.store.get_item("r2").state == "recalled"  # type: ignore[union-attr]
    assert [json.loads(r.detail)["result"] for r in jpn.store.audit(kind="duty.label-change")] == [
        "withdrawn"
    ]
    assert kor.duties.label_status(officer, "r2")["changes"][0]["applied"] == ["JPN"]  # acknowledged


def _early_recall(
    net: dict[str, Any],
    *,
    signer: Node,
    holder: str,
    portion: str,
    version: int,
    item: str = "r1",
    originator: str = "KOR",
) -> dict[str, Any]:
    """A recall of ``portion`` of ``originator``'s ``item``, for ``holder``, signed by ``signer``."""
    from gsomia.core.recall import ChangeKind, LabelChange
    from gsomia.crypto.envelope import sign_origin
    from gsomia.duties._messages import PortionChange, change_content

    now = net["clock"]()
    change = LabelChange(item, originator, version, ChangeKind.RECALL, None, "withdrawn", now)
    jws = sign_origin(signer.ring, change_content(change, None, holder, PortionChange(portion, ())), now)
    return {"kind": "duty", "to": holder, "duty": jws}


def _in_flight(net: dict[str, Any]) -> str:
    """KOR's release of r1 to the USA, taken off the wire before anything else happens to r1."""
    report(net)
    kor = net["nodes"]["KOR"]
    return str(kor.exchange.release(kor.people.person("officer"), "r1", "USA").envelope)


def _duties_to_usa(net: dict[str, Any]) -> list[str]:
    kor = net["nodes"]["KOR"]
    return [e.envelope for e in kor.exchange.fed.outbox() if e.kind == "duty" and e.final_recipient == "USA"]


def _arrival_audit(node: Node) -> list[dict[str, Any]]:
    return [
        {**json.loads(r.detail), "outcome": r.outcome}
        for r in node.store.audit(kind="duty.label-change.applied-on-arrival")
    ]


def test_portion_changes_that_overtake_their_item_apply_on_arrival_in_version_order(
    net: dict[str, Any],
) -> None:
    """KOR's release of the report to the USA is in flight when KOR raises the tearline (version 2)
    and recalls the body (version 3); the two changes reach the USA first, and in reverse order. The
    USA keeps both (answering not-held), and when the report lands applies them in version order
    before it is written: the USA never holds the body, and holds the tearline at its new level,
    checked against KOR's new root. Each is audited and acknowledged; KOR sees both applied."""
    in_flight = _in_flight(net)
    kor, usa = net["nodes"]["KOR"], net["nodes"]["USA"]
    officer = kor.people.person("officer")
    kor.duties.reclassify(officer, "r1", "군사II급비밀", "a new source", portion="tearline")
    kor.duties.recall(officer, "r1", "the source is burned", portion="body")
    v2, v3 = _duties_to_usa(net)
    peer = kor.exchange.peer("USA")
    for envelope in (v3, v2):
        (answer,) = net["transport"].push(peer, [envelope])
        assert answer["status"] == "recorded", answer
    assert usa.store.get_item("r1") is None
    assert [json.loads(r.detail)["result"] for r in usa.store.audit(kind="duty.label-change")] == [
        "not-held",
        "not-held",
    ]
    (stored,) = net["transport"].push(peer, [in_flight])
    assert stored["status"] == "stored", stored
    item, payload = usa.items.read(usa.people.person("officer"), "r1")
    assert [(m.id, m.label.classification) for m in item.portions] == [("tearline", "군사II급비밀")]
    assert (item.label.classification, item.label_version) == ("군사II급비밀", 3)
    assert BODY.decode() not in payload.decode()
    row = usa.store.get_item("r1")
    assert row is not None
    content, held = usa.kernel.items.signed(row)  # the tearline checks against KOR's root of version 2
    assert (content.label_version, [(p.id, p.label.classification) for p in held]) == (
        2,
        [("tearline", "군사II급비밀")],
    )
    assert [(a["version"], a["change"], a["result"], a["outcome"]) for a in _arrival_audit(usa)] == [
        (2, "reclassify", "applied", "allowed"),
        (3, "recall", "applied", "allowed"),
    ]
    assert usa.duties.db.waiting_changes("~KOR:") == []  # forgotten once the item is here
    assert [c.version for c in usa.duties.db.label_changes("r1")] == [2, 3]
    # the feed: the body's recall is a portion's recall at the USA too
    seen = [e.type for e in usa.feed.page(usa.people.person("officer"), 0)[0] if e.item == "r1"]
    assert seen == ["arrived", "label-changed", "portion-recalled"]
    deliver(net)  # KOR's queued release (the same message) is a duplicate; the answers reach KOR
    changes = kor.duties.label_status(officer, "r1")["changes"]
    assert [(c["version"], c["applied"]) for c in changes] == [(2, ["USA"]), (3, ["USA"])]
    assert usa.items.read(usa.people.person("officer"), "r1")[0].label_version == 3


def test_an_early_portion_change_from_another_party_or_for_a_portion_not_carried_changes_nothing(
    net: dict[str, Any],
) -> None:
    """Before KOR's report reaches the USA: JPN signs a recall of the tearline as KOR's (refused
    outright) and one as its own item under the same id (kept for JPN's item, never applied to
    KOR's); KOR signs a recall of a portion the report does not have (kept, then refused on arrival
    and audited, the report held whole, answered not-held)."""
    in_flight = _in_flight(net)
    kor, jpn, usa = (net["nodes"][p] for p in ("KOR", "JPN", "USA"))
    forged = _early_recall(net, signer=jpn, holder="USA", portion="tearline", version=2)
    assert _push(net, jpn, "USA", forged, "forged-early")["status"] == "refused"
    refused = json.dumps([json.loads(r.detail) for r in usa.store.audit(kind="envelope.refused")])
    assert "a label change signed by JPN speaks for KOR" in refused
    own = _early_recall(net, signer=jpn, holder="USA", portion="tearline", version=2, originator="JPN")
    assert _push(net, jpn, "USA", own, "jpn-own-early")["status"] == "recorded"
    absent = _early_recall(net, signer=kor, holder="USA", portion="annex", version=2)
    assert _push(net, kor, "USA", absent, "absent-portion")["status"] == "recorded"
    (stored,) = net["transport"].push(kor.exchange.peer("USA"), [in_flight])
    assert stored["status"] == "stored", stored
    item, _ = usa.items.read(usa.people.person("officer"), "r1")
    assert ([m.id for m in item.portions], item.label_version) == (["body", "tearline"], 1)
    (audited,) = _arrival_audit(usa)
    assert (audited["outcome"], audited["result"], audited["portion"]) == ("refused", "not-held", "annex")
    assert "portion annex of item r1 was never received here" in audited["reason"]
    assert [r.version for r in usa.duties.db.waiting_changes("~JPN:")] == [2]  # JPN's, for JPN's item


def test_an_early_portion_change_replayed_is_kept_once_and_applied_once(net: dict[str, Any]) -> None:
    """KOR's recall of the body reaches the USA before the report, then again in a fresh envelope
    (a replay): one change is kept; the report lands without its body, once; replayed after the
    arrival, it is refused and changes nothing."""
    in_flight = _in_flight(net)
    kor, usa = net["nodes"]["KOR"], net["nodes"]["USA"]
    kor.duties.recall(kor.people.person("officer"), "r1", "the source is burned", portion="body")
    (recall,) = _duties_to_usa(net)
    body = open_envelope(usa.ring, recall, usa.exchange.peer, net["clock"]()).body
    (first,) = net["transport"].push(kor.exchange.peer("USA"), [recall])
    assert first["status"] == "recorded"
    assert _push(net, kor, "USA", body, "replayed-early")["status"] == "recorded"
    assert [r.version for r in usa.duties.db.waiting_changes("~KOR:")] == [2]
    net["transport"].push(kor.exchange.peer("USA"), [in_flight])
    assert [(a["version"], a["result"]) for a in _arrival_audit(usa)] == [(2, "applied")]
    answer = _push(net, kor, "USA", body, "replayed-late")  # the body is gone: nothing to recall
    assert (answer["status"], answer["reason"]) == (
        "refused",
        "portion body of item r1 was never received here",
    )
    item, _ = usa.items.read(usa.people.person("officer"), "r1")
    assert ([m.id for m in item.portions], item.label_version) == (["tearline"], 2)
    assert len(_arrival_audit(usa)) == 1


def test_early_portion_changes_for_items_that_never_arrive_are_bounded(
    net: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """KOR floods the USA with recalls for items it never sends: past the bound per originator the
    next is refused and audited, nothing more kept; a week on, the old ones are forgotten and a new
    one is kept again."""
    from gsomia.duties import _receive

    monkeypatch.setattr(_receive, "WAITING_PER_ORIGINATOR", 3)
    kor, usa = net["nodes"]["KOR"], net["nodes"]["USA"]
    for n in range(3):
        flood = _early_recall(net, signer=kor, holder="USA", portion="body", version=2, item=f"ghost-{n}")
        assert _push(net, kor, "USA", flood, f"flood-{n}")["status"] == "recorded"
    over = _early_recall(net, signer=kor, holder="USA", portion="body", version=2, item="ghost-3")
    assert _push(net, kor, "USA", over, "flood-3")["status"] == "refused"
    refused = json.dumps([json.loads(r.detail) for r in usa.store.audit(kind="envelope.refused")])
    assert "3 changes of KOR already wait here for items not held" in refused
    assert len(usa.duties.db.waiting_changes("~KOR:")) == 3
    net["clock"].now += _receive.WAITING_AGE + HOUR
    late = _early_recall(net, signer=kor, holder="USA", portion="body", version=2, item="ghost-4")
    assert _push(net, kor, "USA", late, "flood-4")["status"] == "recorded"
    assert [r.item_id for r in usa.duties.db.waiting_changes("~KOR:")] == ["~KOR:ghost-4"]


def test_a_portion_destroyed_here_leaves_the_copies_of_the_item_without_it(net: dict[str, Any]) -> None:
    """The USA copies the report (both portions) and translates it, then destroys the body: the copy
    drops the body, its label re-derived from the tearline it keeps, so a reader cleared for the
    tearline alone may read it now (and reads nothing of the body); the translation, which may say
    anything of the body, keeps its label, as a translation of a destroyed item does (fail closed:
    nothing made readable that may hold the body). Audited: the destruction names the copy."""
    report(net)
    kor, usa = net["nodes"]["KOR"], net["nodes"]["USA"]
    kor.exchange.release(kor.people.person("officer"), "r1", "USA")
    deliver(net)
    officer = usa.people.person("officer")
    reader = junior(usa, "CONFIDENTIAL")
    usa.duties.derive(officer, "copy", ["r1"], item_id="usa-both")
    usa.duties.derive(officer, "translation", ["r1"], item_id="usa-translation", payload=b'{"t": "both"}')
    with pytest.raises(NotFoundError):
        usa.items.read(reader, "usa-both")
    _witness(usa, "TOP SECRET")
    usa.duties.destroy(
        officer,
        "r1",
        method="crypto-erase",
        witness="witness",
        reason="the body's purpose ended",
        portion="body",
    )
    copy, payload = usa.items.read(reader, "usa-both")
    assert (copy.label.classification, copy.label_version) == ("군사III급비밀", 2)
    assert [p["id"] for p in json.loads(payload)["portions"]] == ["tearline"]
    assert b"USA-only" not in payload
    assert copy.payload_size == len(payload)
    translation, _ = usa.items.read(officer, "usa-translation")
    assert translation.label.classification == "군사II급비밀"
    with pytest.raises(NotFoundError):
        usa.items.read(reader, "usa-translation")
    (destroyed,) = [json.loads(r.detail) for r in usa.store.audit(kind="item.destroy-portion")]
    assert (destroyed["copies"], destroyed["copies_destroyed"]) == (["usa-both"], [])
    (rederived,) = [(r.subject, json.loads(r.detail)) for r in usa.store.audit(kind="item.rederive")]
    assert rederived[0] == "usa-both"
    assert (rederived[1]["dropped"], rederived[1]["classification"]) == ("body", "군사III급비밀")
    # the reader who may now read the copy learns of it on the feed
    assert ("label-changed", "usa-both") in [(e.type, e.item) for e in usa.feed.page(reader, 0)[0]]
