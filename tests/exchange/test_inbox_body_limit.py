"""A push never exceeds what the partner's ``/inbox`` takes (its API's body limit, HTTP 413).

The sender cut its batches by count alone (100 outbox entries a push, a run of items in one batch
envelope), so when many messages were due at once (tree heads and relay receipts piling up at a hub
on a loaded machine) one push was larger than the partner's limit: refused with 413, retried with
back-off, refused again, for ever, while more piled up. Now a push is cut to fit the limit this
node's configuration gives (the partners' alike), a push the partner still refuses for its size is
sent again in halves (and the partner's smaller limit kept), and a message too large alone for the
partner is undeliverable with the reason, never retried. Real HTTP (the API's own body limit),
the senders' store on SQLite and PostgreSQL; each message reaches the partner once.

A partner's smaller limit, once learnt, is the store's: another process of the sending node (or the
same after a restart) cuts its pushes to it at once. Before, each process learnt it from a refusal of
its own (a push of up to the node's own limit sent and refused, batch envelopes' items sent again)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.conftest import postgres_schema
from tests.node_fixtures import kor_label

from gsomia.audit import HEAD_KIND
from gsomia.demo import network
from gsomia.exchange import HttpTransport
from gsomia.node import Node
from gsomia.node._config import load_config
from gsomia.testing import FakeClock

NOW = datetime(2024, 3, 1, tzinfo=UTC)
SMALL = 8192  # max_payload_bytes: an inbox of 80 KiB, so a hundred small messages exceed it


@dataclass
class Net:
    nodes: dict[str, Node]
    clock: FakeClock
    transport: HttpTransport

    def release(self, item_id: str, size: int) -> str:
        kor = self.nodes["KOR"]
        officer = kor.people.person("officer")
        label = kor_label(created=(self.clock.now - timedelta(hours=1)).isoformat())
        payload = json.dumps({"track": item_id, "pad": "x" * size}).encode()
        kor.items.ingest(officer, label=label, payload=payload, item_id=item_id)
        return kor.exchange.release(officer, item_id, "JPN").msg_id

    def refused_for_size(self, party: str) -> int:
        """How many requests ``party``'s API refused for their size (audited as ``api.refused``)."""
        return sum(1 for r in self.nodes[party].store.audit(kind="api.refused") if "413" in (r.detail or ""))


def _net(directory: Path, urls: dict[str, str] | None, limits: dict[str, int]) -> Iterator[Net]:
    clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))
    members = network.build(directory, clock=clock, database_urls=urls)
    for member in members:
        if member.party in limits:
            config = member.directory / "node.toml"
            text = config.read_text(encoding="utf-8")
            assert "\nmax_payload_bytes = 1048576\n" in text
            text = text.replace(
                "\nmax_payload_bytes = 1048576\n", f"\nmax_payload_bytes = {limits[member.party]}\n"
            )
            config.write_text(text, encoding="utf-8")
    clock.now = NOW
    nodes = network.open_nodes(members, clock)
    try:
        with HttpTransport(timeout=60) as transport, network.serve_in_threads(nodes, members):
            yield Net(nodes, clock, transport)
    finally:
        for node in nodes.values():
            node.close()


def _nets(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_status: str | None, limits: dict[str, int]
) -> Iterator[Net]:
    if request.param == "sqlite":
        yield from _net(tmp_path / "net", None, limits)
        return
    with postgres_schema(postgres_status) as kor, postgres_schema(postgres_status) as jpn:
        yield from _net(tmp_path / "net", {"KOR": kor, "JPN": jpn}, limits)


@pytest.fixture(params=["sqlite", "postgresql"])
def alike(request: pytest.FixtureRequest, tmp_path: Path, postgres_status: str | None) -> Iterator[Net]:
    """Every node with the same small payload limit (so the same inbox limit)."""
    yield from _nets(request, tmp_path, postgres_status, {"KOR": SMALL, "JPN": SMALL, "USA": SMALL})


@pytest.fixture(params=["sqlite", "postgresql"])
def smaller(request: pytest.FixtureRequest, tmp_path: Path, postgres_status: str | None) -> Iterator[Net]:
    """JPN takes less than KOR's configuration gives: KOR learns it from JPN's refusals."""
    yield from _nets(request, tmp_path, postgres_status, {"JPN": SMALL})


def _tree_heads(net: Net, count: int) -> list[str]:
    """``count`` tree-head messages from KOR to JPN due at once (as pile up while a sender waits)."""
    kor = net.nodes["KOR"]
    head = kor.audit.sign_head()
    peer = kor.exchange.peer("JPN")
    assert peer is not None
    rows = [
        kor.exchange.queue(peer, {"kind": HEAD_KIND, "head": head.jws}, HEAD_KIND, None, net.clock.now)
        for _ in range(count)
    ]
    kor.exchange.enqueue(rows)
    return [r.msg_id for r in rows]


def _states(net: Net, msg_ids: list[str]) -> list[str]:
    entries = [net.nodes["KOR"].exchange.outbox_entry(m) for m in msg_ids]
    return [e.state if e is not None else "missing" for e in entries]


def _received_once(net: Net, msg_ids: list[str]) -> bool:
    """Each message in JPN's inbox (one row per message id: taken once), from KOR."""
    held = net.nodes["JPN"].kernel.fed.inbox_entries(msg_ids)
    return sorted(held) == sorted(msg_ids) and {r.sender for r in held.values()} == {"KOR"}


def test_many_tree_heads_due_at_once_go_in_pushes_the_inbox_takes(alike: Net) -> None:
    msg_ids = _tree_heads(alike, 100)  # one count-cut push of these is well over JPN's 80 KiB
    sent = alike.nodes["KOR"].exchange.deliver_due(alike.transport)
    assert {d.state for d in sent} == {"delivered"}, {d.detail for d in sent}
    assert set(_states(alike, msg_ids)) == {"delivered"}
    assert _received_once(alike, msg_ids)
    assert alike.refused_for_size("JPN") == 0  # cut to fit before it left: none refused


def test_a_run_of_items_is_cut_into_batch_envelopes_the_inbox_takes(alike: Net) -> None:
    msg_ids = [alike.release(f"big-{n}", 3000) for n in range(40)]  # one batch envelope: ~160 KB
    sent = alike.nodes["KOR"].exchange.deliver_due(alike.transport)
    assert {d.state for d in sent} == {"delivered"}, {d.detail for d in sent}
    assert set(_states(alike, msg_ids)) == {"delivered"}
    jpn = alike.nodes["JPN"]
    assert all(jpn.store.item_of("KOR", f"big-{n}") is not None for n in range(40))
    assert alike.refused_for_size("JPN") == 0


def test_a_partner_with_a_smaller_limit_gets_halves_and_a_message_too_large_is_undeliverable(
    smaller: Net,
) -> None:
    kor = smaller.nodes["KOR"]
    heads = _tree_heads(smaller, 100)  # within KOR's own limit, over JPN's
    assert {d.state for d in kor.exchange.deliver_due(smaller.transport)} == {"delivered"}
    assert set(_states(smaller, heads)) == {"delivered"}
    assert _received_once(smaller, heads)
    refused = smaller.refused_for_size("JPN")
    assert refused >= 1  # refused once whole, then sent again in halves
    # JPN's smaller limit learnt: the next heads are cut to fit it before they leave
    more = _tree_heads(smaller, 100)
    assert {d.state for d in kor.exchange.deliver_due(smaller.transport)} == {"delivered"}
    assert _received_once(smaller, more)
    assert smaller.refused_for_size("JPN") == refused
    # a message too large alone for JPN (KOR takes it): refused for its size is final, not a retry
    too_large = smaller.release("huge", 120_000)
    (sent,) = kor.exchange.deliver_due(smaller.transport)
    assert (sent.msg_id, sent.state) == (too_large, "undeliverable")
    entry = kor.exchange.outbox_entry(too_large)
    assert entry is not None
    assert entry.state == "undeliverable"
    assert "too large" in (entry.last_error or "")
    assert smaller.nodes["JPN"].store.item_of("KOR", "huge") is None
    smaller.clock.advance(minutes=30)  # past any back-off: nothing of it is due again
    assert kor.exchange.deliver_due(smaller.transport) == []


def test_another_process_of_the_sender_cuts_to_the_limit_learnt_without_a_refusal(smaller: Net) -> None:
    kor = smaller.nodes["KOR"]
    heads = _tree_heads(smaller, 100)  # within KOR's own limit, over JPN's: learnt by this process
    assert {d.state for d in kor.exchange.deliver_due(smaller.transport)} == {"delivered"}
    refused = smaller.refused_for_size("JPN")
    assert refused >= 1
    assert _received_once(smaller, heads)
    # a second process of KOR (its own memory, the same store) delivers the next ones
    other = Node(load_config(kor.config.directory), clock=smaller.clock)
    try:
        more = _tree_heads(smaller, 100)
        assert {d.state for d in other.exchange.deliver_due(smaller.transport)} == {"delivered"}
        assert _received_once(smaller, more)
        assert smaller.refused_for_size("JPN") == refused, "the other process learnt it again by a refusal"
        # the limit is kept while refusals come; a day after the last, it is tried again (learnt again)
        smaller.clock.advance(days=1, seconds=1)
        later = _tree_heads(smaller, 100)
        assert {d.state for d in other.exchange.deliver_due(smaller.transport)} == {"delivered"}
        assert _received_once(smaller, later)
        assert smaller.refused_for_size("JPN") > refused
    finally:
        other.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def default(request: pytest.FixtureRequest, tmp_path: Path, postgres_status: str | None) -> Iterator[Net]:
    """Every node with the default payload limit (1 MiB), where the inbox's slack is small beside it."""
    yield from _nets(request, tmp_path, postgres_status, {})


@pytest.mark.parametrize("text", ["x", "\u00e9"], ids=["ascii", "two-byte"])
def test_an_item_as_large_as_the_node_takes_reaches_a_partner_of_the_same_limit(
    default: Net, text: str
) -> None:
    """An item of exactly ``max_payload_bytes`` (the most ingest takes) is base64 three times over on
    its way to the wire (the item's payload, the originator's JWS, the hop envelope's text): (4/3)^3,
    ~2.37x. The inbox took a payload twice over (and 64 KiB), so such an item was refused for its
    size at every try and undeliverable: 2,487,296 bytes against 2,162,688."""
    kor = default.nodes["KOR"]
    limit = kor.config.max_payload_bytes
    empty = len(json.dumps({"pad": ""}).encode())
    payload = json.dumps({"pad": text * ((limit - empty) // len(text.encode()))}, ensure_ascii=False).encode()
    assert limit - len(text.encode()) < len(payload) <= limit
    officer = kor.people.person("officer")
    label = kor_label(created=(default.clock.now - timedelta(hours=1)).isoformat())
    kor.items.ingest(officer, label=label, payload=payload, item_id="largest")
    msg_id = kor.exchange.release(officer, "largest", "JPN").msg_id
    (sent,) = kor.exchange.deliver_due(default.transport)
    assert (sent.msg_id, sent.state) == (msg_id, "delivered"), sent.detail
    assert default.nodes["JPN"].store.item_of("KOR", "largest") is not None
    assert default.refused_for_size("JPN") == 0


def test_a_batch_envelope_too_large_for_a_partner_goes_again_in_smaller_ones(smaller: Net) -> None:
    """A run of items KOR seals as one batch envelope (within KOR's own limit) that JPN's smaller inbox
    refuses alone for its size: its items went again in the very same batch, refused again at every
    try, for ever. JPN's refusal now sets the size KOR cuts its batches to for JPN (half the refused
    push), so they arrive within a few tries, each once."""
    kor = smaller.nodes["KOR"]
    msg_ids = [smaller.release(f"run-{n}", 3000) for n in range(40)]  # one batch envelope: ~160 KB
    for _ in range(6):
        kor.exchange.deliver_due(smaller.transport)
        if set(_states(smaller, msg_ids)) == {"delivered"}:
            break
        smaller.clock.advance(minutes=30)  # past any back-off
    assert set(_states(smaller, msg_ids)) == {"delivered"}
    jpn = smaller.nodes["JPN"]
    assert all(jpn.store.item_of("KOR", f"run-{n}") is not None for n in range(40))
    assert 1 <= smaller.refused_for_size("JPN") <= 3
