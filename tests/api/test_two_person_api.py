"""Two-person release over the HTTP API: the policy, the queue, approve, refuse, withdraw; bad
input is a 4xx problem that names the field, and an insider's shortcuts are refused."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gsomia.api import create_app
from gsomia.demo import network
from gsomia.node import Node
from gsomia.testing import FakeClock

NOW = datetime(2024, 3, 1, tzinfo=UTC)
Call = Callable[..., httpx.Response]


@pytest.fixture(scope="module")
def kor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))
    members = network.build(Path(tmp_path_factory.mktemp("net")), clock=clock)
    clock.now = NOW
    nodes = network.open_nodes(members, clock)
    node = nodes["KOR"]
    node.people.add_person(
        None,
        {
            "id": "officer2",
            "name": "second officer",
            "clearance": "군사I급비밀",
            "need_to_know": ["dprk-missile"],
            "roles": ["release_officer"],
            "nationality": "KOR",
        },
    )
    label = {
        "originator": "KOR",
        "classification": "군사II급비밀",
        "releasable_to": ["JPN", "USA"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (NOW - timedelta(hours=1)).isoformat(),
    }
    for item_id in ("a1", "a2"):
        node.items.ingest(
            node.people.person("officer"), label=label, payload=b'{"track": 1}', item_id=item_id
        )
    yield node
    for n in nodes.values():
        n.close()


@pytest.fixture(scope="module")
def call(kor: Node) -> Call:
    app = create_app(kor)
    tokens = {pid: kor.credentials.issue(None, pid)[1] for pid in ("admin", "officer", "officer2", "analyst")}

    def do(method: str, url: str, who: str, **kwargs: Any) -> httpx.Response:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                headers = {"Authorization": f"Bearer {tokens[who]}"}
                return await client.request(method, url, headers=headers, **kwargs)

        return asyncio.run(run())

    return do


def test_the_policy_is_set_by_an_administrator_and_read_by_officers(call: Call) -> None:
    policy = {"above": {"KOR": "군사III급비밀"}, "hub_relay": True, "validity_hours": 2}
    assert call("PUT", "/release-policy", "officer", json=policy).status_code == 403
    answer = call("PUT", "/release-policy", "admin", json=policy)
    assert answer.status_code == 200, answer.text
    assert call("GET", "/release-policy", "officer").json() == {
        "above": {"KOR": "군사III급비밀"},
        "hub_relay": True,
        "relay_authorisations": False,
        "validity_seconds": 7200,
    }
    assert call("GET", "/release-policy", "analyst").status_code == 403
    again = call("PUT", "/release-policy", "admin", json={**policy, "validity_hours": 2.0})
    assert again.status_code == 200, again.text  # JSON's 2.0 is the integer 2 (found by schemathesis)
    assert again.json()["validity_seconds"] == 7200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"above": {"KOR": "TOP SECRET"}}, "TOP SECRET"),
        ({"above": {"kor": "군사III급비밀"}}, "above"),
        ({"validity_hours": 0}, "validity_hours"),
        ({"validity_hours": 24 * 8}, "validity_hours"),
        ({"validity_hours": True}, "validity_hours"),
        ({"validity_hours": "3"}, "validity_hours"),
        ({"validity_hours": 1.5}, "validity_hours"),
        ({"hub_relay": "yes"}, "hub_relay"),
        ({"two_person": True}, "two_person"),
    ],
)
def test_a_bad_policy_is_a_4xx_that_names_the_problem(call: Call, body: dict[str, Any], field: str) -> None:
    answer = call("PUT", "/release-policy", "admin", json=body)
    assert 400 <= answer.status_code < 500, answer.text
    assert field in answer.text
    assert "Traceback" not in answer.text


def test_request_approve_and_the_queue_over_http(call: Call) -> None:
    call("PUT", "/release-policy", "admin", json={"above": {"KOR": "군사III급비밀"}})
    direct = call("POST", "/items/a1/release", "officer", json={"recipient": "JPN"})
    assert direct.status_code == 403, direct.text
    assert "two_person" in direct.text
    made = call("POST", "/items/a1/release-requests", "officer", json={"recipient": "JPN"})
    assert made.status_code == 201, made.text
    request = made.json()
    assert (request["state"], request["route"], request["requester"]) == (
        "requested",
        ["KOR", "JPN"],
        "officer",
    )
    assert request["id"] in [
        r["id"] for r in call("GET", "/release-requests?state=requested", "officer2").json()
    ]
    own = call("POST", f"/release-requests/{request['id']}/approve", "officer")
    assert own.status_code == 422, own.text
    assert "second release officer" in own.text
    approved = call("POST", f"/release-requests/{request['id']}/approve", "officer2")
    assert approved.status_code == 202, approved.text
    body = approved.json()
    assert body["request"]["state"] == "approved"
    assert body["outbox"]["state"] == "pending"
    assert any(c["rule"] == "two_person" and c["passed"] for c in body["outbox"]["decision"]["checks"])
    again = call("POST", f"/release-requests/{request['id']}/approve", "officer2")
    assert again.status_code == 409, again.text


def test_refuse_needs_a_reason_and_unknown_requests_are_404(call: Call) -> None:
    call("PUT", "/release-policy", "admin", json={"above": {"KOR": "군사III급비밀"}})
    request = call("POST", "/items/a2/release-requests", "officer", json={"recipient": "JPN"}).json()
    assert call("POST", f"/release-requests/{request['id']}/refuse", "officer2", json={}).status_code == 422
    refused = call("POST", f"/release-requests/{request['id']}/refuse", "officer2", json={"reason": "wait"})
    assert refused.status_code == 200, refused.text
    assert refused.json()["note"] == "wait"
    assert call("GET", "/release-requests/nope", "officer").status_code == 404
    assert call("GET", "/release-requests", "analyst").status_code == 403
