"""A link survives a receiver held up by its own work: the window-root deadline measures the sender.

The receiver's event loop can be held up (a loaded machine's scheduler, a long verification, a
pause) while the sender's next window root is already on its way, or already in its socket. That
time is the receiver's, not the sender's: here JPN's loop is stopped on purpose, longer than the
deadline, just after it reads KOR's first tracks, and the link must stay up.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from tests.stream.test_slow_commits import _crossing, _link_failures

from gsomia.store import PEERS, LinkHellos
from gsomia.stream import _service
from gsomia.stream._stalls import Deadline, Stalls

_DEADLINE_S = 2.5  # the window-root deadline in this test (a loaded sender's own stall counts)
_STALL_S = 5.0  # the receiver's loop stopped once: twice the deadline


def test_the_receivers_own_stalled_loop_is_not_counted_against_the_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JPN's event loop stops for 5 s (deadline 2.5 s here) while it verifies the first group KOR
    sends it; KOR's roots come every 50 ms meanwhile: the link stays up and every update crosses."""
    monkeypatch.setattr(_service, "_ROOT_DEADLINE_S", _DEADLINE_S)
    verify = _service.verify_group
    stalls = iter([True])

    def stalled(*args: Any) -> Any:
        if next(stalls, False):  # a little later, while the reader waits for KOR's next frame
            asyncio.get_running_loop().call_later(0.01, time.sleep, _STALL_S)
        return verify(*args)

    monkeypatch.setattr(_service, "verify_group", stalled)
    with _crossing(tmp_path) as (nodes, cross):
        got = cross(40)
        failures = {p: _link_failures(nodes[p]) for p in ("KOR", "JPN")}  # before the servers stop
    assert len(got) == 40
    assert failures == {"KOR": [], "JPN": []}


def test_the_stalls_count_the_time_the_loop_was_held_up() -> None:
    """Stalls counts a loop held up for half a second (its tick due meanwhile ran late); a loaded
    machine only makes the loop later, so only more is counted."""

    async def run() -> float:
        stalls = Stalls(every=0.05)
        stalls.start()
        try:
            await asyncio.sleep(0.2)
            before = stalls.total
            time.sleep(0.5)  # the loop held up: the tick due 0.05 s in runs at its end
            await asyncio.sleep(0.1)
            return stalls.total - before
        finally:
            stalls.stop()

    held = asyncio.run(run())
    assert held >= 0.5 - 0.05  # the stall, less at most one tick's interval (load only adds to it)


def test_a_deadline_leaves_out_the_loops_stalls_up_to_its_allowance_and_never_the_peers_own() -> None:
    """A 5 s deadline with a 3.5 s allowance: a 2.9 s stall of other work is left out; a second's
    stall while the peer's own frame was checked is not; a further 5.9 s stall of other work is
    left out only up to the allowance, so the deadline has passed (it would not, all left out)."""
    now = [100.0]

    async def run() -> list[float]:
        stalls = Stalls(every=0.1, monotonic=lambda: now[0])
        stalls.start()
        try:
            deadline = Deadline(stalls, 5.0, 3.5)
            now[0] = 103.0  # the loop held up by other work: the tick due at 100.1 runs at 103
            stalls.late(now[0])
            left = [deadline.left()]
            began = now[0]
            now[0] = 104.0  # the peer's frame checked for a second, no turn of the loop meanwhile
            deadline.charge(began)
            left.append(deadline.left())
            now[0] = 110.0  # the loop held up by other work again: the tick due at 104.1 runs at 110
            stalls.late(now[0])
            left.append(deadline.left())
            return left
        finally:
            stalls.stop()

    after_other, after_own, after_more = asyncio.run(run())
    assert after_other == pytest.approx(5.0 - (3.0 - 2.9))
    assert after_own == pytest.approx(after_other - 1.0)  # the peer's own second counts in full
    assert after_more == pytest.approx(5.0 - (10.0 - 3.5))  # 7.9 s of other stalls, 3.5 left out
    assert after_more < 0


def test_a_partner_slow_to_answer_the_link_hello_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JPN takes 6 s to answer KOR's link hello (its store slow to record the hello it answers, as
    on a loaded machine): KOR waits for the answer rather than failing the link and trying again;
    the link opens once, and every update crosses it."""
    first_sight = LinkHellos.first_sight
    slowed = iter([True])

    def slow(self: LinkHellos, *args: Any) -> bool:
        if next(slowed, False):
            time.sleep(6.0)
        return first_sight(self, *args)

    monkeypatch.setattr(LinkHellos, "first_sight", slow)
    with _crossing(tmp_path) as (nodes, cross):
        got = cross(10)
        failures = {p: _link_failures(nodes[p]) for p in ("KOR", "JPN")}  # before the servers stop
    assert len(got) == 10
    assert failures == {"KOR": [], "JPN": []}


def test_a_stall_of_the_receivers_loop_during_the_handshake_is_not_the_callers_delay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JPN's event loop stops for 6 s as it sends its answer to KOR's link hello (past the gate's
    5 s for the caller's first frame); KOR's key confirmation is in JPN's socket meanwhile: the
    link opens, and every update crosses it."""
    first_sight = LinkHellos.first_sight
    answered: list[bool] = []
    jpn: list[Any] = []

    def answering(self: LinkHellos, *args: Any) -> bool:
        if not answered and self.store in jpn:  # JPN's first: its peers asked next, then the answer sent
            answered.append(True)
        return first_sight(self, *args)

    monkeypatch.setattr(LinkHellos, "first_sight", answering)
    with _crossing(tmp_path) as (nodes, cross):
        jpn.append(nodes["JPN"].store)
        watch = nodes["JPN"].kernel.watch
        generation = watch.generation

        def stalling(name: str) -> int:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # asked from a worker thread, not the link's event loop
                return generation(name)
            if name == PEERS and answered and answered[0]:  # the loop stops as the answer goes out
                answered[0] = False
                loop.call_soon(time.sleep, 6.0)
            return generation(name)

        monkeypatch.setattr(watch, "generation", stalling)
        got = cross(10)
        failures = {p: _link_failures(nodes[p]) for p in ("KOR", "JPN")}  # before the servers stop
    assert len(got) == 10
    assert failures == {"KOR": [], "JPN": []}
