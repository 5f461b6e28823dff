"""Attack: a hostile partner stretching its own window-root deadline by holding up the receiver's loop.

A hop's window root overdue drops the link (``no-batch-root``), on a clock that leaves out the time
the receiver's own event loop was held up (``stream/_stalls.py``), so a loaded receiver does not
blame the sender for its own delay. The adversary is KOR's node operator, with KOR's genuine keys:
it sends tracks its originator signed but never a window root, and keeps JPN's loop busy meanwhile,
either with frames that are expensive to check (its own frames: the stall is its own, not left
out) or while something else holds JPN's loop (left out, but at most the allowance). Either way
the link is dropped within the deadline plus the allowance, never stretched without bound.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.security._live import audit, open_link, ring, send_frames
from websockets.exceptions import ConnectionClosed

from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import NetNode, build, open_nodes, serve_in_threads
from gsomia.node._service import system_clock
from gsomia.stream import _service, launches, replay
from gsomia.stream._link import TRACKS
from gsomia.stream._origin import sign_batch

_DEADLINE_S = 1.0  # the window-root deadline in these tests


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[dict[str, NetNode]]:
    """KOR and JPN served from threads of this process (so JPN's checks can be made slow)."""
    members = build(tmp_path / "net")
    nodes = open_nodes(members, system_clock)
    try:
        with serve_in_threads(nodes, members):
            yield {m.party: m for m in members}
    finally:
        for node in nodes.values():
            node.close()


def _frames(kor: NetNode, n: int) -> list[tuple[int, bytes]]:
    """``n`` track frames, each a group KOR signed as the tracks' originator; no window root."""
    at = datetime.now(UTC)
    frames = []
    for update in replay(launches(2019)[3], originator="KOR", every_s=1, track_id="KOR-stretch")[:n]:
        track = track_update_to_json(update)
        label = {
            "originator": "KOR",
            "classification": "군사II급비밀",
            "releasable_to": ["JPN"],
            "purpose": "missile-warning",
            "topics": ["dprk-missile"],
            "created": track["launch"]["time"],
        }
        message = {"track": track, "label": label, "originator": "KOR", "recipient": "JPN", "via": None}
        frames.append((TRACKS, sign_batch(ring(kor), [json.dumps(message).encode()], at)))
    return frames


def _flood(pair: dict[str, NetNode], frames: list[tuple[int, bytes]]) -> tuple[tuple[int | None, str], float]:
    """KOR opens a link to JPN and sends every frame at once: how JPN closed it, and how long after
    the first frame (the handshake, slow on a loaded machine, not counted)."""
    with open_link(ring(pair["KOR"]), pair["JPN"]) as (ws, session):
        began = time.monotonic()
        try:
            for kind, body in frames:
                for wire in session.seal(kind, body, time.monotonic()):
                    ws.send(wire)
            ws.recv(timeout=60)
        except ConnectionClosed as exc:
            received = exc.rcvd
            return ((received.code, received.reason) if received else (None, "")), time.monotonic() - began
    return (None, "kept open"), time.monotonic() - began


def _slow_checks(monkeypatch: pytest.MonkeyPatch, each: Callable[[], None]) -> None:
    """JPN's check of each group its link receives runs ``each`` first, on JPN's event loop."""
    verify = _service.verify_group

    def checked(*args: Any) -> Any:
        each()
        return verify(*args)

    monkeypatch.setattr(_service, "verify_group", checked)


def test_a_peer_whose_own_frames_hold_up_the_loop_gains_no_time(
    pair: dict[str, NetNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of KOR's frames takes JPN a second to check (on its loop), KOR floods 30 of them and
    never a window root: that stall is KOR's own, so the link is dropped at the 1 s deadline (the
    frame being checked then finished first), not 10 s later (a clock that left the checks out
    would move 0.1 s per frame)."""
    monkeypatch.setattr(_service, "_ROOT_DEADLINE_S", _DEADLINE_S)
    # an allowance that leaves out 30 s of the loop's stalls: only what KOR's own frames cost counts
    monkeypatch.setattr(_service, "_OWN_DELAY_CAP_S", 30.0, raising=False)
    _slow_checks(monkeypatch, lambda: time.sleep(1.0))
    closed, waited = _flood(pair, _frames(pair["KOR"], 30))
    assert closed == (1008, "no-batch-root")
    assert waited < _DEADLINE_S + 5.0, waited  # two checked frames and a loaded machine's margin
    refused = [r for r in audit(pair["JPN"], "stream.link") if r["outcome"] == "refused"]
    assert [r["detail"]["error"] for r in refused] == ["no-batch-root"]


def test_a_loop_held_up_by_other_work_leaves_at_most_the_allowance_out(
    pair: dict[str, NetNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    """From KOR's first frame on, JPN's loop is held up 1.5 s at a time by other work (another
    link's load, say), with 10 ms turns in between; KOR sends one frame and no window root. Those
    stalls are JPN's own, left out of KOR's deadline, but at most the allowance (2 s here): the
    link is dropped within the deadline plus the allowance (and a stall's length), where leaving
    them all out would keep it for 15 s."""
    monkeypatch.setattr(_service, "_ROOT_DEADLINE_S", _DEADLINE_S)
    monkeypatch.setattr(_service, "_OWN_DELAY_CAP_S", 2.0, raising=False)  # none on older code
    holding: list[asyncio.AbstractEventLoop] = []

    def hold() -> None:
        if holding:
            time.sleep(1.5)
            holding[0].call_later(0.01, hold)

    def first_check() -> None:
        if not holding:
            holding.append(asyncio.get_running_loop())
            holding[0].call_later(0.01, hold)

    _slow_checks(monkeypatch, first_check)
    try:
        began = time.monotonic()
        closed = send_frames(ring(pair["KOR"]), pair["JPN"], _frames(pair["KOR"], 1), wait=9)
        waited = time.monotonic() - began
    finally:
        holding.clear()  # JPN's loop runs freely again
        time.sleep(1.6)
    assert closed == (1008, "no-batch-root")
    assert waited < _DEADLINE_S + 2.0 + 3.5, waited
