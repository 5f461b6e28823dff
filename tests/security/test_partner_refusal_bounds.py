"""A partner with a valid link sending messages this node refuses grows its audit log in bounded
space, and every refusal is still accounted for, exactly.

Before: each refused message of an authenticated sender (its envelope opened: signed by the partner,
encrypted to this node) wrote one permanent ``envelope.refused`` record, so a hostile partner (or one
with a bug) made the Merkle log, which cannot be pruned, grow by one record a message: 5,000 bad
messages in five batch envelopes, 5,000 records. Now they go through the kernel's tally as the
refusals of callers nobody authenticated do: per sender, code and minute the first
``REFUSALS_RECORDED`` are records of their own (the reason, the message id, as before) and one
``refusal.tally`` record gives the exact count once the minute has closed.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from tests.exchange.test_exchange import Net, net, own_item

from gsomia.crypto.envelope import seal
from gsomia.kernel import NodeContext

BATCH_KIND = "batch"  # a batch envelope (gsomia.exchange._inbox)

__all__ = ["net"]
RECORDED = NodeContext.REFUSALS_RECORDED


def _sealed_by_kor(net: Net, body: dict[str, Any], msg_id: str) -> str:
    kor = net.nodes["KOR"].exchange
    jpn = kor.peer("JPN")
    assert jpn is not None
    return seal(kor.ring, jpn, body, msg_id=msg_id, at=net.clock.now, ttl=timedelta(minutes=10))


def _bad_batch(net: Net, tag: str, n: int) -> str:
    """A batch envelope KOR signs of ``n`` item messages, each without its origin: each refused."""
    messages = [{"msg_id": f"{tag}-{i}", "body": {"kind": "item"}} for i in range(n)]
    return _sealed_by_kor(net, {"kind": BATCH_KIND, "messages": messages}, f"{tag}-batch")


def _records(net: Net, kind: str) -> list[dict[str, Any]]:
    return [
        {"actor": r.actor, "subject": r.subject, **json.loads(r.detail)}
        for r in net.nodes["JPN"].store.audit(kind=kind, limit=1_000_000)
    ]


def _flood(net: Net, tag: str) -> None:
    """5,000 item messages in five batch envelopes and 30 envelopes of an unknown kind, each refused,
    each answered with its reason."""
    jpn = net.nodes["JPN"].exchange
    for b in range(5):
        (answer,) = jpn.receive([_bad_batch(net, f"{tag}{b}", 1000)], source="192.0.2.7")
        assert answer["status"] == BATCH_KIND
        assert {r["status"] for r in answer["results"]} == {"refused"}
        assert {r["reason"] for r in answer["results"]} == {"item message: origin and route are required"}
    unknown = [_sealed_by_kor(net, {"kind": "nonsense"}, f"{tag}-odd-{i}") for i in range(30)]
    answers = jpn.receive(unknown, source="192.0.2.7")
    assert {(a["status"], a["reason"]) for a in answers} == {("refused", "unknown message kind")}


def _closed_tallies(net: Net) -> dict[str, int]:
    net.clock.advance(seconds=61)
    net.nodes["JPN"].kernel.close_refusal_tallies()
    return {
        r["code"]: r["count"]
        for r in _records(net, "refusal.tally")
        if r["subject"] == "envelope.refused" and r["source"] == "KOR"
    }


def test_a_partner_refused_five_thousand_times_costs_a_few_records_a_minute_and_exact_counts(
    net: Net,
) -> None:
    _flood(net, "a")
    own = _records(net, "envelope.refused")
    # the first of each code a record of its own, as before: actor, reason, message id
    assert len(own) == 2 * RECORDED
    assert all(r["actor"] == "KOR" for r in own)
    reasons = {r["reason"] for r in own}
    assert reasons == {"item message: origin and route are required", "unknown message kind 'nonsense'"}
    assert {r["msg_id"] for r in own if r["reason"].startswith("item")} == {
        f"a0-{i}" for i in range(RECORDED)
    }
    assert _closed_tallies(net) == {"InvalidInputError": 5000, "unknown-kind": 30}

    # the next minute, the same flood again: the log grows by the same few records, not 5,030
    before = len(net.nodes["JPN"].store.audit(limit=1_000_000))
    _flood(net, "b")
    assert len(_records(net, "envelope.refused")) == 4 * RECORDED
    counts = _closed_tallies(net)
    assert counts == {"InvalidInputError": 5000, "unknown-kind": 30}
    grown = len(net.nodes["JPN"].store.audit(limit=1_000_000)) - before
    assert grown <= 2 * RECORDED + 2 + 5  # its records, two tallies, and what else the node wrote

    node = net.nodes["JPN"]
    node.audit.sign_head()
    report = node.audit.verify()
    assert report.ok, report.problem
    assert node.exchange.fed.inbox_entry("a0-0") is None  # nothing of a refused message kept


def test_a_partners_refused_equivalence_changes_are_bounded_too(net: Net) -> None:
    jpn = net.nodes["JPN"].exchange
    texts = [_sealed_by_kor(net, {"kind": "equivalence-change"}, f"eq-{i}") for i in range(40)]
    answers = jpn.receive(texts, source="192.0.2.7")
    assert {a["reason"] for a in answers} == {"equivalence-change message: 'change' is required"}
    assert len(_records(net, "equivalence.receive")) == RECORDED
    net.clock.advance(seconds=61)
    net.nodes["JPN"].kernel.close_refusal_tallies()
    (tally,) = [r for r in _records(net, "refusal.tally") if r["subject"] == "equivalence.receive"]
    assert (tally["source"], tally["code"], tally["count"]) == ("KOR", "InvalidInputError", 40)


def test_a_partner_resending_one_envelope_thousands_of_times_costs_a_few_records_and_a_count(
    net: Net,
) -> None:
    """The same genuine envelope, delivered once, sent again 2,000 times: each answered as a duplicate
    with its stored receipt, audited in bounded space (before: one ``envelope.duplicate`` record each,
    2,000 permanent records). The first 10 of the minute are records of their own, as before (the
    sender, the item, the message id); one ``refusal.tally`` record gives the exact count."""
    own_item(net, "KOR", "dup-1")
    entry = net.nodes["KOR"].exchange.release(net.officer("KOR"), "dup-1", "JPN")
    jpn = net.nodes["JPN"].exchange
    (first,) = jpn.receive([entry.envelope], source="192.0.2.7")
    assert first["status"] == "stored"
    before = len(net.nodes["JPN"].store.audit(limit=1_000_000))
    for _ in range(4):
        answers = jpn.receive([entry.envelope] * 500, source="192.0.2.7")
        assert {(a["status"], a["receipt"]) for a in answers} == {("duplicate", first["receipt"])}
    own = _records(net, "envelope.duplicate")
    assert len(own) == RECORDED
    assert {(r["actor"], r["subject"], r["msg_id"]) for r in own} == {("KOR", "dup-1", entry.msg_id)}
    net.clock.advance(seconds=61)
    net.nodes["JPN"].kernel.close_refusal_tallies()
    (tally,) = [r for r in _records(net, "refusal.tally") if r["subject"] == "envelope.duplicate"]
    assert (tally["source"], tally["code"], tally["count"]) == ("KOR", "duplicate", 2000)
    grown = len(net.nodes["JPN"].store.audit(limit=1_000_000)) - before
    assert grown <= RECORDED + 1 + 5  # its records, the tally, and what else the node wrote
    node = net.nodes["JPN"]
    node.audit.sign_head()
    report = node.audit.verify()
    assert report.ok, report.problem
    assert net.nodes["JPN"].store.count_items() == 1
