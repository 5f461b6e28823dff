"""Adversarial review of a track queued for a link before a change its decision rests on.

A node of one process queues its tracks for a partner's link and makes the frame on the next turn
of its event loop (or later, behind a busy link). A change stored in between, not an agreement
event, stops what the decision allowed: the partner's key revoked (its assurance no longer
verifies), the partner's assurance revoked. The track must be decided under what holds at the
instant its frame is made. Before the fix a queued track was decided again only once its
decision's next agreement event fell due, so it went to JPN after the change.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.duties.conftest import Net, _net
from tests.node_fixtures import framed_at_close, started_with_links

from gsomia.core.ballistics import track_updates
from gsomia.core.tracks import TrackUpdate, track_update_to_json
from gsomia.stream import launches


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    yield from _net(tmp_path)


def _update(net: Net) -> TrackUpdate:
    launch = launches(2019)[8]
    flight = track_updates(
        launch.fly(), track_id="KOR-queued", originator="KOR",
        launched=net.clock.now - timedelta(seconds=20), missile_class=launch.missile_class,
    )  # fmt: skip
    return next(u for u in flight if u.points)


def _sent_after(net: Net, change: Callable[[], Any]) -> dict[str, list[str]]:
    """KOR publishes one track (queued for JPN's and the USA's links, decided to go to both), then
    ``change`` is made before the frame is; the update instants each link carried."""
    kor = net.nodes["KOR"]
    update = _update(net)

    async def run() -> dict[str, list[str]]:
        partners = {p: net.nodes[p] for p in ("JPN", "USA")}
        service, wires = await started_with_links(kor, partners, net.clock.now)
        result = await service.publish_update(update)  # decided: JPN directly; queued, not framed yet
        assert "JPN" in {r["recipient"] for r in result["routes"]}
        change()
        return await framed_at_close(service, wires)  # the frame is made

    got = asyncio.run(run())
    stamp = track_update_to_json(update)["update_ts"]
    assert got["USA"] == [stamp]  # the USA's route is untouched by the change
    return got


def _refused_to_jpn(net: Net) -> list[str]:
    return [
        r["reason"] if "reason" in r else r["outcome"]
        for r in net.audit("KOR", "stream.send")
        if r["outcome"] == "refused" and r["recipient"] == "JPN"
    ]


def test_a_track_queued_before_the_partners_key_is_revoked_does_not_go_after(net: Net) -> None:
    kor = net.nodes["KOR"]
    kids = {
        json.loads(base64.urlsafe_b64decode(r.jws.split(".")[0] + "=="))["kid"]
        for r in kor.exchange.assurance_store.all()
        if r.party == "JPN"
    }

    def revoke() -> None:  # the diplomatic channel's word: JPN's key is compromised
        for kid in kids:
            kor.exchange.revoke_peer_key(None, "JPN", kid, net.clock.now - timedelta(seconds=1))

    got = _sent_after(net, revoke)
    assert got["JPN"] == []  # decided at the frame, JPN's assurance no longer verifies
    assert _refused_to_jpn(net)  # and the refusal is audited


def test_a_track_queued_before_the_partners_assurance_is_revoked_does_not_go_after(net: Net) -> None:
    jpn = net.nodes["JPN"]
    own = [r for r in jpn.exchange.assurance_store.all() if r.party == "JPN"]
    assert own

    def revoke() -> None:  # JPN revokes its Art. 7(5) assurances; KOR receives the revocation
        for row in own:
            jpn.exchange.revoke_assurance(None, row.id, "the clearance system is under review")
        net.deliver()
        on_file = net.nodes["KOR"].exchange.assurances_on_file()
        assert not [a for a in on_file if a.party == "JPN" and a.holds(net.clock.now.timestamp())]

    got = _sent_after(net, revoke)
    assert got["JPN"] == []
    assert _refused_to_jpn(net)
