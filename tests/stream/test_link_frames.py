"""How the sender frames tracks for a link, adversarially: a lone track goes at once, in a frame of
its own (no timer holds it for company); the tracks queued while the link is busy share the next
frame, every one of them under the originator's signed root; a track its decision at the frame
withholds from a partner is in no frame of that partner's, and a frame left with nothing to carry
is neither sent nor counted. ``StreamStats.frames`` (``gsomia_stream_frames_total``) counts the
frames a link carried, so ``sent / frames`` is the tracks a frame the benchmark reports.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tests.duties.conftest import Net, _net
from tests.node_fixtures import framed, started_with_links

from gsomia.core.ballistics import track_updates
from gsomia.core.tracks import TrackUpdate, track_update_to_json
from gsomia.stream import launches
from gsomia.stream._link import TRACKS
from gsomia.stream._origin import decode_groups, verify_group


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    yield from _net(tmp_path)


def _updates(net: Net, count: int) -> list[TrackUpdate]:
    launch = launches(2019)[8]
    flight = track_updates(
        launch.fly(), track_id="KOR-framed", originator="KOR",
        launched=net.clock.now - timedelta(seconds=20), missile_class=launch.missile_class,
    )  # fmt: skip
    return [u for u in flight if u.points][:count]


def _stamps(updates: list[TrackUpdate]) -> list[str]:
    return [track_update_to_json(u)["update_ts"] for u in updates]


def test_a_lone_track_goes_at_once_and_a_burst_shares_one_signed_frame(net: Net) -> None:
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    updates = _updates(net, 6)

    async def run() -> tuple[int, list[list[str]], dict[str, int], dict[str, int]]:
        service, wires = await started_with_links(
            kor, {p: net.nodes[p] for p in ("JPN", "USA")}, net.clock.now
        )
        wire, receiver = wires["JPN"]
        await service.publish_update(updates[0])
        for _ in range(3):  # the drainer's turn: the link was idle, no timer holds the track
            await asyncio.sleep(0)
        lone = len(wire.sent)
        await service._publish_updates(updates[1:])  # five in one turn: the link's next frame
        await asyncio.sleep(0.1)
        frames: list[list[str]] = []
        for data in wire.sent:  # each frame as JPN opens it, each group under KOR's verified root
            frame = receiver.open(data)
            if frame is None or frame.kind != TRACKS:  # a window root
                continue
            stamps: list[str] = []
            for group in decode_groups(frame.body, "KOR"):
                verified = verify_group(group, jpn.kernel.peers.peer, net.clock.now, timedelta(minutes=5))
                assert verified.originator == "KOR"
                stamps += [json.loads(e.message)["track"]["update_ts"] for e in group.entries]
            frames.append(stamps)
        service._links.clear()
        await service.close()
        return lone, frames, dict(service.stats.frames), dict(service.stats.sent)

    lone, frames, counted, sent = asyncio.run(run())
    stamps = _stamps(updates)
    assert lone == 1  # framed on the drainer's first turn, alone
    assert frames == [stamps[:1], stamps[1:]]  # then the burst in one frame, in order
    assert counted == {"JPN": 2, "USA": 2}
    assert sent == {"JPN": 6, "USA": 6}


def test_a_track_withheld_at_the_frame_is_in_no_frame_of_that_partner(net: Net) -> None:
    """KOR queues a burst for JPN and the USA, then JPN's key is revoked before the frames are made:
    the USA's frame carries the burst, JPN gets no frame at all (none sent, none counted)."""
    kor = net.nodes["KOR"]
    updates = _updates(net, 4)
    kids = {
        json.loads(base64.urlsafe_b64decode(r.jws.split(".")[0] + "=="))["kid"]
        for r in kor.exchange.assurance_store.all()
        if r.party == "JPN"
    }

    async def run() -> tuple[dict[str, list[str]], dict[str, int]]:
        service, wires = await started_with_links(
            kor, {p: net.nodes[p] for p in ("JPN", "USA")}, net.clock.now
        )
        result = await service._publish_updates(updates)  # queued for both links, not framed yet
        assert all("JPN" in {r["recipient"] for r in one["routes"]} for one in result)
        for kid in kids:
            kor.exchange.revoke_peer_key(None, "JPN", kid, net.clock.now - timedelta(seconds=1))
        await asyncio.sleep(0.2)
        got = framed(wires)
        service._links.clear()
        await service.close()
        return got, dict(service.stats.frames)

    got, frames = asyncio.run(run())
    assert got["USA"] == _stamps(updates)
    assert got["JPN"] == []
    assert frames == {"USA": 1}  # JPN's frame, left empty at its decision, never went
