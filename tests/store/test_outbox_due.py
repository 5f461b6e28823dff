"""``FederationStore.due``, the delivery loop's read of the outbox every round, in each of its four
shapes (with or without the clock-put-back bound ``latest_us``, with or without the peers this
process delivers to), on SQLite and PostgreSQL: only pending entries, only those due, in order, at
most ``limit``; its queries are built once and given their values at each call, so one call's
values must never leak into the next."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from gsomia.store import FederationStore, OutboxRow, Store


@pytest.fixture
def fed(store_url: str) -> Iterator[FederationStore]:
    store = Store(store_url)
    store.migrate()
    f = FederationStore(store)
    base = OutboxRow(
        msg_id="",
        kind="item",
        item_id="",
        recipient="",
        final_recipient="",
        request="{}",
        decision='{"kept": "at release"}',
        envelope="envelope",
        state="pending",
        attempts=0,
        next_attempt_us=0,
        created_us=0,
        updated_us=0,
    )
    rows = [
        # (msg_id, recipient, state, next attempt)
        ("a", "JPN", "pending", 100),
        ("b", "USA", "pending", 200),
        ("c", "JPN", "delivered", 100),  # settled: never due
        ("d", "JPN", "pending", 5_000),  # a retry set ahead
        ("e", "USA", "pending", 10**9),  # set further ahead than any retry: the clock was put back
        ("f", "AUS", "undeliverable", 0),
        ("g", "AUS", "pending", 300),
    ]
    f.enqueue(
        [
            replace(
                base, msg_id=m, item_id=f"i-{m}", recipient=r, final_recipient=r, state=s, next_attempt_us=n
            )
            for m, r, s, n in rows
        ]
    )
    yield f
    store.close()


def _ids(rows: list[OutboxRow]) -> list[str]:
    return [r.msg_id for r in rows]


def test_each_shape_gives_the_pending_entries_due_in_order(fed: FederationStore) -> None:
    assert _ids(fed.due(250, 100)) == ["a", "b"]
    assert _ids(fed.due(10_000, 100)) == ["a", "b", "d", "g"]
    assert _ids(fed.due(250, 100, latest_us=1_000_000)) == ["a", "b", "e"]  # "e" is due: the clock went back
    assert _ids(fed.due(250, 100, recipients={"USA"})) == ["b"]
    assert _ids(fed.due(250, 100, latest_us=1_000_000, recipients={"USA", "AUS"})) == ["b", "e"]
    assert fed.due(10**10, 100, recipients=set()) == []  # no peer of this process's: nothing read


def test_one_calls_values_do_not_carry_into_the_next(fed: FederationStore) -> None:
    """The same built query, asked with other values each time, answers each call for its own."""
    assert _ids(fed.due(10**10, 1)) == ["a"]  # the limit
    assert _ids(fed.due(10**10, 3)) == ["a", "b", "d"]
    assert _ids(fed.due(0, 100)) == []
    assert _ids(fed.due(10**10, 100, recipients={"AUS"})) == ["g"]
    assert _ids(fed.due(10**10, 100, recipients={"JPN"})) == ["a", "d"]
    assert _ids(fed.due(150, 100, latest_us=10**10)) == ["a"]  # nothing beyond this bound
    assert _ids(fed.due(150, 100, latest_us=1_000)) == ["a", "d", "e"]


def test_a_due_entry_carries_no_decision_and_no_receipt(fed: FederationStore) -> None:
    """The delivery decides again at sending: the decision taken at release is not read."""
    (row,) = fed.due(150, 100)
    assert (row.msg_id, row.decision, row.receipt, row.envelope) == ("a", "", None, "envelope")
