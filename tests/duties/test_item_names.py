"""Attack: an ambiguous id at every entry point (issue 22 §4). JPN squatted KOR's id at the USA, so the
USA holds two items ``report-001``: every shell asks whose (API 409, CLI exit 2, the dashboard's 409
page), never picks one; ``?originator=`` / ``--originator`` / ``KOR:report-001`` name one; only items
the person may read count, so the answer says nothing of one they may not read."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from tests.duties.conftest import Net
from typer.testing import CliRunner

from gsomia.api import create_app
from gsomia.cli import app as cli
from gsomia.node import Node
from gsomia.ui import dashboard_scope

TAXII = "application/taxii+json;version=2.1"


def _own(net: Net, party: str, item_id: str, classification: str, payload: bytes) -> None:
    label = {
        "originator": party,
        "classification": classification,
        "releasable_to": [p for p in ("KOR", "JPN", "USA") if p != party],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (net.clock.now - timedelta(hours=1)).isoformat(),
    }
    net.nodes[party].ingest(net.officer(party), label=label, payload=payload, item_id=item_id)


@pytest.fixture
def squatted(net: Net) -> Net:
    """The USA holds JPN's ``report-001`` (秘, first) and KOR's (군사II급비밀, as ``KOR:report-001``)."""
    _own(net, "JPN", "report-001", "秘", b'{"from": "JPN"}')
    net.nodes["JPN"].exchange.release(net.officer("JPN"), "report-001", "USA")
    net.deliver()
    _own(net, "KOR", "report-001", "군사II급비밀", b'{"from": "KOR"}')
    net.nodes["KOR"].exchange.release(net.officer("KOR"), "report-001", "USA")
    net.deliver()
    assert [r.id for r in net.nodes["USA"].store.items_named("report-001")] == [
        "report-001",
        "KOR:report-001",
    ]
    return net


def _client(node: Node) -> Any:
    app = create_app(node)
    scope = dashboard_scope(node.ring)

    def do(method: str, url: str, token: str, *, dashboard: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        cookies = None
        if dashboard:
            headers.pop("Authorization")
            cookies = {scope.cookie: node.credentials.open_session(token)[0]}
            url = url.replace("~", scope.path, 1)

        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://node", cookies=cookies
            ) as client:
                return await client.request(method, url, headers=headers, **kwargs)

        return asyncio.run(run())

    return do


def test_the_bare_id_is_ambiguous_at_every_api_route_and_the_originator_names_one(squatted: Net) -> None:
    usa = squatted.nodes["USA"]
    call, token = _client(usa), usa.issue_token(None, "officer")[1]
    for method, path, body in (
        ("GET", "/items/report-001", None),
        ("GET", "/items/report-001/inventory", None),
        ("GET", "/items/report-001/label", None),
        ("GET", "/items/report-001/feedback", None),
        ("GET", "/items/report-001/label-status", None),
        ("POST", "/items/report-001/release", {"recipient": "JPN"}),
        ("POST", "/items/report-001/derive", {"kind": "copy"}),
        ("POST", "/items/report-001/destroy", {"method": "shredding", "witness": "officer", "reason": "x"}),
        ("POST", "/items/report-001/feedback", {"kind": "seen"}),
    ):
        answer = call(method, path, token, json=body)
        assert answer.status_code == 409, (path, answer.text)
        problem = answer.json()
        assert "of JPN and KOR" in problem["detail"]
        assert "originator=" in problem["detail"]
    assert usa.store.item_of("KOR", "report-001").state == "held"  # type: ignore[union-attr]
    assert usa.store.item_of("JPN", "report-001").state == "held"  # type: ignore[union-attr]
    kors = call("GET", "/items/report-001?originator=KOR", token).json()
    assert (kors["id"], kors["origin_id"], kors["payload"]) == (
        "KOR:report-001",
        "report-001",
        {"from": "KOR"},
    )
    assert call("GET", "/items/KOR:report-001", token).json()["payload"] == {"from": "KOR"}
    assert call("GET", "/items/JPN:report-001", token).json()["payload"] == {"from": "JPN"}
    assert call("GET", "/items/report-001?originator=JPN", token).json()["payload"] == {"from": "JPN"}
    inventory = call("GET", "/items/report-001/inventory?originator=KOR", token).json()
    assert [(e["kind"], e["party"]) for e in inventory] == [("received", "KOR")]
    assert call("GET", "/items/KOR:report-001?originator=JPN", token).status_code == 404
    assert call("GET", "/items/report-001?originator=kor", token).status_code == 422


def test_only_items_the_reader_may_read_count(squatted: Net) -> None:
    """A reader cleared for JPN's item only is never told of KOR's: the bare id names JPN's for them;
    KOR's, however named, is unknown to them (404, as an item not held)."""
    usa = squatted.nodes["USA"]
    squatted.person("USA", "low", "CONFIDENTIAL", ["analyst"])
    call, token = _client(usa), usa.issue_token(None, "low")[1]
    assert call("GET", "/items/report-001", token).json()["payload"] == {"from": "JPN"}
    for path in ("/items/KOR:report-001", "/items/report-001?originator=KOR"):
        answer = call("GET", path, token)
        assert answer.status_code == 404
        assert "KOR" not in answer.json()["detail"].replace("KOR:report-001", "")


def test_the_dashboard_and_taxii_keep_the_two_apart(squatted: Net) -> None:
    usa = squatted.nodes["USA"]
    call, token = _client(usa), usa.issue_token(None, "officer")[1]
    page = call("GET", "~/items/report-001", token, dashboard=True)
    assert page.status_code == 409
    assert "originator=" in page.text
    page = call("GET", "~/items/report-001?originator=KOR", token, dashboard=True)
    assert page.status_code == 200
    listing = call("GET", "~/items", token, dashboard=True).text
    assert "items/report-001?originator=JPN" in listing
    assert "items/KOR:report-001?originator=KOR" in listing
    served = []
    for collection in call("GET", "/taxii2/api/collections/", token, headers={"Accept": TAXII}).json()[
        "collections"
    ]:
        objects = call(
            "GET", f"/taxii2/api/collections/{collection['id']}/objects/", token, headers={"Accept": TAXII}
        ).json()
        served += [
            o for o in objects.get("objects", []) if o.get("item_id") in ("report-001", "KOR:report-001")
        ]
    by_item = {o["item_id"]: o["id"] for o in served}
    assert set(by_item) == {"report-001", "KOR:report-001"}
    assert by_item["report-001"] != by_item["KOR:report-001"]


def test_the_command_line_asks_whose_and_takes_the_originator(squatted: Net) -> None:
    directory = str(next(m.directory for m in squatted.members if m.party == "USA"))
    runner = CliRunner()
    show = ["item", "show", "--dir", directory, "--as", "officer", "report-001", "--json"]
    refused = runner.invoke(cli, show)
    assert refused.exit_code == 2
    assert "of JPN and KOR" in refused.stderr
    assert "--originator" in refused.stderr
    status = runner.invoke(cli, ["duty", "label-status", "--dir", directory, "--as", "officer", "report-001"])
    assert status.exit_code == 2
    shown = runner.invoke(cli, [*show, "--originator", "KOR"])
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["payload"] == {"from": "KOR"}
    qualified = runner.invoke(cli, [*show[:-2], "JPN:report-001", "--json"])
    assert qualified.exit_code == 0, qualified.stderr
    assert json.loads(qualified.stdout)["payload"] == {"from": "JPN"}
