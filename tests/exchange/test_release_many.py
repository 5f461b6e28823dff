"""A release of a selection (``Exchange.release_many``): each item decided as ``release`` decides
one, the allowed ones queued and every item's record written in one transaction; and the
delivery run that reads the rows and consents of its batch at once still decides each alone."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.exchange.test_exchange import GSOMIA, Net, net, own_item

from gsomia.api import _models as m
from gsomia.api import create_app
from gsomia.errors import AccessDenied, GsomiaError, NotFoundError
from gsomia.exchange import MAX_RELEASE_ITEMS
from gsomia.node import Node

__all__ = ["net"]


def test_a_selection_queues_the_allowed_and_refuses_the_rest_each_with_its_reason(net: Net) -> None:
    kor = net.nodes["KOR"]
    for item_id in ("s1", "s2", "s3"):
        own_item(net, "KOR", item_id)
    own_item(net, "KOR", "too-high", classification="군사I급비밀")  # not releasable to JPN
    own_item(net, "KOR", "noforn", releasable_to=["USA"])
    released = kor.exchange.release_many(
        net.officer("KOR"), ["s1", "too-high", "s2", "nowhere", "noforn", "s3"], "JPN"
    )
    assert [e.item_id for e in released.entries] == ["s1", "s2", "s3"]  # in the order asked
    assert [r.subject for r in released.refused] == ["too-high", "nowhere", "noforn"]
    assert "no item 'nowhere'" in released.refused[1].reason
    records = {r.subject: (r.outcome, json.loads(r.detail)) for r in kor.store.audit(kind="item.release")}
    assert {s: o for s, (o, _) in records.items()} == {
        "s1": "allowed",
        "s2": "allowed",
        "s3": "allowed",
        "too-high": "refused",
        "nowhere": "refused",
        "noforn": "refused",
    }
    assert records["nowhere"][1]["error"] == NotFoundError.__name__
    assert [e.msg_id for e in kor.exchange.outbox(None)] == [e.msg_id for e in released.entries]
    assert sorted(d.state for d in net.deliver()) == ["delivered"] * 3
    jpn = net.nodes["JPN"]
    assert sorted(jpn.store.existing_items(["s1", "s2", "s3", "too-high", "noforn"])) == ["s1", "s2", "s3"]
    assert net.deliver() == []  # exactly once: nothing left, nothing sent twice


def test_a_reader_who_may_not_read_an_item_cannot_release_it_in_a_selection(net: Net) -> None:
    kor = net.nodes["KOR"]
    own_item(net, "KOR", "ok", topics=["dprk-missile"])
    own_item(net, "KOR", "not-mine", topics=["dprk-nuclear"])
    # the officer's need to know, narrowed: a second officer who knows only missiles
    kor.people.add_person(
        None,
        {
            "id": "narrow",
            "name": "KOR narrow officer",
            "nationality": "KOR",
            "clearance": "군사I급비밀",
            "need_to_know": ["dprk-missile"],
            "roles": ["release_officer"],
        },
    )
    released = kor.exchange.release_many(kor.people.person("narrow"), ["ok", "not-mine"], "JPN")
    assert [e.item_id for e in released.entries] == ["ok"]
    assert [r.subject for r in released.refused] == ["not-mine"]
    (refusal,) = [
        json.loads(r.detail) for r in kor.store.audit(kind="item.release") if r.subject == "not-mine"
    ]
    assert refusal["error"] == AccessDenied.__name__
    assert any(not c["passed"] and c["rule"] == "need_to_know" for c in refusal["checks"])


@pytest.mark.parametrize(
    ("ids", "recipient", "message"),
    [
        ([], "JPN", "at least one item"),
        (["a", "b", "a"], "JPN", "named twice"),
        ([f"x{n}" for n in range(MAX_RELEASE_ITEMS + 1)], "JPN", f"at most {MAX_RELEASE_ITEMS}"),
        (["a"], "ATLANTIS", "ATLANTIS"),
    ],
)
def test_a_malformed_selection_is_refused_whole_and_recorded(
    net: Net, ids: list[str], recipient: str, message: str
) -> None:
    own_item(net, "KOR", "a")
    kor = net.nodes["KOR"]
    with pytest.raises(GsomiaError, match=message):
        kor.exchange.release_many(net.officer("KOR"), ids, recipient)
    assert kor.exchange.outbox(None) == []
    (record,) = kor.store.audit(kind="item.release")
    assert record.outcome == "refused"


def test_someone_without_the_role_releases_nothing(net: Net) -> None:
    own_item(net, "KOR", "a")
    kor = net.nodes["KOR"]
    with pytest.raises(AccessDenied):
        kor.exchange.release_many(kor.people.person("analyst"), ["a"], "JPN")
    assert kor.exchange.outbox(None) == []
    assert [r.outcome for r in kor.store.audit(kind="authz.item.release")] == ["refused"]


def test_consents_on_file_serve_a_selection_and_its_delivery_and_only_their_item(net: Net) -> None:
    """JPN passes KOR items on to USA: the one KOR consented to goes, its neighbour does not."""
    for item_id in ("c-yes", "c-no"):
        own_item(net, "KOR", item_id)
    net.nodes["KOR"].exchange.release_many(net.officer("KOR"), ["c-yes", "c-no"], "JPN")
    net.deliver()
    jpn = net.nodes["JPN"].exchange
    request_id = jpn.request_consent(net.officer("JPN"), "c-yes", "USA", "threat-assessment", "US cell")
    net.deliver()
    net.nodes["KOR"].exchange.answer_consent(net.officer("KOR"), request_id, grant=True, reason="ok")
    net.deliver()
    released = jpn.release_many(net.officer("JPN"), ["c-yes", "c-no"], "USA")
    assert [e.item_id for e in released.entries] == ["c-yes"]
    assert [r.subject for r in released.refused] == ["c-no"]
    assert "third_party" in released.refused[0].reason
    assert [d.state for d in net.deliver()] == ["delivered"]
    assert net.nodes["USA"].store.get_item("c-yes") is not None
    assert net.nodes["USA"].store.get_item("c-no") is None


def test_an_item_recalled_after_queueing_does_not_go_while_its_batch_does(net: Net) -> None:
    kor = net.nodes["KOR"]
    for item_id in ("r1", "r2", "r3"):
        own_item(net, "KOR", item_id)
    kor.exchange.release_many(net.officer("KOR"), ["r1", "r2", "r3"], "JPN")
    kor.duties.recall(net.officer("KOR"), "r2", "withdrawn before sending")
    kor.exchange.deliver_due(net.transport)
    by_item = {e.item_id: e.state for e in kor.exchange.outbox(None) if e.kind == "item"}
    assert by_item == {"r1": "delivered", "r2": "undeliverable", "r3": "delivered"}
    assert net.nodes["JPN"].store.existing_items(["r1", "r2", "r3"]) == {"r1", "r3"}


def test_a_termination_between_a_selection_and_its_delivery_stops_every_item(net: Net) -> None:
    """The delivery run reads its batch's rows and consents at once; each is still decided at the
    instant of sending, so an agreement that ended in between stops them all."""
    gsomia = net.nodes["KOR"].catalogue.agreement(GSOMIA).what_if(without=["2019-11-22-notice-suspended"])
    kor = Node(
        net.nodes["KOR"].config, catalogue=net.nodes["KOR"].catalogue.replacing(gsomia), clock=net.clock
    )
    net.clock.now = datetime(2019, 11, 22, 23, 59, 59, tzinfo=gsomia.timezone)
    for item_id in ("late-1", "late-2"):
        own_item(net, "KOR", item_id)
    released = kor.exchange.release_many(kor.people.person("officer"), ["late-1", "late-2"], "JPN")
    assert len(released.entries) == 2
    net.clock.advance(seconds=2)  # the agreement ended at midnight
    results = kor.exchange.deliver_due(net.transport)
    assert [r.state for r in results] == ["undeliverable", "undeliverable"]
    assert all("terminated" in r.detail for r in results)
    assert net.nodes["JPN"].store.existing_items(["late-1", "late-2"]) == set()
    kor.close()


def _two_officers_above_class_iii(kor: Node) -> None:
    """KOR's administrator reserves every release above 군사III급비밀 for two officers (four hours)."""
    kor.exchange.set_two_person(
        kor.people.person("admin"),
        above={"KOR": "군사III급비밀"},
        hub_relay=False,
        relay_authorisations=False,
        validity=timedelta(hours=4),
    )


def _api(node: Node, method: str, url: str, token: str, **kwargs: Any) -> httpx.Response:
    app = create_app(node)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.request(method, url, headers={"Authorization": f"Bearer {token}"}, **kwargs)

    return asyncio.run(run())


def test_the_api_releases_a_selection_in_one_request(net: Net) -> None:
    kor = net.nodes["KOR"]
    for item_id in ("api-1", "api-2"):
        own_item(net, "KOR", item_id)
    own_item(net, "KOR", "api-secret", classification="군사I급비밀")
    officer = kor.credentials.issue(None, "officer")[1]
    answer = _api(
        kor,
        "POST",
        "/releases",
        officer,
        json={"items": ["api-1", "api-secret", "api-2"], "recipient": "JPN"},
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert [q["item_id"] for q in body["queued"]] == ["api-1", "api-2"]
    assert all(q["state"] == "pending" and q["decision"]["allowed"] for q in body["queued"])
    assert [r["item"] for r in body["refused"]] == ["api-secret"]
    # written straight out (issue 18), the answer is still its model's JSON byte for byte: what
    # FastAPI writes from ``ReleasesOut`` (validated, dumped, ``json`` compact and unescaped)
    modelled = m.ReleasesOut.model_validate(body).model_dump(mode="json")
    assert modelled == body
    assert answer.content == json.dumps(modelled, ensure_ascii=False, separators=(",", ":")).encode()
    assert "군사" in answer.text  # the decision's Korean text as it is, not escaped
    assert sorted(d.state for d in net.deliver()) == ["delivered", "delivered"]


@pytest.mark.parametrize(
    ("who", "body", "status", "says"),
    [
        ("analyst", {"items": ["api-1"], "recipient": "JPN"}, 403, "release_officer"),
        ("officer", {"items": [], "recipient": "JPN"}, 422, "items"),
        ("officer", {"items": ["api-1", "api-1"], "recipient": "JPN"}, 422, "named twice"),
        ("officer", {"items": ["api-1"] * 1001, "recipient": "JPN"}, 422, "items"),
        ("officer", {"items": ["../etc"], "recipient": "JPN"}, 422, "items"),
        ("officer", {"items": ["api-1"]}, 422, "recipient"),
    ],
)
def test_the_api_refuses_a_bad_selection_naming_the_problem(
    net: Net, who: str, body: dict[str, Any], status: int, says: str
) -> None:
    kor = net.nodes["KOR"]
    own_item(net, "KOR", "api-1")
    answer = _api(kor, "POST", "/releases", kor.credentials.issue(None, who)[1], json=body)
    assert answer.status_code == status, answer.text
    assert says in answer.text
    assert "Traceback" not in answer.text
    assert "SELECT" not in answer.text
    assert kor.exchange.outbox(None) == []


def test_a_policy_set_after_a_selection_is_released_refuses_it_at_sending(net: Net) -> None:
    """Issue 18: a batch's re-decision reads the two-person policy once for the batch (not once an
    item), still at the instant of sending: a policy set between the release and the delivery reserves
    the queued items for two officers, and none of them goes."""
    kor = net.nodes["KOR"]
    for item_id in ("late-p1", "late-p2", "late-p3"):
        own_item(net, "KOR", item_id)  # 군사II급비밀
    released = kor.exchange.release_many(net.officer("KOR"), ["late-p1", "late-p2", "late-p3"], "JPN")
    assert len(released.entries) == 3
    _two_officers_above_class_iii(kor)
    results = kor.exchange.deliver_due(net.transport)
    assert [r.state for r in results] == ["undeliverable"] * 3
    assert all("two_person" in r.detail for r in results)
    assert net.nodes["JPN"].store.existing_items(["late-p1", "late-p2", "late-p3"]) == set()


def test_a_selection_cannot_carry_past_the_two_person_policy(net: Net) -> None:
    """A release the node's policy reserves for two officers is refused in a selection too; the
    selection's other items go."""
    kor = net.nodes["KOR"]
    _two_officers_above_class_iii(kor)
    own_item(net, "KOR", "two-high")  # 군사II급비밀: above the policy's level
    own_item(net, "KOR", "two-low", classification="군사III급비밀")
    released = kor.exchange.release_many(net.officer("KOR"), ["two-high", "two-low"], "JPN")
    assert [e.item_id for e in released.entries] == ["two-low"]
    assert [r.subject for r in released.refused] == ["two-high"]
    assert "two_person" in released.refused[0].reason
    assert sorted(d.state for d in net.deliver()) == ["delivered"]
    assert net.nodes["JPN"].store.existing_items(["two-high", "two-low"]) == {"two-low"}


def test_a_selection_is_sealed_when_it_is_sent_not_when_it_is_queued(net: Net) -> None:
    """Issue 18: a released selection keeps no envelope in the outbox (delivery builds each item's
    message under the decision it takes at the instant of sending, and seals the batch, or the item
    alone, then). What goes is sealed at the sending instant, and a lone item's envelope is kept."""
    from gsomia.crypto.envelope import open_envelope

    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    own_item(net, "KOR", "alone")
    (entry,) = kor.exchange.release_many(net.officer("KOR"), ["alone"], "JPN").entries
    assert entry.envelope == ""  # nothing sealed, nothing that could leave as it was decided then
    net.clock.advance(hours=2)
    (delivery,) = net.deliver()
    assert delivery.state == "delivered"
    sent = kor.exchange.fed.outbox_entry(entry.msg_id)
    assert sent is not None
    assert sent.envelope
    opened = open_envelope(jpn.ring, sent.envelope, jpn.exchange.peer, net.clock.now)
    assert (opened.msg_id, opened.issued_at) == (entry.msg_id, net.clock.now)  # sealed when sent
    assert jpn.store.existing_items(["alone"]) == {"alone"}
    assert net.deliver() == []


def test_a_partners_item_held_without_its_signature_is_refused_at_release_in_a_selection(net: Net) -> None:
    """Issue 18: a selection builds no item message when it is queued (delivery builds it at the
    instant of sending), yet an item whose message could never be built (a partner's item held
    without the partner's signature) is still refused at the release, with the reason, and audited,
    though the release engine allows it; the others of the selection go, once."""
    for item_id in ("c-kept", "c-bare"):
        own_item(net, "KOR", item_id)
    kor = net.nodes["KOR"].exchange
    kor.release_many(net.officer("KOR"), ["c-kept", "c-bare"], "JPN")
    net.deliver()
    jpn_node = net.nodes["JPN"]
    jpn = jpn_node.exchange
    for item_id in ("c-kept", "c-bare"):  # KOR consents to both going on to USA
        request_id = jpn.request_consent(net.officer("JPN"), item_id, "USA", "threat-assessment", "US cell")
        net.deliver()
        kor.answer_consent(net.officer("KOR"), request_id, grant=True, reason="ok")
        net.deliver()
    with jpn_node.store.engine.begin() as conn:  # KOR's signature on c-bare is no longer held at JPN
        conn.exec_driver_sql("UPDATE items SET origin_jws = NULL WHERE id = 'c-bare'")
    released = jpn.release_many(net.officer("JPN"), ["c-bare", "c-kept"], "USA")
    assert [e.item_id for e in released.entries] == ["c-kept"]
    assert [r.subject for r in released.refused] == ["c-bare"]
    assert "carries no signature of its originator KOR" in released.refused[0].reason
    refused = [r for r in jpn_node.store.audit(kind="item.release") if r.subject == "c-bare"]
    assert [r.outcome for r in refused] == ["refused"]
    assert [d.state for d in net.deliver()] == ["delivered"]
    assert net.nodes["USA"].store.existing_items(["c-kept", "c-bare"]) == {"c-kept"}
    assert net.deliver() == []
