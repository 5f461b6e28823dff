"""The time this process's event loop was held up: the node's own delay, not a peer's.

A deadline this node sets for a peer (a hop's window root overdue drops the link) must measure the
peer. When this process's event loop is held up (a loaded machine's scheduler, a long piece of
work on the loop, a pause), the peer's frame may already sit in the socket when the loop runs
again, and a timer due meanwhile would fire before the frame is read. :class:`Stalls` counts that
time: a callback due every ``every`` seconds that runs later than due adds the lateness, and
:meth:`Stalls.clock` is the monotonic clock less it. Timers run in the order they were due, so
the lateness of a stall that ends past a deadline is counted before the deadline's own callback
runs: whoever wakes from that deadline reads the count with the stall in it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["Stalls"]


class Stalls:
    """The seconds the running event loop was late, counted from :meth:`start` to :meth:`stop`."""

    def __init__(self, every: float = 0.1, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.total = 0.0  # the seconds the loop was late, so far
        self._monotonic = monotonic
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Count from now, on the running event loop."""
        if self._handle is None:
            self._due = self._monotonic() + self.every
            self._handle = asyncio.get_running_loop().call_later(self.every, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def late(self, now: float) -> None:
        """The tick due at ``self._due`` ran at ``now``: what is past due is the loop's own delay."""
        self.total += max(0.0, now - self._due)
        self._due = now + self.every

    def clock(self) -> float:
        """The monotonic clock less the time the loop was held up: a peer's deadline is measured on it."""
        return self._monotonic() - self.total

    def _tick(self) -> None:
        self.late(self._monotonic())
        self._handle = asyncio.get_running_loop().call_later(self.every, self._tick)
