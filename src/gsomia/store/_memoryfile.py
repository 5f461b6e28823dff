"""A SQLite node's replay memory in a file of its own, one per boot of the machine, never synced.

The receiver records every verified group of signed tracks before any of them is shown
(``Store.remember_signed_arrivals``). In the node's database those commits wrote about 5,000 pages a
second to its write-ahead log at 1,000 tracks/s, so the log had to be checkpointed (two
``fdatasync``) every quarter of a second and started over (a backfill with two more, inside the write
lock) every ~2.4 s; a commit that met one waited on the disk, 10-800 ms on the benchmark machine, and
every track behind it: the stream's 1,000/s tail (benchmarks/README.md, bench_stream).

What the memory must survive is a crash of a node's process, not of the machine: a process that
dies leaves its writes in the operating system's page cache, where the next process of the same
boot reads them (SQLite's ``synchronous=OFF`` keeps a database whole through a process crash; only an
operating-system crash or power loss can lose or tear what was not yet on the disk). So the memory
lives in ``<database>-replay.<boot id>`` (the kernel's ``/proc/sys/kernel/random/boot_id``), written
with ``synchronous=OFF``: no commit and no checkpoint ever waits on the disk. A file of another boot
is never read (it may be torn): it is deleted, and the new memory knows it started blind, so it
refuses as a replay every batch signed before its first commit (``since_us``; fail closed: a batch
that old cannot be shown to be new). The same holds when the node's database already held a memory
(a node upgraded to this file). A fresh node with no memory before starts with no such bound.

Where the boot cannot be known (no ``/proc``), the memory stays in the node's database as before.
Every process of the node on this machine opens the same file; SQLite's write lock (``BEGIN
IMMEDIATE``) orders them, so a leaf one process recorded is a replay at every other one.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from gsomia.errors import StoreError
from gsomia.store import _tables as t

__all__ = ["ReplayFile", "boot_id"]

_log = logging.getLogger(__name__)

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_BOOT_SHAPE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_WAL_PAGES = 256  # a checkpoint copies at most ~1 MB within the page cache (no sync): well under 1 ms
_BUSY_MS = 5_000  # another process's commit in front: as long as the store's own writers wait
_UNBOUNDED = -(2**63)

# the memory's own row: the boot it belongs to and the instant before which it may have missed arrivals
_META = (
    "CREATE TABLE IF NOT EXISTS replay_memory "
    "(one INTEGER PRIMARY KEY CHECK (one = 1), boot TEXT NOT NULL, since_us INTEGER NOT NULL)"
)


def boot_id() -> str | None:
    """This machine's boot (the kernel's random id, new at every boot), or ``None`` where unknown."""
    try:
        text = _BOOT_ID.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _BOOT_SHAPE.fullmatch(text) else None


class ReplayFile:
    """The replay memory's file for ``database`` (a SQLite file path) in the boot ``boot``: opened at
    the first commit, one connection for this process, its commits one at a time (``lock``).
    ``held_before`` says whether the node's database holds rows of a memory kept there before."""

    def __init__(self, database: str, boot: str, held_before: Callable[[], bool]) -> None:
        self.path = f"{database}-replay.{boot}"
        self._database = database
        self._boot = boot
        self._held_before = held_before
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.since_us = _UNBOUNDED  # batches signed before it are refused (known at the first commit)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @contextmanager
    def transaction(self, now_us: int) -> Iterator[Any]:
        """A cursor in a transaction holding the file's write lock (``BEGIN IMMEDIATE``), committed
        after; any failure rolls back and is a ``StoreError`` (nothing written)."""
        with self._lock:
            try:
                conn = self._conn if self._conn is not None else self._open(now_us)
                cursor = conn.cursor()
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield cursor
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
                finally:
                    cursor.close()
            except sqlite3.Error as exc:
                _log.warning("replay memory failure: %s", exc)
                raise StoreError("the store failed; nothing was written") from exc

    def _open(self, now_us: int) -> sqlite3.Connection:
        """Open (or make) this boot's file, delete other boots' (never read: possibly torn), and learn
        since when the memory holds every arrival."""
        lost = self._delete_other_boots()
        fresh = not os.path.exists(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        os.close(fd)
        if fresh or not self._has_tables():
            engine = create_engine(f"sqlite:///{self.path}", poolclass=NullPool)
            try:  # the tables as the node's database defines them (one definition, _tables)
                t.track_batches_seen.create(engine, checkfirst=True)
                t.tracks_seen.create(engine, checkfirst=True)
            finally:
                engine.dispose()
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")  # a process crash loses nothing; see the module
            conn.execute(f"PRAGMA wal_autocheckpoint={_WAL_PAGES}")
            conn.execute(_META)
            # blind before its first commit when a memory was lost (another boot's, or the database's)
            since = now_us if lost or self._held_before() else _UNBOUNDED
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR IGNORE INTO replay_memory VALUES (1, ?, ?)", (self._boot, since))
            (self.since_us,) = conn.execute("SELECT since_us FROM replay_memory WHERE one = 1").fetchone()
            conn.commit()
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _has_tables(self) -> bool:
        conn = sqlite3.connect(self.path, timeout=_BUSY_MS / 1000)
        try:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
        return {"track_batches_seen", "tracks_seen"} <= names

    def _delete_other_boots(self) -> bool:
        """Delete the memory files of other boots (no process of theirs lives); whether there was one."""
        lost = False
        for name in glob.glob(f"{glob.escape(self._database)}-replay.*"):
            if name == self.path or name in (f"{self.path}-wal", f"{self.path}-shm"):
                continue
            lost = True
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreError(
                    f"cannot delete another boot's replay memory {name} ({exc.strerror})"
                ) from exc
        return lost
