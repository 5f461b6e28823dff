"""PostgreSQL's push for the generation counters: ``pg_notify`` when one moves, ``LISTEN`` for it.

A transaction that moves a generation counter (:func:`gsomia.store._store.bump`, the key ring's
compare-and-set) also calls :func:`announce`: ``pg_notify`` on the node's channel with the
counter's name. PostgreSQL sends a notification only when the transaction commits (never for one
rolled back), so a process told of a change reads the counters and finds it there.

Each serving process keeps one :class:`ChangeListener`: a thread with its own connection that
``LISTEN``s on the channel and calls ``on_change(name)`` the moment a notification arrives, and
``on_change(None)`` ("anything may have changed") whenever it (re)connects, since notifications
sent while it was not listening are lost. A notification is a hint, never the truth: the receiver
reads the counters from the store, so a forged or garbled one costs at most one small read, and
one whose payload is not a counter's name is dropped. Polling the counters stays the floor
(:class:`gsomia.kernel.ChangeWatch`): a listener that died or hangs leaves nothing stale for
longer than the polling interval.

The channel is per schema (several nodes may share one database, each in its own schema), so a
node hears only its own changes. SQLite is one process and has no notifications.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, func, select

__all__ = ["ChangeListener", "announce", "channel_for"]

_log = logging.getLogger("gsomia.store.notify")

_PREFIX = "gsomia.generations."
_MAX_CHANNEL = 63  # PostgreSQL's identifiers (and channel names) hold at most 63 bytes
_CHANNEL = "gsomia.channel"  # a connection's channel, kept in its info once read
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")  # what a generation counter's name looks like


def channel_for(schema: str) -> str:
    """The notification channel of the node whose tables are in ``schema``.

    >>> channel_for("public")
    'gsomia.generations.public'
    >>> len(channel_for("s" * 63)) <= 63
    True
    """
    channel = _PREFIX + schema
    if len(channel.encode()) <= _MAX_CHANNEL:
        return channel
    return _PREFIX + hashlib.sha256(schema.encode()).hexdigest()[: _MAX_CHANNEL - len(_PREFIX)]


def _channel(conn: Connection) -> str:
    """The channel of the schema ``conn`` works in (read once per database connection)."""
    cached = conn.info.get(_CHANNEL)
    if cached is None:
        schema = conn.execute(select(func.current_schema())).scalar_one_or_none()
        cached = conn.info[_CHANNEL] = channel_for(schema or "")
    return str(cached)


def announce(conn: Connection, name: str) -> None:
    """Tell every process of the node, when ``conn``'s transaction commits, that generation
    ``name`` moved (PostgreSQL only; SQLite is one process and has no one to tell)."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(select(func.pg_notify(_channel(conn), name)))


def generation_named(payload: str) -> str | None:
    """The counter a notification names, or ``None`` for a payload that names none.

    >>> generation_named("keys"), generation_named("keys; DROP TABLE"), generation_named("")
    ('keys', None, None)
    """
    return payload if _NAME.fullmatch(payload) else None


class ChangeListener:
    """A thread listening on the node's channel; ``on_change(name)`` per notification,
    ``on_change(None)`` on every (re)connection. :meth:`stop` ends it.

    ``retry`` is the pause before connecting again after the connection failed or dropped;
    ``wake`` how often the thread looks up from waiting to see whether it should stop.
    """

    def __init__(
        self,
        engine: Engine,
        on_change: Callable[[str | None], None],
        *,
        retry: float = 0.5,
        wake: float = 0.5,
    ) -> None:
        if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
            raise ValueError("a change listener needs PostgreSQL through psycopg (postgresql+psycopg://)")
        self._engine = engine
        self._on_change = on_change
        self._retry = retry
        self._wake = wake
        self._stopping = threading.Event()
        self.connected = threading.Event()  # set while LISTEN is in force (after telling of it)
        self.backend_pid: int | None = None  # the listening connection's server process, while connected
        self.ignored = 0  # notifications on the channel whose payload named no counter
        self._thread = threading.Thread(target=self._run, name="gsomia-change-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening; returns once the thread ended (or ``timeout`` passed)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _connect(self) -> Any:
        import psycopg  # the PostgreSQL extra's driver: imported only where PostgreSQL is used
        from psycopg import sql

        args, params = self._engine.dialect.create_connect_args(self._engine.url)
        # keepalives: a server gone without a word is noticed (and polling covers the meantime)
        conn = psycopg.connect(*args, **{**_KEEPALIVES, **params, "autocommit": True})
        try:
            schema = conn.execute("SELECT current_schema()").fetchone()
            channel = channel_for((schema[0] if schema else None) or "")
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                conn = self._connect()
            except Exception as exc:  # the database is away: polling meanwhile, try again soon
                _log.warning("cannot listen for changes (%s); polling meanwhile", type(exc).__name__)
                self._stopping.wait(self._retry)
                continue
            try:
                self._listen(conn)
            except Exception as exc:  # the connection dropped: anything may have changed since
                if not self._stopping.is_set():
                    _log.warning("the change listener's connection dropped (%s)", type(exc).__name__)
            finally:
                self.connected.clear()
                self.backend_pid = None
                conn.close()
            self._told(None)
            self._stopping.wait(self._retry)

    def _listen(self, conn: Any) -> None:
        self.backend_pid = int(conn.info.backend_pid)
        self._told(None)  # what was committed before LISTEN took effect was heard by no one here
        self.connected.set()
        while not self._stopping.is_set():
            for note in conn.notifies(timeout=self._wake):
                name = generation_named(note.payload)
                if name is None:  # not ours to act on (a hint is never the truth anyway)
                    self.ignored += 1
                    _log.info("ignored a notification naming no counter (%d characters)", len(note.payload))
                    continue
                self._told(name)

    def _told(self, name: str | None) -> None:
        try:
            self._on_change(name)
        except Exception:  # a failing receiver must not end the listening: it is logged
            _log.exception("a change listener's receiver failed")
