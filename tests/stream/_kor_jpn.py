"""KOR and JPN registered at each other under the GSOMIA, JPN's store on each backend, and KOR's
updates for JPN sent on a link to JPN's ``StreamService`` in this process: what the tests of a
direct partner's replays start from."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from tests.conftest import kst

from gsomia._codec import label_to_dict
from gsomia.core.ballistics import track_updates
from gsomia.core.tracks import track_update_to_json
from gsomia.demo import network
from gsomia.errors import LinkError
from gsomia.node import Node
from gsomia.stream import StreamService, launches
from gsomia.stream._link import BATCH, TRACK, TRACKS, BatchSigner, initiate
from gsomia.stream._origin import sign_batch
from gsomia.testing import FakeClock, make_node


def kor_jpn_nodes(tmp_path: Path, store_url: str) -> Iterator[tuple[Node, Node, FakeClock]]:
    """KOR and JPN on one fake clock (1 March 2024, KST), JPN's store at ``store_url``; closed after
    (a fixture's body: ``yield from``)."""
    clock = FakeClock(kst(2024, 3, 1))
    kor = make_node(tmp_path / "kor", "KOR", clock=clock)
    jpn = make_node(tmp_path / "jpn", "JPN", database_url=store_url, clock=clock)
    kor.exchange.register_peer(None, jpn.exchange.identity(), ["kor-jpn-gsomia-2016"])
    jpn.exchange.register_peer(None, kor.exchange.identity(), ["kor-jpn-gsomia-2016"])
    network.assure({"KOR": kor, "JPN": jpn})
    try:
        yield kor, jpn, clock
    finally:
        kor.close()
        jpn.close()


def kor_messages(kor: Node, count: int, prefix: str) -> list[bytes]:
    """``count`` updates of KOR's for JPN, each of its own track (``prefix-N``), as KOR signs them."""
    label = label_to_dict(StreamService(kor).stream_label())
    launch = launches(2019)[8]
    update = next(
        u
        for u in track_updates(
            launch.fly(), track_id="x", originator="KOR", launched=kor.clock() - timedelta(seconds=30),
            missile_class=launch.missile_class,
        )
        if u.points
    )  # fmt: skip
    base = track_update_to_json(update)
    return [
        orjson.dumps({"track": {**base, "track_id": f"{prefix}-{n}"}, "label": label,
                      "originator": "KOR", "recipient": "JPN", "via": None})
        for n in range(count)
    ]  # fmt: skip


async def kor_link(service: StreamService, kor: Node, bodies: Any) -> LinkError:
    """KOR opens a link to JPN's ``service`` and sends each ``TRACKS`` body ``bodies`` yields (each
    made when JPN has read the one before), each under a window root, then an unsigned track if the
    link is still open: how JPN refused it."""
    inbound: asyncio.Queue[bytes] = asyncio.Queue()
    outbound: asyncio.Queue[bytes] = asyncio.Queue()
    peer = kor.exchange.peer("JPN")
    assert peer is not None
    first, finish = initiate(kor.ring, peer, kor.clock())
    await inbound.put(first)
    task = asyncio.create_task(service.serve_link(inbound.get, outbound.put))
    session = finish(await outbound.get())
    signer = BatchSigner(kor.ring, "JPN")
    for body in bodies:
        if task.done():
            break
        for wire in session.seal(TRACKS, body, 0.0):
            await inbound.put(wire)
        signer.add(session.sent - 1, body, 0.0)
        root = signer.close(kor.clock())
        assert root is not None
        for wire in session.seal(BATCH, root.jws.encode(), 0.0):
            await inbound.put(wire)
        while inbound.qsize() and not task.done():  # JPN reads each frame before the next
            await asyncio.sleep(0.001)
    for wire in session.seal(TRACK, b"{}", 0.0):  # an unsigned track ends a link still open
        await inbound.put(wire)
    try:
        await asyncio.wait_for(task, 60)
    except LinkError as exc:
        return exc
    raise AssertionError("the link ended without a refusal")


def resigned(kor: Node, clock: FakeClock, messages: list[bytes], times: int) -> Iterator[bytes]:
    """``messages`` signed by KOR ``times`` times, each a millisecond later (a new batch each)."""
    for _ in range(times):
        clock.advance(milliseconds=1)
        yield sign_batch(kor.ring, messages, clock())


def resent_to(jpn: Node, kor: Node, bodies: Iterator[bytes]) -> tuple[LinkError, int]:
    """:func:`kor_link` to a new ``StreamService`` of JPN's: how it refused the link, and how many
    tracks it showed."""

    async def run() -> tuple[LinkError, int]:
        service = StreamService(jpn)
        subscription: Any = await service.bus.subscribe()
        refused = await kor_link(service, kor, bodies)
        shown = subscription.queue.qsize()
        await service.close()
        return refused, shown

    return asyncio.run(run())
