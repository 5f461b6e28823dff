"""The receiver's replay memory, written by one task per process: a group commit.

Every verified group of signed tracks a node receives is recorded in its store (which leaves of
which signed batch, which updates) before any of its tracks is taken, so a replay is refused in
every process of the node (``Store.remember_signed_arrivals``). One transaction per group made
every frame wait for its own commit and its own hop to a worker thread, one after another: at
1,000 frames a second the frames queued behind each other (benchmarks/README.md, bench_stream).

Here the groups that arrive while a commit is under way, on every link of this process, wait for
the next one, and go in it together, in their order of arrival: one commit and one thread hop
for all of them. Each waiter learns what the store said of its own group, only once the commit
that recorded it is done; a replay of a group in the same commit as its original is checked
against it (the store checks the arrivals of one transaction in order). The audit records of the
receiving side (a window root verified, updates dropped as duplicates) go in the same commits:
two writers of one process would otherwise wait on each other's database lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from gsomia.store import AuditRow, Remembered, SignedArrival, Store

__all__ = ["ReplayMemory"]

_WAITERS_PER_COMMIT = 256  # groups and audit records in one transaction, at most: a commit stays short
_NOTHING_TO_FORGET = -(2**63)  # a commit of audit records alone forgets nothing


class _Waiter:
    """What one caller waits for: its group recorded (``arrival``) or its audit records written."""

    __slots__ = ("arrival", "forget_before_us", "future", "rows")

    def __init__(
        self,
        arrival: SignedArrival | None,
        forget_before_us: int,
        rows: Sequence[AuditRow],
        future: asyncio.Future[Any],  # Remembered for an arrival, None for audit records
    ) -> None:
        self.arrival = arrival
        self.forget_before_us = forget_before_us
        self.rows = rows
        self.future = future


class ReplayMemory:
    """One process's writer of the store's replay memory (one per stream service)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiting: list[_Waiter] = []
        self._writer: asyncio.Task[None] | None = None

    def remember(self, arrival: SignedArrival, forget_before_us: int) -> asyncio.Future[Remembered]:
        """Record ``arrival`` in the next commit, forgetting rows seen before ``forget_before_us``;
        the future holds what the store said of it (or its error) once that commit is done."""
        future: asyncio.Future[Remembered] = asyncio.get_running_loop().create_future()
        self._wait(_Waiter(arrival, forget_before_us, (), future))
        return future

    def record(self, rows: Sequence[AuditRow]) -> asyncio.Future[None]:
        """Append the audit records ``rows`` in the next commit; the future is done once it is."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wait(_Waiter(None, _NOTHING_TO_FORGET, rows, future))
        return future

    def _wait(self, waiter: _Waiter) -> None:
        self._waiting.append(waiter)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="gsomia-stream-replay-memory")

    async def _write(self) -> None:
        """Commit what is waiting, then what arrived meanwhile, until nothing waits."""
        while self._waiting:
            taken = self._waiting[:_WAITERS_PER_COMMIT]
            del self._waiting[:_WAITERS_PER_COMMIT]
            arrivals = [w.arrival for w in taken if w.arrival is not None]
            forget = min((w.forget_before_us for w in taken if w.arrival), default=_NOTHING_TO_FORGET)
            rows = [row for w in taken for row in w.rows]
            try:
                answers = iter(
                    await asyncio.to_thread(self._store.remember_signed_arrivals, arrivals, forget, rows)
                )
            except asyncio.CancelledError:
                for waiter in taken + self._waiting:
                    waiter.future.cancel()
                self._waiting.clear()
                raise
            except Exception as exc:  # the store failed: each waiter's link fails with it
                for waiter in taken:
                    if not waiter.future.done():
                        waiter.future.set_exception(exc)
                continue
            for waiter in taken:
                answer = next(answers) if waiter.arrival is not None else None
                if not waiter.future.done():  # its link ended meanwhile: recorded all the same
                    waiter.future.set_result(answer)

    async def close(self) -> None:
        """Let the commit under way finish (its groups are recorded either way), then stop."""
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
