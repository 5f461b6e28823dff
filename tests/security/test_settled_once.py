"""Two processes of one node delivering the same outbox: the entry is settled by the one whose
compare-and-set wins, and only that one audits it. The other's ``envelope.delivered`` would read, to a
partner cross-checking the audit logs, as a second delivery of the same message."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.exchange.test_exchange import Net, released_to_jpn
from tests.security._nets import three_parties

from gsomia.core.instants import epoch_us
from gsomia.crypto.keys import PeerIdentity
from gsomia.exchange import MemoryTransport
from gsomia.node import Node, load_config


@pytest.fixture(params=["sqlite", "postgresql"])
def both(request: pytest.FixtureRequest, tmp_path: Path, postgres_status: str | None) -> Iterator[Net]:
    """The three-party network, on SQLite files or on one PostgreSQL schema per party."""
    yield from three_parties(request.param, tmp_path / "net", postgres_status)


class OtherFirst(MemoryTransport):
    """This process's push reaches the receiver only after the other process of the node has
    delivered (and settled) the same entries: this one's answers are the receiver's stored receipts."""

    def __init__(self, inner: MemoryTransport, other: Node) -> None:
        super().__init__(inner.peers)
        self.inner, self.other = inner, other

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        won = self.other.exchange.deliver_due(self.inner)
        assert won
        assert {d.state for d in won} == {"delivered"}
        return super().push(peer, envelopes)


@pytest.mark.parametrize("count", [1, 5])
def test_an_entry_another_process_settled_is_not_audited_delivered_again(both: Net, count: int) -> None:
    net = both
    msg_ids = released_to_jpn(net, [f"s{n}" for n in range(count)])
    second = Node(load_config(net.members[0].directory), clock=net.clock)  # the same store
    try:
        lost = second.exchange.deliver_due(OtherFirst(net.transport, net.nodes["KOR"]))
    finally:
        second.close()
    # it sent them and heard receipts back, yet the other process settled each first: what it
    # answers is what it settled, none (before, it counted each "delivered" again)
    assert lost == []
    delivered = [r["msg_id"] for r in net.audit("KOR", "envelope.delivered")]
    assert sorted(delivered) == sorted(msg_ids)  # once each: by the process that settled it
    kor = net.nodes["KOR"]
    assert all(e.state == "delivered" for m in msg_ids if (e := kor.exchange.fed.outbox_entry(m)) is not None)
    assert len(net.audit("JPN", "envelope.duplicate")) == count  # the second copy did reach JPN
    assert kor.audit.verify().ok


def test_a_settling_record_goes_with_the_state_change_and_a_refusal_heard_always(both: Net) -> None:
    """The store itself: of two outcomes for one entry read in the same state, the second's
    compare-and-set loses and its ``audit`` is not written; its ``heard`` (a receipt refused) is."""
    net = both
    (msg_id,) = released_to_jpn(net, ["h0"])
    kor = net.nodes["KOR"]
    fed = kor.exchange.fed
    entry = fed.outbox_entry(msg_id)
    assert entry is not None
    now = epoch_us(net.clock.now)

    def outcome(kind: str) -> dict[str, Any]:
        return dict(
            msg_id=msg_id, expected=entry, state="pending", attempts=entry.attempts + 1,
            next_attempt_us=now + 1_000_000, last_error=kind,
            audit=[kor.kernel.audit_row(kind, None, "h0", "allowed", msg_id=msg_id)],
            heard=[kor.kernel.audit_row(f"{kind}.heard", None, "h0", "refused", msg_id=msg_id)],
        )  # fmt: skip

    assert fed.settle_many([outcome("test.first")], now_us=now) == [msg_id]
    assert fed.settle_many([outcome("test.second")], now_us=now) == []  # moved on meanwhile
    assert len(kor.store.audit(kind="test.first")) == 1
    assert kor.store.audit(kind="test.second") == []
    assert (
        len(kor.store.audit(kind="test.first.heard")) == len(kor.store.audit(kind="test.second.heard")) == 1
    )
