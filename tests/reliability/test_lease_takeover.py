"""Two processes of one node on PostgreSQL, its outbox in full flow: SIGKILL the process holding
the delivery lease, and the other takes the delivery over; every item arrives exactly once
(ids and payloads compared), every outbox entry is settled with a receipt, and both nodes' audit
logs verify."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy
from tests.conftest import postgres_schema
from tests.reliability.processes import kill, serve, stop, wait_for

from gsomia.demo import network
from gsomia.node import NewIngest, Node, load_config
from gsomia.node._config import update_settings
from gsomia.store import ItemFilter, LeaseStore, Store

ITEMS = 3000


def _queue(directory: Path, count: int) -> None:
    """``count`` KOR items ingested and released to JPN, before any process serves."""
    kor = Node(load_config(directory))
    officer = kor.person("officer")
    created = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    label = {
        "originator": "KOR",
        "classification": "군사III급비밀",
        "releasable_to": ["JPN"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": created,
    }
    try:
        kor.ingest_many(
            officer,
            [NewIngest(label, json.dumps({"n": n}).encode(), "json", f"k{n:05d}") for n in range(count)],
        )
        for n in range(count):
            kor.exchange.release(officer, f"k{n:05d}", "JPN")
    finally:
        kor.close()


def _scalar(url: str, sql: str) -> int:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(sql).scalar_one())
    finally:
        engine.dispose()


def _outbox_holder(url: str) -> int | None:
    store = Store(url)
    try:
        leases = LeaseStore(store)
        now = leases.now_us()
        held = [r for r in leases.leases() if r.name == "outbox" and r.expires_us > now]
        return int(held[0].holder.split("/")[1]) if held else None
    finally:
        store.close()


def _second_process(member: network.NetNode) -> subprocess.Popen[bytes]:
    """Another ``node serve`` of the same node (same directory and database), on a port of its own."""
    return serve(network.NetNode(member.party, member.directory, network.free_port()), sender=True)


def test_killing_the_delivery_holder_mid_flow_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, postgres_status: str | None
) -> None:
    with postgres_schema(postgres_status) as kor_url:
        members = {m.party: m for m in network.build(tmp_path / "net", database_urls={"KOR": kor_url})}
        kor, jpn = members["KOR"], members["JPN"]
        update_settings(kor.directory, lease_seconds=1.0)
        _queue(kor.directory, ITEMS)
        jpn_db = f"sqlite:///{jpn.directory / 'gsomia.db'}"
        jpn_process = serve(jpn)
        first = serve(kor, sender=True)
        second = _second_process(kor)
        try:
            wait_for(lambda: _outbox_holder(kor_url) is not None, 120, "a process holding the delivery")
            holder = first if _outbox_holder(kor_url) == first.pid else second
            survivor = second if holder is first else first
            wait_for(
                lambda: _scalar(jpn_db, "SELECT count(*) FROM items") >= ITEMS // 5, 120, "a fifth delivered"
            )
            kill(holder)  # mid-flow: a batch may be on the wire, received and not yet settled
            arrived_at_kill = _scalar(jpn_db, "SELECT count(*) FROM items")
            assert arrived_at_kill < ITEMS, "the delivery ended before the kill: make ITEMS larger"
            wait_for(lambda: _outbox_holder(kor_url) == survivor.pid, 120, "the survivor taking the delivery")
            try:
                wait_for(
                    lambda: (
                        _scalar(
                            kor_url,
                            "SELECT count(*) FROM outbox WHERE kind = 'item' AND state <> 'delivered'",
                        )
                        == 0
                    ),
                    180,
                    "every outbox entry delivered",
                )
            except AssertionError:
                engine = sqlalchemy.create_engine(kor_url)
                with engine.connect() as conn:
                    states = conn.exec_driver_sql(
                        "SELECT state, attempts, last_error, count(*) FROM outbox GROUP BY 1, 2, 3"
                    ).all()
                engine.dispose()
                raise AssertionError(f"outbox: {states}") from None
        finally:
            for process in (first, second, jpn_process):
                stop(process)
        assert _scalar(kor_url, "SELECT count(*) FROM outbox WHERE kind = 'item' AND receipt IS NULL") == 0
        assert _scalar(kor_url, "SELECT epoch FROM leases WHERE name = 'outbox'") >= 2
        receiver = Node(load_config(jpn.directory))
        try:
            rows = receiver.store.list_items(ItemFilter(originator="KOR"), 0, ITEMS + 10, with_payload=True)
            got = {r.id: json.loads(receiver.cipher.open(r.id, r.label, r.payload)) for r in rows}
            received = [r for row in rows for r in receiver.store.inventory(row.id) if r.kind == "received"]
        finally:
            receiver.close()
        assert got == {f"k{n:05d}": {"n": n} for n in range(ITEMS)}  # every item, its own payload
        assert len(received) == ITEMS  # each received once: a resent envelope got its first receipt
        assert _scalar(jpn_db, "SELECT count(*) FROM inbox WHERE kind = 'item'") == ITEMS
        for member in (kor, jpn):
            verify = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
                [sys.executable, "-m", "gsomia", "audit", "verify", "--dir", str(member.directory)],
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert verify.returncode == 0, verify.stdout + verify.stderr
