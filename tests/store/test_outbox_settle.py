"""Settling outbox entries in one batch (``FederationStore.settle_many``), on SQLite and PostgreSQL:
each entry is a compare-and-set, so an entry that moved on while it was in flight is left as it is
and the others of the same batch are still written (the batch is one ``UPDATE``, over arrays on
PostgreSQL and a ``VALUES`` list on SQLite, each row its own compare-and-set, whose ``RETURNING``
tells which entries were written)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace

import pytest

from gsomia.store import AuditRow, FederationStore, OutboxRow, Store


@pytest.fixture
def fed(store_url: str) -> Iterator[FederationStore]:
    store = Store(store_url)
    store.migrate()
    yield FederationStore(store)
    store.close()


def _entry(n: int) -> OutboxRow:
    return OutboxRow(
        msg_id=f"m{n}",
        kind="item",
        item_id=f"i{n}",
        recipient="JPN",
        final_recipient="JPN",
        request="{}",
        decision="{}",
        envelope=f"envelope-{n}",
        state="pending",
        attempts=0,
        next_attempt_us=0,
        created_us=0,
        updated_us=0,
    )


def _delivered(entry: OutboxRow) -> dict[str, object]:
    return {
        "msg_id": entry.msg_id,
        "expected": entry,
        "state": "delivered",
        "attempts": entry.attempts + 1,
        "next_attempt_us": entry.next_attempt_us,
        "receipt": f"receipt-{entry.msg_id}",
    }


def _retry(entry: OutboxRow) -> dict[str, object]:
    return {
        "msg_id": entry.msg_id,
        "expected": entry,
        "state": "pending",
        "attempts": entry.attempts + 1,
        "next_attempt_us": 5,
        "last_error": "down",
    }


def test_a_batch_settles_every_entry_still_as_it_was_read(fed: FederationStore) -> None:
    entries = [_entry(n) for n in range(5)]
    fed.enqueue(entries)
    written = fed.settle_many([_delivered(e) for e in entries], now_us=10)
    assert written == [e.msg_id for e in entries]
    for e in entries:
        row = fed.outbox_entry(e.msg_id)
        assert row is not None
        assert (row.state, row.attempts, row.receipt, row.updated_us) == (
            "delivered",
            1,
            f"receipt-{e.msg_id}",
            10,
        )
        assert row.envelope == e.envelope  # no envelope given: the one sealed is kept


def test_an_entry_that_moved_on_in_flight_is_not_put_back_and_the_rest_are_written(
    fed: FederationStore,
) -> None:
    entries = [_entry(n) for n in range(4)]
    fed.enqueue(entries)
    # a recall cancels entry 1 while the batch is in flight
    fed.settle_many(
        [
            {
                "msg_id": "m1",
                "state": "cancelled",
                "attempts": 0,
                "next_attempt_us": 0,
                "last_error": "recalled",
            }
        ],
        now_us=3,
    )
    written = fed.settle_many([_retry(e) for e in entries], now_us=10)
    assert written == ["m0", "m2", "m3"]
    moved = fed.outbox_entry("m1")
    assert moved is not None
    assert (moved.state, moved.last_error) == ("cancelled", "recalled")
    for msg_id in written:
        row = fed.outbox_entry(msg_id)
        assert row is not None
        assert (row.state, row.attempts, row.next_attempt_us) == ("pending", 1, 5)


def test_a_receipt_for_an_entry_that_moved_on_still_marks_it_delivered(fed: FederationStore) -> None:
    entries = [_entry(n) for n in range(3)]
    fed.enqueue(entries)
    fed.settle_many(
        [
            {
                "msg_id": "m2",
                "state": "cancelled",
                "attempts": 0,
                "next_attempt_us": 0,
                "last_error": "recalled",
            }
        ],
        now_us=3,
    )
    written = fed.settle_many([_delivered(e) for e in entries], now_us=10)
    assert written == ["m0", "m1", "m2"]  # the receiver signed for it: it holds the item
    late = fed.outbox_entry("m2")
    assert late is not None
    assert (late.state, late.receipt, late.last_error) == ("delivered", "receipt-m2", "recalled")


def test_an_outcome_against_a_stale_envelope_is_not_written(fed: FederationStore) -> None:
    entries = [_entry(n) for n in range(3)]
    fed.enqueue(entries)
    stale = replace(entries[0], envelope="an-envelope-re-sealed-since")
    written = fed.settle_many([_retry(stale), _retry(entries[1]), _retry(entries[2])], now_us=10)
    assert written == ["m1", "m2"]
    kept = fed.outbox_entry("m0")
    assert kept is not None
    assert (kept.attempts, kept.last_error) == (0, None)


def test_a_batch_mixing_unchecked_outcomes_settles_each_by_its_own_rule(fed: FederationStore) -> None:
    entries = [_entry(n) for n in range(4)]
    fed.enqueue(entries)
    stale = replace(entries[2], attempts=7)  # read at another attempt: its compare-and-set fails
    unchecked = {
        "msg_id": "m3",
        "state": "undeliverable",
        "attempts": 9,
        "next_attempt_us": 0,
        "last_error": "x",
    }
    outcomes = [_delivered(entries[0]), _retry(entries[1]), _retry(stale), unchecked]
    assert fed.settle_many(outcomes, now_us=10) == ["m0", "m1", "m3"]
    states = {e.msg_id: fed.outbox_entry(e.msg_id) for e in entries}
    assert {k: (r.state, r.attempts) for k, r in states.items() if r is not None} == {
        "m0": ("delivered", 1),
        "m1": ("pending", 1),
        "m2": ("pending", 0),
        "m3": ("undeliverable", 9),
    }


def test_the_same_entry_twice_in_a_batch_settles_in_order(fed: FederationStore) -> None:
    # a batch naming one entry twice cannot be one statement (one row, two outcomes): one by one,
    # the second compare-and-set sees the first's write, as on SQLite
    entry = _entry(0)
    fed.enqueue([entry, _entry(1)])
    written = fed.settle_many([_retry(entry), _retry(entry), _retry(_entry(1))], now_us=10)
    assert written == ["m0", "m0", "m1"]  # each outcome of an entry written, as listed
    row = fed.outbox_entry("m0")
    assert row is not None
    assert (row.state, row.attempts) == ("pending", 1)


def test_a_batch_over_several_statements_keeps_each_entrys_compare_and_set(
    fed: FederationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18: SQLite settles a batch in statements of at most ``_SQLITE_SETTLE_ROWS`` rows (two
    here); an entry that moved on in flight, in any of them, is left as it is, and a receipt for it
    still marks it delivered, while every other entry is written once."""
    from gsomia.store import _federation

    monkeypatch.setattr(_federation, "_SQLITE_SETTLE_ROWS", 2)
    entries = [_entry(n) for n in range(5)]
    fed.enqueue(entries)
    cancelled = {"state": "cancelled", "attempts": 0, "next_attempt_us": 0, "last_error": "recalled"}
    fed.settle_many([{"msg_id": "m3", **cancelled}, {"msg_id": "m4", **cancelled}], now_us=3)
    outcomes = [_delivered(e) for e in entries[:4]] + [_retry(entries[4])]
    written = fed.settle_many(outcomes, now_us=10)
    assert written == ["m0", "m1", "m2", "m3"]  # m3 late (its receipt counts), m4 not put back
    states = {e.msg_id: fed.outbox_entry(e.msg_id) for e in entries}
    assert {m: (r.state if r else None) for m, r in states.items()} == {
        "m0": "delivered", "m1": "delivered", "m2": "delivered", "m3": "delivered", "m4": "cancelled",
    }  # fmt: skip
    late = states["m3"]
    assert late is not None
    assert (late.last_error, late.receipt) == ("recalled", "receipt-m3")


def _by_batch_receipt(entry: OutboxRow) -> dict[str, object]:
    """A delivered outcome on a batch's one receipt (stored once in ``receipts``, named by its key)."""
    return {**_delivered(entry), "receipt": "the-batch-receipt", "receipt_id": "b" * 64}


def _as_queued(fed: FederationStore, entries: list[OutboxRow]) -> None:
    """Every entry still as it was queued: pending, not tried, no receipt, and no batch receipt stored."""
    for e in entries:
        row = fed.outbox_entry(e.msg_id)
        assert row is not None
        assert (row.state, row.attempts, row.receipt) == ("pending", 0, None)
    with fed.store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM receipts").scalar_one() == 0


def test_a_batch_settlement_that_fails_before_its_commit_writes_nothing(fed: FederationStore) -> None:
    """The new states, the batch receipt, the inventory and the audit records are ONE transaction: a
    failure after the batch's ``UPDATE`` (here the records ``then`` makes) leaves every entry as it
    was. On SQLite the batch's ``WITH v(...) AS (VALUES ...) UPDATE`` is no DML to Python's sqlite3
    (it opens its implicit transaction before INSERT/UPDATE/DELETE/REPLACE only), so it committed
    alone: the entries were delivered, naming a receipt never stored (the crash test's one failure:
    a delivered entry without its receipt)."""
    entries = [_entry(n) for n in range(3)]
    fed.enqueue(entries)

    def fail(_written: object) -> list[AuditRow]:
        raise RuntimeError("the process dies here")

    with pytest.raises(RuntimeError):
        fed.settle_many([_by_batch_receipt(e) for e in entries], now_us=10, then=fail)
    _as_queued(fed, entries)
    assert fed.settle_many([_by_batch_receipt(e) for e in entries], now_us=11) == ["m0", "m1", "m2"]
    for e in entries:
        row = fed.outbox_entry(e.msg_id)
        assert row is not None
        assert (row.state, row.receipt) == ("delivered", "the-batch-receipt")


_KILLED_IN_THE_SETTLEMENT = """
import os, signal, sys
from gsomia.store import FederationStore, Store

fed = FederationStore(Store(sys.argv[1]))
outcomes = [
    {"msg_id": e.msg_id, "expected": e, "state": "delivered", "attempts": 1, "next_attempt_us": 0,
     "receipt": "the-batch-receipt", "receipt_id": "b" * 64}
    for e in fed.outbox()
]
fed.settle_many(outcomes, now_us=10, then=lambda written: os.kill(os.getpid(), signal.SIGKILL))
"""


def test_a_sender_killed_in_the_middle_of_settling_a_batch_left_no_entry_delivered(
    fed: FederationStore, store_url: str
) -> None:
    """The crash test's kill, made to land inside a batch's settlement: a process SIGKILLed after the
    batch's ``UPDATE`` and before its commit leaves every entry pending, to go again (and be answered
    as a duplicate with its first receipt); none is delivered without the receipt that proves it."""
    entries = [_entry(n) for n in range(4)]
    fed.enqueue(entries)
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", _KILLED_IN_THE_SETTLEMENT, store_url],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    _as_queued(fed, entries)


def test_many_items_messages_read_at_once_are_each_items_own(fed: FederationStore) -> None:
    """``item_messages_of`` (a push's relay receipts look theirs up at once, issue 18) gives each item
    what ``item_messages`` gives it: its item messages only, oldest first; an item with none is absent."""
    entries = [replace(_entry(n), item_id=f"i{n % 3}") for n in range(7)]
    entries.append(replace(_entry(7), item_id="i0", kind="label-change"))  # not an item message
    fed.enqueue(entries)
    found = fed.item_messages_of(["i0", "i1", "i2", "i0", "absent"])
    assert found == {i: fed.item_messages(i) for i in ("i0", "i1", "i2")}
    assert [e.msg_id for e in found["i0"]] == ["m0", "m3", "m6"]
