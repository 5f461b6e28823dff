"""Adversarial probes of the replay memory's own commit thread (7a70241, attack review of issue 18):
no group is answered before the commit that records it returns; a commit that fails fails every
group of it (none is taken as new) and the memory goes on with the next; each group's answer is
its own, in order, with audit records interleaved; close waits for what is under way. With the
memory in a file of its own, a commit that waits for nothing is made on the event loop, and one
that would wait is the thread's, the loop turning meanwhile."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from gsomia.errors import StoreError
from gsomia.store import AuditRow, Remembered, SignedArrival
from gsomia.stream._memory import ReplayMemory


class _Store:
    """The calls the memory makes: its commit, held until let go, failing when told; and the
    request to checkpoint aside, made once."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.fail: BaseException | None = None
        self.commits: list[tuple[list[str], int]] = []
        self.short = False  # answer one group fewer than given
        self.aside = False
        self.replay_memory_apart = False  # the audit records in the memory's commits (one writer)
        self.busy = True  # a commit at once (the event loop's) would wait: the thread makes it
        self.made_at_once: list[tuple[list[str], int]] = []

    def remember_signed_arrivals_at_once(
        self, arrivals: Sequence[SignedArrival], forget_before_us: int, *, fresh_us: int = 0
    ) -> list[Remembered] | None:
        if self.busy:
            return None
        self.made_at_once.append(([a.batch for a in arrivals], threading.get_ident()))
        if self.fail is not None:
            raise self.fail
        answers = [Remembered([int(a.batch[-1])], set()) for a in arrivals]
        return answers[1:] if self.short else answers

    def checkpoint_aside(self) -> None:
        self.aside = True

    def remember_signed_arrivals(
        self,
        arrivals: Sequence[SignedArrival],
        forget_before_us: int,
        rows: Sequence[AuditRow],
        *,
        fresh_us: int = 0,
    ) -> list[Remembered]:
        assert self.go.wait(10)
        self.commits.append(([a.batch for a in arrivals], len(rows)))
        if self.fail is not None:
            raise self.fail
        answers = [Remembered([int(a.batch[-1])], set()) for a in arrivals]
        return answers[1:] if self.short else answers


def _arrival(n: int) -> SignedArrival:
    return SignedArrival(f"batch-{n}", "KOR", (n,), (), 0, 0)


def _row(n: int) -> AuditRow:
    return AuditRow(0, "stream.received", None, f"s-{n}", "allowed", "{}")


def _memory_apart() -> tuple[_Store, ReplayMemory]:
    """A memory in a file of its own (its commits carry no audit record; those go to the store's
    ``append_audit``, which takes them) over a store whose commit at once waits for nothing."""
    store = _Store()
    store.replay_memory_apart = True
    store.busy = False
    store.append_audit = lambda _rows: None  # type: ignore[attr-defined]
    return store, ReplayMemory(store)  # type: ignore[arg-type]


async def _each_fails(
    memory: ReplayMemory, numbers: Sequence[int], error: type[Exception], match: str
) -> None:
    """The groups ``numbers``, handed over in one turn: each fails with ``error``, none taken as new."""
    for future in [memory.remember(_arrival(n), 0) for n in numbers]:
        with pytest.raises(error, match=match):
            await future


def test_no_group_is_answered_before_its_commit_and_a_failed_commit_fails_each_of_its_groups() -> None:
    store = _Store()
    memory = ReplayMemory(store)  # type: ignore[arg-type]

    async def run() -> None:
        first = [memory.remember(_arrival(n), 0) for n in (1, 2)]
        audited = memory.record([_row(1)])
        third = memory.remember(_arrival(3), 0)
        await asyncio.sleep(0.05)  # the commit is under way in the memory's thread, held
        assert not any(f.done() for f in [*first, audited, third])
        store.go.set()
        answers = await asyncio.gather(*first, audited, third)
        assert [a.replayed if a else a for a in answers] == [[1], [2], None, [3]]  # each its own
        assert store.commits == [(["batch-1", "batch-2", "batch-3"], 1)]  # one commit, in order
        store.fail = RuntimeError("database is gone")
        await _each_fails(memory, (4, 5), RuntimeError, "gone")
        store.fail = None
        assert (await memory.remember(_arrival(6), 0)).replayed == [6]  # and the memory goes on
        store.go.clear()
        pending = memory.remember(_arrival(7), 0)
        closing = asyncio.ensure_future(memory.close())
        await asyncio.sleep(0.05)
        assert not closing.done()  # close waits for the commit under way
        store.go.set()
        await closing
        assert (await pending).replayed == [7]

    asyncio.run(run())


def test_a_group_whose_caller_left_is_recorded_and_the_others_keep_their_own_answers() -> None:
    store = _Store()
    memory = ReplayMemory(store)  # type: ignore[arg-type]

    async def run() -> list[Any]:
        futures = [memory.remember(_arrival(n), 0) for n in (1, 2, 3)]
        futures[1].cancel()  # its link ended meanwhile
        store.go.set()
        done = [await futures[0], await futures[2]]
        await memory.close()
        return done

    first, third = asyncio.run(run())
    assert (first.replayed, third.replayed) == ([1], [3])
    assert store.commits == [(["batch-1", "batch-2", "batch-3"], 0)]


def test_a_commit_answering_fewer_groups_than_it_was_given_fails_each_of_them() -> None:
    """Each group is told what the store said of it, or fails: a store that answered one group fewer
    than it was given (no answer can then be matched to its group) fails every waiter of that
    commit with a StoreError naming the count, where before the last waiter was given ``None``; the
    audit records' waiter fails with them, and the memory goes on with the next commit."""
    store = _Store()
    store.go.set()
    store.short = True
    memory = ReplayMemory(store)  # type: ignore[arg-type]

    async def run() -> None:
        given = [memory.remember(_arrival(n), 0) for n in (1, 2)]
        audited = memory.record([_row(1)])
        outcomes = await asyncio.gather(*given, audited, return_exceptions=True)
        assert all(isinstance(o, StoreError) for o in outcomes), outcomes
        assert "answered 1 of 2 groups" in str(outcomes[0])
        store.short = False
        assert (await memory.remember(_arrival(3), 0)).replayed == [3]
        await memory.close()

    asyncio.run(run())


def test_a_store_that_cannot_checkpoint_aside_fails_the_memory_at_once_and_leaves_no_group_waiting() -> None:
    """Checkpointing aside is asked when the memory is made: a store that fails it fails the
    memory's maker. Asked in the event loop's turn that hands over the first commit (04df96c), the
    error went to the loop's handler, the memory stayed "committing", and every group waited for
    ever: this module's first test hung on a store without the call."""

    class _NoAside(_Store):
        def checkpoint_aside(self) -> None:
            raise StoreError("no checkpoints here")

    with pytest.raises(StoreError, match="no checkpoints"):
        ReplayMemory(_NoAside())  # type: ignore[arg-type]
    store = _Store()
    ReplayMemory(store)  # type: ignore[arg-type]
    assert store.aside


def test_with_the_memory_in_a_file_of_its_own_no_group_waits_for_an_audit_record() -> None:
    """Where the memory has its own file (``Store.replay_memory_apart``) the audit records go to the
    database in commits of their own: a group is answered while an audit commit is held, the records
    are written by ``append_audit``, none in the memory's commits, and close waits for both."""
    store = _Store()
    store.go.set()
    store.replay_memory_apart = True
    audit_go = threading.Event()
    appended: list[int] = []

    def append_audit(rows: Sequence[AuditRow]) -> None:
        assert audit_go.wait(10)
        appended.append(len(rows))

    store.append_audit = append_audit  # type: ignore[attr-defined]
    memory = ReplayMemory(store)  # type: ignore[arg-type]

    async def run() -> None:
        audited = memory.record([_row(1), _row(2)])
        answer = await asyncio.wait_for(memory.remember(_arrival(1), 0), 5)  # the audit commit held
        assert answer.replayed == [1]
        assert not audited.done()
        assert store.commits == [(["batch-1"], 0)]  # no audit record in the memory's commit
        closing = asyncio.ensure_future(memory.close())
        await asyncio.sleep(0.05)
        assert not closing.done()  # close waits for the audit commit under way
        audit_go.set()
        await closing
        assert await audited is None
        assert appended == [2]

    asyncio.run(run())


def test_a_commit_that_waits_for_nothing_is_made_on_the_loop_and_one_that_would_is_the_threads() -> None:
    """The memory in a file of its own: the groups handed over in one turn go in one commit made on
    the event loop's own thread at the end of that turn, each answered its own, none before it; a
    commit the store says would wait (another process of the node holds the file) goes to the
    memory's thread, which may wait, while the loop keeps turning; a commit at once that fails fails
    each of its groups (none taken as new), as does one answering fewer groups than given, and the
    memory goes on with the next."""
    store, memory = _memory_apart()

    async def run() -> None:
        loop_thread = threading.get_ident()
        given = [memory.remember(_arrival(n), 0) for n in (1, 2)]
        assert not any(f.done() for f in given)  # not before the end of the turn
        assert [a.replayed for a in await asyncio.gather(*given)] == [[1], [2]]
        assert store.made_at_once == [(["batch-1", "batch-2"], loop_thread)]
        assert store.commits == []  # no commit of the thread's

        store.busy = True  # another process of the node is committing: the thread waits for it
        waiting = memory.remember(_arrival(3), 0)
        turns = 0
        for _ in range(5):
            await asyncio.sleep(0.01)
            turns += 1
        assert turns == 5
        assert not waiting.done()  # held in the thread (``go`` not set), the loop free meanwhile
        store.go.set()
        assert (await waiting).replayed == [3]
        assert store.commits == [(["batch-3"], 0)]

        store.busy = False
        store.fail = StoreError("the memory file is gone")
        await _each_fails(memory, (4, 5), StoreError, "gone")
        store.fail = None
        store.short = True
        await _each_fails(memory, (6, 7), StoreError, "answered 1 of 2 groups")
        store.short = False
        assert (await memory.remember(_arrival(8), 0)).replayed == [8]  # and the memory goes on
        assert [batches for batches, _ in store.made_at_once][-1] == ["batch-8"]
        await memory.close()

    asyncio.run(run())


def test_a_group_alone_is_committed_in_its_callers_turn_and_never_ahead_of_one_handed_before() -> None:
    """A link's reader that waited for its frame, with nothing read and not yet taken before it, hands
    its group over ``alone``: where the memory is idle and the commit waits for nothing, it is made
    there and then (the future done on return: no turn of the loop between the verification and
    the taking). Where a group handed over before is still waiting, or the commit would wait, or the
    store fails, it goes as any other: after the groups before it, in the same order, each its own
    answer, a failure failing it."""
    store, memory = _memory_apart()

    async def run() -> None:
        loop_thread = threading.get_ident()
        alone = memory.remember(_arrival(1), 0, alone=True)
        assert alone.done()  # made in this turn, on the loop
        assert alone.result().replayed == [1]
        assert store.made_at_once == [(["batch-1"], loop_thread)]

        before = memory.remember(_arrival(2), 0)  # waits for the end of the turn
        behind = memory.remember(_arrival(3), 0, alone=True)
        assert not behind.done()  # never ahead of the group handed over before it
        assert [a.replayed for a in await asyncio.gather(before, behind)] == [[2], [3]]
        assert store.made_at_once[-1] == (["batch-2", "batch-3"], loop_thread)  # one commit, in order

        store.busy = True  # the commit would wait (another process's): the thread makes it
        held = memory.remember(_arrival(4), 0, alone=True)
        await asyncio.sleep(0.02)
        assert not held.done()
        store.go.set()
        assert (await held).replayed == [4]
        assert store.commits == [(["batch-4"], 0)]

        store.busy = False
        store.fail = StoreError("the memory file is gone")
        failed = memory.remember(_arrival(5), 0, alone=True)
        with pytest.raises(StoreError, match="gone"):
            await failed
        store.fail = None
        assert (await memory.remember(_arrival(6), 0, alone=True)).replayed == [6]  # and it goes on
        await memory.close()

    asyncio.run(run())
