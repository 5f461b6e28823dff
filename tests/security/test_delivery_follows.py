"""A delivery run that reads again what was queued while its batches were on their way (``follow``,
issue 18): a serving node's worker no longer waits for its last batches' answers, then starts a new
run that reads, decides and seals the next selection while the receiver idles. What must still hold:
an entry on its way is never read (so never sent) twice; each entry read later is decided at the
instant it was read, not the run's first; a message other than an item still goes alone, in the
outbox's order; a sender that dies with followed batches on their way loses nothing and stores
nothing twice at the receiver; entries queued once ``follow`` says no wait for the next run; and a
node's runtime follows only while it is not stopping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from tests.exchange.test_exchange import Net, net, own_item
from tests.security.test_batches_in_flight import Killed, Overlapping, _held_once, _many

from gsomia.crypto.keys import PeerIdentity
from gsomia.exchange import MemoryTransport, _delivery
from gsomia.node import Node, load_config

__all__ = ["net"]


@pytest.fixture(autouse=True)
def _batches_of_100(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_delivery, "_BATCH", 100)


class Meanwhile(Overlapping):
    """Two pushes at once; the first push runs ``meanwhile`` (an officer's next selection committed
    while a batch is on its way) before it reaches the receiver, and sets ``done``; with
    ``hold_second``, the second push is answered only once a third has left (or after 20 s)."""

    def __init__(
        self, inner: MemoryTransport, meanwhile: Callable[[], None], *, hold_second: bool = False
    ) -> None:
        super().__init__(inner)
        self.meanwhile = meanwhile
        self.done = threading.Event()
        self.hold_second = hold_second
        self._third = threading.Event()
        self._second_answered = threading.Event()
        self.beside_second = False  # the third push left before the second was answered
        self._count = 0
        self._counting = threading.Lock()

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        with self._counting:
            position, self._count = self._count, self._count + 1
        if position == 0:
            try:
                self.meanwhile()
            finally:
                self.done.set()
        if position == 2:
            self.beside_second = not self._second_answered.is_set()
            self._third.set()
        answers = super().push(peer, envelopes)
        if position == 1:
            if self.hold_second:
                self._third.wait(20)  # still on its way when the followed batch leaves
            self._second_answered.set()
        return answers


def _after(transport: Meanwhile) -> Callable[[str], bool]:
    """A ``follow`` that says yes once the first push's ``meanwhile`` is done (so the read after it
    sees what it queued, whatever the threads' timing)."""

    def follow(_party: str) -> bool:
        return transport.done.wait(20)

    return follow


def _second_selection(net: Net) -> tuple[list[str], list[str], Callable[[], None]]:
    """A hundred more of KOR's items, the ids an officer's release of them to JPN queues (filled
    when it runs), and that release, to run while the first selection's batches are on their way."""
    ids_b = [f"b{n:03d}" for n in range(100)]
    for item_id in ids_b:
        own_item(net, "KOR", item_id)
    kor = net.nodes["KOR"].exchange
    later: list[str] = []

    def release_b() -> None:
        later.extend(e.msg_id for e in kor.release_many(net.officer("KOR"), ids_b, "JPN").entries)

    return ids_b, later, release_b


def test_a_selection_queued_while_batches_are_on_their_way_joins_them_and_lands_once(net: Net) -> None:
    ids_a, first = _many(net, 200, "a")
    later: list[str] = []
    ids_b = [f"b{n:03d}" for n in range(150)]
    for item_id in ids_b:
        own_item(net, "KOR", item_id)
    kor = net.nodes["KOR"].exchange

    def release_b() -> None:
        released = kor.release_many(net.officer("KOR"), ids_b, "JPN")
        assert not released.refused
        later.extend(e.msg_id for e in released.entries)

    transport = Meanwhile(net.transport, release_b, hold_second=True)
    results = kor.deliver_due(transport, follow=_after(transport))
    assert [r.msg_id for r in results] == first + later  # each once, in the outbox's order
    assert {r.state for r in results} == {"delivered"}
    assert len(transport.pushed) == 4  # a000-a099, a100-a199, b000-b099, b100-b149
    assert transport.beside_second  # the followed batch left while the run's last was on its way
    _held_once(net, ids_a + ids_b)
    assert net.audit("JPN", "envelope.duplicate") == []  # nothing on its way was read and sent again
    assert len(net.audit("KOR", "envelope.delivered")) == 350
    assert kor.deliver_due(net.transport) == []


def test_a_followed_selection_is_decided_when_it_is_read_not_when_the_run_began(net: Net) -> None:
    """The two-person policy is set after the run's first batch was decided and left, and after the
    next selection was released: that selection, read by the run afterwards, is refused at sending."""
    ids_a, first = _many(net, 100, "a")  # one batch: decided and on its way before the policy
    ids_b = [f"b{n:03d}" for n in range(50)]
    for item_id in ids_b:
        own_item(net, "KOR", item_id)
    node = net.nodes["KOR"]

    def release_then_policy() -> None:
        assert not node.exchange.release_many(net.officer("KOR"), ids_b, "JPN").refused
        node.exchange.set_two_person(
            node.people.person("admin"),
            above={"KOR": "군사III급비밀"},
            hub_relay=False,
            relay_authorisations=False,
            validity=timedelta(hours=4),
        )

    transport = Meanwhile(net.transport, release_then_policy)
    results = node.exchange.deliver_due(transport, follow=_after(transport))
    states = {r.msg_id: r for r in results}
    assert len(states) == len(results) == 150
    assert [m for m, r in states.items() if r.state == "delivered"] == first
    refused = [r for r in results if r.state == "undeliverable"]
    assert len(refused) == 50
    assert all("two_person" in r.detail for r in refused)
    assert net.nodes["JPN"].store.existing_items(ids_a + ids_b) == set(ids_a)
    assert len(transport.pushed) == 1


def test_a_message_other_than_an_item_queued_meanwhile_still_goes_alone_in_order(net: Net) -> None:
    ids_a, first = _many(net, 200, "a")
    ids_b = [f"b{n:03d}" for n in range(100)]
    for item_id in ids_b:
        own_item(net, "KOR", item_id)
    node = net.nodes["KOR"]
    later: list[str] = []

    def head_then_b() -> None:
        node.audit.integrate(2000)
        assert node.heads.share_head() >= 1  # a signed head queued for each partner
        later.extend(e.msg_id for e in node.exchange.release_many(net.officer("KOR"), ids_b, "JPN").entries)

    transport = Meanwhile(net.transport, head_then_b)
    results = node.exchange.deliver_due(transport, follow=_after(transport))
    assert {r.state for r in results if r.recipient == "JPN"} == {"delivered"}
    to_jpn = [r.msg_id for r in results if r.recipient == "JPN"]
    heads = [m for m in to_jpn if m not in first and m not in later]
    assert len(heads) == 1
    assert to_jpn == [*first, *heads, *later]  # the head after the items before it, before those after
    # the push carrying the head (its own envelope beside the batch after it) was on its way alone
    (alone,) = [n for n, envelopes in enumerate(transport.pushed) if len(envelopes) > 1]
    assert not [pair for pair in transport.together if alone in pair]
    _held_once(net, ids_a + ids_b)


def test_a_sender_killed_with_followed_batches_on_their_way_delivers_each_once_after_restart(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids_a, first = _many(net, 200, "a")
    ids_b, later, release_b = _second_selection(net)
    kor = net.nodes["KOR"].exchange
    settled: list[int] = []

    def die(*_: Any, **__: Any) -> None:
        settled.append(1)
        raise Killed

    monkeypatch.setattr(kor.fed, "settle_many", die)
    transport = Meanwhile(net.transport, release_b)
    with pytest.raises(Killed):
        kor.deliver_due(transport, follow=_after(transport))
    monkeypatch.undo()
    assert all(e.state == "pending" for m in first + later if (e := kor.fed.outbox_entry(m)) is not None)
    restarted = Node(load_config(net.members[0].directory), clock=net.clock)
    try:
        results = restarted.exchange.deliver_due(Overlapping(net.transport))
    finally:
        restarted.close()
    assert sorted(r.msg_id for r in results) == sorted(first + later)
    assert {r.state for r in results} == {"delivered"}
    _held_once(net, ids_a + ids_b)


def test_what_is_queued_once_follow_says_no_waits_for_the_next_run(net: Net) -> None:
    ids_a, first = _many(net, 200, "a")
    ids_b, later, release_b = _second_selection(net)
    kor = net.nodes["KOR"].exchange
    transport = Meanwhile(net.transport, release_b)
    asked: list[str] = []

    def no(party: str) -> bool:
        asked.append(party)
        transport.done.wait(20)
        return False

    results = kor.deliver_due(transport, follow=no)
    assert asked
    assert set(asked) == {"JPN"}
    assert [r.msg_id for r in results] == first
    assert all(e.state == "pending" for m in later if (e := kor.fed.outbox_entry(m)) is not None)
    assert [r.msg_id for r in kor.deliver_due(Overlapping(net.transport))] == later
    _held_once(net, ids_a + ids_b)


def test_a_nodes_runtime_follows_while_running_and_not_once_stopping(net: Net) -> None:
    node = net.nodes["KOR"]
    runtime = node.runtime(net.transport)
    follow = runtime._following(time.monotonic() + 60)
    assert follow("JPN")
    assert not runtime._following(time.monotonic() - 1)("JPN")  # its time is up
    runtime._stop.set()
    assert not follow("JPN")  # the runtime is stopping
    # a round of the runtime carries a selection queued while its batches are on their way
    fresh = node.runtime(net.transport)
    ids_a, first = _many(net, 200, "a")
    ids_b = [f"b{n:03d}" for n in range(100)]
    for item_id in ids_b:
        own_item(net, "KOR", item_id)
    later: list[str] = []
    transport = Meanwhile(
        net.transport,
        lambda: later.extend(
            e.msg_id for e in node.exchange.release_many(net.officer("KOR"), ids_b, "JPN").entries
        ),
    )
    fresh.transport = transport
    fresh._following = lambda _until: _after(transport)  # type: ignore[method-assign]
    try:
        assert fresh.round() >= 300
    finally:
        fresh.stop()
        runtime.stop()
    _held_once(net, ids_a + ids_b)
    assert {e.state for m in first + later if (e := node.exchange.fed.outbox_entry(m)) is not None} == {
        "delivered"
    }
