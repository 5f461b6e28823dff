"""How a process learns that the store's shared state changed: the generation counters.

Every process of a node that keeps a copy of shared state (the key ring, the peer directory,
people, consents and relay plans, the release policy...) asks :meth:`ChangeWatch.generation` on
use; a copy is the store's while its counter holds. The counters are read from the store at most
every ``interval`` seconds (0.25 by default, one small query), so a change made by any process
(a ``gsomia peer revoke-key`` run beside a serving node, another API process) is seen by every
process within that interval of its next use. An idle process reads nothing.

On PostgreSQL a serving process is also told at once (:meth:`ChangeWatch.listen`): the
transaction that moves a counter sends a notification when it commits, and the listening thread
marks the counters stale, so the next use reads them. While the listener is connected, polling is
only the safety net: the counters are read every ``listening_interval`` seconds (5 by default)
unless a notification says to read them now, so PostgreSQL sees a twentieth of the reads. The
notification only says "read again"; the counters read are the truth, so a lost, forged or
garbled notification cannot make a copy wrong. While the listening connection is down the watch
polls every ``interval`` again, and on reconnecting the listener marks everything stale (what was
sent meanwhile reached no one). A connection that died without a word is noticed by its TCP
keepalives (about 25 s); until then a change is seen within the safety net's interval, not within
a second. This process marks the counters stale after its own writes
(:meth:`gsomia.store.Store.on_bump`). ``reads`` counts the reads of the counters (the
``gsomia_change_reads`` metric), so the saving is counted, not timed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gsomia.store import QUEUED, ChangeListener, SharedState

__all__ = ["DEFAULT_INTERVAL", "LISTENING_INTERVAL", "ChangeWatch"]

DEFAULT_INTERVAL = 0.25  # seconds between two reads of the counters, at most
LISTENING_INTERVAL = 5.0  # the same while notifications tell of every change: the safety net


class ChangeWatch:
    """The store's generation counters as this process last read them."""

    def __init__(
        self,
        shared: SharedState,
        *,
        interval: float = DEFAULT_INTERVAL,
        listening_interval: float = LISTENING_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shared = shared
        self._interval = interval
        self._listening_interval = max(interval, listening_interval)
        self._monotonic = monotonic
        self._values: dict[str, int] | None = None
        self._next = 0.0  # the monotonic instant from which the counters are read again
        # moved on by every stale() before it clears _next: a read that began before one is not kept
        self._marks = 0
        self._lock = threading.Lock()
        self._listener: ChangeListener | None = None
        self.reads = 0  # how many times the counters were read (for tests and benchmarks)

    def generation(self, name: str) -> int:
        """``name``'s generation, read from the store if the last read is older than the interval
        (the listening one while the listener is connected) or a change was announced since.

        One thread reads at a time; the others meanwhile answer from the last read (never older
        than the interval plus one query). The first use always reads."""
        values = self._values
        due = values is None or self._monotonic() >= self._next
        if due and self._lock.acquire(blocking=values is None):
            try:
                if self._values is None or self._monotonic() >= self._next:
                    marks = self._marks
                    self._values = self._shared.generations()
                    self._next = self._monotonic() + self.interval
                    if marks != self._marks:  # told of a change while reading: it may not be in
                        self._next = 0.0  # what was read, so read again at the next use
                    self.reads += 1
                values = self._values
            finally:
                self._lock.release()
        return 0 if values is None else values.get(name, 0)

    def due_within(self, seconds: float) -> bool:
        """Whether the counters, read before and not announced changed since, fall due for reading
        within ``seconds``: a caller off the event loop may then :meth:`refresh` them ahead, so a
        use on the loop finds them fresh and reads nothing. Never reads the store."""
        return self._values is not None and self._next != 0.0 and self._monotonic() + seconds >= self._next

    def refresh(self) -> None:
        """Read the counters now (one query), as :meth:`generation` reads them when due; for a
        worker thread keeping them fresh ahead of an event loop's use. While one thread reads, the
        others answer from the last read, as under :meth:`generation`."""
        with self._lock:
            marks = self._marks
            self._values = self._shared.generations()
            self._next = self._monotonic() + self.interval
            if marks != self._marks:
                self._next = 0.0
            self.reads += 1

    def fresh(self, name: str) -> int | None:
        """``name``'s generation if the last read still holds (within the interval, no change
        announced since), else ``None``: never reads the store, so an event loop may ask it; on
        ``None`` the caller takes the path that calls :meth:`generation`."""
        values = self._values
        if values is None or self._monotonic() >= self._next:
            return None
        return values.get(name, 0)

    @property
    def interval(self) -> float:
        """The seconds between two reads now: the safety net's while the listener is connected,
        else the polling interval (a disconnection marks everything stale, so polling resumes at once)."""
        listener = self._listener
        if listener is not None and listener.connected.is_set():
            return self._listening_interval
        return self._interval

    def stale(self) -> None:
        """Read the counters again on the next use (after a write here, or when a push says so)."""
        self._marks += 1
        self._next = 0.0

    def listen(self) -> bool:
        """Be told of other processes' changes as they commit (PostgreSQL's ``LISTEN``), until
        :meth:`close`; ``False`` where the store has no such push (SQLite: one process)."""
        with self._lock:
            if self._listener is None:
                self._listener = self._shared.listen(self._told)
            return self._listener is not None

    @property
    def listener(self) -> ChangeListener | None:
        """The thread listening for changes, while :meth:`listen` holds it."""
        return self._listener

    def close(self) -> None:
        """Stop listening (polling goes on: the watch still answers)."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        self.stale()  # polling at its own interval again from the next use

    def _told(self, name: str | None) -> None:
        if name == QUEUED:  # outbox entries queued by another process: no counter moved
            self._shared.queued_elsewhere()
            return
        if name is None:  # (re)connected: entries may have been queued meanwhile, unheard
            self._shared.queued_elsewhere()
        # every counter is read in one query, so a change to one is a read of all
        self.stale()
