"""The time this process's event loop was held up: the node's own delay, not a peer's.

A deadline this node sets for a peer (a hop's window root overdue drops the link) must measure the
peer. When this process's event loop is held up (a loaded machine's scheduler, a long piece of
work on the loop, a pause), the peer's frame may already sit in the socket when the loop runs
again, and a timer due meanwhile would fire before the frame is read. :class:`Stalls` counts that
time: a callback due every ``every`` seconds that runs later than due adds the lateness, and
:meth:`Stalls.clock` is the monotonic clock less it. Timers run in the order they were due, so
the lateness of a stall that ends past a deadline is counted before the deadline's own callback
runs: whoever wakes from that deadline reads the count with the stall in it.

What is left out is bounded (:class:`Deadline`): a peer can hold the loop up itself (frames that
are expensive to open and verify, sent as fast as it can), and a hostile peer must not stretch its
own deadline that way. The stalls its own frames caused, measured while this node works on them
(:meth:`Deadline.charge`), count against it; whatever else is left out (other stalls, this node's
own waits) counts at most ``allowance`` seconds, so a deadline of ``seconds`` ends at the latest
``seconds + allowance`` after it began, on the plain monotonic clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["Deadline", "Stalls"]


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

    def settle(self) -> float:
        """Count now what the loop is late so far (a tick overdue and not yet run); the time now."""
        now = self._monotonic()
        if self._handle is not None and now > self._due:  # counting (started, not stopped)
            self.late(now)
        return now

    def overdue_since(self, began: float) -> float:
        """Settle; the part of the lateness counted that fell after ``began``: what work that ran on
        the loop from ``began`` until now, with no turn of the loop in between, made it late."""
        due = self._due
        now = self.settle()
        return max(0.0, now - max(began, due))

    def clock(self) -> float:
        """The monotonic clock less the time the loop was held up so far (settled)."""
        return self.settle() - self.total

    def _tick(self) -> None:
        self.late(self._monotonic())
        self._handle = asyncio.get_running_loop().call_later(self.every, self._tick)


class Deadline:
    """A peer's deadline: ``seconds`` from now, not counting this node's own delays, at most
    ``allowance`` seconds of them, nor those the peer's own frames caused.

    This node's own delays are the stalls of its event loop since the deadline began (:class:`Stalls`)
    and its own waits (:meth:`waited`); the stalls that fell while this node worked on the peer's
    frames (:meth:`charge`) are the peer's. Past ``seconds + allowance`` on the plain monotonic
    clock the deadline has passed, whatever held the loop up.
    """

    __slots__ = ("_began", "_charged", "_stalled", "_stalls", "_waited", "allowance", "seconds")

    def __init__(
        self, stalls: Stalls, seconds: float, allowance: float, since: tuple[float, float] | None = None
    ) -> None:
        self._stalls = stalls
        self.seconds = seconds
        self.allowance = allowance
        # from now, or from an earlier ``since`` = (monotonic instant, ``stalls.total`` then): a stall
        # before the deadline began is not left out of it
        self._began, self._stalled = since if since is not None else (stalls.settle(), stalls.total)
        self._charged = 0.0
        self._waited = 0.0

    def charge(self, began: float) -> None:
        """The peer's frames were worked on from ``began`` (monotonic) until now without a turn of the
        event loop: what the loop was late meanwhile is the peer's, not left out of its deadline."""
        self._charged += self._stalls.overdue_since(max(began, self._began))

    def waited(self, seconds: float) -> None:
        """This node waited ``seconds`` on its own work (measured on :meth:`Stalls.clock`)."""
        self._waited += max(0.0, seconds)

    def excused(self) -> float:
        """The seconds left out of the deadline so far: this node's own delays, at most ``allowance``."""
        stalled = max(0.0, self._stalls.total - self._stalled - self._charged)
        return min(stalled + self._waited, self.allowance)

    def left(self) -> float:
        """The seconds left before the deadline (zero or less: it has passed)."""
        now = self._stalls.settle()
        return self.seconds - (now - self._began - self.excused())
