"""Attack: the dashboard's session used from where it should not be (issues 14 §5, §7 and 22 §8).

The adversaries: a page served from another port of the same host (another node there, or any
local OS user's program) that makes the browser open a WebSocket carrying the session cookie, or
that would read the cookie if the browser sent it there; whoever gets hold of the cookie after its
owner logged out. JPN and KOR run as node processes on one host (127.0.0.1, two ports); the
browser is an HTTP client with a cookie jar that, like a browser's, scopes cookies by host and path
and ignores ports.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urljoin

import httpx
import pytest
from tests.security._live import Processes, audit, tokens
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from gsomia.demo.network import NetNode, build


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NetNode]]:
    """JPN and KOR on one host, and a second process of the JPN node (same directory, another port)."""
    members = {m.party: m for m in build(tmp_path_factory.mktemp("host") / "net")}
    jpn = members["JPN"]
    second = NetNode("JPN", jpn.directory, members["USA"].port)  # USA is not started: its port is free
    with Processes(jpn, members["KOR"], second):
        yield {"JPN": jpn, "KOR": members["KOR"], "JPN-2": second}


def _log_in(browser: httpx.Client, node: NetNode, token: str) -> str:
    """Log in as a person would: the login page's form, posted from that page. The page landed on."""
    page = browser.get(f"{node.endpoint}/ui/login", follow_redirects=True)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action is not None, page.text
    landed = browser.post(
        urljoin(str(page.url), action.group(1)),
        data={"token": token},
        headers={"Origin": node.endpoint},
        follow_redirects=True,
    )
    assert landed.status_code == 200, landed.text
    return str(landed.url)


def _cookie_header(browser: httpx.Client) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar)


def test_the_cookie_is_an_opaque_session_never_the_token(host: dict[str, NetNode]) -> None:
    """Whoever reads the cookie (a shared machine, a browser extension) must not get the API token."""
    jpn = host["JPN"]
    token = tokens(jpn)["analyst"]
    with httpx.Client(timeout=10) as browser:
        _log_in(browser, jpn, token)
        values = [c.value for c in browser.cookies.jar]
    assert values
    assert token not in values
    for value in values:  # and the session is no bearer token
        refused = httpx.get(f"{jpn.endpoint}/agreements", headers={"Authorization": f"Bearer {value}"})
        assert refused.status_code == 401


def test_another_node_on_the_same_host_never_receives_the_cookie(host: dict[str, NetNode]) -> None:
    """KOR's node, on another port of the same host, serves its own dashboard to the same browser."""
    jpn, kor = host["JPN"], host["KOR"]
    with httpx.Client(timeout=10) as browser:
        _log_in(browser, jpn, tokens(jpn)["analyst"])
        seen: list[str] = []
        browser.event_hooks["request"] = [lambda request: seen.append(request.headers.get("cookie", ""))]
        browser.get(f"{kor.endpoint}/ui", follow_redirects=True)  # KOR's dashboard, as a person would open it
        browser.get(f"{kor.endpoint}/ui/agreements", follow_redirects=True)
        browser.get(f"{kor.endpoint}/agreements")
    assert seen
    assert all(header == "" for header in seen), seen


def test_a_second_process_of_the_node_accepts_the_session(host: dict[str, NetNode]) -> None:
    """The session lives in the node's database, not in the memory of the process that opened it."""
    jpn, second = host["JPN"], host["JPN-2"]
    with httpx.Client(timeout=10) as browser:
        landed = _log_in(browser, jpn, tokens(jpn)["analyst"])
        path = landed.removeprefix(jpn.endpoint)
        page = browser.get(f"{second.endpoint}{path}")
    assert page.status_code == 200
    assert "analyst" in page.text


def test_logging_out_revokes_the_session_and_its_token(host: dict[str, NetNode]) -> None:
    """Someone who copied the cookie, or the token typed at login, tries them after the logout."""
    jpn = host["JPN"]
    admin = tokens(jpn)["admin"]
    minted = httpx.post(
        f"{jpn.endpoint}/people/analyst/tokens",
        json={"days": 1},
        headers={"Authorization": f"Bearer {tokens(jpn)['analyst']}"},
    ).json()
    with httpx.Client(timeout=10) as browser:
        landed = _log_in(browser, jpn, minted["token"])
        copied = _cookie_header(browser)
        base = landed.rsplit("/", 1)[0]
        logout = browser.post(f"{base}/logout", headers={"Origin": jpn.endpoint})
        assert logout.status_code == 303
    replay = httpx.get(landed, headers={"Cookie": copied})
    assert replay.status_code == 303  # back to the login page: the session is gone
    assert "/login" in replay.headers["location"]
    bearer = httpx.get(f"{jpn.endpoint}/agreements", headers={"Authorization": f"Bearer {minted['token']}"})
    assert bearer.status_code == 401
    listed = httpx.get(
        f"{jpn.endpoint}/people/analyst/tokens", headers={"Authorization": f"Bearer {admin}"}
    ).json()
    assert next(t for t in listed if t["id"] == minted["id"])["revoked"]


def test_a_websocket_opened_from_another_origin_is_refused(host: dict[str, NetNode]) -> None:
    """A page on another port of the same host opens the track stream with the session cookie."""
    jpn, kor = host["JPN"], host["KOR"]
    with httpx.Client(timeout=10) as browser:
        landed = _log_in(browser, jpn, tokens(jpn)["analyst"])
        cookie = _cookie_header(browser)
    ws_base = jpn.endpoint.replace("http", "ws")
    dashboard = landed.rsplit("/", 1)[0].removeprefix(jpn.endpoint)
    before = len([r for r in audit(jpn, "auth") if r["outcome"] == "refused"])
    for path in ("/stream/tracks/ws", f"{dashboard}/tracks/ws"):
        with (
            pytest.raises(InvalidStatus) as refused,
            connect(ws_base + path, additional_headers={"Cookie": cookie, "Origin": kor.endpoint}),
        ):
            pass
        assert refused.value.response.status_code == 403, path
    refusals = [r for r in audit(jpn, "auth") if r["outcome"] == "refused"][before:]
    assert any(kor.endpoint in r["detail"]["reason"] for r in refusals)
    # the same session from the node's own page is accepted
    with connect(
        f"{ws_base}{dashboard}/tracks/ws", additional_headers={"Cookie": cookie, "Origin": jpn.endpoint}
    ):
        pass


def test_json_responses_are_never_cached(host: dict[str, NetNode]) -> None:
    """A shared browser or proxy must not keep a person's answers, nor a refusal."""
    jpn = host["JPN"]
    headers = {"Authorization": f"Bearer {tokens(jpn)['analyst']}"}
    for response in (
        httpx.get(f"{jpn.endpoint}/agreements", headers=headers),
        httpx.get(f"{jpn.endpoint}/people/analyst", headers=headers),
        httpx.get(f"{jpn.endpoint}/items"),  # 401, a problem document
        httpx.get(f"{jpn.endpoint}/taxii2/", headers=headers),
    ):
        assert response.headers.get("content-type", "").split(";")[0].endswith("json"), response.url
        assert response.headers.get("cache-control") == "no-store", response.url
