"""SQLite: the write-ahead log checkpointed aside (``Store.checkpoint_aside``), by a thread of the
store's, so that the replay memory's commits do not carry a checkpoint's syncs. What must hold: the
log starts over while writes keep coming (else SQLite's own checkpoint would run in every commit
past its threshold), nothing written is lost or replayed as new across the restarts, and the thread
ends with the store."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.node_fixtures import jpn_label

from gsomia.node import NewIngest
from gsomia.store import SignedArrival, Store
from gsomia.store import _checkpoints as checkpoints
from gsomia.store import _store as store_module
from gsomia.testing import make_node


def _arrival(i: int) -> SignedArrival:
    batch = hashlib.sha256(b"batch %d" % i).hexdigest()
    return SignedArrival(
        batch, "KOR", (0,), (hashlib.sha256(b"update %d" % i).hexdigest(),), 10**15 + i, 10**15 + i
    )


def _log_pages(store: Store) -> tuple[int, int]:
    """(pages in the log, pages backfilled), by a passive checkpoint of the test's own."""
    with store.engine.connect() as conn:
        dbapi: Any = conn.connection.dbapi_connection
        _busy, log, done = dbapi.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(log), int(done)


def _checkpointer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gsomia-checkpoints"]


def test_the_log_starts_over_while_writes_keep_coming_and_nothing_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits without a pause while the thread checkpoints: the log is started over again and
    again (it never grows past a restart's length by much), every update stays remembered, and a
    replay of any of them, after the restarts, is still told it arrived before."""
    monkeypatch.setattr(checkpoints, "_TICK_S", 0.005)
    monkeypatch.setattr(checkpoints, "_RESTART_FRAMES", 64)
    # the memory in the node's database, as where the machine's boot is unknown (else it has a file
    # of its own, never synced: tests/store/test_replay_file.py)
    monkeypatch.setattr(store_module, "boot_id", lambda: None)
    node = make_node(tmp_path / "jpn", "JPN")
    try:
        store = node.store
        store.checkpoint_aside()
        for i in range(1500):
            (answer,) = store.remember_signed_arrivals([_arrival(i)], 0)
            assert answer.replayed == []
            assert answer.before == set()
        # a few pages a commit: 1,500 commits without a restart leave a log of 20 MB or more (its
        # file never shrinks, a restart writes it again from its start). Half that: the thread's
        # restarts come when it is scheduled beside a writer committing flat out (5.3 MB seen once
        # in six quiet runs with a bound of 4 MB)
        assert (tmp_path / "jpn" / "gsomia.db-wal").stat().st_size < 10 * 2**20
        for i in (0, 700, 1499):  # remembered across the restarts: a replay is refused
            (again,) = store.remember_signed_arrivals([_arrival(i)], 0)
            assert again.replayed == [0]
        with store.engine.connect() as conn:
            dbapi: Any = conn.connection.dbapi_connection
            assert dbapi.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert dbapi.execute("SELECT count(*) FROM tracks_seen").fetchone() == (1500,)
    finally:
        node.close()


def test_the_restart_waits_for_the_writers_of_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last backfill before a restart runs inside the store's write lock: while another writer
    of the process holds it, the round waits, and it goes on once that writer is done."""
    monkeypatch.setattr(checkpoints, "_RESTART_FRAMES", 16)
    monkeypatch.setattr(store_module, "boot_id", lambda: None)  # the memory in the database
    node = make_node(tmp_path / "jpn", "JPN")
    try:
        store = node.store
        for i in range(40):
            store.remember_signed_arrivals([_arrival(i)], 0)
        checkpointer = checkpoints.Checkpointer(store.engine, store._writers, store)
        checkpointer.stop()  # its own rounds off: this test runs one by hand
        held, release = threading.Event(), threading.Event()

        def writer() -> None:
            with store._writers:
                held.set()
                release.wait(5)

        holder = threading.Thread(target=writer)
        holder.start()
        held.wait(5)
        result: list[tuple[int, int]] = []
        round_ = threading.Thread(target=lambda: result.append(checkpointer.step()))
        round_.start()
        round_.join(0.3)
        assert round_.is_alive()  # waiting for the writer's lock
        assert not result
        release.set()
        round_.join(5)
        holder.join(5)
        log, done = result[0]
        assert log == done  # all backfilled: the next commit starts the log over
        store.remember_signed_arrivals([_arrival(1000)], 0)
        assert _log_pages(store)[0] < 16
    finally:
        node.close()


def test_the_thread_ends_with_the_store(tmp_path: Path) -> None:
    node = make_node(tmp_path / "jpn", "JPN")
    before = len(_checkpointer_threads())
    node.store.checkpoint_aside()
    node.store.checkpoint_aside()  # asked twice: one thread
    assert len(_checkpointer_threads()) == before + 1
    node.close()
    deadline = time.monotonic() + 5
    while len(_checkpointer_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_checkpointer_threads()) == before


def test_an_in_memory_store_has_no_thread() -> None:
    store = Store("sqlite://")
    before = len(_checkpointer_threads())
    store.checkpoint_aside()
    assert len(_checkpointer_threads()) == before
    store.close()


def test_batches_of_items_are_checkpointed_aside_and_nothing_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that ingests batches checkpoints its log from the store's thread: the batches' commits
    do not carry SQLite's checkpoint (issue 18), the log still starts over while the batches keep
    coming, and every item of every batch is there after the restarts (fails on the old code: no
    thread was started for the batches)."""
    monkeypatch.setattr(checkpoints, "_TICK_S", 0.005)
    monkeypatch.setattr(checkpoints, "_RESTART_FRAMES", 64)
    node = make_node(tmp_path / "jpn", "JPN")
    try:
        before = len(_checkpointer_threads())
        ids: list[str] = []
        for _ in range(30):
            batch = [NewIngest(jpn_label(), b'{"report": "%d"}' % n) for n in range(50)]
            ids += [item.id for item in node.items.ingest_many(None, batch)]
        assert len(_checkpointer_threads()) == before + 1
        # 30 commits of many pages each without a restart leave a log of several MB
        assert (tmp_path / "jpn" / "gsomia.db-wal").stat().st_size < 4 * 2**20
        assert node.store.count_items() == len(ids) == len(set(ids)) == 1500
        assert set(node.store.get_items(ids)) == set(ids)
        with node.store.engine.connect() as conn:
            dbapi: Any = conn.connection.dbapi_connection
            assert dbapi.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        node.close()


def test_threads_asking_at_once_start_one_checkpoint_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of items from several request threads at once ask for the thread together: one is
    started, not one each (a second would outlive ``close``, which stops the one it knows)."""

    class Slow(checkpoints.Checkpointer):
        def __init__(self, *args: Any) -> None:
            time.sleep(0.05)  # the window between the check and the thread kept open
            super().__init__(*args)

    monkeypatch.setattr(store_module, "Checkpointer", Slow)
    node = make_node(tmp_path / "jpn", "JPN")
    try:
        before = len(_checkpointer_threads())
        start = threading.Barrier(6)

        def ask() -> None:
            start.wait(5)
            node.store.checkpoint_aside()

        askers = [threading.Thread(target=ask) for _ in range(6)]
        for t in askers:
            t.start()
        for t in askers:
            t.join(5)
        assert len(_checkpointer_threads()) == before + 1
    finally:
        node.close()
