"""SQLite: the replay memory in a file of its own per boot of the machine, never synced
(``store/_memoryfile.py``). What must hold: every process of the node on this machine sees what
another recorded, a process killed without closing anything loses nothing, and a memory that may
have lost arrivals (another boot's file, never read; one kept in the database before) refuses as a
replay every batch signed before it started, while a node that never had a memory does not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gsomia.errors import StoreError
from gsomia.store import SignedArrival, Store
from gsomia.store import _store as store_module

_BOOT_A = "0a0a0a0a-0000-4000-8000-00000000000a"
_BOOT_B = "0b0b0b0b-0000-4000-8000-00000000000b"


def _arrival(batch: str, track: str, now_us: int, signed_us: int) -> SignedArrival:
    return SignedArrival(batch, "KOR", (0,), (track,), now_us, signed_us)


def _store(path: Path, monkeypatch: pytest.MonkeyPatch, boot: str | None) -> Store:
    monkeypatch.setattr(store_module, "boot_id", lambda: boot)
    store = Store(f"sqlite:///{path}")
    store.migrate()
    return store


def test_the_memory_has_its_own_file_per_boot_and_the_database_holds_none_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gsomia.db"
    store = _store(path, monkeypatch, _BOOT_A)
    try:
        assert store.replay_memory_apart
        assert store.remember_signed_arrivals([_arrival("b1", "k1", 100, 90)], 0) == [([], set())]
        assert store.remember_signed_arrivals([_arrival("b1", "k2", 101, 90)], 0) == [([0], set())]
        assert store.remember_signed_arrivals([_arrival("b2", "k1", 102, 95)], 0) == [([], {"k1"})]
        assert Path(f"{path}-replay.{_BOOT_A}").exists()
        with store.engine.connect() as conn:
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None
            assert dbapi.execute("SELECT count(*) FROM tracks_seen").fetchone() == (0,)
    finally:
        store.close()


def test_a_process_killed_without_closing_loses_nothing_and_another_process_sees_it(
    tmp_path: Path,
) -> None:
    """Two OS processes of one node on one machine (the real boot id): the first records a batch and
    dies at once (``os._exit``, nothing closed, nothing synced); a second is told it is a replay."""
    path = tmp_path / "gsomia.db"
    Store(f"sqlite:///{path}").migrate()
    script = (
        "import os, sys\n"
        "from gsomia.store import SignedArrival, Store\n"
        "store = Store(sys.argv[1])\n"
        "a = SignedArrival(sys.argv[2], 'KOR', (0, 1), (sys.argv[2] + '-k',), 10**15, 10**15)\n"
        "print(store.replay_memory_apart, store.remember_signed_arrivals([a], 0)[0].replayed, flush=True)\n"
        "os._exit(0)\n"
    )
    url = f"sqlite:///{path}"
    first = subprocess.run(  # noqa: S603 - this Python running the script above
        [sys.executable, "-c", script, url, "b1"], capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    if first.stdout.split()[0] != "True":
        pytest.skip("this machine's boot is not known: its memory is in the database (test_checkpoints.py)")
    assert first.stdout.split() == ["True", "[]"]
    again = subprocess.run(  # noqa: S603 - the same
        [sys.executable, "-c", script, url, "b1"], capture_output=True, text=True, timeout=120
    )
    assert again.stdout.split() == ["True", "[0,", "1]"], again.stderr


def test_another_boots_memory_is_never_read_and_what_was_signed_before_the_new_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a reboot the file of the boot before may be torn or short of its last commits (never
    synced): it is deleted unread, and a batch signed before the new memory's first commit cannot
    be shown new: refused as a replay, whole, in the same commit as a later batch that is not."""
    path = tmp_path / "gsomia.db"
    store = _store(path, monkeypatch, _BOOT_A)
    try:
        store.remember_signed_arrivals([_arrival("b1", "k1", 1_000, 900)], 0)
    finally:
        store.close()
    store = _store(path, monkeypatch, _BOOT_B)
    try:
        answers = store.remember_signed_arrivals(
            [
                _arrival("b2", "k2", 2_000, 1_500),
                _arrival("b3", "k3", 2_000, 2_000),
                _arrival("b1", "k1", 2_000, 900),
            ],
            0,
        )
        assert answers == [([0], set()), ([], set()), ([0], set())]
        assert not Path(f"{path}-replay.{_BOOT_A}").exists()
        # a later batch is taken; the refused one was recorded as nothing
        assert store.remember_signed_arrivals([_arrival("b4", "k2", 2_100, 2_050)], 0) == [([], set())]
    finally:
        store.close()


def test_a_memory_kept_in_the_database_before_makes_the_new_file_start_blind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node upgraded to the file: what its database remembered is not carried over, so what was
    signed before the file's first commit is refused; a node that never remembered anything (a
    fresh one) takes a batch signed long before."""
    path = tmp_path / "gsomia.db"
    store = _store(path, monkeypatch, None)  # the memory in the database
    try:
        assert not store.replay_memory_apart
        store.remember_signed_arrivals([_arrival("b1", "k1", 1_000, 900)], 0)
    finally:
        store.close()
    store = _store(path, monkeypatch, _BOOT_A)
    try:
        assert store.remember_signed_arrivals([_arrival("b2", "k2", 2_000, 1_999)], 0) == [([0], set())]
        assert store.remember_signed_arrivals([_arrival("b3", "k3", 2_001, 2_000)], 0) == [([], set())]
    finally:
        store.close()
    fresh = _store(tmp_path / "fresh.db", monkeypatch, _BOOT_A)
    try:
        assert fresh.remember_signed_arrivals([_arrival("b2", "k2", 2_000, 10)], 0) == [([], set())]
    finally:
        fresh.close()


@pytest.mark.parametrize("loss", ["deleted", "truncated"])
def test_a_memory_file_deleted_or_truncated_in_the_same_boot_makes_the_next_start_blind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loss: str
) -> None:
    """The adversary (or a cleaner of stray files) deletes or empties this boot's memory file
    between two processes of the node: the next process must not take a new, empty memory as one
    that never missed anything. The node's database names the file it had; a batch signed before
    the new file's first commit is refused as a replay."""
    path = tmp_path / "gsomia.db"
    store = _store(path, monkeypatch, _BOOT_A)
    try:
        assert store.remember_signed_arrivals([_arrival("b1", "k1", 1_000, 900)], 0) == [([], set())]
    finally:
        store.close()
    memory = Path(f"{path}-replay.{_BOOT_A}")
    for name in (Path(f"{memory}-wal"), Path(f"{memory}-shm")):
        name.unlink(missing_ok=True)
    if loss == "deleted":
        memory.unlink()
    else:
        memory.write_bytes(b"")
    store = _store(path, monkeypatch, _BOOT_A)
    try:
        assert store.remember_signed_arrivals([_arrival("b1", "k1", 2_000, 900)], 0) == [([0], set())]
        assert store.remember_signed_arrivals([_arrival("b2", "k2", 2_001, 2_000)], 0) == [([], set())]
    finally:
        store.close()


def test_a_memory_file_replaced_by_a_symlink_fails_closed_as_the_store_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This boot's memory path made a symlink (to a file the adversary keeps empty): never opened
    through it; the arrival is not taken, and the caller is told the store failed, as for any other
    failure of the memory (``StoreError``), not an ``OSError`` it does not expect."""
    path = tmp_path / "gsomia.db"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"")
    Path(f"{path}-replay.{_BOOT_A}").symlink_to(elsewhere)
    store = _store(path, monkeypatch, _BOOT_A)
    try:
        with pytest.raises(StoreError, match="nothing was written"):
            store.remember_signed_arrivals([_arrival("b1", "k1", 1_000, 900)], 0)
        assert elsewhere.read_bytes() == b""
    finally:
        store.close()


def test_a_commit_made_at_once_waits_for_no_lock_writes_nothing_when_busy_and_checks_as_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``remember_signed_arrivals_at_once`` (the event loop's own commit): nothing before the file is
    open (its opening reads and writes the node's database); while another process of the node holds
    the file's write lock, or another thread of this one commits, ``None`` at once, nothing written
    and nothing forgotten; otherwise the same answers as the waiting commit, each path seeing what
    the other recorded (a replay is a replay either way). The waiting commit still waits afterwards:
    the busy timeout is set back."""
    import sqlite3
    import threading
    import time

    from gsomia.store import _memoryfile

    path = tmp_path / "gsomia.db"
    store = _store(path, monkeypatch, _BOOT_A)
    try:
        assert store.remember_signed_arrivals_at_once([_arrival("b0", "k0", 100, 90)], 0) is None
        assert store.remember_signed_arrivals([_arrival("b1", "k1", 100, 90)], 0) == [([], set())]
        assert store.remember_signed_arrivals_at_once([_arrival("b1", "k2", 101, 90)], 0) == [([0], set())]
        assert store.remember_signed_arrivals_at_once([_arrival("b2", "k3", 102, 95)], 0) == [([], set())]
        assert store.remember_signed_arrivals([_arrival("b2", "k4", 103, 95)], 0) == [([0], set())]
        assert store.remember_signed_arrivals_at_once([_arrival("b5", "k3", 104, 99)], 0) == [([], {"k3"})]

        other = sqlite3.connect(f"{path}-replay.{_BOOT_A}", isolation_level=None, check_same_thread=False)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process of the node, committing
            began = time.perf_counter()
            late = 10**12  # a bound that forgets every row so far, in a commit that is made
            assert store.remember_signed_arrivals_at_once([_arrival("b6", "k6", late, late)], late) is None
            assert time.perf_counter() - began < 1.0  # the busy timeout is 5 s: it did not wait
            threading.Timer(0.3, other.execute, ("ROLLBACK",)).start()
            # the waiting commit waits again (SQLite's timeout set back), and then goes through
            assert store.remember_signed_arrivals([_arrival("b7", "k7", 200, 150)], 0) == [([], set())]
        finally:
            other.close()
        # the busy call forgot nothing and recorded nothing: both happen in the next commit made
        assert store.remember_signed_arrivals_at_once([_arrival("b6", "k6", late, late)], late) == [
            ([], set())
        ]
        assert store.remember_signed_arrivals_at_once([_arrival("b8", "k1", late + 1, late)], late) == [
            ([], set())
        ]  # k1 was forgotten with its window

        memory = store._memory_file
        assert memory is not None
        held, release = threading.Event(), threading.Event()

        def commit_held() -> None:  # another thread of this process inside the file's transaction
            with memory.transaction(late):
                held.set()
                release.wait(10)

        holder = threading.Thread(target=commit_held)
        holder.start()
        try:
            assert held.wait(10)
            assert store.remember_signed_arrivals_at_once([_arrival("b9", "k9", late, late)], late) is None
        finally:
            release.set()
            holder.join(10)
        assert store.remember_signed_arrivals_at_once([_arrival("b9", "k9", late, late)], late) == [
            ([], set())
        ]
        assert _memoryfile._BUSY_MS == 5_000
    finally:
        store.close()
