"""What a caller nobody has authenticated can make the node store is bounded (issue 15 §2).

Before: ``POST /inbox`` with 1,000 junk envelopes wrote 1,000 permanent audit records, and every
401 was one more; the Merkle log cannot be pruned. Now, per kind of refusal, source address and
code (an envelope's refusal code, an HTTP status) and per minute, the first ``REFUSALS_RECORDED``
are records of their own and the rest a count; when the minute has closed, one ``refusal.tally``
record says how many, from whom, when, with a sample. Each test here is the flood an adversary
would send; each ends with the log verifying.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from tests.node_fixtures import through_app as flood

from gsomia.kernel import NodeContext
from gsomia.node import Node
from gsomia.node._config import update_settings
from gsomia.testing import FakeClock, make_node

RECORDED = NodeContext.REFUSALS_RECORDED
SOURCES = NodeContext.REFUSAL_SOURCES


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def unlimited_node(directory: Path, store_url: str, clock: FakeClock) -> Node:
    """A node whose sources' budgets (tests/security/test_rate_limit.py) are out of these floods'
    reach: what is measured here is what the audit log keeps of refusals, not the 429s after them."""
    make_node(directory, "JPN", database_url=store_url, clock=clock).close()
    update_settings(directory, public_rate_limit="10000000/minute")
    return Node.open(directory, clock=clock)


@pytest.fixture
def node(tmp_path: Path, store_url: str, clock: FakeClock) -> Iterator[Node]:
    n = unlimited_node(tmp_path / "jpn", store_url, clock)
    yield n
    n.close()


def records(node: Node, kind: str) -> list[dict[str, Any]]:
    return [
        {"subject": r.subject, "actor": r.actor, **json.loads(r.detail)}
        for r in node.store.audit(kind=kind, limit=1_000_000)
    ]


def close_the_minute(node: Node, clock: FakeClock) -> list[dict[str, Any]]:
    """What the node's loop does once the window is over; the tallies it wrote."""
    clock.advance(seconds=61)
    node.kernel.close_refusal_tallies()
    return records(node, "refusal.tally")


def tallies_left(node: Node) -> int:
    with node.store.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM refusal_tallies").scalar_one())


def assert_log_verifies(node: Node) -> None:
    node.audit.sign_head()
    report = node.audit.verify()
    assert report.ok, report.problem
    assert report.pending == 0


def junk(n: int) -> dict[str, Any]:
    return {"json": {"envelopes": [f"junk.{secrets.token_hex(8)}.x.y.z" for _ in range(n)]}}


def test_twenty_posts_of_a_thousand_junk_envelopes_cost_a_few_records_and_one_tally(
    node: Node, clock: FakeClock
) -> None:
    before = node.store.audit(limit=1_000_000)
    answers = flood(node, [("203.0.113.7", "POST", "/inbox", junk(1000)) for _ in range(20)])
    for answer in answers:
        assert answer.status_code == 200
        results = answer.json()["results"]
        assert len(results) == 1000
        assert {r["status"] for r in results} == {"refused"}
        assert {r["reason"] for r in results} == {"envelope refused"}  # the sender learns nothing more
    grown = node.store.audit(limit=1_000_000)[len(before) :]
    assert len(grown) == RECORDED  # not 20,000
    refused = records(node, "envelope.refused")
    assert all(r["source"] == "203.0.113.7" and r["reason"] == "malformed" for r in refused)
    (tally,) = close_the_minute(node, clock)
    assert tally["subject"] == "envelope.refused"
    assert (tally["source"], tally["code"], tally["count"]) == ("203.0.113.7", "malformed", 20_000)
    assert tally["recorded"] == RECORDED
    assert tally["sample"] == "malformed"
    assert tallies_left(node) == 0  # the count itself is forgotten once recorded
    assert node.kernel.close_refusal_tallies() == 0  # a window is closed once
    assert_log_verifies(node)


def test_a_thousand_bad_tokens_are_counted_not_recorded_one_by_one(node: Node, clock: FakeClock) -> None:
    before = len(node.store.audit(limit=1_000_000))
    wrong = [
        ("198.51.100.9", "GET", "/items", {"headers": {"Authorization": f"Bearer {secrets.token_hex(16)}"}})
        for _ in range(600)
    ]
    missing = [("198.51.100.9", "GET", "/people", {}) for _ in range(400)]
    answers = flood(node, wrong + missing)
    assert {a.status_code for a in answers} == {401}
    grown = node.store.audit(limit=1_000_000)[before:]
    assert {r.kind for r in grown} == {"auth"}  # answered once, not again as api.refused
    assert len(grown) == RECORDED  # one source, one code ("token"): the first few, then a count
    assert "no bearer token" not in " ".join(r.detail for r in grown)  # the 401s after are counted
    (tally,) = close_the_minute(node, clock)
    assert (tally["subject"], tally["source"], tally["code"], tally["count"]) == (
        "auth",
        "198.51.100.9",
        "token",
        1000,
    )
    assert_log_verifies(node)


def test_a_flood_from_many_addresses_is_bounded_too_and_every_refusal_is_accounted_for(
    node: Node, clock: FakeClock
) -> None:
    addresses = [f"10.{i // 250}.{i % 250}.1" for i in range(300)]
    before = len(node.store.audit(limit=1_000_000))
    flood(node, [(a, "POST", "/inbox", junk(3)) for a in addresses])
    grown = node.store.audit(limit=1_000_000)[before:]
    assert len(grown) <= (SOURCES + 1) * RECORDED  # whatever the number of addresses
    tallies = close_the_minute(node, clock)
    # every one of the 900 refusals is in the log: a record of its own, or in a tally's count
    counted = {t["source"]: t["count"] for t in tallies}
    own: dict[str, int] = {}
    for r in records(node, "envelope.refused"):
        own[r["source"]] = own.get(r["source"], 0) + 1
    total = sum(counted.values()) + sum(n for s, n in own.items() if s not in counted)
    assert total == 900
    assert counted["*"] == 3 * (300 - SOURCES)  # the addresses beyond the cap, counted together
    assert len([s for s in own if s != "*"]) == SOURCES
    beyond = [r for r in records(node, "envelope.refused") if r["source"] == "*"]
    assert {r["address"] for r in beyond} <= set(addresses[SOURCES:])  # who it came from, still
    assert_log_verifies(node)


def test_unknown_routes_and_bad_input_from_one_address_are_bounded(node: Node, clock: FakeClock) -> None:
    before = len(node.store.audit(limit=1_000_000))
    nowhere = [("192.0.2.1", "GET", f"/x{secrets.token_hex(6)}", {}) for _ in range(200)]
    malformed = [("192.0.2.1", "GET", "/audit/inclusion", {"params": {"entry": "no"}}) for _ in range(200)]
    too_many = [("192.0.2.1", "POST", "/inbox", junk(1001)) for _ in range(3)]  # over the per-request bound
    answers = flood(node, nowhere + malformed + too_many)
    assert [a.status_code for a in answers] == [404] * 200 + [422] * 203
    grown = node.store.audit(limit=1_000_000)[before:]
    assert {r.kind for r in grown} == {"api.refused"}
    assert len(grown) == 2 * RECORDED  # two codes (404, 422): the first few of each
    tallies = close_the_minute(node, clock)
    assert sorted((t["code"], t["count"]) for t in tallies) == [("404", 200), ("422", 203)]
    assert_log_verifies(node)


def test_two_processes_of_one_node_share_one_count(tmp_path: Path, store_url: str, clock: FakeClock) -> None:
    """The count lives in the store: another process of the node (here a second Node on the same
    database) adds to the same row, and the bound holds for the node, not per process."""
    first = unlimited_node(tmp_path / "jpn", store_url, clock)
    second = Node.open(tmp_path / "jpn", clock=clock, migrate=False)
    try:
        for node in (first, second, first, second):
            flood(node, [("203.0.113.99", "POST", "/inbox", junk(25))])
        assert len(records(first, "envelope.refused")) == RECORDED
        (tally,) = close_the_minute(second, clock)
        assert tally["count"] == 100
        assert first.kernel.close_refusal_tallies() == 0
        assert_log_verifies(first)
    finally:
        second.close()
        first.close()


def test_a_refusal_from_no_network_source_is_still_a_record_of_its_own(node: Node) -> None:
    """The operator's own calls (in-process, a file import) are not a flood to bound."""
    before = len(records(node, "envelope.refused"))
    results = node.inbox([f"junk.{n}" for n in range(15)])
    assert {r["status"] for r in results} == {"refused"}
    assert len(records(node, "envelope.refused")) == before + 15


def test_the_tally_table_holds_nothing_a_caller_can_grow_without_bound(node: Node, clock: FakeClock) -> None:
    """Between closes the rows are bounded too: per kind, code and window, SOURCES + 1."""
    flood(node, [(f"10.9.{i}.1", "POST", "/inbox", junk(1)) for i in range(100)])
    assert tallies_left(node) == SOURCES + 1
    with node.store.engine.connect() as conn:
        sources = {r[0] for r in conn.execute(sqlalchemy.text("SELECT source FROM refusal_tallies"))}
    assert "*" in sources
    close_the_minute(node, clock)
    assert tallies_left(node) == 0


def test_a_round_with_no_closed_window_does_not_wait_for_the_writers_lock(
    tmp_path: Path, clock: FakeClock
) -> None:
    # SQLite: another process's writer holds the database lock; the loop's round that has nothing to
    # close returns at once (it took that lock every round before, and waited behind the writer)
    import sqlite3
    import threading

    n = unlimited_node(tmp_path / "jpn", f"sqlite:///{tmp_path / 'lock.db'}", clock)
    try:
        wrong = {"headers": {"Authorization": f"Bearer {secrets.token_hex(16)}"}}
        flood(n, [("198.51.100.9", "GET", "/items", wrong) for _ in range(RECORDED + 5)])
        assert tallies_left(n) == 1  # this window's count: open, nothing to close yet
        other = sqlite3.connect(tmp_path / "lock.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        done: list[int] = []
        worker = threading.Thread(target=lambda: done.append(n.kernel.close_refusal_tallies()))
        try:
            worker.start()
            worker.join(timeout=2)
            assert done == [0], "the round waited for the writer's lock with nothing to close"
        finally:
            other.execute("ROLLBACK")
            other.close()
            worker.join()
        assert tallies_left(n) == 1
        # once the window has closed, the round closes it: one tally record, the count forgotten
        (tally,) = close_the_minute(n, clock)
        assert (tally["source"], tally["count"]) == ("198.51.100.9", RECORDED + 5)
        assert tallies_left(n) == 0
        assert_log_verifies(n)
    finally:
        n.close()
