"""A delivery's batches as the sender cuts them by default, and the ids its messages carry (issue 18):
a run of items goes in batch envelopes of up to 250 items, each settled on its own receipt; every
message id and every receipted record's id is a UUIDv7 of the sending node's clock, none repeated."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from tests.exchange.test_exchange import Net, net, released_to_jpn

from gsomia.crypto.envelope import verify_origin
from gsomia.crypto.keys import PeerIdentity
from gsomia.exchange import MemoryTransport, receipt_entries

__all__ = ["net"]


class Counting(MemoryTransport):
    """The in-memory transport, keeping each push's envelopes and answers."""

    def __init__(self, inner: MemoryTransport) -> None:
        super().__init__(inner.peers)
        self.pushed: list[list[str]] = []
        self.answers: list[list[Any]] = []

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        self.pushed.append(list(envelopes))
        answers = super().push(peer, envelopes)
        self.answers.append(answers)
        return answers


def _v7_at(text: str, ms: int) -> bool:
    parsed = uuid.UUID(text)
    return parsed.hex == text and parsed.version == 7 and parsed.int >> 80 == ms


def test_a_run_of_300_goes_as_250_and_50_each_settled_on_its_receipt_with_v7_ids(net: Net) -> None:
    ids = [f"r{n:03d}" for n in range(300)]
    msg_ids = released_to_jpn(net, ids)
    ms = int(net.clock.now.timestamp() * 1000)
    assert len(set(msg_ids)) == 300
    assert all(_v7_at(m, ms) for m in msg_ids)
    transport = Counting(net.transport)
    results = net.nodes["KOR"].exchange.deliver_due(transport)
    assert [r.msg_id for r in results] == msg_ids
    assert {r.state for r in results} == {"delivered"}
    assert [len(p) for p in transport.pushed] == [1, 1]  # two batch envelopes
    kor = net.nodes["KOR"].exchange
    named: list[str] = []
    log_entries: list[str] = []
    for answers, carried in zip(transport.answers, (msg_ids[:250], msg_ids[250:]), strict=True):
        receipt = answers[0]["receipt"]
        _, content = verify_origin(receipt, kor.kernel.peers.peer, net.clock.now)
        entries = receipt_entries(content, "JPN")[1]
        assert sorted(entries) == sorted(carried)
        named += entries
        log_entries += [str(e.log_entry) for e in entries.values()]
    assert sorted(named) == sorted(msg_ids)
    assert len(set(log_entries)) == 300
    assert all(_v7_at(e, ms) for e in log_entries)
    received = net.nodes["JPN"].store.audit(kind="envelope.received")
    assert sorted(r.entry_id for r in received) == sorted(log_entries)
    assert len(net.nodes["JPN"].store.existing_items(ids)) == 300
    assert kor.deliver_due(transport) == []
