"""Background work has one owner at a time: a lease row in the store, taken and renewed by
compare-and-set, taken over by another process when its holder stops renewing it; on SQLite and
on PostgreSQL, between threads and between real ``gsomia node serve`` processes."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from tests.reliability.processes import kill, serve, stop, wait_for

from gsomia.demo import network
from gsomia.errors import StoreError
from gsomia.node import init_node_dir
from gsomia.node._config import update_settings
from gsomia.node._lease import Lease, SharedWork
from gsomia.node._runtime import LEASES
from gsomia.store import LeaseStore, Store

# A running lease, in these tests: long beyond any stall of a loaded machine between two claims,
# so "another holds it" never turns into "it ran out meanwhile". Expiry is made (``_expire``).
TTL_US = 600_000_000


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


def _expire(leases: LeaseStore, name: str, holder: str) -> None:
    """``holder`` renews ``name`` for a moment only, then stops (killed, paused, cut off): back when
    the database's clock has passed the lease's end. Waiting on that condition, not on a sleep of a
    fixed length, keeps the test true however loaded the machine is."""
    assert leases.claim(name, holder, 1) is not None
    end = next(r.expires_us for r in leases.leases() if r.name == name)
    wait_for(lambda: leases.now_us() > end, 30, f"{holder}'s lease on {name} running out")


def test_an_expired_lease_is_taken_over_and_its_old_holder_is_refused(leases: LeaseStore) -> None:
    assert leases.claim("gossip", "a", TTL_US) == 1
    _expire(leases, "gossip", "a")  # a stopped renewing
    assert leases.claim("gossip", "b", TTL_US) == 2
    assert leases.claim("gossip", "a", TTL_US) is None  # a comes back: too late
    _expire(leases, "gossip", "b")
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
    first = _race(leases, TTL_US)
    assert len(first) == 1
    assert leases.leases()[0].epoch == 1
    _expire(leases, "outbox", first[0])
    won = _race(leases, TTL_US)
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
    return serve(network.NetNode("KOR", directory, network.free_port()), sender=True)


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


def _expiries(url: str) -> dict[str, int]:
    """When each kind of background work's lease runs out, as the store has it."""
    store = Store(url)
    try:
        return {r.name: r.expires_us for r in LeaseStore(store).leases() if r.name in LEASES}
    finally:
        store.close()


def test_two_node_processes_share_the_work_out_and_a_killed_holder_is_taken_over(
    store_url: str, tmp_path: Path
) -> None:
    """Two ``node serve`` processes of one node on one database: each kind of background work is
    held by one of them; kill -9 the holder and the other takes all of it over once the lease runs out."""
    directory = tmp_path / "kor"
    init_node_dir(directory, "KOR", store_url)
    # ten seconds: a renewal starved for several seconds on a loaded machine must not look like a
    # death (the takeover below waits on the store, however long the lease)
    update_settings(directory, lease_seconds=10.0)
    first = _serve(directory)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: set(_holders(store_url)) == set(LEASES), 60, "the first process holding the work")
        assert {pid for pid, _ in _holders(store_url).values()} == {first.pid}
        second = _serve(directory)
        # the second process asks, again and again, while the first renews every lease it holds
        granted = _expiries(store_url)
        wait_for(
            lambda: all(e > granted[n] for n, e in _expiries(store_url).items()),
            60,
            "the first process renewing its leases beside the second",
        )
        held = _holders(store_url)
        assert {pid for pid, _ in held.values()} == {first.pid}
        assert {epoch for _, epoch in held.values()} == {1}
        assert second.poll() is None
        kill(first)
        wait_for(
            lambda: (
                {pid for pid, _ in _holders(store_url).values()} == {second.pid}
                and set(_holders(store_url)) == set(LEASES)
            ),
            90,  # the lease's 10 s and a standby's next ask, on a machine that may be loaded
            "the second process taking the work over",
        )
        assert {epoch for _, epoch in _holders(store_url).values()} == {2}
    finally:
        kill(first)
        if second is not None:
            stop(second)
