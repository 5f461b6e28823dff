"""A consumer gets each track's JSON as the bus message holds it, sliced, not decoded and encoded.

The slice is taken only where the bytes after the label's digest are that label's JSON as a
message read whole before held it, followed by the track's key; any other message is read whole.
Each way, the consumer gets the track the message holds, and each label is decided for the reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.stream._jpn import analyst, jpn_node

from gsomia._codec import label_to_dict
from gsomia.node import Node
from gsomia.stream import StreamService, launches, replay
from gsomia.stream._service import _track_bytes


@pytest.fixture
def jpn(tmp_path: Path) -> Iterator[Node]:
    yield from jpn_node(tmp_path)


def _tracks(count: int) -> list[bytes]:
    return [_track_bytes(u) for u in replay(launches(2019)[9], originator="JPN", every_s=20)[:count]]


def _track_of(raw: bytes) -> bytes:
    return orjson.dumps(orjson.loads(raw)["track"])


def test_a_consumer_gets_the_tracks_the_messages_hold_sliced_after_the_first(jpn: Node) -> None:
    tracks = _tracks(4)

    async def run() -> tuple[list[bytes], list[bytes]]:
        service = StreamService(jpn)
        raws = await service.bus.subscribe()
        feed = await service.subscribe(analyst(jpn, "sato", "極秘"), "ws")
        label = service.stream_label()
        try:
            for track in tracks:
                await service._emit(track, label, "local", None)
            got = [(await anext(feed))[1] for _ in tracks]
            held = [(await anext(aiter(raws)))[1] for _ in tracks]
            assert len(service._bus_labels) == 1  # the first message read whole, the others sliced
            return got, held
        finally:
            await feed.aclose()  # type: ignore[attr-defined]
            await service.close()

    got, held = asyncio.run(run())
    assert got == [_track_of(raw) for raw in held]
    assert [orjson.loads(t)["update_ts"] for t in got] == [orjson.loads(t)["update_ts"] for t in tracks]
    assert {orjson.loads(t)["route"] for t in got} == {"local"}


def _message(lk: str, label: Any, track: bytes, *, label_first: bool = True) -> bytes:
    label_json = label if isinstance(label, bytes) else orjson.dumps(label)
    if label_first:
        return b'{"id":1,"lk":"%b","label":%b,"track":%b}' % (lk.encode(), label_json, track)
    return b'{"id":1,"lk":"%b","track":%b,"label":%b}' % (lk.encode(), track, label_json)


@pytest.mark.parametrize(
    "variant",
    [
        "label-spaced",  # the same label written otherwise: not the bytes read before
        "track-first",  # the label not where _emit writes it
        "other-label",  # another label under the same digest's position
    ],
)
def test_a_message_not_as_emitted_is_read_whole(jpn: Node, variant: str) -> None:
    service = StreamService(jpn)
    label = label_to_dict(service.stream_label())
    lk = "0" * 32
    first, second = _tracks(2)
    track = first[:-1] + b',"route":"local","agreement":null}'
    read = service._decode(_message(lk, label, track))  # read whole: the label's bytes are kept
    assert read.label == label
    assert service._bus_labels == {lk: orjson.dumps(label)}
    other = second[:-1] + b',"route":"direct","agreement":"x"}'
    if variant == "label-spaced":
        raw = _message(lk, orjson.dumps(label).replace(b'","', b'", "'), other)
    elif variant == "track-first":
        raw = _message(lk, label, other, label_first=False)
    else:
        raw = _message(lk, dict(label, releasable_to=["KOR"]), other)
    read = service._decode(raw)
    assert read.track == _track_of(raw) == orjson.dumps(orjson.loads(other))
    assert read.label == orjson.loads(raw)["label"]  # decoded: the consumer decides the label it holds


def test_a_track_published_while_the_subscription_is_audited_is_delivered(jpn: Node) -> None:
    """The record "subscribed" means subscribed: a track published while it is being written (a
    client that waited for it, under load) reaches the consumer first."""
    first, second = _tracks(2)

    async def run() -> bytes:
        service = StreamService(jpn)
        label = service.stream_label()
        audit = service._audit

        async def audit_then_publish(*rows: Any) -> None:
            await audit(*rows)
            if any(row.kind == "stream.ws" for row in rows):  # what a partner's link publishes meanwhile
                await service._emit(first, label, "local", None)

        service._audit = audit_then_publish  # type: ignore[method-assign]
        feed = await service.subscribe(analyst(jpn, "sato", "極秘"), "ws")
        try:
            await service._emit(second, label, "local", None)
            return (await anext(feed))[1]  # (on the old order, the second: the first was missed)
        finally:
            await feed.aclose()  # type: ignore[attr-defined]
            await service.close()

    got = asyncio.run(run())
    assert orjson.loads(got)["update_ts"] == orjson.loads(first)["update_ts"]
    assert orjson.loads(first)["update_ts"] != orjson.loads(second)["update_ts"]
