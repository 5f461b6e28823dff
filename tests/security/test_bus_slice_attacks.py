"""Attack: a partner's track whose strings spell the bus message's own keys (d75ca26, issue 18).

A consumer is given each track's JSON sliced from the bus message once a message of its label's
digest was read whole; the slice is found by the bytes ``","label":``, the label's JSON and
``,"track":``. The track's strings come from a partner (a track id is theirs). One spelling those
keys and a readable label of its own, sent under a label the reader may not read and under one
they may: the reader gets only the second, byte for byte as a message read whole holds it, and
each digest is registered with its own label's bytes. What holds it: the track is JSON-encoded,
so a quote in a partner's string is escaped and the keys cannot occur in it unescaped (a slice
found by searching for ``,"track":`` anywhere would give the same bytes); a consumer's decision
kept per digest instead of per label fails here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from tests.stream._jpn import analyst, jpn_node

from gsomia._codec import label_to_dict
from gsomia.core.labels import SecurityLabel
from gsomia.node import Node
from gsomia.stream import StreamService, launches, replay
from gsomia.stream._service import _track_bytes


@pytest.fixture
def jpn(tmp_path: Path) -> Iterator[Node]:
    yield from jpn_node(tmp_path)


def test_a_track_spelling_the_bus_keys_is_sliced_whole_and_shown_only_under_its_own_label(jpn: Node) -> None:
    updates = replay(launches(2019)[9], originator="JPN", every_s=20)[:8]

    async def run() -> tuple[list[bytes], list[bytes], dict[str, bytes], SecurityLabel, SecurityLabel]:
        service = StreamService(jpn)
        readable = service.stream_label()  # 極秘: the reader is cleared for it
        higher = jpn.kernel.items.parse_label(dict(label_to_dict(readable), classification="機密"))
        spelt = orjson.dumps(label_to_dict(readable)).decode()
        forged = f'x","label":{spelt},"track":{{"track_id":"y"}}}}'
        tracks = [
            _track_bytes(u._replace(track_id=forged)) if n % 2 else _track_bytes(u)
            for n, u in enumerate(updates)
        ]
        raws = await service.bus.subscribe()
        feed = await service.subscribe(analyst(jpn, "sato", "極秘"), "ws")
        try:
            for n, track in enumerate(tracks):  # the forged ones under either label, in turn
                await service._emit(track, higher if n % 4 == 1 else readable, "local", None)
            got = [(await anext(feed))[1] for _ in range(6)]
            with pytest.raises(TimeoutError):  # nothing more: the other two are 機密
                await asyncio.wait_for(anext(feed), 0.5)
            held = [(await anext(aiter(raws)))[1] for _ in tracks]
            return got, held, dict(service._bus_labels), readable, higher
        finally:
            await feed.aclose()  # type: ignore[attr-defined]
            await service.close()

    got, held, labels, readable, higher = asyncio.run(run())
    shown = [raw for n, raw in enumerate(held) if n % 4 != 1]
    assert got == [orjson.dumps(orjson.loads(raw)["track"]) for raw in shown]  # as read whole, byte for byte
    forged_id = orjson.loads(held[3])["track"]["track_id"]
    assert '","label":' in forged_id
    assert [orjson.loads(t)["track_id"] for t in got].count(forged_id) == 2  # the forged ones under 極秘
    assert all(orjson.loads(raw)["label"]["classification"] == "機密" for raw in held[1::4])
    # each digest registered for slicing holds its own label's bytes, never the spelling in a track id
    assert sorted(labels.values()) == sorted(orjson.dumps(label_to_dict(x)) for x in (readable, higher))
