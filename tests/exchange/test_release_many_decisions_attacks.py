"""Adversarial probe of a selection's decisions written once (issue 18: the release engine's memo
hands one decision to the items whose requests match but for their id, and its JSON is written once
for their outbox rows and audit records). A selection mixing classifications and releasability
must give each item the decision it gets released on its own, at the
same instant: no item's text may be another's (a 군사III급비밀 item marked as a 군사II급비밀 one's,
say). Held when written: each row and record equals the lone release's."""

from __future__ import annotations

import json

from sqlalchemy import func, select
from tests.exchange.test_exchange import Net, net, own_item

from gsomia.store import _tables as t

__all__ = ["net"]


def test_each_item_of_a_mixed_selection_carries_its_own_decision(net: Net) -> None:
    kor = net.nodes["KOR"]
    own_item(net, "KOR", "ii-a")
    own_item(net, "KOR", "iii-a", classification="군사III급비밀")
    own_item(net, "KOR", "ii-b")
    own_item(net, "KOR", "ii-jpn", releasable_to=["JPN"])
    own_item(net, "KOR", "iii-b", classification="군사III급비밀")
    selection = ["ii-a", "iii-a", "ii-b", "ii-jpn", "iii-b"]
    released = kor.exchange.release_many(net.officer("KOR"), selection, "JPN")
    assert [e.item_id for e in released.entries] == selection
    together = {e.item_id: json.loads(e.decision) for e in released.entries}
    # the reference: each released on its own at the same instant (the clock does not move)
    alone = {i: json.loads(kor.exchange.release(net.officer("KOR"), i, "JPN").decision) for i in selection}
    assert together == alone
    marked = {i: d["marking"]["classification"] for i, d in together.items()}
    assert marked["ii-a"] == marked["ii-b"] == marked["ii-jpn"] != marked["iii-a"] == marked["iii-b"]
    # the audit records of the selection say the same, each for its own item
    records = [r for r in kor.store.audit(kind="item.release") if r.outcome == "allowed"]
    by_msg = {json.loads(r.detail)["msg_id"]: (r.subject, json.loads(r.detail)["decision"]) for r in records}
    for entry in released.entries:
        assert by_msg[entry.msg_id] == (entry.item_id, together[entry.item_id])


def test_each_item_of_a_selection_is_read_under_its_own_label_and_audited_with_its_own_checks(
    net: Net,
) -> None:
    """A selection's read decisions are taken once per label read alike (issue 18:
    ``ReadGate.at_one_instant``, as a page's), and their checks written once per decision: still each
    item's own. Items of two classifications and one of a topic the officer has no need-to-know for,
    interleaved: that one is refused with its own failed check, and every allowed item's record is
    byte for byte the one its lone release writes (but for the message id)."""
    kor = net.nodes["KOR"]
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
    narrow = kor.people.person("narrow")
    own_item(net, "KOR", "ii-a")
    own_item(net, "KOR", "iii-a", classification="군사III급비밀")
    own_item(net, "KOR", "nuclear", topics=["dprk-nuclear"])
    own_item(net, "KOR", "ii-b")
    own_item(net, "KOR", "iii-b", classification="군사III급비밀")
    allowed = ["ii-a", "iii-a", "ii-b", "iii-b"]
    released = kor.exchange.release_many(narrow, ["ii-a", "iii-a", "nuclear", "ii-b", "iii-b"], "JPN")
    assert [e.item_id for e in released.entries] == allowed
    assert [r.subject for r in released.refused] == ["nuclear"]
    (refusal,) = [r for r in kor.store.audit(kind="item.release") if r.outcome == "refused"]
    assert refusal.subject == "nuclear"
    assert [c["rule"] for c in json.loads(refusal.detail)["checks"] if not c["passed"]] == ["need_to_know"]
    together = {r.subject: r for r in kor.store.audit(kind="item.release") if r.outcome == "allowed"}
    alone = {i: kor.exchange.release(narrow, i, "JPN") for i in allowed}  # at the same instant
    records = {r.detail: r for r in kor.store.audit(kind="item.release") if r.outcome == "allowed"}
    for item_id in allowed:
        mine = json.loads(together[item_id].detail)
        lone = alone[item_id].msg_id
        assert mine["msg_id"] != lone
        # the lone release's record, byte for byte, is the selection's with the lone message id
        assert together[item_id].detail.replace(mine["msg_id"], lone) in records
    reasons = {
        i: next(c["reason"] for c in json.loads(together[i].detail)["access"] if c["rule"] == "clearance")
        for i in allowed
    }
    assert reasons["ii-a"] == reasons["ii-b"] != reasons["iii-a"] == reasons["iii-b"]


def test_each_entry_read_back_from_the_store_carries_its_own_decision(net: Net) -> None:
    """Issue 18: the decision texts a selection's rows share are stored once (``decisions``, migration
    0030) and named by each row. Read back from the store, by every reader of the outbox, each entry's
    decision is still its own item's, the lone release's at the same instant: interleaved items of two
    classifications never read each other's text."""
    kor = net.nodes["KOR"]
    selection = ["ii-a", "iii-a", "ii-b", "iii-b"]
    for item_id in selection:
        own_item(net, "KOR", item_id, **({"classification": "군사III급비밀"} if "iii" in item_id else {}))
    released = kor.exchange.release_many(net.officer("KOR"), selection, "JPN")
    fed = kor.exchange.fed
    stored = {e.item_id: json.loads(e.decision) for e in fed.outbox()}
    read_one = {i: fed.outbox_entry(e.msg_id) for i, e in zip(selection, released.entries, strict=True)}
    assert {i: json.loads(e.decision) for i, e in read_one.items() if e is not None} == stored
    with kor.store.engine.connect() as conn:
        own = conn.execute(select(t.outbox.c.decision, t.outbox.c.decision_id)).all()
        shared = conn.execute(select(func.count()).select_from(t.decisions)).scalar_one()
    assert {d for d, _ in own} == {""}  # not in the rows: stored once per decision
    assert shared == 2
    alone = {i: json.loads(kor.exchange.release(net.officer("KOR"), i, "JPN").decision) for i in selection}
    assert stored == alone
    assert stored["ii-a"]["marking"] == stored["ii-b"]["marking"] != stored["iii-a"]["marking"]
