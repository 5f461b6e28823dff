"""The node's background rounds when there is little or nothing to do (issue 18, bench_stream's
tail): an idle round reads and takes no write lock, the loops pause longer while their rounds find
nothing, this process's own commits wake them, and what another process commits (the store is
the truth) is still picked up within the longest pause and a round."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.exchange.test_exchange import Net, net, own_item

from gsomia.node import Node
from gsomia.store import AuditRow

__all__ = ["net"]

# the bound stated in NodeRuntime's docstring: what another process commits is picked up within the
# longest idle pause and a round; a round is a few ms, the slack is for a loaded machine's scheduler
IDLE = 0.5
SLACK = 4.0


def _record(kind: str) -> AuditRow:
    return AuditRow(
        at_us=time.time_ns() // 1000, kind=kind, actor="test", subject=None, outcome="ok", detail="{}"
    )


def _until(seconds: float, done: object) -> float | None:
    """Seconds until ``done()`` held, or ``None`` if it did not within ``seconds``."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if done():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.01)
    return None


def test_a_writer_with_nothing_pending_takes_no_write_lock(net: Net) -> None:
    """Most of a node's rounds find nothing: the pending records are read first, and the tree's lock
    (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock) is taken only when some wait."""
    kor = net.nodes["KOR"]
    kor.audit.sign_head()  # everything the fixture wrote is a leaf
    locks: list[int] = []
    writer = kor.audit.store.writer

    def counted() -> object:
        locks.append(1)
        return writer()

    kor.audit.store.writer = counted  # type: ignore[method-assign]
    assert kor.audit.integrate() == 0
    assert locks == []
    kor.store.append_audit([_record("test.idle")])
    assert kor.audit.integrate() == 1  # a record waits: the lock is taken and it becomes a leaf
    assert locks == [1]
    assert kor.audit.pending() == 0


def test_own_records_wake_the_writer_however_long_its_idle_pause(net: Net) -> None:
    """A record this process commits is integrated at once (``interval`` after the round before),
    not at the end of the idle pause (a minute here)."""
    kor = net.nodes["KOR"]
    runtime = kor.runtime(net.transport, interval=0.05, idle_pause=60, deliver=False)
    runtime.start()
    try:
        assert _until(20, lambda: kor.audit.pending() == 0) is not None
        time.sleep(1.0)  # the pause grown well past a second: only a wake ends it now
        kor.store.append_audit([_record("test.own")])
        took = _until(SLACK, lambda: kor.audit.pending() == 0)
    finally:
        runtime.stop()
    assert took is not None, "this process's own record waited for the idle pause"


def test_records_another_process_commits_become_leaves_within_the_idle_pause(net: Net) -> None:
    """Two processes of one node on one database: a record the second commits (it cannot wake the
    first's writer) is integrated by the first's rounds within the longest idle pause and a round."""
    kor = net.nodes["KOR"]
    runtime = kor.runtime(net.transport, interval=0.05, idle_pause=IDLE, deliver=False)
    runtime.start()
    try:
        assert _until(20, lambda: kor.audit.pending() == 0) is not None
        time.sleep(1.5)  # idle: the pause at its longest
        url = kor.config.database_url
        code = (
            "import sys, time\n"
            "from gsomia.store import AuditRow, Store\n"
            "s = Store(sys.argv[1])\n"
            "s.append_audit([AuditRow(at_us=time.time_ns() // 1000, kind='test.other', actor='cli',"
            " subject=None, outcome='ok', detail='{}')])\n"
            "s.close()\n"
        )
        subprocess.run([sys.executable, "-c", code, url], check=True, timeout=60)  # noqa: S603
        committed = time.monotonic()
        took = _until(IDLE + SLACK, lambda: kor.audit.pending() == 0)
        seen = time.monotonic() - committed
    finally:
        runtime.stop()
    assert took is not None, f"the other process's record waited {seen:.2f} s"
    assert [r.kind for r in kor.store.audit(kind="test.other")] == ["test.other"]


def test_entries_another_process_queues_are_delivered_within_the_idle_pause(net: Net) -> None:
    """The outbox's delivery, idle, pauses up to its idle pause: an officer's release committed by
    another process of KOR (a second ``Node`` on the same database: its commit wakes no one here)
    is still delivered, exactly once, within that pause and a round."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    own_item(net, "KOR", "idle-1")
    runtime = kor.runtime(net.transport, interval=0.05, idle_pause=IDLE)
    woken: list[int] = []
    kor.store.on_queued(lambda: woken.append(1))
    runtime.start()
    other = Node(kor.config, clock=net.clock)
    try:
        assert _until(20, lambda: not kor.exchange.fed.outbox(state="pending", limit=1)) is not None
        time.sleep(1.5)  # idle: the pause at its longest
        woken.clear()
        other.exchange.release(other.people.person("officer"), "idle-1", "JPN")
        assert woken == []  # the other process's commit told this one nothing
        took = _until(IDLE + SLACK, lambda: jpn.store.get_item("idle-1") is not None)
    finally:
        runtime.stop()
        other.close()
    assert took is not None, "another process's release was not delivered within the idle pause"
    assert jpn.store.count_items() == 1
    assert len(kor.store.audit(kind="item.release")) == 1  # released once, audited once
