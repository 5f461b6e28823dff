"""The receiver's side of a batch envelope (issue 18): what JPN stores and answers when a batch
mixes messages it took before with new ones, and when two processes of the node receive the same
batch at once on PostgreSQL. Exactly once in both: each item stored and audited once, each message
answered with the one receipt that names it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import POSTGRES_URL, network_schemas, require_postgres
from tests.exchange.test_exchange import KST_2024, Net, net
from tests.security.test_batch_envelopes import _captured_batch, _opened_body, _sealed_by

from gsomia.crypto.envelope import verify_origin
from gsomia.demo import network
from gsomia.exchange import MemoryTransport, receipt_entries
from gsomia.node import Node, load_config
from gsomia.testing import FakeClock

__all__ = ["net"]


def _receipts(answer: dict[str, Any]) -> list[str | None]:
    """The receipt each message of a batch's answer is given: its own, the batch's one receipt (a
    message taken now), or one of the answer's ``receipts`` (a duplicate, named by position)."""
    kept = answer.get("receipts", [])
    out: list[str | None] = []
    for result in answer["results"]:
        if "receipt_of" in result:
            out.append(kept[result["receipt_of"]])
        elif result["status"] in ("stored", "already-held"):
            out.append(result["receipt"] or answer["receipt"])
        else:
            out.append(result["receipt"])
    return out


def test_a_batch_mixing_seen_and_new_messages_stores_only_the_new_once(net: Net) -> None:
    """Messages taken before come back in one batch with new ones: the seen are answered with the
    receipt that named them the first time and stored nothing; the new are stored, audited and
    named by the new batch's receipt alone; the mixed batch replayed stores nothing more."""
    msg_ids, envelope = _captured_batch(net, ["m1", "m2", "m3", "m4"])
    body = _opened_body(net, envelope)
    messages = body["messages"]
    jpn = net.nodes["JPN"]
    (first,) = net.inbox("JPN", [_sealed_by(net, "KOR", {"kind": "batch", "messages": messages[:2]}, "b-1")])
    assert [r["status"] for r in first["results"]] == ["stored", "stored"]
    mixed = _sealed_by(
        net, "KOR", {"kind": "batch", "messages": [messages[1], messages[2], messages[0], messages[3]]}, "b-2"
    )
    (second,) = net.inbox("JPN", [mixed])
    assert [r["status"] for r in second["results"]] == ["duplicate", "stored", "duplicate", "stored"]
    receipts = _receipts(second)
    assert receipts[0] == receipts[2] == first["receipt"]  # the seen: their first receipt
    assert receipts[1] == receipts[3] == second["receipt"] != first["receipt"]
    kor = net.nodes["KOR"].exchange
    _, content = verify_origin(second["receipt"], kor.kernel.peers.peer, net.clock.now)
    assert sorted(receipt_entries(content, "JPN")[1]) == sorted([msg_ids[2], msg_ids[3]])  # the new only
    assert jpn.store.count_items() == 4
    assert sorted(r["msg_id"] for r in net.audit("JPN", "envelope.received")) == sorted(msg_ids)
    (again,) = net.inbox("JPN", [mixed])  # the mixed batch replayed
    assert [r["status"] for r in again["results"]] == ["duplicate"] * 4
    assert _receipts(again) == receipts
    assert jpn.store.count_items() == 4
    assert len(net.audit("JPN", "envelope.received")) == 4


def test_a_batch_mixing_a_forged_item_with_seen_and_new_ones_refuses_it_alone(net: Net) -> None:
    """A forged item (its originator's signature altered) beside a seen and a new one: refused and
    audited, never stored or receipted; the seen answered as before, the new stored once."""
    msg_ids, envelope = _captured_batch(net, ["f1", "f2", "f3"])
    messages = _opened_body(net, envelope)["messages"]
    (first,) = net.inbox("JPN", [_sealed_by(net, "KOR", {"kind": "batch", "messages": messages[:1]}, "f-1")])
    header, payload, signature = messages[1]["body"]["origin"].split(".")
    forged = {
        **messages[1],
        "body": {
            **messages[1]["body"],
            "origin": f"{header}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}",
        },
    }
    (answer,) = net.inbox(
        "JPN",
        [_sealed_by(net, "KOR", {"kind": "batch", "messages": [messages[0], forged, messages[2]]}, "f-2")],
    )
    assert [r["status"] for r in answer["results"]] == ["duplicate", "refused", "stored"]
    assert _receipts(answer)[0] == first["receipt"]
    assert _receipts(answer)[1] is None
    assert net.nodes["JPN"].store.existing_items(["f1", "f2", "f3"]) == {"f1", "f3"}
    refused = net.audit("JPN", "envelope.refused")[-1]
    assert (refused["msg_id"], refused["reason"]) == (msg_ids[1], "bad-origin-signature")
    assert sorted(r["msg_id"] for r in net.audit("JPN", "envelope.received")) == sorted(
        [msg_ids[0], msg_ids[2]]
    )


@pytest.fixture
def pg_net(tmp_path: Path, postgres_status: str | None) -> Iterator[tuple[Net, Node]]:
    """The three-nation network on PostgreSQL, and a second JPN node on JPN's store (a second
    process of the node: its own connections and caches)."""
    require_postgres(postgres_status)
    directory = tmp_path / "net"
    with network_schemas(directory):
        clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))
        members = network.build(
            directory, clock=clock, database_urls=network.schema_urls(POSTGRES_URL, directory)
        )
        clock.now = KST_2024
        nodes = network.open_nodes(members, clock)
        second = Node(load_config(members[1].directory), clock=clock)
        try:
            yield Net(nodes, members, clock, MemoryTransport(nodes)), second
        finally:
            second.close()
            for node in nodes.values():
                node.close()


def test_two_processes_receiving_one_batch_at_once_store_it_once(pg_net: tuple[Net, Node]) -> None:
    """The same batch envelope reaches two processes of JPN at the same instant (a sender's retry
    through another load-balanced process): each item is stored and audited once, and both answers
    give every message the same receipt."""
    net, second = pg_net
    ids = [f"c{n}" for n in range(30)]
    msg_ids, envelope = _captured_batch(net, ids)
    first = net.nodes["JPN"]
    start = threading.Barrier(2)
    answers: dict[str, Any] = {}

    def receive(name: str, node: Node) -> None:
        start.wait()
        (answers[name],) = node.inbox([envelope])

    threads = [threading.Thread(target=receive, args=pair) for pair in (("a", first), ("b", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert set(answers) == {"a", "b"}
    a, b = _receipts(answers["a"]), _receipts(answers["b"])
    assert None not in a
    assert a == b
    assert len(set(a)) == 1  # the one batch receipt, whichever process wrote it
    kor = net.nodes["KOR"].exchange
    _, content = verify_origin(a[0], kor.kernel.peers.peer, net.clock.now)
    assert sorted(receipt_entries(content, "JPN")[1]) == sorted(msg_ids)
    statuses = sorted(r["status"] for answer in answers.values() for r in answer["results"])
    assert statuses == ["duplicate"] * 30 + ["stored"] * 30
    assert first.store.count_items() == 30
    assert sorted(r["msg_id"] for r in net.audit("JPN", "envelope.received")) == sorted(msg_ids)
