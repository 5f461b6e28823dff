"""More than one batch on its way to a peer at once (a transport's ``in_flight``, issue 18): the
receiver works on the next batch while the last one's answer travels back. What must still hold:
each batch settled once, on its own receipt, in the outbox's order, by the one delivering thread;
nothing stored twice at the receiver, whatever comes back late, is lost, or dies with the sender;
a second delivering process of the same node (the database the truth) changes none of it; and a
message other than an item, or a second copy of an item, is never on its way beside another batch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from tests.exchange.test_exchange import Net, net, released_to_jpn
from tests.tallied import tallied

from gsomia.crypto.envelope import verify_origin
from gsomia.crypto.keys import PeerIdentity
from gsomia.errors import TransportError
from gsomia.exchange import MemoryTransport, _delivery, receipt_entries
from gsomia.node import Node, load_config


@pytest.fixture(autouse=True)
def _batches_of_100(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count a run's items in batches of 100 (what a delivery batch held when they were
    written); how many items a batch envelope carries is the sender's choice (``_BATCH``), which
    issue 18's measurements moved to 250: the tests' batches stay as they count them."""
    monkeypatch.setattr(_delivery, "_BATCH", 100)


__all__ = ["net"]


class Overlapping(MemoryTransport):
    """The in-memory transport taking two pushes at once, recording which were on their way together.
    ``first_waits``: the first push is answered only after the second has been (its receipt comes back
    first); ``lose_answer``: that push (by position, from 0) reaches the receiver, its answer is lost."""

    def __init__(
        self, inner: MemoryTransport, *, first_waits: bool = False, lose_answer: int | None = None
    ) -> None:
        super().__init__(inner.peers, in_flight=2)
        self.first_waits, self.lose_answer = first_waits, lose_answer
        self._lock = threading.Lock()
        self._on_way: set[int] = set()
        self.together: set[tuple[int, int]] = set()
        self.pushed: list[list[str]] = []
        self.answered: list[int] = []  # positions, in the order their answers came back
        self.answers: dict[int, list[Any]] = {}
        self._second = threading.Event()

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        with self._lock:
            position = len(self.pushed)
            self.pushed.append(list(envelopes))
            self.together |= {(other, position) for other in self._on_way}
            self._on_way.add(position)
        try:
            if self.first_waits and position == 0 and not self._second.wait(20):
                raise AssertionError("the second batch never left while the first was on its way")
            answers = super().push(peer, envelopes)
            if position == self.lose_answer:
                raise TransportError("connection reset before the answer came back")
            self.answers[position] = answers
            return answers
        finally:
            with self._lock:
                self._on_way.discard(position)
                self.answered.append(position)
            if position == 1:
                self._second.set()


def _many(net: Net, count: int, prefix: str = "f") -> tuple[list[str], list[str]]:
    ids = [f"{prefix}{n:03d}" for n in range(count)]
    return ids, released_to_jpn(net, ids)


def _held_once(net: Net, ids: list[str]) -> None:
    """JPN holds each item once, and stored and audited each message once."""
    assert len(net.nodes["JPN"].store.existing_items(ids)) == len(ids)
    received = [r["msg_id"] for r in net.audit("JPN", "envelope.received")]
    assert len(received) == len(set(received)) == len(ids)


def test_two_batches_are_on_their_way_at_once_and_a_receipt_back_first_waits_its_turn(net: Net) -> None:
    """The second batch's receipt comes back before the first's: each batch is still settled on the
    receipt that names it, in the outbox's order."""
    ids, msg_ids = _many(net, 300)
    kor = net.nodes["KOR"].exchange
    transport = Overlapping(net.transport, first_waits=True)
    results = kor.deliver_due(transport)
    assert (0, 1) in transport.together  # two on their way at once
    assert transport.answered.index(1) < transport.answered.index(0)  # the second answered first
    assert [r.msg_id for r in results] == msg_ids  # settled in the outbox's order
    assert {r.state for r in results} == {"delivered"}
    for position, carried in enumerate((msg_ids[:100], msg_ids[100:200], msg_ids[200:])):
        receipt = transport.answers[position][0]["receipt"]
        _, content = verify_origin(receipt, kor.kernel.peers.peer, net.clock.now)
        assert sorted(receipt_entries(content, "JPN")[1]) == sorted(carried)
        assert {e.receipt for m in carried if (e := kor.fed.outbox_entry(m)) is not None} == {receipt}
    _held_once(net, ids)
    assert len(net.audit("KOR", "envelope.delivered")) == 300


def test_an_answer_lost_while_the_next_batch_is_on_its_way_is_retried_and_stored_once(net: Net) -> None:
    ids, msg_ids = _many(net, 300)
    kor = net.nodes["KOR"].exchange
    results = kor.deliver_due(Overlapping(net.transport, lose_answer=0))
    assert [r.state for r in results] == ["pending"] * 100 + ["delivered"] * 200
    assert len(net.nodes["JPN"].store.existing_items(ids)) == 300  # JPN took the first; KOR never heard
    net.clock.advance(seconds=60)  # past the back-off
    again = kor.deliver_due(Overlapping(net.transport))
    assert [(r.msg_id, r.state) for r in again] == [(m, "delivered") for m in msg_ids[:100]]
    _held_once(net, ids)
    # answered with the stored receipt, audited in bounded space: 10 records, all 100 counted
    own, audited = tallied(net.nodes["JPN"], net.clock, "envelope.duplicate")
    assert (len(own), audited) == (10, 100)
    assert len(net.audit("KOR", "envelope.delivered")) == 300


class Killed(BaseException):
    """The sender's process dying (nothing it holds in memory survives)."""


def test_a_sender_killed_with_batches_on_their_way_delivers_each_once_after_restart(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KOR dies before it settles anything, two batches having reached JPN: a new process of KOR
    (the same store, nothing carried over) sends what is still pending; JPN stores nothing twice."""
    ids, msg_ids = _many(net, 300)
    kor = net.nodes["KOR"].exchange

    def die(*_: Any, **__: Any) -> None:
        raise Killed

    monkeypatch.setattr(kor.fed, "settle_many", die)
    transport = Overlapping(net.transport)
    with pytest.raises(Killed):
        kor.deliver_due(transport)
    monkeypatch.undo()
    reached = len(net.nodes["JPN"].store.existing_items(ids))
    assert reached >= 200  # at least the first two were on their way together and arrived
    assert all(e.state == "pending" for m in msg_ids if (e := kor.fed.outbox_entry(m)) is not None)
    restarted = Node(load_config(net.members[0].directory), clock=net.clock)
    try:
        results = restarted.exchange.deliver_due(Overlapping(net.transport))
    finally:
        restarted.close()
    assert sorted(r.msg_id for r in results) == sorted(msg_ids)
    assert {r.state for r in results} == {"delivered"}
    _held_once(net, ids)
    own, audited = tallied(net.nodes["JPN"], net.clock, "envelope.duplicate")  # bounded: the tally
    assert (len(own), audited) == (min(reached, 10), reached)


def test_two_delivering_processes_of_one_node_store_each_item_once(net: Net) -> None:
    """Two processes of KOR (two nodes on one store) deliver the same outbox at once, each with two
    batches on their way: every entry ends delivered once, JPN stores each item once."""
    ids, msg_ids = _many(net, 400)
    second = Node(load_config(net.members[0].directory), clock=net.clock)
    failures: list[BaseException] = []

    def deliver(node: Node) -> None:
        try:
            node.exchange.deliver_due(Overlapping(net.transport))
        except BaseException as exc:  # reported below
            failures.append(exc)

    try:
        threads = [threading.Thread(target=deliver, args=(n,)) for n in (net.nodes["KOR"], second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not failures
        net.clock.advance(seconds=60)  # what either left for a retry
        net.nodes["KOR"].exchange.deliver_due(Overlapping(net.transport))
    finally:
        second.close()
    kor = net.nodes["KOR"].exchange
    assert all(e.state == "delivered" for m in msg_ids if (e := kor.fed.outbox_entry(m)) is not None)
    _held_once(net, ids)
    # each entry's delivery audited once, by the process whose compare-and-set won
    assert sorted(r["msg_id"] for r in net.audit("KOR", "envelope.delivered")) == sorted(msg_ids)


def test_a_message_other_than_an_item_is_never_on_its_way_beside_another_batch(net: Net) -> None:
    """A tree head queued between two selections: the batch carrying it leaves alone, after the ones
    before are answered, and the next leaves after it is answered (the outbox's order kept)."""
    _, first = _many(net, 150, "a")
    kor = net.nodes["KOR"]
    kor.audit.integrate(2000)
    assert kor.heads.share_head() >= 1
    _, last = _many(net, 150, "b")
    transport = Overlapping(net.transport)
    results = kor.exchange.deliver_due(transport)
    assert {r.state for r in results} == {"delivered"}
    (alone,) = [n for n, envelopes in enumerate(transport.pushed) if len(envelopes) > 1]
    assert not [pair for pair in transport.together if alone in pair]
    assert transport.together  # the others still went two at a time
    assert [r.msg_id for r in results if r.msg_id in first or r.msg_id in last] == first + last


def test_two_copies_of_one_item_are_never_on_their_way_at_once(net: Net) -> None:
    """The same item released twice (two outbox entries) lands in two batches: the second waits until
    the first is answered."""
    ids, _ = _many(net, 150, "c")
    again = net.nodes["KOR"].exchange.release_many(net.officer("KOR"), ids[:60], "JPN")
    assert not again.refused
    transport = Overlapping(net.transport)
    results = net.nodes["KOR"].exchange.deliver_due(transport)
    assert len(results) == 210
    assert len(transport.pushed) == 3
    # the second batch holds c100-c149 and the second copies of c000-c049, the third those of
    # c050-c059: neither was on its way beside the first, which carried the first copies
    assert (0, 1) not in transport.together
    assert (0, 2) not in transport.together
    assert len(net.nodes["JPN"].store.existing_items(ids)) == 150
