"""A TAXII client posting objects the node refuses grows its audit log in bounded space, and every
refusal names who asked.

Before: each refused object of a POST wrote one permanent ``taxii.object`` record naming nobody
(the refusal went through the path of a caller nobody authenticated, with no source: a record each),
so one request of 2,000 unlabelled objects made 2,000 anonymous records. Now they go through the
kernel's tally per caller, check and minute: the first 10 are records naming the caller (``actor``)
and the object, the rest counted, and one ``refusal.tally`` record (``source`` the caller) gives the
exact count once the minute has closed.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from tests.node_fixtures import jpn_label, kor_label
from tests.taxii.test_stix import indicator
from tests.taxii.test_taxii import TAXII, Call, call, collections, tokens

from gsomia._codec import label_from_dict
from gsomia.errors import AccessDenied
from gsomia.kernel import NodeContext
from gsomia.node import Node
from gsomia.taxii._stix import extension_objects, marking_for
from gsomia.testing import FakeClock

__all__ = ["call", "tokens"]
RECORDED = NodeContext.REFUSALS_RECORDED


def _records(node: Node, kind: str) -> list[dict[str, Any]]:
    return [
        {"actor": r.actor, "subject": r.subject, "outcome": r.outcome, **json.loads(r.detail)}
        for r in node.store.audit(kind=kind, limit=1_000_000)
    ]


def _unlabelled(n: int) -> list[dict[str, Any]]:
    return [indicator(id=f"indicator--{uuid.UUID(int=i + 1)}") for i in range(n)]


def test_a_caller_posting_thousands_of_refused_objects_costs_a_few_records_naming_them(
    call: Call, jpn_node: Node, clock: FakeClock, tokens: dict[str, str]
) -> None:
    cid = collections(call, tokens["tanaka"])["agreement:kor-jpn-gsomia-2016"]
    url = f"/taxii2/api/collections/{cid}/objects/"
    before = len(jpn_node.store.audit(limit=1_000_000))
    for _ in range(2):
        posted = call(
            "POST",
            url,
            tokens["tanaka"],
            json={"objects": _unlabelled(1000)},
            headers={"Content-Type": TAXII},
        )
        assert posted.status_code == 202, posted.text
        assert posted.json()["failure_count"] == 1000  # each still refused with its reason, in the status
        assert "no gsomia label" in posted.json()["failures"][0]["message"]
    own = _records(jpn_node, "taxii.object")
    assert len(own) == RECORDED
    assert {(r["actor"], r["outcome"]) for r in own} == {("tanaka", "refused")}
    assert {r["subject"] for r in own} == {f"indicator--{uuid.UUID(int=i + 1)}" for i in range(RECORDED)}
    assert all("no gsomia label" in r["reason"] for r in own)

    clock.advance(seconds=61)
    jpn_node.kernel.close_refusal_tallies()
    (tally,) = [r for r in _records(jpn_node, "refusal.tally") if r["subject"] == "taxii.object"]
    assert (tally["source"], tally["code"], tally["count"]) == ("tanaka", "unimportable", 2000)
    grown = len(jpn_node.store.audit(limit=1_000_000)) - before
    assert grown <= RECORDED + 1 + 10  # its records, the tally, and what else the requests wrote
    jpn_node.audit.sign_head()
    assert jpn_node.audit.verify().ok


def test_two_callers_refusals_are_told_apart(call: Call, jpn_node: Node, tokens: dict[str, str]) -> None:
    cid = collections(call, tokens["tanaka"])["agreement:kor-jpn-gsomia-2016"]
    url = f"/taxii2/api/collections/{cid}/objects/"
    for who in ("tanaka", "sato"):
        posted = call(
            "POST", url, tokens[who], json={"objects": _unlabelled(3)}, headers={"Content-Type": TAXII}
        )
        assert posted.status_code == 202, posted.text
    actors = sorted(r["actor"] for r in _records(jpn_node, "taxii.object"))
    assert actors == ["sato"] * 3 + ["tanaka"] * 3


def test_objects_the_node_refuses_to_ingest_cost_a_few_records_naming_the_caller(
    call: Call, jpn_node: Node, clock: FakeClock, tokens: dict[str, str]
) -> None:
    """Attack: labelled objects that pass the STIX and marking checks but that ingest refuses (a
    partner's item posted as if it were held here: its look-up and its ingest both refused; an item
    above the caller's clearance). Before: each object of a POST wrote one or two permanent records
    (``item.resolve``, ``item.ingest``), 120 objects 200 records. Now they go through the kernel's
    tally per caller, kind, error and minute, as the objects refused before ingest do."""
    cid = collections(call, tokens["tanaka"])["agreement:kor-jpn-gsomia-2016"]
    url = f"/taxii2/api/collections/{cid}/objects/"
    foreign = label_from_dict(kor_label(), jpn_node.catalogue)
    secret = jpn_node.catalogue.label(
        originator="JPN",
        classification="機密",  # above tanaka's clearance
        releasable_to=["KOR"],
        purpose="threat-assessment",
        topics=["dprk-missile"],
        created=jpn_node.clock(),
    )
    before = len(jpn_node.store.audit(limit=1_000_000))
    for label, reason in ((foreign, "with KOR's signature"), (secret, "clearance")):
        objects = [
            indicator(id=f"indicator--{uuid.uuid4()}", object_marking_refs=[marking_for(label)["id"]])
            for _ in range(60)
        ]
        body = {"objects": [*extension_objects(), marking_for(label), *objects]}
        posted = call("POST", url, tokens["tanaka"], json=body, headers={"Content-Type": TAXII})
        assert posted.status_code == 202, posted.text
        assert posted.json()["failure_count"] == 60  # each still refused with its reason, in the status
        assert all(reason in f["message"] for f in posted.json()["failures"])
    ingest = _records(jpn_node, "item.ingest")
    assert len(ingest) == 2 * RECORDED  # per error: a partner's item (its label), the clearance
    assert {(r["actor"], r["outcome"]) for r in ingest} == {("tanaka", "refused")}
    assert {r["error"] for r in ingest} == {"LabelError", "AccessDenied"}
    assert all(r["checks"] for r in ingest if r["error"] == "AccessDenied")  # the decision, as before
    assert len(_records(jpn_node, "item.resolve")) == RECORDED

    clock.advance(seconds=61)
    jpn_node.kernel.close_refusal_tallies()
    tallies = sorted(
        (r["subject"], r["source"], r["code"], r["count"])
        for r in _records(jpn_node, "refusal.tally")
        if r["subject"] in ("item.ingest", "item.resolve")
    )
    assert tallies == [
        ("item.ingest", "tanaka", "AccessDenied", 60),
        ("item.ingest", "tanaka", "LabelError", 60),
        ("item.resolve", "tanaka", "NotFoundError", 60),
    ]
    grown = len(jpn_node.store.audit(limit=1_000_000)) - before
    assert grown <= 3 * RECORDED + 3 + 10  # not 180
    jpn_node.audit.sign_head()
    assert jpn_node.audit.verify().ok
    # the same refusal outside TAXII (one item, one request) is a record of its own, as before
    tanaka = jpn_node.people.person("tanaka")
    with pytest.raises(AccessDenied):
        jpn_node.items.ingest(tanaka, label=jpn_label(classification="機密"), payload=b"{}", item_id="x-1")
    assert len(_records(jpn_node, "item.ingest")) == 2 * RECORDED + 1
