"""The live feed (issue 20 §5): what changed, decided for each reader as a read would be, resumable
by event id, filtered; over the API as a page, Server-Sent Events and a WebSocket from real servers.
An uncleared reader, a disabled one and bad input are tried too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from gsomia.demo import network
from gsomia.errors import AuthenticationError, InvalidInputError
from gsomia.exchange import MemoryTransport
from gsomia.node import FeedFilter, Node, PortionIngest
from gsomia.testing import FakeClock

NOW = datetime(2024, 3, 1, tzinfo=UTC)


@dataclass
class Net:
    nodes: dict[str, Node]
    members: list[network.NetNode]
    clock: FakeClock

    def deliver(self) -> None:
        transport = MemoryTransport(self.nodes)
        for _ in range(4):
            if not [d for p in ("KOR", "USA", "JPN") for d in self.nodes[p].exchange.deliver_due(transport)]:
                return


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))
    members = network.build(tmp_path / "net", clock=clock)
    clock.now = NOW
    nodes = network.open_nodes(members, clock)
    yield Net(nodes, members, clock)
    for node in nodes.values():
        node.close()


def kor_item(net: Net, item_id: str, *, topics: tuple[str, ...] = ("dprk-missile",)) -> None:
    kor = net.nodes["KOR"]
    label = {
        "originator": "KOR",
        "classification": "군사II급비밀",
        "releasable_to": ["JPN", "USA"],
        "purpose": "threat-assessment",
        "topics": list(topics),
        "created": (NOW - timedelta(hours=1)).isoformat(),
    }
    kor.items.ingest(kor.people.person("officer"), label=label, payload=b'{"track": 1}', item_id=item_id)
    kor.exchange.release(kor.people.person("officer"), item_id, "JPN")
    net.deliver()


def test_arrivals_and_label_changes_reach_the_reader_who_may_read_them_and_no_one_else(net: Net) -> None:
    jpn = net.nodes["JPN"]
    start = jpn.feed.head()
    kor_item(net, "k1")
    kor = net.nodes["KOR"]
    kor.duties.reclassify(kor.people.person("officer"), "k1", "군사III급비밀", "reviewed")
    net.deliver()
    events, cursor = jpn.feed.page(jpn.people.person("officer"), start)
    assert [(e.type, e.item) for e in events] == [("arrived", "k1"), ("label-changed", "k1")]
    assert events[-1].classification == "군사III급비밀"  # the label as it is now
    assert cursor >= events[-1].id
    # the administrator holds no clearance and no need-to-know: nothing of it reaches them
    assert jpn.feed.page(jpn.people.person("admin"), start)[0] == []
    # resuming after the first event gives the rest only
    assert [e.type for e in jpn.feed.page(jpn.people.person("officer"), events[0].id)[0]] == ["label-changed"]
    assert jpn.feed.page(jpn.people.person("officer"), cursor)[0] == []
    # the originator's recall, applied here, is a recall (not merely a label change)
    kor.duties.recall(kor.people.person("officer"), "k1", "withdrawn")
    net.deliver()
    (recalled,) = jpn.feed.page(jpn.people.person("officer"), cursor)[0]
    assert (recalled.type, recalled.state) == ("recalled", "recalled")


def test_filters_and_the_cursor_skip_what_is_not_followed(net: Net) -> None:
    jpn = net.nodes["JPN"]
    start = jpn.feed.head()
    kor_item(net, "k1")
    kor_item(net, "k2", topics=("dprk-missile", "dprk-nuclear"))
    officer = jpn.people.person("officer")
    only_nuclear = FeedFilter(topics=frozenset({"dprk-nuclear"}))
    events, cursor = jpn.feed.page(officer, start, only_nuclear)
    assert [e.item for e in events] == ["k2"]
    assert jpn.feed.page(officer, start, FeedFilter(originators=frozenset({"USA"})))[0] == []
    assert [e.item for e in jpn.feed.page(officer, start, limit=1)[0]] == ["k1"]
    assert cursor > start


def test_a_disabled_reader_is_refused_and_bad_cursors_too(net: Net) -> None:
    jpn = net.nodes["JPN"]
    officer = jpn.people.person("officer")
    with pytest.raises(InvalidInputError):
        jpn.feed.page(officer, -1)
    with pytest.raises(InvalidInputError, match="at most"):
        FeedFilter(topics=frozenset(f"t{i}" for i in range(51)))
    jpn.people.set_active(None, "officer", False)
    with pytest.raises(AuthenticationError):
        jpn.feed.page(officer, 0)


def test_the_feed_over_http_sse_and_websocket(net: Net) -> None:
    jpn = net.nodes["JPN"]
    member = next(m for m in net.members if m.party == "JPN")
    token = jpn.credentials.issue(None, "officer")[1]
    admin = jpn.credentials.issue(None, "admin")[1]
    start = jpn.feed.head()
    kor_item(net, "k1")
    headers = {"Authorization": f"Bearer {token}"}
    with network.serve_in_threads(net.nodes, net.members):
        base = member.endpoint
        page = httpx.get(f"{base}/feed", params={"after": start}, headers=headers, timeout=10)
        assert page.status_code == 200, page.text
        assert [e["item"] for e in page.json()["events"]] == ["k1"]
        assert httpx.get(f"{base}/feed?after=-1", headers=headers, timeout=10).status_code == 422
        assert httpx.get(f"{base}/feed?originator=kor", headers=headers, timeout=10).status_code == 422
        assert httpx.get(f"{base}/feed", timeout=10).status_code == 401
        for query in ("agreement=", "topic=dprk-misile", "originator=GBR"):  # names the node does not know
            for path in ("/feed", "/feed/sse"):  # a misspelt filter would silently match nothing
                refused = httpx.get(f"{base}{path}?{query}", headers=headers, timeout=10)
                assert refused.status_code == 422, (path, query, refused.text)
        denied = httpx.get(
            f"{base}/feed",
            params={"after": start},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=10,
        )
        assert denied.json()["events"] == []  # the administrator has no clearance or need-to-know
        with httpx.stream(
            "GET", f"{base}/feed/sse", headers={**headers, "Last-Event-ID": str(start)}, timeout=10
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            record: dict[str, str] = {}
            for line in lines:
                if line.startswith(("event:", "id:", "data:")):
                    key, _, value = line.partition(": ")
                    record[key] = value
                if "data" in record:
                    break
        assert record["event"] == "arrived"
        assert json.loads(record["data"])["item"] == "k1"
        ws_url = base.replace("http://", "ws://") + f"/feed/ws?after={start}"
        with connect(ws_url, additional_headers=headers) as ws:
            assert json.loads(ws.recv(timeout=10))["item"] == "k1"


def test_an_item_in_portions_reaches_the_feed_of_a_reader_of_one_portion_under_its_mark(net: Net) -> None:
    """Issue 20 §2 with §5: the feed decides each event as a read would, per portion: a KOR reader
    cleared for the tearline alone sees the report arrive marked as the tearline, never the body's mark."""
    kor = net.nodes["KOR"]
    kor.people.add_person(
        None,
        {"id": "junior", "name": "Junior", "nationality": "KOR", "clearance": "군사III급비밀",
         "need_to_know": ["dprk-missile"], "roles": ["analyst"]},
    )  # fmt: skip
    start = kor.feed.head()
    label = {
        "originator": "KOR",
        "releasable_to": ["USA"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (NOW - timedelta(hours=1)).isoformat(),
    }
    kor.items.ingest(
        kor.people.person("officer"),
        label=None,
        payload=b"",
        item_id="r1",
        portions=[
            PortionIngest("body", {**label, "classification": "군사II급비밀"}, b"{}"),
            PortionIngest("tearline", {**label, "classification": "군사III급비밀"}, b"{}"),
        ],
    )
    (seen,) = kor.feed.page(kor.people.person("junior"), start)[0]
    assert (seen.item, seen.classification) == ("r1", "군사III급비밀")
    (full,) = kor.feed.page(kor.people.person("officer"), start)[0]
    assert full.classification == "군사II급비밀"
