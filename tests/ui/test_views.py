"""The dashboard's routes through the real app (httpx ASGI transport): login cookie, CSRF, pages, feeds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.node_fixtures import add, assured, jpn_label, kor_label

from gsomia.api import create_app
from gsomia.core.access import Person
from gsomia.node import Node, PortionIngest
from gsomia.store import FeedbackRow
from gsomia.ui import dashboard_scope

Browse = Callable[..., httpx.Response]
BASE = "http://node"
HOURS = timedelta(hours=4)
GSOMIA = "kor-jpn-gsomia-2016"


@pytest.fixture
def tokens(jpn_node: Node, people: dict[str, Person]) -> dict[str, str]:
    return {pid: jpn_node.credentials.issue(None, pid)[1] for pid in people}


@pytest.fixture
def ui(jpn_node: Node) -> str:
    """The path of this node's dashboard (its own: the session cookie is scoped to it)."""
    return dashboard_scope(jpn_node.ring).path


@pytest.fixture
def browse(jpn_node: Node, ui: str) -> Browse:
    """One request through the app; ``cookie`` is the token a browser logged in with (its session
    is opened once per token), ``~`` in ``url`` the dashboard's path, ``headers`` anything else."""
    app = create_app(jpn_node)
    scope = dashboard_scope(jpn_node.ring)
    sessions: dict[str, str] = {}

    def do(method: str, url: str, cookie: str | None = None, **kwargs: Any) -> httpx.Response:
        url = url.replace("~", ui, 1)
        if cookie and cookie not in sessions:
            sessions[cookie] = jpn_node.credentials.open_session(cookie)[0]
        cookies = {scope.cookie: sessions[cookie]} if cookie else None

        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE, cookies=cookies) as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(run())

    return do


def refusals(node: Node, kind: str) -> list[Any]:
    return [r for r in node.store.audit(kind=kind) if r.outcome == "refused"]


def test_login_sets_an_httponly_strict_session_cookie_scoped_to_this_dashboard(
    browse: Browse, tokens: dict[str, str], jpn_node: Node, ui: str
) -> None:
    response = browse(
        "POST",
        "~/login",
        content=f"token={tokens['tanaka']}&next=~/items".replace("~", ui),
        headers={"content-type": "application/x-www-form-urlencoded", "origin": BASE},
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"{ui}/items"
    cookie = response.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    session = rest.split(";")[0]
    assert name == dashboard_scope(jpn_node.ring).cookie
    assert session != tokens["tanaka"]  # an opaque session id, never the token
    assert tokens["tanaka"] not in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert f"Path={ui}" in cookie
    assert jpn_node.credentials.session(session).id == "tanaka"


def test_the_old_login_page_leads_to_this_dashboard(browse: Browse, ui: str) -> None:
    response = browse("GET", "/ui/login?next=/ui/items")
    assert response.status_code == 303
    assert response.headers["location"] == f"{ui}/login?next=%2Fui%2Fjpn-{ui.split('-')[1]}%2Fitems"
    assert browse("GET", "/ui").headers["location"] == f"{ui}/agreements"


def test_login_with_a_bad_token_is_refused_and_audited(browse: Browse, jpn_node: Node) -> None:
    response = browse(
        "POST",
        "~/login",
        content="token=gsm_nope",
        headers={"content-type": "application/x-www-form-urlencoded", "origin": BASE},
    )
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert "unknown token" in response.text
    assert refusals(jpn_node, "auth")


def test_login_posted_from_another_site_is_refused(
    browse: Browse, tokens: dict[str, str], jpn_node: Node
) -> None:
    response = browse(
        "POST",
        "~/login",
        content=f"token={tokens['tanaka']}",
        headers={"content-type": "application/x-www-form-urlencoded", "origin": "http://evil.example"},
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert refusals(jpn_node, "ui.login")


def test_login_redirect_stays_on_the_dashboard(browse: Browse, tokens: dict[str, str], ui: str) -> None:
    response = browse(
        "POST",
        "~/login",
        content=f"token={tokens['tanaka']}&next=https://evil.example/",
        headers={"content-type": "application/x-www-form-urlencoded", "origin": BASE},
    )
    assert response.headers["location"] == f"{ui}/agreements"


def test_a_page_without_a_session_redirects_to_login(browse: Browse, ui: str) -> None:
    response = browse("GET", "~/items")
    assert response.status_code == 303
    assert response.headers["location"] == f"{ui}/login?next={ui}/items"


def test_the_session_authenticates_reads_under_the_dashboard_only(
    browse: Browse, tokens: dict[str, str]
) -> None:
    assert browse("GET", "~/api/matrix?at=2019-11-23", tokens["tanaka"]).status_code == 200
    assert browse("GET", "/agreements", tokens["tanaka"]).status_code == 401  # the API needs the bearer
    assert (
        browse("GET", "/agreements", headers={"Authorization": f"Bearer {tokens['tanaka']}"}).status_code
        == 200
    )


def test_the_cookie_alone_cannot_change_anything(browse: Browse, tokens: dict[str, str]) -> None:
    """CSRF: a state-changing request needs the bearer header; the session cookie is for reading."""
    body = {
        "label": kor_label(originator="JPN", classification="極秘", releasable_to=["KOR"]),
        "payload": {"x": 1},
    }
    refused = browse("POST", "/items", tokens["tanaka"], json=body)
    assert refused.status_code == 401
    allowed = browse("POST", "/items", json=body, headers={"Authorization": f"Bearer {tokens['tanaka']}"})
    assert allowed.status_code == 201, allowed.text


def test_pages_carry_a_strict_content_security_policy(browse: Browse, tokens: dict[str, str]) -> None:
    for page in ("agreements", "matrix", "items", "flows", "audit", "tracks"):
        response = browse("GET", f"~/{page}", tokens["admin"])
        assert response.status_code in (200, 403), page
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy


def test_only_shipped_assets_are_served(browse: Browse) -> None:
    assert browse("GET", "/ui/static/matrix.js").headers["content-type"].startswith("text/javascript")
    assert browse("GET", "/ui/static/nope.js").status_code == 404
    assert browse("GET", "/ui/static/..%2F_views.py").status_code == 404


def test_agreements_page_shows_the_state_at_the_chosen_instant(
    browse: Browse, tokens: dict[str, str]
) -> None:
    html = browse("GET", "~/agreements?at=2019-09-01", tokens["tanaka"]).text
    assert 'data-agreement="kor-jpn-gsomia-2016" data-status="termination_notified"' in html
    html = browse("GET", "~/agreements?at=2020-01-01", tokens["tanaka"]).text
    assert 'data-agreement="kor-jpn-gsomia-2016" data-status="notice_suspended"' in html
    assert 'data-event="2019-11-22-notice-suspended"' in html


def test_the_dashboard_marks_the_assumptions_behind_a_state(browse: Browse, tokens: dict[str, str]) -> None:
    """Issue 21 §3: the notice_suspended state is Seoul's reading; the dashboard says so, as an
    assumption with its consequence, while that state holds (and not before)."""
    html = browse("GET", "~/agreements?at=2020-01-01", tokens["tanaka"]).text
    assert "Assumption: The notice_suspended state" in html
    assert "Tokyo kept counting" in html
    assert "Seoul&#39;s reading" in html or "Seoul's reading" in html
    before = browse("GET", "~/agreements?at=2019-09-01", tokens["tanaka"]).text
    assert "Tokyo kept counting" not in before
    feed = browse("GET", "~/api/matrix", tokens["tanaka"], params=[("at", "2020-01-01")]).json()
    gsomia = next(a for a in feed["agreements"] if a["id"] == "kor-jpn-gsomia-2016")
    assert "Assumption: The notice_suspended state" in gsomia["explanation"]


def test_agreements_page_names_a_bad_instant(browse: Browse, tokens: dict[str, str]) -> None:
    response = browse("GET", "~/agreements?at=2019-13-01", tokens["tanaka"])
    assert response.status_code == 422
    assert "2019-13-01" in response.json()["detail"]


def matrix_cell(data: dict[str, Any], sender: str, recipient: str) -> dict[str, Any]:
    return next(c for c in data["cells"] if (c["sender"], c["recipient"]) == (sender, recipient))


def test_matrix_feed_follows_the_agreements_and_the_what_if(browse: Browse, tokens: dict[str, str]) -> None:
    def at(day: str, *without: str) -> dict[str, Any]:
        params: list[tuple[str, str]] = [("at", day), *(("without", w) for w in without)]
        response = browse("GET", "~/api/matrix", tokens["tanaka"], params=params)
        assert response.status_code == 200, response.text
        return matrix_cell(response.json(), "KOR", "JPN")

    before = at("2016-11-22")
    assert (before["route"], before["level"], before["agreement"]) == ("via USA", "군사II급비밀", "tisa-2014")
    assert at("2014-12-01")["route"] == "none"
    assert at("2019-11-23")["route"] == "direct"
    assert "suspended" in at("2019-11-23")["explanation"][1]
    without = at("2019-11-23", "2019-11-22-notice-suspended")
    assert (without["route"], without["marking"]) == ("via USA", "KOR 極秘")


def test_matrix_feed_names_bad_input(browse: Browse, tokens: dict[str, str], jpn_node: Node) -> None:
    bad = browse("GET", "~/api/matrix?at=2019-11-23&purpose=gossip", tokens["tanaka"])
    assert bad.status_code == 422
    assert "gossip" in bad.json()["detail"]
    unknown = browse("GET", "~/api/matrix?at=2019-11-23&without=no-such-event", tokens["tanaka"])
    assert unknown.status_code == 422
    assert "no-such-event" in unknown.json()["detail"]
    assert browse("GET", "~/api/matrix?at=2019-11-23").status_code == 401
    assert [r for r in jpn_node.store.audit(kind="api.refused") if "gossip" in r.detail]


def test_items_page_shows_both_labels_and_withholds_the_unreadable(
    browse: Browse, tokens: dict[str, str], jpn_node: Node
) -> None:
    jpn_node.items.ingest(
        None,  # as the exchange stores it
        label=kor_label(),
        payload=b"{}",
        item_id="kor-1",
        received_from="KOR",
        agreement="kor-jpn-gsomia-2016",
    )
    cleared = browse("GET", "~/items", tokens["tanaka"]).text
    assert 'data-item-id="kor-1"' in cleared
    assert "군사II급비밀" in cleared
    assert "極秘" in cleared
    uncleared = browse("GET", "~/items", tokens["sato"]).text  # 秘 only: below the item's 極秘
    assert "kor-1" not in uncleared
    assert "withheld" not in uncleared  # nothing counts what the reader may not read
    detail = browse("GET", "~/items/kor-1", tokens["tanaka"]).text
    assert 'data-kind="received"' in detail
    assert "received from KOR under kor-jpn-gsomia-2016" in detail
    assert "No feedback sent to KOR yet" in detail

    # what JPN's node keeps of the feedback it sent about the item (the exchange's side is tested in
    # tests/duties/test_feedback.py): shown on the item's page to its readers, escaped
    row = FeedbackRow(
        "JPN", "f" * 32, "kor-1", "KOR", "question", "<b>which radar?</b>", "[]", "tanaka", 0, "jws", 0
    )
    jpn_node.duties.db.commit(ops=[jpn_node.duties.db.put("feedback", row)])
    detail = browse("GET", "~/items/kor-1", tokens["tanaka"]).text
    assert 'data-feedback="question"' in detail
    assert "&lt;b&gt;which radar?&lt;/b&gt;" in detail
    refused = browse("GET", "~/items/kor-1", tokens["sato"])
    assert refused.status_code == 404  # as an unknown item: nothing says it exists
    unknown = browse("GET", "~/items/kor-9", tokens["sato"])
    assert refused.text.split("<main>")[1] == unknown.text.split("<main>")[1].replace("kor-9", "kor-1")


def test_flows_need_the_audit_roles(browse: Browse, tokens: dict[str, str], jpn_node: Node) -> None:
    assert browse("GET", "~/api/flows", tokens["tanaka"]).status_code == 403
    assert browse("GET", "~/flows", tokens["tanaka"]).status_code == 403
    assert refusals(jpn_node, "authz.flows.read")
    assert browse("GET", "~/api/flows", tokens["admin"]).json() == {"flows": [], "last": 0}


def test_audit_page_shows_the_signed_head(browse: Browse, tokens: dict[str, str], jpn_node: Node) -> None:
    # the page reads, never integrates: before the node's writer has run there is no head to show
    assert jpn_node.audit.latest_head() is None
    assert "No signed head yet" in browse("GET", "~/audit", tokens["tanaka"]).text
    assert jpn_node.audit.latest_head() is None
    head = jpn_node.audit.sign_head()  # what the node's background loop does within a second
    html = browse("GET", "~/audit", tokens["tanaka"]).text
    assert head.root.hex() in html
    assert f'<dd id="head-size">{head.size}</dd>' in html
    assert "No partner head received yet." in html


def test_the_queue_shows_each_officer_what_waits_for_items_they_may_read(
    browse: Browse, tokens: dict[str, str], jpn_node: Node, people: dict[str, Person], tmp_path: Path
) -> None:
    """Issue 20 §1, §3 and 21 §2: the officer's queue (release requests awaiting a second officer,
    reviews due, items to return or destroy), each entry only for an officer who may read its item."""
    assured(jpn_node, tmp_path, "KOR")  # Art. 7(5): KOR's assurance on file, for the release asked
    officer = add(jpn_node, "officer", "JPN", "特定秘密", ["dprk-missile"], ["release_officer"])
    add(jpn_node, "low", "JPN", "秘", ["dprk-missile"], ["release_officer", "security_officer"])
    add(jpn_node, "keeper", "JPN", "特定秘密", ["dprk-missile"], ["security_officer"])
    jpn_node.exchange.set_two_person(
        people["admin"], above={"JPN": "秘"}, hub_relay=False, relay_authorisations=False, validity=HOURS
    )
    jpn_node.items.ingest(
        officer, label=jpn_label(review="2024-02-15T00:00:00+09:00"), payload=b"{}", item_id="j-q"
    )
    asked = jpn_node.exchange.request_release(officer, "j-q", "KOR")
    jpn_node.items.ingest(
        None,
        label=kor_label(),
        payload=b"{}",
        item_id="k-q",
        received_from="KOR",
        agreement="kor-jpn-gsomia-2016",
    )
    jpn_node.duties.end_purpose(officer, "k-q", "the exercise concluded")
    sessions = {p: jpn_node.credentials.issue(None, p)[1] for p in ("officer", "low", "keeper")}

    page = browse("GET", "~/queue", sessions["officer"])
    assert page.status_code == 200
    assert f'data-request="{asked.id}"' in page.text
    assert "(you: another officer approves)" in page.text
    assert 'id="queue-reviews"' in page.text
    assert 'data-item-id="j-q"' in page.text
    assert "the exercise concluded" in page.text
    cleared_low = browse("GET", "~/queue", sessions["low"]).text  # 秘: neither item is theirs to read
    for hidden in ("j-q", "k-q", asked.id, "the exercise concluded"):
        assert hidden not in cleared_low
    security = browse("GET", "~/queue", sessions["keeper"]).text  # no release officer: no requests
    assert "a release officer's queue" in security
    assert asked.id not in security
    assert "the exercise concluded" in security
    refused = browse("GET", "~/queue", tokens["tanaka"])  # an analyst handles no queue
    assert refused.status_code == 403


def test_an_item_in_portions_shows_the_portion_marks_the_reader_may_see(
    browse: Browse, tokens: dict[str, str], jpn_node: Node
) -> None:
    """Issue 20 §2: the item's page marks each portion the reader may read; a reader cleared for the
    tearline alone sees it alone, under its mark, and nothing of the body (not even its mark)."""
    jpn_node.items.ingest(
        jpn_node.people.person("tanaka"),
        label=None,
        payload=b"",
        item_id="rep-1",
        portions=[
            PortionIngest("body", jpn_label(), b'{"t": 1}'),
            PortionIngest("tearline", jpn_label(classification="秘"), b'{"t": 2}'),
        ],
    )
    full = browse("GET", "~/items/rep-1", tokens["tanaka"]).text
    assert 'data-portion="body"' in full
    assert 'data-portion="tearline"' in full
    assert "極秘" in full
    partial = browse("GET", "~/items/rep-1", tokens["sato"])
    assert partial.status_code == 200
    assert 'data-portion="tearline"' in partial.text
    assert 'data-portion="body"' not in partial.text
    assert "極秘" not in partial.text
    listed = browse("GET", "~/items", tokens["sato"]).text
    assert "rep-1" in listed
    assert "極秘" not in listed
