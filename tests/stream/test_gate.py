"""The link gate's bookkeeping on its own: slots per source, hellos remembered, refusals counted."""

from __future__ import annotations

from gsomia.stream._gate import LinkGate


def test_a_source_holds_at_most_its_slots_and_gets_them_back() -> None:
    gate = LinkGate(per_source=2)
    assert gate.admit("10.0.0.1")
    assert gate.admit("10.0.0.1")
    assert not gate.admit("10.0.0.1")
    assert gate.admit("10.0.0.2")  # another source is not held up
    gate.release("10.0.0.1")
    assert gate.pending("10.0.0.1") == 1
    assert gate.admit("10.0.0.1")
    gate.release("10.0.0.2")
    assert gate.pending("10.0.0.2") == 0


def test_a_hello_is_fresh_once_within_its_memory_and_the_memory_is_bounded() -> None:
    gate = LinkGate(hello_memory_s=10, limit=3)
    assert gate.fresh_hello(b"a", now=0)
    assert not gate.fresh_hello(b"a", now=5)
    assert gate.fresh_hello(b"a", now=16)  # forgotten after its memory: the key confirmation still holds
    for hello in (b"b", b"c", b"d", b"e"):
        assert gate.fresh_hello(hello, now=17)
    assert len(gate._hellos) <= 3


def test_refusals_are_recorded_once_per_window_with_the_count_left_out() -> None:
    gate = LinkGate(window_s=60)
    assert gate.should_record("10.0.0.1", "handshake-timeout", now=0) == 0
    assert gate.should_record("10.0.0.1", "handshake-timeout", now=1) is None
    assert gate.should_record("10.0.0.1", "handshake-timeout", now=2) is None
    assert gate.should_record("10.0.0.1", "too-many-links", now=2) == 0  # another code: its own record
    assert gate.should_record("10.0.0.1", "handshake-timeout", now=61) == 2
