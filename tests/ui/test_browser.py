"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

A KOR and a JPN node are built on loopback; KOR really releases an item to JPN over the exchange,
and both nodes are served in this process (uvicorn in threads, ephemeral ports). The tracks map
is fed by the real stream: tracks published at KOR cross the link to JPN and reach the page.
Screenshots of every page go to ``test-artifacts/ui/`` at the repository root.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
from tests.conftest import _require_services
from tests.node_fixtures import kor_label

from gsomia._present import flow_view
from gsomia.api import create_app
from gsomia.core.ballistics import track_updates as ballistic_updates
from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import build, open_nodes
from gsomia.errors import GsomiaError
from gsomia.exchange import HttpTransport
from gsomia.node import Node, PortionIngest
from gsomia.node._service import system_clock
from gsomia.stream import launches
from gsomia.ui import dashboard_scope
from gsomia.ui._views import FIRST_DAY, outlines

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
GSOMIA = "kor-jpn-gsomia-2016"


def track_updates() -> list[dict[str, Any]]:
    """Two KOR tracks as KOR publishes them: t-1 flies to impact in three updates, t-2 is in flight."""
    launch = {"lat": 39.0, "lon": 125.7, "time": "2024-03-01T09:00:00+09:00"}
    impact = {"lat": 40.5, "lon": 134.0, "time": "2024-03-01T09:10:00+09:00"}

    def points(start: int, origin: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "t": f"2024-03-01T09:0{(start + i) // 2}:{(start + i) % 2 * 30:02d}+09:00",
                "lat": origin["lat"] + 0.15 * (start + i),
                "lon": origin["lon"] + 0.9 * (start + i),
                "alt_m": 50_000.0 * (start + i),
                "speed_mps": 1800.0,
            }
            for i in range(3)
        ]

    def update(track: str, start: int, *, final: bool, hit: dict[str, Any] | None) -> dict[str, Any]:
        origin = launch if track == "t-1" else {**launch, "lat": 40.0, "lon": 127.5}
        return {
            "track_id": track,
            "originator": "KOR",
            "update_ts": f"2024-03-01T09:0{start}:00+09:00",
            "launch": origin,
            "impact": hit,
            "points": points(start, origin),
            "missile_class": "SRBM",
            "quality": 0.9,
            "final": final,
        }

    return [
        update("t-1", 0, final=False, hit=None),
        update("t-2", 0, final=False, hit=None),
        update("t-1", 3, final=False, hit=impact),
        update("t-1", 6, final=True, hit=impact),
    ]


@contextmanager
def serve(app: FastAPI, port: int) -> Iterator[str]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="gsomia-ui-test")
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the node at {base} did not start")
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Net:
    base: str
    ui: str  # JPN's dashboard path
    tokens: dict[str, str]
    jpn: Node
    kor: Node
    kor_base: str
    kor_officer: str


def _person(node: Node, pid: str, clearance: str | None, topics: list[str], roles: list[str]) -> str:
    node.people.add_person(
        None,
        {"id": pid, "name": pid.title(), "nationality": node.party, "clearance": clearance,
         "need_to_know": topics, "roles": roles},
    )  # fmt: skip
    return node.credentials.issue(None, pid)[1]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    members = build(tmp_path_factory.mktemp("net"))
    nodes = open_nodes(members, system_clock)
    kor, jpn = nodes["KOR"], nodes["JPN"]
    port = {m.party: m.port for m in members}
    issued = {m.party: json.loads((m.directory / "tokens.json").read_text()) for m in members}
    tokens, kor_tokens = issued["JPN"], issued["KOR"]
    tokens["visitor"] = _person(jpn, "visitor", None, [], ["analyst"])
    tokens["chief"] = _person(
        jpn,
        "chief",
        "特定秘密",
        ["dprk-missile", "dprk-nuclear", "prc-navy"],
        ["security_officer", "analyst"],
    )
    officer = jpn.people.person("officer")
    jpn.items.ingest(
        officer,
        label=kor_label(
            originator="JPN", classification="特定秘密", releasable_to=["USA"], topics=["prc-navy"]
        ),
        payload=b'{"note": "specially designated"}',
        item_id="j-tokutei",
    )
    with serve(create_app(kor), port["KOR"]) as kor_base, serve(create_app(jpn), port["JPN"]) as base:
        kor_officer = kor.people.person("officer")
        kor.items.ingest(kor_officer, label=kor_label(), payload=b'{"track": "k"}', item_id="k-1")
        kor.exchange.release(kor_officer, "k-1", "JPN")
        kor.items.ingest(
            kor_officer, label=kor_label(classification="군사I급비밀"), payload=b"{}", item_id="k-i"
        )
        with pytest.raises(GsomiaError, match="no equivalent"):  # Class I is never released
            kor.exchange.release(kor_officer, "k-i", "JPN")
        with HttpTransport() as transport:
            delivered = kor.exchange.deliver_due(transport)
        assert [d.state for d in delivered] == ["delivered"], delivered
        refused = httpx.post(f"{base}/inbox", json={"envelopes": ["not-an-envelope"]}, timeout=10)
        assert refused.json()["results"][0]["status"] == "refused"
        jpn.audit.sign_head()  # the writer's step (no background loop here): the audit page has a head
        yield Net(base, dashboard_scope(jpn.ring).path, tokens, jpn, kor, kor_base, kor_tokens["officer"])
    for node in nodes.values():
        node.close()


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Debian's Chromium on a fresh profile; skipped when absent, failed when services are required."""
    if not CHROMIUM.exists():
        why = f"{CHROMIUM} is absent (apt-get install -y chromium; never a downloaded browser)"
        if _require_services():
            pytest.fail(f"Chromium is required (GSOMIA_REQUIRE_SERVICES=1) but absent: {why}")
        pytest.skip(why)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {ARTIFACTS}")
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 900},
        )
        ctx.set_default_timeout(8000)
        yield ctx
        ctx.close()


@dataclass
class Watched:
    page: Page
    errors: list[str]
    foreign: list[str]


@pytest.fixture
def watched(context: BrowserContext, net: Net) -> Iterator[Watched]:
    """A fresh page that records console errors, uncaught exceptions and requests to anywhere else."""
    context.clear_cookies()
    page = context.new_page()
    seen = Watched(page, [], [])
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith(net.base) else seen.foreign.append(r.url))
    yield seen
    page.close()


def login(page: Page, net: Net, who: str, then: str = "/agreements") -> None:
    """Log in as ``who`` through the dashboard's old entry (``/ui/login``), landing on ``then``."""
    page.goto(f"{net.base}/ui/login?next=/ui{then}")
    page.fill("input[name=token]", net.tokens[who])
    page.click("button[type=submit]")
    page.wait_for_url(f"{net.base}{net.ui}{then}")


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def slide_to(page: Page, day: date) -> None:
    """Move the slider as a person would (its value, then the input event), and wait for the matrix."""
    page.eval_on_selector(
        "#when",
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }",
        str((day - FIRST_DAY).days),
    )
    page.wait_for_selector(f"#matrix[data-at='{day.isoformat()}']")


def cell(page: Page, sender: str, recipient: str) -> Any:
    return page.locator(f"#matrix button[data-sender={sender}][data-recipient={recipient}]")


def test_every_page_loads_offline_without_a_console_error(watched: Watched, net: Net) -> None:
    page = watched.page
    login(page, net, "chief")
    ready = {
        "agreements": "tr[data-agreement='kor-jpn-gsomia-2016']",
        "matrix": "#matrix table",
        "items": "tr[data-item-id='k-1']",
        "queue": "#queue-disposal",  # the officer's queue (chief is a security officer)
        "flows": "#flows-body tr[data-direction='received']",
        "audit": "#head-root",
        "tracks": "#tracks-status:text-is('live')",  # the map, subscribed to the node's stream
    }
    for name, selector in ready.items():
        page.goto(f"{net.base}{net.ui}/{name}")
        page.wait_for_selector(selector)
        shot(page, name)
    assert watched.errors == []
    assert watched.foreign == []


def test_the_slider_moves_the_matrix_through_november_2019(watched: Watched, net: Net) -> None:
    page = watched.page
    login(page, net, "analyst", "/matrix")
    slide_to(page, date(2016, 11, 22))
    expect(cell(page, "KOR", "JPN")).to_have_attribute("data-route", "via USA")
    slide_to(page, date(2019, 11, 22))
    kor_jpn = cell(page, "KOR", "JPN")
    expect(kor_jpn).to_have_attribute("data-route", "direct")
    expect(kor_jpn).to_have_attribute("data-level", "군사II급비밀")
    expect(kor_jpn).to_contain_text("極秘")
    expect(page.locator(f"#matrix-agreements li[data-agreement='{GSOMIA}']")).to_have_attribute(
        "data-status", "termination_notified"
    )
    slide_to(page, date(2019, 11, 23))
    expect(cell(page, "KOR", "JPN")).to_have_attribute("data-route", "direct")
    expect(page.locator(f"#matrix-agreements li[data-agreement='{GSOMIA}']")).to_have_attribute(
        "data-status", "notice_suspended"
    )
    shot(page, "matrix-2019-11-23")
    page.check("input[value='2019-11-22-notice-suspended']")  # what if Seoul had not suspended its notice?
    page.wait_for_selector("#matrix[data-without='2019-11-22-notice-suspended']")
    expect(cell(page, "KOR", "JPN")).to_have_attribute("data-route", "via USA")
    expect(cell(page, "JPN", "KOR")).to_have_attribute("data-route", "via USA")
    expect(cell(page, "KOR", "USA")).to_have_attribute("data-route", "direct")
    expect(page.locator(f"#matrix-agreements li[data-agreement='{GSOMIA}']")).to_have_attribute(
        "data-status", "terminated"
    )
    cell(page, "KOR", "JPN").click()
    expect(page.locator("#explain")).to_be_visible()
    expect(page.locator("#explain-lines")).to_contain_text("tisa-2014")
    expect(page.locator("#explain-lines")).to_contain_text(f"not direct: {GSOMIA}: terminated at 2019-11-23")
    shot(page, "matrix-2019-11-23-without-suspension")
    page.select_option("#topic", "prc-navy")  # outside TISA's scope: no hub route either
    expect(cell(page, "KOR", "JPN")).to_have_attribute("data-route", "none")
    assert watched.errors == []


def test_a_reader_without_clearance_sees_no_restricted_item(watched: Watched, net: Net) -> None:
    page = watched.page
    login(page, net, "visitor", "/items")
    assert page.locator("tr[data-item-id]").count() == 0
    expect(page.locator("#shown")).to_contain_text("0 shown")
    assert "withheld" not in page.inner_text("main")  # nothing counts what the reader may not read
    body = page.inner_text("main")
    for secret in ("k-1", "j-tokutei", "군사II급비밀", "極秘", "特定秘密"):
        assert secret not in body
    shot(page, "items-visitor")
    page.goto(f"{net.base}{net.ui}/items/k-1")
    expect(page.locator(".error")).to_contain_text("no item 'k-1' at this node")  # as if unknown
    assert "received from KOR" not in page.inner_text("main")


def test_items_show_the_originators_label_and_the_readers(watched: Watched, net: Net) -> None:
    page = watched.page
    login(page, net, "analyst", "/items")  # JPN 極秘, dprk-missile: the KOR item, not the 特定秘密 one
    row = page.locator("tr[data-item-id='k-1']")
    expect(row.locator(".label-originator")).to_contain_text("KOR 군사II급비밀")
    expect(row.locator(".label-reader")).to_contain_text("極秘")
    expect(row).to_contain_text(f"from KOR under {GSOMIA}")
    assert page.locator("tr[data-item-id='j-tokutei']").count() == 0
    page.click(f"a[href='{net.ui}/items/k-1?originator=KOR']")  # whose: an item is (originator, id)
    expect(page.locator("tr[data-kind='received']")).to_contain_text("KOR")
    shot(page, "item-k-1")
    assert watched.errors == []


def test_flows_show_sent_received_and_refused_live(watched: Watched, net: Net) -> None:
    """Issue 20 §5: the flows page follows the feed (flows and signed tree heads) and never asks
    again: a refusal made after the page loaded, and a tree head signed after it, appear without
    reloading."""
    page = watched.page
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/" in r.url else None)
    login(page, net, "chief", "/flows")
    expect(page.locator("#flows-body tr[data-direction='received'][data-item='k-1']")).to_have_count(1)
    expect(page.locator("#flows")).to_have_attribute("data-live", "true")  # subscribed to the feed
    refused = page.locator("#flows-body tr[data-direction='refused'][data-kind='envelope.refused']")
    before = refused.count()
    assert before >= 1
    httpx.post(f"{net.base}/inbox", json={"envelopes": ["forged after the page loaded"]}, timeout=10)
    expect(refused).to_have_count(before + 1, timeout=5000)  # appears without reloading the page
    newest = page.locator("#flows-body tr").first
    expect(newest).to_have_attribute("data-direction", "refused")
    expect(newest).not_to_have_text("")
    head = net.jpn.audit.sign_head()
    expect(page.locator("#flows-head")).to_have_attribute("data-size", str(head.size), timeout=5000)
    shot(page, "flows-live")
    assert asked == []  # the page asked nothing again: the feed brought it all
    assert watched.errors == []


def test_a_track_published_at_kor_is_pushed_onto_jpns_map(watched: Watched, net: Net) -> None:
    """Each update KOR publishes is drawn on JPN's map through the page's one subscription to the
    stream, the page asking nothing: pushed, not polled. How fast is bench_stream's figure (KOR to a
    consumer at JPN, p99 in milliseconds); timed here, a loaded machine's scheduler made the first
    update (the link to JPN opening) miss a one-second bound, so the waits are only printed."""
    page = watched.page
    login(page, net, "analyst", "/tracks")
    for country in ("KOR", "PRK", "JPN"):
        assert page.locator(f"#map path[data-country={country}]").count() == 1
    expect(page.locator("#tracks-status")).to_have_text("live")  # subscribed before anything is sent
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    headers = {"Authorization": f"Bearer {net.kor_officer}"}
    first = page.locator("#map g.track[data-track-id='t-1']")
    waits = []
    with httpx.Client(base_url=net.kor_base, headers=headers, timeout=10) as kor:
        for update in track_updates():
            sent = time.monotonic()
            response = kor.post("/stream/tracks", json=update)
            assert response.status_code == 202, response.text
            assert "JPN" in [r["recipient"] for r in response.json()["routes"]], response.text
            track = page.locator(f"#map g.track[data-track-id='{update['track_id']}']")
            expect(track).to_have_attribute("data-final", str(update["final"]).lower(), timeout=60_000)
            waits.append(time.monotonic() - sent)
    print(f"\npublish at KOR -> drawn on JPN's map: {', '.join(f'{w * 1000:.0f} ms' for w in waits)}")
    assert asked == []  # every update came on the subscription the page held
    expect(page.locator("#tracks-status")).to_contain_text("live")  # the same one, never reconnecting
    expect(first).to_have_attribute("data-points", "9")
    assert len(first.locator("polyline").get_attribute("points").split()) == 9
    projection = outlines()["projection"]
    cx = float(first.locator("circle.launch").get_attribute("cx"))
    cy = float(first.locator("circle.launch").get_attribute("cy"))
    assert cx == pytest.approx((125.7 - projection["west"]) * projection["kx"], abs=0.1)
    assert cy == pytest.approx((projection["north"] - 39.0) * projection["ky"], abs=0.1)
    assert first.locator("circle.impact").count() == 1
    flying = page.locator("#map g.track[data-track-id='t-2']")
    expect(flying).to_have_attribute("data-final", "false")
    assert flying.locator("circle.impact").count() == 0
    row = page.locator("#tracks-body tr[data-track-id='t-1']")
    expect(row).to_contain_text("kor-jpn-gsomia-2016")  # the bilateral agreement: most specific first
    expect(row).to_contain_text("direct")
    expect(page.locator("#tracks-status")).to_contain_text("2 track(s)")
    launch = launches(2019)[0]  # and a real 2019 launch, flown by the ballistic generator
    flown = ballistic_updates(
        launch.fly(),
        track_id="KOR-2019-1",
        originator="KOR",
        launched=datetime.now(UTC) - timedelta(minutes=10),
        missile_class=launch.missile_class,
        every_s=20,
    )
    with httpx.Client(base_url=net.kor_base, headers=headers, timeout=10) as kor:
        for update in flown:
            assert kor.post("/stream/tracks", json=track_update_to_json(update)).status_code == 202
    real = page.locator("#map g.track[data-track-id='KOR-2019-1']")
    expect(real).to_have_attribute("data-final", "true")
    assert real.locator("circle.impact").count() == 1
    shot(page, "tracks")
    assert watched.errors == []


def test_the_item_pages_follow_the_feed_without_reloading(watched: Watched, net: Net) -> None:
    """Issue 20 §5: an item KOR releases while the analyst looks at JPN's items page appears there, and
    KOR's recall of it appears on the item's own page, each without reloading (the feed under the
    dashboard's path, decided for this reader; the page never asks again on a timer)."""
    page = watched.page
    polled: list[str] = []
    page.on("request", lambda r: polled.append(r.url) if "/api/" in r.url else None)
    login(page, net, "analyst", "/items")
    expect(page.locator("#live-status")).to_have_text("live")
    officer = net.kor.people.person("officer")
    net.kor.items.ingest(officer, label=kor_label(), payload=b'{"track": "live"}', item_id="k-live")
    net.kor.exchange.release(officer, "k-live", "JPN")
    with HttpTransport() as transport:
        assert [d.state for d in net.kor.exchange.deliver_due(transport)] == ["delivered"]
    row = page.locator("tr[data-item-id='k-live']")
    expect(row).to_have_attribute("data-change", "arrived", timeout=10000)
    expect(row).to_contain_text("KOR 군사II급비밀")
    expect(page.locator("#live-changes li[data-item='k-live'][data-change='arrived']")).to_have_count(1)
    shot(page, "items-live")

    row.locator("a").click()
    expect(page.locator("#live-status")).to_have_text("live")
    net.kor.duties.recall(officer, "k-live", "withdrawn by the originator")
    with HttpTransport() as transport:
        net.kor.exchange.deliver_due(transport)
    expect(page.locator("#live-changes li[data-change='recalled']")).to_contain_text("k-live", timeout=10000)
    shot(page, "item-live-recalled")
    assert polled == []
    assert watched.errors == []


def test_an_item_in_portions_shows_each_reader_the_portion_marks_they_may_see(
    watched: Watched, net: Net
) -> None:
    """Issue 20 §2: a JPN report whose body is 特定秘密 and whose tearline is 秘. The chief (特定秘密)
    sees both portions' marks under the body's; the analyst (極秘) sees the tearline alone, under its
    mark, and nothing on the page names the body."""
    label = kor_label(originator="JPN", releasable_to=["KOR"], topics=["dprk-missile"])
    net.jpn.items.ingest(
        net.jpn.people.person("officer"),
        label=None,
        payload=b"",
        item_id="j-report",
        portions=[
            PortionIngest("body", {**label, "classification": "特定秘密"}, b'{"source": "a human source"}'),
            PortionIngest("tearline", {**label, "classification": "秘"}, b'{"launch": "05:12"}'),
        ],
    )
    page = watched.page
    login(page, net, "chief", "/items")
    page.goto(f"{net.base}{net.ui}/items/j-report")
    expect(page.locator("tr[data-portion='body'] .label-originator")).to_contain_text("特定秘密")
    expect(page.locator("tr[data-portion='tearline'] .label-originator")).to_contain_text("秘")
    expect(page.locator(".facts .label-originator")).to_contain_text("特定秘密")
    shot(page, "item-portions-chief")
    page.context.clear_cookies()
    login(page, net, "analyst", "/items")
    expect(page.locator("tr[data-item-id='j-report'] .label-originator")).to_contain_text("JPN 秘")
    page.goto(f"{net.base}{net.ui}/items/j-report")
    expect(page.locator("tr[data-portion='tearline']")).to_be_visible()
    assert page.locator("tr[data-portion='body']").count() == 0
    main = page.inner_text("main")
    assert "特定秘密" not in main
    assert "body" not in main
    expect(page.locator(".facts .label-originator")).to_contain_text("JPN 秘")
    shot(page, "item-portions-analyst")
    assert watched.errors == []


def test_a_wrong_token_stays_on_the_login_page(watched: Watched, net: Net) -> None:
    page = watched.page
    page.goto(f"{net.base}{net.ui}/items")
    page.wait_for_url(f"{net.base}{net.ui}/login?next={net.ui}/items")
    page.fill("input[name=token]", "gsm_wrong")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("unknown token")
    assert dashboard_scope(net.jpn.ring).cookie not in {c["name"] for c in page.context.cookies()}


def test_the_senders_flows_show_the_release_its_delivery_and_the_refusal(net: Net) -> None:
    """KOR's side of the same exchange, through the feed the flows page polls."""
    flows = {(f["kind"], f["item"]): f for f in map(flow_view, net.kor.audit.flows(None, 0))}
    assert flows[("item.release", "k-1")]["direction"] == "sent"
    assert flows[("envelope.delivered", "k-1")]["direction"] == "sent"
    assert flows[("envelope.delivered", "k-1")]["peer"] == "JPN"
    refused = flows[("item.release", "k-i")]
    assert refused["direction"] == "refused"
    assert "no equivalent" in refused["reason"]
