"""Adversarial review of issue 18's node-level speed work: the delivery worker's wake-up (any
database user can send PostgreSQL's notification: a wake moves nothing by itself) and the held
label remembered per (label, sender, agreement, instant, preference) when another process of the
node stores an equivalence change."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tests.duties.conftest import Net, _net
from tests.exchange.test_equivalence_changes import GSOMIA, HOUR, _change, _send, _signed

from gsomia.node import Node, load_config


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    yield from _net(tmp_path)


def _within(seconds: float, done: object) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return bool(done())  # type: ignore[operator]


def test_a_storm_of_wakes_moves_no_retry_on_and_sends_nothing_twice(net: Net) -> None:
    """A wake (this process's commit, or a notification anyone may send) only makes the worker read
    the outbox: an entry backing off after a failed attempt is not tried again before its time,
    however many wakes come; once due (the clock moved on), it is delivered exactly once."""
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    net.own_item("KOR", "storm-1")
    net.transport.unreachable.add("JPN")
    runtime = kor.runtime(net.transport, interval=60)
    runtime.start()
    try:
        entry = kor.exchange.release(net.officer("KOR"), "storm-1", "JPN")

        def attempted() -> bool:
            row = kor.exchange.fed.outbox_entry(entry.msg_id)
            return row is not None and row.attempts >= 1

        assert _within(10, attempted)
        for _ in range(200):  # what a forged notification does in this process: wake the worker
            kor.store.queued_elsewhere()
            time.sleep(0.002)
        time.sleep(0.3)
        row = kor.exchange.fed.outbox_entry(entry.msg_id)
        assert row is not None
        assert (row.state, row.attempts) == ("pending", 1)  # backing off: not due, not tried again
        net.transport.unreachable.clear()
        for _ in range(50):
            kor.store.queued_elsewhere()
        time.sleep(0.3)
        assert jpn.store.get_item("storm-1") is None  # still not due: the clock has not moved
        net.clock.advance(seconds=30)
        kor.store.queued_elsewhere()
        assert _within(10, lambda: jpn.store.get_item("storm-1") is not None)
        for _ in range(50):
            kor.store.queued_elsewhere()
        time.sleep(0.3)
    finally:
        runtime.stop()
    row = kor.exchange.fed.outbox_entry(entry.msg_id)
    assert row is not None
    assert (row.state, row.attempts) == ("delivered", 2)
    assert jpn.store.count_items() == 1


def test_a_held_label_remembered_here_follows_an_equivalence_change_stored_by_another_process(
    net: Net,
) -> None:
    """A second process of JPN worked out (and remembered) the label it holds a KOR Class II item
    under at an instant two hours on: 極秘. Once the first process stores KOR's change (Class II is
    特定秘密 from an hour on), the second answers 特定秘密 for that instant, without being told,
    within the store counters' interval; an instant before the change still gets 極秘."""
    member = next(m for m in net.members if m.party == "JPN")
    second = Node(load_config(member.directory), clock=net.clock)
    try:
        now = net.clock.now
        label = second.catalogue.label(
            originator="KOR",
            classification="군사II급비밀",
            releasable_to=["JPN"],
            purpose="threat-assessment",
            topics=["dprk-missile"],
            created=now - timedelta(days=1),
        )
        items = second.kernel.items

        def level(at: object) -> str:
            held = items.received_label(label, "KOR", GSOMIA, at=at)  # type: ignore[arg-type]
            alternative = held.alternative_for("JPN")
            assert alternative is not None
            return alternative.classification

        after = now + 2 * HOUR
        assert level(after) == level(after) == "極秘"  # remembered
        assert _send(net, "KOR", "JPN", _signed(net, "KOR", _change(net)), "held-1")["status"] == "applied"
        assert _within(120, lambda: level(after) == "特定秘密"), "the remembered label outlived the change"
        assert level(now) == "極秘"  # before the change's instant
        # the first process too: the same label, the same instants, the same answers
        first = net.nodes["JPN"].kernel.items
        assert first.received_label(label, "KOR", GSOMIA, at=after).alternative_for("JPN") == (
            items.received_label(label, "KOR", GSOMIA, at=after).alternative_for("JPN")
        )
    finally:
        second.close()
