"""A track handed between two processes of one node (NATS JetStream) is decided at its frame.

In a node of several processes, a process that does not hold a partner's link hands the track to
the one that does, through the node's handover stream; the holder makes the frame later (JetStream's
round trip, or, when a holder died, the next holder takes what was handed up to a minute later).
One decision, one place: the track is decided by the node's release engine at the instant its
frame is made, whichever process decided it first. The adversary's case: an agreement that ends
after the track was handed over and before the holder makes its frame; the track must not go.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import kst
from tests.node_fixtures import LinkWire, framed, wire_links
from tests.reliability.processes import NATS, require_nats

from gsomia.core.ballistics import track_updates
from gsomia.core.tracks import TrackUpdate, track_update_to_json
from gsomia.demo.network import build
from gsomia.errors import LinkError
from gsomia.exchange import MemoryTransport
from gsomia.node import Node, load_config
from gsomia.stream import NatsBus, StreamService, launches
from gsomia.stream._link import TRACK
from gsomia.testing import FakeClock

END = kst(2019, 11, 23)  # GSOMIA's end had Korea not suspended its notice


class _Lease:
    """A link's lease this test hands out: held while ``held`` says so."""

    def __init__(self, held: bool) -> None:
        self.holding = held

    def held(self) -> bool:
        return self.holding

    def release(self) -> None:
        self.holding = False


def _update(launched: Any) -> TrackUpdate:
    launch = launches(2019)[8]
    flight = track_updates(
        launch.fly(), track_id="KOR-handed", originator="KOR", launched=launched,
        missile_class=launch.missile_class,
    )  # fmt: skip
    return next(u for u in flight if u.points)


def _bus(names: tuple[str, str]) -> NatsBus:
    return NatsBus(NATS, stream=names[0], subject=names[1], ephemeral=True, reconnect_wait_s=0.2)


def test_a_track_handed_over_before_its_agreement_ends_is_not_framed_after_the_end(
    tmp_path: Path, catalogue: Any
) -> None:
    """KOR's process A (no link held) decides a track for JPN and the USA one second before GSOMIA
    ends (a what-if without Korea's suspension) and hands it over; the agreement ends; then process
    B takes the links' leases (the holder before it died) and makes the frames: the USA's carries
    the track, JPN's does not (decided again at B's frame, refused and audited)."""
    require_nats()
    gsomia = catalogue.agreement("kor-jpn-gsomia-2016")
    what_if = catalogue.replacing(gsomia.what_if(without=["2019-11-22-notice-suspended"]))
    clock = FakeClock(END - timedelta(seconds=1))

    def the_end(_partners: dict[str, Node], _kor: Path) -> None:
        clock.now = END + timedelta(seconds=1)

    _handed_then(tmp_path, clock, what_if, END - timedelta(seconds=20), the_end)


def test_a_track_handed_over_before_jpn_revokes_its_assurances_is_not_framed_after(tmp_path: Path) -> None:
    """The same in 2024, GSOMIA and the trilateral arrangement in force: between the hand-over and
    B's frame, JPN revokes its assurances (Art. 7(5)) under the agreements it shares with KOR and the
    revocations reach KOR's store: no release to JPN passes any more, nor the track handed before."""
    require_nats()
    clock = FakeClock(kst(2024, 3, 1))

    def revoked(partners: dict[str, Node], kor_directory: Path) -> None:
        jpn = partners["JPN"]
        for row in jpn.exchange.assurance_store.all():
            if row.party == "JPN" and "KOR" in jpn.kernel.catalogue.agreement(row.agreement).parties:
                jpn.exchange.revoke_assurance(None, row.id, "the protection can no longer be assured")
        kor = Node(load_config(kor_directory), clock=clock)  # KOR's store, as any process of it
        try:
            delivered = jpn.exchange.deliver_due(MemoryTransport({"KOR": kor, **partners}))
        finally:
            kor.close()
        assert delivered
        assert all(d.state == "delivered" for d in delivered)

    _handed_then(tmp_path, clock, None, clock() - timedelta(seconds=20), revoked)


def _handed_then(
    tmp_path: Path,
    clock: FakeClock,
    catalogue: Any,
    launched: Any,
    between: Callable[[dict[str, Node], Path], None],
) -> None:
    """KOR's process A hands a track for JPN and the USA over NATS; ``between`` happens; then
    process B takes the links up and makes the frames: the USA's carries the track, JPN's not."""
    members = {m.party: m for m in build(tmp_path / "net", clock=clock)}
    kor = members["KOR"]
    a_node = Node(load_config(kor.directory), clock=clock, catalogue=catalogue)
    b_node = Node(load_config(kor.directory), clock=clock, catalogue=catalogue)
    partners = {p: Node(load_config(members[p].directory), clock=clock) for p in ("JPN", "USA")}
    unique = uuid.uuid4().hex[:12]
    names = (f"GSOMIA_HANDED_{unique}", f"gsomia.handed.{unique}")
    update = _update(launched)
    leases = {p: _Lease(held=False) for p in ("JPN", "USA")}

    async def run() -> dict[str, list[str]]:
        a = StreamService(a_node, _bus(names), link_leases=lambda _party: _Lease(held=False))
        b = StreamService(b_node, _bus(names), link_leases=lambda party: leases.get(party, _Lease(False)))
        wires: dict[str, tuple[LinkWire, Any]] = {}
        try:
            await a.start()
            await b.start()
            for service in (a, b):
                await asyncio.wait_for(service.bus._ready(), 10)  # type: ignore[attr-defined]
            wires = wire_links(b, b_node, partners, clock())  # B's links, opened already
            result = await a.publish_update(update)  # decided at A: handed over
            assert {r["recipient"] for r in result["routes"]} == {"JPN", "USA"}
            await asyncio.to_thread(between, partners, kor.directory)  # before any frame is made
            await asyncio.sleep(0.5)  # B's caches hear the store's change (the watch's interval)
            for lease in leases.values():
                lease.holding = True  # B takes the links up
            deadline = time.monotonic() + 20
            while not framed(wires)["USA"] and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # JPN's frame, were it made, would be there by now
            return framed(wires)
        finally:
            for service in (a, b):
                service._links.clear()
                await service.close()

    try:
        got = asyncio.run(run())
        stamp = track_update_to_json(update)["update_ts"]
        assert got["USA"] == [stamp]  # the USA's own agreement still allows it
        assert got["JPN"] == []  # handed before, framed after: decided again, refused
        refusals = b_node.store.audit(after_seq=0, kind="stream.send", limit=10)
        assert [(r.subject, r.outcome, json.loads(r.detail)["recipient"]) for r in refusals] == [
            ("KOR-handed", "refused", "JPN")
        ]
    finally:
        for node in (a_node, b_node, *partners.values()):
            node.close()


def test_a_track_queued_without_its_decision_is_refused(tmp_path: Path) -> None:
    """No track goes on a link without the terms of the decision that let it (to decide it again at
    its frame): a track queued without them is refused, not sent undecided."""
    members = {m.party: m for m in build(tmp_path / "net")}
    kor = Node(load_config(members["KOR"].directory))
    service = StreamService(kor)
    try:
        with pytest.raises(LinkError, match="without its release decision"):
            asyncio.run(service._send("JPN", TRACK, b"{}", None, decided=None))
        assert not service._links  # refused before any link is opened
    finally:
        kor.close()
