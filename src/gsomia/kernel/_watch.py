"""How a process learns that the store's shared state changed: the generation counters.

Every process of a node that keeps a copy of shared state (the key ring, the peer directory)
asks :meth:`ChangeWatch.generation` on use; the counters are read from the store at most every
``interval`` seconds (0.25 by default, one small query), so a change made by any process (a
``gsomia peer revoke-key`` run beside a serving node, another API process) is seen by every
process within that interval of its next use. No thread, no timer: an idle process reads nothing.

A push source can make it sooner: :meth:`ChangeWatch.stale` forces the next use to read the
counters (a PostgreSQL ``LISTEN`` on the generations channel would call it; this process calls
it after its own writes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gsomia.store import SharedState

__all__ = ["DEFAULT_INTERVAL", "ChangeWatch"]

DEFAULT_INTERVAL = 0.25  # seconds between two reads of the counters, at most


class ChangeWatch:
    """The store's generation counters as this process last read them."""

    def __init__(
        self,
        shared: SharedState,
        *,
        interval: float = DEFAULT_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shared = shared
        self._interval = interval
        self._monotonic = monotonic
        self._values: dict[str, int] | None = None
        self._next = 0.0  # the monotonic instant from which the counters are read again
        self._lock = threading.Lock()
        self.reads = 0  # how many times the counters were read (for tests and benchmarks)

    def generation(self, name: str) -> int:
        """``name``'s generation, read from the store if the last read is older than the interval.

        One thread reads at a time; the others meanwhile answer from the last read (never older
        than the interval plus one query). The first use always reads."""
        values = self._values
        due = values is None or self._monotonic() >= self._next
        if due and self._lock.acquire(blocking=values is None):
            try:
                if self._values is None or self._monotonic() >= self._next:
                    self._values = self._shared.generations()
                    self._next = self._monotonic() + self._interval
                    self.reads += 1
                values = self._values
            finally:
                self._lock.release()
        return 0 if values is None else values.get(name, 0)

    def stale(self) -> None:
        """Read the counters again on the next use (after a write here, or when a push says so)."""
        self._next = 0.0
