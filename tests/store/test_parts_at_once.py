"""Attack on 033eaff: more batches written in parts at once than the store has writer threads.

Each batch's parts are written by a shared pool of writer threads, one part of a batch at a time, in
the batch's one transaction; the first part's write takes the ``item_clock`` row's lock (the added
instants are given in commit order) until the batch commits. The pool had 20 threads where a
process holds up to 40 connections, so up to 40 batches at once: with 21 or more on PostgreSQL, the
batch holding the lock handed its next part to the pool while every thread was taken by another
batch's first part waiting for that lock. Neither could go on (PostgreSQL sees no deadlock: one side
waits in Python); only a lock timeout ended it, and the batches that timed out were refused. Here
every batch commits: the pool has a thread for each transaction the store's connections can hold.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from tests.conftest import postgres_schema
from tests.store.test_store import _part

from gsomia.store import ItemPart, Store

_BATCHES = 24  # more than the 20 threads the writer pool had
_LOCK_TIMEOUT_MS = 20_000  # a lock waited for longer than this fails the batch rather than hang the test


def test_more_batches_at_once_than_writer_threads_all_commit(postgres_status: str | None) -> None:
    with postgres_schema(postgres_status) as url:
        store = Store(f"{url}%20-clock_timeout%3D{_LOCK_TIMEOUT_MS}")
        try:
            store.migrate()
            start = threading.Barrier(_BATCHES)
            errors: list[BaseException] = []

            def parts(k: int) -> Iterator[ItemPart]:
                yield _part(1000 * k + 1, 20)
                time.sleep(0.05)  # the next part is made while the first is written (and holds the lock)
                yield _part(1000 * k + 21, 20)

            def batch(k: int) -> None:
                try:
                    start.wait(timeout=30)
                    store.insert_item_parts(parts(k))
                except BaseException as exc:  # reported below, in the test's thread
                    errors.append(exc)

            threads = [threading.Thread(target=batch, args=(k,)) for k in range(1, _BATCHES + 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            assert not any(thread.is_alive() for thread in threads), "a batch still waits"
            assert errors == []
            assert store.count_items() == _BATCHES * 40
        finally:
            store.close()
