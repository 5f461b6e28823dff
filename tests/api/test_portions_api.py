"""Items in portions over the REST API (issue 20 §2): ingest a JPN report whose body is 極秘 and
whose tearline is 秘; a reader cleared 秘 reads only the tearline, under the tearline's label, and
nothing in the answer (portions listed, payload, size, errors) speaks of the body."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from tests.node_fixtures import add, jpn_label

from gsomia.api import create_app
from gsomia.core.access import Person
from gsomia.node import Node

BODY = {"text": "the body: source and method"}
TEARLINE = {"text": "the tearline: a launch at 05:12"}
A = {"id": "a", "label": jpn_label(), "payload": 1}


def _call(node: Node, method: str, url: str, token: str, **kwargs: Any) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            headers = {"Authorization": f"Bearer {token}"}
            return await client.request(method, url, headers=headers, **kwargs)

    return asyncio.run(run())


@pytest.fixture
def report(jpn_node: Node, people: dict[str, Person]) -> dict[str, str]:
    tokens = {pid: jpn_node.credentials.issue(None, pid)[1] for pid in people}
    created = _call(
        jpn_node,
        "POST",
        "/items",
        tokens["tanaka"],
        json={
            "id": "rep-1",
            "portions": [
                {
                    "id": "body",
                    "label": jpn_label(classification="極秘", releasable_to=["USA"]),
                    "payload": BODY,
                },
                {"id": "tearline", "label": jpn_label(classification="秘"), "payload": TEARLINE},
            ],
        },
    )
    assert created.status_code == 201, created.text
    data = created.json()
    assert data["label"]["classification"] == "極秘"
    assert data["label"]["releasable_to"] == []  # releasable only where every portion is
    assert [p["id"] for p in data["portions"]] == ["body", "tearline"]
    return tokens


def test_a_cleared_reader_reads_every_portion_under_the_highest_label(
    jpn_node: Node, report: dict[str, str]
) -> None:
    read = _call(jpn_node, "GET", "/items/rep-1", report["tanaka"]).json()
    assert read["label"]["classification"] == "極秘"
    assert [(p["id"], p["payload"]) for p in read["payload"]["portions"]] == [
        ("body", BODY),
        ("tearline", TEARLINE),
    ]


def test_a_reader_cleared_for_the_tearline_only_sees_it_alone_under_its_banner(
    jpn_node: Node, report: dict[str, str]
) -> None:
    response = _call(jpn_node, "GET", "/items/rep-1", report["sato"])
    assert response.status_code == 200
    read = response.json()
    assert read["label"]["classification"] == "秘"
    assert read["label"]["releasable_to"] == ["KOR"]
    assert [p["id"] for p in read["portions"]] == ["tearline"]
    assert read["payload"]["portions"][0]["payload"] == TEARLINE
    assert "body" not in response.text
    assert "極秘" not in response.text
    listed = _call(jpn_node, "GET", "/items", report["sato"]).json()["items"]
    assert [(i["id"], i["label"]["classification"]) for i in listed] == [("rep-1", "秘")]
    assert "極秘" not in str(listed)


def test_a_reader_cleared_for_no_portion_gets_the_unknown_items_answer(
    jpn_node: Node, report: dict[str, str]
) -> None:
    refused = _call(jpn_node, "GET", "/items/rep-1", report["suzuki"])  # no need-to-know for the topic
    unknown = _call(jpn_node, "GET", "/items/nothing-here", report["suzuki"])
    assert refused.status_code == unknown.status_code == 404
    assert refused.json()["detail"].replace("rep-1", "X") == unknown.json()["detail"].replace(
        "nothing-here", "X"
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            {"portions": [{"id": "a", "label": jpn_label(), "payload": 1}], "label": jpn_label()},
            "portions only",
        ),
        (
            {
                "portions": [
                    A,
                    {"id": "b", "label": jpn_label(purpose="other-purpose"), "payload": 2},
                ]
            },
            "share its originator, policy and purpose",
        ),
        (
            {
                "portions": [
                    {"id": "a", "label": jpn_label(), "payload": 1},
                    {"id": "a", "label": jpn_label(), "payload": 2},
                ]
            },
            "portion ids must differ",
        ),
        ({"portions": []}, ""),
        ({"portions": [{"id": "a", "label": jpn_label()}]}, ""),
    ],
)
def test_bad_portions_are_422_and_store_nothing(
    jpn_node: Node,
    people: dict[str, Person],  # noqa: ARG001 - registers the readers
    body: dict[str, Any],
    words: str,
) -> None:
    token = jpn_node.credentials.issue(None, "tanaka")[1]
    response = _call(jpn_node, "POST", "/items", token, json=body)
    assert response.status_code == 422, response.text
    assert words in response.text
    assert jpn_node.store.count_items() == 0


def test_an_item_in_portions_has_no_binding_data_object(jpn_node: Node, report: dict[str, str]) -> None:
    """The binding carries the originator's signature with the payload it signed: for an item in
    portions that is the root over every portion, so none is written (refused, not a partial one)."""
    response = _call(jpn_node, "GET", "/items/rep-1/binding?format=json", report["sato"])
    assert response.status_code == 422
    assert "in portions" in response.json()["detail"]


def test_the_originator_recalls_one_portion_over_the_api(jpn_node: Node, report: dict[str, str]) -> None:
    """`portion` on the recall: the label's next version here (nothing was released, so no holder is
    told), the item kept whole at the originator; an unknown portion is 404, a malformed one 422, and
    an analyst (no release or security officer role) is refused."""
    add(jpn_node, "kato", "JPN", "極秘", ["dprk-missile"], ["release_officer"])
    officer = jpn_node.credentials.issue(None, "kato")[1]
    done = _call(
        jpn_node, "POST", "/items/rep-1/recall", officer, json={"reason": "burned", "portion": "body"}
    )
    assert done.status_code == 202, done.text
    assert (done.json()["version"], done.json()["kind"]) == (2, "recall")
    read = _call(jpn_node, "GET", "/items/rep-1", report["tanaka"]).json()
    assert [p["id"] for p in read["payload"]["portions"]] == ["body", "tearline"]
    unknown = _call(
        jpn_node, "POST", "/items/rep-1/recall", officer, json={"reason": "x", "portion": "nobody"}
    )
    assert unknown.status_code == 404
    malformed = _call(
        jpn_node, "POST", "/items/rep-1/recall", officer, json={"reason": "x", "portion": "../b"}
    )
    assert malformed.status_code == 422
    analyst = _call(
        jpn_node, "POST", "/items/rep-1/recall", report["tanaka"], json={"reason": "x", "portion": "body"}
    )
    assert analyst.status_code == 403
    assert [r.outcome for r in jpn_node.store.audit(kind="item.recall-portion")] == ["allowed", "refused"]
    assert [r.actor for r in jpn_node.store.audit(kind="authz.item.recall-portion")] == ["tanaka"]
