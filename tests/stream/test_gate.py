"""The link gate's bookkeeping on its own (slots per source, hellos remembered), and the bounded
records of the refusals before authentication, which are the store's (every process's)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gsomia.errors import LinkError
from gsomia.kernel import NodeContext
from gsomia.stream import StreamService
from gsomia.stream._gate import LinkGate
from gsomia.testing import FakeClock, make_node


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


def test_refusals_before_authentication_are_bounded_across_processes(tmp_path: Path, store_url: str) -> None:
    """Two processes of JPN's node (each its own gate) refuse 12 malformed hellos from one address
    within a minute, taking turns: the store's tally bounds them for the node, not per process. 10
    are records of their own (naming the source), and once the minute has closed one
    ``refusal.tally`` counts all 12. Before, each process kept its own count in memory: a record a
    process and minute, so as many as the node had processes, and the count of the rest was lost
    with the process (no tally record at all)."""
    clock = FakeClock()
    jpn = make_node(tmp_path / "jpn", "JPN", database_url=store_url, clock=clock)

    async def refuse_twelve() -> set[str]:
        processes = [StreamService(jpn), StreamService(jpn)]
        codes = set()

        hellos = iter(b"not a hello %d" % n for n in range(12))  # each new: no replayed hello

        async def receive() -> bytes:
            return next(hellos)

        async def send(_: bytes) -> None:
            raise AssertionError("a malformed hello is never answered")

        for n in range(12):
            with pytest.raises(LinkError) as refused:
                await processes[n % 2].serve_link(receive, send, "192.0.2.50")
            codes.add(refused.value.detail)
        for process in processes:
            await process.close()
        return codes

    try:
        assert asyncio.run(refuse_twelve()) == {"malformed"}
        records = [json.loads(r.detail) for r in jpn.store.audit(kind="stream.link", limit=100)]
        assert len(records) == NodeContext.REFUSALS_RECORDED
        assert {(d["source"], d["error"]) for d in records} == {("192.0.2.50", "malformed")}
        clock.advance(seconds=NodeContext.REFUSAL_WINDOW_S)
        jpn.kernel.close_refusal_tallies()
        tallies = [json.loads(r.detail) for r in jpn.store.audit(kind="refusal.tally", limit=100)]
        assert [(d["source"], d["code"], d["count"]) for d in tallies] == [("192.0.2.50", "malformed", 12)]
    finally:
        jpn.close()
