"""The receiver's replay memory, written by one thread per process: a group commit.

Every verified group of signed tracks a node receives is recorded in its store (which leaves of
which signed batch, which updates) before any of its tracks is taken, so a replay is refused in
every process of the node (``Store.remember_signed_arrivals``). One transaction per group made
every frame wait for its own commit and its own hop to a worker thread, one after another: at
1,000 frames a second the frames queued behind each other (benchmarks/JOURNAL.md, bench_stream).

Here the groups that arrive while a commit is under way, on every link of this process, wait for
the next one, and go in it together, in their order of arrival: one commit and one thread hop
for all of them. Each waiter learns what the store said of its own group, only once the commit
that recorded it is done; a replay of a group in the same commit as its original is checked
against it (the store checks the arrivals of one transaction in order). The audit records of the
receiving side (a window root verified, updates dropped as duplicates) go in the same commits
where the memory is in the node's database: two writers of one process would otherwise wait on
each other's database lock.

The commits run in one thread of the memory's own, handed each commit through a queue, and each
commit's answers are given to its waiters by one callback on the event loop: no executor (its work
item, its futures, the context copied) and no task of the loop's woken between the commit and its
waiters. At 1,000 tracks/s, where a commit holds one or two groups, the hop through
``asyncio.to_thread`` cost a receiver two thirds as much CPU again as the commit itself; this one
costs about a third less (benchmarks/JOURNAL.md, bench_stream).

Where the store keeps the memory in a file of its own (SQLite, ``store/_memoryfile.py``), the audit
records are committed to the node's database by a second lane of the same kind: a group then never
waits on the database's lock or its checkpoints, nor for an audit record. And there a commit is made
on the event loop itself, at the end of the turn that handed its groups over, whenever it can be
made without waiting for anything (the file is never synced; its lock is tried, not waited for:
``Store.remember_signed_arrivals_at_once``); the memory's thread makes only those that would wait
(another process of the node committing, the file's first opening). At 1,000 tracks/s the hand-over
to the thread and back, with the thread's wait for the interpreter's lock behind the loop, took
0.4 ms at the median and 5-7 ms at p99 of a commit whose own work is 0.12 ms (benchmarks/JOURNAL.md,
bench_stream). Nothing else changes: the same transaction, the same order, a group answered only
once the commit that recorded it has returned.

A group handed over ``alone`` (a link's reader that had to wait for its frame, with nothing read and
not yet taken before it) to an idle memory has that commit made at once, in the caller's turn: at
1,000 tracks/s, a frame a track, the turns the commit waited for groups that mostly never came were
half of a receiver's replay-memory step at the median and more at p90 (benchmarks/JOURNAL.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from gsomia.errors import StoreError
from gsomia.store import AuditRow, Remembered, SignedArrival, Store

__all__ = ["ReplayMemory"]

_WAITERS_PER_COMMIT = 256  # groups and audit records in one transaction, at most: a commit stays short
_NOTHING_TO_FORGET = -(2**63)  # a commit of audit records alone forgets nothing
_AT_ONCE_TURNS = 8  # turns of the event loop a commit made on it waits at most for more groups

_Commit = Callable[[], list[Remembered]]
_Done = Callable[[list[Remembered] | None, BaseException | None], None]
# a commit made at once on the event loop, or None where it would wait (then the lane's thread makes it)
_AtOnce = Callable[[list["_Waiter"]], list[Remembered] | None]


def _each(answers: list[Remembered], arrivals: Sequence[SignedArrival]) -> list[Remembered]:
    """``answers``, one a group of ``arrivals``; ``StoreError`` where the store answered another
    number of them (each group its own answer, or none is believed)."""
    if len(answers) != len(arrivals):
        raise StoreError(f"the replay memory answered {len(answers)} of {len(arrivals)} groups of a commit")
    return answers


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


class _Committer:
    """The memory's own thread: runs each commit it is given, in order, and hands the outcome back
    to the event loop it came from (one ``call_soon_threadsafe`` per commit)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[_Commit, asyncio.AbstractEventLoop, _Done] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="gsomia-replay-memory", daemon=True)
        self._thread.start()

    def submit(self, commit: _Commit, loop: asyncio.AbstractEventLoop, done: _Done) -> None:
        self._jobs.put((commit, loop, done))

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            commit, loop, done = job
            answers: list[Remembered] | None = None
            error: BaseException | None = None
            try:
                answers = commit()
            except BaseException as exc:  # the store failed: each waiter of this commit fails with it
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(done, answers, error)


class _Lane:
    """One group commit: what is handed over while a commit is under way goes in the next one,
    together, in order, run by a thread of the lane's own (``make_commit`` builds a commit of the
    waiters taken). With ``at_once``, a commit that can be made without waiting for anything is made
    on the event loop itself, at the end of the turn that handed it over, as the thread would: the
    thread makes those that would wait."""

    def __init__(
        self, make_commit: Callable[[list[_Waiter]], _Commit], at_once: _AtOnce | None = None
    ) -> None:
        self._make_commit = make_commit
        self._at_once = at_once
        self._waiting: list[_Waiter] = []
        self._committer: _Committer | None = None
        self._committing = False  # a commit is under way in the lane's thread
        self._idle: asyncio.Event | None = None  # set when nothing is waiting or under way (close)
        self._seen = 0  # groups waiting at the last turn a commit on the loop waited (_still_coming)
        self._turns = 0  # turns it has waited

    def now(self, waiter: _Waiter) -> bool:
        """Make ``waiter``'s commit now, in this turn of the event loop, if the lane is idle (nothing
        waiting or under way: nothing handed over before it is left behind, so the order of arrival
        is kept) and the commit waits for nothing (``at_once``); its future is then done already.
        False, nothing done: it waits its turn (:meth:`wait`)."""
        if self._at_once is None or self._committing:
            return False
        try:
            answers = self._at_once([waiter])
        except Exception as exc:  # the store failed: this waiter fails with it
            waiter.future.set_exception(exc)
            return True
        if answers is None:
            return False
        waiter.future.set_result(answers[0] if waiter.arrival is not None else None)
        return True

    def wait(self, waiter: _Waiter) -> None:
        self._waiting.append(waiter)
        if not self._committing:
            # at the end of this turn of the event loop: what else is handed over in it (the other
            # groups of the same frame) goes in the same commit
            self._committing = True
            asyncio.get_running_loop().call_soon(self._commit_next)

    def _commit_next(self) -> None:
        """Hand what is waiting (at most ``_WAITERS_PER_COMMIT``) to the lane's thread as one
        commit; its answers are given out by :meth:`_answered`, which hands over the next."""
        if not self._waiting:
            self._committing = False
            if self._idle is not None:
                self._idle.set()
            return
        if self._at_once is not None and self._still_coming():
            asyncio.get_running_loop().call_soon(self._commit_next)
            return
        taken = self._waiting[:_WAITERS_PER_COMMIT]
        del self._waiting[:_WAITERS_PER_COMMIT]
        if self._at_once is not None:
            try:
                answers = self._at_once(taken)
            except Exception as exc:  # the store failed: each waiter of this commit fails with it
                self._answered(taken, None, exc)
                return
            if answers is not None:
                self._answered(taken, answers, None)
                return
        if self._committer is None:
            self._committer = _Committer()
        self._committer.submit(
            self._make_commit(taken),
            asyncio.get_running_loop(),
            lambda answers, error: self._answered(taken, answers, error),
        )

    def _still_coming(self) -> bool:
        """Whether a commit made on the loop waits one more turn: at least one (the link's reader then
        reads a frame already received, if any), and more while each turn hands over more groups, at
        most ``_AT_ONCE_TURNS`` and ``_WAITERS_PER_COMMIT``: the groups a commit in the thread would
        have found waiting behind it go in one commit here too (one a group cost a receiver of a
        track a frame, read flat out, a quarter more CPU a track: benchmarks/JOURNAL.md)."""
        if (
            len(self._waiting) > self._seen
            and self._turns < _AT_ONCE_TURNS
            and len(self._waiting) < _WAITERS_PER_COMMIT
        ):
            self._seen = len(self._waiting)
            self._turns += 1
            return True
        self._seen = self._turns = 0
        return False

    def _answered(
        self, taken: list[_Waiter], answers: list[Remembered] | None, error: BaseException | None
    ) -> None:
        """On the event loop, once a commit is done: each of its waiters learns what the store said
        of it (or the store's error), then what waits meanwhile goes in the next commit."""
        given = iter(answers or ())
        for waiter in taken:
            answer = next(given, None) if waiter.arrival is not None else None
            if waiter.future.done():  # its link ended meanwhile: recorded all the same
                continue
            if error is not None:
                waiter.future.set_exception(error)
            else:
                waiter.future.set_result(answer)
        # the next at the end of this turn, as the first: the groups read meanwhile go in it too
        asyncio.get_running_loop().call_soon(self._commit_next)

    async def close(self) -> None:
        """Let the commits under way and waiting finish, then stop the lane's thread."""
        if self._committing:
            if self._idle is None:
                self._idle = asyncio.Event()
            await self._idle.wait()
            self._idle = None
        if self._committer is not None:
            self._committer.stop()
            self._committer = None


class ReplayMemory:
    """One process's writer of the store's replay memory (one per stream service).

    Where the store keeps the memory in a file of its own (SQLite, ``Store.replay_memory_apart``),
    the audit records go in commits of their own to the node's database, from a second thread: the
    memory's commits never wait on the database's write lock or its checkpoints, and a group's
    tracks never wait for an audit record. Elsewhere both go in the same commits, as one writer."""

    def __init__(self, store: Store, fresh_us: int = 0) -> None:
        """``fresh_us``: how far from this node's clock a batch's signature is taken as fresh (the
        store refuses a batch signed before what it forgot plus that, whatever the clock reads
        after: ``Store.remember_signed_arrivals``)."""
        # the log's syncs in a thread of their own, not in these commits; asked here, where an error
        # reaches the caller, not in a turn of the event loop, where it left every group waiting
        store.checkpoint_aside()
        self._store = store
        self._fresh_us = fresh_us
        apart = store.replay_memory_apart
        self._arrivals = _Lane(self._commit_of, self._at_once if apart else None)
        self._records = _Lane(self._records_of) if apart else self._arrivals

    def remember(
        self, arrival: SignedArrival, forget_before_us: int, *, alone: bool = False
    ) -> asyncio.Future[Remembered]:
        """Record ``arrival`` in the next commit, forgetting rows seen before ``forget_before_us``;
        the future holds what the store said of it (or its error) once that commit is done.

        ``alone``: the caller has nothing else read and waiting to be recorded (a link's reader
        whose taker has taken everything before): where the memory is idle and its commit can be
        made without waiting (its own file, its lock free), it is made now, in the caller's turn,
        and the future is done on return. At 1,000 tracks/s, a frame a track, the commit waited
        two turns of the event loop for groups that mostly never came (0.45 ms at the median of a
        receiver's 1.8 ms, benchmarks/JOURNAL.md, bench_stream); frames read flat out are not alone
        (the taker is behind) and go in one commit together as before. The same transaction, the
        same order: nothing is taken before its commit has returned."""
        future: asyncio.Future[Remembered] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(arrival, forget_before_us, (), future)
        if not (alone and self._arrivals.now(waiter)):
            self._arrivals.wait(waiter)
        return future

    def record(self, rows: Sequence[AuditRow]) -> asyncio.Future[None]:
        """Append the audit records ``rows`` in the next commit; the future is done once it is."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._records.wait(_Waiter(None, _NOTHING_TO_FORGET, rows, future))
        return future

    def _commit_of(self, taken: list[_Waiter]) -> _Commit:
        """The commit of ``taken``: their arrivals recorded and their audit records appended."""
        arrivals = [w.arrival for w in taken if w.arrival is not None]
        forget = min((w.forget_before_us for w in taken if w.arrival), default=_NOTHING_TO_FORGET)
        rows = [row for w in taken for row in w.rows]
        store, fresh_us = self._store, self._fresh_us

        def commit() -> list[Remembered]:
            return _each(store.remember_signed_arrivals(arrivals, forget, rows, fresh_us=fresh_us), arrivals)

        return commit

    def _at_once(self, taken: list[_Waiter]) -> list[Remembered] | None:
        """The commit of ``taken`` made now, on the event loop, where it waits for nothing (the memory's
        own file, never synced, its lock free: ``Store.remember_signed_arrivals_at_once``); ``None``
        where it would (the lane's thread makes it). Its own work is what the thread's commit costs
        (~0.12 ms of CPU at one group); the hand-over to the thread and back, and the thread's wait
        for the interpreter's lock behind the loop, cost more than that at every commit
        (benchmarks/JOURNAL.md, bench_stream)."""
        if any(w.rows for w in taken):  # audit records go to the node's database: not here
            return None
        arrivals = [w.arrival for w in taken if w.arrival is not None]
        forget = min((w.forget_before_us for w in taken if w.arrival), default=_NOTHING_TO_FORGET)
        answers = self._store.remember_signed_arrivals_at_once(arrivals, forget, fresh_us=self._fresh_us)
        return None if answers is None else _each(answers, arrivals)

    def _records_of(self, taken: list[_Waiter]) -> _Commit:
        """The commit of audit records alone, to the node's database."""
        rows = [row for w in taken for row in w.rows]
        store = self._store

        def commit() -> list[Remembered]:
            store.append_audit(rows)
            return []

        return commit

    async def close(self) -> None:
        """Let the commits under way and waiting finish (their groups are recorded either way), then
        stop the memory's threads."""
        await self._arrivals.close()
        if self._records is not self._arrivals:
            await self._records.close()
