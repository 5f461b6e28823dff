"""An open stream follows the person's record as the store holds it now: a change another process
commits (disabled, clearance lowered) reaches a consumer already streaming, single or batched,
within a second or two; no track they may no longer read is sent after it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.stream._consuming import collect, pump
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gsomia.core.access import Person
from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import build, open_nodes, serve_in_threads
from gsomia.errors import AccessDenied
from gsomia.node import Node
from gsomia.node._service import system_clock
from gsomia.stream import StreamService, launches, replay
from gsomia.testing import FakeClock, make_node

_START = datetime(2024, 3, 1, tzinfo=UTC)

# run in another process: the change reaches the serving node only through the store
_WRITER = """
import json, sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from gsomia._codec import canonical, person_to_dict
from gsomia.node import Node
from gsomia.node._service import system_clock
from gsomia.node._config import load_config
from gsomia.testing import FakeClock

node = Node(load_config(Path(sys.argv[1])), clock=FakeClock(datetime(2024, 3, 1, tzinfo=UTC)))
what, person_id = sys.argv[2], sys.argv[3]
if what == "disable":
    node.people.set_active(None, person_id, False)
else:
    person = replace(node.kernel.person(person_id), clearance=what)
    node.kernel.store.update_person(person_id, canonical(person_to_dict(person)), 1)
node.close()
"""


@pytest.fixture
def jpn(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path / "jpn", "JPN", clock=FakeClock(_START))
    yield node
    node.close()


def _connect(endpoint: str, path: str, token: str) -> Any:
    return connect(
        endpoint.replace("http", "ws") + path, additional_headers={"Authorization": f"Bearer {token}"}
    )


def _write_elsewhere(directory: Path, what: str, person_id: str) -> None:
    subprocess.run(  # noqa: S603 - our own code, fixed arguments
        [sys.executable, "-c", _WRITER, str(directory), what, person_id], check=True, timeout=120
    )


async def _tracks(service: StreamService, person: Person, batched: bool) -> AsyncIterator[list[bytes]]:
    if batched:
        async for batch in await service.subscribe_batches(person, "ws", 100):
            yield batch
    else:
        async for _, track in await service.subscribe(person, "ws"):
            yield [track]


async def _publishing(service: StreamService) -> None:
    """Tracks every 20 ms, alternately at the stream's level (``lo-N``) and above it (``hi-N``)."""
    update = track_update_to_json(replay(launches(2019)[2], originator="JPN", every_s=20)[0])
    readable = service.stream_label()
    above = dataclasses.replace(readable, classification="特定秘密")  # over 極秘
    n = 0
    while True:
        high = n % 2 == 1
        track = orjson.dumps(dict(update, track_id=f"{'hi' if high else 'lo'}-{n}"))
        await service._emit(track, above if high else readable, "direct", None)
        n += 1
        await asyncio.sleep(0.02)


def _cleared(node: Node) -> Person:
    return node.people.add_person(
        None,
        {"id": "sato", "name": "sato", "nationality": "JPN", "clearance": "特定秘密",
         "need_to_know": ["dprk-missile"], "roles": ["analyst"]},
    )  # fmt: skip


def _run(node: Node, batched: bool, change: str) -> tuple[list[str], list[str], BaseException | None, float]:
    """Follow as ``sato`` while tracks flow; ``change`` is written by another process. What came
    before it, what came from 1.5 s after it (for 1.5 s), what ended the stream, and when."""
    person = _cleared(node)

    async def run() -> tuple[list[str], list[str], BaseException | None, float]:
        service = StreamService(node)
        publisher: asyncio.Task[None] | None = None
        stream = _tracks(service, person, batched)
        queue: asyncio.Queue[list[bytes] | BaseException] = asyncio.Queue()
        pumping = asyncio.create_task(pump(stream, queue))
        ended: BaseException | None = None
        before: list[str] = []
        after: list[str] = []
        committed = 0.0
        try:
            publisher = asyncio.create_task(_publishing(service))
            while len(before) < 6:
                before += await collect(queue, 0.5)
            await asyncio.to_thread(_write_elsewhere, node.config.directory, change, person.id)
            committed = time.monotonic()
            try:
                await collect(queue, 1.5)  # the change is seen within this
                after = await collect(queue, 1.5)
            except AccessDenied as exc:
                ended = exc
        finally:
            for task in (publisher, pumping):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            await stream.aclose()
            await service.close()
        return before, after, ended, time.monotonic() - committed

    return asyncio.run(run())


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_a_person_disabled_by_another_process_has_their_open_stream_ended_and_audited(
    jpn: Node, batched: bool
) -> None:
    before, after, ended, _ = _run(jpn, batched, "disable")
    assert {t[:2] for t in before} == {"lo", "hi"}, "cleared for both before the change"
    assert isinstance(ended, AccessDenied), f"the stream went on after the person was disabled: {after}"
    assert after == []
    assert any(c.rule == "active" and not c.passed for c in ended.decision.checks)
    refusals = [r for r in jpn.store.audit(kind="stream.ws") if r.outcome == "refused"]
    assert len(refusals) == 1, "the refusal that ended it is audited once"
    assert refusals[0].actor == "sato"
    assert any(c["rule"] == "active" and not c["passed"] for c in json.loads(refusals[0].detail)["checks"])


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_a_clearance_lowered_by_another_process_withholds_what_is_above_it_and_keeps_the_rest(
    jpn: Node, batched: bool
) -> None:
    before, after, ended, _ = _run(jpn, batched, "極秘")
    assert {t[:2] for t in before} == {"lo", "hi"}, "cleared for both before the change"
    assert ended is None, "still cleared for the stream's own level: the stream goes on"
    assert after, "the tracks at their clearance keep coming"
    assert [t for t in after if t.startswith("hi")] == [], "nothing above the lowered clearance"
    refused = [json.loads(r.detail) for r in jpn.store.audit(kind="stream.read") if r.outcome == "refused"]
    assert refused, "the label now withheld is audited"


def test_a_websocket_consumer_disabled_by_the_cli_is_closed_1008_naming_it(tmp_path: Path) -> None:
    """Over the network: JPN's analyst follows over the WebSocket while KOR publishes; ``gsomia
    person disable`` (another process) at JPN ends the open stream, closed 1008 with the refusal."""
    members = build(tmp_path / "net")
    nodes = open_nodes(members, system_clock)
    endpoint = {m.party: m.endpoint for m in members}
    tokens = {m.party: json.loads((m.directory / "tokens.json").read_text()) for m in members}
    jpn_dir = next(m.directory for m in members if m.party == "JPN")
    updates = [track_update_to_json(u) for u in replay(launches(2019)[9], originator="KOR", every_s=2)]
    gsomia = Path(sys.executable).with_name("gsomia")
    with (
        serve_in_threads(nodes, members),
        _connect(endpoint["JPN"], "/stream/tracks/ws", tokens["JPN"]["analyst"]) as consumer,
        _connect(endpoint["KOR"], "/stream/tracks/publish", tokens["KOR"]["officer"]) as feed,
    ):
        feed.send(json.dumps(updates[:2]))
        assert [json.loads(consumer.recv(timeout=20))["update_ts"] for _ in range(2)] == [
            u["update_ts"] for u in updates[:2]
        ]
        subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
            [str(gsomia), "person", "disable", "--dir", str(jpn_dir), "analyst"],
            check=True, timeout=120, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        got: list[Any] = []

        def follow() -> None:
            until = time.monotonic() + 10
            for update in updates[2:]:  # tracks keep coming at KOR; the first one at JPN ends it
                feed.send(json.dumps(update))
                got.append(consumer.recv(timeout=max(until - time.monotonic(), 0.01)))
                time.sleep(0.1)

        with pytest.raises(ConnectionClosed) as closed:
            follow()
    for node in nodes.values():
        node.close()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert "active" in closed.value.rcvd.reason
    assert len(got) <= 15, "closed within about a second and a half of tracks"
