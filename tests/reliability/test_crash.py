"""SIGKILL the receiver, then the sender, in the middle of a stream of items; restart each: exactly once.

Both nodes are real processes (``gsomia node serve``) on loopback: KOR sends from its own
sender loop, JPN receives. JPN is killed a quarter of the way in and restarted; KOR is
killed half way in (mid-batch: some envelopes JPN has stored but whose receipts KOR never
kept) and restarted. Afterwards every item is held once at JPN, and each side's inventory
and audit log say so once per item: ``received``/``envelope.received`` at JPN,
``sent``/``envelope.delivered`` at KOR. The resent envelopes meet JPN's inbox as duplicates
and get the first receipt again.

The default suite runs 2,000 items; ``-m slow`` runs the issue's 10,000.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import sqlalchemy
from tests.reliability.livenet import SUMMARIES
from tests.reliability.processes import count, held, kill, serve, stop, wait_for

from gsomia.demo import network
from gsomia.node import NewIngest, Node, load_config
from gsomia.store import ItemFilter

LABEL = {
    "originator": "KOR",
    "classification": "군사III급비밀",
    "releasable_to": ["JPN"],
    "purpose": "threat-assessment",
    "topics": ["dprk-missile"],
    "created": "2024-01-01T00:00:00+09:00",
}


def _queue(directory: Path, total: int) -> dict[str, bytes]:
    """Ingest ``total`` items at KOR and release each to JPN (decided and sealed now, sent later)."""
    kor = Node(load_config(directory))
    officer = kor.people.person("officer")
    payloads = {f"k{n:05d}": f'{{"n": {n}, "pad": "{"x" * 200}"}}'.encode() for n in range(total)}
    ids = list(payloads)
    for start in range(0, total, 1000):
        kor.items.ingest_many(
            officer, [NewIngest(LABEL, payloads[i], item_id=i) for i in ids[start : start + 1000]]
        )
    for item_id in ids:
        kor.exchange.release(officer, item_id, "JPN")
    kor.close()
    return payloads


def _pending(directory: Path) -> int:
    # items only: the sender also queues signed tree heads, to USA too, which is not running here
    return count(directory, "SELECT count(*) FROM outbox WHERE state = 'pending' AND kind = 'item'")


def _per_item(directory: Path, sql: str) -> dict[int, int]:
    """How many items have each count of the rows ``sql`` groups by item: {count: items}."""
    engine = sqlalchemy.create_engine(f"sqlite:///{directory / 'gsomia.db'}")
    try:
        with engine.connect() as conn:
            found = conn.exec_driver_sql(f"SELECT n, count(*) FROM ({sql}) GROUP BY n").all()  # noqa: S608
    finally:
        engine.dispose()
    return {int(n): int(items) for n, items in found}


def _run(tmp_path: Path, total: int) -> None:
    members = network.build(tmp_path / "net")
    kor_m, jpn_m = members[0], members[1]
    payloads = _queue(kor_m.directory, total)
    receiver = serve(jpn_m)
    sender = serve(kor_m, sender=True)
    kills = []
    try:
        wait_for(lambda: held(jpn_m.directory) >= total // 4, 120, "a quarter delivered")
        kill(receiver)
        kills.append(f"JPN (receiver) killed at {held(jpn_m.directory):,} of {total:,} held")
        assert 0 < held(jpn_m.directory) < total
        receiver = serve(jpn_m)
        wait_for(lambda: held(jpn_m.directory) >= total // 2, 120, "half delivered")
        kill(sender)
        kills.append(
            f"KOR (sender) killed at {held(jpn_m.directory):,} held at JPN, "
            f"{total - _pending(kor_m.directory):,} receipted at KOR"
        )
        assert _pending(kor_m.directory) > 0
        sender = serve(kor_m, sender=True)
        wait_for(lambda: _pending(kor_m.directory) == 0, 60 + total / 50, "the outbox draining")
    finally:
        stop(sender)
        stop(receiver)

    kor = Node(load_config(kor_m.directory))
    jpn = Node(load_config(jpn_m.directory))
    try:
        outbox = [e for e in kor.exchange.fed.outbox(limit=total + 1000) if e.kind == "item"]
        assert len(outbox) == total
        assert {e.state for e in outbox} == {"delivered"}
        assert all(e.receipt for e in outbox)
        assert all(jpn.exchange.fed.inbox_entry(e.msg_id) is not None for e in outbox)
        stored = {row.id for row in jpn.store.list_items(ItemFilter(), 0, total + 10)}
        assert stored == set(payloads)  # every item, none twice (ids are unique in the store)
        reader = jpn.people.person("officer")
        for item_id in list(payloads)[:: max(1, total // 50)]:
            _, payload = jpn.items.read(reader, item_id)
            assert hashlib.sha256(payload).digest() == hashlib.sha256(payloads[item_id]).digest()
    finally:
        jpn.close()
        kor.close()
    once = {1: total}
    received = "SELECT item_seq, count(*) AS n FROM inventory WHERE kind = 'received' GROUP BY item_seq"
    sent = "SELECT item_seq, count(*) AS n FROM inventory WHERE kind = 'sent' GROUP BY item_seq"
    assert _per_item(jpn_m.directory, received) == once
    assert _per_item(kor_m.directory, sent) == once
    audited = (
        "SELECT subject, count(*) AS n FROM audit_records"
        " WHERE kind = '{}' AND subject IS NOT NULL GROUP BY subject"  # items only, not tree heads
    )
    assert _per_item(jpn_m.directory, audited.format("envelope.received")) == once
    assert _per_item(kor_m.directory, audited.format("envelope.delivered")) == once
    duplicates = count(
        jpn_m.directory, "SELECT count(*) FROM audit_records WHERE kind = 'envelope.duplicate'"
    )
    SUMMARIES.append(
        (
            f"crash: {total:,} items KOR -> JPN, both killed with SIGKILL and restarted",
            [f"  {line}" for line in kills]
            + [
                f"  after: {total:,} held once at JPN, {total:,} receipts at KOR; inventory and audit "
                f"once per item on both sides; resent envelopes answered as duplicates: {duplicates} "
                f"records of their own (a minute's first 10 per sender; the kernel's tally counts the rest)"
            ],
        )
    )


def test_receiver_then_sender_killed_mid_stream_every_item_arrives_exactly_once(tmp_path: Path) -> None:
    _run(tmp_path, 2000)


@pytest.mark.slow
def test_receiver_then_sender_killed_in_10000_items_every_item_arrives_exactly_once(tmp_path: Path) -> None:
    _run(tmp_path, 10_000)
