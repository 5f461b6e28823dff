"""The duties' routes: thin over the service, every refusal an RFC 9457 problem and audited."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from tests.node_fixtures import add, kor_label

from gsomia.api import create_app
from gsomia.core.access import Person
from gsomia.node import Node

GSOMIA = "kor-jpn-gsomia-2016"


@pytest.fixture
def call(jpn_node: Node, people: dict[str, Person]) -> Any:
    add(jpn_node, "officer", "JPN", "特定秘密", ["dprk-missile"], ["security_officer"])
    tokens = {pid: jpn_node.credentials.issue(None, pid)[1] for pid in [*people, "officer"]}
    app = create_app(jpn_node)

    def do(method: str, url: str, who: str, **kwargs: Any) -> httpx.Response:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
                headers = {"Authorization": f"Bearer {tokens[who]}"}
                return await client.request(method, url, headers=headers, **kwargs)

        return asyncio.run(run())

    jpn_node.items.ingest(
        None, label=kor_label(), payload=b'{"a": 1}', item_id="k1", received_from="KOR", agreement=GSOMIA
    )
    return do


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()  # type: ignore[no-any-return]


def test_copy_destroy_and_inventory_over_http(call: Any, jpn_node: Node) -> None:
    copy = call("POST", "/items/k1/derive", "tanaka", json={"kind": "copy", "id": "k1-copy"})
    assert copy.status_code == 201, copy.text
    assert copy.json()["label"]["classification"] == "군사II급비밀"
    _problem(call("POST", "/items/k1/derive", "sato", json={"kind": "copy"}), 403)
    _problem(call("POST", "/items/k1/derive", "tanaka", json={"kind": "facsimile"}), 422)
    body = {"method": "incineration", "witness": "officer", "reason": "purpose ended"}
    _problem(call("POST", "/items/k1/destroy", "sato", json=body), 403)  # not cleared
    done = call("POST", "/items/k1/destroy", "tanaka", json=body)
    assert done.status_code == 201, done.text
    assert done.json()["method"] == "incineration"
    assert _problem(call("GET", "/items/k1", "tanaka"), 410)["type"] == "urn:gsomia:problem:item-gone"
    kinds = [r["kind"] for r in call("GET", "/items/k1/inventory", "tanaka").json()]
    assert kinds == ["received", "copy", "destroyed"]
    records = call("GET", "/destructions", "officer").json()
    assert [(r["item"], r["witness"]) for r in records] == [("k1", "officer")]
    refused = [r for r in jpn_node.store.audit(kind="item.destroy") if r.outcome == "refused"]
    assert len(refused) == 1


def test_reclassification_by_a_holder_is_a_problem(call: Any) -> None:
    answer = call("POST", "/items/k1/reclassify", "officer", json={"classification": "秘", "reason": "x"})
    assert "only the originator KOR" in _problem(answer, 422)["detail"]
    _problem(call("POST", "/items/nope/recall", "officer", json={"reason": "x"}), 404)


def test_incidents_visits_registers_and_the_termination_report(call: Any) -> None:
    opened = call(
        "POST", "/items/k1/incidents", "officer", json={"nature": "loss", "text": "a printout is missing"}
    )
    assert opened.status_code == 201, opened.text
    incident = opened.json()["id"]
    _problem(
        call("POST", f"/incidents/{incident}/steps", "officer", json={"state": "closed", "text": "x"}), 422
    )
    step = call(
        "POST", f"/incidents/{incident}/steps", "officer", json={"state": "findings", "text": "found"}
    )
    assert step.json()["state"] == "findings"
    assert [i["state"] for i in call("GET", "/incidents", "officer").json()] == ["findings"]
    visit = {
        "person": "smith",
        "highest": "秘",
        "starts": "2024-03-01T00:00:00+00:00",
        "ends": "2024-03-02T00:00:00+00:00",
        "purpose": "liaison",
    }
    assert call("POST", "/visits", "officer", json=visit).status_code == 201
    _problem(call("POST", "/visits", "tanaka", json=visit), 403)
    assert [v["person"] for v in call("GET", "/visits", "officer").json()] == ["smith"]
    rules = {"party": "JPN", "title": "rules", "levels": ["極秘"], "effective": "2024-04-01T00:00:00+09:00"}
    recorded = call("POST", "/registers/rules", "general", json=rules)
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["flagged"] == ["k1"]
    assert [f["item_id"] for f in call("GET", "/registers/flags", "general").json()] == ["k1"]
    authority = {"party": "KOR", "id": "mnd", "name": "Ministry of National Defense"}
    assert call("POST", "/registers/authorities", "general", json=authority).status_code == 201
    assert call("GET", "/registers/authorities?party=KOR", "general").json()[0]["id"] == "mnd"
    report = call("GET", "/termination-report", "officer").json()
    kor = next(p for p in report["partners"] if p["party"] == "KOR")
    assert [i["item"] for i in kor["held_here"]] == ["k1"]
    _problem(call("GET", "/termination-report?at=yesterday", "officer"), 422)
