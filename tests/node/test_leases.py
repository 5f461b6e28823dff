"""Background work has one owner at a time: a lease row in the store, taken and renewed by
compare-and-set, taken over by another process when its holder stops renewing it; on SQLite and
on PostgreSQL, between threads and between real ``gsomia node serve`` processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from tests.reliability.processes import kill, stop, wait_for

from gsomia.demo import network
from gsomia.errors import StoreError
from gsomia.node import init_node_dir
from gsomia.node._config import update_settings
from gsomia.node._lease import Lease, SharedWork
from gsomia.node._runtime import LEASES
from gsomia.store import LeaseStore, Store

TTL_US = 400_000


@pytest.fixture
def leases(store_url: str) -> Iterator[LeaseStore]:
    store = Store(store_url)
    store.migrate()
    yield LeaseStore(store)
    store.close()


def test_one_holder_at_a_time_and_the_epoch_moves_with_each_new_holder(leases: LeaseStore) -> None:
    assert leases.claim("outbox", "a", TTL_US) == 1
    assert leases.claim("outbox", "b", TTL_US) is None  # a's lease runs: b is refused
    assert leases.claim("outbox", "a", TTL_US) == 1  # renewed: same epoch
    assert not leases.release("outbox", "b")  # b cannot end a's lease
    assert leases.release("outbox", "a")
    assert leases.claim("outbox", "b", TTL_US) == 2  # released: b takes it at once, a new epoch
    assert leases.claim("outbox", "a", TTL_US) is None
    assert leases.claim("audit", "a", TTL_US) == 1  # each kind of work is its own lease
    rows = {r.name: r for r in leases.leases()}
    assert (rows["outbox"].holder, rows["audit"].holder) == ("b", "a")
    assert rows["outbox"].expires_us > leases.now_us()


def test_an_expired_lease_is_taken_over_and_its_old_holder_is_refused(leases: LeaseStore) -> None:
    assert leases.claim("gossip", "a", TTL_US) == 1
    time.sleep(TTL_US / 1e6 + 0.1)  # a stopped renewing (killed, paused, cut off)
    assert leases.claim("gossip", "b", TTL_US) == 2
    assert leases.claim("gossip", "a", TTL_US) is None  # a comes back: too late
    time.sleep(TTL_US / 1e6 + 0.1)
    assert leases.claim("gossip", "a", TTL_US) == 3  # and b's own expired lease is not renewed silently
    assert leases.claim("gossip", "b", TTL_US) is None


def _race(leases: LeaseStore, ttl_us: int) -> list[str]:
    """Twelve threads claim ``outbox`` at the same instant; those who came out holding it."""
    won: list[str] = []
    start = threading.Barrier(12)

    def claim(me: str) -> None:
        start.wait()
        if leases.claim("outbox", me, ttl_us) is not None:
            won.append(me)

    threads = [threading.Thread(target=claim, args=(f"p{n}",)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won


def test_racing_claimants_never_both_hold_it(leases: LeaseStore) -> None:
    """Twelve threads claim a new lease, then an expired one, at once: exactly one wins each time.
    The lease lasts longer than any thread can be kept waiting on a loaded machine (a claim made
    after the winner's lease ran out would rightly win again)."""
    ttl_us = 2_000_000
    assert len(_race(leases, ttl_us)) == 1
    assert leases.leases()[0].epoch == 1
    time.sleep(ttl_us / 1e6 + 0.1)
    won = _race(leases, ttl_us)
    assert len(won) == 1
    assert leases.leases()[0].epoch == 2
    assert leases.leases()[0].holder == won[0]


def test_a_holder_renews_a_third_of_the_way_and_a_released_lease_passes_on(leases: LeaseStore) -> None:
    now = [0.0]
    first = Lease(leases, "outbox", "a", ttl=60, monotonic=lambda: now[0])
    second = Lease(leases, "outbox", "b", ttl=60, monotonic=lambda: now[0])
    assert first.held()
    assert not second.held()
    granted = leases.leases()[0].expires_us
    now[0] = 19.0
    assert first.held()  # answered from memory: less than a third of its time is spent
    assert leases.leases()[0].expires_us == granted
    now[0] = 21.0
    assert first.held()
    assert leases.leases()[0].expires_us > granted  # renewed in the store
    first.release()
    assert second.held()  # released: the standby, asking again, takes it at once
    assert second.epoch == 2
    assert not first.held()  # the first is refused now: the second holds it


def test_a_process_that_loses_the_store_stops_working_when_its_lease_runs_out(
    tmp_path: Path,
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    store.migrate()
    now = [0.0]
    lease = Lease(LeaseStore(store), "audit", "a", ttl=1.0, monotonic=lambda: now[0])
    assert lease.held()
    store.engine.dispose()
    store.engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    now[0] = 0.5
    assert lease.held()  # still within the time it was granted
    now[0] = 1.0
    assert not lease.held()  # run out: it must not go on working
    store.close()


def test_shared_work_is_split_between_processes_and_a_dead_ones_part_is_taken_over(
    leases: LeaseStore,
) -> None:
    """Sharers of a peer-by-peer work hold different parts, never the same; a sharer joining gets
    its share given back to it; a dead sharer's parts go to the others once its leases run out."""
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731 - a clock the test moves (the rows run for a minute)
    parts = {"JPN", "USA", "AUS", "GBR", "CAN", "NZL"}
    a = SharedWork(leases, "deliver", "a", ttl=60.0, monotonic=clock)
    b = SharedWork(leases, "deliver", "b", ttl=60.0, monotonic=clock)
    assert a.held(parts) == parts  # alone: all of it
    assert b.held(parts) == set()  # b counts two sharers, but a holds every part
    now[0] = 21.0  # a counts again: two sharers, a share of three; it gives three back
    kept = a.held(parts)
    assert len(kept) == 3
    now[0] = 42.0
    assert b.held(parts) == parts - kept  # b takes what a gave back, nothing a holds
    c = SharedWork(leases, "deliver", "c", ttl=60.0, monotonic=clock)
    assert c.held(parts) == set()  # nothing free: a and b hold all of it
    held: list[set[str]] = []
    for step in range(1, 4):  # they renew; each counts three sharers and gives one back
        now[0] = 42.0 + step * 21.0
        held = [a.held(parts), b.held(parts), c.held(parts)]
        assert sum(len(h) for h in held) == len(set().union(*held))  # never one part twice
    assert [len(h) for h in held] == [2, 2, 2]
    rows = {r.name: r.holder for r in leases.leases() if r.name.startswith("deliver:")}
    assert rows == {f"deliver:{p}": who for who, h in zip("abc", held, strict=True) for p in h}
    # a dies: it asks no more, and its leases (its sign of life with them) run out
    with leases.store.engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE leases SET expires_us = 0 WHERE holder = 'a'"))
    for step in range(1, 4):
        now[0] = 105.0 + step * 21.0
        held = [b.held(parts), c.held(parts)]
        assert not held[0] & held[1]
    assert held[0] | held[1] == parts  # a's parts taken over by the survivors
    assert [len(h) for h in held] == [3, 3]
    b.release()
    c.release()
    assert not leases.running("deliver:")  # a clean stop gives every part back at once


# --- two real processes of one node ---


def _serve(directory: Path) -> subprocess.Popen[bytes]:
    """``gsomia node serve`` on a port of its own, answering (its loops running) when this returns."""
    port = network.free_port()
    process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "gsomia", "node", "serve", "--dir", str(directory), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        network._wait_healthy(f"http://127.0.0.1:{port}", 60)
    except BaseException:
        kill(process)
        raise
    return process


def _holders(url: str) -> dict[str, tuple[int, int]]:
    """Each running lease's holder's pid and epoch, read beside the processes."""
    store = Store(url)
    try:
        leases = LeaseStore(store)
        now = leases.now_us()
        return {
            r.name: (int(r.holder.split("/")[1]), r.epoch)
            for r in leases.leases()
            if r.expires_us > now and r.name in LEASES  # the kinds of work (not each peer's delivery)
        }
    except StoreError:  # not migrated yet: the first process is starting
        return {}
    finally:
        store.close()


def test_two_node_processes_share_the_work_out_and_a_killed_holder_is_taken_over(
    store_url: str, tmp_path: Path
) -> None:
    """Two ``node serve`` processes of one node on one database: each kind of background work is
    held by one of them; kill -9 the holder and the other holds all of it within the lease time."""
    directory = tmp_path / "kor"
    init_node_dir(directory, "KOR", store_url)
    # three seconds: a renewal starved for a second on a loaded machine must not look like a death
    update_settings(directory, lease_seconds=3.0)
    first = _serve(directory)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: set(_holders(store_url)) == set(LEASES), 30, "the first process holding the work")
        assert {pid for pid, _ in _holders(store_url).values()} == {first.pid}
        second = _serve(directory)
        time.sleep(1.5)  # the second process asks, again and again: the first keeps renewing
        held = _holders(store_url)
        assert {pid for pid, _ in held.values()} == {first.pid}
        assert {epoch for _, epoch in held.values()} == {1}
        assert second.poll() is None
        kill(first)
        begun = time.monotonic()
        wait_for(
            lambda: (
                {pid for pid, _ in _holders(store_url).values()} == {second.pid}
                and set(_holders(store_url)) == set(LEASES)
            ),
            20,
            "the second process taking the work over",
        )
        assert time.monotonic() - begun < 10.0  # the lease's 3 s, a standby's ask, a loaded machine
        assert {epoch for _, epoch in _holders(store_url).values()} == {2}
    finally:
        kill(first)
        if second is not None:
            stop(second)
