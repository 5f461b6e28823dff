"""The live feed (issue 20 §5): what changed, decided for each reader as a read would be, resumable
by event id, filtered; over the API as a page, Server-Sent Events and a WebSocket from real servers.
An uncleared reader, a disabled one and bad input are tried too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import httpx
import pytest
from websockets.sync.client import connect

from gsomia.api._feed import EventType
from gsomia.demo import network
from gsomia.errors import AuthenticationError, GsomiaError, InvalidInputError
from gsomia.exchange import MemoryTransport
from gsomia.node import EVENT_TYPES, FeedFilter, FlowEvent, Node, PortionIngest
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
    # the administrator holds no clearance and no need-to-know: nothing of the item reaches them
    # (an administrator reads the audit records: the envelope's flow alone, no label, no payload)
    assert {e.type for e in jpn.feed.page(jpn.people.person("admin"), start)[0]} == {"flow"}
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
        # the administrator has no clearance or need-to-know: the envelope's flow, nothing of the item
        assert {e["type"] for e in denied.json()["events"]} == {"flow"}
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


def _chief(node: Node) -> None:
    """A security officer (a reader of the audit records) who is an analyst as well."""
    node.people.add_person(
        None,
        {"id": "chief", "name": "Chief", "nationality": node.party, "clearance": "極秘",
         "need_to_know": ["dprk-missile"], "roles": ["security_officer", "analyst"]},
    )  # fmt: skip


def _refused_release(net: Net) -> None:
    """JPN's release officer tries to send KOR an item JPN marked for the USA alone: refused."""
    jpn = net.nodes["JPN"]
    officer = jpn.people.person("officer")
    label = {
        "originator": "JPN",
        "classification": "秘",
        "releasable_to": ["USA"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (NOW - timedelta(hours=1)).isoformat(),
    }
    jpn.items.ingest(officer, label=label, payload=b"{}", item_id="j-usa")
    with pytest.raises(GsomiaError):
        jpn.exchange.release(officer, "j-usa", "KOR")


def test_flows_and_refusals_reach_readers_of_the_audit_alone(net: Net) -> None:
    """The flows page's events: an envelope received and a refused release reach the security
    officer with the reason; the analyst, who may read the item that came, gets its arrival and
    nothing of the flows, even when it asks for them."""
    jpn = net.nodes["JPN"]
    _chief(jpn)
    start = jpn.feed.head()
    kor_item(net, "k1")
    _refused_release(net)
    chief = jpn.people.person("chief")
    events, _ = jpn.feed.page(chief, start)
    flows = {(e.flow["kind"], e.flow["direction"]): e.flow for e in events if isinstance(e, FlowEvent)}
    assert flows[("envelope.received", "received")]["item"] == "k1"
    refusal = flows[("item.release", "refused")]
    assert refusal["item"] == "j-usa"
    assert refusal["reason"]
    assert ("arrived", "k1") in [
        (e.type, getattr(e, "item", None)) for e in events
    ]  # one record, both events
    analyst_events, cursor = jpn.feed.page(jpn.people.person("analyst"), start)
    assert ("arrived", flows[("envelope.received", "received")]["seq"]) in [
        (e.type, e.id) for e in analyst_events
    ]
    assert [e for e in analyst_events if e.type == "flow" or isinstance(e, FlowEvent)] == []
    assert jpn.feed.page(jpn.people.person("analyst"), cursor)[0] == []  # nor later
    # asking for flows explicitly changes nothing for the analyst
    assert jpn.feed.page(jpn.people.person("analyst"), start, FeedFilter(types=frozenset({"flow"})))[0] == []
    # only flows, for the chief; a filter on items leaves them out
    only_flows = jpn.feed.page(chief, start, FeedFilter(types=frozenset({"flow"})))[0]
    assert only_flows
    assert all(e.type == "flow" for e in only_flows)
    assert all(
        e.type != "flow"
        for e in jpn.feed.page(chief, start, FeedFilter(topics=frozenset({"dprk-missile"})))[0]
    )
    # a record's events are never split by the page's limit: the next page resumes at the record
    first, after_first = jpn.feed.page(chief, start, limit=1)
    assert [e.type for e in first] in (["arrived", "flow"], ["flow"])
    assert all(e.id > after_first for e in jpn.feed.page(chief, after_first)[0] if isinstance(e, FlowEvent))
    with pytest.raises(InvalidInputError, match="no event type"):
        FeedFilter(types=frozenset({"refusal"}))


def test_the_documented_event_types_are_the_feeds() -> None:
    assert frozenset(get_args(EventType)) == EVENT_TYPES


def test_tree_heads_follow_from_a_size_and_reach_any_reader(net: Net) -> None:
    jpn = net.nodes["JPN"]
    analyst = jpn.people.person("analyst")
    before = jpn.feed.head_size()
    kor_item(net, "k1")
    signed = jpn.audit.sign_head()
    (head,) = jpn.feed.heads(analyst, before)
    assert (head.size, head.root, head.jws) == (signed.size, signed.root.hex(), signed.jws)
    assert jpn.feed.heads(analyst, head.size) == []
    assert jpn.feed.heads(analyst, before, FeedFilter(types=frozenset({"arrived"}))) == []
    with pytest.raises(InvalidInputError):
        jpn.feed.heads(analyst, -1)


def _sse_events(stream: httpx.Response) -> Iterator[tuple[dict[str, str], str]]:
    """Each Server-Sent Event of ``stream`` as its fields, with the raw text it came in."""
    record: dict[str, str] = {}
    raw: list[str] = []
    for line in stream.iter_lines():
        raw.append(line)
        if line.startswith(("event:", "id:", "data:")):
            key, _, value = line.partition(": ")
            record[key] = value
        elif line == "":
            if record:
                yield record, "\n".join(raw)
            record, raw = {}, []


def test_a_refusal_on_the_feed_reaches_the_security_officer_and_no_analyst(net: Net) -> None:
    """Over real servers: a forged envelope refused at JPN's inbox is a ``flow`` event with its
    reason on the security officer's stream; the analyst's stream, followed until a marker (an item
    the analyst may read, arriving after the refusal), carries nothing of it; tree heads resume
    from the SSE id (``<record>.<tree head size>``)."""
    jpn = net.nodes["JPN"]
    _chief(jpn)
    member = next(m for m in net.members if m.party == "JPN")
    analyst = {"Authorization": f"Bearer {jpn.credentials.issue(None, 'analyst')[1]}"}
    chief = {"Authorization": f"Bearer {jpn.credentials.issue(None, 'chief')[1]}"}
    start = jpn.feed.head()
    with network.serve_in_threads(net.nodes, net.members):
        base = member.endpoint
        refused = httpx.post(f"{base}/inbox", json={"envelopes": ["forged-by-an-adversary"]}, timeout=10)
        assert refused.json()["results"][0]["status"] == "refused"
        kor_item(net, "marker")  # after the refusal: the analyst may read it
        seen: list[str] = []
        with httpx.stream("GET", f"{base}/feed/sse?after={start}", headers=analyst, timeout=10) as stream:
            for record, raw in _sse_events(stream):
                seen.append(raw)
                if json.loads(record["data"]).get("item") == "marker":
                    break
        assert seen
        assert [r for r in seen if "event: flow" in r or "envelope.refused" in r or "forged" in r] == []
        # the same over the WebSocket, up to the marker
        ws_url = base.replace("http://", "ws://") + f"/feed/ws?after={start}"
        with connect(ws_url, additional_headers=analyst) as ws:
            messages = [json.loads(ws.recv(timeout=10))]
            while messages[-1].get("item") != "marker":
                messages.append(json.loads(ws.recv(timeout=10)))
        assert [m for m in messages if m["type"] == "flow"] == []
        # and through the JSON page, asking for flows by name
        page = httpx.get(f"{base}/feed", params={"after": start, "type": "flow"}, headers=analyst, timeout=10)
        assert page.status_code == 200
        assert page.json()["events"] == []
        assert httpx.get(f"{base}/feed?type=refusal", headers=analyst, timeout=10).status_code == 422
        # the security officer's stream: the refusal, with why
        with httpx.stream(
            "GET", f"{base}/feed/sse", params={"after": start, "type": "flow"}, headers=chief, timeout=10
        ) as stream:
            record, _ = next(iter(_sse_events(stream)))
        flow = json.loads(record["data"])["flow"]
        assert (record["event"], flow["kind"], flow["direction"]) == ("flow", "envelope.refused", "refused")
        assert flow["reason"]
        # tree heads: from a size, then resumed by the SSE id alone
        size = jpn.feed.head_size()
        first = jpn.audit.sign_head()
        with httpx.stream(
            "GET", f"{base}/feed/sse", params={"type": "tree-head", "head": size}, headers=analyst, timeout=10
        ) as stream:
            record, _ = next(iter(_sse_events(stream)))
        assert record["event"] == "tree-head"
        assert json.loads(record["data"])["size"] == first.size
        assert record["id"].endswith(f".{first.size}")
        kor_item(net, "later")
        second = jpn.audit.sign_head()
        with httpx.stream(
            "GET",
            f"{base}/feed/sse",
            params={"type": "tree-head"},
            headers={**analyst, "Last-Event-ID": record["id"]},
            timeout=10,
        ) as stream:
            record, _ = next(iter(_sse_events(stream)))
        assert json.loads(record["data"])["size"] == second.size > first.size
        bad = httpx.get(f"{base}/feed/sse", headers={**analyst, "Last-Event-ID": "1.x"}, timeout=10)
        assert bad.status_code == 422
        # over the WebSocket: from a tree size (resume with the last head's size), bad sizes refused
        ws_base = base.replace("http://", "ws://")
        with connect(
            f"{ws_base}/feed/ws?type=tree-head&head={first.size - 1}", additional_headers=analyst
        ) as ws:
            event = json.loads(ws.recv(timeout=10))
        assert (event["type"], event["size"], event["jws"]) == ("tree-head", first.size, first.jws)
        for query in ("head=-1", "head=1.5", "type=refusal"):
            with (
                pytest.raises(Exception, match=r"1008|403|rejected"),
                connect(f"{ws_base}/feed/ws?{query}", additional_headers=analyst) as ws,
            ):
                ws.recv(timeout=10)


def _report_at_jpn_and_usa(net: Net) -> None:
    """KOR's report in portions (the body 군사II급비밀 for the USA only, the tearline 군사III급비밀
    releasable to JPN too), released to both: the USA holds both portions, JPN the tearline alone."""
    kor = net.nodes["KOR"]
    label = {
        "originator": "KOR",
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (NOW - timedelta(hours=1)).isoformat(),
    }
    officer = kor.people.person("officer")
    kor.items.ingest(
        officer,
        label=None,
        payload=b"",
        item_id="r1",
        portions=[
            PortionIngest(
                "body", {**label, "classification": "군사II급비밀", "releasable_to": ["USA"]}, b"{}"
            ),
            PortionIngest(
                "tearline",
                {**label, "classification": "군사III급비밀", "releasable_to": ["JPN", "USA"]},
                b"{}",
            ),
        ],
    )
    kor.exchange.release(officer, "r1", "JPN")
    kor.exchange.release(officer, "r1", "USA")
    net.deliver()


def test_a_portion_recall_is_its_own_event_for_each_reader_who_may_read_what_is_left(net: Net) -> None:
    """Issue 20 §2 with §5: KOR recalls the body. At KOR and at the USA (which drops the body and keeps
    the tearline) the feed says ``portion-recalled``, not ``label-changed``; JPN, never told, has no
    such event; a USA reader who may not read the item gets nothing. The tearline recalled later
    withdraws JPN's item, its last portion: that is ``recalled`` there."""
    kor, jpn, usa = (net.nodes[p] for p in ("KOR", "JPN", "USA"))
    starts = {p: n.feed.head() for p, n in net.nodes.items()}
    _report_at_jpn_and_usa(net)
    after = {p: n.feed.head() for p, n in net.nodes.items()}
    kor.duties.recall(kor.people.person("officer"), "r1", "the source is burned", portion="body")
    net.deliver()
    seen = usa.feed.page(usa.people.person("officer"), after["USA"])[0]
    assert [(e.type, e.item, e.state) for e in seen] == [("portion-recalled", "r1", "held")]
    assert [e.type for e in kor.feed.page(kor.people.person("officer"), after["KOR"])[0]] == [
        "portion-recalled"
    ]
    assert (
        usa.feed.page(
            usa.people.person("admin"), after["USA"], FeedFilter(types=frozenset({"portion-recalled"}))
        )[0]
        == []
    )
    assert jpn.feed.page(jpn.people.person("officer"), after["JPN"])[0] == []
    only = FeedFilter(types=frozenset({"label-changed"}))
    assert usa.feed.page(usa.people.person("officer"), starts["USA"], only)[0] == []
    kor.duties.recall(kor.people.person("officer"), "r1", "released in error", portion="tearline")
    net.deliver()
    assert [e.type for e in jpn.feed.page(jpn.people.person("officer"), after["JPN"])[0]] == ["recalled"]
    (withdrawn,) = [json.loads(r.detail) for r in jpn.store.audit(kind="duty.label-change")]
    assert (withdrawn["result"], withdrawn["change"], withdrawn["portion"]) == (
        "withdrawn",
        "recall",
        "tearline",
    )


def test_a_portion_recall_over_sse_and_websocket(net: Net) -> None:
    usa = net.nodes["USA"]
    member = next(m for m in net.members if m.party == "USA")
    headers = {"Authorization": f"Bearer {usa.credentials.issue(None, 'officer')[1]}"}
    _report_at_jpn_and_usa(net)
    start = usa.feed.head()
    kor = net.nodes["KOR"]
    kor.duties.recall(kor.people.person("officer"), "r1", "the source is burned", portion="body")
    net.deliver()
    with network.serve_in_threads(net.nodes, net.members):
        base = member.endpoint
        with httpx.stream(
            "GET",
            f"{base}/feed/sse?type=portion-recalled",
            headers={**headers, "Last-Event-ID": str(start)},
            timeout=10,
        ) as stream:
            record: dict[str, str] = {}
            for line in stream.iter_lines():
                if line.startswith(("event:", "id:", "data:")):
                    key, _, value = line.partition(": ")
                    record[key] = value
                if "data" in record:
                    break
        assert record["event"] == "portion-recalled"
        assert (json.loads(record["data"])["item"], json.loads(record["data"])["state"]) == ("r1", "held")
        ws_url = base.replace("http://", "ws://") + f"/feed/ws?after={start}&type=portion-recalled"
        with connect(ws_url, additional_headers=headers) as ws:
            event = json.loads(ws.recv(timeout=10))
        assert (event["type"], event["item"]) == ("portion-recalled", "r1")
