"""Attack: a delivery run that follows what is queued (``follow``) while another process takes the
peer's lease (``keep`` says no). Following must never carry the run past its lease: nothing read
after the lease was lost goes from this run (another process delivers to that peer now), what was
on its way is settled, and the lease's new holder delivers the rest, each item once."""

from __future__ import annotations

import pytest
from tests.exchange.test_exchange import Net, net, own_item
from tests.security.test_batches_in_flight import _held_once, _many
from tests.security.test_delivery_follows import Meanwhile, _after

from gsomia.exchange import _delivery

__all__ = ["net"]


@pytest.fixture(autouse=True)
def _batches_of_100(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_delivery, "_BATCH", 100)


@pytest.mark.parametrize("read", [100, 200], ids=["one-batch-read", "two-batches-read"])
def test_a_run_that_loses_its_lease_while_following_sends_nothing_more(net: Net, read: int) -> None:
    ids_a, first = _many(net, read, "a")
    ids_b = [f"b{n:03d}" for n in range(50)]
    for item_id in ids_b:
        own_item(net, "KOR", item_id)
    kor = net.nodes["KOR"].exchange
    held = {"JPN": True}
    later: list[str] = []

    def release_then_lose_the_lease() -> None:
        later.extend(e.msg_id for e in kor.release_many(net.officer("KOR"), ids_b, "JPN").entries)
        held["JPN"] = False  # another process of the node holds deliver:JPN from now on

    transport = Meanwhile(net.transport, release_then_lose_the_lease)
    results = kor.deliver_due(
        transport, peers=["JPN"], keep=lambda party: held[party], follow=_after(transport)
    )
    sent = [r.msg_id for r in results]
    # what was on its way is settled (the second batch of the run's read may have left before the
    # lease was lost: keep is asked before each batch); nothing read after it was lost goes
    assert sent == first[: len(sent)]
    assert len(sent) >= 100
    assert {r.state for r in results} == {"delivered"}
    assert not set(later) & set(sent)
    pending = {e.msg_id for e in kor.fed.outbox() if e.state == "pending"}
    assert set(first[len(sent) :]) | set(later) <= pending  # left for the lease's holder, as read

    rest = kor.deliver_due(net.transport)  # the lease's new holder
    assert sorted(r.msg_id for r in rest) == sorted(first[len(sent) :] + later)
    _held_once(net, ids_a + ids_b)
    assert net.audit("JPN", "envelope.duplicate") == []
