"""The exchange's replay fence against clocks: a partner's clock off by up to the allowed skew, or this
node's clock stepped back or forward, never makes a message be taken twice, and a genuine message is
refused only for its envelope's time (``retry``: the sender may send it again in a fresh envelope).

The fence is the inbox's table of message ids (``inbox.msg_id``), kept for good and read in every
process: a message taken once is a ``duplicate`` whenever it comes again, whatever either clock says.
The clocks decide only whether an envelope is opened at all (its ``iat`` no more than the skew ahead
of this node's clock, its ``exp`` no more than the skew behind): they bound how long an envelope that
was never taken (refused, or lost on the way) can still be taken once. docs/SECURITY.md says why that
is the whole of the clocks' part. These tests pin it.
"""

from __future__ import annotations

import json
from datetime import timedelta

from tests.exchange.test_exchange import Net, net, own_item

__all__ = ["net"]
SKEW = timedelta(minutes=5)  # the nodes' max_clock_skew_seconds (the default)
LIFETIME = timedelta(hours=24)  # their envelope_lifetime_seconds (the default)


def _sealed_at(net: Net, item_id: str, offset: timedelta) -> tuple[str, str]:
    """KOR's item ``item_id`` released to JPN by KOR with its clock ``offset`` from JPN's: the
    envelope sealed then and its message id (JPN's clock, which both share, put back after)."""
    start = net.clock.now
    net.clock.now = start + offset
    try:
        own_item(net, "KOR", item_id)
        entry = net.nodes["KOR"].exchange.release(net.officer("KOR"), item_id, "JPN")
    finally:
        net.clock.now = start
    return entry.envelope, entry.msg_id


def _receive(net: Net, envelope: str) -> dict[str, object]:
    (answer,) = net.nodes["JPN"].exchange.receive([envelope], source="192.0.2.7")
    return answer


def _taken(net: Net, msg_id: str) -> int:
    """How many times JPN took ``msg_id`` (its ``envelope.received`` records)."""
    rows = net.nodes["JPN"].store.audit(kind="envelope.received", limit=1_000_000)
    return sum(json.loads(r.detail).get("msg_id") == msg_id for r in rows)


def test_a_message_taken_once_is_a_duplicate_whatever_this_nodes_clock_does_after(net: Net) -> None:
    envelope, msg_id = _sealed_at(net, "r-steps", timedelta(0))
    start = net.clock.now
    first = _receive(net, envelope)
    assert first["status"] == "stored"
    for step in (-SKEW + timedelta(seconds=1), timedelta(hours=23), timedelta(0)):
        net.clock.now = start + step  # stepped back, forward, and back again, within the lifetime
        again = _receive(net, envelope)
        assert (again["status"], again["receipt"]) == ("duplicate", first["receipt"])
    for step in (-timedelta(hours=1), LIFETIME + SKEW + timedelta(seconds=1)):
        net.clock.now = start + step  # stepped out of the envelope's lifetime: not even opened
        late = _receive(net, envelope)
        assert (late["status"], late.get("retry")) == ("refused", True)
    assert _taken(net, msg_id) == 1
    assert net.nodes["JPN"].store.count_items() == 1


def test_a_partners_clock_ahead_within_the_skew_is_taken_once_and_beyond_it_refused_for_now(
    net: Net,
) -> None:
    ahead, ahead_id = _sealed_at(net, "r-ahead", SKEW - timedelta(seconds=5))
    assert _receive(net, ahead)["status"] == "stored"
    assert _receive(net, ahead)["status"] == "duplicate"
    too_far, far_id = _sealed_at(net, "r-too-far", SKEW + timedelta(seconds=5))
    refused = _receive(net, too_far)
    assert (refused["status"], refused.get("retry")) == ("refused", True)  # the sender sends it again
    assert net.nodes["JPN"].store.get_item("r-too-far") is None
    assert (_taken(net, ahead_id), _taken(net, far_id)) == (1, 0)


def test_an_envelope_never_taken_can_be_taken_once_within_its_lifetime_and_never_after(net: Net) -> None:
    """What the clocks bound: an envelope refused for its time is not remembered (nothing of a refusal
    is kept), so it is opened again while its lifetime lasts, and taken once; after that, never."""
    envelope, msg_id = _sealed_at(net, "r-early", SKEW + timedelta(minutes=1))
    assert _receive(net, envelope)["status"] == "refused"  # JPN's clock behind by more than the skew
    net.clock.advance(minutes=2)  # JPN's clock put right (or KOR's envelope delayed): within the skew
    assert _receive(net, envelope)["status"] == "stored"
    assert _receive(net, envelope)["status"] == "duplicate"
    net.clock.advance(days=2)
    assert _receive(net, envelope)["status"] == "refused"
    assert _taken(net, msg_id) == 1
    expired, expired_id = _sealed_at(net, "r-late", -(LIFETIME + SKEW + timedelta(seconds=1)))
    assert _receive(net, expired)["status"] == "refused"  # sealed and held back past its lifetime
    assert _taken(net, expired_id) == 0
