"""A termination mid-stream stops delivery at its instant (nodes served in threads, clock controlled)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
from tests.conftest import kst
from tests.stream.test_stream_nodes import Follower

from gsomia.core.ballistics import track_updates
from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import build, open_nodes, serve_in_threads
from gsomia.stream import launches
from gsomia.testing import FakeClock

END = kst(2019, 11, 23)  # GSOMIA's end had Korea not suspended its notice


def test_a_termination_stops_the_stream_at_its_instant(tmp_path: Path, catalogue) -> None:  # type: ignore[no-untyped-def]
    gsomia = catalogue.agreement("kor-jpn-gsomia-2016")
    what_if = catalogue.replacing(gsomia.what_if(without=["2019-11-22-notice-suspended"]))
    clock = FakeClock(END - timedelta(seconds=10))
    members = build(tmp_path / "net", clock=clock)
    nodes = open_nodes(members, clock, catalogue=what_if)
    endpoint = {m.party: m.endpoint for m in members}
    tokens = {m.party: json.loads((m.directory / "tokens.json").read_text()) for m in members}
    launch = launches(2019)[8]
    updates = track_updates(
        launch.fly(),
        track_id="KOR-what-if",
        originator="KOR",
        launched=END - timedelta(seconds=20),
        missile_class=launch.missile_class,
        every_s=30,
    )[:10]
    with serve_in_threads(nodes, members):
        jpn = Follower(endpoint["JPN"], tokens["JPN"]["analyst"])
        usa = Follower(endpoint["USA"], tokens["USA"]["analyst"])
        sent_to_jpn = []
        for index, update in enumerate(updates):
            clock.now = END + timedelta(seconds=2 * index - 9)  # five before the instant, five after
            response = httpx.post(
                f"{endpoint['KOR']}/stream/tracks",
                json=track_update_to_json(update),
                headers={"Authorization": f"Bearer {tokens['KOR']['officer']}"},
                timeout=10,
            )
            assert response.status_code == 202, response.text
            if any(r["recipient"] == "JPN" for r in response.json()["routes"]):
                sent_to_jpn.append(index)
                # JPN decides at its own instant of receipt: let it receive before the clock moves on
                jpn.wait_for(len(sent_to_jpn))
        usa.wait_for(len(updates))
        got = jpn.wait_for(5)
        jpn.close()
        usa.close()
    assert sent_to_jpn == [0, 1, 2, 3, 4]
    assert [t["update_ts"] for t in got] == [track_update_to_json(u)["update_ts"] for u in updates[:5]]
    assert len(usa.tracks) == len(updates)
    plans = nodes["KOR"].store.audit(after_seq=0, kind="stream.plan", limit=100)
    assert len(plans) == 2  # decided before the first emission, re-decided when the termination fell due
    first, second = json.loads(plans[0].detail), json.loads(plans[1].detail)
    assert first["valid_until"] == END.isoformat()
    assert second["at"] == (END + timedelta(seconds=1)).isoformat()  # the first emission after it
    jpn_route = next(r for r in second["routes"] if r["recipient"] == "JPN")
    assert jpn_route["allowed"] is False
    for node in nodes.values():
        node.close()
