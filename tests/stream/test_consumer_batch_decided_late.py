"""A batched consumer's tracks are read-decided as their batch goes, not when they were read ahead.

The batches' reader runs up to a batch ahead of what went (``stream/_batches.py``). A consumer that
stops reading (a slow one, or one that stalls on purpose) keeps that batch waiting for as long as it
likes; a visitor (Art. 8) whose visit ends meanwhile must not then be sent what was decided while the
visit was on: each track is decided when its batch is made, as a track sent alone is.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from tests.stream._jpn import NOW, analyst

from gsomia.core.tracks import track_update_to_json
from gsomia.errors import AccessDenied
from gsomia.node import Node
from gsomia.stream import StreamService, launches, replay
from gsomia.testing import FakeClock, make_node


@pytest.fixture
def clocked(tmp_path: Path) -> Iterator[tuple[Node, FakeClock]]:
    clock = FakeClock(NOW)
    node = make_node(tmp_path / "jpn", "JPN", clock=clock)
    yield node, clock
    node.close()


def test_a_visitor_gets_nothing_read_ahead_once_the_visit_has_ended(clocked: tuple[Node, FakeClock]) -> None:
    node, clock = clocked
    top = max(node.catalogue.party("JPN").scheme.levels, key=lambda lv: lv.rank).name
    visitor = analyst(node, "kim", top)
    updates = replay(launches(2019)[2], originator="JPN", every_s=20)[:10]
    assert len(updates) == 10

    async def run() -> tuple[list[bytes], list[bytes], AccessDenied | None]:
        service = StreamService(node)
        try:
            level = service.stream_label().classification
            node.duties.authorise_visit(
                None, "kim", highest=level, starts=NOW - timedelta(hours=1), ends=NOW + timedelta(hours=1),
                purpose="liaison",
            )  # fmt: skip
            stream = await service.subscribe_batches(visitor, "ws", 4)
            for update in updates:
                track = orjson.dumps(track_update_to_json(update))
                await service._emit(track, service.stream_label(), "direct", None)
            first = await asyncio.wait_for(anext(stream), 5)  # inside the visit: it is read
            for _ in range(50):  # the consumer stalls: the batches' reader reads ahead meanwhile
                await asyncio.sleep(0)
            clock.advance(hours=2)  # the visit ends while what was read ahead waits
            rest: list[bytes] = []
            ended: AccessDenied | None = None
            try:
                while True:
                    rest += await asyncio.wait_for(anext(stream), 0.5)
            except TimeoutError:
                pass
            except AccessDenied as exc:  # no visit in force: the stream itself ends
                ended = exc
            await stream.aclose()
            return first, rest, ended
        finally:
            await service.close()

    first, rest, ended = asyncio.run(run())
    assert first, "inside the visit the visitor reads the stream"
    assert rest == [], f"{len(rest)} tracks decided during the visit were sent after it ended"
    assert ended is not None, "with no visit in force the visitor may no longer follow the stream"
    assert any(c.rule == "visit" and not c.passed for c in ended.decision.checks)
    refusals = [  # the tracks withheld (stream.read), or the stream ended (stream.ws), whichever came first
        json.loads(r.detail)
        for r in node.store.audit()
        if r.kind in ("stream.read", "stream.ws") and r.outcome == "refused"
    ]
    assert refusals, "what is refused after the visit is audited"
    assert "no visit in force" in json.dumps(refusals[0], ensure_ascii=False)
