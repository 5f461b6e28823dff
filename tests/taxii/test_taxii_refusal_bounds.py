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

from tests.taxii.test_stix import indicator
from tests.taxii.test_taxii import TAXII, Call, call, collections, tokens

from gsomia.kernel import NodeContext
from gsomia.node import Node
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
