"""Decisions taken once for many tracks never let through a track its own decision would refuse.

The receiver decides once per (label, hub, recipient) for the tracks of a frame, at the frame's
instant of receipt; the sender makes a frame of the tracks queued for a link and decides again, at
the frame's instant, those whose decision stopped holding since they were queued. The adversary's
cases: a track of the same id under a label that does not allow this node, inside a frame of
allowed ones; an agreement that ends between a track's decision and the frame that carries it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.conftest import kst
from tests.node_fixtures import framed, framed_at_close, wire_links

from gsomia._codec import label_to_dict
from gsomia.core.ballistics import track_updates
from gsomia.core.relay import MISSILE_TOPIC, MISSILE_WARNING
from gsomia.core.tracks import TrackUpdate, track_update_to_json
from gsomia.demo.network import build, open_nodes
from gsomia.errors import LinkError
from gsomia.node import Node
from gsomia.stream import StreamService, launches
from gsomia.stream._link import CONSENT, TRACK, TRACKS, initiate
from gsomia.stream._origin import sign_batch
from gsomia.testing import FakeClock

END = kst(2019, 11, 23)  # GSOMIA's end had Korea not suspended its notice


def _updates(count: int, track_id: str, launched: Any) -> list[TrackUpdate]:
    launch = launches(2019)[8]
    flight = track_updates(
        launch.fly(),
        track_id=track_id,
        originator="KOR",
        launched=launched,
        missile_class=launch.missile_class,
    )
    return [u for u in flight if u.points][:count]


def test_a_track_under_a_label_that_excludes_the_receiver_is_refused_inside_an_allowed_frame(
    linked_kor_jpn: tuple[Node, Node],
) -> None:
    kor, jpn = linked_kor_jpn
    own = StreamService(kor)
    allowed = own.stream_label()  # releasable to JPN and the USA
    excluded = kor.kernel.catalogue.label(
        originator="KOR", classification=own.classification, releasable_to=("USA",),
        purpose=MISSILE_WARNING, topics=[MISSILE_TOPIC], created=allowed.created,
    )  # fmt: skip
    updates = _updates(3, "KOR-same-id", kor.clock() - timedelta(seconds=30))
    messages = [
        orjson.dumps({"track": track_update_to_json(u), "label": label_to_dict(label),
                      "originator": "KOR", "recipient": "JPN", "via": None})
        for u, label in zip(updates, (allowed, excluded, allowed), strict=True)
    ]  # fmt: skip

    async def run() -> list[dict[str, Any]]:
        inbound: asyncio.Queue[bytes] = asyncio.Queue()
        outbound: asyncio.Queue[bytes] = asyncio.Queue()
        service = StreamService(jpn)
        subscription: Any = await service.bus.subscribe()
        peer = kor.exchange.peer("JPN")
        assert peer is not None
        first, finish = initiate(kor.ring, peer, kor.clock())
        await inbound.put(first)
        task = asyncio.create_task(service.serve_link(inbound.get, outbound.put))
        session = finish(await outbound.get())
        for body in (sign_batch(kor.ring, messages, kor.clock()), b"{}"):  # a bare TRACK ends the link
            for wire in session.seal(TRACKS if body != b"{}" else TRACK, body, 0.0):
                await inbound.put(wire)
        with pytest.raises(LinkError):
            await asyncio.wait_for(task, 10)
        emitted = []
        while not subscription.queue.empty():
            _, raw = subscription.queue.get_nowait()
            emitted.append(orjson.loads(raw))
        await service.close()
        return emitted

    emitted = asyncio.run(run())
    assert [m["track"]["update_ts"] for m in emitted] == [
        track_update_to_json(updates[0])["update_ts"],
        track_update_to_json(updates[2])["update_ts"],
    ]
    refusals = jpn.store.audit(after_seq=0, kind="stream.receive", limit=10)
    assert [(r.subject, r.outcome) for r in refusals] == [("KOR-same-id", "refused")]


def test_a_track_queued_before_its_agreement_ends_is_not_sent_after_the_end(
    tmp_path: Path, catalogue
) -> None:  # type: ignore[no-untyped-def]
    gsomia = catalogue.agreement("kor-jpn-gsomia-2016")
    what_if = catalogue.replacing(gsomia.what_if(without=["2019-11-22-notice-suspended"]))
    clock = FakeClock(END - timedelta(seconds=10))
    members = build(tmp_path / "net", clock=clock)
    nodes = open_nodes(members, clock, catalogue=what_if)
    kor = nodes["KOR"]
    updates = _updates(3, "KOR-what-if", END - timedelta(seconds=20))

    async def run() -> dict[str, list[str]]:
        service = StreamService(kor)
        await service.start()
        wires = wire_links(service, kor, {p: nodes[p] for p in ("JPN", "USA")}, clock())
        clock.now = END - timedelta(seconds=1)
        await service.publish_update(updates[0])  # decided: JPN directly, until END; queued
        await service.publish_update(updates[1])
        clock.now = END + timedelta(seconds=1)  # the agreement ends before the frame is made
        await asyncio.sleep(0.2)
        await service.publish_update(updates[2])  # decided after the end: JPN is not a route
        return await framed_at_close(service, wires)

    got = asyncio.run(run())
    stamps = [track_update_to_json(u)["update_ts"] for u in updates]
    assert got["JPN"] == []  # queued before the end, the frame made after it: decided again, refused
    assert got["USA"] == stamps  # the USA's own agreement still allows every one
    refusals = kor.store.audit(after_seq=0, kind="stream.send", limit=10)
    assert [(r.subject, r.outcome, json.loads(r.detail)["recipient"]) for r in refusals] == [
        ("KOR-what-if", "refused", "JPN")
    ]  # one decision for the two tracks of one label and route
    for node in nodes.values():
        node.close()


def test_a_hub_does_not_pass_on_a_track_whose_label_excludes_the_recipient_inside_an_allowed_frame(
    tmp_path: Path,
) -> None:
    clock = FakeClock(kst(2024, 3, 1))
    members = build(tmp_path / "net", clock=clock)
    nodes = open_nodes(members, clock)
    kor, usa = nodes["KOR"], nodes["USA"]
    own = StreamService(kor)
    own.authorise_relay(None, "JPN", "USA")
    ((_, consent_jws),) = own._own_consents()
    allowed = own.stream_label()
    excluded = kor.kernel.catalogue.label(
        originator="KOR", classification=own.classification, releasable_to=("USA",),
        purpose=MISSILE_WARNING, topics=[MISSILE_TOPIC], created=allowed.created,
    )  # fmt: skip
    updates = _updates(3, "KOR-via-hub", clock() - timedelta(seconds=30))
    messages = [
        orjson.dumps({"track": track_update_to_json(u), "label": label_to_dict(label),
                      "originator": "KOR", "recipient": "JPN", "via": "USA"})
        for u, label in zip(updates, (allowed, excluded, allowed), strict=True)
    ]  # fmt: skip

    async def run() -> list[str]:
        hub = StreamService(usa)
        await hub.start()
        wires = wire_links(hub, usa, {"JPN": nodes["JPN"]}, clock())
        inbound: asyncio.Queue[bytes] = asyncio.Queue()
        outbound: asyncio.Queue[bytes] = asyncio.Queue()
        to_hub = kor.exchange.peer("USA")
        assert to_hub is not None
        first, finish = initiate(kor.ring, to_hub, clock())
        await inbound.put(first)
        task = asyncio.create_task(hub.serve_link(inbound.get, outbound.put))
        session = finish(await outbound.get())
        frames = [
            (CONSENT, consent_jws.encode()),
            (TRACKS, sign_batch(kor.ring, messages, clock())),
            (TRACK, b"{}"),
        ]
        for kind, body in frames:  # a bare TRACK at the end ends the link
            for data in session.seal(kind, body, 0.0):
                await inbound.put(data)
        with pytest.raises(LinkError):
            await asyncio.wait_for(task, 10)
        await asyncio.sleep(0.1)  # the hub's frame to JPN
        passed = framed(wires, "USA")["JPN"]
        hub._links.clear()
        await hub.close()
        return passed

    passed = asyncio.run(run())
    stamps = [track_update_to_json(u)["update_ts"] for u in updates]
    assert passed == [stamps[0], stamps[2]]
    refusals = usa.store.audit(after_seq=0, kind="stream.receive", limit=10)
    assert [(r.subject, r.outcome) for r in refusals] == [("KOR-via-hub", "refused")]
    for node in nodes.values():
        node.close()


def test_a_track_received_after_its_agreement_ends_mid_stream_is_refused(tmp_path: Path, catalogue) -> None:  # type: ignore[no-untyped-def]
    """The receiver's side of an agreement ending mid-stream: a track received just before the end
    is kept (its decision, and the label it is held under, remembered for the tracks after it); one
    of the same label received just after the end, on the same link, is refused and audited."""
    gsomia = catalogue.agreement("kor-jpn-gsomia-2016")
    what_if = catalogue.replacing(gsomia.what_if(without=["2019-11-22-notice-suspended"]))
    clock = FakeClock(END - timedelta(seconds=10))
    members = build(tmp_path / "net", clock=clock)
    nodes = open_nodes(members, clock, catalogue=what_if)
    kor, jpn = nodes["KOR"], nodes["JPN"]
    updates = _updates(2, "KOR-ends", END - timedelta(seconds=20))
    label = label_to_dict(StreamService(kor).stream_label())
    messages = [
        orjson.dumps({"track": track_update_to_json(u), "label": label, "originator": "KOR",
                      "recipient": "JPN", "via": None})
        for u in updates
    ]  # fmt: skip

    async def run() -> list[dict[str, Any]]:
        inbound: asyncio.Queue[bytes] = asyncio.Queue()
        outbound: asyncio.Queue[bytes] = asyncio.Queue()
        service = StreamService(jpn)
        subscription: Any = await service.bus.subscribe()
        peer = kor.exchange.peer("JPN")
        assert peer is not None
        first, finish = initiate(kor.ring, peer, clock())
        await inbound.put(first)
        task = asyncio.create_task(service.serve_link(inbound.get, outbound.put))
        session = finish(await outbound.get())
        emitted = []
        for at, message in (
            (END - timedelta(seconds=1), messages[0]),
            (END + timedelta(seconds=1), messages[1]),
        ):
            clock.now = at
            for wire in session.seal(TRACKS, sign_batch(kor.ring, [message], clock()), 0.0):
                await inbound.put(wire)
            for _ in range(100):  # the group taken (kept or refused) at this instant, before the clock moves
                if service.stats.emitted + service.stats.refused >= len(emitted) + 1:
                    break
                await asyncio.sleep(0.05)
            while not subscription.queue.empty():
                emitted.append(orjson.loads(subscription.queue.get_nowait()[1]))
        for wire in session.seal(TRACK, b"{}", 0.0):  # a bare TRACK ends the link
            await inbound.put(wire)
        with pytest.raises(LinkError):
            await asyncio.wait_for(task, 10)
        await service.close()
        return emitted

    emitted = asyncio.run(run())
    assert [m["track"]["update_ts"] for m in emitted] == [track_update_to_json(updates[0])["update_ts"]]
    refusals = jpn.store.audit(after_seq=0, kind="stream.receive", limit=10)
    assert [(r.subject, r.outcome) for r in refusals] == [("KOR-ends", "refused")]
    for node in nodes.values():
        node.close()
