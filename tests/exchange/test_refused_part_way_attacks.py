"""Adversarial review of a message refused part way through its receipt (issue 18's batched receive:
the messages of a batch are written together, in one transaction). A handler or an arrival hook (the
duties') that fails after the item was added to the batch used to leave the item, its inbox row, its
"allowed" record and its entry in the batch's one receipt in the batch, committed with the others,
while the sender was answered "refused": a copy held that the originator counts nowhere (outside its
destruction and recall duties), and a receipt naming an item refused. A refused message must leave
nothing of itself; the other messages of the same batch are taken as before."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from tests.exchange.test_exchange import Net, net, own_item

from gsomia.errors import InvalidInputError
from gsomia.exchange._base import Batch

__all__ = ["net"]


def _failing_hook(net: Net, failing: str) -> list[str]:
    """A JPN arrival hook that fails for KOR's item ``failing`` (after the item was added)."""
    jpn = net.nodes["JPN"]
    seen: list[str] = []

    def hook(ref: str, _now: datetime, _accepted: Batch) -> None:
        seen.append(ref)
        if failing in ref:
            raise InvalidInputError(f"duty could not be kept for {failing}")

    jpn.exchange.on_arrival(hook)
    return seen


def _held_at_jpn(net: Net) -> set[str]:
    return {r["subject"] for r in net.audit("JPN", "envelope.received") if r["outcome"] == "allowed"}


def test_an_item_refused_by_a_hook_in_a_batch_leaves_nothing_and_the_others_are_taken(net: Net) -> None:
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    for item_id in ("p1", "p2", "p3"):
        own_item(net, "KOR", item_id)
    seen = _failing_hook(net, "p2")
    kor.exchange.release_many(net.officer("KOR"), ["p1", "p2", "p3"], "JPN")
    net.deliver()
    assert any("p2" in ref for ref in seen)  # the hook ran for p2, after p2 was added to the batch
    held = _held_at_jpn(net)
    assert any("p1" in s for s in held)
    assert any("p3" in s for s in held)
    assert not any("p2" in s for s in held)  # no "allowed" record for the refused item
    assert jpn.store.items_of([("KOR", "p2")]) == {}  # no copy held
    entries = {e.item_id: e for e in kor.exchange.outbox(None)}
    assert jpn.exchange.fed.inbox_entries([entries["p2"].msg_id]) == {}  # no inbox row: not taken
    assert set(jpn.exchange.fed.inbox_entries([entries[i].msg_id for i in ("p1", "p3")])) == {
        entries["p1"].msg_id,
        entries["p3"].msg_id,
    }
    assert entries["p1"].receipt
    assert entries["p3"].receipt
    assert not entries["p2"].receipt  # no receipt names it
    refused = [r for r in net.audit("JPN", "envelope.refused") if r["msg_id"] == entries["p2"].msg_id]
    assert [r["reason"] for r in refused] == ["duty could not be kept for p2"]  # the refusal is audited


def test_an_item_refused_by_a_hook_alone_leaves_nothing(net: Net) -> None:
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    own_item(net, "KOR", "q1")
    _failing_hook(net, "q1")
    kor.exchange.release(net.officer("KOR"), "q1", "JPN")
    net.deliver()
    assert not any("q1" in s for s in _held_at_jpn(net))
    assert jpn.store.items_of([("KOR", "q1")]) == {}
    (entry,) = [e for e in kor.exchange.outbox(None) if e.item_id == "q1"]
    assert jpn.exchange.fed.inbox_entries([entry.msg_id]) == {}
    assert not entry.receipt


@pytest.mark.parametrize("in_batch", [False, True])
def test_undo_forgets_exactly_what_was_added_since_the_mark(in_batch: bool) -> None:
    batch = Batch()
    batch.receipted = [] if in_batch else None
    batch.audit.append("kept")  # type: ignore[arg-type]
    if batch.receipted is not None:
        batch.receipted.append({"msg_id": "kept"})
    mark = batch.mark()
    new: Any = type("New", (), {"id": "KOR:x"})()
    batch.items.append(new)
    batch.item_ids.add("KOR:x")
    batch.by_origin[("KOR", "x")] = new
    row: Any = type("Row", (), {"msg_id": "m2"})()
    batch.add_inbox(row)
    batch.audit.append("dropped")  # type: ignore[arg-type]
    batch.ops.append("dropped")  # type: ignore[arg-type]
    if batch.receipted is not None:
        batch.receipted.append({"msg_id": "m2"})
    batch.undo(mark)
    assert batch.items == []
    assert batch.item_ids == set()
    assert batch.by_origin == {}
    assert batch.inbox == []
    assert batch.inbox_by_id == {}
    assert batch.ops == []
    assert batch.audit == ["kept"]
    assert batch.receipted == ([{"msg_id": "kept"}] if in_batch else None)
