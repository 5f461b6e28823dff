"""Audit records of concurrent requests written together: one transaction for many.

Every read is audited in its own write, and under load those writes (each a transaction and a
commit) cost more than the reads (issue 18's API profile). :class:`GroupedAppend` lets requests
that arrive while a write is under way join the next one: the first caller writes the records
waiting (its own among them) in one transaction and wakes their callers; a caller that arrives
meanwhile waits, and then either finds its records written or writes the next group itself. Each
caller returns only once its own records are committed, and raises what the write raised: a read
is never answered without its audit record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from gsomia.store import AuditRow

__all__ = ["GroupedAppend"]


class _Waiting:
    __slots__ = ("done", "error", "rows", "turn")

    def __init__(self, rows: Sequence[AuditRow]) -> None:
        self.rows = rows
        self.done = False
        self.error: BaseException | None = None
        # held from the moment a caller queues behind a write under way, released when its records
        # are written or when it is its turn to write; ``None`` for the caller who writes at once,
        # which never waits (a plain lock, not an ``Event``: made, set and never waited on, the event
        # and its condition were a read thread's largest cost in this module under load, issue 18)
        self.turn: threading.Lock | None = None


class GroupedAppend:
    """``append(rows)`` through ``write`` (one transaction), grouped with concurrent callers'."""

    def __init__(self, write: Callable[[Sequence[AuditRow]], None], *, limit: int = 1000) -> None:
        self._write = write
        self._limit = limit  # records in one transaction, at most (roughly: whole callers are kept)
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._writing = False

    def append(self, rows: Sequence[AuditRow]) -> None:
        """Write ``rows``, in one transaction with those of callers waiting at the same time."""
        if not rows:
            return
        me = _Waiting(rows)
        with self._lock:
            lead = not self._writing
            if lead:
                self._writing = True
            else:
                turn = me.turn = threading.Lock()
                turn.acquire()
            self._queue.append(me)
        if lead:
            self._write_group()  # the queue was empty: its first group holds these records
        else:
            turn.acquire()  # released by the writer of these records, or to make this caller write
            if not me.done:  # woken to write the next group (these records first in it)
                self._write_group()
        if me.error is not None:
            raise me.error

    def _write_group(self) -> None:
        with self._lock:
            group: list[_Waiting] = []
            count = 0
            while self._queue and (not group or count + len(self._queue[0].rows) <= self._limit):
                waiting = self._queue.pop(0)
                group.append(waiting)
                count += len(waiting.rows)
        error: BaseException | None = None
        try:
            self._write([row for waiting in group for row in waiting.rows])
        except BaseException as exc:  # every caller of the group raises it: fail closed
            error = exc
        for waiting in group:
            waiting.error = error
            waiting.done = True
            if waiting.turn is not None:
                waiting.turn.release()
        with self._lock:
            if self._queue:  # the next group: its first caller (queued behind this write) writes it
                turn = self._queue[0].turn
                assert turn is not None  # noqa: S101 - only the caller who found no write under way has none
                turn.release()
            else:
                self._writing = False
