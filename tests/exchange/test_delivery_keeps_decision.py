"""The decision an entry was released under stays on file through its delivery (attack review of
issue 18's delivery round, which reads due entries without it): delivered, retried after a
transport failure, or made undeliverable by a recall, every entry's stored decision is the one
written at release, byte for byte, as ``outbox`` and its view show it."""

from __future__ import annotations

import json

from tests.exchange.test_exchange import Net, net, own_item

from gsomia._present import outbox_view

__all__ = ["net"]


def test_every_settlement_keeps_the_decision_written_at_release(net: Net) -> None:
    kor = net.nodes["KOR"]
    for item_id in ("d1", "d2", "d3"):
        own_item(net, "KOR", item_id)
    released = kor.exchange.release_many(net.officer("KOR"), ["d1", "d2", "d3"], "JPN")
    at_release = {e.msg_id: e.decision for e in kor.exchange.outbox(None)}
    assert sorted(at_release) == sorted(e.msg_id for e in released.entries)
    assert all(json.loads(d)["allowed"] for d in at_release.values())
    net.transport.unreachable.add("JPN")  # the first round fails on the wire: retried
    assert {d.state for d in kor.exchange.deliver_due(net.transport)} == {"pending"}
    net.transport.unreachable.discard("JPN")
    kor.duties.recall(net.officer("KOR"), "d2", "withdrawn before sending")
    net.clock.advance(hours=1)
    kor.exchange.deliver_due(net.transport)
    states = {e.item_id: e.state for e in kor.exchange.outbox(None) if e.kind == "item"}
    assert states == {"d1": "delivered", "d2": "undeliverable", "d3": "delivered"}
    for entry in kor.exchange.outbox(None):
        if entry.msg_id in at_release:
            assert entry.decision == at_release[entry.msg_id]
            assert outbox_view(entry)["decision"] == json.loads(at_release[entry.msg_id])
