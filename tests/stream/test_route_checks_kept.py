"""Adversarial review of the publishing node's link checks kept from one feed message to the next.

A track goes on a link only if the link is registered for the agreement its decision names (Art. 9)
and the partner's key the link was opened with is still usable. Those checks are read from the
store's peers (and the key's end, as last checked): the publishing node keeps them, per hop and
agreement, while the peers counter stands and the key's end is not reached, and takes the next
messages' tracks straight into that link's queue. Every change that ends either check must stop the
very next track: a registration withdrawn (the peers counter moves), the key the link was opened
with reaching its end (no counter moves), the link replaced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.duties.conftest import Net, _net
from tests.node_fixtures import framed, framed_at_close, started_with_links, wire_links

from gsomia.core.ballistics import track_updates
from gsomia.core.tracks import TrackUpdate, track_update_to_json
from gsomia.stream import StreamService, launches


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    yield from _net(tmp_path)


def _updates(net: Net) -> list[TrackUpdate]:
    launch = launches(2019)[8]
    flight = track_updates(
        launch.fly(), track_id="KOR-kept-checks", originator="KOR",
        launched=net.clock.now - timedelta(seconds=20), missile_class=launch.missile_class,
    )  # fmt: skip
    return [u for u in flight if u.points and not u.final][:3]


def _framed_around(
    net: Net, change: Callable[[StreamService], Any]
) -> tuple[dict[str, list[str]], list[str]]:
    """KOR publishes three updates of one track, each a message of its own (as a feed sends them),
    ``change`` made between the second and the third; what each link carried, and the instants."""
    kor = net.nodes["KOR"]
    updates = _updates(net)

    async def run() -> dict[str, list[str]]:
        partners = {p: net.nodes[p] for p in ("JPN", "USA")}
        service, wires = await started_with_links(kor, partners, net.clock.now)
        for party in partners:  # the key each link was opened with, as a link opened by the node names it
            peer = kor.exchange.peer(party)
            assert peer is not None
            service._links[party].peer_kid = peer.encryption_key(net.clock.now)[0]
        for update in updates[:2]:
            await service._publish_updates([update])
            await asyncio.sleep(0.05)  # its frame is made
        change(service)
        await service._publish_updates([updates[2]])
        return await framed_at_close(service, wires)

    got = asyncio.run(run())
    return got, [track_update_to_json(u)["update_ts"] for u in updates]


def test_the_kept_checks_take_the_next_messages_and_every_track_goes(net: Net) -> None:
    got, stamps = _framed_around(net, lambda _service: None)
    assert got["JPN"] == stamps  # the control: nothing changed, each message's track went
    assert got["USA"] == stamps


def test_a_registration_withdrawn_between_two_messages_stops_the_next_track(net: Net) -> None:
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]

    def withdraw(_service: StreamService) -> None:  # KOR's administrator: JPN's link serves TISA only now
        kor.exchange.register_peer(None, jpn.exchange.identity(), ["tisa-2014"], replace=True)
        assert kor.kernel.peers.links("JPN") == {"tisa-2014"}

    got, stamps = _framed_around(net, withdraw)
    assert got["JPN"] == stamps[:2]  # the third was refused at its message: the link is not registered
    assert got["USA"] == stamps


def test_the_links_key_ending_between_two_messages_stops_the_next_track(net: Net) -> None:
    asked: list[str] = []

    def ends(service: StreamService) -> None:
        # the key JPN's link was opened with ends at the instant last checked; no counter moves. What
        # the key's check answers then (a real key's end is test_key_end_attacks'): no longer usable
        service._links["JPN"].key_until = net.clock.now.timestamp() + 1
        net.clock.advance(seconds=2)
        still = service._still_pinned

        def still_pinned(party: str, link: Any) -> bool:
            asked.append(party)
            return False if party == "JPN" else still(party, link)

        service._still_pinned = still_pinned  # type: ignore[method-assign]
        service._retry_at["JPN"] = time.monotonic() + 60  # no reconnect attempt in the test

    got, stamps = _framed_around(net, ends)
    assert "JPN" in asked  # the link's key was checked again at the next message, its end reached
    assert got["JPN"] == stamps[:2]  # and the link opened with the ended key carries nothing more
    assert got["USA"] == stamps
    closed = [r for r in net.audit("KOR", "stream.link") if r.get("reason") == "revoked-key"]
    assert closed  # the link was closed for it, audited


def test_a_link_replaced_between_two_messages_takes_the_next_track_not_the_old_one(net: Net) -> None:
    kept: dict[str, Any] = {}

    def replace(service: StreamService) -> None:
        kept["old"] = service._links["JPN"]
        kept["new"] = wire_links(service, net.nodes["KOR"], {"JPN": net.nodes["JPN"]}, net.clock.now)

    got, stamps = _framed_around(net, replace)
    assert got["JPN"] == stamps[:2]  # the old link: the two before the change only
    assert framed(kept["new"])["JPN"] == stamps[2:]  # the new one carries the third
