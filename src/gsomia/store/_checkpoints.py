"""A SQLite store's write-ahead log, checkpointed by a thread of its own, off the writers' path.

SQLite checkpoints a WAL database by itself in the commit that takes the log past
``wal_autocheckpoint`` pages (16,384 here, 64 MB): that commit syncs the log to the disk, copies
its pages into the database file and syncs that too, before it returns, with this process's write
lock held (``_WriterQueue``). The receiver's replay memory commits every verified group of tracks
before any of them is shown, about four pages a commit at 1,000 tracks/s, so a commit every few
seconds carried a checkpoint: two ``fdatasync`` calls over tens of MB, 0.1-0.8 s on the benchmark
machine, and every track behind it waited (benchmarks/JOURNAL.md, bench_stream).

Here a thread of the store's checkpoints first, every ``_TICK_S`` while pages are written (a
``PASSIVE`` checkpoint, which SQLite runs without holding up the writers: its syncs wait on the
disk, the writers go on). A passive checkpoint alone never lets the log start again from its
beginning while writes keep coming (what was written during it is never backfilled), so once the
log holds ``_RESTART_FRAMES`` pages, the thread backfills what its last pass left (what was written
during it) inside the write lock, and the next commit starts the log over: the writers wait for
that remainder, not for the log's tens of MB. SQLite's own checkpoint in the commit stays as the
backstop (a log this thread cannot keep short, a store whose thread is not running). The thread
runs only where it is asked for (``Store.checkpoint_aside``: the replay memory, on the tracks'
path, and the batches of items, ``Store.insert_item_parts``, whose commits of thousands of pages
each carried one of SQLite's checkpoints of 64 MB every few batches); a bulk load on the engine
alone (the benchmarks' ``bulk_write``) keeps SQLite's checkpoints, which copy a page written by
many batches once.

Durability is unchanged: the same checkpoints with the same syncs (``synchronous=NORMAL``), made
by another thread at other instants; a commit is in the log, and the log on the disk, as before.
"""

from __future__ import annotations

import logging
import threading
import weakref
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Engine

from gsomia.errors import StoreError

__all__ = ["Checkpointer"]

_log = logging.getLogger(__name__)

_TICK_S = 0.25  # a pass every so often (no sync when nothing was written since the last)
_RESTART_FRAMES = 12_288  # pages (48 MB) in the log: backfill the rest inside the lock, start it over
_REMAINDER_FRAMES = 256  # pages left by a pass that another pass without the lock need not shrink
_MORE_PASSES = 2


class Checkpointer:
    """The checkpoint thread of one SQLite store (file-backed). ``writers`` is the store's write
    lock for this process; the thread ends with :meth:`stop` or when ``owner`` is collected."""

    def __init__(self, engine: Engine, writers: AbstractContextManager[None], owner: object) -> None:
        self._engine = engine
        self._writers = writers
        self._stopped = threading.Event()
        weakref.finalize(owner, self._stopped.set)
        self._thread = threading.Thread(target=self._run, name="gsomia-checkpoints", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(_TICK_S):
            try:
                self.step()
            except Exception:  # a store closed or failing: SQLite's own checkpoints remain
                _log.debug("checkpoint thread stopped", exc_info=True)
                return

    def step(self) -> tuple[int, int]:
        """One round: passes without the lock (a second and a third while the one before left much),
        then, when the log is long, what they left inside the write lock; (pages in the log, pages
        backfilled) after it."""
        log, done = self._checkpoint()  # the writers go on meanwhile
        for _ in range(_MORE_PASSES):
            if log < _RESTART_FRAMES or log - done <= _REMAINDER_FRAMES:
                break
            log, done = self._checkpoint()
        if log >= _RESTART_FRAMES:
            # past SQLite's own threshold every commit would checkpoint (and sync) until the log
            # starts over, which only a checkpoint with no writer beside it lets it do
            try:
                with self._writers:  # no writer of this process between: all backfilled, the log restarts
                    log, done = self._checkpoint()
            except StoreError:  # a writer held the lock too long: the next round tries again
                pass
        return log, done

    def _checkpoint(self) -> tuple[int, int]:
        """A ``PASSIVE`` checkpoint (never waits for a writer or a reader): (pages in the log,
        pages backfilled)."""
        with self._engine.connect() as conn:
            dbapi: Any = conn.connection.dbapi_connection
            _busy, log, done = dbapi.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(log), int(done)
