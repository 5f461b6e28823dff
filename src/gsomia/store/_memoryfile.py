"""A SQLite node's replay memory in a file of its own, one per boot of the machine, never synced.

The receiver records every verified group of signed tracks before any of them is shown
(``Store.remember_signed_arrivals``). In the node's database those commits wrote about 5,000 pages a
second to its write-ahead log at 1,000 tracks/s, so the log had to be checkpointed (two
``fdatasync``) every quarter of a second and started over (a backfill with two more, inside the write
lock) every ~2.4 s; a commit that met one waited on the disk, 10-800 ms on the benchmark machine, and
every track behind it: the stream's 1,000/s tail (benchmarks/JOURNAL.md, bench_stream).

What the memory must survive is a crash of a node's process, not of the machine: a process that
dies leaves its writes in the operating system's page cache, where the next process of the same
boot reads them (SQLite's ``synchronous=OFF`` keeps a database whole through a process crash; only an
operating-system crash or power loss can lose or tear what was not yet on the disk). So the memory
lives in ``<database>-replay.<boot id>`` (the kernel's ``/proc/sys/kernel/random/boot_id``), written
with ``synchronous=OFF``: no commit and no checkpoint ever waits on the disk. A file of another boot
is never read (it may be torn): it is deleted, and the new memory knows it started blind, so it
refuses as a replay every batch signed before its first commit (``since_us``; fail closed: a batch
that old cannot be shown to be new). The memory raises the same bound as it forgets what is past its
window (``Store.remember_signed_arrivals``), read in every commit, so that a clock set back does not
make a forgotten batch new again. The same holds when the node's database already held a memory
(a node upgraded to this file), and when the node's database names a memory file that is not this
one (``replay_memory`` in ``node_meta``: a random token each file keeps): the file was deleted,
truncated, replaced, or the database reached by another path. A fresh node with no memory before
starts with no such bound.

Where the boot cannot be known (no ``/proc``), the memory stays in the node's database as before.
Every process of the node on this machine opens the same file; SQLite's write lock (``BEGIN
IMMEDIATE``) orders them, so a leaf one process recorded is a replay at every other one.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateIndex, CreateTable, ExecutableDDLElement

from gsomia.errors import StoreError
from gsomia.store import _tables as t

__all__ = ["ReplayFile", "ReplayFileBusy", "boot_id"]

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
# the file's own random token, named in the node's database by the memory that holds every arrival
_IDENTITY = (
    "CREATE TABLE IF NOT EXISTS replay_memory_token "
    "(one INTEGER PRIMARY KEY CHECK (one = 1), token TEXT NOT NULL)"
)


def _schema() -> list[str]:
    """The memory's tables and indexes as the node's database defines them (``_tables``), made if
    missing (every process of the node may be the first to open the file)."""
    statements: list[ExecutableDDLElement] = []
    for table in (t.track_batches_seen, t.tracks_seen):
        statements.append(CreateTable(table, if_not_exists=True))
        statements += [CreateIndex(index, if_not_exists=True) for index in table.indexes]
    return [str(statement.compile(dialect=sqlite.dialect())).strip() for statement in statements]


_SCHEMA = _schema()


class ReplayFileBusy(Exception):
    """A transaction asked not to wait could not begin at once, and nothing was written: the file's
    write lock is held (another commit of this process's, or of another process of the node), or the
    file is not open yet (opening it reads and writes the node's database)."""


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
    ``held_before`` says whether the node's database holds rows of a memory kept there before;
    ``registered`` reads the token of the memory file the node's database names (``None``: none yet),
    ``register`` names this one there."""

    def __init__(
        self,
        database: str,
        boot: str,
        held_before: Callable[[], bool],
        registered: Callable[[], str | None],
        register: Callable[[str], None],
    ) -> None:
        self.path = f"{database}-replay.{boot}"
        self._database = database
        self._boot = boot
        self._held_before = held_before
        self._registered = registered
        self._register = register
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.since_us = _UNBOUNDED  # batches signed before it are refused (as of this process's last commit)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @contextmanager
    def transaction(self, now_us: int, *, wait: bool = True) -> Iterator[Any]:
        """A cursor in a transaction holding the file's write lock (``BEGIN IMMEDIATE``), committed
        after; any failure rolls back and is a ``StoreError`` (nothing written). With ``wait`` False
        it never waits for a lock: ``ReplayFileBusy`` at once (nothing written) where this process's
        lock or the file's write lock is held, or the file is not open yet; an event loop may make
        such a transaction itself (the file is never synced, so nothing else in it waits)."""
        if not self._lock.acquire(blocking=wait):
            raise ReplayFileBusy
        try:
            if self._conn is None and not wait:
                raise ReplayFileBusy  # the opening reads and writes the node's database: a thread's
            conn = self._conn if self._conn is not None else self._open(now_us)
            cursor = conn.cursor()
            if wait:
                cursor.execute("BEGIN IMMEDIATE")
            else:
                self._begin_at_once(cursor)
            try:
                yield cursor
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                cursor.close()
        except (sqlite3.Error, OSError) as exc:  # a file made unwritable, a symlink: fail closed
            _log.warning("replay memory failure: %s", exc)
            raise StoreError("the store failed; nothing was written") from exc
        finally:
            self._lock.release()

    def since(self, cursor: Any, raised: Callable[[int], int]) -> int:
        """Inside a :meth:`transaction`: the instant before which a batch's signature is too old for
        the memory to tell it (where it started blind, or as far as it forgot), as every process of
        the node left it, raised to ``raised`` of it and kept so where that is higher (never lowered:
        a clock set back does not bring forgotten rows back)."""
        (held,) = cursor.execute("SELECT since_us FROM replay_memory WHERE one = 1").fetchone()
        since = raised(held)
        if since > held:
            cursor.execute("UPDATE replay_memory SET since_us = ? WHERE one = 1", (since,))
        self.since_us = since
        return since

    @staticmethod
    def _begin_at_once(cursor: sqlite3.Cursor) -> None:
        """``BEGIN IMMEDIATE`` with SQLite's busy timeout at nothing for it: ``ReplayFileBusy`` where
        another process of the node holds the file's write lock."""
        cursor.execute("PRAGMA busy_timeout = 0")
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                raise ReplayFileBusy from None
            raise
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")

    def _open(self, now_us: int) -> sqlite3.Connection:
        """Open (or make) this boot's file, delete other boots' (never read: possibly torn), and learn
        since when the memory holds every arrival."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        os.close(fd)
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")  # a process crash loses nothing; see the module
            conn.execute(f"PRAGMA wal_autocheckpoint={_WAL_PAGES}")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(_META)
            conn.execute(_IDENTITY)
            # the first process of the boot says since when the memory holds every arrival, under the
            # file's write lock (another opening at once waits, then reads it): blind before its first
            # commit when a memory was lost (another boot's file, rows in the node's database, or a
            # file the node's database names that is not this one: deleted, truncated, replaced)
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT since_us FROM replay_memory WHERE one = 1").fetchone()
            kept = conn.execute("SELECT token FROM replay_memory_token WHERE one = 1").fetchone()
            registered = self._registered()
            token = kept[0] if kept is not None else secrets.token_hex(16)
            if kept is None:
                conn.execute("INSERT INTO replay_memory_token VALUES (1, ?)", (token,))
            if row is None:
                lost = registered is not None or bool(self._other_boots()) or self._held_before()
                row = (now_us if lost else _UNBOUNDED,)
                conn.execute("INSERT INTO replay_memory VALUES (1, ?, ?)", (self._boot, row[0]))
            elif registered is not None and registered != token and row[0] < now_us:
                row = (now_us,)  # not the memory the node's database names: it may lack arrivals
                conn.execute("UPDATE replay_memory SET since_us = ? WHERE one = 1", row)
            conn.commit()
            (self.since_us,) = row
            if registered != token:  # in the node's database, once this file's bound is recorded
                self._register(token)
        except BaseException:
            conn.close()
            raise
        # only once the bound is recorded (a process killed in between leaves them to the next)
        self._delete_other_boots()
        self._conn = conn
        return conn

    def _other_boots(self) -> list[str]:
        """The memory files of other boots (this one's, its log and lock files included, aside)."""
        return [
            name
            for name in glob.glob(f"{glob.escape(self._database)}-replay.*")
            if not name.startswith(self.path)
        ]

    def _delete_other_boots(self) -> None:
        """Delete the memory files of other boots: no process of theirs lives, and they are never read."""
        for name in self._other_boots():
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreError(f"cannot delete the replay memory {name} ({exc.strerror})") from exc
