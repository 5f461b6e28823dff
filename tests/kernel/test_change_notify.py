"""On PostgreSQL a change committed by one process of a node reaches every other process's caches
at once, by ``NOTIFY``: the watches here poll once an hour, so only the notification can tell
them. A notification is a hint: garbage and other channels are ignored, and a dropped listening
connection leaves nothing stale (it reads everything again when it is back; polling meanwhile)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy
from tests.conftest import POSTGRES_URL, postgres_schema

from gsomia.api import create_app
from gsomia.kernel import DEFAULT_INTERVAL, LISTENING_INTERVAL, ChangeWatch, StoreKeyRing
from gsomia.kernel._peers import PeerDirectory
from gsomia.node import Node, load_config
from gsomia.store import ChangeListener, FederationStore, SharedState
from gsomia.store._notify import channel_for
from gsomia.testing import FakeClock, make_node

SECOND = 1.0  # the promise: a change in the store is in force in every process within this
HOUR = 3600.0  # a watch polling this seldom learns of a change only by being told
GSOMIA = "kor-jpn-gsomia-2016"


@dataclass
class Listening:
    """KOR on PostgreSQL, JPN registered as its peer, and caches over a watch told by NOTIFY."""

    kor: Node
    directory: Path
    watch: ChangeWatch
    ring: StoreKeyRing
    peers: PeerDirectory
    jpn_kid: str


def _cli(*args: str) -> None:
    """An operator's command, in its own process: the other process of the node."""
    done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "gsomia", *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr


def _within(seconds: float, seen: Callable[[], bool]) -> bool:
    """Whether ``seen()`` holds within ``seconds`` (asked every 10 ms)."""
    deadline = time.monotonic() + seconds
    while True:
        if seen():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _signing_kid(ring: StoreKeyRing) -> str:
    return ring.signing_key(datetime.now(UTC))[0]


def _revoked(peers: PeerDirectory, kid: str) -> bool:
    identity = peers.peer("JPN")
    assert identity is not None
    return next(k for k in identity.keys if k.kid == kid).revoked_at is not None


@pytest.fixture
def listening(tmp_path: Path, postgres_status: str | None) -> Iterator[Listening]:
    with postgres_schema(postgres_status) as url:
        kor = make_node(tmp_path / "kor", "KOR", database_url=url)
        jpn = make_node(tmp_path / "jpn", "JPN")
        watch = ChangeWatch(SharedState(kor.store), interval=HOUR)
        try:
            kor.exchange.register_peer(None, jpn.exchange.identity(), [GSOMIA])
            assert watch.listen()
            assert watch.listener is not None
            assert watch.listener.connected.wait(30)
            ring = StoreKeyRing.open(kor.store, kor.cipher, watch, party="KOR", at=kor.clock())
            peers = PeerDirectory(FederationStore(kor.store), watch)
            jpn_kid = jpn.ring.signing_key(jpn.clock())[0]
            assert not _revoked(peers, jpn_kid)
            yield Listening(kor, tmp_path / "kor", watch, ring, peers, jpn_kid)
        finally:
            watch.close()
            jpn.close()
            kor.close()


def test_a_rotation_in_another_process_is_used_here_within_a_second(listening: Listening) -> None:
    before = _signing_kid(listening.ring)
    _cli("node", "rotate-keys", "--dir", str(listening.directory))
    assert _within(SECOND, lambda: _signing_kid(listening.ring) != before)


def test_a_peer_key_revoked_in_another_process_is_refused_here_within_a_second(listening: Listening) -> None:
    _cli(
        "peer", "revoke-key", "--dir", str(listening.directory), "--party", "JPN", "--kid", listening.jpn_kid
    )
    assert _within(SECOND, lambda: _revoked(listening.peers, listening.jpn_kid))


def _notify(channel: str, payload: str) -> None:
    """A notification sent by anyone who can connect to the database."""
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.select(sqlalchemy.func.pg_notify(channel, payload)))
    finally:
        admin.dispose()


def _channel(node: Node) -> str:
    """The node's notification channel (its schema's)."""
    with node.store.engine.connect() as conn:
        return channel_for(conn.execute(sqlalchemy.text("SELECT current_schema()")).scalar_one())


def test_garbage_and_other_channels_are_ignored_and_the_listener_goes_on(listening: Listening) -> None:
    """Payloads that name no counter are dropped; another node's channel is not heard at all."""
    told: list[str | None] = []
    listener = ChangeListener(listening.kor.store.engine, told.append)
    listener.start()
    try:
        assert listener.connected.wait(30)
        channel = _channel(listening.kor)
        for payload in ("keys; DROP TABLE generations", "", "Keys", "k" * 7000, "peers\n", "ü"):
            _notify(channel, payload)
        _notify(channel_for("another_node"), "keys")  # another node's change in the same database
        _notify("gsomia.generations", "keys")
        _notify(channel, "marker")  # the known marker, after everything else
        assert _within(10, lambda: "marker" in told)
        assert told == [None, "marker"]  # the connection's "read everything", then the marker only
        assert listener.ignored == 6
        assert listener.connected.is_set()
    finally:
        listener.stop()


def test_a_forged_notification_changes_no_cache(listening: Listening) -> None:
    """A notification naming a counter that did not move makes the watch read the counters, and
    the caches keep what they hold: the truth is the counters, never the notification."""
    watch = listening.watch
    before, reads = _signing_kid(listening.ring), watch.reads
    _notify(_channel(listening.kor), "keys")

    def read_again() -> bool:
        watch.generation("keys")
        return watch.reads > reads

    assert _within(10, read_again)
    assert _signing_kid(listening.ring) == before
    assert not _revoked(listening.peers, listening.jpn_kid)


def _terminate(pid: int) -> None:
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.select(sqlalchemy.func.pg_terminate_backend(pid)))
    finally:
        admin.dispose()


def test_a_change_while_the_listener_is_down_is_read_when_it_is_back(listening: Listening) -> None:
    """Polling is off (once an hour): a change committed while the listening connection was down
    reached no one, and is read because the listener marks everything stale on reconnecting."""
    told: list[str | None] = []
    slow = ChangeWatch(SharedState(listening.kor.store), interval=HOUR)

    def stale(name: str | None) -> None:
        told.append(name)
        slow.stale()

    listener = ChangeListener(listening.kor.store.engine, stale, retry=1.0)
    listener.start()
    try:
        assert listener.connected.wait(30)
        ring = StoreKeyRing.open(
            listening.kor.store, listening.kor.cipher, slow, party="KOR", at=datetime.now(UTC)
        )
        before, first = _signing_kid(ring), listener.backend_pid
        assert first is not None
        _terminate(first)
        assert _within(10, lambda: not listener.connected.is_set())
        listening.kor.ring.rotate(datetime.now(UTC), listening.kor.config.envelope_lifetime)
        assert _within(10, lambda: listener.connected.is_set() and listener.backend_pid != first)
        assert _within(SECOND, lambda: _signing_kid(ring) != before)
        assert told.count(None) >= 2  # read everything at the first connection and at the second
    finally:
        listener.stop()


def test_with_the_listener_dropped_polling_still_brings_a_change_within_a_second(
    listening: Listening,
) -> None:
    """The default watch (polling every 250 ms) while its listener is down."""
    watch = ChangeWatch(SharedState(listening.kor.store))
    told: list[str | None] = []
    listener = ChangeListener(listening.kor.store.engine, told.append, retry=HOUR)  # never back
    listener.start()
    try:
        assert listener.connected.wait(30)
        ring = StoreKeyRing.open(
            listening.kor.store, listening.kor.cipher, watch, party="KOR", at=datetime.now(UTC)
        )
        before, pid = _signing_kid(ring), listener.backend_pid
        assert pid is not None
        _terminate(pid)
        assert _within(10, lambda: not listener.connected.is_set())
        listening.kor.ring.rotate(datetime.now(UTC), listening.kor.config.envelope_lifetime)
        assert _within(SECOND, lambda: _signing_kid(ring) != before)
        assert not listener.connected.is_set()  # it was polling, not the listener, that told it
    finally:
        listener.stop()


def test_a_serving_app_listens_while_it_runs(listening: Listening) -> None:
    """The app listens from start to end, and its metrics say whether it is listening now."""
    node = listening.kor
    admin = {"id": "admin", "name": "Admin", "nationality": "KOR", "roles": ["administrator"]}
    node.people.add_person(None, admin)
    token = node.credentials.issue(None, "admin")[1]
    app = create_app(node, sender=False)
    assert node.kernel.watch.listener is None
    held: list[ChangeListener] = []

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
                assert (await client.get("/healthz")).status_code == 200
                listener = node.kernel.watch.listener
                assert listener is not None
                assert listener.connected.wait(30)
                held.append(listener)
                scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
                assert scraped.status_code == 200
                assert "gsomia_change_listener_connected 1.0" in scraped.text.splitlines()
                assert "gsomia_change_poll_interval_seconds 5.0" in scraped.text.splitlines()
                _terminate(listener.backend_pid or 0)
                assert _within(10, lambda: not listener.connected.is_set())
                scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
                assert "gsomia_change_listener_connected 0.0" in scraped.text.splitlines()
                assert "gsomia_change_poll_interval_seconds 0.25" in scraped.text.splitlines()
                assert any(
                    line.startswith("gsomia_change_reads_total ") for line in scraped.text.splitlines()
                )

    asyncio.run(serve())
    assert held[0].connected.wait(0) is False  # stopped with the app
    assert node.kernel.watch.listener is None


def test_sqlite_has_no_listener(tmp_path: Path) -> None:
    """One process: nothing to be told, polling as before."""
    node = make_node(tmp_path / "kor", "KOR")
    try:
        assert node.kernel.watch.listen() is False
        assert node.kernel.watch.listener is None
    finally:
        node.close()


class _Counters:
    """The store's counters; ``during`` runs while they are read, after the snapshot is taken."""

    def __init__(self) -> None:
        self.values = {"keys": 1}
        self.during: Callable[[], None] | None = None

    def generations(self) -> dict[str, int]:
        snapshot = dict(self.values)
        if self.during is not None:
            self.during()
            self.during = None
        return snapshot


def test_a_change_told_while_the_counters_are_read_is_read_at_the_next_use() -> None:
    """The notification of a commit the read did not see must not be swallowed by that read."""
    counters = _Counters()
    watch = ChangeWatch(counters, interval=HOUR)  # type: ignore[arg-type]  # the counters' one method
    assert watch.generation("keys") == 1

    def committed() -> None:  # another process commits; its notification arrives mid-read
        counters.values["keys"] = 2
        watch.stale()

    counters.during = committed
    watch.stale()  # an earlier change told: the next use reads, and the commit lands meanwhile
    assert watch.generation("keys") == 1  # the snapshot from before the commit
    assert watch.generation("keys") == 2  # read again at once, not an hour later


def test_a_failing_receiver_neither_ends_the_listener_nor_drops_its_connection(listening: Listening) -> None:
    """The receiver raises on a notification: the thread logs it and goes on listening on the same
    connection (no reconnection, which would lose what is sent meanwhile), and hears the marker."""
    told: list[str | None] = []

    def receiver(name: str | None) -> None:
        told.append(name)
        if name == "keys":
            raise RuntimeError("a receiver's bug")

    listener = ChangeListener(listening.kor.store.engine, receiver)
    listener.start()
    try:
        assert listener.connected.wait(30)
        pid = listener.backend_pid
        channel = _channel(listening.kor)
        _notify(channel, "keys")
        _notify(channel, "marker")
        assert _within(10, lambda: "marker" in told)
        assert told == [None, "keys", "marker"]  # no second None: the connection was kept
        assert listener.backend_pid == pid
        assert listener.connected.is_set()
    finally:
        listener.stop()


class _Monotonic:
    """A monotonic clock the test moves: polling comes due only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reads_over(watch: ChangeWatch, clock: _Monotonic, seconds: float) -> int:
    """How many times ``watch`` reads the counters when used every 1/16 s for ``seconds`` (the clock
    moved by the test, in steps binary fractions add up exactly)."""
    before = watch.reads
    for _ in range(round(seconds * 16)):
        clock.now += 1 / 16
        watch.generation("keys")
    return watch.reads - before


def test_a_connected_listener_relaxes_polling_to_a_safety_net_and_a_notification_still_tells_at_once(
    listening: Listening,
) -> None:
    """The default watch: polling every 250 ms while its listener is down, every 5 s while it is
    connected; a change committed by another process is in force within a second all the same, and
    only the notification can tell it: the clock polling follows does not move meanwhile."""
    clock = _Monotonic()
    watch = ChangeWatch(SharedState(listening.kor.store), monotonic=clock)
    try:
        assert watch.listen()
        listener = watch.listener
        assert listener is not None
        assert listener.connected.wait(30)
        ring = StoreKeyRing.open(
            listening.kor.store, listening.kor.cipher, watch, party="KOR", at=datetime.now(UTC)
        )
        assert watch.interval == LISTENING_INTERVAL
        listening_reads = _reads_over(watch, clock, 60)
        assert listening_reads <= 60 / LISTENING_INTERVAL + 1

        before = _signing_kid(ring)
        _cli("node", "rotate-keys", "--dir", str(listening.directory))  # clock still: no poll is due
        assert _within(SECOND, lambda: _signing_kid(ring) != before)

        _terminate(listener.backend_pid or 0)  # the listener reconnects in 0.5 s: measured meanwhile
        assert _within(10, lambda: not listener.connected.is_set())
        watch.close()  # ...or never: polling alone from here
        assert watch.interval == DEFAULT_INTERVAL
        polling_reads = _reads_over(watch, clock, 60)
        assert polling_reads >= 60 / DEFAULT_INTERVAL - 1
        assert polling_reads >= 15 * listening_reads  # the reads PostgreSQL no longer sees
    finally:
        watch.close()


class _FakeListener:
    def __init__(self) -> None:
        self.connected = threading.Event()

    def stop(self) -> None:
        self.connected.clear()


class _Pushed:
    """Counters in memory with a push: what ``SharedState`` is to the watch, without PostgreSQL."""

    def __init__(self) -> None:
        self.values = {"keys": 1}
        self.listener = _FakeListener()
        self.told: Callable[[str | None], None] | None = None
        self.woken = 0  # the delivery workers woken (entries queued elsewhere, or maybe: reconnected)

    def generations(self) -> dict[str, int]:
        return dict(self.values)

    def queued_elsewhere(self) -> None:
        self.woken += 1

    def listen(self, told: Callable[[str | None], None]) -> _FakeListener:
        self.told = told
        return self.listener


def test_polling_follows_the_listeners_state_and_a_reconnection_reads_everything() -> None:
    """Connected: one read per 5 s, and a notification read at the next use. Dropped: polling every
    250 ms at once (the drop marks everything stale). Back: a read at once, then 5 s again."""
    clock = _Monotonic()
    counters = _Pushed()
    watch = ChangeWatch(counters, monotonic=clock)  # type: ignore[arg-type]  # the counters' methods
    assert watch.listen()
    assert counters.told is not None
    counters.told(None)  # connected: what the listener says first
    counters.listener.connected.set()
    assert _reads_over(watch, clock, 30) <= 30 / LISTENING_INTERVAL + 1

    counters.values["keys"] = 2  # another process commits, and the notification arrives
    counters.told("keys")
    assert watch.generation("keys") == 2  # the clock did not move: read because it was told

    counters.values["keys"] = 3
    counters.listener.connected.clear()  # the connection drops: the listener says so
    counters.told(None)
    assert watch.generation("keys") == 3
    assert _reads_over(watch, clock, 30) >= 30 / DEFAULT_INTERVAL - 1

    counters.values["keys"] = 4  # committed while nobody listened: read on reconnecting
    woken = counters.woken
    counters.told(None)
    counters.listener.connected.set()
    assert watch.generation("keys") == 4
    assert counters.woken == woken + 1  # and the outbox read: entries may have been queued unheard
    assert _reads_over(watch, clock, 30) <= 30 / LISTENING_INTERVAL + 1


def test_an_interval_longer_than_the_safety_net_is_kept_while_listening() -> None:
    """A watch asked to poll once an hour does not poll every 5 s because it listens."""
    clock = _Monotonic()
    counters = _Pushed()
    watch = ChangeWatch(counters, interval=HOUR, monotonic=clock)  # type: ignore[arg-type]
    assert watch.listen()
    counters.listener.connected.set()
    assert watch.interval == HOUR
    assert _reads_over(watch, clock, 60) <= 1


def test_outbox_entries_queued_in_another_process_wake_this_ones_delivery_and_move_no_counter(
    listening: Listening,
) -> None:
    """issue 18: a release committed by another process of the node (another API worker) wakes this
    process's delivery worker at once, not at the end of its pause; the notification says only
    "read the outbox": a forged one wakes the worker (one read of the outbox, which holds the
    truth) and makes no cache read the counters again."""
    woken: list[int] = []
    listening.kor.store.on_queued(lambda: woken.append(1))
    watch = listening.watch
    watch.generation("keys")
    reads = watch.reads
    _notify(_channel(listening.kor), "outbox_queued")  # anyone who can connect may send this
    assert _within(10, lambda: bool(woken))
    watch.generation("keys")
    assert watch.reads == reads  # no counter moved, none read again

    woken.clear()
    other = Node(load_config(listening.directory), clock=FakeClock(listening.kor.clock()))
    try:  # the other process: the same node's directory, its own store, engine and connections
        assert other.heads.share_head() == 1  # its signed head queued for JPN, in its own transaction
        assert _within(SECOND, lambda: bool(woken))
    finally:
        other.close()
