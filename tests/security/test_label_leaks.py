"""Issue 14 §6: an item a reader may not read looks exactly like an item that does not exist.

The attacker is an insider: a JPN analyst cleared 秘 (below the item's 極秘), a JPN release officer
without any clearance, a person with no need-to-know. They probe ids, filters and pages through
every shell (REST, TAXII, the dashboard, the ADatP-4774/4778 exports, the command line) for
anything that tells them an item exists or what its label is: a different status, message, body,
count or cursor. The node's one read decision refuses them all as it refuses an unknown id; why
is in the audit records, for the security officer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.node_fixtures import add, kor_label, refused_checks
from typer.testing import CliRunner

from gsomia.api import create_app
from gsomia.cli import app as cli
from gsomia.core.access import Person
from gsomia.demo import network
from gsomia.node import Node
from gsomia.testing import FakeClock, make_node
from gsomia.ui import dashboard_scope

GSOMIA = "kor-jpn-gsomia-2016"
Call = Callable[..., httpx.Response]


@pytest.fixture
def call(jpn_node: Node) -> Call:
    app = create_app(jpn_node)
    scope = dashboard_scope(jpn_node.ring)
    sessions: dict[str, str] = {}

    def do(method: str, url: str, token: str, *, cookie: bool = False, **kwargs: Any) -> httpx.Response:
        url = url.replace("~", scope.path, 1)
        headers, cookies = {}, None
        if cookie:
            if token not in sessions:
                sessions[token] = jpn_node.credentials.open_session(token)[0]
            cookies = {scope.cookie: sessions[token]}
        else:
            headers["Authorization"] = f"Bearer {token}"

        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://node", cookies=cookies) as c:
                return await c.request(method, url, headers=headers, **kwargs)

        return asyncio.run(run())

    return do


def _receive(node: Node, item_id: str, **label: Any) -> None:
    node.items.ingest(
        None, label=kor_label(**label), payload=b'{"track": 7}', item_id=item_id,
        received_from="KOR", agreement=GSOMIA,
    )  # fmt: skip


@pytest.fixture
def tokens(jpn_node: Node, people: dict[str, Person]) -> dict[str, str]:
    add(jpn_node, "clerk", "JPN", None, ["dprk-missile"], ["release_officer"])  # no clearance
    add(jpn_node, "officer", "JPN", "特定秘密", ["dprk-missile"], ["release_officer"])
    add(jpn_node, "guard", "JPN", None, [], ["security_officer"])
    _receive(jpn_node, "kor-secret")  # 군사II급비밀 -> 極秘: tanaka reads it, sato (秘) may not
    return {pid: jpn_node.credentials.issue(None, pid)[1] for pid in (*people, "clerk", "officer", "guard")}


def _same(
    refused: httpx.Response, unknown: httpx.Response, ids: tuple[str, str] = ("kor-secret", "no-such-item")
) -> None:
    """The two answers are the same but for the id asked for (and a TAXII error's random id)."""
    assert refused.status_code == unknown.status_code == 404, (refused.text, unknown.text)
    assert refused.headers["content-type"] == unknown.headers["content-type"]

    def body(response: httpx.Response, item_id: str) -> str:
        text = response.text.replace(item_id, "ID")
        if "json" in response.headers["content-type"]:
            data = response.json()
            data.pop("error_id", None)
            text = json.dumps(data, sort_keys=True, ensure_ascii=False).replace(item_id, "ID")
        return text

    assert body(refused, ids[0]) == body(unknown, ids[1])
    for leak in ("極秘", "군사II급비밀", "dprk-missile", "clearance", "KOR"):
        assert leak not in refused.text, leak


def test_a_refused_read_and_an_unknown_id_look_the_same_through_every_shell(
    call: Call, tokens: dict[str, str], jpn_node: Node
) -> None:
    """The under-cleared analyst probes an id through the API, its exports, the dashboard and TAXII."""
    for path, cookie in (
        ("/items/{}", False),
        ("/items/{}/inventory", False),
        ("/items/{}/label", False),
        ("/items/{}/binding?format=json", False),
        ("~/items/{}", True),
    ):
        held = call("GET", path.format("kor-secret"), tokens["tanaka"], cookie=cookie)
        assert held.status_code != 404  # (a binding needs the originator's signature: 422 here)
        refused = call("GET", path.format("kor-secret"), tokens["sato"], cookie=cookie)
        unknown = call("GET", path.format("no-such-item"), tokens["sato"], cookie=cookie)
        _same(refused, unknown)
    collections = call("GET", "/taxii2/api/collections/", tokens["sato"]).json()["collections"]
    kor = next(c["id"] for c in collections if c["title"] == "party:KOR")
    objects = f"/taxii2/api/collections/{kor}/objects/"
    held = call("GET", objects, tokens["tanaka"]).json()["objects"]
    stix_id = next(o["id"] for o in held if o["type"] != "marking-definition")
    ghost = stix_id.split("--")[0] + "--00000000-0000-4000-8000-000000000000"
    for suffix in ("", "versions/"):
        assert call("GET", f"{objects}{stix_id}/{suffix}", tokens["tanaka"]).status_code == 200
        refused = call("GET", f"{objects}{stix_id}/{suffix}", tokens["sato"])
        unknown = call("GET", f"{objects}{ghost}/{suffix}", tokens["sato"])
        _same(refused, unknown, (stix_id, ghost))
    # the security officer still reads why, in the audit records
    assert [c["rule"] for c in refused_checks(jpn_node, "kor-secret")] == ["clearance"]


def test_an_uncleared_release_officer_learns_nothing_by_releasing_or_asking_consent(
    call: Call, tokens: dict[str, str]
) -> None:
    for path, body in (
        ("/items/{}/release", {"recipient": "USA"}),
        ("/items/{}/consent-requests", {"third_party": "USA", "purpose": "x", "reason": "y"}),
    ):
        refused = call("POST", path.format("kor-secret"), tokens["clerk"], json=body)
        unknown = call("POST", path.format("no-such-item"), tokens["clerk"], json=body)
        _same(refused, unknown)


def test_a_filtered_list_says_nothing_of_what_it_left_out(
    call: Call, tokens: dict[str, str], jpn_node: Node
) -> None:
    """Probing by level, topic and page size: no count, and a cursor only when readable items follow."""
    for n in range(3):
        _receive(jpn_node, f"conf-{n}", classification="군사III급비밀")  # -> 秘: sato reads these
    for n in range(25):
        _receive(jpn_node, f"hidden-{n}")  # -> 極秘, after the readable ones

    def page(**params: Any) -> dict[str, Any]:
        response = call("GET", "/items", tokens["sato"], params=params)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        assert set(data) == {"items", "next_cursor"}  # no "withheld", nothing else
        return data

    # a level the reader may not read answers as a level nobody holds
    assert page(classification="군사II급비밀") == page(classification="군사I급비밀") == {
        "items": [], "next_cursor": None,
    }  # fmt: skip
    # 25 unreadable items follow the last readable one: the page ends as if there were none
    assert page(limit=3) == {"items": page(limit=3)["items"], "next_cursor": None}
    assert [i["id"] for i in page(limit=3)["items"]] == ["conf-0", "conf-1", "conf-2"]
    first = page(limit=2)
    assert [i["id"] for i in first["items"]] == ["conf-0", "conf-1"]
    last = page(limit=2, cursor=first["next_cursor"])
    assert last == {"items": last["items"], "next_cursor": None}
    assert [i["id"] for i in last["items"]] == ["conf-2"]
    # the dashboard's list counts nothing either
    assert "withheld" not in call("GET", "~/items", tokens["sato"], cookie=True).text
    # what was left out is in the audit records only
    lists = [
        json.loads(r.detail) for r in jpn_node.store.audit() if r.kind == "item.list" and r.actor == "sato"
    ]
    assert any(d["withheld"] >= 25 for d in lists)


def test_a_cursor_says_nothing_of_the_items_between_and_is_the_readers_alone(
    call: Call, tokens: dict[str, str], jpn_node: Node
) -> None:
    """A cursor named the store's sequence number of the last item served (``s1``, then ``s7``): a
    reader paging one item at a time read off how many items they may not read lay between two they
    may (five, here). It is now sealed (AES-SIV under the node key) for the reader: opaque, and
    refused when another reader presents it, when forged, or when altered."""
    _receive(jpn_node, "conf-0", classification="군사III급비밀")
    for n in range(5):
        _receive(jpn_node, f"hidden-{n}")
    for n in (1, 2):
        _receive(jpn_node, f"conf-{n}", classification="군사III급비밀")
    cursors, seen, cursor = [], [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        data = call("GET", "/items", tokens["sato"], params=params).json()
        seen += [i["id"] for i in data["items"]]
        cursor = data["next_cursor"]
        if cursor is None:
            break
        cursors.append(cursor)
    assert seen == ["conf-0", "conf-1", "conf-2"]
    assert len(cursors) == 2
    for c in cursors:
        assert not c[1:].isdigit(), c  # no position in clear
    altered = cursors[0][:-1] + ("A" if cursors[0][-1] != "A" else "B")
    for who, c in (("tanaka", cursors[0]), ("sato", "s7"), ("sato", altered), ("sato", "s" + "A" * 32)):
        response = call("GET", "/items", tokens[who], params={"cursor": c})
        assert response.status_code == 422, (who, c, response.text)
        assert "cursor" in response.text


@pytest.mark.usefixtures("tokens")  # the JPN node the command line opens
def test_the_command_line_refuses_as_unknown_and_counts_nothing(tmp_path: Path, store_url: str) -> None:
    if not store_url.startswith("sqlite"):
        pytest.skip("each command opens the node's store for its own process; once is enough")
    runner = CliRunner()
    directory = str(tmp_path / "jpn")
    refused = runner.invoke(cli, ["item", "show", "--dir", directory, "--as", "sato", "kor-secret"])
    unknown = runner.invoke(cli, ["item", "show", "--dir", directory, "--as", "sato", "no-such-item"])
    assert refused.exit_code == unknown.exit_code == 2
    assert refused.stderr.replace("kor-secret", "ID") == unknown.stderr.replace("no-such-item", "ID")
    listed = runner.invoke(cli, ["item", "list", "--dir", directory, "--as", "sato", "--json"])
    assert listed.exit_code == 0, listed.stderr
    assert json.loads(listed.stdout) == {"items": [], "next_cursor": None}


def test_the_outbox_shows_an_officer_only_what_their_clearance_lets_them_read(
    call: Call, tokens: dict[str, str], jpn_node: Node, tmp_path: Path, clock: FakeClock
) -> None:
    """An uncleared release officer lists the outbox: the entry about the 特定秘密 item is not there;
    the security officer's full view is asked for explicitly and audited."""
    kor = make_node(tmp_path / "kor", "KOR", clock=clock)
    try:
        jpn_node.exchange.register_peer(None, kor.exchange.identity(), [GSOMIA])
        network.assure({"KOR": kor, "JPN": jpn_node})  # Art. 7(5): KOR's assurance on file at JPN
    finally:
        kor.close()
    jpn_node.items.ingest(
        None,
        label=kor_label(originator="JPN", classification="特定秘密", releasable_to=["KOR"]),
        payload=b"{}",
        item_id="jpn-top",
    )
    released = call("POST", "/items/jpn-top/release", tokens["officer"], json={"recipient": "KOR"})
    assert released.status_code == 202, released.text
    assert [e["item_id"] for e in call("GET", "/outbox", tokens["officer"]).json()] == ["jpn-top"]
    assert call("GET", "/outbox", tokens["clerk"]).json() == []
    assert call("GET", "/outbox", tokens["clerk"], params={"all": "true"}).status_code == 403
    every = call("GET", "/outbox", tokens["guard"], params={"all": "true"})
    assert [e["item_id"] for e in every.json()] == ["jpn-top"]
    assert any(r.kind == "outbox.read_all" and r.actor == "guard" for r in jpn_node.store.audit())
