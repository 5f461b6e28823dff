"""Issue 14 §10: every entry point gives every reader the same answer, the visit window included.

The same readers (cleared; uncleared; no need-to-know; a visitor inside the visit and one whose
visit has ended; a disabled person; a revoked token; an expired token) ask one JPN item and the
JPN missile stream, which carry the same label, through every entry point of a JPN node process:
the REST item read and list, the ADatP-4774 export, TAXII's object and manifest, the dashboard's
item page (logged in through its own form), SSE and the WebSocket. Each entry point must answer
each reader as the node's one read decision does, and all of them the same: the attack before the
fix was a visitor whose visit had ended, refused items yet subscribing to tracks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.security._live import Processes, tokens
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from gsomia.demo.network import NetNode, build
from gsomia.node import Node
from gsomia.ui import dashboard_scope

GSOMIA = "kor-jpn-gsomia-2016"
ITEM = "j-warning"
# who asks, and whether the node's read decision lets them read the item and the stream
READERS = {
    "analyst": True,  # cleared at the item's level, need-to-know on dprk-missile
    "clerk": False,  # cleared below it
    "navy": False,  # cleared above it, but need-to-know on prc-navy only
    "guest": True,  # a visitor, inside the visit
    "gone": False,  # a visitor whose visit has ended
    "left": False,  # disabled
    "revoked": False,  # the analyst's second token, revoked
    "expired": False,  # a token that expired yesterday
}


@pytest.fixture(scope="module")
def jpn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NetNode, dict[str, str], str]]:
    members = {m.party: m for m in build(tmp_path_factory.mktemp("one-read") / "net")}
    member = members["JPN"]
    now = datetime.now(UTC)
    node = Node.open(member.directory)
    try:
        scheme = node.catalogue.party("JPN").scheme
        level = next(lv for lv in scheme.levels if lv.rank == 2).name  # the stream's level
        below = next(lv for lv in scheme.levels if lv.rank == 1).name
        top = max(scheme.levels, key=lambda lv: lv.rank).name
        node.items.ingest(
            None,
            label={  # the label the stream's tracks carry (level, topic, purpose)
                "originator": "JPN",
                "classification": level,
                "releasable_to": ["KOR", "USA"],
                "purpose": "missile-warning",
                "topics": ["dprk-missile"],
                "created": now.isoformat(),
            },
            payload=b'{"warning": 1}',
            item_id=ITEM,
        )
        for pid, clearance, topics in (
            ("clerk", below, ["dprk-missile"]),
            ("navy", top, ["prc-navy"]),
            ("guest", top, ["dprk-missile"]),
            ("gone", top, ["dprk-missile"]),
            ("left", top, ["dprk-missile"]),
        ):
            person = {"id": pid, "name": pid.title(), "nationality": "JPN", "clearance": clearance}
            node.people.add_person(None, {**person, "need_to_know": topics, "roles": ["analyst"]})
        node.duties.authorise_visit(None, "guest", highest=level, starts=now - timedelta(hours=1),
                                    ends=now + timedelta(hours=2), purpose="liaison")  # fmt: skip
        node.duties.authorise_visit(None, "gone", highest=level, starts=now - timedelta(hours=3),
                                    ends=now - timedelta(hours=1), purpose="liaison")  # fmt: skip
        held = {
            pid: node.credentials.issue(None, pid)[1] for pid in ("clerk", "navy", "guest", "gone", "left")
        }
        revoked_id, held["revoked"], _ = node.credentials.issue(None, "analyst")
        node.credentials.revoke(None, revoked_id)
        node.people.set_active(None, "left", False)
        held["analyst"] = tokens(member)["analyst"]
        officer = tokens(member)["officer"]
    finally:
        node.close()
    yesterday = Node.open(member.directory, clock=lambda: now - timedelta(days=2))
    try:
        held["expired"] = yesterday.credentials.issue(None, "analyst", days=1)[1]
        base = dashboard_scope(yesterday.ring).path
    finally:
        yesterday.close()
    with Processes(member):
        yield member, held, officer + "\n" + base


def _api(member: NetNode, token: str) -> Callable[..., httpx.Response]:
    def get(path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{member.endpoint}{path}", headers=headers, timeout=10, **kwargs)

    return get


def _answers(member: NetNode, token: str, officer: str, dashboard: str) -> dict[str, bool]:
    """Whether each entry point lets the holder of ``token`` read the item (or the stream)."""
    get = _api(member, token)
    out: dict[str, bool] = {}
    read = get(f"/items/{ITEM}")
    assert read.status_code in (200, 401, 404), read.text
    out["item read"] = read.status_code == 200
    listed = get("/items")
    out["item list"] = listed.status_code == 200 and ITEM in {i["id"] for i in listed.json()["items"]}
    out["4774 export"] = get(f"/items/{ITEM}/label").status_code == 200
    collections = _api(member, officer)("/taxii2/api/collections/").json()["collections"]
    cid = next(c["id"] for c in collections if c["title"] == f"agreement:{GSOMIA}")
    objects = _api(member, officer)(f"/taxii2/api/collections/{cid}/objects/").json()["objects"]
    stix_id = next(o["id"] for o in objects if o["type"] == "x-gsomia-item")
    out["taxii object"] = get(f"/taxii2/api/collections/{cid}/objects/{stix_id}/").status_code == 200
    manifest = get(f"/taxii2/api/collections/{cid}/manifest/")
    out["taxii manifest"] = manifest.status_code == 200 and stix_id in {
        o["id"] for o in manifest.json().get("objects", [])
    }
    with httpx.Client(base_url=member.endpoint, timeout=10) as browser:
        login = browser.post(
            f"{dashboard}/login",
            content=f"token={token}",
            headers={"content-type": "application/x-www-form-urlencoded", "origin": member.endpoint},
        )
        out["dashboard"] = (
            login.status_code == 303 and browser.get(f"{dashboard}/items/{ITEM}").status_code == 200
        )
    with httpx.stream(
        "GET",
        f"{member.endpoint}/stream/tracks/sse",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ) as sse:
        out["sse"] = sse.status_code == 200
    ws_url = member.endpoint.replace("http://", "ws://") + "/stream/tracks/ws"
    try:
        with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10) as ws:
            with contextlib.suppress(TimeoutError):  # open, and no track to send yet
                ws.recv(timeout=0.5)
            out["websocket"] = True
    except (InvalidStatus, ConnectionClosed):
        out["websocket"] = False
    return out


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_entry_point_gives_the_reader_the_one_read_decisions_answer(
    jpn: tuple[NetNode, dict[str, str], str], reader: str
) -> None:
    member, held, extra = jpn
    officer, dashboard = extra.split("\n")
    answers = _answers(member, held[reader], officer, dashboard)
    assert answers == dict.fromkeys(answers, READERS[reader]), answers
