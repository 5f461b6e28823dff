"""SQLite: one process's writers queue in front of the database's write lock (``_WriterQueue``),
which stays the one that orders them. The adversary's case: the same signed batch's leaf recorded by
several threads at once (a replay racing its original through two links of one process): exactly
one is told it is new, the others that it is a replay, whichever thread wins."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from gsomia.errors import StoreError
from gsomia.store import Remembered, SignedArrival
from gsomia.store._store import _WriterQueue
from gsomia.testing import make_node


def test_a_leaf_recorded_by_several_threads_at_once_is_new_to_one_only(tmp_path: Path) -> None:
    node = make_node(tmp_path / "jpn", "JPN")
    try:
        store = node.store
        now = 10**15
        batch = hashlib.sha256(b"one batch").hexdigest()
        track = hashlib.sha256(b"one update").hexdigest()
        answers: list[Remembered] = []
        start = threading.Barrier(8)

        def remember() -> None:
            start.wait()
            # the background's writes in between (audit records), through the same queue
            node.kernel.record("test.write", None, None, "allowed")
            (answer,) = store.remember_signed_arrivals(
                [SignedArrival(batch, "KOR", (0,), (track,), now, now)], 0
            )
            answers.append(answer)

        threads = [threading.Thread(target=remember) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(answers) == 8
        assert sum(not a.replayed for a in answers) == 1  # new to one thread
        assert all(a.replayed == [0] for a in answers if a.replayed)  # a replay to the seven others
        assert len(store.audit(kind="test.write", limit=20)) == 8
    finally:
        node.close()


def test_a_writer_held_up_past_the_wait_fails_and_writes_nothing(tmp_path: Path) -> None:
    """As when SQLite said the database was locked: a writer that waited its time out fails closed."""
    node = make_node(tmp_path / "jpn", "JPN")
    try:
        store = node.store
        store._writers = _WriterQueue(wait_s=0.1)
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with store._writers:
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(10)
        before = len(store.audit(kind="test.write", limit=20))
        with pytest.raises(StoreError, match="busy"):
            node.kernel.record("test.write", None, None, "allowed")
        release.set()
        holder.join(10)
        assert len(store.audit(kind="test.write", limit=20)) == before
        node.kernel.record("test.write", None, None, "allowed")  # the queue free again
        assert len(store.audit(kind="test.write", limit=20)) == before + 1
    finally:
        node.close()
